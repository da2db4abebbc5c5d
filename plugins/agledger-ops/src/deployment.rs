//! The deployment as upgrade and rollback see it: the names it is granted
//! under, its `compose/.env`, which version runs, and the image it runs.

use opshost_sdk::dotenv::{Change, EnvFile};
use opshost_sdk::fs::{self, Dir};
use opshost_sdk::{container, describe, fail, progress, web, Context, Result};

/// `[containers.agledger]`: the compose project.
pub const CONTAINERS: &str = "agledger";
pub const API: &str = "agledger-api";
pub const WORKER: &str = "agledger-worker";
/// `[dir.compose]`: the install's `compose/` directory, holding `.env`.
pub const COMPOSE: &str = "compose";
pub const ENV_FILE: &str = ".env";
/// `[dir.install]` (read-only): the install root, holding `VERSION`.
pub const INSTALL: &str = "install";
/// `[http.api]`.
pub const HTTP_API: &str = "api";

pub const VERSION_KEY: &str = "AGLEDGER_VERSION";
pub const PIN_KEY: &str = "AGLEDGER_IMAGE_PIN";
/// Variables removed in past releases: commented out on upgrade (the
/// server refuses to start while AGLEDGER_LICENSE_MODE is set).
pub const REMOVED: &[&str] = &["AGLEDGER_LICENSE_MODE", "AGLEDGER_RELEASE_DATE"];
const COMPOSE_FILE_KEY: &str = "COMPOSE_FILE";
/// The overlays a `COMPOSE_FILE` is made of, in the vendor's order.
/// `docker-compose.override.yml` last: compose reads it by itself only
/// while `COMPOSE_FILE` is unset, so a `COMPOSE_FILE` we add must name it.
const OVERLAYS: &[&str] = &[
    "docker-compose.yml",
    "docker-compose.postgres.yml",
    "docker-compose.prod.yml",
    "docker-compose.override.yml",
];

/// `compose/.env`, read.
pub struct Env {
    pub dir: Dir,
    pub file: EnvFile,
}

impl Env {
    pub fn open() -> Result<Self> {
        let dir = fs::open(COMPOSE).context("opening the compose directory")?;
        let bytes = dir
            .read(ENV_FILE)
            .context(format!("reading {COMPOSE}/{ENV_FILE}"))?;
        let file = EnvFile::parse(&bytes, &format!("{COMPOSE}/{ENV_FILE}"))?;
        Ok(Self { dir, file })
    }

    /// Replace `.env` with `text` (atomic in the host: temp file + rename;
    /// the file keeps its mode and owner).
    pub fn write(&self, text: &str) -> Result<()> {
        self.dir
            .write(ENV_FILE, text.as_bytes())
            .context(format!("writing {COMPOSE}/{ENV_FILE}"))
    }

    /// The changes that make `.env` run `version` from `pin`: the version
    /// and pin set, removed variables commented out, `COMPOSE_FILE` added
    /// when missing.
    pub fn changes_for(&self, version: &str, pin: &str) -> Vec<Change> {
        let mut changes = vec![
            Change::Set(VERSION_KEY.into(), version.into()),
            Change::Set(PIN_KEY.into(), pin.into()),
        ];
        changes.extend(REMOVED.iter().map(|k| Change::CommentOut(k.to_string())));
        if !self.file.declares(COMPOSE_FILE_KEY) {
            if let Some(value) = self.compose_files() {
                changes.push(Change::Set(COMPOSE_FILE_KEY.into(), value));
            }
        }
        changes
    }

    /// `COMPOSE_FILE` as the overlays present make it (the postgres overlay
    /// only for a bundled database: no `DATABASE_URL`).
    fn compose_files(&self) -> Option<String> {
        let external = self.file.value("DATABASE_URL").is_some()
            || self.file.value("DATABASE_URL_FILE").is_some();
        let present: Vec<&str> = OVERLAYS
            .iter()
            .copied()
            .filter(|f| self.dir.stat(f).is_ok())
            .filter(|f| !(external && *f == "docker-compose.postgres.yml"))
            .collect();
        (!present.is_empty()).then(|| present.join(":"))
    }

    pub fn removed_present(&self) -> Vec<&'static str> {
        REMOVED
            .iter()
            .copied()
            .filter(|k| self.file.declares(k))
            .collect()
    }
}

/// Where the current version was read, and what the others say.
pub struct Current {
    pub version: String,
    /// e.g. "compose/.env AGLEDGER_VERSION".
    pub source: String,
    /// What the API reports (`/conformance`), if it answers.
    pub reported: Option<String>,
    /// The image agledger-api runs (`repo:tag` or `repo@sha256:…`).
    pub image: String,
    /// Other sources that disagree, in words.
    pub disagreements: Vec<String>,
}

