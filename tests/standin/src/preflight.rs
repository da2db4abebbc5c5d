//! The `preflight` role: one line per check, exit 0 only if all pass.
//! Checks: removed variables, API_KEY_SECRET(_PREVIOUS), VAULT_SIGNING_KEY(_PREVIOUS),
//! database settings and reachability, migrations of this version applied
//! (and none newer).

use crate::db::{self, Purpose};
use crate::{config, migrations, vault};

struct Report {
    failed: usize,
    total: usize,
}

impl Report {
    fn line(&mut self, name: &str, result: Result<String, String>) -> bool {
        self.total += 1;
        match result {
            Ok(msg) => {
                println!("ok    {name}: {msg}");
                true
            }
            Err(msg) => {
                self.failed += 1;
                println!("FAIL  {name}: {msg}");
                false
            }
        }
    }
}

pub async fn run() -> Result<(), String> {
    let version = config::version();
    let mut r = Report {
        failed: 0,
        total: 0,
    };
    println!("preflight: agledger {version}");

    r.line(
        "removed variables",
        config::check_removed_vars().map(|()| "none set".to_string()),
    );
    r.line(
        "API_KEY_SECRET",
        config::api_key_secrets().map(|s| {
            if s.previous.is_some() {
                "set (64 hex); API_KEY_SECRET_PREVIOUS set (rotation in progress)".to_string()
            } else {
                "set (64 hex)".to_string()
            }
        }),
    );
    r.line(
        "VAULT_SIGNING_KEY",
        config::vault_keys().map(|k| {
            let mut msg = format!("Ed25519 key {}", vault::key_id(&k.current.verifying_key()));
            if let Some(p) = &k.previous {
                msg.push_str(&format!(
                    "; previous key {}",
                    vault::key_id(&p.verifying_key())
                ));
            }
            msg
        }),
    );
    let mode = if config::env_nonempty("DATABASE_URL").is_some()
        || config::env_nonempty("DATABASE_URL_FILE").is_some()
    {
        "external database (DATABASE_URL)"
    } else {
        "bundled database (POSTGRES_*)"
    };
    let settings_ok = r.line(
        "database settings",
        db::pg_config(Purpose::App).map(|_| mode.to_string()),
    );

    let client = if settings_ok {
        connect_and_report(&mut r).await
    } else {
        None
    };

    match &client {
        None => {
            r.line(
                "migrations",
                Err("not checked: the database is not reachable".to_string()),
            );
        }
        Some(c) => {
            let result = migrations::inspect(c, &version).await.and_then(|s| {
                if let Some(msg) = s.downgrade_message(&version) {
                    Err(msg)
                } else if !s.pending.is_empty() {
                    Err(format!(
                        "not applied: {} (run the migrate container of {version})",
                        migrations::ids(&s.pending)
                    ))
                } else {
                    Ok(format!("all applied ({})", migrations::ids(&s.applied)))
                }
            });
            r.line("migrations", result);
        }
    }

    if r.failed == 0 {
        println!("preflight: ok ({} checks)", r.total);
        Ok(())
    } else {
        Err(format!("{} of {} checks failed", r.failed, r.total))
    }
}

/// Connect and report the server version; the client when it worked.
async fn connect_and_report(r: &mut Report) -> Option<tokio_postgres::Client> {
    let client = match db::connect(Purpose::App).await {
        Ok(client) => client,
        Err(e) => {
            r.line("database", Err(e));
            return None;
        }
    };
    let answer = client
        .query_one("SELECT current_setting('server_version')", &[])
        .await;
    match answer {
        Ok(row) => {
            let server: String = row.get(0);
            r.line("database", Ok(format!("reachable (PostgreSQL {server})")));
            Some(client)
        }
        Err(e) => {
            r.line("database", Err(db::pg_err(&e)));
            None
        }
    }
}
