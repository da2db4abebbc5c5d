//! support-bundle: what the vendor's support script collects, for a
//! vendor's engineer, with every secret taken out.
//!
//!   opshost run support-bundle.wasm -- [--dry-run] [--include PATH]… [--rules PATH]
//!
//! Collected: `compose/` (`.env` and the compose files), container states
//! and the last 1000 log lines of each service, a schema-only dump, table
//! row counts, migration state, versions, system facts, `/health`,
//! `/conformance`, `/status` and the product's `/v1/admin/support-bundle`
//! (the host adds the platform key: the plugin never holds it), plus files
//! the operator names. Then every collected file is redacted in two passes
//! (learn over all of them, then redact all: a secret found in `.env` is
//! also taken out of a log line), binary files and nested archives are left
//! out, and `support-bundle-<ts>.tar.gz` is packed with
//! `redaction-report.json`/`.txt` (per file, which rule fired how often;
//! never a secret). `--dry-run` does all of that but writes nothing.

mod collect;
mod database;
mod operation;
mod redaction;
mod rules;

/// Usage, shown for `--help` and with argument errors.
pub const USAGE: &str =
    "usage: opshost run support-bundle.wasm -- [--dry-run] [--include PATH]... [--rules PATH]
  --dry-run        collect and redact, then list what the bundle would hold and the
                   redaction report; writes nothing
  --include PATH   also collect this file or directory (walked) of [dir.support], redacted
                   like everything else; may be repeated
  --rules PATH     operator redaction rules, a TOML file in [dir.support]:
                     literals = [\"acme-internal-token-value\"]
                     [[regex]]
                     name = \"ticket-token\"
                     pattern = 'TKT-[0-9a-f]{24}'
  --help           this text
The bundle, support-bundle-YYYY-MM-DD-HHMMSS.tar.gz (UTC, mode 0600), is written into
[dir.bundles]. Binary files and nested archives are left out (listed in the report),
never copied unredacted. Exit codes: 0 bundle complete, 6 bundle written but a part
could not be collected (see collection.json in it), 1 failed or a bad argument
(the message names it), 3 a grant is missing.";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub dry_run: bool,
    /// Paths inside `[dir.support]`.
    pub include: Vec<String>,
    pub rules: Option<String>,
    pub help: bool,
}

/// The operator's arguments; a bad one is an error that shows the usage.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .filter(|v| !v.trim().is_empty())
                .ok_or(format!("{flag} needs {what}"))
        };
        match flag {
            "--dry-run" => opts.dry_run = true,
            "--include" => opts
                .include
                .push(relative(&value("a path in [dir.support]")?)?),
            "--rules" => {
                if opts.rules.is_some() {
                    return Err("--rules may be given once (put every rule in one file)".into());
                }
                opts.rules = Some(relative(&value("a TOML file in [dir.support]")?)?);
            }
            "--help" | "-h" => opts.help = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}

/// A path inside the support directory, as the host's fs takes it.
fn relative(path: &str) -> Result<String, String> {
    let trimmed = path.trim().trim_end_matches('/');
    if trimmed.starts_with('/') {
        return Err(format!(
            "{path:?} is absolute: give a path inside [dir.support] (point [dir.support] at its parent)"
        ));
    }
    if trimmed.split('/').any(|p| p == "..") {
        return Err(format!("{path:?} leaves [dir.support] (..)"));
    }
    Ok(if trimmed.is_empty() {
        ".".into()
    } else {
        trimmed.to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_their_values() {
        assert_eq!(p(&[]), Ok(Options::default()));
        let o = p(&[
            "--dry-run",
            "--include",
            "logs/",
            "--include=etc/app.conf",
            "--rules",
            "r.toml",
        ])
        .expect("valid");
        assert!(o.dry_run);
        assert_eq!(o.include, vec!["logs", "etc/app.conf"]);
        assert_eq!(o.rules.as_deref(), Some("r.toml"));
        assert_eq!(
            p(&["--include", "."]).map(|o| o.include),
            Ok(vec![".".to_string()])
        );
    }

    #[test]
    fn bad_arguments_say_what_to_do() {
        assert!(p(&["--include"]).unwrap_err().contains("needs"));
        assert!(p(&["--include", "/etc/passwd"])
            .unwrap_err()
            .contains("absolute"));
        assert!(p(&["--include", "a/../../b"]).unwrap_err().contains(".."));
        assert!(p(&["--rules", "a", "--rules", "b"])
            .unwrap_err()
            .contains("once"));
        assert!(p(&["--out", "x"]).unwrap_err().contains("unknown"));
    }
}
