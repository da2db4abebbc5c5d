//! The database is the authority: a plugin's SQL never runs as a role with
//! server-level powers, whatever the operator's URL logs in as.
//!
//! A *server-level power* is superuser, CREATEROLE (in PostgreSQL <= 15 it
//! can grant itself the predefined roles below), REPLICATION, or membership
//! (direct or through other roles, i.e. anything `SET ROLE` can reach) in
//! a superuser or CREATEROLE role or in `pg_read_server_files`,
//! `pg_write_server_files`, `pg_execute_server_program` or
//! `pg_signal_backend`.
//!
//! When the operator's login holds none of them (an application role, an
//! owner role with CREATEDB as on a managed database), plugin sessions log
//! in as it. When it does (the bundled database's `POSTGRES_USER` is a
//! superuser; RDS's master user has CREATEROLE), the host provisions one
//! login role per database and level through that login, and plugin
//! sessions log in as those instead (never `SET ROLE`: a switched role can
//! switch back):
//! - `opshost_<db>_read`: USAGE on the database's schemas, SELECT on their
//!   tables and sequences (not `pg_read_all_data`: it reads `pg_authid`,
//!   every role's password verifier, on every database);
//! - `opshost_<db>_write`: also INSERT, UPDATE, DELETE and sequences;
//! - `opshost_<db>_admin`: also TEMP on the database. No CREATE anywhere:
//!   the product logs in as the same superuser, and a function or operator
//!   planted where its search_path looks (`public`, a schema named after
//!   it) would run with its rights. Never membership in the owner role,
//!   which may own other databases too.
//!
//! `<db>` is the granted database: sessions on its `<db>_<suffix>` siblings
//! (a restore being verified) use the same roles, granted there too.
//! Their passwords are derived (HMAC-SHA256) from the operator's password
//! and the role's name: stable across runs and processes, never stored,
//! never shown to a plugin or the audit log, and changed with the
//! operator's password. The server only ever receives a SCRAM verifier
//! computed here, so no password appears in a server log. Provisioning runs
//! in one transaction under an advisory lock (concurrent runs wait for each
//! other), through a session whose `search_path` is `pg_catalog, pg_temp`
//! (nothing a plugin planted can run as the operator's login). Every
//! session is checked before the plugin gets it; one whose role holds a
//! power is refused.

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::super::CapError;
use super::connect::{self, Target};
use super::{pg_message, quote_ident};
use crate::policy::DbLevel;

/// The server-level powers `$1` holds, directly or through membership.
/// `pg_read_all_data` counts: it reads `pg_authid` (password verifiers).
const POWERS: &str = "SELECT r.rolname::text, r.rolsuper, r.rolcreaterole, r.rolreplication \
     FROM pg_catalog.pg_roles r WHERE pg_catalog.pg_has_role($1::text::name, r.oid, 'MEMBER') \
     AND (r.rolsuper OR r.rolcreaterole OR r.rolreplication OR r.rolname::text = ANY (ARRAY[\
     'pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program', 'pg_signal_backend', \
     'pg_read_all_data', 'pg_write_all_data', 'pg_create_subscription'])) \
     ORDER BY 1";

fn failed(what: &str, e: tokio_postgres::Error) -> CapError {
    CapError::Failed(format!("{what}: {}", pg_message(&e)))
}

/// The powers `role` holds, as phrases for a message; empty when none.
async fn powers_of(client: &Client, role: &str) -> Result<Vec<String>, CapError> {
    let rows = client
        .query(POWERS, &[&role])
        .await
        .map_err(|e| failed("checking the role's powers", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            let via = if name == role {
                String::new()
            } else {
                format!(" (through {name})")
            };
            if r.get::<_, bool>(1) {
                format!("superuser{via}")
            } else if r.get::<_, bool>(2) {
                format!("CREATEROLE{via}")
            } else if r.get::<_, bool>(3) {
                format!("REPLICATION{via}")
            } else {
                format!("member of {name}")
            }
        })
        .collect())
}

async fn session_user(client: &Client) -> Result<String, CapError> {
    let row = client
        .query_one("SELECT session_user::text", &[])
        .await
        .map_err(|e| failed("reading the session's role", e))?;
    Ok(row.get(0))
}

