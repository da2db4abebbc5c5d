//! Audit events as OCSF API Activity events (class 6003, schema 1.8.0),
//! for a SIEM. The same facts as opshost's own lines, placed where OCSF
//! puts them:
//!
//! | opshost            | OCSF                                                  |
//! |--------------------|-------------------------------------------------------|
//! | time               | `time` (epoch ms), `metadata.original_time` (µs text) |
//! | plugin             | `actor.app_name` (vendor/name version), `actor.app_uid` (sha256), `unmapped.plugin` |
//! | capability, verb   | `api.service.name`, `api.operation`; `activity_id` from the verb |
//! | resource           | `resources[0].name` (and `type`); absent for run events |
//! | outcome            | `status_code`; `status_id`, `severity_id`, `action_id`, `disposition_id` from it |
//! | detail             | `status_detail`                                       |
//! | duration_us        | `duration` (ms), `unmapped.duration_us`               |
//! | repeated           | `count`, with `start_time`/`end_time` of the repeats  |
//! | mode               | `unmapped.mode` (`run`, `plan`, `learn`)              |
//!
//! `src_endpoint` is this host (the plugin runs inside opshost on it).
//! Decisions use the `security_control` profile (`action_id`,
//! `disposition_id`), named in `metadata.profiles`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::Event;

/// The OCSF schema version the events follow.
pub const SCHEMA_VERSION: &str = "1.8.0";
pub const CATEGORY_UID: u64 = 6;
pub const CLASS_UID: u64 = 6003;

/// Where events come from: this host, running opshost.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    hostname: Option<String>,
}

impl Origin {
    pub fn this_host() -> Self {
        let hostname = ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty());
        Self { hostname }
    }
}

/// A folded line: how many repeats it stands for, and when the first was.
pub struct Aggregate<'a> {
    pub count: u64,
    pub first: Option<&'a str>,
}

/// OCSF API Activity `activity_id`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Create = 1,
    Read = 2,
    Update = 3,
    Delete = 4,
    Other = 99,
}

impl Activity {
    pub fn caption(self) -> &'static str {
        match self {
            Self::Create => "Create",
            Self::Read => "Read",
            Self::Update => "Update",
            Self::Delete => "Delete",
            Self::Other => "Other",
        }
    }
}

/// What a call did to its resource. HTTP by its method, SQL by the parsed
/// statement kind (the `detail` of db query/execute), the rest by verb.
/// Run lifecycle, confirmations, transaction control, exec and anything
/// new are `Other` (with the verb as `activity_name`).
pub fn activity(capability: &str, verb: &str, detail: Option<&str>) -> Activity {
    use Activity::*;
    match (capability, verb) {
        ("run" | "progress", _) => Other,
        ("http", "send" | "send-streaming") => {
            let method = detail
                .and_then(|d| d.split_whitespace().next())
                .unwrap_or_default();
            match method {
                "GET" | "HEAD" | "OPTIONS" => Read,
                "POST" => Create,
                "PUT" | "PATCH" => Update,
                "DELETE" => Delete,
                _ => Other,
            }
        }
        ("db", "query" | "execute") => match detail.map(statement_activity) {
            Some(Some(a)) => a,
            _ if verb == "query" => Read,
            _ => Update,
        },
        (_, verb) => match verb {
            "read" | "read-stream" | "list" | "stat" | "open" | "open-read" | "archive-members"
            | "inspect" | "logs" | "environment" | "list-databases" | "dump" | "dump-schema"
            | "dump-contents" | "copy-out" | "probe-session" | "probe-tls" | "wait-healthy"
            | "connect" | "connect-to" | "begin-snapshot" => Read,
            "create" | "mkdir" | "pack" | "extract" | "create-database" | "copy-in" | "pull"
            | "run" | "generate-ed25519" => Create,
            "write" | "write-stream" | "rename" | "rename-database" | "restore" | "recreate"
            | "start" | "stop" | "restart" | "lock" => Update,
            "remove" | "drop-database" | "terminate-sessions" => Delete,
            _ => Other,
        },
    }
}

/// A libpg_query statement kind (`InsertStmt`, `SelectStmt`, ...).
fn statement_activity(kind: &str) -> Option<Activity> {
    use Activity::*;
    if !kind.ends_with("Stmt") {
        return None;
    }
    Some(match kind {
        "SelectStmt" | "ExplainStmt" | "VariableShowStmt" => Read,
        "InsertStmt" | "CopyStmt" => Create,
        "DeleteStmt" | "DropStmt" | "TruncateStmt" | "DropdbStmt" | "DropRoleStmt" => Delete,
        k if k.starts_with("Create") => Create,
        _ => Update,
    })
}

/// What an outcome means to a SIEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// `status_id`: 0 Unknown, 1 Success, 2 Failure, 99 Other.
    pub id: u8,
    pub caption: &'static str,
    /// `severity_id`: 1 Informational, 2 Low, 3 Medium.
    pub severity: u8,
    /// The grant check (security_control profile): allowed, or blocked
    /// (denied by the policy, refused before running, stopped by a limit).
    pub blocked: bool,
}

pub fn status(outcome: &str) -> Status {
    let (id, caption, severity, blocked) = match outcome {
        "ok" | "held" => (1, "Success", 1, false),
        // Plan mode answered without acting: neither success nor failure.
        "planned" => (99, "Planned", 1, false),
        // It may or may not have taken effect: someone must look.
        "uncertain" => (0, "Unknown", 3, false),
        "denied" | "refused" | "limit" => (2, "Failure", 3, true),
        "not-found" | "invalid-input" | "failed" | "timed-out" | "unsupported" | "trap" => {
            (2, "Failure", 2, false)
        }
        _ => (99, "Other", 0, false),
    };
    Status {
        id,
        caption,
        severity,
        blocked,
    }
}

