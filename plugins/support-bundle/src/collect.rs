//! Collecting the bundle's files, section by section. A section that
//! fails is recorded (`collection.json`) and the others go on: a support
//! bundle is most wanted when the deployment is broken.

use agledger_ops::deployment::{COMPOSE, CONTAINERS, HTTP_API};
use opshost_sdk::fs::{self, Dir, EntryKind};
use opshost_sdk::{container, describe, io::ReadStream, progress, web, Context, Result};
use serde_json::{json, Map, Value};

/// `[dir.support]`: where operator-named files and the rules file are.
pub const SUPPORT: &str = "support";
/// As the vendor's script: the last 1000 lines of each service.
const LOG_LINES: u32 = 1000;
/// A file bigger than this is left out (listed): the bundle is for people.
const MAX_FILE: u64 = 16 << 20;
/// Operator-named files in all, so a mistaken `--include /` cannot
/// exhaust the plugin's memory.
const MAX_INCLUDED: u64 = 64 << 20;
const MAX_FILES: usize = 5000;

/// The API answers the vendor's script records, and where they go.
const ENDPOINTS: &[(&str, &str)] = &[
    ("/health", "api/health.json"),
    ("/conformance", "api/conformance.json"),
    ("/status", "api/status.json"),
    ("/v1/admin/support-bundle", "api/admin-support-bundle.json"),
];

pub struct Item {
    /// Its path inside the bundle (below the bundle's root directory).
    pub path: String,
    pub bytes: Vec<u8>,
}

#[derive(Default)]
pub struct Collection {
    pub items: Vec<Item>,
    /// (section, what went wrong).
    pub problems: Vec<(String, String)>,
    /// (path, why it is not in the bundle).
    pub left_out: Vec<(String, String)>,
    /// Versions and system facts, written as `system/facts.json`.
    pub facts: Map<String, Value>,
    included_bytes: u64,
}

impl Collection {
    pub fn add(&mut self, path: impl Into<String>, bytes: Vec<u8>) {
        self.items.push(Item {
            path: path.into(),
            bytes,
        });
    }

    pub fn fact(&mut self, key: &str, value: impl Into<Value>) {
        self.facts.insert(key.to_string(), value.into());
    }

    /// Run one section; its failure is recorded, not fatal.
    pub fn section(&mut self, name: &str, f: impl FnOnce(&mut Self) -> Result<()>) {
        progress::step(name, None);
        if let Err(e) = f(self) {
            self.problems.push((name.to_string(), describe(&e)));
        }
    }

    /// What was collected and what was not, as `collection.json`.
    pub fn summary(&self) -> Value {
        json!({
            "problems": self.problems.iter().map(|(s, e)| json!({"section": s, "error": e})).collect::<Vec<_>>(),
            "left_out": self.left_out.iter().map(|(p, why)| json!({"path": p, "why": why})).collect::<Vec<_>>(),
        })
    }
}

/// `compose/`: `.env` and the compose files, every file redacted later.
pub fn compose(c: &mut Collection) -> Result<()> {
    let dir = fs::open(COMPOSE).context("opening [dir.compose]")?;
    walk(c, &dir, ".", "compose", false)
}

