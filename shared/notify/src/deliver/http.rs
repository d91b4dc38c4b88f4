//! The HTTP side of a delivery: the client (rustls, timeouts, extra CA, no proxy, no
//! redirects), a target's secret headers, and one attempt classified as delivered,
//! transient or permanent.

use std::path::Path;
use std::time::Duration;

use edge_config::SecretSource;
use edge_config::notify::Notify;
use edge_util::error_chain;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue, RETRY_AFTER};

use super::NotifyError;
use crate::target::{Kind, Outgoing, Spec};

/// Installs ring as rustls' process-wide crypto provider unless one is installed (reqwest is
/// built without one and refuses to build a client otherwise).
fn install_crypto_provider() {
    // Err only means a provider (edge-ddns installs the same one) is in place already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

// The same two steps as edge-ddns's `load_ca` (daemons/ddns/src/cloudflare.rs), kept apart:
// each returns its crate's public error variants (`NotifyError::ReadCaFile`/`ParseCaFile`
// here, naming `notify.ca_file`; `ApiError`'s there); a shared helper would need a third
// error type and a mapping at each side as long as this function.
fn load_ca(path: &Path) -> Result<reqwest::Certificate, NotifyError> {
    let pem = std::fs::read(path).map_err(|source| NotifyError::ReadCaFile {
        path: path.to_owned(),
        source,
    })?;
    reqwest::Certificate::from_pem(&pem).map_err(|source| NotifyError::ParseCaFile {
        path: path.to_owned(),
        source,
    })
}

/// The HTTP client of a `[notify]` section: its timeout, its extra CA, no proxy from the
/// environment, and no redirects (a secret header must not follow one elsewhere).
pub fn client(n: &Notify) -> Result<reqwest::Client, NotifyError> {
    https_client(
        n.timeout,
        n.ca_file.as_deref(),
        concat!("edge-notify/", env!("CARGO_PKG_VERSION")),
    )
}

/// An HTTP client as the daemons use one: rustls with ring, a total and a connect timeout,
/// the system's CAs plus `ca_file`, no proxy from the environment, no redirects.
pub fn https_client(
    timeout: Duration,
    ca_file: Option<&Path>,
    user_agent: &str,
) -> Result<reqwest::Client, NotifyError> {
    install_crypto_provider();
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(user_agent)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = ca_file {
        b = b.add_root_certificate(load_ca(ca)?);
    }
    b.build()
        .map_err(|source| NotifyError::BuildClient { source })
}

/// A target's secret headers, loaded from their files or credentials.
#[derive(Clone, Default)]
pub(super) struct Secrets(Vec<(HeaderName, HeaderValue)>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|(n, _)| n.as_str()).collect();
        write!(f, "Secrets({names:?}, values redacted)")
    }
}

fn load_header(
    target: &str,
    what: String,
    source: &SecretSource,
    prefix: &str,
) -> Result<HeaderValue, NotifyError> {
    let secret = source.load().map_err(|e| NotifyError::Secret {
        target: target.to_owned(),
        what: what.clone(),
        from: source.to_string(),
        source: e,
    })?;
    let mut v = HeaderValue::from_str(&format!("{prefix}{}", secret.expose())).map_err(|_| {
        NotifyError::BadSecret {
            target: target.to_owned(),
            what,
        }
    })?;
    v.set_sensitive(true);
    Ok(v)
}

pub(super) fn secrets(n: &Notify, spec: &Spec) -> Result<Secrets, NotifyError> {
    let mut out = Vec::new();
    match spec.kind {
        Kind::Webhook => {
            for w in n.webhooks.iter().filter(|w| w.name == spec.name) {
                for (name, source) in &w.headers {
                    // The loader checked the name's characters.
                    let Ok(h) = HeaderName::from_bytes(name.as_bytes()) else {
                        continue;
                    };
                    let v = load_header(&spec.name, format!("header {name}"), source, "")?;
                    out.push((h, v));
                }
            }
        }
        Kind::Ntfy => {
            for t in n.ntfy.iter().filter(|t| t.name == spec.name) {
                if let Some(tok) = &t.token {
                    let v = load_header(&spec.name, "token".to_owned(), tok, "Bearer ")?;
                    out.push((AUTHORIZATION, v));
                }
            }
        }
        Kind::Heartbeat => {}
    }
    Ok(Secrets(out))
}

/// What one attempt got.
#[derive(Debug)]
pub(super) enum Attempt {
    /// A 2xx answer.
    Delivered { status: u16, body: String },
    /// Worth another try: no answer, 408, 425, 429, 5xx.
    Transient {
        why: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
    /// Retrying would not help: another 4xx, a redirect.
    Permanent { why: String, status: u16 },
}

/// At most this much of an answer's body is read (it is only shown, never parsed).
const MAX_ANSWER: usize = 512;

/// The start of a body, printable, on one line.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let t = one_line.trim();
    match t.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_owned(),
    }
}

impl Secrets {
    /// `text` with every secret value (and the credential after a `Bearer `-style scheme)
    /// replaced: a receiver that echoes the request's headers in its answer must not put
    /// them into a log line.
    fn scrub(&self, text: String) -> String {
        let mut out = text;
        for (_, v) in &self.0 {
            let Ok(value) = v.to_str() else {
                continue;
            };
            let credential = value.split_once(' ').map(|(_, c)| c.trim());
            for s in std::iter::once(value.trim()).chain(credential) {
                if s.len() >= 4 && out.contains(s) {
                    out = out.replace(s, "[redacted]");
                }
            }
        }
        out
    }
}

pub(super) async fn attempt(http: &reqwest::Client, out: &Outgoing, secrets: &Secrets) -> Attempt {
    let method = if out.method == "GET" {
        reqwest::Method::GET
    } else {
        reqwest::Method::POST
    };
    let mut req = http.request(method, out.url.clone());
    for (k, v) in &out.headers {
        req = req.header(*k, v.as_str());
    }
    for (k, v) in &secrets.0 {
        req = req.header(k.clone(), v.clone());
    }
    if !out.body.is_empty() {
        req = req.body(out.body.clone());
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Attempt::Transient {
                why: error_chain(&e.without_url()),
                status: None,
                retry_after: None,
            };
        }
    };
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut body = Vec::new();
    while body.len() < MAX_ANSWER {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(MAX_ANSWER - body.len())]),
            _ => break,
        }
    }
    let body = secrets.scrub(snippet(&body));
    let code = status.as_u16();
    let said = |prefix: &str| {
        let reason = status.canonical_reason().unwrap_or("");
        if body.is_empty() {
            format!("{prefix}HTTP {code} {reason}")
        } else {
            format!("{prefix}HTTP {code} {reason}: {body}")
        }
    };
    if status.is_success() {
        Attempt::Delivered { status: code, body }
    } else if status.is_server_error() || matches!(code, 408 | 425 | 429) {
        Attempt::Transient {
            why: said(""),
            status: Some(code),
            retry_after,
        }
    } else if status.is_redirection() {
        Attempt::Permanent {
            why: said("redirected (not followed: use the final URL): "),
            status: code,
        }
    } else {
        Attempt::Permanent {
            why: said("refused: "),
            status: code,
        }
    }
}
