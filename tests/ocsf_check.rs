//! Checks one event against what the OCSF schema requires of an API
//! Activity event. Used by `tests/audit.rs` and by the unit tests of
//! `host/src/audit/ocsf.rs` (through `#[path]`), so both check the lines
//! opshost writes against the same data, taken from the schema, not from
//! opshost's mapping.
//!
//! The data below is from github.com/ocsf/ocsf-schema at v1.8.0 (commit
//! 3dcb905d "v1.8.0 prep", version.json `"version": "1.8.0"`):
//! - `events/base_event.json`: attributes with `"requirement": "required"`
//!   (activity_id, category_uid, class_uid, metadata, severity_id, time,
//!   type_uid); `events/application/application.json` adds none;
//!   `events/application/api_activity.json` (uid 3 in category
//!   `application`, uid 6 in `categories.json`, so class_uid 6003) makes
//!   `actor`, `api` and `src_endpoint` required and names the activity_id
//!   enum 1-4 (plus base 0 and 99).
//! - `objects/metadata.json`: `product` and `version` required;
//!   `objects/api.json`: `operation` required; `objects/actor.json`:
//!   constraint at_least_one of process, user, invoked_by, session,
//!   app_name, app_uid; `objects/network_endpoint.json` (src_endpoint):
//!   at_least_one of ip, uid, name, hostname, svc_name, instance_uid,
//!   interface_uid, interface_name, domain; `objects/_entity.json`
//!   (product, service, resource_details): at_least_one of name, uid.
//! - `dictionary.json`: the enums of severity_id, status_id, action_id,
//!   disposition_id; `time`, `start_time`, `end_time` are timestamp_t
//!   (epoch ms), `duration` long_t, `count` integer_t.
//! - Profiles: attributes of a profile (`profiles/security_control.json`:
//!   action, action_id, disposition, disposition_id, ...) belong in an
//!   event only when `metadata.profiles` names the profile; none of
//!   security_control's attributes is required.
#![allow(dead_code)]

use serde_json::Value;

pub const SCHEMA_VERSION: &str = "1.8.0";
pub const CLASS_UID: i64 = 6003;
pub const CATEGORY_UID: i64 = 6;

/// Required attributes of the event (base_event.json + api_activity.json).
pub const REQUIRED: &[&str] = &[
    "activity_id",
    "category_uid",
    "class_uid",
    "metadata",
    "severity_id",
    "time",
    "type_uid",
    "actor",
    "api",
    "src_endpoint",
];

/// Required attributes of objects the event holds (JSON pointer, names).
pub const OBJECT_REQUIRED: &[(&str, &[&str])] = &[
    ("/metadata", &["product", "version"]),
    ("/api", &["operation"]),
];

/// `at_least_one` constraints of objects, where present.
pub const AT_LEAST_ONE: &[(&str, &[&str])] = &[
    (
        "/actor",
        &[
            "process",
            "user",
            "invoked_by",
            "session",
            "app_name",
            "app_uid",
        ],
    ),
    (
        "/src_endpoint",
        &[
            "ip",
            "uid",
            "name",
            "hostname",
            "svc_name",
            "instance_uid",
            "interface_uid",
            "interface_name",
            "domain",
        ],
    ),
    ("/metadata/product", &["name", "uid"]),
    ("/api/service", &["name", "uid"]),
];

/// Enumerated integer attributes and their values (dictionary.json,
/// api_activity.json for activity_id).
pub const ENUMS: &[(&str, &[i64])] = &[
    ("activity_id", &[0, 1, 2, 3, 4, 99]),
    ("severity_id", &[0, 1, 2, 3, 4, 5, 6, 99]),
    ("status_id", &[0, 1, 2, 99]),
    ("action_id", &[0, 1, 2, 99]),
    (
        "disposition_id",
        &[
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23,
            24, 25, 26, 27, 99,
        ],
    ),
];

/// Attributes that must be integers when present (timestamp_t, long_t,
/// integer_t).
pub const INTEGERS: &[&str] = &[
    "time",
    "start_time",
    "end_time",
    "duration",
    "count",
    "timezone_offset",
    "type_uid",
];