fn severity_caption(id: u8) -> &'static str {
    match id {
        1 => "Informational",
        2 => "Low",
        3 => "Medium",
        _ => "Unknown",
    }
}

/// The OCSF `resources[].type` of a capability's named resources.
fn resource_type(capability: &str) -> &'static str {
    match capability {
        "fs" => "directory",
        "db" => "database",
        "http" => "http-api",
        "container" => "compose-project",
        _ => "resource",
    }
}

fn epoch_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// An event's RFC3339 time in epoch ms (now, should it not parse).
fn ms(rfc3339: &str) -> u64 {
    epoch_ms(humantime::parse_rfc3339(rfc3339).unwrap_or_else(|_| SystemTime::now()))
}

/// One audit event as an OCSF API Activity event.
pub fn event(e: &Event<'_>, aggregate: Option<Aggregate<'_>>, origin: &Origin) -> Value {
    let activity = activity(e.capability, e.verb, e.detail);
    let activity_name = match activity {
        Activity::Other => e.verb,
        a => a.caption(),
    };
    let status = status(e.outcome);
    let (decision_id, action, disposition) = if status.blocked {
        (2, "Denied", "Blocked")
    } else {
        (1, "Allowed", "Allowed")
    };
    let plugin = e.plugin;
    let identity = format!("{}/{} {}", plugin.vendor, plugin.name, plugin.version);
    let time = ms(&e.time);
    let on = if e.resource.is_empty() {
        String::new()
    } else {
        format!(" {}", e.resource)
    };
    let message = format!(
        "{identity}: {} {}{on} -> {}",
        e.capability, e.verb, e.outcome
    );
    let mut event = json!({
        "class_uid": CLASS_UID,
        "class_name": "API Activity",
        "category_uid": CATEGORY_UID,
        "category_name": "Application Activity",
        "activity_id": activity as u64,
        "activity_name": activity_name,
        "type_uid": CLASS_UID * 100 + activity as u64,
        "type_name": format!("API Activity: {}", activity.caption()),
        "time": time,
        "timezone_offset": 0,
        "severity_id": status.severity,
        "severity": severity_caption(status.severity),
        "status_id": status.id,
        "status": status.caption,
        "status_code": e.outcome,
        "action_id": decision_id,
        "action": action,
        "disposition_id": decision_id,
        "disposition": disposition,
        "duration": e.duration_us / 1000,
        "message": message,
        "metadata": {
            "version": SCHEMA_VERSION,
            "product": {
                "name": "opshost",
                "vendor_name": "opshost",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "profiles": ["security_control"],
            "original_time": e.time,
        },
        "actor": {"app_name": identity, "app_uid": plugin.sha256},
        "api": {"operation": e.verb, "service": {"name": e.capability}},
        "src_endpoint": {"svc_name": "opshost"},
        "unmapped": {
            "plugin": {"vendor": plugin.vendor, "name": plugin.name, "version": plugin.version},
            "mode": plugin.mode,
            "duration_us": e.duration_us,
        },
    });
    let Some(fields) = event.as_object_mut() else {
        return event;
    };
    if let Some(host) = &origin.hostname {
        fields["src_endpoint"]["hostname"] = json!(host);
    }
    if !e.resource.is_empty() {
        fields.insert(
            "resources".into(),
            json!([{"name": e.resource, "type": resource_type(e.capability)}]),
        );
    }
    if let Some(detail) = e.detail {
        fields.insert("status_detail".into(), json!(detail));
    }
    if let Some(a) = aggregate {
        fields.insert("count".into(), json!(a.count));
        fields.insert("end_time".into(), json!(time));
        if let Some(first) = a.first {
            fields.insert("start_time".into(), json!(ms(first)));
        }
    }
    event
}

/// The facts of an OCSF line written by [`event`], back in opshost's shape.
pub fn parse(line: &Value) -> Result<super::view::Record, String> {
    let class = line.get("class_uid").and_then(Value::as_u64);
    if class != Some(CLASS_UID) {
        return Err(format!(
            "an OCSF event of class {}, not API Activity ({CLASS_UID})",
            class.map_or("?".to_string(), |c| c.to_string())
        ));
    }
    let text = |pointer: &str| {
        line.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let need = |pointer: &str| text(pointer).ok_or_else(|| format!("no {pointer}"));
    let number = |pointer: &str| line.pointer(pointer).and_then(Value::as_u64);
    let time = match text("/metadata/original_time") {
        Some(t) => t,
        None => {
            let ms = number("/time").ok_or("no /time")?;
            let at = UNIX_EPOCH + std::time::Duration::from_millis(ms);
            humantime::format_rfc3339_millis(at).to_string()
        }
    };
    Ok(super::view::Record {
        time,
        plugin: super::view::RecordPlugin {
            vendor: need("/unmapped/plugin/vendor")?,
            name: need("/unmapped/plugin/name")?,
            version: need("/unmapped/plugin/version")?,
            sha256: need("/actor/app_uid")?,
        },
        mode: text("/unmapped/mode").unwrap_or_else(|| "run".into()),
        capability: need("/api/service/name")?,
        resource: text("/resources/0/name").unwrap_or_default(),
        verb: need("/api/operation")?,
        outcome: need("/status_code")?,
        detail: text("/status_detail"),
        duration_us: number("/unmapped/duration_us")
            .or_else(|| number("/duration").map(|ms| ms.saturating_mul(1000)))
            .unwrap_or(0),
        repeated: number("/count"),
    })
}

#[cfg(test)]
mod tests;
