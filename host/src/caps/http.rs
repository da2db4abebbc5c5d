//! http: requests to base URLs named in the config. The plugin sends a
//! method and a path; the host builds the URL, checks the grant
//! (`http=NAME[/PREFIX]:METHODS`) and follows redirects itself, one hop at
//! a time, only while every hop stays inside the same grant.
//!
//! Plan mode (`opshost run --plan`) sends GET and HEAD; any other method is
//! answered without sending: status 200, no body, header
//! `x-opshost-plan: simulated`.

use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, LOCATION};
use reqwest::{Method, StatusCode};
use url::Url;
use wasmtime::component::Resource;

use super::bindings::opshost::plugin::http::{self as wit, Request, Response, ResponseHead};
use super::stream::{Chunked, Empty, Origin, Reader};
use super::{Call, CapError, Grant, RunContext};
use crate::caps::HostState;
use crate::gate::{self, Effect};

/// `send` refuses bodies past this; `send-streaming` has no cap.
const MAX_BODY: usize = 16 << 20;
const MAX_REDIRECTS: usize = 10;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Headers a plugin may not set: they would change where the request goes
/// or how the connection behaves.
const FORBIDDEN_HEADERS: [&str; 6] = [
    "host",
    "connection",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "te",
];

impl RunContext {
    /// One HTTP client for the process (connection pool shared by every
    /// call), built on first use.
    pub fn http_client(&self) -> reqwest::Client {
        static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
        CLIENT.get_or_init(client).clone()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The URL for `path` below `base`, or a denial if it would leave it.
fn target_url(base: &Url, path: &str) -> Result<(Url, String), CapError> {
    if !path.starts_with('/') || path.starts_with("//") || path.contains('\\') || path.contains('#')
    {
        return Err(CapError::Invalid(format!(
            "path {path:?} must start with a single '/' and hold no '\\' or '#'"
        )));
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%2e") {
        return Err(CapError::Invalid(format!(
            "path {path:?} has an encoded '/', '\\' or '.'"
        )));
    }
    let base_path = base.path().trim_end_matches('/');
    let joined = format!(
        "{}{}{}",
        base.origin().ascii_serialization(),
        base_path,
        path
    );
    let mut url =
        Url::parse(&joined).map_err(|e| CapError::Invalid(format!("path {path:?}: {e}")))?;
    with_base_credentials(base, &mut url);
    relative_path(base, &url)
        .map(|rel| (url, rel))
        .ok_or_else(|| CapError::Denied(format!("path {path:?} leaves the base URL")))
}

/// Credentials come from the operator's config only: whatever userinfo a
/// plugin path or a redirect carried is replaced by the base URL's.
fn with_base_credentials(base: &Url, url: &mut Url) {
    let _ = url.set_username(base.username());
    let _ = url.set_password(base.password());
}

/// `url`'s path and query below `base`, if `url` is inside `base`.
fn relative_path(base: &Url, url: &Url) -> Option<String> {
    if url.origin() != base.origin() {
        return None;
    }
    let base_path = base.path().trim_end_matches('/');
    let rest = url.path().strip_prefix(base_path)?;
    if !rest.starts_with('/') {
        return None;
    }
    Some(match url.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    })
}

fn needed_grant(api: &str, method: &Method, rel: &str) -> Grant {
    let path = rel.split('?').next().unwrap_or("/").to_string();
    Grant::Http {
        resource: api.to_string(),
        path_prefix: path,
        methods: [method.as_str().to_string()].into_iter().collect(),
    }
}

/// GET and HEAD read; every other method may change something.
fn effect_of(method: &Method) -> Effect {
    if method == Method::GET || method == Method::HEAD {
        Effect::Reads
    } else {
        Effect::Changes
    }
}

/// A redirect hop: the same gate check as the first request (learn mode
/// records the hop's grant too).
fn check_hop(run: &RunContext, api: &str, method: &Method, rel: &str) -> Result<(), CapError> {
    let wanted = needed_grant(api, method, rel);
    if run.permits(&wanted, || format!("{method} {rel} (redirect)")) {
        Ok(())
    } else {
        Err(CapError::missing(&wanted, &format!("{method} {rel}")))
    }
}

/// A request resolved against its base URL, before the gate.
struct Resolved {
    method: Method,
    url: Url,
    rel: String,
}

fn resolve(run: &RunContext, api: &str, req: &Request) -> Result<Resolved, CapError> {
    let base = &gate::configured(&run.config.http, "http base URL", api)?.url;
    let method = Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| CapError::Invalid(format!("HTTP method {:?}", req.method)))?;
    let (url, rel) = target_url(base, &req.path)?;
    Ok(Resolved { method, url, rel })
}

