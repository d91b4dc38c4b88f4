//! I/O: delivery. [`Notifier::send`] only puts an event into each matching target's bounded
//! queue and returns; one background task per target takes events in order, waits for the
//! target's rate limit, sends, and retries transient failures (timeouts, connection errors,
//! 408, 429, 5xx) with jittered exponential backoff. A full queue drops its oldest event; a
//! newer heartbeat replaces one still waiting. Every outcome is counted in `edge_notify_*`.
//!
//! Secrets (header values, tokens) are loaded once per start or reload, sent in headers
//! marked sensitive, and never formatted into a log line; URLs are logged as scheme, host
//! and port only ([`redact`]), and HTTP errors without their URL.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use edge_config::notify::Notify;
use edge_config::{Config, SecretError, SecretSource};
use edge_metrics::notify::{Metrics, TargetLabels};
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue, RETRY_AFTER};
use serde::Serialize;

use crate::event::{Envelope, Event};
use crate::pace::{Window, backoff};
use crate::target::{Kind, Outgoing, Payload, Spec, accepts, redact, render, specs};
use edge_util::error_chain;
use edge_util::unix_now_i64;

/// How deliveries are retried and paced (tests shorten it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Attempts per event in total.
    pub attempts: u32,
    /// Wait before the first retry; doubled per retry.
    pub backoff_base: Duration,
    /// Longest wait between two attempts (also caps a `Retry-After`).
    pub backoff_cap: Duration,
    /// The window of `max_per_minute`.
    pub window: Duration,
}

impl Default for Tuning {
    /// 6 attempts over about a minute (2, 4, 8, 16, 32 s apart, with jitter).
    fn default() -> Self {
        Tuning {
            attempts: 6,
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(60),
            window: Duration::from_secs(60),
        }
    }
}

