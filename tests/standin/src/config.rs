//! Configuration from the environment, read the way the product reads it:
//! `NAME` or `NAME_FILE=/path` (file-based secrets), empty values count as
//! unset, removed variables refuse to start. Also the image facts: the
//! version file and the "broken release" marker.

use std::path::Path;

use ed25519_dalek::SigningKey;

use crate::vault;

pub const DEFAULT_VERSION: &str = "0.0.0-dev";
const VERSION_FILE: &str = "/etc/agledger/version";
const BROKEN_FILE: &str = "/etc/agledger/broken";

/// Which long-running server this process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Api,
    Worker,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Role::Api => 3000,
            Role::Worker => 3001,
        }
    }
}

/// The image's version: /etc/agledger/version, or the file named by
/// AGLEDGER_STANDIN_VERSION_FILE (tests outside containers), else 0.0.0-dev.
pub fn version() -> String {
    let path =
        env_nonempty("AGLEDGER_STANDIN_VERSION_FILE").unwrap_or_else(|| VERSION_FILE.to_string());
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => DEFAULT_VERSION.to_string(),
    }
}

/// True in the image that models a release that never becomes healthy.
pub fn is_broken() -> bool {
    let path =
        env_nonempty("AGLEDGER_STANDIN_BROKEN_FILE").unwrap_or_else(|| BROKEN_FILE.to_string());
    Path::new(&path).exists()
}

/// "1.3.3", "v1.3.3", "1.3.3-rc.1" -> (1, 3, 3). Missing or non-numeric parts count as 0.
pub fn version_triple(v: &str) -> (u64, u64, u64) {
    let base = v.trim().trim_start_matches('v');
    let base = base.split(['-', '+']).next().unwrap_or("");
    let mut parts = base.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// The value of an environment variable, None when unset or blank.
pub fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A secret from `NAME` or from the file `NAME_FILE` names (trimmed).
/// Both set is a configuration error, as in the product.
pub fn secret(name: &str) -> Result<Option<String>, String> {
    let file_var = format!("{name}_FILE");
    match (env_nonempty(name), env_nonempty(&file_var)) {
        (Some(_), Some(_)) => Err(format!(
            "both {name} and {file_var} are set: set only one of them"
        )),
        (Some(v), None) => Ok(Some(v.trim().to_string())),
        (None, Some(path)) => {
            let path = path.trim().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{file_var}={path}: cannot read the file: {e}"))?;
            let text = text.trim().to_string();
            Ok(if text.is_empty() { None } else { Some(text) })
        }
        (None, None) => Ok(None),
    }
}

/// Variables removed from the product: the server refuses to start while they are set.
pub fn check_removed_vars() -> Result<(), String> {
    if std::env::var_os("AGLEDGER_LICENSE_MODE").is_some() {
        return Err(
            "AGLEDGER_LICENSE_MODE is set, but it was removed in 0.15.0 and the server \
                    refuses to start while it is set: comment it out in compose/.env"
                .to_string(),
        );
    }
    Ok(())
}

/// The HTTP port: $PORT, else the role's default.
pub fn port(role: Role) -> Result<u16, String> {
    match env_nonempty("PORT") {
        None => Ok(role.default_port()),
        Some(p) => p
            .trim()
            .parse::<u16>()
            .map_err(|_| format!("PORT={p:?} is not a port number")),
    }
}

/// API_KEY_SECRET (required) and API_KEY_SECRET_PREVIOUS (during a rotation).
/// The HMAC key is the 32 bytes the 64 hex characters spell.
#[derive(Clone)]
pub struct ApiKeySecrets {
    pub current: Vec<u8>,
    pub previous: Option<Vec<u8>>,
}

pub fn api_key_secrets() -> Result<ApiKeySecrets, String> {
    let current = secret("API_KEY_SECRET")?
        .ok_or("API_KEY_SECRET is not set (64 hex characters, e.g. `openssl rand -hex 32`)")?;
    let current = decode_hex_secret("API_KEY_SECRET", &current)?;
    let previous = match secret("API_KEY_SECRET_PREVIOUS")? {
        Some(p) => Some(decode_hex_secret("API_KEY_SECRET_PREVIOUS", &p)?),
        None => None,
    };
    Ok(ApiKeySecrets { current, previous })
}

fn decode_hex_secret(name: &str, value: &str) -> Result<Vec<u8>, String> {
    if value.len() != 64 || !value.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "{name} must be exactly 64 hex characters (got {} characters{})",
            value.len(),
            if value.chars().all(|c| c.is_ascii_hexdigit()) {
                ""
            } else {
                ", not all hex"
            }
        ));
    }
    hex::decode(value).map_err(|e| format!("{name} is not hex: {e}"))
}

/// VAULT_SIGNING_KEY (required) and VAULT_SIGNING_KEY_PREVIOUS (after a rotation).
pub struct VaultKeys {
    pub current: SigningKey,
    pub previous: Option<SigningKey>,
}

pub fn vault_keys() -> Result<VaultKeys, String> {
    let current = secret("VAULT_SIGNING_KEY")?.ok_or(
        "VAULT_SIGNING_KEY is not set (an Ed25519 private key, base64 PKCS#8 DER: \
         `agledger generate-signing-key`)",
    )?;
    let current = vault::parse_signing_key("VAULT_SIGNING_KEY", &current)?;
    let previous = match secret("VAULT_SIGNING_KEY_PREVIOUS")? {
        Some(p) => Some(vault::parse_signing_key("VAULT_SIGNING_KEY_PREVIOUS", &p)?),
        None => None,
    };
    Ok(VaultKeys { current, previous })
}

/// Names (never values) of the environment variables this process sees,
/// minus the ones every container has.
pub fn config_key_names() -> Vec<String> {
    const NOISE: &[&str] = &[
        "PATH", "HOME", "HOSTNAME", "TERM", "PWD", "SHLVL", "OLDPWD", "_",
    ];
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| !NOISE.contains(&k.as_str()))
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triples() {
        assert_eq!(version_triple("1.3.3"), (1, 3, 3));
        assert_eq!(version_triple("v1.10.0-rc.1"), (1, 10, 0));
        assert_eq!(version_triple("0.0.0-dev"), (0, 0, 0));
        assert_eq!(version_triple("latest"), (0, 0, 0));
        assert!(version_triple("1.3.2") < version_triple("1.3.3"));
    }

    #[test]
    fn hex_secret_rules() {
        assert!(decode_hex_secret("X", &"ab".repeat(32)).is_ok());
        assert!(decode_hex_secret("X", &"ab".repeat(31)).is_err());
        assert!(decode_hex_secret("X", &"zz".repeat(32)).is_err());
    }
}