/// The login role of the plugin sessions for `db` at `level`: at most 63
/// bytes, lower-case letters, digits and `_`.
pub fn role_name(db: &str, level: DbLevel) -> String {
    let level = match level {
        DbLevel::Read => "read",
        DbLevel::Write => "write",
        DbLevel::Admin => "admin",
    };
    let clean: String = db
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let base = if clean.len() <= 40 && clean == db {
        clean
    } else {
        // Distinct databases must not share a role: keep a digest.
        let digest = hex::encode(Sha256::digest(db.as_bytes()));
        format!("{}_{}", &clean[..clean.len().min(30)], &digest[..8])
    };
    format!("opshost_{base}_{level}")
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length: new_from_slice cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 accepts any key length"),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256(operator password, role name): the same in every run, never
/// written anywhere. No operator password: no role password either (the
/// server then authenticates both the same way: trust, peer, certificates).
fn password_for(operator: &Target, role: &str) -> Option<String> {
    let key = operator.password()?;
    Some(hex::encode(hmac_sha256(
        key.as_bytes(),
        &[b"opshost plugin role ", role.as_bytes()],
    )))
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/
/// 7677, as `password_encryption = scram-sha-256` makes it): what the host
/// sends instead of the password. The salt is derived too, so the verifier
/// is the same in every run.
fn scram_verifier(password: &str, role: &str) -> String {
    const ITERATIONS: u32 = 4096;
    let salt = &hmac_sha256(password.as_bytes(), &[b"opshost salt ", role.as_bytes()])[..16];
    // PBKDF2-HMAC-SHA256 with one output block (32 bytes).
    let mut u = hmac_sha256(password.as_bytes(), &[salt, &1u32.to_be_bytes()]);
    let mut salted = u;
    for _ in 1..ITERATIONS {
        u = hmac_sha256(password.as_bytes(), &[&u]);
        salted.iter_mut().zip(u).for_each(|(s, x)| *s ^= x);
    }
    let client_key = hmac_sha256(&salted, &[b"Client Key"]);
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac_sha256(&salted, &[b"Server Key"]);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored_key),
        b64.encode(server_key)
    )
}

fn password_clause(password: Option<&str>, role: &str) -> String {
    match password {
        // Base64 and `$:` only: safe inside a literal (utility statements
        // take no parameters).
        Some(p) => format!("PASSWORD '{}'", scram_verifier(p, role)),
        None => "PASSWORD NULL".into(),
    }
}

/// Create `role` if missing and give it exactly the rights of `level` on
/// the database `admin` is connected to, in one transaction that waits for
/// any other run provisioning on this server.
async fn provision(
    admin: &Client,
    role: &str,
    password: Option<&str>,
    level: DbLevel,
) -> Result<(), CapError> {
    let r = quote_ident(role);
    admin
        .batch_execute("BEGIN; SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('opshost plugin roles'))")
        .await
        .map_err(|e| failed("locking the plugin roles", e))?;
    let result = grants(admin, role, &r, password, level).await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    admin
        .batch_execute(end)
        .await
        .map_err(|e| failed("provisioning the plugin role", e))?;
    result
}

async fn grants(
    admin: &Client,
    role: &str,
    r: &str,
    password: Option<&str>,
    level: DbLevel,
) -> Result<(), CapError> {
    let query = |sql: &'static str| async move {
        admin
            .query(sql, &[&role])
            .await
            .map_err(|e| failed("reading the catalog", e))
    };
    let mut sql = Vec::new();
    let exists = !query("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname::text = $1::text")
        .await?
        .is_empty();
    if !exists {
        sql.push(format!(
            "CREATE ROLE {r} WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION CONNECTION LIMIT 32 {}",
            password_clause(password, role)
        ));
    }
    // Left over from an older opshost, or granted by hand: they read
    // every database and pg_authid.
    let inherited = if exists {
        query(
            "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname::text = ANY (ARRAY['pg_read_all_data', 'pg_write_all_data']) \
             AND pg_catalog.pg_has_role($1::text::name, oid, 'MEMBER')",
        )
        .await?
    } else {
        Vec::new()
    };
    for row in inherited {
        sql.push(format!(
            "REVOKE {} FROM {r}",
            quote_ident(&row.get::<_, String>(0))
        ));
    }
    // Rights on this database's own schemas only, granted again at every
    // session so that new tables are covered.
    let schemas = admin
        .query(
            "SELECT nspname::text FROM pg_catalog.pg_namespace \
             WHERE NOT starts_with(nspname::text, 'pg_') AND nspname::text <> 'information_schema' ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| failed("listing the database's schemas", e))?;
    let names: Vec<String> = schemas.iter().map(|row| row.get::<_, String>(0)).collect();
    for name in &names {
        let schema = quote_ident(name);
        sql.push(format!("GRANT USAGE ON SCHEMA {schema} TO {r}"));
        sql.push(format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {r}"
        ));
        sql.push(format!(
            "GRANT SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {r}"
        ));
        if level >= DbLevel::Write {
            sql.push(format!(
                "GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {r}"
            ));
            sql.push(format!(
                "GRANT USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {r}"
            ));
        }
    }
    // No CREATE anywhere, at any level: where the login is a superuser, the
    // product logs in as it too, and a function or operator created in a
    // schema on its search_path (`public`, or a schema named after it)
    // would run with its rights. Admin gets temporary objects only; the
    // product's own migrations run in its migrate container.
    let db: String = admin
        .query_one("SELECT pg_catalog.current_database()::text", &[])
        .await
        .map_err(|e| failed("reading the database name", e))?
        .get(0);
    let db = quote_ident(&db);
    sql.push(format!("REVOKE CREATE ON DATABASE {db} FROM {r}"));
    if names.iter().any(|n| n == "public") {
        sql.push(format!("REVOKE CREATE ON SCHEMA public FROM {r}"));
    }
    if level == DbLevel::Admin {
        sql.push(format!("GRANT TEMPORARY ON DATABASE {db} TO {r}"));
    }
    for statement in sql {
        admin.batch_execute(&statement).await.map_err(|e| {
            // The statement may hold a verifier: name its start only.
            failed(
                &format!(
                    "provisioning the plugin role {role} ({}…)",
                    statement.chars().take(40).collect::<String>()
                ),
                e,
            )
        })?;
    }
    Ok(())
}

