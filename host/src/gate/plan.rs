//! Plan mode's record: the steps the plugin announced and, under each, the
//! changes it asked for that the host intercepted.

use std::fmt::Write as _;

use serde::Serialize;

/// A change the plan intercepted: what would have been done, never a secret
/// (the same text the audit line carries).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Planned {
    /// The `progress.step` it happened in, if the plugin had announced one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub capability: String,
    pub resource: String,
    pub verb: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// Every step the plugin announced, in order (repeats folded).
    pub steps: Vec<String>,
    /// The intercepted changes, in order.
    pub changes: Vec<Planned>,
    /// The plugin's warnings while planning (e.g. a step that could not be
    /// simulated further because it reads back a simulated change).
    pub notes: Vec<String>,
}

impl Plan {
    pub(super) fn step(&mut self, name: &str) {
        if self.steps.last().map(String::as_str) != Some(name) {
            self.steps.push(name.to_string());
        }
    }

    pub(super) fn note(&mut self, message: &str) {
        self.notes.push(message.to_string());
    }

    pub(super) fn push(&mut self, planned: Planned) {
        self.changes.push(planned);
    }

    /// The plan as an operator reads it: each step, the changes under it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.changes.is_empty() {
            out.push_str("Plan: no changes (every call the plugin made only reads)\n");
        } else {
            let _ = writeln!(
                out,
                "Plan: {} change{} (intercepted, nothing was changed)",
                self.changes.len(),
                if self.changes.len() == 1 { "" } else { "s" }
            );
        }
        let mut listed = vec![false; self.changes.len()];
        let line = |out: &mut String, c: &Planned| {
            let detail = c
                .detail
                .as_deref()
                .map(|d| format!("  {d}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    {} {} {}{detail}",
                c.capability, c.resource, c.verb
            );
        };
        for (i, c) in self.changes.iter().enumerate() {
            if c.step.is_none() {
                listed[i] = true;
                line(&mut out, c);
            }
        }
        for step in &self.steps {
            // The runbook announces its steps as `step 2/6: ...`; what a
            // step announces inside itself is shown under it.
            if step.starts_with("step ") {
                let _ = writeln!(out, "  {step}");
            } else {
                let _ = writeln!(out, "  - {step}");
            }
            for (i, c) in self.changes.iter().enumerate() {
                if !listed[i] && c.step.as_deref() == Some(step.as_str()) {
                    listed[i] = true;
                    line(&mut out, c);
                }
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(step: Option<&str>, verb: &str) -> Planned {
        Planned {
            step: step.map(str::to_string),
            capability: "fs".into(),
            resource: "backups".into(),
            verb: verb.into(),
            detail: Some("x.tar".into()),
        }
    }

    #[test]
    fn changes_are_listed_under_their_step() {
        let mut plan = Plan::default();
        plan.push(change(None, "mkdir"));
        plan.step("dump");
        plan.step("dump");
        plan.push(change(Some("dump"), "write"));
        plan.step("verify");
        let text = plan.render();
        assert_eq!(plan.steps, ["dump", "verify"]);
        let dump = text.find("- dump").expect("dump step");
        let write = text.find("fs backups write").expect("write listed");
        let verify = text.find("- verify").expect("verify step");
        assert!(dump < write && write < verify, "{text}");
        assert!(text.starts_with("Plan: 2 changes"), "{text}");
    }
}
