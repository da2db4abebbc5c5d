//! backup: `pg_dump -Fc` of the AGLedger database plus its vault public
//! keys, packed as the vendor's `backup-YYYY-MM-DD-HHMMSS.tar.gz` with a
//! `manifest.json` (versions, sizes, SHA-256 sums, row counts). The dump,
//! the row counts and the key export all read one snapshot, so a restore
//! can hold the restored database against the counts.
//!
//!   opshost run backup.wasm -- [--keep N] [--rollback-point]
//!
//! Nothing named `backup-*.tar.gz` appears until the archive is complete,
//! fsynced and read back (the host packs it; the dump was read with
//! `pg_restore --list` before that). Then retention keeps the newest N.

mod operation;

/// Usage, shown for `--help` and with argument errors.
pub const USAGE: &str =
    "usage: opshost run backup.wasm -- [--keep N] [--rollback-point] [--clean-interrupted]
  --keep N           keep the newest N backups in the directory (default 7, at least 1);
                     only files named backup-YYYY-MM-DD-HHMMSS.tar.gz are counted or removed
  --rollback-point   mark this backup as an upgrade's rollback point: retention never removes it
  --clean-interrupted  remove what killed backups left (.opshost-backup-*/, .backup-*.tar.gz.opshost-*.tmp);
                     without it they are only reported (use it when no other backup is running)
The directory is the config's [dir.backups] (or opshost run --dir backups=PATH).";

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub backup: agledger_ops::backup::Options,
    pub help: bool,
}

/// The operator's arguments; a bad one is an error that shows the usage.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        backup: agledger_ops::backup::Options {
            keep: 7,
            rollback_point: false,
            clean_interrupted: false,
        },
        help: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        match flag {
            "--keep" => {
                let value = inline
                    .or_else(|| it.next().cloned())
                    .ok_or("--keep needs a number")?;
                opts.backup.keep = match value.trim().parse::<i64>() {
                    Ok(n) if n >= 1 => usize::try_from(n).map_err(|_| "--keep is too large")?,
                    Ok(n) => {
                        return Err(format!(
                            "--keep {n}: keep at least 1 backup (retention never deletes them all)"
                        ))
                    }
                    Err(_) => return Err(format!("--keep {value:?} is not a number")),
                };
            }
            "--rollback-point" => opts.backup.rollback_point = true,
            "--clean-interrupted" => opts.backup.clean_interrupted = true,
            "--help" | "-h" => opts.help = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
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
    fn keep_must_be_a_positive_number() {
        assert_eq!(p(&[]).map(|o| o.backup.keep), Ok(7));
        assert_eq!(p(&["--keep", "3"]).map(|o| o.backup.keep), Ok(3));
        assert_eq!(
            p(&["--keep=2", "--rollback-point"]).map(|o| (o.backup.keep, o.backup.rollback_point)),
            Ok((2, true))
        );
        for bad in [
            &["--keep", "0"][..],
            &["--keep", "-1"],
            &["--keep", "seven"],
            &["--keep"],
            &["--kep", "3"],
        ] {
            assert!(p(bad).is_err(), "{bad:?}");
        }
        assert!(p(&["--keep", "0"]).unwrap_err().contains("at least 1"));
    }
}
