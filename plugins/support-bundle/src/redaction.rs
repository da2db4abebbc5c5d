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
    /// (section, what went wrong) from the collection, redacted: they are
    /// shown to the operator and travel in the bundle's report.
    pub problems: Vec<(String, String)>,
    pub report: redact::Report,
}

/// Where the report counts redactions in collection messages.
const MESSAGES: &str = "(messages)";

/// Redact `items`, and the names in `left_out` and the messages in
/// `problems` the collection produced, with what every item taught.
pub fn run(
    rules: &RuleSet,
    items: Vec<Item>,
    left_out: Vec<(String, String)>,
    problems: Vec<(String, String)>,
) -> Outcome {
    let earlier_left_out = left_out;
    let mut redactor = Redactor::new(rules);
    for item in items.iter().filter(|i| !redact::is_archive(&i.bytes)) {
        redactor.learn(&item.path, &item.bytes);
    }
    let names = clean_names(&mut redactor, &items);
    let mut text = |path: &str, s: &str| match redactor.redact(path, s.as_bytes()) {
        Redacted::Text(b) => String::from_utf8_lossy(&b).to_string(),
        Redacted::Binary => "(withheld)".to_string(),
    };
    let mut left_out: Vec<(String, String)> = earlier_left_out
        .iter()
        .map(|(p, why)| (text(NAMES, p), text(MESSAGES, why)))
        .collect();
    let problems = problems
        .iter()
        .map(|(s, e)| (text(MESSAGES, s), text(MESSAGES, e)))
        .collect();
    let mut members = Vec::with_capacity(items.len());
    for (item, name) in items.into_iter().zip(names.iter().cloned()) {
        if redact::is_archive(&item.bytes) {
            left_out.push((name, "a nested archive: left out unread".into()));
            continue;
        }
        match redactor.redact(&item.path, &item.bytes) {
            Redacted::Text(bytes) => members.push((name, bytes)),
            Redacted::Binary => left_out.push((
                name,
                format!(
                    "binary ({} bytes): left out, not copied unredacted",
                    item.bytes.len()
                ),
            )),
        }
    }
    let mut report = redactor.report();
    // The engine keyed its report by the names as collected: give it the
    // redacted ones, so no secret in a name reaches the report.
    report.files = std::mem::take(&mut report.files)
        .into_iter()
        .map(|(path, rules)| (names.renamed(&path), rules))
        .collect();
    report.binary = report.binary.iter().map(|p| names.renamed(p)).collect();
    Outcome {
        members,
        left_out,
        problems,
        report,
    }
}

/// Where the report counts redactions in file names.
pub const NAMES: &str = "(file names)";

/// Each item's name in the bundle, redacted.
struct Names {
    names: Vec<String>,
    renamed: std::collections::BTreeMap<String, String>,
}

impl Names {
    fn iter(&self) -> std::slice::Iter<'_, String> {
        self.names.iter()
    }

    fn renamed(&self, path: &str) -> String {
        self.renamed
            .get(path)
            .cloned()
            .unwrap_or_else(|| path.to_string())
    }
}

/// File names are text too: an operator's file may be named after a
/// secret. Each name goes through the same redactor (after it learned
/// every file), and two names redacted alike stay two names.
fn clean_names(redactor: &mut Redactor, items: &[Item]) -> Names {
    let mut taken = std::collections::BTreeSet::new();
    let mut renamed = std::collections::BTreeMap::new();
    let mut names = Vec::with_capacity(items.len());
    for item in items {
        // Component by component: a whole path, slashes and all, reads
        // like one base64 token to an entropy rule.
        let mut name = item
            .path
            .split('/')
            .map(|part| match redactor.redact(NAMES, part.as_bytes()) {
                Redacted::Text(bytes) => String::from_utf8_lossy(&bytes).replace(['\n', '/'], " "),
                // A name that is not text: withheld.
                Redacted::Binary => "(name withheld)".to_string(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let wanted = name.clone();
        let mut n = 2;
        while !taken.insert(name.clone()) {
            name = format!("{wanted}-{n}");
            n += 1;
        }
        if name != item.path {
            renamed.insert(item.path.clone(), name.clone());
        }
        names.push(name);
    }
    Names { names, renamed }
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
            vec![],
            vec![],
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

    #[test]
    fn a_file_named_after_a_secret_is_renamed() {
        let rules = RuleSet::builtin().expect("rules");
        let secret = "correcthorsebatterystaple";
        let out = run(
            &rules,
            vec![
                item(
                    "compose/.env",
                    format!("SMTP_PASSWORD={secret}\n").as_bytes(),
                ),
                item(&format!("included/{secret}.txt"), b"hello\n"),
                item(&format!("included/{secret}.bin"), &[0, 1, 2]),
            ],
            vec![(format!("included/{secret}.lnk"), "a symbolic link".into())],
            vec![(
                "included".into(),
                format!("reading included/{secret}.x: denied"),
            )],
        );
        assert!(!format!("{:?}", out.problems).contains(secret));
        assert_eq!(out.members.len(), 2);
        assert!(out.members[1].0.starts_with("included/") && out.members[1].0.ends_with(".txt"));
        for name in out
            .members
            .iter()
            .map(|m| &m.0)
            .chain(out.left_out.iter().map(|l| &l.0))
        {
            assert!(!name.contains(secret), "{name}");
        }
        assert!(out.report.files.contains_key(NAMES));
        let report = format!("{}{}", out.report_json(), out.report_text());
        assert!(!report.contains(secret), "{report}");
    }
}