/// Resolve the request and pass the gate; `Err` is already audited.
fn admit(
    run: &RunContext,
    api: &str,
    req: &Request,
    call: Call,
) -> Result<(Call, Resolved), CapError> {
    let resolved = match resolve(run, api, req) {
        Ok(r) => r,
        Err(e) => return Err(call.deny(e)),
    };
    let wanted = needed_grant(api, &resolved.method, &resolved.rel);
    let call = call.gate(&wanted, effect_of(&resolved.method))?;
    Ok((call, resolved))
}

/// Plan mode's answer to a request that would change something.
fn simulated_head(rel: String) -> ResponseHead {
    ResponseHead {
        status: 200,
        headers: vec![("x-opshost-plan".into(), "simulated".into())],
        final_path: rel,
    }
}

/// The operator's token for `resource`, read now: `Authorization: Bearer`.
fn configured_authorization(
    api: &str,
    resource: &crate::config::HttpResource,
) -> Result<Option<HeaderValue>, CapError> {
    let Some(path) = &resource.bearer_token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        CapError::Failed(format!(
            "cannot read [http.{api}] bearer_token_file {}: {e}",
            path.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(CapError::Failed(format!(
            "[http.{api}] bearer_token_file {} must hold one token on one line",
            path.display()
        )));
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        CapError::Failed(format!(
            "[http.{api}] bearer_token_file {} holds characters a header cannot carry",
            path.display()
        ))
    })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

fn headers(list: &[(String, String)]) -> Result<HeaderMap, CapError> {
    let mut map = HeaderMap::new();
    for (name, value) in list {
        if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(CapError::Invalid(format!(
                "header {name:?} is set by the host, not the plugin"
            )));
        }
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| CapError::Invalid(format!("header name {name:?}: {e}")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| CapError::Invalid(format!("header {name}: {e}")))?;
        map.append(name, value);
    }
    Ok(map)
}

fn head(resp: &reqwest::Response, rel: String) -> ResponseHead {
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    ResponseHead {
        status: resp.status().as_u16(),
        headers,
        final_path: rel,
    }
}

