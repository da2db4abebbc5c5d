//! The doctor's command line.

use agledger_ops::doctor::{self, Check, Settings};

pub struct Options {
    pub checks: Vec<&'static Check>,
    pub settings: Settings,
    pub help: bool,
    pub list: bool,
}

pub fn usage() -> String {
    let names: Vec<&str> = doctor::CHECKS.iter().map(|c| c.name).collect();
    format!(
        "usage: opshost run doctor.wasm -- [--rpo AGE] [--check NAME]... [--skip NAME]... [--list]
  --rpo AGE      how old the newest backup may be: 30m, 24h (default), 7d, or seconds
  --check NAME   run only these checks (repeat, or NAME,NAME); --skip NAME leaves one out
  --list         what each check looks at
  opshost's --json prints every finding (severity, title, evidence, fix, blocks_upgrade) as data.
Checks: {}
Exit codes: 0 all well; 6 findings (or a check that could not run: it says why); 1 a bad argument
(the message names it).
Grants: db=agledger:read, fs=compose:ro, fs=backups:ro, container=agledger:inspect,run,
http=api/health:GET, http=api/conformance:GET.",
        names.join(", ")
    )
}

/// `30m`, `24h`, `7d`, `90s` or plain seconds.
pub fn parse_age(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c),
        _ => (t, 's'),
    };
    let n: i64 = number
        .parse()
        .map_err(|_| format!("--rpo {text:?}: a number with s, m, h or d, e.g. 24h"))?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("--rpo {text:?}: the unit is s, m, h or d")),
    };
    match n.checked_mul(scale) {
        Some(s) if s > 0 => Ok(s),
        _ => Err(format!("--rpo {text:?}: more than zero, and sensible")),
    }
}

fn named(name: &str) -> Result<&'static Check, String> {
    doctor::find(name).ok_or_else(|| format!("no check named {name:?} (see --list)"))
}

pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut settings = Settings::default();
    let (mut only, mut skip) = (Vec::new(), Vec::new());
    let (mut help, mut list) = (false, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--help" | "-h" => help = true,
            "--list" => list = true,
            "--rpo" => {
                settings.rpo_s = parse_age(it.next().ok_or("--rpo needs an age, e.g. 24h")?)?
            }
            "--check" | "--skip" => {
                let value = it.next().ok_or(format!("{arg} needs a check name"))?;
                for name in value.split(',').filter(|n| !n.is_empty()) {
                    let check = named(name.trim())?;
                    if arg == "--check" {
                        only.push(check)
                    } else {
                        skip.push(check.name)
                    }
                }
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let checks = doctor::CHECKS
        .iter()
        .filter(|c| only.is_empty() || only.iter().any(|o| o.name == c.name))
        .filter(|c| !skip.contains(&c.name))
        .collect::<Vec<_>>();
    if checks.is_empty() && !help && !list {
        return Err("every check was skipped: nothing to do".into());
    }
    Ok(Options {
        checks,
        settings,
        help,
        list,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn ages_and_checks() {
        assert_eq!(parse_age("24h"), Ok(86_400));
        assert_eq!(parse_age("90"), Ok(90));
        assert_eq!(parse_age("7d"), Ok(604_800));
        assert!(parse_age("0h").is_err());
        assert!(parse_age("3w").is_err());
        assert!(parse_age("h").is_err());
        let o = p(&["--check", "pool,pooler"]).expect("parse");
        assert_eq!(
            o.checks.iter().map(|c| c.name).collect::<Vec<_>>(),
            vec!["pooler", "pool"]
        );
        let o = p(&["--skip", "backups", "--rpo", "1h"]).expect("parse");
        assert_eq!(o.settings.rpo_s, 3600);
        assert!(!o.checks.iter().any(|c| c.name == "backups"));
        assert!(p(&["--check", "nope"]).is_err());
        assert!(p(&["--frobnicate"]).is_err());
    }
}
