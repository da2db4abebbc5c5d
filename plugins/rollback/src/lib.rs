//! rollback: back to the release that ran before the last upgrade, as one
//! operation: its database (the upgrade's rollback point) and its image
//! (the digest the upgrade recorded), in the order that never runs the
//! newer image's migrations over the older data: stop, swap the restored
//! database in, then start the older image.
//!
//! Before asking, it says what will be lost: the rows written since the
//! backup. Afterwards it checks health, version, preflight and the vault.

mod operation;
mod steps;

pub const USAGE: &str = "usage: opshost run rollback.wasm -- [--yes] [--ready-within SECONDS] [--backup FILE --to VERSION]
       opshost run rollback.wasm -- --recover
  --yes               do not ask (also: opshost run --yes); without a terminal, --yes is required
  --backup FILE       the backup to go back to (default: the last upgrade's rollback point)
  --to VERSION        the version to go back to (default: the one the last upgrade replaced)
  --ready-within S    how long a replaced service may take to become ready (default 120)
  --recover           undo a rollback that was interrupted
Grants: as upgrade.wasm.";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub yes: bool,
    pub backup: Option<String>,
    pub to: Option<String>,
    pub ready_within_s: u64,
    pub recover: bool,
    pub help: bool,
}

pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        ready_within_s: 120,
        ..Options::default()
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--yes" | "-y" => opts.yes = true,
            "--recover" => opts.recover = true,
            "--help" | "-h" => opts.help = true,
            "--backup" => {
                opts.backup = Some(it.next().ok_or("--backup needs a file name")?.clone())
            }
            "--to" => {
                let v = it.next().ok_or("--to needs a version")?;
                semver::Version::parse(v.trim_start_matches('v'))
                    .map_err(|e| format!("--to {v:?} is not a release version ({e})"))?;
                opts.to = Some(v.trim_start_matches('v').to_string());
            }
            "--ready-within" => {
                let v = it.next().ok_or("--ready-within needs a number")?;
                opts.ready_within_s = match v.parse::<u64>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(format!("--ready-within {v:?}: a whole number, at least 1")),
                };
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if opts.backup.is_some() != opts.to.is_some() {
        return Err(
            "--backup and --to go together (a backup and the version that wrote it)".into(),
        );
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments() {
        assert!(p(&[]).is_ok());
        assert!(p(&["--backup", "b.tar.gz"]).is_err());
        assert!(p(&["--backup", "b.tar.gz", "--to", "1.3.2"]).is_ok());
        assert!(p(&["--to", "one"]).is_err());
        assert!(p(&["1.3.2"]).is_err());
    }
}
