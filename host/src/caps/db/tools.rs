//! The PostgreSQL client tools, run by the host: `pg_dump -Fc` straight
//! into a file and `pg_restore` straight from one, so dump bytes never cross
//! the sandbox. Files are handed over as open descriptors (opened through
//! cap-std), never as paths a tool could resolve through a symlink.
//!
//! With a bundled database the tools run inside its container through the
//! container backend's exec (the image's own pg_dump matches its server),
//! with the file streamed through the exec's stdin/stdout.

use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::super::container::backend::{ContainerBackend, ExecSpec, Output};
use super::super::CapError;
use super::connect::Target;

/// A spawned task that ends with its owner.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where the tools run.
pub enum Runner {
    Host,
    /// Inside the database service's container (bundled mode).
    Container {
        backend: Arc<dyn ContainerBackend>,
        service: String,
    },
}

/// Last lines of a tool's stderr, for the error message.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(6)..].join("; ")
}

/// Run `tool args` with the target's password in the environment, `input`
/// as stdin and `output` as stdout (else stdout is returned).
async fn run(
    runner: &Runner,
    tool: &str,
    args: Vec<String>,
    target: Option<&Target>,
    input: Option<std::fs::File>,
    output: Option<std::fs::File>,
) -> Result<Vec<u8>, CapError> {
    let mut env = vec![("PGCONNECT_TIMEOUT".to_string(), "10".to_string())];
    if let Some(password) = target.and_then(Target::password) {
        env.push(("PGPASSWORD".into(), password));
    }
    match runner {
        Runner::Host => on_host(tool, args, env, input, output).await,
        Runner::Container { backend, service } => {
            in_container(backend.as_ref(), service, tool, args, env, input, output).await
        }
    }
}

