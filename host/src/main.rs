//! The opshost command line: parse, call the library, print, exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use opshost::audit::AuditLog;
use opshost::caps::bindings::opshost::plugin::types::Outcome;
use opshost::config::Config;
use opshost::exit::Exit;
use opshost::gate::{Gate, Mode as GateMode};
use opshost::output::{Mode, Output};
use opshost::plugin::{select, signature, PluginFile};
use opshost::policy::{Grant, Policy};
use opshost::runtime::{self, CompileCache, Limits, RunError, RunRequest};

const ABOUT: &str = "Run day-2 operations as sandboxed WebAssembly plugins, with only the access the policy grants.";

const AFTER_HELP: &str = "\
Examples:
  opshost inspect plugins/example.wasm
      Show what a plugin is and every grant it requests, without running it.
  opshost run example.wasm --config opshost.toml --policy policy.toml -- hello
      Run with the grants the policy file gives this plugin.
  opshost run example.wasm --config opshost.toml --allow fs=work:rw --allow http=api:GET
      Grant for this one run instead (Deno-style).
  opshost run upgrade --plugin-dir /usr/lib/opshost/plugins -- 1.4.0
      Pick the newest build of `upgrade` that applies to the deployment and
      that the policy allows; it says which it picked.
  opshost keygen --out vendor.key && opshost sign example.wasm --key vendor.key
      Vendors: sign a plugin (writes example.wasm.sig); policies pin `signer = \"ed25519:...\"`.
  opshost audit --outcome denied,refused --since 1d
      What the policy stopped in the last day, from the audit log.

Exit codes:
  0 success   1 plugin failed or crashed   2 usage/config error
  3 refused: denied by policy, or the plugin does not fit (opshost or
    AGLedger version, contract, signature)   4 host or backend error   5 stopped by a limit
  6 completed, but found problems to look at";

const RUN_HELP: &str = "\
The plugin's manifest lists every grant it needs. opshost runs it only if
the policy (plus any --allow) covers all of them; otherwise it refuses before
the plugin starts and prints the exact lines to add.

Grant grammar (policy `allow = [...]` entries and --allow):
  db=NAME:read|write|admin            a database from [db.NAME]
  fs=NAME:ro|rw                       a directory from [dir.NAME]
  http=NAME[/PREFIX]:GET[,POST...]    a base URL from [http.NAME]
  container=NAME[/SERVICE]:VERB[,...] a compose project from [containers.NAME]
                                      verbs: inspect logs exec stop start pull recreate run

