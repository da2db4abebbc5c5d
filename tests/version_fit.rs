//! Version fit through the real CLI: a plugin's `applies_to` range against
//! the deployment's version read from a real `.env` or a real HTTP
//! `/conformance`, `min_host` against this opshost, `--force-version`, and
//! `opshost run NAME` picking a build from a directory of several.
//!
//! The builds are the noop test plugin with its embedded manifest
//! rewritten (version, range, grants): real components the host loads,
//! admits and runs. No stand-in deployment is touched.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

const SECTION: &str = "opshost-manifest";

fn write_leb(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_leb(bytes: &[u8], pos: &mut usize) -> usize {
    let mut value = 0usize;
    let mut shift = 0;
    loop {
        let byte = bytes[*pos];
        *pos += 1;
        value |= ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
        shift += 7;
    }
}

/// The binary (a component or a core module) with the payload of every
/// `opshost-manifest` custom section replaced by `text`, section sizes
/// re-encoded up through the nesting (the SDK's section sits in the core
/// module inside the component).
fn rewrite(bytes: &[u8], text: &str, replaced: &mut usize) -> Vec<u8> {
    let component = bytes[6..8] == [1, 0];
    let mut out = bytes[..8].to_vec();
    let mut pos = 8;
    while pos < bytes.len() {
        let id = bytes[pos];
        pos += 1;
        let size = read_leb(bytes, &mut pos);
        let payload = &bytes[pos..pos + size];
        pos += size;
        let new_payload = if id == 0 {
            let mut p = 0;
            let len = read_leb(payload, &mut p);
            if &payload[p..p + len] == SECTION.as_bytes() {
                *replaced += 1;
                let mut v = payload[..p + len].to_vec();
                v.extend_from_slice(text.as_bytes());
                v
            } else {
                payload.to_vec()
            }
        } else if component && (id == 1 || id == 4) {
            // A nested core module (1) or component (4).
            rewrite(payload, text, replaced)
        } else {
            payload.to_vec()
        };
        out.push(id);
        write_leb(new_payload.len(), &mut out);
        out.extend_from_slice(&new_payload);
    }
    out
}

/// A build of "upgrade" (the noop plugin underneath) with this manifest.
struct Build<'a> {
    version: &'a str,
    applies_to: &'a str,
    min_host: &'a str,
    grants: &'a [&'a str],
}

impl Build<'_> {
    fn new<'a>(version: &'a str, applies_to: &'a str) -> Build<'a> {
        Build {
            version,
            applies_to,
            min_host: "0.1.0",
            grants: &["container=agledger:inspect"],
        }
    }

    fn write(&self, path: &Path) -> PathBuf {
        let mut text = format!(
            "name = \"upgrade\"\nvendor = \"opshost-testing\"\nversion = \"{}\"\n\
             description = '''a noop posing as an upgrade build'''\n\
             applies_to = \"{}\"\nmin_host = \"{}\"\n",
            self.version, self.applies_to, self.min_host
        );
        for g in self.grants {
            text.push_str(&format!(
                "[[request]]\ngrant = \"{g}\"\nreason = '''checks the deployment'''\n"
            ));
        }
        let original = std::fs::read(plugin("noop")).expect("read noop");
        let mut replaced = 0;
        let bytes = rewrite(&original, &text, &mut replaced);
        assert_eq!(replaced, 1, "the noop build holds one manifest section");
        let manifest = opshost::plugin::Manifest::from_wasm(&bytes).expect("rewritten manifest");
        assert_eq!(manifest.version.to_string(), self.version);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("dir");
        }
        std::fs::write(path, bytes).expect("write build");
        path.to_path_buf()
    }
}

const POLICY: &str = "[[plugin]]\nvendor = \"opshost-testing\"\nname = \"upgrade\"\nallow = [\"container=agledger:inspect\"]\n";

/// A sandbox whose deployment `agledger` reads its version from `.env`.
fn with_env_version(version: &str) -> Sandbox {
    let sb = Sandbox::new();
    set_env_version(&sb, version);
    sb.write_config("[containers.agledger.version_from]\nenv_file = \"compose/.env\"\n");
    sb.write_policy(POLICY);
    sb
}

