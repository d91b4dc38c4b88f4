//! I/O: the Cloudflare API v4 client — zone discovery, paginated record listing, POST to
//! create, PATCH of changed fields only.
//!
//! Every answer's envelope (`success`, `errors[]`) is checked whatever the HTTP status. A
//! 429 waits for `Retry-After`; the `Ratelimit` header slows down before the limit is hit;
//! both set one pause (never longer than [`MAX_RATE_WAIT`], whatever a header says) that a
//! [`PauseHook`] may persist, so that a restarted daemon keeps waiting;
//! 5xx, timeouts and unreadable answers are retried with jittered exponential backoff (not
//! for POST, which is re-planned from a fresh listing by the next sync instead); and every
//! request counts against a local budget far below Cloudflare's 1,200 per 5 minutes. The
//! token travels only over HTTPS (plain HTTP only to loopback) in a header marked sensitive;
//! it is never formatted into an error or a log line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use edge_config::SecretString;
use edge_metrics::ddns::{ApiLabels, Metrics};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::model::Observed;
use crate::plan::{NewRecord, RecordPatch};

/// Largest answer read from the API (a page of 100 records is ~50 KiB).
const MAX_BODY: usize = 4 << 20;
/// Page size of record listings.
const RECORDS_PER_PAGE: u32 = 100;
/// Longest wait honoured for a `Retry-After` or an exhausted `Ratelimit` window.
pub const MAX_RATE_WAIT: Duration = Duration::from_secs(300);

mod error;
mod pace;
#[cfg(test)]
mod tests;

pub use error::{ApiError, ApiMessage};
use pace::{Pace, retry_after};
pub use pace::{parse_ratelimit, ratelimit_pause};

/// Retry policy for transient failures.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in total for 5xx / timeouts / unreadable answers (idempotent requests).
    pub attempts: u32,
    /// Attempts in total when rate limited (429).
    pub rate_limit_attempts: u32,
    /// First backoff delay.
    pub base: Duration,
    /// Largest backoff delay.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            rate_limit_attempts: 6,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Full-jitter exponential backoff before attempt `n` (1-based retry count).
    fn delay(&self, retry: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << retry.min(16).saturating_sub(1))
            .min(self.cap);
        let ms = u64::try_from(exp.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(rand::random_range(ms / 2..=ms))
    }
}

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// API base, e.g. `https://api.cloudflare.com/client/v4`.
    pub base: Url,
    /// Extra CA certificate (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Requests allowed per `budget_window` (Cloudflare allows 1,200 per 5 minutes).
    pub budget: usize,
    /// The budget's window.
    pub budget_window: Duration,
}

impl ClientOptions {
    /// Defaults for `base`: 10 s timeout, 120 requests per 5 minutes (a tenth of Cloudflare's).
    pub fn new(base: Url) -> Self {
        Self {
            base,
            ca_file: None,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            budget: 120,
            budget_window: Duration::from_secs(300),
        }
    }
}

/// Called with the wall-clock end of a new or longer rate-limit pause (to persist it).
pub type PauseHook = Arc<dyn Fn(SystemTime) + Send + Sync>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A zone as `GET /zones` returns it.
#[derive(Debug, Clone, Deserialize)]
struct Zone {
    id: String,
    name: String,
    #[serde(default)]
    status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Envelope<T> {
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    result: Option<T>,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize, Default, Clone, Copy)]
struct ResultInfo {
    #[serde(default)]
    page: Option<f64>,
    #[serde(default)]
    per_page: Option<f64>,
    #[serde(default)]
    count: Option<f64>,
    #[serde(default)]
    total_count: Option<f64>,
    #[serde(default)]
    total_pages: Option<f64>,
}

/// A record id returned by a write.
#[derive(Debug, Clone, Deserialize)]
pub struct Written {
    /// The record id.
    pub id: String,
    /// The content Cloudflare now holds.
    pub content: String,
}

/// The Cloudflare API client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    auth: HeaderValue,
    opts: ClientOptions,
    pace: Arc<Mutex<Pace>>,
    pause_hook: Option<PauseHook>,
    zones: Arc<Mutex<HashMap<String, String>>>,
    metrics: Metrics,
    sent: Arc<AtomicU64>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &"[redacted]")
            .finish()
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

// The same two steps as edge-notify's `load_ca` (shared/notify/src/deliver/http.rs), kept
// apart: each returns its crate's public error variants (`ApiError::ReadCaFile`/`ParseCaFile`
// here, `NotifyError`'s naming `notify.ca_file` there); a shared helper would need a third
// error type and a mapping at each side as long as this function.
fn load_ca(path: &Path) -> Result<reqwest::Certificate, ApiError> {
    let pem = std::fs::read(path).map_err(|source| ApiError::ReadCaFile {
        path: path.to_owned(),
        source,
    })?;
    reqwest::Certificate::from_pem(&pem).map_err(|source| ApiError::ParseCaFile {
        path: path.to_owned(),
        source,
    })
}

