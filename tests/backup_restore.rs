//! backup and restore against the AGLedger stand-in, in both database
//! modes: round trips on seeded data, refused archives (corrupt, truncated,
//! foreign, tampered), the confirmation rule, kill -9 in the middle of
//! either, retention's edge cases, and the vendor script's archive layout.
//!
//! Every "nothing changed" claim is checked against the real deployment:
//! a fingerprint of the data, the containers' start times and the list of
//! databases on the server.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::standin::*;
use common::*;

fn sandbox(mode: Mode) -> Sandbox {
    let sb = Sandbox::new();
    let install = mode.install();
    let db = match mode {
        Mode::Bundled => {
            format!("env_file = \"{install}/compose/.env\"\ncontainer = \"agledger\"\n")
        }
        Mode::External => format!("env_file = \"{install}/compose/.env\"\n"),
    };
    std::fs::write(
        sb.path("config.toml"),
        format!(
            "[dir.backups]\npath = \"backups\"\n\
             [containers.agledger]\nproject = \"{}\"\n\
             [db.agledger]\n{db}\
             [http.api]\nurl = \"http://{}\"\n",
            mode.project(),
            mode.api()
        ),
    )
    .expect("config");
    std::fs::create_dir_all(sb.path("backups")).expect("backups");
    sb.write_policy(
        "[[plugin]]\nvendor = \"opshost\"\nname = \"backup\"\n\
         allow = [\"db=agledger:admin\", \"fs=backups:rw\", \"http=api/health:GET\"]\n\
         [[plugin]]\nvendor = \"opshost\"\nname = \"restore\"\n\
         allow = [\"db=agledger:admin\", \"fs=backups:rw\", \"container=agledger:inspect,stop,start,run\", \"http=api/health:GET\"]\n\
         [[plugin]]\nvendor = \"opshost\"\nname = \"vault-scan\"\nallow = [\"db=agledger:read\", \"fs=backups:rw\"]\n",
    );
    sb
}

/// What is in the backup directory, less the files opshost keeps there
/// for good (the deployment lock, the list of verified backups).
fn backups(sb: &Sandbox) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sb.path("backups"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n != ".opshost-deployment.lock"
                && n != ".opshost-verified-backups.json"
                && n != ".opshost-vault-checkpoint.json"
        })
        .collect();
    names.sort();
    names
}

fn backup(sb: &Sandbox, args: &[&str]) -> String {
    let out = sb.run(&plugin("backup"), &["--json", "--timeout", "5m"], args);
    let v = result_json(&out);
    assert_eq!(out.code, OK, "backup: {}", out.combined());
    v["data"]["backup"]
        .as_str()
        .expect("the result names the backup")
        .to_string()
}

fn restore(sb: &Sandbox, args: &[&str]) -> Output {
    sb.run(&plugin("restore"), &["--json", "--timeout", "10m"], args)
}

/// What must hold after a refused restore: same data, same containers
/// (never stopped), no extra database, nothing staged, no journal.
struct Untouched {
    mode: Mode,
    fingerprint: String,
    started: String,
    databases: Vec<String>,
}

impl Untouched {
    fn now(mode: Mode) -> Self {
        Self {
            mode,
            fingerprint: fingerprint(mode),
            started: started_at(mode),
            databases: databases(mode),
        }
    }

    fn check(&self, sb: &Sandbox, what: &str) {
        assert_eq!(
            fingerprint(self.mode),
            self.fingerprint,
            "{what}: data changed"
        );
        assert_eq!(
            started_at(self.mode),
            self.started,
            "{what}: services were restarted"
        );
        assert_eq!(
            databases(self.mode),
            self.databases,
            "{what}: databases changed"
        );
        assert_eq!(health(self.mode), 200, "{what}: API unhealthy");
        let staged: Vec<String> = backups(sb)
            .into_iter()
            .filter(|n| n.starts_with(".opshost-restore"))
            .collect();
        assert!(staged.is_empty(), "{what}: left {staged:?}");
    }
}

