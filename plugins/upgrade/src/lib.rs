//! upgrade: AGLedger to a newer release, as the vendor's upgrade.sh does
//! it, plus what the script cannot do: prove the result and undo itself.
//!
//! First the doctor's checks (refusing, before any change, on a finding
//! that would break the upgrade). The plan is printed and confirmed; then a runbook (journaled in the
//! backup directory, under the deployment lock): pre-upgrade backup (the
//! rollback point) -> pull and verify both images (signatures are checked
//! by the host) -> stop the worker -> migrations in a one-off container of
//! the target -> `.env` (version, pin, removed variables) -> replace api,
//! then worker, each gated on its health -> check version, conformance,
//! preflight. A failure undoes the applied steps in reverse (the database
//! comes back from the rollback point); `--no-auto-rollback` stops instead.

mod doctor;
mod operation;
mod steps;

pub const USAGE: &str = "usage: opshost run upgrade.wasm -- VERSION [--yes] [--skip-backup] [--no-auto-rollback] [--ready-within SECONDS] [--keep N]
       opshost run upgrade.wasm -- --recover | --resume
  VERSION             the release to run, e.g. 1.3.3 (newer than the running one; older: use rollback.wasm)
  --yes               do not ask (also: opshost run --yes); without a terminal, --yes is required
  --skip-backup       no pre-upgrade backup: a failed migration then cannot be undone (loudly warned)
  --no-auto-rollback  on a failure, stop and leave things for inspection; prints the command that rolls back
  --ready-within S    how long a replaced service may take to become ready (default 120)
  --keep N            backups kept by the pre-upgrade backup's retention (default 7)
  --recover           undo an upgrade that was interrupted (or stopped by --no-auto-rollback)
  --resume            go on with an interrupted upgrade from the step it was in
  --skip-check NAME   leave one of the doctor's checks out of the upgrade's preflight (repeat; loudly warned)
Before anything changes it runs the doctor's checks (as opshost run doctor.wasm does, backups aside) and
refuses on a finding that would make it fail (a transaction-mode pooler, an API not ready, a database session
that cannot open, a preflight failure it does not fix itself); other findings are printed as warnings.
Grants: db=agledger:admin, fs=backups:rw, fs=compose:rw (compose/.env), fs=install:ro (VERSION),
container=agledger:inspect,logs,stop,start,pull,recreate,run, http=api/health:GET, http=api/conformance:GET.";

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub target: Option<semver::Version>,
    pub yes: bool,
    pub skip_backup: bool,
    pub auto_rollback: bool,
    pub ready_within_s: u64,
    pub keep: usize,
    pub recover: bool,
    pub resume: bool,
    pub help: bool,
    /// Doctor checks the operator left out (`--skip-check`).
    pub skip_checks: Vec<String>,
}

pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        target: None,
        yes: false,
        skip_backup: false,
        auto_rollback: true,
        ready_within_s: 120,
        keep: 7,
        recover: false,
        resume: false,
        help: false,
        skip_checks: Vec::new(),
    };
    let mut it = args.iter();
    let number = |flag: &str, value: Option<&String>| -> Result<u64, String> {
        let value = value.ok_or(format!("{flag} needs a number"))?;
        match value.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("{flag} {value:?}: a whole number, at least 1")),
        }
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--yes" | "-y" => opts.yes = true,
            "--skip-backup" => opts.skip_backup = true,
            "--no-auto-rollback" => opts.auto_rollback = false,
            "--recover" => opts.recover = true,
            "--resume" => opts.resume = true,
            "--help" | "-h" => opts.help = true,
            "--skip-check" => {
                let name = it
                    .next()
                    .ok_or("--skip-check needs a check name, e.g. pooler")?;
                if !agledger_ops::doctor::UPGRADE_CHECKS.contains(&name.as_str()) {
                    return Err(format!(
                        "--skip-check {name:?}: the upgrade's checks are {}",
                        agledger_ops::doctor::UPGRADE_CHECKS.join(", ")
                    ));
                }
                opts.skip_checks.push(name.clone());
            }
            "--ready-within" => opts.ready_within_s = number(arg, it.next())?,
            "--keep" => {
                opts.keep =
                    usize::try_from(number(arg, it.next())?).map_err(|_| "--keep is too large")?
            }
            flag if flag.starts_with('-') => return Err(format!("unknown argument {flag:?}")),
            version => {
                let v = semver::Version::parse(version.trim_start_matches('v')).map_err(|e| {
                    format!("{version:?} is not a release version like 1.3.3 ({e})")
                })?;
                if opts.target.replace(v).is_some() {
                    return Err("give one target version".into());
                }
            }
        }
    }
    if opts.recover && opts.resume {
        return Err("--recover undoes, --resume goes on: give one".into());
    }
    match (&opts.target, opts.recover || opts.resume || opts.help) {
        (None, false) => Err("which version? e.g. opshost run upgrade.wasm -- 1.3.3".into()),
        (Some(_), true) if opts.recover || opts.resume => Err(
            "--recover and --resume take no version: they finish the interrupted upgrade".into(),
        ),
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
    fn a_version_is_required_and_checked() {
        assert_eq!(
            p(&["1.3.3"]).map(|o| o.target.map(|v| v.to_string())),
            Ok(Some("1.3.3".into()))
        );
        assert_eq!(
            p(&["v1.3.3", "--no-auto-rollback"]).map(|o| o.auto_rollback),
            Ok(false)
        );
        assert!(p(&[]).is_err());
        assert!(p(&["1.3"]).is_err());
        assert!(p(&["1.3.3", "1.3.4"]).is_err());
        assert!(p(&["--recover", "1.3.3"]).is_err());
        assert!(p(&["--recover"]).is_ok());
        assert!(p(&["1.3.3", "--ready-within", "0"]).is_err());
        assert_eq!(
            p(&["1.3.3", "--skip-check", "pooler"]).map(|o| o.skip_checks),
            Ok(vec!["pooler".to_string()])
        );
        assert!(p(&["1.3.3", "--skip-check", "backups"]).is_err());
        assert!(p(&["1.3.3", "--skip-check"]).is_err());
    }
}