fn set_env_version(sb: &Sandbox, version: &str) {
    std::fs::create_dir_all(sb.path("compose")).expect("compose");
    std::fs::write(
        sb.path("compose/.env"),
        format!("# the release\nAGLEDGER_VERSION={version}   # pinned\nPOSTGRES_PASSWORD=x\n"),
    )
    .expect(".env");
}

fn events(sb: &Sandbox, verb: &str) -> Vec<serde_json::Value> {
    sb.audit()
        .into_iter()
        .filter(|e| e["capability"] == "run" && e["verb"] == verb)
        .collect()
}

#[test]
fn a_range_that_excludes_the_env_version_is_refused_naming_both() {
    let sb = with_env_version("1.3.2");
    let build = Build::new("0.4.0", ">=1.4.0, <2.0.0").write(&sb.path("upgrade-0.4.0.wasm"));
    let out = sb.run(&build, &[], &[]);
    assert_eq!(out.code, DENIED, "{}", out.combined());
    let env = sb.path("compose/.env");
    for want in [
        "opshost-testing/upgrade 0.4.0 applies to AGLedger >=1.4.0, <2.0.0".to_string(),
        "deployment agledger runs 1.3.2".to_string(),
        format!("read from {} AGLEDGER_VERSION", env.display()),
        "--force-version".to_string(),
    ] {
        assert!(out.stderr.contains(&want), "lacks {want:?}: {}", out.stderr);
    }
    // Refused before it started: audited as such, and no run began.
    let refused = events(&sb, "admit");
    assert_eq!(refused.len(), 1, "{}", sb.audit_text());
    assert_eq!(refused[0]["outcome"], "refused");
    assert!(refused[0]["detail"]
        .as_str()
        .is_some_and(|d| d.contains("runs 1.3.2") && d.contains(">=1.4.0")));
    assert!(events(&sb, "start").is_empty());

    // The same build once the deployment runs a version it applies to.
    set_env_version(&sb, "1.4.1");
    let out = sb.run(&build, &[], &[]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(!out.stderr.contains("cannot check"), "{}", out.stderr);
    assert!(
        out.stderr.contains("version fit: opshost-testing/upgrade 0.4.0 applies to AGLedger >=1.4.0, <2.0.0; deployment agledger runs 1.4.1"),
        "{}",
        out.stderr
    );
}

/// A `/conformance` endpoint that answers only with the right bearer token.
struct Conformance {
    url: String,
    authorized: Arc<AtomicUsize>,
}

const TOKEN: &str = "platform-key-0123456789";

fn conformance(version: &'static str) -> Conformance {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let authorized = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&authorized);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            let mut auth = false;
            let _ = reader.read_line(&mut request);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if lower.starts_with("authorization:") && line.trim_end().ends_with(TOKEN) {
                    auth = true;
                }
            }
            let (status, body) = if !request.starts_with("GET /conformance ") {
                (404, "{}".to_string())
            } else if !auth {
                (401, r#"{"error":"unauthorized"}"#.to_string())
            } else {
                counter.fetch_add(1, Ordering::SeqCst);
                (
                    200,
                    format!(r#"{{"product":"agledger","version":"{version}","vault":"ed25519"}}"#),
                )
            };
            let mut out = stream;
            let _ = write!(
                out,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Conformance { url, authorized }
}

fn with_conformance(server: &Conformance) -> Sandbox {
    let sb = Sandbox::new();
    std::fs::write(sb.path("platform.key"), format!("{TOKEN}\n")).expect("key");
    sb.write_config(&format!(
        "[http.deploy]\nurl = \"{}\"\nbearer_token_file = \"platform.key\"\n\
         [containers.agledger.version_from]\nhttp = \"deploy\"\npath = \"/conformance\"\n",
        server.url
    ));
    sb.write_policy(POLICY);
    sb
}

#[test]
fn a_range_that_excludes_the_conformance_version_is_refused_naming_both() {
    let server = conformance("2.0.1");
    let sb = with_conformance(&server);
    let build = Build::new("0.3.0", ">=1.3.0, <2.0.0").write(&sb.path("upgrade-0.3.0.wasm"));
    let out = sb.run(&build, &[], &[]);
    assert_eq!(out.code, DENIED, "{}", out.combined());
    for want in [
        "applies to AGLedger >=1.3.0, <2.0.0".to_string(),
        "deployment agledger runs 2.0.1".to_string(),
        format!(
            "read from GET {}/conformance (field \"version\")",
            server.url
        ),
    ] {
        assert!(out.stderr.contains(&want), "lacks {want:?}: {}", out.stderr);
    }
    // The host sent the operator's token (the server answers 401 without it).
    assert_eq!(server.authorized.load(Ordering::SeqCst), 1);

    let fits = Build::new("1.0.0", ">=2.0.0, <3.0.0").write(&sb.path("upgrade-1.0.0.wasm"));
    let out = sb.run(&fits, &[], &[]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert_eq!(server.authorized.load(Ordering::SeqCst), 2);
}

#[test]
fn an_unreadable_version_refuses_and_a_star_range_reads_nothing() {
    let sb = Sandbox::new();
    // The .env does not exist.
    sb.write_config("[containers.agledger.version_from]\nenv_file = \"compose/.env\"\n");
    sb.write_policy(POLICY);
    let ranged = Build::new("0.3.0", "^1.3").write(&sb.path("ranged.wasm"));
    let out = sb.run(&ranged, &[], &[]);
    assert_eq!(out.code, DENIED, "{}", out.combined());
    assert!(
        out.stderr
            .contains("cannot check that opshost-testing/upgrade 0.3.0 applies (AGLedger ^1.3) to deployment agledger")
            && out.stderr.contains("compose/.env"),
        "{}",
        out.stderr
    );
    let any = Build::new("0.3.0", "*").write(&sb.path("any.wasm"));
    let out = sb.run(&any, &[], &[]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
}

#[test]
fn without_a_version_source_the_run_goes_ahead_and_says_it_was_not_checked() {
    let sb = Sandbox::new();
    sb.write_policy(POLICY);
    let build = Build::new("0.3.0", ">=9.0.0").write(&sb.path("upgrade.wasm"));
    let out = sb.run(&build, &[], &[]);
    assert_eq!(out.code, OK, "{}", out.combined());
    let warning = "warning: cannot check that opshost-testing/upgrade 0.3.0 applies (AGLedger >=9.0.0): the config gives no version_from for [containers.agledger]";
    assert_eq!(out.stderr.matches(warning).count(), 1, "{}", out.stderr);
}

#[test]
fn a_plugin_needing_a_newer_opshost_is_refused_even_when_forced() {
    let sb = with_env_version("1.3.2");
    let build = Build {
        min_host: "9.1.0",
        ..Build::new("0.3.0", "^1.3")
    }
    .write(&sb.path("new-host.wasm"));
    for flags in [&[][..], &["--force-version"][..]] {
        let out = sb.run(&build, flags, &[]);
        assert_eq!(out.code, DENIED, "{flags:?}: {}", out.combined());
        let ours = env!("CARGO_PKG_VERSION");
        assert!(
            out.stderr.contains(&format!(
                "needs opshost 9.1.0 or newer; this is opshost {ours}"
            )),
            "{}",
            out.stderr
        );
    }
    assert!(events(&sb, "start").is_empty());
}

#[test]
fn force_version_runs_a_misfit_loudly_and_audits_it() {
    let sb = with_env_version("1.3.2");
    let build = Build::new("0.4.0", ">=1.4.0, <2.0.0").write(&sb.path("upgrade-0.4.0.wasm"));
    let out = sb.run(&build, &["--force-version"], &[]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(
        out.stderr.contains("warning: --force-version: running opshost-testing/upgrade 0.4.0 although it does not fit: applies to >=1.4.0, <2.0.0, deployment agledger runs 1.3.2"),
        "{}",
        out.stderr
    );
    let forced = events(&sb, "force-version");
    assert_eq!(forced.len(), 1, "{}", sb.audit_text());
    assert_eq!(
        forced[0]["detail"],
        "applies to >=1.4.0, <2.0.0, deployment agledger runs 1.3.2"
    );
    assert_eq!(forced[0]["plugin"]["version"], "0.4.0");
    // The override comes before the run it allowed.
    let verbs: Vec<String> = sb
        .audit()
        .iter()
        .filter(|e| e["capability"] == "run")
        .map(|e| e["verb"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        verbs,
        ["force-version", "start", "end"],
        "{}",
        sb.audit_text()
    );

    // A build that fits is not "forced": nothing to audit.
    let fits = Build::new("0.3.0", "^1.3").write(&sb.path("upgrade-0.3.0.wasm"));
    let out = sb.run(&fits, &["--force-version"], &[]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert_eq!(events(&sb, "force-version").len(), 1);
}

/// A plugin directory with four builds of upgrade and one other plugin.
fn plugin_dir(sb: &Sandbox) -> PathBuf {
    let dir = sb.path("plugins");
    // Newest, fits every 1.x, but asks for more than the policy gives.
    Build {
        grants: &["container=agledger:inspect,stop"],
        ..Build::new("0.5.0", ">=1.0.0, <2.0.0")
    }
    .write(&dir.join("upgrade-0.5.0.wasm"));
    Build::new("0.4.0", ">=1.4.0, <2.0.0").write(&dir.join("upgrade-0.4.0.wasm"));
    Build::new("0.3.0", ">=1.3.0, <1.4.0").write(&dir.join("upgrade-0.3.0.wasm"));
    Build::new("0.2.0", ">=1.0.0, <2.0.0").write(&dir.join("upgrade-0.2.0.wasm"));
    std::fs::copy(plugin("example"), dir.join("example.wasm")).expect("example");
    dir
}

#[test]
fn run_by_name_picks_the_newest_build_that_fits_and_is_allowed() {
    let sb = with_env_version("1.3.2");
    let dir = plugin_dir(&sb);
    let dir_flag = dir.to_string_lossy().into_owned();
    let out = sb.run(Path::new("upgrade"), &["--plugin-dir", &dir_flag], &[]);
    assert_eq!(out.code, OK, "{}", out.combined());
    let expected = [
        format!("picked upgrade 0.3.0 (upgrade-0.3.0.wasm) from {}: the newest of 4 builds of upgrade that applies to deployment agledger (AGLedger 1.3.2, read from", dir.display()),
        "passed over upgrade 0.5.0 (upgrade-0.5.0.wasm): opshost-testing/upgrade 0.5.0 requests 1 grant the policy does not give: container=agledger:inspect,stop".to_string(),
        "passed over upgrade 0.4.0 (upgrade-0.4.0.wasm): applies to >=1.4.0, <2.0.0, deployment agledger runs 1.3.2".to_string(),
        "passed over upgrade 0.2.0 (upgrade-0.2.0.wasm): fits too, but an older version".to_string(),
    ];
    for want in &expected {
        assert!(
            out.stderr.contains(want.as_str()),
            "lacks {want:?}:\n{}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("example"), "{}", out.stderr);
    // The run that followed is the picked build's, and the choice is audited.
    let start = events(&sb, "start");
    assert_eq!(start.len(), 1, "{}", sb.audit_text());
    assert_eq!(start[0]["plugin"]["version"], "0.3.0");
    let select = events(&sb, "select");
    assert_eq!(select.len(), 1);
    assert_eq!(select[0]["outcome"], "ok");
    assert_eq!(select[0]["plugin"]["version"], "0.3.0");

    // The deployment moves to 1.4.2: the same directory now gives 0.4.0
    // (0.5.0 is still not allowed). The directory comes from the config.
    set_env_version(&sb, "1.4.2");
    sb.write_config(
        "[containers.agledger.version_from]\nenv_file = \"compose/.env\"\n[plugins]\ndir = \"plugins\"\n",
    );
    let out = sb.run(Path::new("upgrade"), &[], &[]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(
        out.stderr.contains("picked upgrade 0.4.0 (upgrade-0.4.0.wasm)")
            && out.stderr.contains(
                "passed over upgrade 0.3.0 (upgrade-0.3.0.wasm): applies to >=1.3.0, <1.4.0, deployment agledger runs 1.4.2"
            ),
        "{}",
        out.stderr
    );
    assert_eq!(events(&sb, "start")[1]["plugin"]["version"], "0.4.0");
}

#[test]
fn run_by_name_refuses_when_no_build_fits_and_lists_them() {
    let sb = with_env_version("2.1.0");
    let dir = plugin_dir(&sb);
    let dir_flag = dir.to_string_lossy().into_owned();
    let out = sb.run(Path::new("upgrade"), &["--plugin-dir", &dir_flag], &[]);
    assert_eq!(out.code, DENIED, "{}", out.combined());
    for want in [
        format!("no build of upgrade in {} applies to the deployment and is allowed by the policy", dir.display()),
        // The version is judged before the policy: 0.5.0's grants do not come up.
        "upgrade 0.5.0 (upgrade-0.5.0.wasm): applies to >=1.0.0, <2.0.0, deployment agledger runs 2.1.0".to_string(),
        "upgrade 0.4.0 (upgrade-0.4.0.wasm): applies to >=1.4.0, <2.0.0, deployment agledger runs 2.1.0".to_string(),
        "upgrade 0.3.0 (upgrade-0.3.0.wasm): applies to >=1.3.0, <1.4.0, deployment agledger runs 2.1.0".to_string(),
        "upgrade 0.2.0 (upgrade-0.2.0.wasm): applies to >=1.0.0, <2.0.0, deployment agledger runs 2.1.0".to_string(),
    ] {
        assert!(out.stderr.contains(&want), "lacks {want:?}:\n{}", out.stderr);
    }
    let select = events(&sb, "select");
    assert_eq!(select.len(), 1, "{}", sb.audit_text());
    assert_eq!(select[0]["outcome"], "refused");
    assert_eq!(select[0]["plugin"]["name"], "upgrade");
    assert!(events(&sb, "start").is_empty());

    // Forced: the newest build the policy allows (0.5.0 is not), audited.
    let out = sb.run(
        Path::new("upgrade"),
        &["--plugin-dir", &dir_flag, "--force-version"],
        &[],
    );
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(
        out.stderr
            .contains("picked upgrade 0.4.0 (upgrade-0.4.0.wasm)")
            && out.stderr.contains("taken because of --force-version"),
        "{}",
        out.stderr
    );
    let forced = events(&sb, "force-version");
    assert_eq!(forced.len(), 1, "{}", sb.audit_text());
    assert_eq!(forced[0]["plugin"]["version"], "0.4.0");

    // A name with no build at all is a usage error naming the directory.
    let out = sb.run(Path::new("rollback"), &["--plugin-dir", &dir_flag], &[]);
    assert_eq!(out.code, USAGE, "{}", out.combined());
    assert!(
        out.stderr.contains("no build of plugin \"rollback\"")
            && out.stderr.contains("--plugin-dir"),
        "{}",
        out.stderr
    );
}

/// The stand-in deployment's own `/conformance` and `.env`: the field the
/// host reads is the one the product serves. Read-only, under the lock.
#[test]
fn the_standin_deployment_is_read_from_its_conformance_and_its_env() {
    use common::standin::{deployment_lock, Mode};
    let _lock = deployment_lock();
    let mode = Mode::Bundled;
    let install = mode.install();
    let served = {
        use std::io::Read;
        let mut s = std::net::TcpStream::connect(mode.api()).expect("stand-in API");
        write!(
            s,
            "GET /conformance HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("response");
        let body = response.split("\r\n\r\n").nth(1).expect("body");
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        json["version"].as_str().expect("version").to_string()
    };
    for source in [
        format!(
            "[http.standin]\nurl = \"http://{}\"\nbearer_token_file = \"{install}/standin-platform-key\"\n\
             [containers.agledger.version_from]\nhttp = \"standin\"\n",
            mode.api()
        ),
        format!("[containers.agledger.version_from]\nenv_file = \"{install}/compose/.env\"\n"),
    ] {
        let sb = Sandbox::new();
        sb.write_config(&source);
        sb.write_policy(POLICY);
        let misfit = Build::new("0.9.0", ">=9.0.0").write(&sb.path("misfit.wasm"));
        let out = sb.run(&misfit, &[], &[]);
        assert_eq!(out.code, DENIED, "{}", out.combined());
        assert!(
            out.stderr
                .contains(&format!("deployment agledger runs {served} (read from ")),
            "{source}: {}",
            out.stderr
        );
        let fits = Build::new("0.3.0", &format!("={served}")).write(&sb.path("fits.wasm"));
        let out = sb.run(&fits, &[], &[]);
        assert_eq!(out.code, OK, "{source}: {}", out.combined());
        assert!(out.stderr.contains("version fit:"), "{}", out.stderr);
    }
}
