//! Just enough of the OCI distribution API to read signatures: a manifest
//! by tag and blobs by digest, anonymously (with the Bearer token dance a
//! public registry asks for). Plain HTTP only for a registry on the
//! loopback interface, as Docker does; HTTPS (webpki roots) otherwise.

use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Manifests and signature payloads are small; anything bigger is not one.
const MAX_BYTES: usize = 4 << 20;

pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// `registry/repository@sha256:<hex>`, split the way Docker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestRef {
    /// host[:port] as named (`docker.io` for Docker Hub).
    pub registry: String,
    pub repository: String,
    /// `sha256:<64 hex>`.
    pub digest: String,
}

impl DigestRef {
    pub fn parse(reference: &str) -> Result<Self, String> {
        let (name, digest) = reference
            .split_once('@')
            .ok_or_else(|| format!("{reference:?} is not a digest reference (repo@sha256:…)"))?;
        let hex = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| format!("{reference:?}: the digest is not sha256:<64 hex>"))?;
        // A tag before the digest (`repo:tag@sha256:…`) is ignored, as Docker does.
        let name = crate::caps::container::images::repository(name);
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            Some(_) => ("docker.io".to_string(), name.to_string()),
            None => ("docker.io".to_string(), format!("library/{name}")),
        };
        if repository.is_empty() {
            return Err(format!("{reference:?} names no repository"));
        }
        Ok(Self {
            registry,
            repository,
            digest: format!("sha256:{}", hex.to_ascii_lowercase()),
        })
    }

    /// The digest's hex part.
    pub fn hex(&self) -> &str {
        &self.digest["sha256:".len()..]
    }

    /// The base URL of the registry's API.
    pub fn api_base(&self) -> String {
        let host = if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        };
        format!("{}://{host}", if loopback(host) { "http" } else { "https" })
    }
}

/// Is `host[:port]` on this machine's loopback interface?
fn loopback(host: &str) -> bool {
    let bare = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    bare == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                // Blob downloads redirect to storage (S3, a CDN).
                .redirect(reqwest::redirect::Policy::limited(5))
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_else(|_| reqwest::Client::new())
        })
        .clone()
}

/// One repository of one registry.
pub struct Repo {
    base: String,
    repository: String,
    token: tokio::sync::Mutex<Option<String>>,
}

impl Repo {
    pub fn new(r: &DigestRef) -> Self {
        Self {
            base: r.api_base(),
            repository: r.repository.clone(),
            token: Default::default(),
        }
    }

    pub fn describe(&self) -> String {
        format!("{}/{}", self.base, self.repository)
    }

    /// A manifest by tag; `None` when the registry has no such tag.
    pub async fn manifest(&self, tag: &str) -> Result<Option<Vec<u8>>, String> {
        self.get(&format!("manifests/{tag}"), MANIFEST_TYPES).await
    }

    /// The OCI index of the referrers of `digest`: the referrers API (OCI
    /// distribution 1.1), else the referrers tag schema's fallback tag
    /// `sha256-<hex>` (registries without the API, where cosign 3 puts it).
    pub async fn referrers(&self, digest: &str) -> Result<Option<Vec<u8>>, String> {
        if let Some(index) = self.get(&format!("referrers/{digest}"), INDEX_TYPE).await? {
            return Ok(Some(index));
        }
        let tag = digest.replacen(':', "-", 1);
        self.get(&format!("manifests/{tag}"), INDEX_TYPE).await
    }

    /// A manifest by digest, checked against it.
    pub async fn manifest_by_digest(&self, digest: &str) -> Result<Vec<u8>, String> {
        self.checked(&format!("manifests/{digest}"), MANIFEST_TYPES, digest)
            .await
    }

    /// A blob, checked against its digest.
    pub async fn blob(&self, digest: &str) -> Result<Vec<u8>, String> {
        self.checked(&format!("blobs/{digest}"), "*/*", digest)
            .await
    }

