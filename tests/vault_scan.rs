//! The vault-scan operation against the stand-in's bundled database: an
//! intact vault passes (exit 0), a tampered entry is found (exit 6) with its
//! mandate and reason, and the scan agrees with the product's own
//! `/v1/admin/vault/scan`. With a backup directory the scan keeps a
//! verified checkpoint: the next scan proves old entries by digest and
//! verifies only newer signatures; a changed old entry breaks the digest
//! and its mandate is verified in full.

mod common;

use std::io::{Read, Write};

use common::*;

/// The stand-in's own scan (`POST /v1/admin/vault/scan` with the platform key).
fn product_scan() -> serde_json::Value {
    let key = std::fs::read_to_string(format!("{}/standin-platform-key", install()))
        .expect("platform key");
    let mut s = std::net::TcpStream::connect("127.0.0.1:24001").expect("stand-in api");
    write!(
        s,
        "POST /v1/admin/vault/scan HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        key.trim()
    )
    .expect("request");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("response");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

fn install() -> String {
    std::env::var("OPSHOST_TEST_STANDIN").unwrap_or_else(|_| {
        panic!("OPSHOST_TEST_STANDIN is not set: run the tests with tests/run.sh, which brings up the stand-in")
    })
}

fn psql_in_standin(sql: &str) -> String {
    let project = std::env::var("OPSHOST_TEST_STANDIN_PROJECT").expect("project");
    psql_in_container(&project, "agledger", sql)
}

/// A sandbox on the stand-in, its config naming the backup directory the
/// scan keeps its checkpoint in (a granted resource must be configured);
/// without `backups` that path is a file, not a directory the scan can
/// open (a broken mount, say).
fn sandbox_with(backups: bool) -> Sandbox {
    let sb = Sandbox::new();
    let project = std::env::var("OPSHOST_TEST_STANDIN_PROJECT").expect("project");
    if backups {
        std::fs::create_dir_all(sb.path("backups")).expect("backups");
    } else {
        // (Sandbox::new made one.)
        std::fs::remove_dir_all(sb.path("backups")).expect("rm backups");
        std::fs::write(sb.path("backups"), "not a directory").expect("backups file");
    }
    let dir = "[dir.backups]\npath = \"backups\"\n";
    std::fs::write(
        sb.path("config.toml"),
        format!(
            "{dir}[containers.agledger]\nproject = \"{project}\"\n\
             [db.agledger]\nenv_file = \"{}/compose/.env\"\ncontainer = \"agledger\"\n",
            install()
        ),
    )
    .expect("config");
    sb.write_policy(
        "[[plugin]]\nvendor = \"opshost\"\nname = \"vault-scan\"\nallow = [\"db=agledger:read\", \"fs=backups:rw\"]\n",
    );
    sb
}

fn sandbox() -> Sandbox {
    sandbox_with(false)
}

#[test]
fn intact_then_tampered_then_intact_again() {
    let _vault = common::standin::deployment_lock();
    let sb = sandbox();
    let out = sb.run(&plugin("vault-scan"), &["--json"], &[]);
    let v = result_json(&out);
    assert_eq!(v["exit_code"], OK, "{}", out.combined());
    let entries: u64 = psql_in_standin("SELECT count(*) FROM vault_entries")
        .parse()
        .expect("count");
    assert_eq!(v["data"]["scanned_entries"], entries);
    assert_eq!(v["data"]["broken"], serde_json::json!([]));
    // No backup directory to open: no checkpoint, every signature, and it
    // says so.
    assert_eq!(v["data"]["signatures_verified"], entries);
    assert!(
        out.combined()
            .contains("no backup directory to keep a vault checkpoint in"),
        "{}",
        out.combined()
    );

    // Alter one payload (what an attacker with database access would do).
    let mandate = psql_in_standin(
        "UPDATE vault_entries SET payload = payload || ' (altered)' \
         WHERE (mandate_id, chain_position) = (SELECT mandate_id, 2 FROM vault_entries ORDER BY mandate_id LIMIT 1) \
         RETURNING mandate_id",
    );
    let out = sb.run(&plugin("vault-scan"), &["--json"], &[]);
    let product = product_scan();
    psql_in_standin(&format!(
        "UPDATE vault_entries SET payload = left(payload, length(payload) - 10) WHERE mandate_id = '{mandate}' AND chain_position = 2"
    ));
    let theirs: Vec<&str> = product["broken"]
        .as_array()
        .expect("product broken")
        .iter()
        .filter_map(|b| b["mandate_id"].as_str())
        .collect();
    assert_eq!(
        theirs,
        [mandate.as_str()],
        "the product's own scan agrees: {product}"
    );
    let v = result_json(&out);
    assert_eq!(v["exit_code"], ATTENTION, "{}", out.combined());
    let broken = v["data"]["broken"].as_array().expect("broken");
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert_eq!(broken[0]["mandate_id"], mandate);
    assert_eq!(broken[0]["position"], 2);
    assert!(broken[0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("payload altered")));

    let out = sb.run(&plugin("vault-scan"), &[], &[]);
    assert_eq!(out.code, OK, "restored: {}", out.combined());
}

#[test]
fn an_unknown_signing_key_is_reported() {
    let _vault = common::standin::deployment_lock();
    let sb = sandbox();
    let (mandate, saved) = {
        let m = psql_in_standin(
            "SELECT mandate_id FROM vault_entries ORDER BY mandate_id DESC LIMIT 1",
        );
        let key = psql_in_standin(&format!(
            "SELECT key_id FROM vault_entries WHERE mandate_id = '{m}' AND chain_position = 1"
        ));
        (m, key)
    };
    psql_in_standin(&format!("UPDATE vault_entries SET key_id = 'ffffffffffffffff' WHERE mandate_id = '{mandate}' AND chain_position = 1"));
    let out = sb.run(&plugin("vault-scan"), &["--json"], &[]);
    psql_in_standin(&format!("UPDATE vault_entries SET key_id = '{saved}' WHERE mandate_id = '{mandate}' AND chain_position = 1"));
    let v = result_json(&out);
    assert_eq!(v["exit_code"], ATTENTION, "{}", out.combined());
    let reason = v["data"]["broken"][0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.contains("vault_signing_keys does not hold"),
        "{reason}"
    );
    assert_eq!(sb.run(&plugin("vault-scan"), &[], &[]).code, OK);
}

/// `--json` result of a scan with `args`, asserting its exit code.
fn scan(sb: &Sandbox, args: &[&str], code: i32) -> serde_json::Value {
    let out = sb.run(&plugin("vault-scan"), &["--json"], args);
    let v = result_json(&out);
    assert_eq!(v["exit_code"], code, "{}", out.combined());
    v["data"].clone()
}

fn vault_count() -> u64 {
    psql_in_standin("SELECT count(*) FROM vault_entries")
        .parse()
        .expect("count")
}

#[test]
fn a_checkpoint_proves_old_entries_and_a_changed_one_breaks_it() {
    let _vault = common::standin::deployment_lock();
    let sb = sandbox_with(true);
    // Hold back the last entry of one mandate, to append it (validly
    // signed, by the product) after the checkpoint is taken.
    let mandate = psql_in_standin(
        "SELECT mandate_id FROM vault_entries GROUP BY mandate_id HAVING count(*) >= 3 ORDER BY mandate_id LIMIT 1",
    );
    assert!(!mandate.is_empty(), "a mandate with 3 entries");
    let last = psql_in_standin(&format!(
        "SELECT max(chain_position) FROM vault_entries WHERE mandate_id = '{mandate}'"
    ));
    psql_in_standin(&format!(
        "CREATE TABLE IF NOT EXISTS opshost_test_held AS SELECT * FROM vault_entries WITH NO DATA; \
         DELETE FROM opshost_test_held; \
         WITH held AS (DELETE FROM vault_entries WHERE mandate_id = '{mandate}' AND chain_position = {last} RETURNING *) \
         INSERT INTO opshost_test_held SELECT * FROM held"
    ));
    let put_back = || {
        psql_in_standin(
            "INSERT INTO vault_entries SELECT * FROM opshost_test_held ON CONFLICT DO NOTHING; DROP TABLE opshost_test_held",
        )
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let entries = vault_count();
        // First scan: every signature, and a checkpoint written.
        let first = scan(&sb, &[], OK);
        assert_eq!(first["signatures_verified"], entries, "{first}");
        assert_eq!(first["proven_by_checkpoint"], 0, "{first}");
        let kept: serde_json::Value = serde_json::from_slice(
            &std::fs::read(sb.path("backups/.opshost-vault-checkpoint.json")).expect("checkpoint"),
        )
        .expect("checkpoint JSON");
        assert_eq!(
            kept["mandates"][&mandate]["through"].as_i64(),
            Some(last.parse::<i64>().expect("last") - 1)
        );

        // Second scan of the unchanged vault: every entry proven by digest.
        let second = scan(&sb, &[], OK);
        assert_eq!(second["proven_by_checkpoint"], entries, "{second}");
        assert_eq!(second["signatures_verified"], 0, "{second}");

        // The held-back entry appended: only it is signature-verified.
        psql_in_standin("INSERT INTO vault_entries SELECT * FROM opshost_test_held");
        let third = scan(&sb, &[], OK);
        assert_eq!(third["proven_by_checkpoint"], entries, "{third}");
        assert_eq!(third["signatures_verified"], 1, "{third}");
        assert_eq!(third["scanned_entries"], entries + 1);
    }));
    put_back();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }

    // An OLD entry changed (another entry's signature, still valid
    // base64): the digest breaks, the mandate is verified in full and the
    // bad signature found, named with its position.
    let entries = vault_count();
    let saved = psql_in_standin(&format!(
        "SELECT signature FROM vault_entries WHERE mandate_id = '{mandate}' AND chain_position = 1"
    ));
    psql_in_standin(&format!(
        "UPDATE vault_entries SET signature = (SELECT signature FROM vault_entries WHERE mandate_id = '{mandate}' AND chain_position = 2) \
         WHERE mandate_id = '{mandate}' AND chain_position = 1"
    ));
    let tampered =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scan(&sb, &[], ATTENTION)));
    psql_in_standin(&format!(
        "UPDATE vault_entries SET signature = '{saved}' WHERE mandate_id = '{mandate}' AND chain_position = 1"
    ));
    let tampered = tampered.unwrap_or_else(|e| std::panic::resume_unwind(e));
    let broken = tampered["broken"].as_array().expect("broken");
    assert_eq!(broken.len(), 1, "{tampered}");
    assert_eq!(broken[0]["mandate_id"], mandate.as_str());
    assert_eq!(broken[0]["position"], 1);
    assert!(
        broken[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("signature does not verify")),
        "{tampered}"
    );
    let mismatches = tampered["checkpoint_mismatches"]
        .as_array()
        .expect("mismatches");
    assert_eq!(mismatches.len(), 1, "{tampered}");
    assert_eq!(mismatches[0]["mandate_id"], mandate.as_str());
    assert_eq!(mismatches[0]["verified_in_full"], "broken");
    let mandate_entries: u64 = psql_in_standin(&format!(
        "SELECT count(*) FROM vault_entries WHERE mandate_id = '{mandate}'"
    ))
    .parse()
    .expect("count");
    assert_eq!(
        tampered["signatures_verified"], mandate_entries,
        "only the changed mandate is verified again, in full: {tampered}"
    );
    assert_eq!(tampered["proven_by_checkpoint"], entries - mandate_entries);

    // Put back: the checkpoint kept the verified state, so it proves again.
    let again = scan(&sb, &[], OK);
    assert_eq!(again["proven_by_checkpoint"], entries, "{again}");
    assert_eq!(again["signatures_verified"], 0);

    // --full verifies everything whatever the checkpoint says.
    let full = scan(&sb, &["--full"], OK);
    assert_eq!(full["signatures_verified"], entries, "{full}");
    assert_eq!(full["proven_by_checkpoint"], 0);
}
