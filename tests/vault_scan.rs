//! The vault-scan operation against the stand-in's bundled database: an
//! intact vault passes (exit 0), a tampered entry is found (exit 6) with its
//! mandate and reason, and the scan agrees with the product's own
//! `/v1/admin/vault/scan`.

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

fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    let project = std::env::var("OPSHOST_TEST_STANDIN_PROJECT").expect("project");
    std::fs::write(
        sb.path("config.toml"),
        format!(
            "[containers.agledger]\nproject = \"{project}\"\n\
             [db.agledger]\nenv_file = \"{}/compose/.env\"\ncontainer = \"agledger\"\n",
            install()
        ),
    )
    .expect("config");
    sb.write_policy(
        "[[plugin]]\nvendor = \"opshost\"\nname = \"vault-scan\"\nallow = [\"db=agledger:read\"]\n",
    );
    sb
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