/// Container states and each service's last log lines.
pub fn containers(c: &mut Collection) -> Result<()> {
    let list = container::list(CONTAINERS).context("listing the project's containers")?;
    let states: Vec<Value> = list
        .iter()
        .map(|i| {
            json!({
                "name": i.name, "service": i.service, "id": i.id, "image": i.image,
                "image_id": i.image_id, "state": i.state, "health": i.health,
                "exit_code": i.exit_code,
            })
        })
        .collect();
    let images: Map<String, Value> = list
        .iter()
        .map(|i| (i.name.clone(), Value::from(i.image.clone())))
        .collect();
    c.fact("images", images);
    c.add("containers/states.json", pretty(&Value::from(states)));
    let mut services: Vec<&str> = list.iter().map(|i| i.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    for service in services.into_iter().filter(|s| !s.is_empty()) {
        let logs = container::logs(CONTAINERS, service, Some(LOG_LINES))
            .and_then(|r| read_all(r).map_err(opshost_sdk::fail));
        match logs {
            Ok(bytes) => c.add(format!("containers/logs/{service}.log"), bytes),
            Err(e) => c
                .problems
                .push((format!("logs of {service}"), describe(&e))),
        }
    }
    Ok(())
}

/// The API's own answers; the platform key for the admin endpoint is the
/// host's (`[http.api] bearer_token_file`), never the plugin's.
pub fn api(c: &mut Collection) -> Result<()> {
    let mut statuses = Map::new();
    for (path, target) in ENDPOINTS {
        match web::get(HTTP_API, path) {
            Ok(r) => {
                statuses.insert(path.to_string(), Value::from(r.head.status));
                if r.head.status != 200 {
                    c.problems.push((
                        format!("GET {path}"),
                        format!("answered {} (body kept in {target})", r.head.status),
                    ));
                }
                if *path == "/health" {
                    let v: Value = serde_json::from_slice(&r.body).unwrap_or_default();
                    c.fact("agledger_reported_version", v["version"].clone());
                }
                c.add(*target, r.body);
            }
            Err(e) => c.problems.push((format!("GET {path}"), describe(&e))),
        }
    }
    c.fact("api_status_codes", statuses);
    Ok(())
}

/// Files and directories the operator named, in `[dir.support]`.
pub fn included(c: &mut Collection, dir: &Dir, paths: &[String]) -> Result<()> {
    for path in paths {
        let entry = dir
            .stat(path)
            .context(format!("--include {path} in [dir.{SUPPORT}]"))?;
        let target = format!("included/{}", path.trim_start_matches("./"));
        match entry.kind {
            EntryKind::Directory => walk(c, dir, path, "included", true)?,
            EntryKind::File => file(c, dir, path, &target, entry.size, true),
            _ => c.left_out.push((target, "not a regular file".into())),
        }
    }
    Ok(())
}

/// Every regular file below `path` of `dir`, as `<prefix>/<name>`.
fn walk(c: &mut Collection, dir: &Dir, path: &str, prefix: &str, counted: bool) -> Result<()> {
    let mut pending = vec![path.to_string()];
    while let Some(next) = pending.pop() {
        let mut entries = dir
            .list(&next)
            .context(format!("listing {prefix}/{next}"))?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for e in entries {
            let target = format!("{prefix}/{}", e.name.trim_start_matches("./"));
            match e.kind {
                EntryKind::Directory => pending.push(e.name),
                EntryKind::File if c.items.len() >= MAX_FILES => c
                    .left_out
                    .push((target, format!("more than {MAX_FILES} files"))),
                EntryKind::File => file(c, dir, &e.name, &target, e.size, counted),
                // A link could lead anywhere the operator did not mean.
                EntryKind::Symlink => c.left_out.push((target, "a symbolic link".into())),
                EntryKind::Other => c.left_out.push((target, "not a regular file".into())),
            }
        }
    }
    Ok(())
}

fn file(c: &mut Collection, dir: &Dir, path: &str, target: &str, size: u64, counted: bool) {
    if size > MAX_FILE {
        c.left_out.push((
            target.into(),
            format!("{size} bytes, over the {MAX_FILE}-byte limit"),
        ));
        return;
    }
    if counted && c.included_bytes + size > MAX_INCLUDED {
        c.left_out.push((
            target.into(),
            format!("operator files over {MAX_INCLUDED} bytes in all"),
        ));
        return;
    }
    match dir.read(path) {
        Ok(bytes) => {
            if counted {
                c.included_bytes += bytes.len() as u64;
            }
            c.add(target, bytes);
        }
        Err(e) => c.problems.push((format!("reading {target}"), describe(&e))),
    }
}

pub fn read_all(
    reader: opshost_sdk::bindings::opshost::plugin::types::Reader,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut ReadStream::new(reader), &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

pub fn pretty(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}