fn round_trip(mode: Mode) {
    let sb = sandbox(mode);
    seed(mode, 12, 20);
    // A verified vault (the scan keeps its checkpoint beside the backups),
    // then 2 entries more that the checkpoint does not cover.
    let scan = sb.run(&plugin("vault-scan"), &[], &[]);
    assert_eq!(scan.code, OK, "{}", scan.combined());
    seed(mode, 1, 2);
    let entries: u64 = sql(mode, "SELECT count(*) FROM vault_entries")
        .parse()
        .expect("n");
    let before = fingerprint(mode);
    let name = backup(&sb, &[]);
    assert!(
        name.starts_with("backup-") && name.ends_with(".tar.gz"),
        "{name}"
    );
    // The vendor's layout, readable by plain tar, checksums as recorded.
    let listing = Command::new("tar")
        .args(["tzf", &name])
        .current_dir(sb.path("backups"))
        .output()
        .expect("tar");
    let stamp = &name["backup-".len()..name.len() - ".tar.gz".len()];
    let listing = String::from_utf8_lossy(&listing.stdout);
    for file in [
        "db.dump",
        "vault-public-keys.csv",
        "manifest.json",
        "vault-checkpoint.json",
    ] {
        assert!(
            listing.contains(&format!("{stamp}/{file}")),
            "{file} missing: {listing}"
        );
    }
    let manifest = Command::new("tar")
        .args(["xzOf", &name, &format!("{stamp}/manifest.json")])
        .current_dir(sb.path("backups"))
        .output()
        .expect("tar");
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).expect("manifest");
    assert_eq!(manifest["agledger_version"], "1.3.2");
    assert!(manifest["postgres_server_version"]
        .as_str()
        .is_some_and(|v| v.starts_with("15")));
    let mandates: u64 = sql(mode, "SELECT count(*) FROM mandates")
        .parse()
        .expect("n");
    assert_eq!(manifest["row_counts"]["public.mandates"], mandates);
    let keys = Command::new("tar")
        .args(["xzOf", &name, &format!("{stamp}/vault-public-keys.csv")])
        .current_dir(sb.path("backups"))
        .output()
        .expect("tar");
    assert!(String::from_utf8_lossy(&keys.stdout).starts_with("key_id,"));

    // Change the data, then restore: the backup's state comes back.
    sql(mode, "DELETE FROM vault_entries WHERE chain_position > 3");
    sql(
        mode,
        "INSERT INTO mandates (id, title) VALUES ('mdt_after_backup', 'after')",
    );
    assert_ne!(fingerprint(mode), before);
    let out = restore(&sb, &[&name, "--yes"]);
    assert_eq!(out.code, OK, "restore: {}", out.combined());
    let v = result_json(&out);
    assert_eq!(v["data"]["previous_database"], "dropped");
    // The restore's vault check proved what the backup's checkpoint
    // covers by digest and verified only the 2 newer signatures.
    assert_eq!(
        v["data"]["vault"]["proven_by_checkpoint"],
        entries - 2,
        "{v}"
    );
    assert_eq!(v["data"]["vault"]["signatures_verified"], 2, "{v}");
    assert_eq!(v["data"]["vault"]["scanned_entries"], entries, "{v}");
    assert!(
        v["data"]["tables_checked"].as_u64().unwrap_or(0) >= 4,
        "{v}"
    );
    assert_eq!(
        fingerprint(mode),
        before,
        "the restored data is the backup's"
    );
    assert_eq!(databases(mode), vec![mode.database().to_string()]);
    assert_eq!(health(mode), 200);
    let scan = sb.run(&plugin("vault-scan"), &[], &[]);
    assert_eq!(scan.code, OK, "vault chains intact: {}", scan.combined());
    assert_eq!(backups(&sb), vec![name], "no staging, no journal left");
}

#[test]
fn round_trip_bundled_database() {
    let _d = deployment_lock();
    round_trip(Mode::Bundled);
}

#[test]
fn round_trip_external_database() {
    let _d = deployment_lock();
    round_trip(Mode::External);
}

