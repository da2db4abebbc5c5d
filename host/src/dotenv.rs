//! Reading a compose `.env` the way docker compose does: `KEY=VALUE`,
//! optional `export `, `#` comments, inline comments after unquoted values,
//! single quotes (literal) and double quotes (with `\n`, `\"`, `\\`).
//! Read-only: the host only looks values up (e.g. DATABASE_URL); editing
//! `.env` is a plugin's job.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

pub fn read(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(parse(&text))
}

pub fn parse(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            continue;
        }
        vars.insert(key.to_string(), value(raw));
    }
    vars
}

fn value(raw: &str) -> String {
    let raw = raw.trim_start();
    if let Some(rest) = raw.strip_prefix('\'') {
        return rest
            .split_once('\'')
            .map(|(v, _)| v)
            .unwrap_or(rest)
            .to_string();
    }
    if let Some(rest) = raw.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => break,
                },
                c => out.push(c),
            }
        }
        return out;
    }
    // Unquoted: an inline comment starts at whitespace followed by '#'.
    let mut end = raw.len();
    let bytes = raw.as_bytes();
    for i in 1..bytes.len() {
        if bytes[i] == b'#' && bytes[i - 1].is_ascii_whitespace() {
            end = i;
            break;
        }
    }
    raw[..end].trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_like_compose() {
        let vars = parse(
            "# comment\n\nexport A=1\nB = two words   # note\nC='lit # not comment'\nD=\"q\\\"x\"\n# E=commented\nF=a#b\nG=\n",
        );
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "lit # not comment");
        assert_eq!(vars["D"], "q\"x");
        assert!(!vars.contains_key("E"));
        assert_eq!(vars["F"], "a#b");
        assert_eq!(vars["G"], "");
    }
}
