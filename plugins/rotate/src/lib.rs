//! rotate: AGLedger's secrets, rotated the way AWS Secrets Manager rotates
//! (create, set, test, finish), each step journaled, proven and undoable.
//!
//! - `api-key-secret`: the current API_KEY_SECRET kept as
//!   API_KEY_SECRET_PREVIOUS and a new 64-hex secret from the host's
//!   secure random installed (one atomic `.env` write) -> services recreated
//!   (both secrets valid) and a real API key proven -> every stored key
//!   rehashed (the image's `rehash-api-keys` in a one-off container) ->
//!   recreated, proven -> finish: the previous secret's line deleted,
//!   recreated, proven again.
//! - `vault-signing-key`: a new Ed25519 key (host crypto), the old one kept
//!   as VAULT_SIGNING_KEY_PREVIOUS -> recreated -> the active key row is the
//!   new key, entries written since carry it, and a vault scan shows every
//!   old entry still verifies.
//!
//! Secrets never reach output, the journal or the audit log: the journal
//! holds step marks and public facts (key ids); what a resumed or undone
//! step needs is read back from `.env`.

mod api_key;
mod deploy;
mod operation;
mod registry;
mod signing_key;

pub const USAGE: &str = "usage: opshost run rotate.wasm -- api-key-secret|vault-signing-key [--yes] [--plan] [--ready-within SECONDS]
       opshost run rotate.wasm -- api-key-secret|vault-signing-key --recover | --resume
  api-key-secret      rotate API_KEY_SECRET (the HMAC key of stored API key hashes), rehashing every key
  vault-signing-key   rotate VAULT_SIGNING_KEY (the audit vault's Ed25519 key); old entries keep verifying
  --plan              print the steps and what each changes; change nothing
  --yes               do not ask (also: opshost run --yes); without a terminal, --yes is required
  --ready-within S    how long a recreated service may take to become ready (default 120)
  --recover           undo a rotation that was interrupted (past the point of no return: finish it)
  --resume            go on with an interrupted rotation from the step it was in
The API key rotation proves itself with the operator's API key: set
[http.api] bearer_token_file = \"PATH\" in the opshost config (a file holding a platform key).
Grants: fs=backups:rw (journal, lock), fs=compose:rw (compose/.env),
container=agledger:logs,recreate,run, http=api/health:GET, http=api/v1/auth/me:GET,
db=agledger:read (vault-signing-key: the key registry and the vault scan).
Exit codes: 0 rotated, recovered, or a plan that can run; 6 a plan that would be refused now (the reason is
printed); 1 failed or a bad argument (the message says what state things are in and what recovers);
2 a bad opshost command line, config or policy; 3 a grant missing.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    ApiKeySecret,
    VaultSigningKey,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub subject: Option<Subject>,
    pub yes: bool,
    pub plan: bool,
    pub ready_within_s: u64,
    pub recover: bool,
    pub resume: bool,
    pub help: bool,
}

pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        subject: None,
        yes: false,
        plan: false,
        ready_within_s: 120,
        recover: false,
        resume: false,
        help: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--yes" | "-y" => opts.yes = true,
            "--plan" => opts.plan = true,
            "--recover" => opts.recover = true,
            "--resume" => opts.resume = true,
            "--help" | "-h" => opts.help = true,
            "--ready-within" => {
                let value = it.next().ok_or("--ready-within needs a number of seconds")?;
                opts.ready_within_s = match value.parse::<u64>() {
                    Ok(n) if (1..=3600).contains(&n) => n,
                    _ => return Err(format!("--ready-within {value:?}: seconds, 1 to 3600")),
                };
            }
            subject @ ("api-key-secret" | "vault-signing-key") => {
                let s = if subject == "api-key-secret" {
                    Subject::ApiKeySecret
                } else {
                    Subject::VaultSigningKey
                };
                if opts.subject.replace(s).is_some() {
                    return Err("rotate one secret at a time".into());
                }
            }
            other if other.starts_with('-') => return Err(format!("unknown argument {other:?}")),
            other => {
                return Err(format!(
                    "{other:?} is not a secret this plugin rotates: api-key-secret or vault-signing-key"
                ))
            }
        }
    }
    if opts.help {
        return Ok(opts);
    }
    if opts.subject.is_none() {
        return Err("which secret? api-key-secret or vault-signing-key".into());
    }
    if opts.recover && opts.resume {
        return Err("--recover undoes, --resume goes on: give one".into());
    }
    if opts.plan && (opts.recover || opts.resume) {
        return Err(
            "--plan shows a new rotation; --recover and --resume act on an interrupted one".into(),
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
    fn a_subject_is_required_and_flags_are_checked() {
        assert_eq!(
            p(&["api-key-secret", "--yes"]).map(|o| (o.subject, o.yes)),
            Ok((Some(Subject::ApiKeySecret), true))
        );
        assert_eq!(
            p(&["vault-signing-key", "--plan"]).map(|o| (o.subject, o.plan)),
            Ok((Some(Subject::VaultSigningKey), true))
        );
        assert!(p(&[]).is_err());
        assert!(p(&["--help"]).is_ok());
        assert!(p(&["password"]).is_err());
        assert!(p(&["api-key-secret", "vault-signing-key"]).is_err());
        assert!(p(&["api-key-secret", "--recover", "--resume"]).is_err());
        assert!(p(&["api-key-secret", "--plan", "--recover"]).is_err());
        assert!(p(&["api-key-secret", "--ready-within", "0"]).is_err());
        assert!(p(&["api-key-secret", "--bogus"]).is_err());
    }
}