/// Send `req`, following redirects that stay inside the grant.
async fn send(
    run: &RunContext,
    api: &str,
    resolved: Resolved,
    req: Request,
) -> Result<(reqwest::Response, String), CapError> {
    let resource = gate::configured(&run.config.http, "http base URL", api)?;
    let base = &resource.url;
    let Resolved {
        mut method,
        mut url,
        mut rel,
    } = resolved;
    let mut header_map = headers(&req.headers)?;
    // The operator's token, unless the plugin proves something with a key
    // of its own (e.g. that a given API key still authenticates).
    if !header_map.contains_key(AUTHORIZATION) {
        if let Some(token) = configured_authorization(api, resource)? {
            header_map.insert(AUTHORIZATION, token);
        }
    }
    let timeout = req
        .timeout_ms
        .map(|ms| Duration::from_millis(ms.into()))
        .unwrap_or(DEFAULT_TIMEOUT);
    let client = run.http_client();
    let mut body = req.body;
    for _ in 0..=MAX_REDIRECTS {
        let mut builder = client
            .request(method.clone(), url.clone())
            .headers(header_map.clone())
            .timeout(timeout);
        if let Some(b) = &body {
            builder = builder.body(b.clone());
        }
        let resp = builder.send().await.map_err(|e| {
            if e.is_timeout() {
                CapError::TimedOut(format!("{method} {rel}: no answer within {timeout:?}"))
            } else {
                CapError::Failed(format!("{method} {rel}: {}", error_chain(&e)))
            }
        })?;
        if !resp.status().is_redirection() {
            return Ok((resp, rel));
        }
        let Some(location) = resp.headers().get(LOCATION) else {
            return Ok((resp, rel));
        };
        let location = location
            .to_str()
            .map_err(|_| CapError::Failed("redirect with a non-text Location".into()))?;
        let next = url
            .join(location)
            .map_err(|e| CapError::Failed(format!("redirect to {location:?}: {e}")))?;
        rel = relative_path(base, &next).ok_or_else(|| {
            CapError::Denied(format!(
                "{method} {rel} redirected to {} which is outside the base URL of \"{api}\"; redirects are followed only inside the grant",
                next.origin().ascii_serialization()
            ))
        })?;
        if resp.status() == StatusCode::SEE_OTHER {
            method = Method::GET;
            body = None;
        }
        check_hop(run, api, &method, &rel)?;
        url = next;
        with_base_credentials(base, &mut url);
    }
    Err(CapError::Failed(format!(
        "more than {MAX_REDIRECTS} redirects"
    )))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn audit_detail(req: &Request) -> String {
    // The query string may carry tokens: audit the path only.
    let path = req.path.split('?').next().unwrap_or_default();
    format!("{} {path}", req.method.to_ascii_uppercase())
}

impl wit::Host for HostState {
    async fn send(&mut self, api: String, req: Request) -> Result<Response, CapError> {
        let call = self
            .run
            .call("http", &api, "send")
            .detail(audit_detail(&req));
        let run = self.run.clone();
        let (call, resolved) = admit(&run, &api, &req, call)?;
        if call.simulated() {
            return call.finish(Ok(Response {
                head: simulated_head(resolved.rel),
                body: Vec::new(),
            }));
        }
        let result = async {
            let (mut resp, rel) = send(&run, &api, resolved, req).await?;
            let head = head(&resp, rel);
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|e| CapError::Failed(error_chain(&e)))?
            {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(CapError::Failed(format!(
                        "response body is over {} MiB: use send-streaming",
                        MAX_BODY >> 20
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Response { head, body })
        }
        .await;
        call.finish(result)
    }

    async fn send_streaming(
        &mut self,
        api: String,
        req: Request,
    ) -> Result<(ResponseHead, Resource<Reader>), CapError> {
        let what = audit_detail(&req);
        let call = self
            .run
            .call("http", &api, "send-streaming")
            .detail(what.clone());
        let run = self.run.clone();
        let (call, resolved) = admit(&run, &api, &req, call)?;
        let origin = Origin {
            ctx: self.run.clone(),
            capability: "http",
            resource: api.clone(),
            what,
        };
        if call.simulated() {
            call.finish(Ok(()))?;
            let empty = self.table.push(Reader::new(Empty, origin))?;
            return Ok((simulated_head(resolved.rel), empty));
        }
        let (resp, rel) = call.finish(send(&run, &api, resolved, req).await)?;
        let head = head(&resp, rel);
        let body = resp
            .bytes_stream()
            .map(|chunk| chunk.map_err(|e| CapError::Failed(error_chain(&e))));
        let reader = self.table.push(Reader::new(Chunked::new(body), origin))?;
        Ok((head, reader))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("http://127.0.0.1:3001/api").expect("url")
    }

    #[test]
    fn paths_stay_below_the_base() {
        assert_eq!(
            target_url(&base(), "/health").expect("ok").0.as_str(),
            "http://127.0.0.1:3001/api/health"
        );
        assert!(matches!(
            target_url(&base(), "//evil.example/x"),
            Err(CapError::Invalid(_))
        ));
        assert!(matches!(
            target_url(&base(), "health"),
            Err(CapError::Invalid(_))
        ));
        assert!(matches!(
            target_url(&base(), "/../secret"),
            Err(CapError::Denied(_))
        ));
        assert!(matches!(
            target_url(&base(), "/%2e%2e/secret"),
            Err(CapError::Invalid(_))
        ));
        assert!(matches!(
            target_url(&base(), "/a\\b"),
            Err(CapError::Invalid(_))
        ));
    }

    #[test]
    fn redirect_targets_must_share_the_origin() {
        let b = base();
        assert!(
            relative_path(&b, &Url::parse("http://127.0.0.1:3001/api/x").expect("u")).is_some()
        );
        assert!(
            relative_path(&b, &Url::parse("http://127.0.0.2:3001/api/x").expect("u")).is_none()
        );
        assert!(relative_path(&b, &Url::parse("http://127.0.0.1:3001/apix").expect("u")).is_none());
        assert!(
            relative_path(&b, &Url::parse("https://127.0.0.1:3001/api/x").expect("u")).is_none()
        );
    }

    #[test]
    fn the_operators_token_is_read_from_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("platform-key");
        let resource = |path: Option<std::path::PathBuf>| crate::config::HttpResource {
            url: base(),
            bearer_token_file: path,
        };
        assert!(configured_authorization("api", &resource(None))
            .expect("none")
            .is_none());
        std::fs::write(&file, "agl_0123456789abcdef\n").expect("write");
        let value = configured_authorization("api", &resource(Some(file.clone())))
            .expect("read")
            .expect("some");
        assert_eq!(
            value.to_str().expect("ascii"),
            "Bearer agl_0123456789abcdef"
        );
        assert!(value.is_sensitive());
        std::fs::write(&file, "two tokens\n").expect("write");
        assert!(configured_authorization("api", &resource(Some(file.clone()))).is_err());
        std::fs::remove_file(&file).expect("rm");
        let err = configured_authorization("api", &resource(Some(file))).expect_err("missing");
        assert!(err.to_string().contains("bearer_token_file"), "{err}");
    }

    #[test]
    fn hop_headers_are_refused() {
        assert!(headers(&[("Host".into(), "evil".into())]).is_err());
        assert!(headers(&[("X-Ok".into(), "1".into())]).is_ok());
    }

    #[test]
    fn needed_grant_names_the_path() {
        assert_eq!(
            needed_grant("api", &Method::POST, "/v1/x?y=1").to_string(),
            "http=api/v1/x:POST"
        );
        assert!(crate::policy::grant::path_within("/v1/x", "/"));
    }
}
