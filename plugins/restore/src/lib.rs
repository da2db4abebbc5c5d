//! restore: an AGLedger backup (opshost's or the vendor script's
//! `backup-<ts>.tar.gz`) back into the deployment, safe by construction:
//!
//! 1. check the archive, the manifest's checksums and that pg_restore can
//!    read the dump (nothing is touched yet);
//! 2. ask the operator (or `--yes`);
//! 3. restore into a new database `agledger_restore_<ts>` (`pg_restore -j`
//!    when the host runs the tools) and verify it: row counts against the
//!    manifest, every vault chain;
//! 4. swap: stop api and worker, end sessions, rename the live database
//!    aside, rename the new one in, start, wait healthy, preflight, /health;
//!    a failure puts the old database back;
//! 5. drop the old database (or keep it with `--keep-previous`).
//!
//! A journal in the backup directory records the phase, so a restore that
//! was killed is found by the next run and undone with `--recover`.
//!
//! `--test` is the monthly restore test: steps 1 and 3 into a scratch
//! database, the result recorded, the scratch database dropped; the
//! deployment itself is never touched (see `drill`).

mod drill;
mod journal;
mod operation;

pub const USAGE: &str = "usage: opshost run restore.wasm -- BACKUP [--yes] [--keep-previous] [--jobs N] [--allow-broken-vault]
       opshost run restore.wasm -- --recover
       opshost run restore.wasm -- --test [BACKUP]
  BACKUP                backup-YYYY-MM-DD-HHMMSS.tar.gz in the backup directory ([dir.backups])
  --yes                 do not ask (also: opshost run --yes); without a terminal, --yes is required
  --keep-previous       keep the replaced database as agledger_previous_<ts> instead of dropping it
  --jobs N              parallel pg_restore jobs (default 2; the bundled database's container restores in one stream)
  --allow-broken-vault  swap in a backup whose vault chains are broken (they are reported)
  --recover             undo a restore that was interrupted (the next run finds it and says so)
  --test                the restore test (monthly, from cron): restore BACKUP (default: the newest) into a
                        scratch database beside the live one, verify tables, row counts and every vault
                        chain, record the result in restore-tests.ndjson in the backup directory, drop the
                        scratch database. Never stops or changes the running deployment. Exit 0 passed,
                        6 broken vault chains, 1 the backup could not be restored or verified";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub backup: Option<String>,
    pub yes: bool,
    pub keep_previous: bool,
    pub jobs: u32,
    pub allow_broken_vault: bool,
    pub recover: bool,
    pub test: bool,
    pub help: bool,
}

pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        jobs: 2,
        ..Options::default()
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--yes" | "-y" => opts.yes = true,
            "--keep-previous" => opts.keep_previous = true,
            "--allow-broken-vault" => opts.allow_broken_vault = true,
            "--recover" => opts.recover = true,
            "--test" => opts.test = true,
            "--help" | "-h" => opts.help = true,
            "--jobs" | "-j" => {
                let value = it.next().ok_or("--jobs needs a number")?;
                opts.jobs = match value.parse::<u32>() {
                    Ok(n) if (1..=64).contains(&n) => n,
                    _ => return Err(format!("--jobs {value:?}: a number from 1 to 64")),
                };
            }
            flag if flag.starts_with('-') => return Err(format!("unknown argument {flag:?}")),
            file => {
                if opts.backup.replace(file.to_string()).is_some() {
                    return Err("give one backup file".into());
                }
            }
        }
    }
    if opts.help {
        return Ok(opts);
    }
    if opts.test {
        return if opts.recover || opts.keep_previous || opts.allow_broken_vault {
            Err("--test restores into a scratch database and changes nothing: it takes only BACKUP and --jobs".into())
        } else {
            Ok(opts)
        };
    }
    match (&opts.backup, opts.recover) {
        (None, false) => {
            Err("which backup? give its file name, e.g. backup-2026-11-27-072044.tar.gz".into())
        }
        (Some(_), true) => {
            Err("--recover takes no backup file: it undoes the interrupted restore".into())
        }
        _ => Ok(opts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, String> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments() {
        let o = p(&["backup-2026-11-27-072044.tar.gz", "--yes", "--jobs", "4"]).expect("ok");
        assert_eq!(
            (o.backup.as_deref(), o.yes, o.jobs),
            (Some("backup-2026-11-27-072044.tar.gz"), true, 4)
        );
        assert!(p(&["--recover"]).expect("ok").recover);
        assert!(p(&[]).is_err());
        assert!(p(&["a", "b"]).is_err());
        assert!(p(&["a", "--jobs", "0"]).is_err());
        assert!(p(&["a", "--force"]).is_err());
        assert!(p(&["a", "--recover"]).is_err());
        assert!(p(&["--test"]).expect("newest").test);
        assert_eq!(
            p(&["--test", "b.tar.gz"]).expect("named").backup.as_deref(),
            Some("b.tar.gz")
        );
        assert!(p(&["--test", "--recover"]).is_err());
        assert!(p(&["--test", "--keep-previous"]).is_err());
    }
}
