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
//! - `opshost_<db>_admin`: also CREATE and TEMP on the database and CREATE
//!   on its `public` schema, and membership in the database's owner role
//!   when that owner holds no server-level power itself.
//!
//! Their passwords are derived (HMAC-SHA256) from the operator's password
//! and the role's name: stable across runs and processes, never stored,
//! never shown to a plugin or the audit log, and changed with the
//! operator's password. Every session is checked before the plugin gets it;
//! one whose role holds a power is refused.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::super::CapError;
use super::connect::{self, Target};
use super::{pg_message, quote_ident};
use crate::policy::DbLevel;

/// The server-level powers `$1` holds, directly or through membership.
const POWERS: &str = "SELECT r.rolname::text, r.rolsuper, r.rolcreaterole, r.rolreplication \
     FROM pg_roles r WHERE pg_has_role($1::name, r.oid, 'MEMBER') \
     AND (r.rolsuper OR r.rolcreaterole OR r.rolreplication OR r.rolname IN \
     ('pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program', 'pg_signal_backend')) \
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

/// HMAC-SHA256(operator password, role name): the same in every run, never
/// written anywhere. No operator password: no role password either (the
/// server then authenticates both the same way: trust, peer, certificates).
fn password_for(operator: &Target, role: &str) -> Option<String> {
    let key = operator.password()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).ok()?;
    mac.update(b"opshost plugin role ");
    mac.update(role.as_bytes());
    Some(hex::encode(mac.finalize().into_bytes()))
}

/// Create or reset `role` with exactly the rights of `level`, through the
/// operator's session on the granted database.
async fn provision(
    admin: &Client,
    role: &str,
    password: Option<&str>,
    level: DbLevel,
) -> Result<(), CapError> {
    let r = quote_ident(role);
    // Hex digits only: safe inside a literal (utility statements take no
    // parameters).
    let pw = match password {
        Some(p) => format!("PASSWORD '{p}'"),
        None => "PASSWORD NULL".into(),
    };
    let exists = admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await
        .map_err(|e| failed("looking up the plugin role", e))?
        .is_some();
    let mut sql = vec![if exists {
        // Only attributes a CREATEROLE (non-superuser) login may set; the
        // check after login refuses a role someone made more powerful.
        format!("ALTER ROLE {r} WITH LOGIN INHERIT NOCREATEDB NOCREATEROLE {pw}")
    } else {
        format!("CREATE ROLE {r} WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION {pw}")
    }];
    // Not pg_read_all_data: it also reads pg_authid (every role's password
    // verifier) and pg_user_mapping. Rights on this database's own schemas
    // only, granted again at every session so new tables are covered.
    sql.push(format!(
        "REVOKE pg_read_all_data, pg_write_all_data FROM {r}"
    ));
    let schemas = admin
        .query(
            "SELECT nspname::text FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| failed("listing the database's schemas", e))?;
    for row in schemas {
        let schema = quote_ident(&row.get::<_, String>(0));
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
    if level == DbLevel::Admin {
        let db: String = admin
            .query_one("SELECT current_database()::text", &[])
            .await
            .map_err(|e| failed("reading the database name", e))?
            .get(0);
        sql.push(format!(
            "GRANT CREATE, TEMPORARY ON DATABASE {} TO {r}",
            quote_ident(&db)
        ));
        sql.push(format!("GRANT USAGE, CREATE ON SCHEMA public TO {r}"));
    }
    for statement in sql {
        match admin.batch_execute(&statement).await {
            Ok(()) => {}
            // CREATE ROLE racing another run's: the other one made it.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => {}
            Err(e) => {
                return Err(failed(
                    &format!("provisioning the plugin role {role} ({statement:.40}…)"),
                    e,
                ))
            }
        }
    }
    if level == DbLevel::Admin {
        // Owner-level DDL when the owner is an ordinary role; a superuser
        // owner (the bundled database) is never reachable from a plugin.
        let owner: String = admin
            .query_one(
                "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()",
                &[],
            )
            .await
            .map_err(|e| failed("reading the database owner", e))?
            .get(0);
        if powers_of(admin, &owner).await?.is_empty() && owner != role {
            admin
                .batch_execute(&format!("GRANT {} TO {r}", quote_ident(&owner)))
                .await
                .map_err(|e| failed(&format!("granting {owner} to {role}"), e))?;
        }
    }
    Ok(())
}

/// A session for the plugin at `level`, as a role without server-level
/// powers, every statement bounded by `statement_timeout`.
pub async fn plugin_session(
    operator: &Target,
    level: DbLevel,
    statement_timeout: Duration,
    resource: &str,
) -> Result<(Client, Target), CapError> {
    let operator = operator.with_statement_timeout(statement_timeout);
    let client = connect::connect(&operator).await?;
    let login = session_user(&client).await?;
    let powers = powers_of(&client, &login).await?;
    if powers.is_empty() {
        return Ok((client, operator));
    }
    let may_create_roles = client
        .query_one(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = session_user",
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
    let role = role_name(operator.dbname(), level);
    let password = password_for(&operator, &role);
    let provisioned = provision(&client, &role, password.as_deref(), level).await;
    if provisioned.is_err() {
        // Two runs granting at once may collide ("tuple concurrently
        // updated"): once more, then give up with the message.
        tokio::time::sleep(Duration::from_millis(200)).await;
        provision(&client, &role, password.as_deref(), level).await?;
    }
    drop(client);
    let restricted = operator.with_login(&role, password.as_deref());
    let session = connect::connect(&restricted).await?;
    let left = powers_of(&session, &role).await?;
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
}
