//! `exec` through the Docker Engine: the attached stream's frames as
//! stdout/stderr, its stdin, and the exit code the engine records once
//! the command has ended.

use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::Docker;
use futures::StreamExt;

use super::scope::engine_error;
use crate::caps::container::backend::{Exec, ExecSpec, Output};
use crate::caps::CapError;

pub async fn start(docker: &Docker, container_id: &str, spec: ExecSpec) -> Result<Exec, CapError> {
    let options = CreateExecOptions {
        cmd: Some(spec.command),
        env: Some(
            spec.env
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        user: spec.user,
        working_dir: spec.workdir,
        attach_stdin: Some(spec.with_stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        ..Default::default()
    };
    let created = docker
        .create_exec(container_id, options)
        .await
        .map_err(|e| engine_error("exec", e))?;
    let started = docker
        .start_exec(&created.id, None)
        .await
        .map_err(|e| engine_error("exec", e))?;
    let StartExecResults::Attached { output, input } = started else {
        return Err(CapError::Failed("the engine detached the exec".into()));
    };
    let output = output.filter_map(|frame| async move {
        match frame {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                Some(Ok(Output::Stdout(message)))
            }
            Ok(LogOutput::StdErr { message }) => Some(Ok(Output::Stderr(message))),
            Ok(LogOutput::StdIn { .. }) => None,
            Err(e) => Some(Err(engine_error("exec output", e))),
        }
    });
    let docker = docker.clone();
    let exec_id = created.id;
    Ok(Exec {
        stdin: Some(input),
        output: output.boxed(),
        exit: Box::pin(async move { exit_code(&docker, &exec_id).await }),
    })
}

/// The exit code, once the engine no longer reports the exec running
/// (it may lag the end of the output by a moment).
async fn exit_code(docker: &Docker, exec_id: &str) -> Result<i64, CapError> {
    for _ in 0..100 {
        let inspect = docker
            .inspect_exec(exec_id)
            .await
            .map_err(|e| engine_error("exec", e))?;
        if inspect.running != Some(true) {
            return inspect
                .exit_code
                .ok_or_else(|| CapError::Failed("the exec has no exit code".into()));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Err(CapError::TimedOut(
        "the exec's output ended but it is still running".into(),
    ))
}