Config (--config, default /etc/opshost/config.toml):
  [dir.work]
  path = \"/srv/work\"
  [http.api]
  url = \"http://127.0.0.1:3001\"
  [containers.agledger]
  project = \"agledger\"
  [containers.agledger.signatures]     # images pulled must be cosign-signed
  fulcio_roots = [\"fulcio.pem\"]        # keyless: Fulcio CA, Rekor key, identity
  rekor_keys = [\"rekor.pub\"]           #   (or trusted_root = \"trusted_root.json\")
  identity_regexp = \"^https://github\\\\.com/ORG/REPO/\\\\.github/workflows/.+@refs/tags/v.+$\"
  issuer = \"https://token.actions.githubusercontent.com\"
  keys = [\"cosign.pub\"]                # and/or key-based (cosign verify --key)
  [plugins]
  dir = \"/usr/lib/opshost/plugins\"     # where `opshost run NAME` picks builds

Version fit: a plugin's manifest says which AGLedger versions it applies to
(applies_to) and the oldest opshost it needs (min_host). Before it starts,
opshost reads the deployment's version where the config says, and refuses
a plugin whose range does not include it (exit 3), naming both versions:
  [containers.agledger]
  version_from = { env_file = \"/srv/agledger/compose/.env\" }  # AGLEDGER_VERSION
  # or: version_from = { http = \"api\", path = \"/conformance\" }  # field version
The deployment is the [containers.NAME] the plugin's grants reach (a
container grant, or a db in that project); --deployment NAME says which when
they reach several. Without a version_from the range is not checked (a
warning says so); applies_to = \"*\" reads nothing. --force-version runs a
plugin that does not fit anyway, loudly and audited (verb force-version);
min_host is never forced.

Pick by name: `opshost run upgrade` (a name, not a file) loads every *.wasm
in the plugin directory (--plugin-dir, OPSHOST_PLUGIN_DIR, [plugins] dir,
else /usr/lib/opshost/plugins) named upgrade, and runs the newest version
that fits the deployment and that the policy admits, the same decision a
run makes. It prints the build picked and why each other was passed over;
when none fits it refuses (exit 3) listing them.

Image signatures: container.pull verifies the pulled digest's cosign
signature (offline) when the project has a signatures policy; recreate and
run then accept an explicit image only as a digest verified in the run.
Without a policy a pull is unverified and warned about; --require-signed
refuses it.

Policy (--policy, default /etc/opshost/policy.toml):
  [[plugin]]
  vendor = \"opshost\"
  name = \"example\"
  sha256 = \"...\"        # optional: pin this exact build
  signer = \"ed25519:...\" # optional: only builds this vendor key signed (PLUGIN.sig)
  allow = [\"fs=work:rw\", \"http=api:GET\"]

Every host call and denial is appended to the audit log (NDJSON; with
[audit] format = \"ocsf\" as OCSF API Activity events); `opshost audit`
shows and filters it.";

#[derive(Parser)]
#[command(name = "opshost", version, about = ABOUT, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a plugin with the grants the policy gives it.
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Show a plugin's manifest, requested grants, imports, digest and signature.
    Inspect(InspectArgs),
    /// Create an Ed25519 signing key for plugins (vendors).
    Keygen(KeygenArgs),
    /// Sign a plugin: writes PLUGIN.sig beside it (vendors).
    Sign(SignArgs),
    /// Show and filter the audit log (either format) as a table or JSON.
    #[command(after_help = AUDIT_HELP)]
    Audit(AuditArgs),
}

#[derive(Args)]
struct KeygenArgs {
    /// Where to write the secret key (created with mode 0600; never overwritten).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct SignArgs {
    plugin: PathBuf,
    /// The secret key from `opshost keygen`.
    #[arg(long)]
    key: PathBuf,
}

#[derive(Args)]
struct RunArgs {
    /// The plugin: a .wasm file, or a name (e.g. `upgrade`) to pick the
    /// newest build that fits from the plugin directory.
    plugin: PathBuf,
    /// Where `opshost run NAME` picks builds from [default: config
    /// [plugins] dir, else /usr/lib/opshost/plugins].
    #[arg(long, env = "OPSHOST_PLUGIN_DIR", value_name = "DIR")]
    plugin_dir: Option<PathBuf>,
    /// The [containers.NAME] deployment whose version the plugin's
    /// applies_to range is checked against, when its grants reach several
    /// (or none).
    #[arg(long, value_name = "NAME")]
    deployment: Option<String>,
    /// Run even though the plugin's applies_to range does not include the
    /// deployment's version (or the version cannot be read). Warned and
    /// audited; the minimum opshost version is never forced.
    #[arg(long)]
    force_version: bool,
    /// Config mapping resource names to real things.
    #[arg(long, env = "OPSHOST_CONFIG")]
    config: Option<PathBuf>,
    /// Policy file granting plugins their resources.
    #[arg(long, env = "OPSHOST_POLICY")]
    policy: Option<PathBuf>,
    /// Point the config's directory NAME at PATH for this run, e.g.
    /// --dir backups=/srv/agledger/backup (repeatable; grants still apply).
    #[arg(long = "dir", value_name = "NAME=PATH")]
    dirs: Vec<String>,
    /// Grant for this run only, e.g. --allow fs=backups:rw (repeatable).
    #[arg(long = "allow", value_name = "GRANT")]
    allow: Vec<String>,
    /// NDJSON events on stdout; the last line is the result.
    #[arg(long)]
    json: bool,
    /// Answer yes to the plugin's confirmation questions (for automation;
    /// without it, a run with no terminal to ask on refuses destructive steps).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Stop the plugin after this long (e.g. 90s, 10m, 1h).
    #[arg(long, default_value = "1h", value_parser = runtime::limits::parse_duration)]
    timeout: std::time::Duration,
    /// Memory cap for the plugin, in MiB.
    #[arg(long, default_value_t = 512)]
    memory_mib: usize,
    /// Cap on the plugin's log output, in KiB.
    #[arg(long, default_value_t = 1024)]
    log_kib: u64,
    /// Cap on audited host calls (db, fs, http, container calls); bounds
    /// the audit log a plugin can make you write.
    #[arg(long, default_value_t = 100_000)]
    max_host_calls: u64,
    /// Audit log path [default: config [audit] path, else ~/.local/state/opshost/audit.ndjson].
    #[arg(long, env = "OPSHOST_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    /// Compiled-plugin cache [default: ~/.cache/opshost].
    #[arg(long, env = "OPSHOST_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not use the compile cache.
    #[arg(long)]
    no_cache: bool,
    /// Refuse container pulls for compose projects that have no image
    /// signature policy ([containers.NAME.signatures]); without this flag
    /// such pulls go ahead unverified, with a loud warning.
    #[arg(long)]
    require_signed: bool,
    /// Show what the plugin would change, changing nothing: reads happen,
    /// every change (db writes, container stops/starts/recreates/pulls, fs
    /// writes, non-GET requests, locks) is intercepted, recorded and
    /// answered with a simulated result. Prints the plan.
    #[arg(long, conflicts_with = "learn")]
    plan: bool,
    /// Run in a sandbox deployment with everything the manifest requests,
    /// record what the plugin actually uses, and print the smallest policy
    /// block that grants exactly that (with the evidence for each line).
    #[arg(long)]
    learn: bool,
    /// Arguments for the plugin (after --).
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(Args)]
struct InspectArgs {
    plugin: PathBuf,
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let exit = match cli.command {
        Command::Run(args) => run(args),
        Command::Inspect(args) => inspect(args),
        Command::Keygen(args) => keygen(args),
        Command::Sign(args) => sign(args),
        Command::Audit(args) => audit(args),
    };
    ExitCode::from(exit.code())
}

/// A config or policy file: the given one, else the default if it exists.
fn optional_file(given: Option<PathBuf>, default: &str) -> Option<PathBuf> {
    given.or_else(|| Path::new(default).exists().then(|| PathBuf::from(default)))
}

fn fail(json: bool, exit: Exit, message: &str) -> Exit {
    if json {
        println!(
            "{}",
            json!({"event": "result", "ok": false, "exit_code": exit.code(), "error": message})
        );
    } else {
        eprintln!("error: {message}");
    }
    exit
}

fn run(args: RunArgs) -> Exit {
    let json = args.json;
    let setup = || -> anyhow::Result<(Config, Policy, Vec<Grant>)> {
        let mut config = match optional_file(args.config.clone(), "/etc/opshost/config.toml") {
            Some(p) => Config::load(&p)?,
            None => Config::default(),
        };
        for spec in &args.dirs {
            let (name, path) = spec
                .split_once('=')
                .filter(|(n, p)| !n.is_empty() && !p.is_empty())
                .with_context(|| format!("--dir {spec:?}: expected NAME=PATH, e.g. --dir backups=/srv/agledger/backup"))?;
            config.dir.insert(
                name.to_string(),
                opshost::config::DirResource { path: path.into() },
            );
        }
        let policy = match optional_file(args.policy.clone(), "/etc/opshost/policy.toml") {
            Some(p) => Policy::load(&p)?,
            None => Policy::default(),
        };
        let allow = args
            .allow
            .iter()
            .map(|g| g.parse::<Grant>().context("--allow"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok((config, policy, allow))
    };
    let (config, policy, allow) = match setup() {
        Ok(v) => v,
        Err(e) => return fail(json, Exit::Usage, &format!("{e:#}")),
    };
    let audit_path = args
        .audit_log
        .clone()
        .or(config.audit.path.clone())
        .unwrap_or_else(AuditLog::default_path);
    let audit = match AuditLog::open_as(&audit_path, config.audit.format) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            return fail(
                json,
                Exit::Host,
                &format!("{e:#} (set --audit-log or [audit] path)"),
            )
        }
    };
    let output =
        Arc::new(Output::new(if json { Mode::Json } else { Mode::Human }).assume_yes(args.yes));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return fail(
                json,
                Exit::Host,
                &format!("cannot start the async runtime: {e}"),
            )
        }
    };
    let wanted = select::Wanted {
        arg: &args.plugin,
        plugin_dir: args
            .plugin_dir
            .clone()
            .or(config.plugins.dir.clone())
            .unwrap_or_else(|| PathBuf::from(select::DEFAULT_DIR)),
        deployment: args.deployment.as_deref(),
        force_version: args.force_version,
    };
    let resolved = runtime.block_on(select::resolve(
        &wanted, &config, &policy, &allow, &output, &audit,
    ));
    let (plugin, version) = match resolved {
        Ok(v) => v,
        Err(e) => return fail(json, Exit::of(&e), &e.to_string()),
    };
    let engine = match runtime::engine::new_engine() {
        Ok(e) => e,
        Err(e) => return fail(json, Exit::Host, &format!("{e:#}")),
    };
    let cache = if args.no_cache {
        CompileCache::disabled()
    } else {
        CompileCache::new(args.cache_dir.clone().or_else(CompileCache::default_dir))
    };
    let mode = if args.plan {
        GateMode::Plan
    } else if args.learn {
        GateMode::Learn
    } else {
        GateMode::Run
    };
    // Learning needs the plugin to run with what it asks for: the sandbox
    // is the operator's config, so its requests are granted for this run.
    let mut allow = allow;
    if mode == GateMode::Learn {
        output.warn("learn mode grants everything the plugin's manifest requests: run it against a sandbox deployment, not production");
        allow.extend(plugin.manifest.requests.iter().map(|r| r.grant.clone()));
    }
    let request = RunRequest {
        engine: &engine,
        cache: &cache,
        plugin: &plugin,
        config: Arc::new(config),
        policy: &policy,
        allow: &allow,
        args: args.args.clone(),
        limits: Limits {
            timeout: args.timeout,
            memory_bytes: args.memory_mib << 20,
            log_bytes: args.log_kib << 10,
            host_calls: args.max_host_calls,
        },
        output,
        audit,
        require_signed: args.require_signed,
        version,
        mode,
    };
    let (result, gate) = runtime.block_on(runtime::run_recorded(request));
    let recorded = recorded(&gate, &plugin, result.is_ok());
    match result {
        Ok(success) => {
            let report = &success.report;
            let exit = match report.outcome {
                Outcome::Ok if success.narrowed.is_empty() => Exit::Ok,
                Outcome::Ok | Outcome::Attention => Exit::Attention,
            };
            if json {
                let data: Option<serde_json::Value> = report
                    .data
                    .as_deref()
                    .and_then(|d| serde_json::from_str(d).ok());
                let facts: serde_json::Map<String, serde_json::Value> = report
                    .facts
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                println!(
                    "{}",
                    json!({
                        "event": "result", "ok": true, "exit_code": exit.code(),
                        "outcome": if exit == Exit::Ok { "ok" } else { "attention" },
                        "summary": report.summary, "facts": facts, "data": data,
                        "plugin": plugin.manifest.identity(), "sha256": plugin.sha256,
                        "compiled": success.compiled, "duration_ms": success.duration.as_millis() as u64,
                        "audit_log": audit_path, "mode": mode.as_str(), "plan": recorded.plan,
                        "learned": recorded.learned, "denied": success.narrowed,
                    })
                );
            } else {
                print!("{}", recorded.text);
                if mode == GateMode::Plan {
                    println!("Nothing was changed. The plugin's report of the simulated run:");
                }
                println!("{}", report.summary);
                let width = report.facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
                for (k, v) in &report.facts {
                    println!("  {k:width$}  {v}");
                }
                for denied in &success.narrowed {
                    eprintln!("attention: the plugin carried on past a call its manifest requests that the policy (exact) does not grant: {denied}");
                }
                if exit == Exit::Attention {
                    eprintln!(
                        "attention: the operation completed but found problems (exit code 6)"
                    );
                }
            }
            exit
        }
        Err(err) => {
            let exit = Exit::of(&err);
            let hint = match &err {
                RunError::Limit(_) => "\n(raise it with --timeout, --memory-mib, --log-kib or --max-host-calls if the plugin is trusted)",
                RunError::Crashed(_) => "\n(the plugin's own output above shows its last words; report it to its vendor)",
                _ => "",
            };
            if json {
                println!(
                    "{}",
                    json!({"event": "result", "ok": false, "exit_code": exit.code(), "error": format!("{err}{hint}"),
                           "mode": mode.as_str(), "plan": recorded.plan, "learned": recorded.learned})
                );
                return exit;
            }
            print!("{}", recorded.text);
            fail(json, exit, &format!("{err}{hint}"))
        }
    }
}

/// What plan or learn mode recorded, as text and as JSON.
struct Recorded {
    text: String,
    plan: Option<serde_json::Value>,
    learned: Option<serde_json::Value>,
}

fn recorded(gate: &Gate, plugin: &PluginFile, succeeded: bool) -> Recorded {
    let m = &plugin.manifest;
    match gate.mode() {
        GateMode::Run => Recorded {
            text: String::new(),
            plan: None,
            learned: None,
        },
        GateMode::Plan => {
            let plan = gate.plan();
            let mut text = plan.render();
            if !succeeded {
                text.push_str("The plan stopped early (the error below): a real run would stop there too, or go further where a simulated change was read back.\n");
            }
            Recorded {
                text,
                plan: serde_json::to_value(&plan).ok(),
                learned: None,
            }
        }
        GateMode::Learn => {
            let learned = gate.learned();
            let block = learned.policy_block(&m.vendor, &m.name, &plugin.sha256);
            let caveat = if succeeded {
                "grants exactly what this run used"
            } else {
                "the run FAILED: this covers only what it used before failing"
            };
            let text = format!(
                "# Learned policy for {} ({caveat}):\n{block}\n",
                m.identity()
            );
            let lines: Vec<serde_json::Value> = learned
                .lines()
                .iter()
                .map(|l| json!({"grant": l.grant.to_string(), "evidence": l.evidence}))
                .collect();
            Recorded {
                text,
                plan: None,
                learned: Some(json!({"policy": block, "lines": lines, "complete": succeeded})),
            }
        }
    }
}

fn keygen(args: KeygenArgs) -> Exit {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let result = (|| -> anyhow::Result<String> {
        let (secret, public) = signature::generate()?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&args.out)
            .with_context(|| {
                format!(
                    "cannot create {} (it must not exist yet)",
                    args.out.display()
                )
            })?;
        writeln!(file, "{secret}")?;
        Ok(public)
    })();
    match result {
        Ok(public) => {
            println!("{public}");
            eprintln!(
                "secret key written to {}; give security teams the public key above for their policy:\n  signer = \"{public}\"",
                args.out.display()
            );
            Exit::Ok
        }
        Err(e) => fail(false, Exit::Usage, &format!("{e:#}")),
    }
}

fn sign(args: SignArgs) -> Exit {
    let result = (|| -> anyhow::Result<PathBuf> {
        let plugin = PluginFile::load(&args.plugin)?;
        let key = signature::load_signing_key(&args.key)?;
        let path = signature::signature_path(&args.plugin);
        std::fs::write(&path, signature::sign(&key, &plugin.sha256))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    })();
    match result {
        Ok(path) => {
            println!("{}", path.display());
            Exit::Ok
        }
        Err(e) => fail(false, Exit::Usage, &format!("{e:#}")),
    }
}

fn inspect(args: InspectArgs) -> Exit {
    let plugin = match PluginFile::load(&args.plugin) {
        Ok(p) => p,
        Err(e) => return fail(args.json, Exit::Usage, &format!("{e:#}")),
    };
    let m = &plugin.manifest;
    if args.json {
        let requests: Vec<_> = m
            .requests
            .iter()
            .map(|r| json!({"grant": r.grant.to_string(), "reason": r.reason}))
            .collect();
        println!(
            "{}",
            json!({
                "name": m.name, "vendor": m.vendor, "version": m.version.to_string(),
                "description": m.description, "applies_to": m.applies_to.to_string(),
                "min_host": m.min_host.to_string(), "requests": requests,
                "imports": plugin.world.imports, "exports": plugin.world.exports,
                "sha256": plugin.sha256, "size": plugin.bytes.len(),
                "signature": plugin.signature.describe(),
            })
        );
        return Exit::Ok;
    }
    println!("{}  ({} bytes)", m.identity(), plugin.bytes.len());
    if !m.description.is_empty() {
        println!("  {}", m.description);
    }
    println!("  sha256      {}", plugin.sha256);
    println!("  signature   {}", plugin.signature.describe());
    println!("  applies to  AGLedger {}", m.applies_to);
    println!("  needs       opshost >= {}", m.min_host);
    println!("requests:");
    if m.requests.is_empty() {
        println!("  (nothing)");
    }
    let width = m
        .requests
        .iter()
        .map(|r| r.grant.to_string().len())
        .max()
        .unwrap_or(0);
    for r in &m.requests {
        println!("  {:width$}  {}", r.grant.to_string(), r.reason);
    }
    println!("imports:");
    for i in &plugin.world.imports {
        println!("  {i}");
    }
    println!("exports:");
    for e in &plugin.world.exports {
        println!("  {e}");
    }
    Exit::Ok
}

const AUDIT_HELP: &str = "\
Reads the log `opshost run` writes (--log, else the config's [audit] path,
else ~/.local/state/opshost/audit.ndjson), in either format (opshost or
OCSF), and prints the matching events. Filters repeat or take a comma list
(any value matches); different filters must all match.

