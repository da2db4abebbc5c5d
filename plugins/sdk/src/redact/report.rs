//! What was redacted where: per file, rule name -> count. Never a secret.
use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// path -> rule name -> number of redactions.
    pub files: BTreeMap<String, BTreeMap<String, u64>>,
    /// Files passed through as binary (the caller copied or left them out).
    pub binary: Vec<String>,
}

impl Report {
    pub(crate) fn record(&mut self, path: &str, rule: &str) {
        *self
            .files
            .entry(path.to_string())
            .or_default()
            .entry(rule.to_string())
            .or_default() += 1;
    }

    /// Total redactions per rule over every file.
    pub fn totals(&self) -> BTreeMap<String, u64> {
        let mut t = BTreeMap::new();
        for rules in self.files.values() {
            for (rule, n) in rules {
                *t.entry(rule.clone()).or_default() += n;
            }
        }
        t
    }

    pub fn to_json(&self) -> serde_json::Value {
        let files: Vec<serde_json::Value> = self
            .files
            .iter()
            .map(|(path, rules)| serde_json::json!({ "path": path, "redactions": rules }))
            .collect();
        serde_json::json!({
            "files": files,
            "totals": self.totals(),
            "binary": self.binary,
        })
    }

    /// One line per file: `path: rule x3, other-rule x1`.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (path, rules) in &self.files {
            let list: Vec<String> = rules.iter().map(|(r, n)| format!("{r} x{n}")).collect();
            let list = if list.is_empty() {
                "nothing redacted".to_string()
            } else {
                list.join(", ")
            };
            s.push_str(&format!("{path}: {list}\n"));
        }
        for path in &self.binary {
            s.push_str(&format!("{path}: binary, not redacted\n"));
        }
        if s.is_empty() {
            s.push_str("nothing redacted\n");
        }
        s
    }
}