/// A session for the plugin at `level`, as a role without server-level
/// powers, every statement bounded by `statement_timeout`. `role_db` is
/// the granted database, whose roles also serve its siblings.
pub async fn plugin_session(
    operator: &Target,
    level: DbLevel,
    statement_timeout: Duration,
    resource: &str,
    role_db: &str,
) -> Result<(Client, Target), CapError> {
    let client = connect::connect(operator).await?;
    let login = session_user(&client).await?;
    let powers = powers_of(&client, &login).await?;
    let plugin_side = operator
        .for_plugin()
        .with_statement_timeout(statement_timeout);
    if powers.is_empty() {
        drop(client);
        let session = connect::connect(&plugin_side).await?;
        return Ok((session, plugin_side));
    }
    let may_create_roles = client
        .query_one(
            "SELECT rolsuper OR rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = session_user",
            &[],
        )
        .await
        .map_err(|e| failed("checking the login's attributes", e))?
        .get::<_, bool>(0);
    if !may_create_roles {
        return Err(CapError::Denied(format!(
            "[db.{resource}] logs in as {login}, which holds server-level powers ({}) and may not create a restricted role for plugins: give opshost a login without those powers, or one with CREATEROLE",
            powers.join(", ")
        )));
    }
    let role = role_name(role_db, level);
    let password = password_for(operator, &role);
    provision(&client, &role, password.as_deref(), level).await?;
    let restricted = plugin_side.with_login(&role, password.as_deref());
    let session = match connect::connect(&restricted).await {
        Ok(s) => s,
        // The role predates a change of the operator's password: reset it.
        Err(_) if password.is_some() => {
            client
                .batch_execute(&format!(
                    "ALTER ROLE {} WITH {}",
                    quote_ident(&role),
                    password_clause(password.as_deref(), &role)
                ))
                .await
                .map_err(|e| failed(&format!("resetting the password of {role}"), e))?;
            connect::connect(&restricted).await?
        }
        Err(e) => return Err(e),
    };
    // Checked through the host's own session (its search_path is locked):
    // nothing the plugin planted in its database can answer for the catalog.
    let left = powers_of(&client, &role).await?;
    drop(client);
    if !left.is_empty() {
        return Err(CapError::Denied(format!(
            "the plugin role {role} holds server-level powers ({}): someone granted them; revoke them (REVOKE … FROM {role}) or drop the role and let opshost make it again",
            left.join(", ")
        )));
    }
    Ok((session, restricted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_short_distinct_and_plain() {
        assert_eq!(
            role_name("agledger", DbLevel::Read),
            "opshost_agledger_read"
        );
        let long = "a".repeat(63);
        let other = format!("{}b", "a".repeat(62));
        let (x, y) = (
            role_name(&long, DbLevel::Admin),
            role_name(&other, DbLevel::Admin),
        );
        assert!(x.len() <= 63 && y.len() <= 63);
        assert_ne!(x, y);
        assert_ne!(
            role_name("My-DB", DbLevel::Read),
            role_name("my_db", DbLevel::Read)
        );
        assert!(role_name("My-DB", DbLevel::Read)
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }

    #[test]
    fn the_scram_verifier_is_postgresqls_format_and_stable() {
        let v = scram_verifier("secret", "opshost_x_read");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert_eq!(v.matches('$').count(), 2);
        assert_eq!(v, scram_verifier("secret", "opshost_x_read"));
        assert_ne!(v, scram_verifier("other", "opshost_x_read"));
        assert!(!v.contains("secret"));
    }
}