    async fn checked(&self, path: &str, accept: &str, digest: &str) -> Result<Vec<u8>, String> {
        let want = digest
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("digest {digest:?} is not sha256"))?;
        let bytes = self
            .get(path, accept)
            .await?
            .ok_or_else(|| format!("{digest} is missing from {}", self.describe()))?;
        let got = hex::encode(Sha256::digest(&bytes));
        if got != want {
            return Err(format!(
                "{digest} from {} has sha256:{got}",
                self.describe()
            ));
        }
        Ok(bytes)
    }

    async fn get(&self, path: &str, accept: &str) -> Result<Option<Vec<u8>>, String> {
        let url = format!("{}/v2/{}/{path}", self.base, self.repository);
        let mut asked_token = false;
        loop {
            let mut req = client().get(&url).header("Accept", accept);
            if let Some(t) = self.token.lock().await.as_deref() {
                req = req.bearer_auth(t);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| format!("cannot reach {url}: {e}"))?;
            match resp.status().as_u16() {
                200 => return read_limited(resp, &url).await.map(Some),
                404 => return Ok(None),
                401 if !asked_token => {
                    let challenge = resp
                        .headers()
                        .get("www-authenticate")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    *self.token.lock().await = Some(anonymous_token(&challenge, &url).await?);
                    asked_token = true;
                }
                status => return Err(format!("{url}: the registry answered HTTP {status}")),
            }
        }
    }
}

async fn read_limited(mut resp: reqwest::Response, url: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading {url}: {e}"))?
    {
        out.extend_from_slice(&chunk);
        if out.len() > MAX_BYTES {
            return Err(format!("{url} is larger than {MAX_BYTES} bytes"));
        }
    }
    Ok(out)
}

/// The anonymous pull token a `Bearer realm=…,service=…,scope=…` challenge
/// offers (Docker Hub, ghcr.io, most public registries).
async fn anonymous_token(challenge: &str, url: &str) -> Result<String, String> {
    let params = challenge.strip_prefix("Bearer ").ok_or_else(|| {
        format!(
            "{url} needs credentials (HTTP 401, {challenge:?}); only anonymous pulls are supported"
        )
    })?;
    let mut realm = None;
    let mut query = Vec::new();
    for part in split_params(params) {
        if let Some((k, v)) = part.split_once('=') {
            let v = v.trim_matches('"').to_string();
            match k.trim() {
                "realm" => realm = Some(v),
                "service" | "scope" => query.push((k.trim().to_string(), v)),
                _ => {}
            }
        }
    }
    let realm = realm.ok_or_else(|| format!("{url}: the 401 challenge names no realm"))?;
    let resp = client()
        .get(&realm)
        .query(&query)
        .send()
        .await
        .map_err(|e| format!("cannot reach the token service {realm}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!(
            "the token service {realm} refused an anonymous token (HTTP {})",
            resp.status()
        ));
    }
    let body: serde_json::Value = serde_json::from_slice(&read_limited(resp, &realm).await?)
        .map_err(|e| format!("the token service {realm} answered no JSON: {e}"))?;
    body["token"]
        .as_str()
        .or(body["access_token"].as_str())
        .map(str::to_string)
        .ok_or_else(|| format!("the token service {realm} gave no token"))
}

/// `a="x,y",b=z` -> [`a="x,y"`, `b=z`]: commas inside quotes stay.
fn split_params(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn references_split_like_docker() {
        let r =
            DigestRef::parse(&format!("127.0.0.1:5000/agledger/agledger@sha256:{H}")).expect("ref");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "agledger/agledger");
        assert_eq!(r.api_base(), "http://127.0.0.1:5000");
        let hub = DigestRef::parse(&format!("busybox@sha256:{H}")).expect("hub");
        assert_eq!(
            (hub.registry.as_str(), hub.repository.as_str()),
            ("docker.io", "library/busybox")
        );
        assert_eq!(hub.api_base(), "https://registry-1.docker.io");
        let ghcr = DigestRef::parse(&format!("ghcr.io/a/b:1.0@sha256:{H}")).expect("ghcr");
        assert_eq!(ghcr.repository, "a/b");
        assert_eq!(ghcr.api_base(), "https://ghcr.io");
        assert_eq!(
            DigestRef::parse(&format!("localhost:5000/x@sha256:{H}"))
                .expect("l")
                .api_base(),
            "http://localhost:5000"
        );
        assert!(loopback("[::1]:5000") && loopback("127.0.0.2") && !loopback("127.0.0.1.nip.io"));
        assert!(DigestRef::parse("repo:1.0").is_err());
        assert!(DigestRef::parse("repo@sha256:abc").is_err());
    }

    #[test]
    fn challenge_parameters_keep_quoted_commas() {
        assert_eq!(
            split_params(r#"realm="https://a/token",service="r",scope="repository:x/y:pull,push""#),
            vec![
                r#"realm="https://a/token""#,
                r#"service="r""#,
                r#"scope="repository:x/y:pull,push""#
            ]
        );
    }
}