/// Why notifications cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `notify.ca_file` cannot be read.
    #[error("cannot read the CA file {path} (notify.ca_file)")]
    ReadCaFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `notify.ca_file` holds no certificate.
    #[error("the CA file {path} (notify.ca_file) holds no usable PEM certificate")]
    ParseCaFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client cannot be built.
    #[error("cannot build the HTTP client for notifications")]
    BuildClient {
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// A target's secret cannot be read.
    #[error("notification target `{target}`: cannot read the secret of {what} ({from})")]
    Secret {
        /// The target.
        target: String,
        /// Which secret (`header Authorization`, `token`).
        what: String,
        /// Where it was looked for.
        from: String,
        /// The cause.
        #[source]
        source: SecretError,
    },
    /// A secret holds characters a header cannot carry.
    #[error(
        "notification target `{target}`: the secret of {what} cannot be sent in an HTTP header (it holds control or non-ASCII characters)"
    )]
    BadSecret {
        /// The target.
        target: String,
        /// Which secret.
        what: String,
    },
    /// `edgectl notify test NAME` named no target.
    #[error("no notification target is named `{name}` (targets: {known})")]
    UnknownTarget {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The system's host name (`gethostname(2)`), or `localhost`.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes, which is what we pass.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_owned();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_owned();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Installs ring as rustls' process-wide crypto provider unless one is installed (reqwest is
/// built without one and refuses to build a client otherwise).
fn install_crypto_provider() {
    // Err only means a provider (edge-ddns installs the same one) is in place already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

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
struct Secrets(Vec<(HeaderName, HeaderValue)>);

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

fn secrets(n: &Notify, spec: &Spec) -> Result<Secrets, NotifyError> {
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
enum Attempt {
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

async fn attempt(http: &reqwest::Client, out: &Outgoing, secrets: &Secrets) -> Attempt {
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

/// One target's queue, shared by the senders and its task.
#[derive(Debug)]
struct Queue {
    spec: Spec,
    items: Mutex<VecDeque<Payload>>,
    capacity: usize,
    wake: tokio::sync::Notify,
    closed: AtomicBool,
    busy: AtomicBool,
    last_drop_warning: Mutex<Option<Instant>>,
    metrics: Metrics,
}

impl Queue {
    fn new(spec: Spec, capacity: usize, metrics: Metrics) -> Queue {
        Queue {
            spec,
            items: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            wake: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            last_drop_warning: Mutex::new(None),
            metrics,
        }
    }

    fn labels(&self) -> TargetLabels {
        TargetLabels {
            target: self.spec.name.clone(),
        }
    }

    fn update_gauge(&self) {
        let n = lock(&self.items).len() + usize::from(self.busy.load(Ordering::SeqCst));
        self.metrics
            .queued
            .get_or_create(&self.labels())
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Queues `p`; a heartbeat replaces a waiting one, a full queue drops its oldest item.
    fn push(&self, p: Payload) {
        let dropped = {
            let mut items = lock(&self.items);
            let replaced = if matches!(p, Payload::Heartbeat { .. }) {
                items
                    .iter()
                    .position(|x| matches!(x, Payload::Heartbeat { .. }))
                    .and_then(|i| items.remove(i))
            } else {
                None
            };
            let dropped = replaced.or_else(|| {
                (items.len() >= self.capacity)
                    .then(|| items.pop_front())
                    .flatten()
            });
            items.push_back(p);
            dropped
        };
        if let Some(d) = dropped {
            self.dropped(&d, "the queue is full");
        }
        self.update_gauge();
        self.wake.notify_one();
    }

    fn dropped(&self, p: &Payload, why: &str) {
        self.metrics.outcome(&self.spec.name, "dropped");
        if let Payload::Heartbeat { .. } = p {
            // A newer heartbeat says more than the one it replaced: nothing to warn about.
            return;
        }
        let mut last = lock(&self.last_drop_warning);
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            tracing::warn!(
                target_name = %self.spec.name,
                event = p.label(),
                "notification dropped: {why} (the target is slow or down; edge_notify_events_total{{result=\"dropped\"}} counts every drop)"
            );
        }
    }

    fn has_newer_heartbeat(&self) -> bool {
        lock(&self.items)
            .iter()
            .any(|x| matches!(x, Payload::Heartbeat { .. }))
    }

    async fn pop(&self) -> Option<Payload> {
        loop {
            if let Some(p) = lock(&self.items).pop_front() {
                return Some(p);
            }
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            self.wake.notified().await;
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn idle(&self) -> bool {
        !self.busy.load(Ordering::SeqCst) && lock(&self.items).is_empty()
    }
}

/// The task of one target: deliver, in order, until the queue is closed and empty.
async fn worker(q: Arc<Queue>, secrets: Secrets, http: reqwest::Client, tuning: Tuning) {
    let mut window = Window::new(q.spec.max_per_minute, tuning.window);
    while let Some(item) = q.pop().await {
        q.busy.store(true, Ordering::SeqCst);
        q.update_gauge();
        deliver(&q, &secrets, &http, &tuning, &mut window, &item).await;
        q.busy.store(false, Ordering::SeqCst);
        q.update_gauge();
    }
}

async fn deliver(
    q: &Queue,
    secrets: &Secrets,
    http: &reqwest::Client,
    tuning: &Tuning,
    window: &mut Window,
    item: &Payload,
) {
    let Some(out) = render(&q.spec, item) else {
        return;
    };
    let name = q.spec.name.as_str();
    let url = redact(&out.url);
    let attempts = tuning.attempts.max(1);
    for n in 1..=attempts {
        while let Err(wait) = window.admit(Instant::now()) {
            tracing::debug!(
                target_name = name,
                wait_ms = wait.as_millis() as u64,
                "rate limit of the target: waiting"
            );
            tokio::time::sleep(wait).await;
        }
        match attempt(http, &out, secrets).await {
            Attempt::Delivered { status, .. } => {
                q.metrics.outcome(name, "sent");
                q.metrics
                    .last_sent
                    .get_or_create(&q.labels())
                    .set(unix_now_i64());
                tracing::debug!(
                    target_name = name,
                    url,
                    event = item.label(),
                    status,
                    attempt = n,
                    "notification delivered"
                );
                return;
            }
            Attempt::Permanent { why, status } => {
                q.metrics.outcome(name, "failed");
                tracing::warn!(
                    target_name = name,
                    url,
                    event = item.label(),
                    status,
                    "notification refused, not retried: {why}"
                );
                return;
            }
            Attempt::Transient {
                why,
                status,
                retry_after,
            } => {
                if n == attempts {
                    q.metrics.outcome(name, "failed");
                    tracing::warn!(
                        target_name = name,
                        url,
                        event = item.label(),
                        status,
                        "notification not delivered after {attempts} attempts: {why}"
                    );
                    return;
                }
                if q.spec.kind == Kind::Heartbeat && q.has_newer_heartbeat() {
                    q.dropped(item, "a newer heartbeat is waiting");
                    return;
                }
                q.metrics.retries.get_or_create(&q.labels()).inc();
                let wait = retry_after
                    .unwrap_or_else(|| {
                        backoff(n, tuning.backoff_base, tuning.backoff_cap, rand::random())
                    })
                    .min(tuning.backoff_cap);
                tracing::debug!(
                    target_name = name,
                    url,
                    event = item.label(),
                    attempt = n,
                    retry_in_ms = wait.as_millis() as u64,
                    "notification not delivered, retrying: {why}"
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The running deliveries of one daemon; cheap to clone. A disabled notifier (no
/// `[notify]` targets) accepts every call and does nothing.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    source: String,
    metrics: Metrics,
    tuning: Tuning,
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    host: String,
    queues: Vec<Arc<Queue>>,
}

impl Drop for Inner {
    /// The tasks finish what is queued (bounded by the retries), then end.
    fn drop(&mut self) {
        for q in &self.queues {
            q.close();
        }
    }
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    /// Starts the deliveries of `config`'s `[notify]` section for `source` (`edge-ddns`, ...)
    /// on the current tokio runtime. Never fails: a target whose secret cannot be read is
    /// left out, and a client that cannot be built (a bad `ca_file`) disables
    /// notifications; both are logged as errors.
    pub fn start(config: &Config, source: &str, metrics: Metrics) -> Notifier {
        Notifier::start_with(config.notify.as_ref(), source, metrics, Tuning::default())
    }

    /// [`Notifier::start`] for a section, with explicit retry and pacing settings.
    pub fn start_with(
        notify: Option<&Notify>,
        source: &str,
        metrics: Metrics,
        tuning: Tuning,
    ) -> Notifier {
        let off = Notifier {
            source: source.to_owned(),
            metrics: metrics.clone(),
            tuning,
            inner: None,
        };
        let Some(n) = notify.filter(|n| !n.is_empty()) else {
            return off;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!("notifications disabled: no async runtime to deliver them on");
            return off;
        };
        let http = match client(n) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("notifications disabled: {}", error_chain(&e));
                return off;
            }
        };
        let mut queues = Vec::new();
        for spec in specs(n) {
            let secrets = match secrets(n, &spec) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(target_name = %spec.name, "notification target left out: {}", error_chain(&e));
                    continue;
                }
            };
            let q = Arc::new(Queue::new(spec, n.queue, metrics.clone()));
            q.update_gauge();
            rt.spawn(worker(q.clone(), secrets, http.clone(), tuning));
            queues.push(q);
        }
        let names: Vec<&str> = queues.iter().map(|q| q.spec.name.as_str()).collect();
        tracing::info!(targets = ?names, "notifications on");
        Notifier {
            source: source.to_owned(),
            metrics,
            tuning,
            inner: Some(Arc::new(Inner {
                host: n.host.clone().unwrap_or_else(hostname),
                queues,
            })),
        }
    }

    /// Takes a reloaded configuration: new targets (and freshly read secrets) from now on,
    /// with the same source, metrics and tuning; what the old ones hold is still delivered.
    pub fn reload(&mut self, config: &Config) {
        *self = Notifier::start_with(
            config.notify.as_ref(),
            &self.source,
            self.metrics.clone(),
            self.tuning,
        );
    }

    /// True when at least one target takes events.
    pub fn is_enabled(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| !i.queues.is_empty())
    }

    /// Names of the targets in use.
    pub fn targets(&self) -> Vec<String> {
        self.inner
            .as_ref()
            .map(|i| i.queues.iter().map(|q| q.spec.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Queues `event` for every target whose `events` take it, and returns at once.
    pub fn send(&self, event: Event) {
        let Some(inner) = &self.inner else {
            return;
        };
        let env = Envelope::new(
            event,
            new_id(),
            now_rfc3339(),
            inner.host.clone(),
            self.source.clone(),
        );
        tracing::debug!(kind = env.event.kind(), id = %env.id, "notification queued");
        let p = Payload::Event(Arc::new(env));
        for q in inner.queues.iter().filter(|q| accepts(&q.spec, &p)) {
            q.push(p.clone());
        }
    }

    /// Queues a heartbeat (after a DDNS sync): `url` when `ok`, else `fail_url`.
    pub fn heartbeat(&self, ok: bool, summary: impl Into<String>) {
        let Some(inner) = &self.inner else {
            return;
        };
        let p = Payload::Heartbeat {
            ok,
            summary: summary.into(),
        };
        for q in inner.queues.iter().filter(|q| accepts(&q.spec, &p)) {
            q.push(p.clone());
        }
    }

    /// Waits until every queue is empty and nothing is in flight, at most `within`; true
    /// when everything was delivered (or given up on) in time.
    pub async fn flush(&self, within: Duration) -> bool {
        let Some(inner) = &self.inner else {
            return true;
        };
        let deadline = Instant::now() + within;
        loop {
            if inner.queues.iter().all(|q| q.idle()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// What one target answered to `edgectl notify test`.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// Target name.
    pub target: String,
    /// `webhook`, `ntfy` or `heartbeat`.
    pub kind: &'static str,
    /// The URL, scheme, host and port only.
    pub url: String,
    /// True for a 2xx answer.
    pub ok: bool,
    /// The HTTP status, when an answer came.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong, or the start of the answer's body.
    pub detail: String,
    /// How long it took.
    pub millis: u64,
}

/// Sends one `test` event to every target (or only to `only`), one attempt each without
/// rate limit, and reports what each answered.
pub async fn probe(
    n: &Notify,
    only: Option<&str>,
    source: &str,
) -> Result<Vec<ProbeResult>, NotifyError> {
    let all = specs(n);
    if let Some(name) = only
        && !all.iter().any(|s| s.name == name)
    {
        return Err(NotifyError::UnknownTarget {
            name: name.to_owned(),
            known: n.target_names().join(", "),
        });
    }
    let http = client(n)?;
    let host = n.host.clone().unwrap_or_else(hostname);
    let mut out = Vec::new();
    for spec in all.iter().filter(|s| only.is_none_or(|o| o == s.name)) {
        let env = Envelope::new(
            Event::Test {
                message: format!(
                    "test notification from {source} on {host}: target `{}` works",
                    spec.name
                ),
            },
            new_id(),
            now_rfc3339(),
            host.clone(),
            source.to_owned(),
        );
        let p = Payload::Event(Arc::new(env));
        let Some(req) = render(spec, &p) else {
            continue;
        };
        let url = redact(&req.url);
        let start = Instant::now();
        let result = match secrets(n, spec) {
            Err(e) => Err(error_chain(&e)),
            Ok(s) => Ok(attempt(&http, &req, &s).await),
        };
        let millis = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let (ok, status, detail) = match result {
            Err(e) => (false, None, e),
            Ok(Attempt::Delivered { status, body }) => (true, Some(status), body),
            Ok(Attempt::Permanent { why, status }) => (false, Some(status), why),
            Ok(Attempt::Transient { why, status, .. }) => (false, status, why),
        };
        out.push(ProbeResult {
            target: spec.name.clone(),
            kind: spec.kind.as_str(),
            url,
            ok,
            status,
            detail,
            millis,
        });
    }
    Ok(out)
}
