//! Test plugin: every container verb on the `agledger` compose project,
//! one operation per run; results in the report's JSON data.

use std::io::{Read, Write};

use opshost_sdk::container::{self, ContainerInfo, ExecOptions, RecreateSpec, RunSpec};
use opshost_sdk::io::{ReadStream, WriteStream};
use opshost_sdk::{fail, invalid, Report, Result};
use serde_json::json;

opshost_sdk::manifest! {
    name: "ctlprobe",
    vendor: "opshost-testing",
    description: "Exercises every container verb",
    applies_to: "*",
    min_host: "0.1.0",
    requests: [
        ("container=agledger:inspect,logs,exec,stop,start,pull,recreate,run", "the verbs under test"),
    ],
}

const P: &str = "agledger";

fn info(i: &ContainerInfo) -> serde_json::Value {
    let labels: serde_json::Map<String, serde_json::Value> = i
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({ "id": i.id, "name": i.name, "service": i.service, "image": i.image, "state": i.state,
            "health": i.health, "exit_code": i.exit_code, "labels": labels })
}

fn read_all(r: opshost_sdk::bindings::opshost::plugin::types::Reader) -> Result<String> {
    let mut text = String::new();
    ReadStream::new(r)
        .read_to_string(&mut text)
        .map_err(|e| fail(e.to_string()))?;
    Ok(text)
}

fn image_arg(a: &str) -> Option<String> {
    (a != "-").then(|| a.to_string())
}

fn env_args(args: &[String]) -> Vec<(String, String)> {
    args.iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct Probe;

impl opshost_sdk::Operation for Probe {
    fn run(args: Vec<String>) -> Result<Report> {
        let a = |i: usize| {
            args.get(i)
                .cloned()
                .ok_or_else(|| invalid(format!("missing argument {i}")))
        };
        let data = match a(0)?.as_str() {
            "list" => json!(container::list(P)?.iter().map(info).collect::<Vec<_>>()),
            "inspect" => info(&container::inspect(P, &a(1)?)?),
            "env" => json!(container::environment(P, &a(1)?)?
                .into_iter()
                .map(|(k, _)| k)
                .collect::<Vec<_>>()),
            "logs" => json!(read_all(container::logs(P, &a(1)?, a(2)?.parse().ok())?)?),
            "exec" | "exec-stdin" => {
                let with_stdin = a(0)? == "exec-stdin";
                let skip = if with_stdin { 3 } else { 2 };
                let opts = ExecOptions {
                    env: vec![("PROBE".into(), "1".into())],
                    user: None,
                    workdir: None,
                    with_stdin,
                };
                let p = container::exec(P, &a(1)?, &args[skip..], &opts)?;
                if with_stdin {
                    let mut w = WriteStream::new(p.stdin()?);
                    w.write_all(a(2)?.as_bytes())
                        .map_err(|e| fail(e.to_string()))?;
                    w.finish()?;
                }
                let out = read_all(p.stdout()?)?;
                let err = read_all(p.stderr()?)?;
                json!({ "code": p.wait()?, "stdout": out, "stderr": err })
            }
            "stop" => json!(container::stop(P, &a(1)?, Some(5))?),
            "start" => json!(container::start(P, &a(1)?)?),
            "restart" => json!(container::restart(P, &a(1)?, Some(5))?),
            "pull" => json!(container::pull(P, &a(1)?)?),
            "recreate" => {
                let spec = RecreateSpec {
                    image: image_arg(&a(2)?),
                    env_set: env_args(&args[3..]),
                    env_unset: vec![],
                    healthy_within_ms: None,
                    ready_path: None,
                    stopped: false,
                };
                info(&container::recreate(P, &a(1)?, &spec)?)
            }
            "run" => {
                let spec = RunSpec {
                    image: image_arg(&a(2)?),
                    command: Some(args[3..].to_vec()),
                    env_set: vec![],
                    timeout_ms: Some(60_000),
                };
                let out = container::run(P, &a(1)?, &spec)?;
                json!({ "code": out.exit_code, "stdout": String::from_utf8_lossy(&out.stdout),
                        "stderr": String::from_utf8_lossy(&out.stderr) })
            }
            // pull, then a one-off run of what the pull returned (the
            // digest), in one plugin run: what signature enforcement allows.
            "pull-run" => {
                let digest = container::pull(P, &a(2)?)?;
                let spec = RunSpec {
                    image: Some(digest.clone()),
                    command: Some(args[3..].to_vec()),
                    env_set: vec![],
                    timeout_ms: Some(60_000),
                };
                let out = container::run(P, &a(1)?, &spec)?;
                json!({ "digest": digest, "code": out.exit_code,
                        "stdout": String::from_utf8_lossy(&out.stdout) })
            }
            "wait" => info(&container::wait_healthy(
                P,
                &a(1)?,
                a(2)?.parse().map_err(|_| invalid("ms"))?,
            )?),
            other => return Err(invalid(format!("unknown operation {other:?}"))),
        };
        Ok(Report::ok("done").data(data.to_string()))
    }
}

opshost_sdk::plugin!(Probe);