impl Client {
    /// Builds a client; refuses a plain-HTTP base that is not loopback.
    pub fn new(
        opts: ClientOptions,
        token: &SecretString,
        metrics: Metrics,
    ) -> Result<Client, ApiError> {
        crate::tls::install_crypto_provider();
        let base = opts.base.clone();
        if base.scheme() != "https" && !is_loopback(&base) {
            return Err(ApiError::InsecureUrl {
                url: base.to_string(),
            });
        }
        let mut b = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .user_agent(concat!("edge-ddns/", env!("CARGO_PKG_VERSION")))
            // No proxy from the environment: the token goes straight to the API.
            .no_proxy()
            // Never follow a redirect with the Authorization header.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &opts.ca_file {
            b = b.add_root_certificate(load_ca(ca)?);
        }
        let http = b
            .build()
            .map_err(|source| ApiError::BuildClient { source })?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| ApiError::BadToken)?;
        auth.set_sensitive(true);
        Ok(Client {
            http,
            base,
            auth,
            opts,
            pace: Arc::new(Mutex::new(Pace::default())),
            pause_hook: None,
            zones: Arc::new(Mutex::new(HashMap::new())),
            metrics,
            sent: Arc::new(AtomicU64::new(0)),
        })
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Url {
        let mut u = self.base.clone();
        let joined = format!("{}{}", u.path().trim_end_matches('/'), path);
        u.set_path(&joined);
        if !query.is_empty() {
            u.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        u
    }

    fn count(&self, method: &Method, status: Option<StatusCode>) {
        self.metrics
            .api_requests
            .get_or_create(&ApiLabels {
                method: method.as_str().to_owned(),
                status: status.map_or_else(|| "error".to_owned(), |s| s.as_u16().to_string()),
            })
            .inc();
    }

    /// Sends one request with retries and returns the checked envelope.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<Envelope<T>, ApiError> {
        let url = self.url(path, query);
        let shown = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        // POST is not idempotent: a timeout may hide a created record, so only a 429 (which
        // Cloudflare did not execute) is retried; the next sync re-lists before creating.
        let idempotent = method != Method::POST;
        let mut transient = 0u32;
        let mut limited = 0u32;
        loop {
            self.take_slot().await?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, self.auth.clone());
            if let Some(b) = body {
                req = req.json(b);
            }
            let started = Instant::now();
            let resp = match req.send().await {
                Ok(r) => r,
                Err(source) => {
                    self.count(&method, None);
                    transient += 1;
                    if idempotent && transient < self.opts.retry.attempts {
                        let d = self.opts.retry.delay(transient);
                        tracing::warn!(%method, path = %shown, error = %source, retry_in_ms = d.as_millis() as u64, "Cloudflare API request failed; retrying");
                        tokio::time::sleep(d).await;
                        continue;
                    }
                    return Err(ApiError::Send {
                        method,
                        path: shown,
                        source,
                    });
                }
            };
            let status = resp.status();
            self.count(&method, Some(status));
            let headers = resp.headers().clone();
            self.note_headers(&headers);
            if status == StatusCode::TOO_MANY_REQUESTS {
                limited += 1;
                if limited >= self.opts.retry.rate_limit_attempts {
                    return Err(ApiError::RateLimited {
                        method,
                        path: shown,
                        attempts: limited,
                    });
                }
                let wait = retry_after(&headers)
                    .unwrap_or_else(|| self.opts.retry.delay(limited))
                    .min(MAX_RATE_WAIT);
                tracing::warn!(%method, path = %shown, wait_s = wait.as_secs_f64(), "rate limited by Cloudflare (429); waiting for Retry-After");
                // The next attempt waits in take_slot, like every other request: the pause is
                // one, visible in `status` and persisted through the hook.
                self.pause_for(wait);
                continue;
            }
            let bytes = match read_limited(resp).await {
                Ok(b) => b,
                Err(source) => {
                    transient += 1;
                    if idempotent && transient < self.opts.retry.attempts {
                        tokio::time::sleep(self.opts.retry.delay(transient)).await;
                        continue;
                    }
                    return Err(ApiError::Send {
                        method,
                        path: shown,
                        source,
                    });
                }
            };
            tracing::debug!(%method, path = %shown, status = status.as_u16(), ms = started.elapsed().as_millis() as u64, "Cloudflare API");
            let parsed: Result<Envelope<T>, _> = serde_json::from_slice(&bytes);
            let retryable = status.is_server_error() || parsed.is_err();
            if retryable && idempotent && transient + 1 < self.opts.retry.attempts {
                transient += 1;
                let d = self.opts.retry.delay(transient);
                tracing::warn!(%method, path = %shown, status = status.as_u16(), retry_in_ms = d.as_millis() as u64, "Cloudflare API answered with an error; retrying");
                tokio::time::sleep(d).await;
                continue;
            }
            let env = parsed.map_err(|source| ApiError::Decode {
                method: method.clone(),
                path: shown.clone(),
                status: status.as_u16(),
                source,
            })?;
            // The envelope decides, whatever the status says.
            if !env.success || !env.errors.is_empty() || !status.is_success() {
                return Err(ApiError::Refused {
                    method,
                    path: shown,
                    status: status.as_u16(),
                    errors: env.errors,
                });
            }
            return Ok(env);
        }
    }

    /// Requests sent since the client was built (retries included).
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Finds the zone of `name` by walking up its labels with `GET /zones?name=`; cached.
    pub async fn zone_id(&self, name: &str) -> Result<String, ApiError> {
        let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
        let candidates: Vec<String> = (0..labels.len().saturating_sub(1))
            .map(|i| labels[i..].join("."))
            .collect();
        {
            let cache = lock(&self.zones);
            if let Some(id) = candidates.iter().find_map(|c| cache.get(c)) {
                return Ok(id.clone());
            }
        }
        for cand in &candidates {
            let env: Envelope<Vec<Zone>> = self
                .call(
                    Method::GET,
                    "/zones",
                    &[("name", cand.clone()), ("status", "active".to_owned())],
                    None,
                )
                .await?;
            let found = env
                .result
                .unwrap_or_default()
                .into_iter()
                .find(|z| z.name.eq_ignore_ascii_case(cand));
            if let Some(z) = found {
                if z.status.as_deref().is_some_and(|s| s != "active") {
                    tracing::warn!(zone = %z.name, status = ?z.status, "zone is not active");
                }
                lock(&self.zones).insert(z.name.to_ascii_lowercase(), z.id.clone());
                return Ok(z.id);
            }
        }
        Err(ApiError::ZoneNotFound {
            name: name.to_owned(),
            tried: candidates.join(", "),
        })
    }

    /// Remembers a zone id (from the state file or the configuration).
    pub fn remember_zone(&self, zone_name: &str, id: &str) {
        lock(&self.zones).insert(zone_name.to_ascii_lowercase(), id.to_owned());
    }

    /// The zone names and ids learnt so far.
    pub fn known_zones(&self) -> HashMap<String, String> {
        lock(&self.zones).clone()
    }

    /// Lists the records of `zone` with this name and type, following every page.
    pub async fn list_records(
        &self,
        zone: &str,
        name: &str,
        kind: &str,
    ) -> Result<Vec<Observed>, ApiError> {
        let mut out = Vec::new();
        let mut page = 1u32;
        loop {
            let env: Envelope<Vec<Observed>> = self
                .call(
                    Method::GET,
                    &format!("/zones/{zone}/dns_records"),
                    &[
                        ("type", kind.to_owned()),
                        ("name", name.to_owned()),
                        ("page", page.to_string()),
                        ("per_page", RECORDS_PER_PAGE.to_string()),
                    ],
                    None,
                )
                .await?;
            let items = env.result.unwrap_or_default();
            let n = items.len();
            out.extend(items);
            let info = env.result_info.unwrap_or_default();
            let per_page = info
                .per_page
                .map_or(RECORDS_PER_PAGE as usize, |p| p as usize);
            let more = match (info.total_pages, info.total_count) {
                (Some(tp), _) => f64::from(page) < tp,
                (None, Some(total)) => (page as usize) * per_page < total as usize,
                // Without totals, a full page means there may be another.
                (None, None) => n >= per_page && n > 0,
            };
            // A server that keeps answering full pages cannot make us loop forever.
            if !more || n == 0 || page >= 1000 {
                let _ = (info.page, info.count);
                return Ok(out);
            }
            page += 1;
        }
    }

    /// Creates a record (`POST /zones/{zone}/dns_records`).
    pub async fn create(&self, zone: &str, rec: &NewRecord) -> Result<Written, ApiError> {
        let body = serde_json::to_value(rec).unwrap_or_default();
        let env: Envelope<Written> = self
            .call(
                Method::POST,
                &format!("/zones/{zone}/dns_records"),
                &[],
                Some(&body),
            )
            .await?;
        env.result.ok_or_else(|| ApiError::Refused {
            method: Method::POST,
            path: format!("/zones/{zone}/dns_records"),
            status: 200,
            errors: vec![ApiMessage {
                code: 0,
                message: "success without a result".into(),
            }],
        })
    }

    /// Changes only the given fields (`PATCH /zones/{zone}/dns_records/{id}`).
    pub async fn patch(
        &self,
        zone: &str,
        id: &str,
        patch: &RecordPatch,
    ) -> Result<Written, ApiError> {
        let body = serde_json::to_value(patch).unwrap_or_default();
        let path = format!("/zones/{zone}/dns_records/{id}");
        let env: Envelope<Written> = self.call(Method::PATCH, &path, &[], Some(&body)).await?;
        env.result.ok_or_else(|| ApiError::Refused {
            method: Method::PATCH,
            path,
            status: 200,
            errors: vec![ApiMessage {
                code: 0,
                message: "success without a result".into(),
            }],
        })
    }
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        out.extend_from_slice(&chunk);
        if out.len() > MAX_BODY {
            break;
        }
    }
    Ok(out)
}
