//! The operator's own redaction rules: a TOML file in `[dir.support]`
//! (`--rules PATH`), because a plugin cannot read opshost's config.
//!
//! ```toml
//! literals = ["acme-internal-token-value"]   # exact values, redacted everywhere
//! [[regex]]
//! name = "ticket-token"                      # named in the redaction report
//! pattern = 'TKT-[0-9a-f]{24}'               # the whole match is redacted
//! ```

use opshost_sdk::redact::RuleSet;
use serde::Deserialize;

/// A literal shorter than this would take ordinary words out of every file.
const MIN_LITERAL: usize = 6;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorRules {
    #[serde(default)]
    pub literals: Vec<String>,
    #[serde(default)]
    pub regex: Vec<NamedRegex>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedRegex {
    pub name: String,
    pub pattern: String,
}

impl OperatorRules {
    /// Parse and check the file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, String> {
        let rules: OperatorRules = toml::from_str(text)
            .map_err(|e| format!("{origin}: not a rules file ({e}); see --help for its form"))?;
        for literal in &rules.literals {
            if literal.trim().chars().count() < MIN_LITERAL {
                return Err(format!(
                    "{origin}: a literal of {} characters would redact ordinary text: \
                     give values of at least {MIN_LITERAL} characters (or a regex)",
                    literal.trim().chars().count()
                ));
            }
        }
        for r in &rules.regex {
            if r.name.trim().is_empty() || r.pattern.is_empty() {
                return Err(format!(
                    "{origin}: every [[regex]] needs a name and a pattern"
                ));
            }
        }
        Ok(rules)
    }

    /// The built-in rules plus these.
    pub fn rule_set(&self) -> Result<RuleSet, String> {
        let regexes: Vec<(String, String)> = self
            .regex
            .iter()
            .map(|r| (r.name.clone(), r.pattern.clone()))
            .collect();
        RuleSet::builtin()?.with_operator_rules(&self.literals, &regexes)
    }

    pub fn count(&self) -> usize {
        self.literals.len() + self.regex.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_named_regexes() {
        let r = OperatorRules::parse(
            "literals = [\"acme-internal-token\"]\n[[regex]]\nname = \"ticket\"\npattern = 'TKT-[0-9a-f]{24}'\n",
            "r.toml",
        )
        .expect("valid");
        assert_eq!(r.literals, vec!["acme-internal-token"]);
        assert_eq!(r.regex[0].name, "ticket");
        assert_eq!(r.count(), 2);
        assert_eq!(
            OperatorRules::parse("", "r.toml").expect("empty").count(),
            0
        );
    }

    #[test]
    fn refuses_what_would_destroy_the_bundle_or_is_misspelt() {
        assert!(OperatorRules::parse("literals = [\"a\"]", "r.toml")
            .unwrap_err()
            .contains("at least"));
        assert!(OperatorRules::parse("literal = [\"abcdefgh\"]", "r.toml")
            .unwrap_err()
            .contains("r.toml"));
        assert!(OperatorRules::parse("[[regex]]\nname = \"\"\npattern = \"x\"", "r.toml").is_err());
        assert!(OperatorRules::parse("not toml ===", "r.toml").is_err());
    }
}