/// Attributes that must be strings when present.
pub const STRINGS: &[&str] = &[
    "activity_name",
    "category_name",
    "class_name",
    "type_name",
    "severity",
    "status",
    "status_code",
    "status_detail",
    "message",
];

/// The security_control profile's attributes (profiles/security_control.json).
pub const SECURITY_CONTROL: &[&str] = &[
    "action",
    "action_id",
    "attacks",
    "authorizations",
    "confidence",
    "confidence_id",
    "confidence_score",
    "disposition",
    "disposition_id",
    "firewall_rule",
    "is_alert",
    "malware",
    "malware_scan_info",
    "policy",
    "risk_details",
    "risk_level",
    "risk_level_id",
    "risk_score",
];

/// Every way `event` falls short of an OCSF 1.8.0 API Activity event
/// (empty: it is one).
pub fn problems(event: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(fields) = event.as_object() else {
        return vec!["not a JSON object".into()];
    };
    for name in REQUIRED {
        if fields.get(*name).is_none_or(Value::is_null) {
            out.push(format!("required attribute {name} is missing"));
        }
    }
    for (pointer, names) in OBJECT_REQUIRED {
        match event.pointer(pointer).and_then(Value::as_object) {
            Some(object) => {
                for name in *names {
                    if object.get(*name).is_none_or(Value::is_null) {
                        out.push(format!("{pointer}/{name} is required"));
                    }
                }
            }
            None => out.push(format!("{pointer} is not an object")),
        }
    }
    for (pointer, names) in AT_LEAST_ONE {
        if let Some(object) = event.pointer(pointer) {
            let Some(object) = object.as_object() else {
                out.push(format!("{pointer} is not an object"));
                continue;
            };
            if !names
                .iter()
                .any(|n| object.get(*n).is_some_and(|v| !v.is_null()))
            {
                out.push(format!("{pointer} needs at least one of {names:?}"));
            }
        }
    }
    if let Some(resources) = fields.get("resources") {
        match resources.as_array() {
            Some(list) => {
                for (i, r) in list.iter().enumerate() {
                    if !["name", "uid"].iter().any(|n| r.get(*n).is_some()) {
                        out.push(format!("resources[{i}] needs a name or uid"));
                    }
                }
            }
            None => out.push("resources is not an array".into()),
        }
    }
    for (name, values) in ENUMS {
        if let Some(v) = fields.get(*name) {
            match v.as_i64() {
                Some(n) if values.contains(&n) => {}
                _ => out.push(format!("{name} = {v} is not one of {values:?}")),
            }
        }
    }
    for name in INTEGERS {
        if let Some(v) = fields.get(*name) {
            if !v.is_i64() && !v.is_u64() {
                out.push(format!("{name} = {v} is not an integer"));
            }
        }
    }
    for name in STRINGS {
        if let Some(v) = fields.get(*name) {
            if !v.is_string() {
                out.push(format!("{name} = {v} is not a string"));
            }
        }
    }
    let int = |name: &str| fields.get(name).and_then(Value::as_i64);
    if int("class_uid") != Some(CLASS_UID) {
        out.push(format!("class_uid is not {CLASS_UID} (API Activity)"));
    }
    if int("category_uid") != Some(CATEGORY_UID) {
        out.push(format!(
            "category_uid is not {CATEGORY_UID} (Application Activity)"
        ));
    }
    // type_uid = class_uid * 100 + activity_id (the schema's rule).
    if let (Some(t), Some(a)) = (int("type_uid"), int("activity_id")) {
        if t != CLASS_UID * 100 + a {
            out.push(format!(
                "type_uid {t} is not class_uid * 100 + activity_id {a}"
            ));
        }
    }
    if event.pointer("/metadata/version").and_then(Value::as_str) != Some(SCHEMA_VERSION) {
        out.push(format!("metadata.version is not {SCHEMA_VERSION}"));
    }
    let profiles: Vec<&str> = event
        .pointer("/metadata/profiles")
        .and_then(Value::as_array)
        .map(|p| p.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !profiles.contains(&"security_control") {
        for name in SECURITY_CONTROL {
            if fields.contains_key(*name) {
                out.push(format!(
                    "{name} belongs to the security_control profile, which metadata.profiles does not name"
                ));
            }
        }
    }
    out
}