Examples:
  opshost audit --since 1h
      Everything in the last hour, as a table.
  opshost audit --outcome denied,refused --since 2026-11-28
      What the policy stopped since midnight UTC.
  opshost audit --plugin opshost/backup --capability db --json
      The backup plugin's database calls, one JSON object per line.
  opshost audit --mode plan --last 50
      The last 50 events of plan runs (changes answered, not made).

Times: RFC 3339 in UTC (2026-11-28T14:00:00Z), a date (midnight UTC), or an
age (90m, 1h, 2d). A repeated event shows as `OUTCOME (N more)`: that many
more identical calls were folded into that line.

Exit codes: 0 read (matches or not); 2 no such log, bad config or filter;
4 the log cannot be read; 6 read, but some lines are not audit events
(skipped; their numbers are printed: the log was edited or a write cut off).";

#[derive(Args)]
struct AuditArgs {
    /// The audit log [default: config [audit] path, else ~/.local/state/opshost/audit.ndjson].
    #[arg(long, value_name = "PATH", env = "OPSHOST_AUDIT_LOG")]
    log: Option<PathBuf>,
    /// Config whose [audit] path names the log [default: /etc/opshost/config.toml if it exists].
    #[arg(long, value_name = "FILE", env = "OPSHOST_CONFIG")]
    config: Option<PathBuf>,
    /// Plugin NAME, VENDOR/NAME or sha256 prefix (8+ hex digits).
    #[arg(long, value_name = "PLUGIN", value_delimiter = ',')]
    plugin: Vec<String>,
    /// Outcome: ok, denied, refused, failed, uncertain, limit, trap, planned, ...
    #[arg(long, value_delimiter = ',')]
    outcome: Vec<String>,
    /// Capability: fs, db, http, container, progress, crypto, or run (start/end/refusal).
    #[arg(long, value_delimiter = ',')]
    capability: Vec<String>,
    /// Run mode: run, plan or learn.
    #[arg(long, value_delimiter = ',', value_parser = opshost::audit::MODES)]
    mode: Vec<String>,
    /// Only events at or after TIME (RFC 3339 UTC, a date, or an age like 1h, 2d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only events at or before TIME (same forms as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only the last N matching events.
    #[arg(long, value_name = "N")]
    last: Option<usize>,
    /// One JSON object per line (opshost's shape, with `mode` and `line`).
    #[arg(long)]
    json: bool,
}

