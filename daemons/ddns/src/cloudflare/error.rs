//! Why an API call failed: the client's errors and Cloudflare's own messages.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde::Deserialize;

/// One item of the envelope's `errors[]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ApiMessage {
    /// Cloudflare error code (≥ 1000).
    #[serde(default)]
    pub code: u32,
    /// What Cloudflare said.
    #[serde(default)]
    pub message: String,
}

fn render_messages(errors: &[ApiMessage]) -> String {
    if errors.is_empty() {
        return "no error detail".to_owned();
    }
    errors
        .iter()
        .map(|e| format!("{} {}", e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The base URL would send the token in clear text.
    #[error(
        "refusing to send the API token to {url}: only https:// (or http:// to loopback) is allowed"
    )]
    InsecureUrl {
        /// The URL (it holds no secret).
        url: String,
    },
    /// The extra CA file cannot be read.
    #[error("cannot read the CA file {path}")]
    ReadCaFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The extra CA file is not a PEM certificate.
    #[error("the CA file {path} holds no usable PEM certificate")]
    ParseCaFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client cannot be built.
    #[error("cannot build the HTTP client")]
    BuildClient {
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The token cannot be put in a header (control characters).
    #[error("the API token contains characters that cannot be sent in a header")]
    BadToken,
    /// No answer (connection, TLS, timeout).
    #[error("{method} {path}: no answer from the Cloudflare API")]
    Send {
        /// Method.
        method: Method,
        /// Path and query (no secret).
        path: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not the JSON envelope.
    #[error("{method} {path}: HTTP {status}: the answer is not a Cloudflare API envelope")]
    Decode {
        /// Method.
        method: Method,
        /// Path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Cloudflare said no (`success: false`, or a non-2xx status).
    #[error("{method} {path}: Cloudflare refused (HTTP {status}): {}", render_messages(.errors))]
    Refused {
        /// Method.
        method: Method,
        /// Path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The envelope's errors.
        errors: Vec<ApiMessage>,
    },
    /// Still rate limited after the allowed retries.
    #[error("{method} {path}: rate limited by Cloudflare (HTTP 429) after {attempts} attempts")]
    RateLimited {
        /// Method.
        method: Method,
        /// Path.
        path: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The local request budget is spent; the next sync tries again.
    #[error("the local API budget of {limit} requests per {}s is spent; waiting for the next sync", .window.as_secs())]
    BudgetExhausted {
        /// Requests allowed per window.
        limit: usize,
        /// The window.
        window: Duration,
    },
    /// No zone holds the name.
    #[error(
        "no active Cloudflare zone found for {name} (tried {tried}); check the name, or that the token may read the zone (or set ddns.zone_id)"
    )]
    ZoneNotFound {
        /// The record name.
        name: String,
        /// The candidate zone names tried.
        tried: String,
    },
}

impl ApiError {
    /// The Cloudflare error codes of a refusal.
    pub fn codes(&self) -> Vec<u32> {
        match self {
            ApiError::Refused { errors, .. } => errors.iter().map(|e| e.code).collect(),
            _ => Vec::new(),
        }
    }

    /// True for "a record with that name already exists" (81053, 81057, 81058).
    pub fn is_duplicate(&self) -> bool {
        self.codes()
            .iter()
            .any(|c| matches!(c, 81053 | 81057 | 81058))
    }
}