/// The version that runs: `AGLEDGER_VERSION` in `.env` (read as compose
/// reads it), else `VERSION` at the install root, else the running image's
/// tag; cross-checked with `/conformance`.
pub fn current(env: &Env) -> Result<Current> {
    let api = container::inspect(CONTAINERS, API).context("inspecting agledger-api")?;
    let from_env = env
        .file
        .value(VERSION_KEY)
        .map(|v| v.trim().to_string())
        .filter(|v| v != "latest");
    let from_file = fs::open(INSTALL)
        .ok()
        .and_then(|d| d.read("VERSION").ok())
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|v| !v.is_empty());
    let from_tag = image_tag(&api.image).filter(|t| t != "latest");
    let reported = reported_version();
    let candidates = [
        (from_env, format!("{COMPOSE}/{ENV_FILE} {VERSION_KEY}")),
        (from_file, "VERSION".to_string()),
        (
            from_tag,
            format!("the image agledger-api runs ({})", api.image),
        ),
        (reported.clone(), "/conformance".to_string()),
    ];
    let Some((version, source)) = candidates
        .iter()
        .find_map(|(v, s)| v.clone().map(|v| (v, s.clone())))
    else {
        return Err(fail(
            "cannot tell which version runs: no AGLEDGER_VERSION in .env, no VERSION file, \
             the image has no version tag and /conformance does not answer",
        ));
    };
    let disagreements = candidates
        .iter()
        .filter_map(|(v, s)| match v {
            Some(other) if *other != version => Some(format!("{s} says {other}")),
            _ => None,
        })
        .collect();
    Ok(Current {
        version,
        source,
        reported,
        image: api.image,
        disagreements,
    })
}

/// The tag of `repo:tag` (not of a digest reference).
pub fn image_tag(image: &str) -> Option<String> {
    if image.contains('@') {
        return None;
    }
    let (_, last) = image.rsplit_once('/').unwrap_or(("", image));
    last.split_once(':').map(|(_, tag)| tag.to_string())
}

/// `registry/path/name` of a reference, without tag or digest.
pub fn repository(image: &str) -> String {
    let no_digest = image.split('@').next().unwrap_or(image);
    match (no_digest.rfind(':'), no_digest.rfind('/')) {
        (Some(colon), slash) if colon > slash.unwrap_or(0) => no_digest[..colon].to_string(),
        _ => no_digest.to_string(),
    }
}

/// The version `/conformance` reports, if the API answers.
pub fn reported_version() -> Option<String> {
    let response = web::get(HTTP_API, "/conformance").ok()?;
    let body: serde_json::Value = serde_json::from_slice(&response.body).ok()?;
    body["version"].as_str().map(str::to_string)
}

/// The version `/health` reports, or why there is none.
pub fn health_version() -> Result<String> {
    let health = web::get(HTTP_API, "/health")?;
    let body: serde_json::Value = serde_json::from_slice(&health.body).unwrap_or_default();
    if health.head.status != 200 || body["status"] != "ok" {
        return Err(fail(format!(
            "/health answered {} {}",
            health.head.status,
            String::from_utf8_lossy(&health.body).trim()
        )));
    }
    Ok(body["version"].as_str().unwrap_or("unknown").to_string())
}

/// Poll `/health/ready` every 100 ms (rather than Docker's healthcheck
/// interval) until it answers 200, for at most `within_ms`.
pub fn wait_ready(within_ms: u64) -> Result<()> {
    let start = std::time::Instant::now();
    let mut last = String::from("no answer yet");
    while start.elapsed().as_millis() < u128::from(within_ms) {
        match web::get(HTTP_API, "/health/ready") {
            Ok(r) if r.head.status == 200 => return Ok(()),
            Ok(r) => {
                last = format!(
                    "{} {}",
                    r.head.status,
                    String::from_utf8_lossy(&r.body).trim()
                )
            }
            Err(e) => last = describe(&e),
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(fail(format!(
        "agledger-api is not ready after {} s (/health/ready: {last})",
        within_ms / 1000
    )))
}

/// The last lines a service logged, for a failure message.
pub fn last_logs(service: &str, lines: u32) -> String {
    let Ok(reader) = container::logs(CONTAINERS, service, Some(lines)) else {
        return String::new();
    };
    let mut stream = opshost_sdk::io::ReadStream::new(reader);
    let mut text = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut text);
    String::from_utf8_lossy(&text).trim().to_string()
}

/// Run the image's preflight in a one-off container of agledger-api's
/// configuration (`image`: another image than the service's).
pub fn preflight(image: Option<String>, env_set: Vec<(String, String)>) -> Result<()> {
    progress::step("preflight", None);
    let spec = container::RunSpec {
        image,
        command: Some(vec!["preflight".into()]),
        env_set,
        timeout_ms: Some(120_000),
    };
    let out = container::run(CONTAINERS, API, &spec)?;
    if out.exit_code != 0 {
        let text = String::from_utf8_lossy(if out.stderr.is_empty() {
            &out.stdout
        } else {
            &out.stderr
        });
        return Err(fail(format!(
            "preflight failed (exit {}): {}",
            out.exit_code,
            text.trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_repositories() {
        assert_eq!(
            image_tag("127.0.0.1:5000/agledger/agledger:1.3.2").as_deref(),
            Some("1.3.2")
        );
        assert_eq!(image_tag("127.0.0.1:5000/agledger/agledger"), None);
        assert_eq!(image_tag("r/a@sha256:00"), None);
        assert_eq!(
            repository("127.0.0.1:5000/agledger/agledger@sha256:00"),
            "127.0.0.1:5000/agledger/agledger"
        );
        assert_eq!(
            repository("127.0.0.1:5000/agledger/agledger:1.3.2"),
            "127.0.0.1:5000/agledger/agledger"
        );
    }
}