/// A copy of `good` at `name` with `edit` applied to its bytes.
fn variant(sb: &Sandbox, good: &str, name: &str, edit: impl Fn(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(sb.path(&format!("backups/{good}"))).expect("read");
    edit(&mut bytes);
    std::fs::write(sb.path(&format!("backups/{name}")), bytes).expect("write");
}

/// Repack `good` with python's tarfile after `script` changed the tree in `d`.
fn repack(sb: &Sandbox, good: &str, name: &str, script: &str) {
    let dir = sb.path("backups");
    let py = format!(
        "import tarfile, tempfile, os, json, glob\n\
         d = tempfile.mkdtemp()\n\
         tarfile.open('{good}').extractall(d)\n\
         root = glob.glob(d + '/*')[0]\n\
         {script}\n\
         with tarfile.open('{name}', 'w:gz') as t:\n    t.add(root, arcname=os.path.basename(root))\n"
    );
    let st = Command::new("python3")
        .args(["-c", &py])
        .current_dir(&dir)
        .status()
        .expect("python3");
    assert!(st.success());
}

#[test]
fn corrupt_truncated_foreign_and_tampered_archives_are_refused_and_nothing_changes() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let good = backup(&sb, &[]);
    variant(&sb, &good, "truncated.tar.gz", |b| b.truncate(b.len() / 2));
    variant(&sb, &good, "bitflip.tar.gz", |b| {
        let i = b.len() / 2;
        b[i] ^= 0x40;
    });
    std::fs::write(
        sb.path("backups/foreign.tar.gz"),
        "not an archive at all\n".repeat(100),
    )
    .expect("foreign");
    let st = Command::new("tar")
        .args(["czf", "nodump.tar.gz", "-C", "/etc", "hostname"])
        .current_dir(sb.path("backups"))
        .status()
        .expect("tar");
    assert!(st.success());
    // The dump swapped for a valid dump of something else: the manifest's
    // checksum catches it.
    repack(
        &sb,
        &good,
        "swapped.tar.gz",
        "open(root + '/db.dump', 'ab').write(b'x')",
    );
    // A manifest edited to match a different dump would need the same
    // sha256; an edited row count is caught after the restore instead.
    repack(
        &sb,
        &good,
        "wrongcounts.tar.gz",
        "m = json.load(open(root + '/manifest.json'))\n\
         m['row_counts']['public.mandates'] += 1\n\
         open(root + '/manifest.json', 'w').write(json.dumps(m))",
    );

    let untouched = Untouched::now(mode);
    for (file, expected) in [
        ("truncated.tar.gz", "not a readable backup archive"),
        ("bitflip.tar.gz", "not a readable backup archive"),
        ("foreign.tar.gz", "not a readable backup archive"),
        ("nodump.tar.gz", "not an AGLedger backup"),
        ("swapped.tar.gz", "does not match its manifest"),
        ("wrongcounts.tar.gz", "differs from the backup"),
        ("no-such-backup.tar.gz", "no file no-such-backup.tar.gz"),
    ] {
        let out = restore(&sb, &[file, "--yes"]);
        assert_eq!(out.code, PLUGIN_FAILED, "{file}: {}", out.combined());
        let v = result_json(&out);
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{file}: {error}");
        assert!(
            error.contains("Nothing was changed") || error.contains("not touched"),
            "{file} says nothing changed: {error}"
        );
        untouched.check(&sb, file);
    }
}

#[test]
fn restore_without_a_terminal_needs_yes() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let name = backup(&sb, &[]);
    let untouched = Untouched::now(mode);
    // Plain output (no --json), stdin not a terminal, no --yes.
    let out = sb.run(&plugin("restore"), &[], &[&name]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(out.stderr.contains("--yes"), "{}", out.stderr);
    assert!(out.stderr.contains("Nothing was changed"), "{}", out.stderr);
    untouched.check(&sb, "no --yes");
    let refused = sb
        .audit()
        .into_iter()
        .any(|e| e["verb"] == "confirm" && e["outcome"] == "no-terminal");
    assert!(refused, "the unanswered question is audited");
    // opshost's own --yes answers it.
    let out = sb.run(&plugin("restore"), &["--yes"], &[&name]);
    assert_eq!(out.code, OK, "{}", out.combined());
}

