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
use opshost::output::{Mode, Output};
use opshost::plugin::{signature, PluginFile};
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
  opshost keygen --out vendor.key && opshost sign example.wasm --key vendor.key
      Vendors: sign a plugin (writes example.wasm.sig); policies pin `signer = \"ed25519:...\"`.

Exit codes:
  0 success   1 plugin failed or crashed   2 usage/config error
  3 denied by policy   4 host or backend error   5 stopped by a limit
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

Every host call and denial is appended to the audit log (NDJSON).";

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
    /// The plugin (.wasm component).
    plugin: PathBuf,
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
    let plugin = match PluginFile::load(&args.plugin) {
        Ok(p) => p,
        Err(e) => return fail(json, Exit::Usage, &format!("{e:#}")),
    };
    let audit_path = args
        .audit_log
        .clone()
        .or(config.audit.path.clone())
        .unwrap_or_else(AuditLog::default_path);
    let audit = match AuditLog::open(&audit_path) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            return fail(
                json,
                Exit::Host,
                &format!("{e:#} (set --audit-log or [audit] path)"),
            )
        }
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
    let output =
        Arc::new(Output::new(if json { Mode::Json } else { Mode::Human }).assume_yes(args.yes));
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
    };
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
    match runtime.block_on(runtime::run(request)) {
        Ok(success) => {
            let report = &success.report;
            let exit = match report.outcome {
                Outcome::Ok => Exit::Ok,
                Outcome::Attention => Exit::Attention,
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
                        "audit_log": audit_path,
                    })
                );
            } else {
                println!("{}", report.summary);
                let width = report.facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
                for (k, v) in &report.facts {
                    println!("  {k:width$}  {v}");
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
            fail(json, exit, &format!("{err}{hint}"))
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