async fn on_host(
    tool: &str,
    args: Vec<String>,
    env: Vec<(String, String)>,
    input: Option<std::fs::File>,
    output: Option<std::fs::File>,
) -> Result<Vec<u8>, CapError> {
    let mut cmd = Command::new(tool);
    cmd.args(&args)
        .envs(env)
        .kill_on_drop(true)
        .stderr(Stdio::piped());
    cmd.stdin(input.map(Stdio::from).unwrap_or_else(Stdio::null));
    cmd.stdout(output.map(Stdio::from).unwrap_or_else(Stdio::piped));
    // spawn + wait_with_output keeps the stdio we configured; `output()`
    // would replace stdout with a pipe.
    let child = cmd.spawn().map_err(|e| {
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

async fn in_container(
    backend: &dyn ContainerBackend,
    service: &str,
    tool: &str,
    args: Vec<String>,
    env: Vec<(String, String)>,
    input: Option<std::fs::File>,
    mut output: Option<std::fs::File>,
) -> Result<Vec<u8>, CapError> {
    let mut command = vec![tool.to_string()];
    command.extend(args);
    let spec = ExecSpec {
        command,
        env,
        with_stdin: input.is_some(),
        ..Default::default()
    };
    let exec = backend
        .exec(service, spec)
        .await
        .map_err(|e| e.context(tool))?;
    let (mut frames, exit) = (exec.output, exec.exit);
    let input = match (input, exec.stdin) {
        (Some(file), Some(stdin)) => Some((file, stdin)),
        (Some(_), None) => {
            return Err(CapError::Failed(format!(
                "{tool}: the exec has no stdin to feed the file through"
            )))
        }
        (None, _) => None,
    };
    // Aborted if this call is dropped (the plugin was stopped): the tool
    // then sees its input end, instead of being fed on after the run.
    let feeder = input.map(|(file, mut stdin)| {
        AbortOnDrop(tokio::spawn(async move {
            let mut file = tokio::fs::File::from_std(file);
            let copied = tokio::io::copy(&mut file, &mut stdin).await;
            let _ = stdin.shutdown().await;
            copied.map(drop)
        }))
    });
    let (mut collected, mut stderr) = (Vec::new(), Vec::new());
    while let Some(frame) = frames.next().await {
        match frame.map_err(|e| e.context(tool))? {
            Output::Stdout(message) => match output.as_mut() {
                Some(file) => file.write_all(&message)?,
                None => collected.extend_from_slice(&message),
            },
            Output::Stderr(message) => stderr.extend_from_slice(&message),
        }
    }
    if let Some(mut feeder) = feeder {
        let fed = (&mut feeder.0)
            .await
            .map_err(|e| CapError::Failed(format!("{tool} stdin: {e}")))?;
        match fed {
            // `pg_restore --list` stops reading after the table of
            // contents: a closed stdin is its choice; the exit code tells.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.map_err(|e| CapError::Failed(format!("{tool} stdin: {e}")))?,
        }
    }
    if let Some(file) = output.as_mut() {
        file.flush()?;
    }
    let code = exit.await.map_err(|e| e.context(tool))?;
    if code != 0 {
        return Err(CapError::Failed(format!(
            "{tool} failed (exit {code}) in the database container: {}",
            tail(&stderr)
        )));
    }
    Ok(collected)
}

/// `pg_dump -Fc` of the target database into `out`.
pub async fn dump(
    runner: &Runner,
    target: &Target,
    snapshot: Option<&str>,
    out: std::fs::File,
) -> Result<(), CapError> {
    let mut args = vec![
        "--no-password".into(),
        "--format=custom".into(),
        format!("--dbname={}", target.conninfo()),
    ];
    if let Some(id) = snapshot {
        // Snapshot ids are hex and dashes (`00000003-0000001B-1`).
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(CapError::Invalid(format!(
                "snapshot {id:?} is not a pg_export_snapshot() id"
            )));
        }
        args.push(format!("--snapshot={id}"));
    }
    run(runner, "pg_dump", args, Some(target), None, Some(out))
        .await
        .map(drop)
}

/// `pg_dump --schema-only` of the target database as plain SQL: the
/// structure without a row, small enough to hand back whole.
pub async fn schema(runner: &Runner, target: &Target) -> Result<Vec<u8>, CapError> {
    let args = vec![
        "--no-password".into(),
        "--schema-only".into(),
        "--format=plain".into(),
        format!("--dbname={}", target.conninfo()),
    ];
    run(runner, "pg_dump", args, Some(target), None, None).await
}

/// `pg_restore` of the dump in `input` into the target database.
pub async fn restore(
    runner: &Runner,
    target: &Target,
    input: std::fs::File,
    jobs: Option<u32>,
    no_owner: bool,
) -> Result<(), CapError> {
    let mut args = vec![
        "--no-password".into(),
        "--exit-on-error".into(),
        format!("--dbname={}", target.conninfo()),
    ];
    if no_owner {
        args.extend(["--no-owner".into(), "--no-acl".into()]);
    }
    match (runner, jobs) {
        // -j needs a file it can reopen: on the host /dev/stdin is our
        // regular file. In a container stdin is a pipe: one stream.
        (Runner::Host, Some(j)) if j > 1 => {
            args.extend([format!("--jobs={j}"), "/dev/stdin".into()])
        }
        _ => {}
    }
    run(runner, "pg_restore", args, Some(target), Some(input), None)
        .await
        .map(drop)
}

/// `pg_restore --list`: the table of contents, proving the file is a
/// readable custom-format dump.
pub async fn contents(runner: &Runner, input: std::fs::File) -> Result<Vec<String>, CapError> {
    let out = run(
        runner,
        "pg_restore",
        vec!["--list".into()],
        None,
        Some(input),
        None,
    )
    .await
    .map_err(|e| match e {
        CapError::Failed(m) => {
            CapError::Failed(m.replacen("pg_restore failed", "pg_restore --list failed", 1))
        }
        other => other,
    })?;
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
