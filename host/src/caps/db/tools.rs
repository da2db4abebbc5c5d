//! The PostgreSQL client tools, run by the host: `pg_dump -Fc` straight
//! into a file and `pg_restore` straight from one, so dump bytes never cross
//! the sandbox. Files are handed over as open descriptors (opened through
//! cap-std), never as paths a tool could resolve through a symlink.

use std::process::Stdio;

use tokio::process::Command;

use super::super::CapError;
use super::connect::Target;

/// Last lines of a tool's stderr, for the error message.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(6)..].join("; ")
}

fn command(tool: &str, target: &Target) -> Command {
    let mut cmd = Command::new(tool);
    cmd.arg("--no-password")
        .env("PGCONNECT_TIMEOUT", "10")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(password) = target.password() {
        cmd.env("PGPASSWORD", password);
    }
    cmd
}

async fn finish(tool: &str, mut cmd: Command) -> Result<Vec<u8>, CapError> {
    // spawn + wait_with_output keeps the stdout we configured (a file);
    // `output()` would replace it with a pipe.
    let child = cmd.stderr(Stdio::piped()).spawn().map_err(|e| {
        CapError::Failed(format!(
            "cannot run {tool} (is the PostgreSQL client installed?): {e}"
        ))
    })?;
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| CapError::Failed(format!("{tool}: {e}")))?;
    if !out.status.success() {
        return Err(CapError::Failed(format!(
            "{tool} failed ({}): {}",
            out.status,
            tail(&out.stderr)
        )));
    }
    Ok(out.stdout)
}

/// `pg_dump -Fc` of the target database into `out`.
pub async fn dump(target: &Target, out: std::fs::File) -> Result<(), CapError> {
    let mut cmd = command("pg_dump", target);
    cmd.arg("--format=custom")
        .arg(format!("--dbname={}", target.conninfo()))
        .stdout(Stdio::from(out));
    finish("pg_dump", cmd).await.map(drop)
}

/// `pg_restore` of the dump in `input` into the target database.
pub async fn restore(
    target: &Target,
    input: std::fs::File,
    jobs: Option<u32>,
    no_owner: bool,
) -> Result<(), CapError> {
    let mut cmd = command("pg_restore", target);
    cmd.arg("--exit-on-error")
        .arg(format!("--dbname={}", target.conninfo()));
    if no_owner {
        cmd.arg("--no-owner").arg("--no-acl");
    }
    cmd.stdin(Stdio::from(input)).stdout(Stdio::null());
    match jobs {
        // -j needs a file it can reopen: /dev/stdin is our regular file.
        Some(j) if j > 1 => {
            cmd.arg(format!("--jobs={j}")).arg("/dev/stdin");
        }
        _ => {}
    }
    finish("pg_restore", cmd).await.map(drop)
}

/// `pg_restore --list`: the table of contents, proving the file is a
/// readable custom-format dump.
pub async fn contents(input: std::fs::File) -> Result<Vec<String>, CapError> {
    let mut cmd = Command::new("pg_restore");
    cmd.arg("--list")
        .stdin(Stdio::from(input))
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    let out = finish("pg_restore --list", cmd).await?;
    let entries: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if entries.is_empty() {
        return Err(CapError::Failed("the dump lists no entries".into()));
    }
    Ok(entries)
}
