//! The `seed` role: realistic data for tests. Mandates, a signed vault chain
//! per mandate (VAULT_SIGNING_KEY), API keys (the first one with role
//! `platform`, printed as `platform-key=<key>`), and the signing key's
//! public row in vault_signing_keys if it is missing.
//!
//!   agledger seed --mandates N --entries-per-mandate M --api-keys K

use serde_json::json;

use crate::db::{self, pg_err, Purpose};
use crate::{apikeys, config, migrations, vault};

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub mandates: u32,
    pub entries_per_mandate: u32,
    pub api_keys: u32,
}

pub fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        mandates: 3,
        entries_per_mandate: 5,
        api_keys: 2,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let slot = match flag {
            "--mandates" => &mut o.mandates,
            "--entries-per-mandate" => &mut o.entries_per_mandate,
            "--api-keys" => &mut o.api_keys,
            _ => {
                return Err(format!(
                    "unknown argument {arg:?}; usage: agledger seed --mandates N --entries-per-mandate M --api-keys K"
                ))
            }
        };
        let value = match inline {
            Some(v) => v,
            None => it.next().cloned().ok_or(format!("{flag} needs a number"))?,
        };
        *slot = value
            .parse()
            .map_err(|_| format!("{flag} needs a number, got {value:?}"))?;
    }
    Ok(o)
}

const TITLES: &[&str] = &[
    "Quarterly vendor onboarding",
    "Invoice reconciliation",
    "Customer refund approvals",
    "Supplier due diligence",
    "Contract renewal review",
    "Travel expense audit",
];
const EVENTS: &[&str] = &[
    "mandate.created",
    "mandate.accepted",
    "task.delegated",
    "evidence.submitted",
    "verification.passed",
    "settlement.recorded",
];
const ROLES: &[&str] = &["admin", "agent", "reader"];

pub async fn run(o: Options) -> Result<(), String> {
    config::check_removed_vars()?;
    let secrets = config::api_key_secrets()?;
    let keys = config::vault_keys()?;
    let version = config::version();
    let mut client = db::connect(Purpose::App).await?;
    let state = migrations::inspect(&client, &version).await?;
    if let Some(msg) = state.downgrade_message(&version) {
        return Err(msg);
    }
    if !state.pending.is_empty() {
        return Err(format!(
            "migrations {} are not applied: run `agledger migrate` first",
            migrations::ids(&state.pending)
        ));
    }
    let key_id = vault::key_id(&keys.current.verifying_key());
    client
        .execute(
            "INSERT INTO vault_signing_keys (key_id, public_key, algorithm, status, activated_at) \
             VALUES ($1, $2, 'ed25519', 'active', now()) ON CONFLICT (key_id) DO NOTHING",
            &[
                &key_id,
                &vault::public_key_b64(&keys.current.verifying_key()),
            ],
        )
        .await
        .map_err(|e| format!("cannot register the vault signing key: {}", pg_err(&e)))?;

    let now = unix_now();
    let tx = client
        .transaction()
        .await
        .map_err(|e| format!("cannot begin a transaction: {}", pg_err(&e)))?;
    for m in 0..o.mandates as usize {
        let mandate_id = format!("mdt_{}", hex::encode(crate::random_bytes::<8>()?));
        let title = format!("{} #{}", TITLES[m % TITLES.len()], m + 1);
        tx.execute(
            "INSERT INTO mandates (id, title) VALUES ($1, $2)",
            &[&mandate_id, &title],
        )
        .await
        .map_err(|e| format!("cannot insert mandate: {}", pg_err(&e)))?;
        let mut positions: Vec<i64> = Vec::new();
        let mut payloads: Vec<String> = Vec::new();
        let mut hashes: Vec<String> = Vec::new();
        let mut previous: Vec<Option<String>> = Vec::new();
        let mut signatures: Vec<String> = Vec::new();
        for p in 0..o.entries_per_mandate as usize {
            let payload = json!({
                "mandate_id": mandate_id,
                "event": EVENTS[p % EVENTS.len()],
                "actor": format!("agent-{}", (m + p) % 7 + 1),
                "amount_cents": ((m * 7919 + p * 104_729) % 500_000) as u64,
                "at": iso8601(now.saturating_sub(((o.entries_per_mandate as usize - p) * 60) as u64)),
                "sequence": p + 1,
            })
            .to_string();
            let h = vault::payload_hash(&payload);
            previous.push(hashes.last().cloned());
            signatures.push(vault::sign(&keys.current, &h));
            positions.push(p as i64 + 1);
            payloads.push(payload);
            hashes.push(h);
        }
        if !positions.is_empty() {
            tx.execute(
                "INSERT INTO vault_entries \
                     (mandate_id, chain_position, payload, payload_hash, previous_hash, signature, key_id) \
                 SELECT $1::text, e.pos, e.payload, e.hash, e.prev, e.sig, $7::text \
                 FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[]) \
                     AS e(pos, payload, hash, prev, sig)",
                &[&mandate_id, &positions, &payloads, &hashes, &previous, &signatures, &key_id],
            )
            .await
            .map_err(|e| format!("cannot insert vault entries: {}", pg_err(&e)))?;
        }
    }

    let mut printed = Vec::new();
    for k in 0..o.api_keys as usize {
        let (name, role) = if k == 0 {
            ("platform-operations".to_string(), "platform")
        } else {
            let role = ROLES[(k - 1) % ROLES.len()];
            (format!("{role}-{k}"), role)
        };
        let key = apikeys::new_key()?;
        let id = apikeys::insert(&tx, &secrets, &name, role, &key).await?;
        printed.push((id, role, key));
    }
    tx.commit()
        .await
        .map_err(|e| format!("cannot commit the seed: {}", pg_err(&e)))?;

    for (id, role, key) in &printed {
        if *role == "platform" {
            println!("platform-key={key}");
        } else {
            println!("api-key={key} role={role} id={id}");
        }
    }
    println!(
        "seeded mandates={} vault_entries={} api_keys={} signing_key_id={key_id}",
        o.mandates,
        o.mandates as u64 * o.entries_per_mandate as u64,
        o.api_keys
    );
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn iso8601(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args() {
        let a: Vec<String> = [
            "--mandates",
            "4",
            "--entries-per-mandate=9",
            "--api-keys",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            parse_args(&a).unwrap(),
            Options {
                mandates: 4,
                entries_per_mandate: 9,
                api_keys: 1
            }
        );
        assert!(parse_args(&["--bogus".to_string()]).is_err());
        assert!(parse_args(&["--mandates".to_string()]).is_err());
    }

    #[test]
    fn dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_764_201_600 + 3_723), "2025-11-27T01:02:03Z");
    }
}