/// An archive as the vendor's script makes it: `tar czf` of `<ts>/db.dump`
/// and `<ts>/vault-public-keys.csv`, no manifest.
#[test]
fn a_backup_made_by_the_vendor_script_restores() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let before = fingerprint(mode);
    let stamp = "2026-01-02-030405";
    let dir = sb.path(&format!("backups/{stamp}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let pg = container(mode, "postgres");
    let dump = Command::new("docker")
        .args(["exec", &pg, "pg_dump", "-U", "agledger", "-Fc", "agledger"])
        .output()
        .expect("pg_dump");
    assert!(dump.status.success());
    std::fs::write(dir.join("db.dump"), &dump.stdout).expect("dump");
    std::fs::write(
        dir.join("vault-public-keys.csv"),
        sql(
            mode,
            "COPY vault_signing_keys TO STDOUT WITH (FORMAT csv, HEADER)",
        ),
    )
    .expect("csv");
    let name = format!("backup-{stamp}.tar.gz");
    let st = Command::new("tar")
        .args(["czf", &name, stamp])
        .current_dir(sb.path("backups"))
        .status()
        .expect("tar");
    assert!(st.success());
    std::fs::remove_dir_all(&dir).expect("rm");
    sql(mode, "DELETE FROM vault_entries WHERE chain_position > 2");
    let out = restore(&sb, &[&name, "--yes"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(out.stdout.contains("no manifest.json"), "{}", out.stdout);
    assert_eq!(fingerprint(mode), before);
}

#[test]
fn killing_a_backup_leaves_no_backup_looking_file() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let dir = sb.path("backups");
    // Killed as pg_dump starts writing into the staging directory.
    run_and_kill(&sb, "backup", &[], |line| {
        line.contains("dumping the database")
    });
    let left = backups(&sb);
    assert!(
        !left
            .iter()
            .any(|n| n.starts_with("backup-") && n.ends_with(".tar.gz")),
        "a complete-looking backup exists: {left:?}"
    );
    assert!(!left.is_empty(), "the interrupted backup left its staging");
    // The next run says what it found and still makes a backup.
    let out = sb.run(&plugin("backup"), &["--json"], &[]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(out.stdout.contains("interrupted backup"), "{}", out.stdout);
    // And cleans up when told to.
    let out = sb.run(&plugin("backup"), &["--json"], &["--clean-interrupted"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    let left = backups(&sb);
    assert!(
        left.iter().all(|n| n.starts_with("backup-")),
        "only backups remain: {left:?}"
    );
    assert_eq!(left.len(), 2);
    assert!(dir.exists());
}

/// Kill a restore at `step`, then: the next run refuses and says how to
/// recover; `--recover` puts the deployment back as before the restore.
fn kill_restore_at(step: &str) {
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let name = backup(&sb, &[]);
    sql(
        mode,
        "INSERT INTO mandates (id, title) VALUES ('mdt_newer', 'made after the backup')",
    );
    let before = fingerprint(mode);
    run_and_kill(&sb, "restore", &[&name, "--yes"], |line| {
        line.contains("\"event\":\"step\"") && line.contains(step)
    });
    let out = restore(&sb, &[&name, "--yes"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    let error = result_json(&out)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("was interrupted") && error.contains("--recover"),
        "{error}"
    );

    let out = restore(&sb, &["--recover"]);
    assert_eq!(
        out.code,
        OK,
        "recover after a kill at {step}: {}",
        out.combined()
    );
    assert_eq!(
        fingerprint(mode),
        before,
        "the data from before the restore"
    );
    assert_eq!(databases(mode), vec![mode.database().to_string()]);
    assert_eq!(health(mode), 200);
    assert_eq!(backups(&sb), vec![name.clone()], "journal and staging gone");
    // And the restore works afterwards.
    let out = restore(&sb, &[&name, "--yes"]);
    assert_eq!(out.code, OK, "{}", out.combined());
}

#[test]
fn killing_a_restore_while_it_restores_is_recovered() {
    let _d = deployment_lock();
    kill_restore_at("verifying the restored database");
}

#[test]
fn killing_a_restore_while_the_services_stop_is_recovered() {
    let _d = deployment_lock();
    kill_restore_at("stopping agledger-worker");
}

#[test]
fn killing_a_restore_while_it_swaps_is_recovered() {
    let _d = deployment_lock();
    kill_restore_at("swapping databases");
}

/// A small but complete tar.gz (retention counts only complete files).
fn small_archive(path: &Path) {
    let src = tempfile::tempdir().expect("tmp");
    std::fs::write(src.path().join("db.dump"), "an old backup").expect("write");
    let st = Command::new("tar")
        .arg("czf")
        .arg(path)
        .arg("-C")
        .arg(src.path())
        .arg("db.dump")
        .status()
        .expect("tar");
    assert!(st.success());
}

fn touch(path: &Path, stamp: &str) {
    let st = Command::new("touch")
        .args(["-d", stamp])
        .arg(path)
        .status()
        .expect("touch");
    assert!(st.success());
}

#[test]
fn retention_keeps_the_newest_and_never_touches_what_is_not_a_backup() {
    let _d = deployment_lock();
    let sb = sandbox(Mode::Bundled);
    let dir = sb.path("backups");
    let old: Vec<String> = (1..=6)
        .map(|d| format!("backup-2026-01-0{d}-000000.tar.gz"))
        .collect();
    for name in &old {
        small_archive(&dir.join(name));
    }
    let others = [
        "notes.txt",
        "backup-latest.tar.gz",
        "backup-2026-01-01-000000.tar.gz.sha256",
        ".backup-2025-12-31-000000.tar.gz.opshost-999-0.tmp",
        "backup-2026-02-30-000000.tar.gz",
    ];
    for name in others {
        std::fs::write(dir.join(name), "not a backup").expect("write");
    }
    std::fs::create_dir(dir.join("backup-2025-01-01-000000.tar.gz")).expect("a directory");

    // Bad --keep values: refused before anything happens.
    for bad in ["0", "-2", "seven"] {
        let out = sb.run(&plugin("backup"), &["--json"], &["--keep", bad]);
        assert_eq!(out.code, PLUGIN_FAILED, "--keep {bad}: {}", out.combined());
        assert!(
            result_json(&out)["error"]
                .as_str()
                .is_some_and(|e| e.contains("--keep")),
            "{}",
            out.stdout
        );
    }
    assert_eq!(backups(&sb).len(), old.len() + others.len() + 1);

    // The rollback point (an upgrade's backup) is the oldest one.
    std::fs::write(dir.join(".opshost-rollback-point"), format!("{}\n", old[0])).expect("marker");
    let made = backup(&sb, &["--keep", "3"]);
    let left = backups(&sb);
    for name in [&made, &old[0], &old[4], &old[5]] {
        assert!(left.contains(name), "{name} kept: {left:?}");
    }
    for name in &old[1..4] {
        assert!(!left.contains(name), "{name} removed: {left:?}");
    }
    for name in others {
        assert!(
            left.contains(&name.to_string()),
            "{name} untouched: {left:?}"
        );
    }
    assert!(left.contains(&"backup-2025-01-01-000000.tar.gz".to_string()));

    // The vendor's marker: the newest backup before .pre-upgrade-version.
    std::fs::remove_file(dir.join(".opshost-rollback-point")).expect("rm");
    std::fs::write(dir.join(".pre-upgrade-version"), "1.3.1\n").expect("vendor marker");
    touch(&dir.join(".pre-upgrade-version"), "2026-01-05 12:00:00 UTC");
    let second = backup(&sb, &["--keep", "1"]);
    let left = backups(&sb);
    assert!(left.contains(&second));
    assert!(
        left.contains(&old[4]),
        "the vendor's rollback point kept: {left:?}"
    );
    assert!(!left.contains(&made) || made == second, "{left:?}");
    assert!(
        !left.contains(&old[0]) && !left.contains(&old[5]),
        "{left:?}"
    );

    // A backup from the future does not push out the one just made.
    std::fs::write(dir.join("backup-2099-01-01-000000.tar.gz"), "future").expect("w");
    let third = backup(&sb, &["--keep", "1"]);
    let left = backups(&sb);
    assert!(left.contains(&third), "the new backup survives: {left:?}");
    assert!(left.contains(&"backup-2099-01-01-000000.tar.gz".to_string()));
}

#[test]
fn a_backup_with_broken_vault_chains_is_not_swapped_in_unless_allowed() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let before = fingerprint(mode);
    let target = sql(
        mode,
        "SELECT mandate_id FROM vault_entries WHERE chain_position = 2 ORDER BY mandate_id LIMIT 1",
    );
    // Put the entry back whatever happens, so a failure here does not
    // break the vault for the tests after it.
    struct Repair(String);
    impl Drop for Repair {
        fn drop(&mut self) {
            sql(
                Mode::Bundled,
                &format!("UPDATE vault_entries SET payload = rtrim(payload, ' ') WHERE mandate_id = '{}' AND chain_position = 2", self.0),
            );
        }
    }
    let _repair = Repair(target.clone());
    sql(
        mode,
        &format!("UPDATE vault_entries SET payload = payload || ' ' WHERE mandate_id = '{target}' AND chain_position = 2"),
    );
    let broken = backup(&sb, &[]);
    let tampered = fingerprint(mode);
    // Put the intact data back, then try to restore the broken backup.
    sql(
        mode,
        &format!("UPDATE vault_entries SET payload = rtrim(payload, ' ') WHERE mandate_id = '{target}' AND chain_position = 2"),
    );
    assert_eq!(fingerprint(mode), before);
    let untouched = Untouched::now(mode);
    let out = restore(&sb, &[&broken, "--yes"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(
        out.stdout.contains(&target),
        "the broken mandate is named: {}",
        out.stdout
    );
    assert!(
        out.stdout.contains("--allow-broken-vault"),
        "{}",
        out.stdout
    );
    untouched.check(&sb, "broken vault");
    let out = restore(&sb, &[&broken, "--yes", "--allow-broken-vault"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert_eq!(fingerprint(mode), tampered);
}

/// On a terminal the restore asks; anything but yes cancels it and
/// nothing changes. (`script` gives the run a real pseudo-terminal.)
#[test]
fn restore_on_a_terminal_asks_and_no_means_no() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let name = backup(&sb, &[]);
    let untouched = Untouched::now(mode);
    let command = format!(
        "{} run {} --config {} --policy {} --audit-log {} -- {name}",
        env!("CARGO_BIN_EXE_opshost"),
        plugin("restore").display(),
        sb.path("config.toml").display(),
        sb.path("policy.toml").display(),
        sb.path("audit.ndjson").display(),
    );
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux)");
    // Answer once the question is on the terminal.
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let mut seen = String::new();
    let mut reader = BufReader::new(stdout);
    let mut asked = false;
    let mut buf = [0u8; 256];
    while !asked {
        let n = std::io::Read::read(&mut reader, &mut buf).expect("read");
        if n == 0 {
            break;
        }
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        asked = seen.contains("[y/N]");
    }
    assert!(asked, "the question was asked: {seen}");
    assert!(seen.contains(&format!("with {name}")), "{seen}");
    std::io::Write::write_all(&mut stdin, b"n\n").expect("answer");
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut reader, &mut rest);
    let status = child.wait().expect("wait");
    assert!(!status.success(), "declined is a failure: {seen}{rest}");
    assert!(
        rest.contains("restore cancelled: nothing was changed"),
        "{rest}"
    );
    untouched.check(&sb, "declined");
    let declined = sb
        .audit()
        .into_iter()
        .any(|e| e["verb"] == "confirm" && e["outcome"] == "declined");
    assert!(declined, "the answer is audited");
}

#[test]
fn retention_never_counts_or_removes_a_truncated_backup() {
    let _d = deployment_lock();
    let sb = sandbox(Mode::Bundled);
    let dir = sb.path("backups");
    let good = [
        "backup-2026-01-01-000000.tar.gz",
        "backup-2026-01-02-000000.tar.gz",
    ];
    for name in good {
        small_archive(&dir.join(name));
    }
    // Newer than both, named exactly like a backup, cut off half-way.
    let truncated = "backup-2098-01-01-000000.tar.gz";
    small_archive(&dir.join(truncated));
    let bytes = std::fs::read(dir.join(truncated)).expect("read");
    std::fs::write(dir.join(truncated), &bytes[..bytes.len() / 2]).expect("truncate");

    let out = sb.run(
        &plugin("backup"),
        &["--json", "--timeout", "5m"],
        &["--keep", "2"],
    );
    assert_eq!(out.code, OK, "{}", out.combined());
    let made = result_json(&out)["data"]["backup"]
        .as_str()
        .expect("name")
        .to_string();
    assert!(
        out.stdout
            .contains(&format!("{truncated} is not a complete backup")),
        "the truncated file is reported: {}",
        out.stdout
    );
    let left = backups(&sb);
    assert!(
        left.contains(&truncated.to_string()),
        "never deleted: {left:?}"
    );
    assert!(left.contains(&made), "{left:?}");
    assert!(
        left.contains(&good[1].to_string()),
        "the newest good one is kept: {left:?}"
    );
    assert!(
        !left.contains(&good[0].to_string()),
        "keep 2 counts only complete backups: {left:?}"
    );
}

#[test]
fn backups_are_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let _d = deployment_lock();
    let sb = sandbox(Mode::Bundled);
    let name = backup(&sb, &[]);
    let mode = std::fs::metadata(sb.path("backups").join(&name))
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{name} is {:o}", mode & 0o777);
    // A backup others may write is not restored.
    std::fs::set_permissions(
        sb.path("backups").join(&name),
        std::fs::Permissions::from_mode(0o666),
    )
    .expect("chmod");
    let before = Untouched::now(Mode::Bundled);
    let out = restore(&sb, &[&name, "--yes"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    assert!(
        result_json(&out)["error"]
            .as_str()
            .unwrap_or_default()
            .contains("writable by other users"),
        "{}",
        out.stdout
    );
    before.check(&sb, "a restore of a world-writable backup");
}

/// Start `plugin` in the background; its output once it ends.
#[test]
fn two_operations_at_once_one_runs_the_other_is_refused_naming_it() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let name = backup(&sb, &[]);
    let before = fingerprint(mode);
    // Two restores started together, and a backup beside them.
    let first = spawn(&sb, "restore", &[&name, "--yes"]);
    let second = spawn(&sb, "restore", &[&name, "--yes"]);
    let third = spawn(&sb, "backup", &[]);
    let outs = [finished(first), finished(second), finished(third)];
    let ok = outs.iter().filter(|o| o.code == OK).count();
    let refused: Vec<&Output> = outs
        .iter()
        .filter(|o| {
            result_json(o)["error"]
                .as_str()
                .is_some_and(|e| e.contains("another operation is running on this deployment"))
        })
        .collect();
    assert_eq!(
        ok + refused.len(),
        3,
        "each one ran or was refused: {:?}",
        outs.iter().map(Output::combined).collect::<Vec<_>>()
    );
    assert!(ok >= 1, "one of them ran");
    assert!(
        !refused.is_empty(),
        "they ran at the same time, so one was refused"
    );
    for r in &refused {
        assert_eq!(r.code, PLUGIN_FAILED);
        let error = result_json(r)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            error.contains("opshost process") && error.contains("since"),
            "names the holder: {error}"
        );
        assert!(!error.contains("interrupted"), "{error}");
    }
    assert_eq!(fingerprint(mode), before);
    assert_eq!(databases(mode), vec![mode.database().to_string()]);
    assert_eq!(health(mode), 200);
    assert!(
        backups(&sb)
            .iter()
            .all(|n| !n.starts_with(".opshost-restore")),
        "{:?}",
        backups(&sb)
    );
}

#[test]
fn recover_while_a_restore_runs_is_refused_and_a_dead_holder_blocks_nothing() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    let name = backup(&sb, &[]);
    let before = fingerprint(mode);
    let mut running = spawn(&sb, "restore", &[&name, "--yes"]);
    // Wait until it is swapping, then ask to recover.
    let stdout = running.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        if line.expect("line").contains("swapping databases") {
            break;
        }
    }
    let out = restore(&sb, &["--recover"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    let error = result_json(&out)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("another operation is running") && error.contains("restore"),
        "{error}"
    );
    for _ in lines {}
    let status = running.wait().expect("wait");
    assert!(status.success(), "the running restore finished");
    assert_eq!(fingerprint(mode), before);
    assert_eq!(health(mode), 200);

    // kill -9 of the lock holder: the next run is not blocked, and is the
    // one that says the restore was interrupted.
    run_and_kill(&sb, "restore", &[&name, "--yes"], |line| {
        line.contains("\"event\":\"step\"") && line.contains("verifying the restored database")
    });
    let out = restore(&sb, &["--recover"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert_eq!(databases(mode), vec![mode.database().to_string()]);
    assert_eq!(fingerprint(mode), before);
}

#[test]
fn external_restores_do_not_trip_over_autovacuum() {
    // tests/pg.sh runs autovacuum every second, on every insert, slowly
    // (cost delay): workers are in the databases while restores swap them.
    let _d = deployment_lock();
    let mode = Mode::External;
    let sb = sandbox(mode);
    seed(mode, 20, 50);
    let name = backup(&sb, &[]);
    let before = fingerprint(mode);
    for round in 1..=3 {
        let out = restore(&sb, &[&name, "--yes"]);
        assert_eq!(out.code, OK, "restore {round}: {}", out.combined());
    }
    assert_eq!(fingerprint(mode), before);
    assert_eq!(databases(mode), vec![mode.database().to_string()]);
}

fn restore_test_log(sb: &Sandbox) -> Vec<serde_json::Value> {
    std::fs::read_to_string(sb.path("backups/restore-tests.ndjson"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn the_restore_test_changes_nothing(mode: Mode) {
    let _d = deployment_lock();
    let sb = sandbox(mode);
    let good = backup(&sb, &[]);
    repack(
        &sb,
        &good,
        "wrongcounts.tar.gz",
        "m = json.load(open(root + '/manifest.json'))\n\
         m['row_counts']['public.mandates'] += 1\n\
         open(root + '/manifest.json', 'w').write(json.dumps(m))",
    );
    let untouched = Untouched::now(mode);

    // The newest backup by the time in its name, whatever else is there.
    let out = restore(&sb, &["--test"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    let v = result_json(&out);
    assert_eq!(v["data"]["backup"], good.as_str());
    assert_eq!(v["data"]["passed"], true);
    assert!(
        v["data"]["tables_checked"].as_u64().unwrap_or(0) >= 4,
        "{v}"
    );
    assert!(
        v["data"]["vault"]["scanned_entries"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    untouched.check(&sb, "restore --test");
    let log = restore_test_log(&sb);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0]["backup"], good.as_str());
    assert_eq!(log[0]["passed"], true);
    assert!(log[0]["time"].as_str().unwrap_or_default().ends_with('Z'));

    // A backup that does not restore to what it recorded fails the test,
    // and the failure is recorded too.
    let out = restore(&sb, &["--test", "wrongcounts.tar.gz"]);
    assert_eq!(out.code, PLUGIN_FAILED, "{}", out.combined());
    let error = result_json(&out)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("FAILED") && error.contains("differs from the backup"),
        "{error}"
    );
    assert!(error.contains("not touched"), "{error}");
    untouched.check(&sb, "a failed restore --test");
    let log = restore_test_log(&sb);
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[1]["passed"], false);
    assert!(log[1]["outcome"]
        .as_str()
        .unwrap_or_default()
        .contains("differs from the backup"));
}

#[test]
fn the_restore_test_verifies_a_backup_beside_the_live_bundled_database_and_changes_nothing() {
    the_restore_test_changes_nothing(Mode::Bundled);
}

#[test]
fn the_restore_test_verifies_a_backup_beside_the_live_external_database_and_changes_nothing() {
    the_restore_test_changes_nothing(Mode::External);
}

#[test]
fn a_killed_restore_test_leaves_nothing_behind_after_the_next_one() {
    let _d = deployment_lock();
    let mode = Mode::Bundled;
    let sb = sandbox(mode);
    backup(&sb, &[]);
    let untouched = Untouched::now(mode);
    // What a run killed mid-way leaves: its scratch database, its staging.
    sql(
        mode,
        "CREATE DATABASE agledger_restoretest_20261128_000000_dead",
    );
    std::fs::create_dir_all(sb.path("backups/.opshost-restoretest-dead/x")).expect("staging");
    assert!(databases(mode).contains(&"agledger_restoretest_20261128_000000_dead".to_string()));

    let out = restore(&sb, &["--test"]);
    assert_eq!(out.code, OK, "{}", out.combined());
    assert!(
        out.combined()
            .contains("left by a restore test that did not finish"),
        "{}",
        out.combined()
    );
    untouched.check(&sb, "restore --test after a killed one");
    assert!(!sb.path("backups/.opshost-restoretest-dead").exists());
}