fn audit(args: AuditArgs) -> Exit {
    use opshost::audit::view;
    let now = std::time::SystemTime::now();
    let time = |t: &Option<String>, flag: &str| {
        t.as_deref()
            .map(|t| view::parse_time(t, now).with_context(|| flag.to_string()))
            .transpose()
    };
    let filter = match (time(&args.since, "--since"), time(&args.until, "--until")) {
        (Ok(since), Ok(until)) => view::Filter {
            plugins: args.plugin,
            outcomes: args.outcome,
            capabilities: args.capability,
            modes: args.mode,
            since,
            until,
        },
        (Err(e), _) | (_, Err(e)) => return fail(false, Exit::Usage, &format!("{e:#}")),
    };
    let config = optional_file(args.config, "/etc/opshost/config.toml");
    let location = match view::locate(args.log, config.as_deref()) {
        Ok(l) => l,
        Err(e) => return fail(false, Exit::Usage, &format!("{e:#}")),
    };
    let scan = match view::scan(&location.path, &filter, args.last) {
        Ok(s) => s,
        Err(e @ view::LogError::Missing(_)) => {
            return fail(
                false,
                Exit::Usage,
                &format!("{e} [log from {}]", location.source),
            )
        }
        Err(e) => return fail(false, Exit::Host, &e.to_string()),
    };
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        view::write_json(&mut out, &scan.matched)
    } else {
        use std::io::IsTerminal;
        let width = std::io::stdout()
            .is_terminal()
            .then(terminal_size::terminal_size)
            .flatten()
            .map(|(w, _)| usize::from(w.0));
        if scan.matched.is_empty() {
            Ok(())
        } else {
            view::write_table(&mut out, &scan.matched, width)
        }
    };
    if let Err(e) = written {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return fail(false, Exit::Host, &format!("cannot write the output: {e}"));
        }
    }
    for hint in scan.unmatched(&filter) {
        eprintln!("note: {hint}");
    }
    if !args.json {
        eprintln!(
            "{} of {} events in {}",
            scan.matched.len(),
            scan.events,
            location.path.display()
        );
    }
    if scan.malformed == 0 {
        return Exit::Ok;
    }
    let lines: Vec<String> = scan
        .first_malformed
        .iter()
        .map(|(n, why)| format!("line {n}: {why}"))
        .collect();
    let more = scan.malformed - scan.first_malformed.len();
    eprintln!(
        "warning: skipped {} line(s) of {} that are not audit events ({}{}); opshost writes none, so the log was edited or a write was cut off",
        scan.malformed,
        location.path.display(),
        lines.join("; "),
        if more > 0 { format!("; {more} more") } else { String::new() }
    );
    Exit::Attention
}
