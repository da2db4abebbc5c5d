//! Two passes over everything collected: the engine learns every secret
//! from every file first (a password found in `.env` is then known when a
//! log line or a column default repeats it), then each file is redacted.
//! What the engine cannot read as text, and nested archives, are left out,
//! never copied as they are: a secret inside them could not be taken out.

use opshost_sdk::redact::{self, Redacted, Redactor, RuleSet};
use serde_json::{json, Value};

use crate::collect::Item;

pub struct Outcome {
    /// (path inside the bundle, redacted bytes).
    pub members: Vec<(String, Vec<u8>)>,
    /// (path, why it is not in the bundle).
    pub left_out: Vec<(String, String)>,
    pub report: redact::Report,
}

pub fn run(rules: &RuleSet, items: Vec<Item>) -> Outcome {
    let mut redactor = Redactor::new(rules);
    for item in items.iter().filter(|i| !redact::is_archive(&i.bytes)) {
        redactor.learn(&item.path, &item.bytes);
    }
    let mut members = Vec::with_capacity(items.len());
    let mut left_out = Vec::new();
    for item in items {
        if redact::is_archive(&item.bytes) {
            left_out.push((item.path, "a nested archive: left out unread".into()));
            continue;
        }
        match redactor.redact(&item.path, &item.bytes) {
            Redacted::Text(bytes) => members.push((item.path, bytes)),
            Redacted::Binary => left_out.push((
                item.path,
                format!(
                    "binary ({} bytes): left out, not copied unredacted",
                    item.bytes.len()
                ),
            )),
        }
    }
    Outcome {
        members,
        left_out,
        report: redactor.report(),
    }
}

impl Outcome {
    /// How many redactions were made in all.
    pub fn redactions(&self) -> u64 {
        self.report.files.values().flat_map(|r| r.values()).sum()
    }

    /// `redaction-report.json`: the engine's per-file counts plus what was
    /// left out. Never a secret: rule names, paths and counts only.
    pub fn report_json(&self) -> Value {
        let mut doc = self.report.to_json();
        let left: Vec<Value> = self
            .left_out
            .iter()
            .map(|(p, why)| json!({"path": p, "why": why}))
            .collect();
        if let Value::Object(map) = &mut doc {
            map.insert("left_out".into(), Value::from(left));
            map.insert("redactions".into(), Value::from(self.redactions()));
            doc
        } else {
            json!({"engine": doc, "left_out": left, "redactions": self.redactions()})
        }
    }

    /// `redaction-report.txt`: the same for people.
    pub fn report_text(&self) -> String {
        let engine = self.report.to_text();
        let mut text = if engine.trim().is_empty() {
            let mut own = format!("{} redactions\n", self.redactions());
            for (path, rules) in &self.report.files {
                let fired: Vec<String> = rules.iter().map(|(r, n)| format!("{r} x{n}")).collect();
                if !fired.is_empty() {
                    own.push_str(&format!("  {path}: {}\n", fired.join(", ")));
                }
            }
            own
        } else {
            engine
        };
        if !text.ends_with('\n') {
            text.push('\n');
        }
        if !self.left_out.is_empty() {
            text.push_str("left out:\n");
            for (path, why) in &self.left_out {
                text.push_str(&format!("  {path}: {why}\n"));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(path: &str, bytes: &[u8]) -> Item {
        Item {
            path: path.into(),
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn a_secret_learned_in_one_file_is_taken_out_of_every_file() {
        let rules = RuleSet::builtin().expect("rules");
        // Plain words: only learning it from `.env` can find it in the log.
        let secret = "correcthorsebatterystaple";
        let out = run(
            &rules,
            vec![
                // The log comes first: learning must see every file before
                // any is redacted.
                item(
                    "containers/logs/api.log",
                    format!("retrying with {secret}\n").as_bytes(),
                ),
                item(
                    "compose/.env",
                    format!("SMTP_PASSWORD={secret}\nLOG_LEVEL=info\n").as_bytes(),
                ),
                item("included/blob.bin", &[0, 1, 2, 0, 255, 0, 7]),
                item("included/old.tar.gz", &[0x1f, 0x8b, 8, 0, 0, 0]),
            ],
        );
        let names: Vec<&str> = out.members.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["containers/logs/api.log", "compose/.env"]);
        for (path, bytes) in &out.members {
            let text = String::from_utf8_lossy(bytes);
            assert!(!text.contains(secret), "{path}: {text}");
        }
        assert!(String::from_utf8_lossy(&out.members[1].1).contains("LOG_LEVEL=info"));
        let left: Vec<&str> = out.left_out.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(left, ["included/blob.bin", "included/old.tar.gz"]);
        assert!(out.redactions() >= 2);
        let text = out.report_text();
        assert!(
            text.contains("included/old.tar.gz") && !text.contains(secret),
            "{text}"
        );
        assert!(!out.report_json().to_string().contains(secret));
    }
}
