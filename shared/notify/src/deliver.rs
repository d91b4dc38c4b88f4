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
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use edge_config::notify::Notify;
use edge_config::{Config, SecretError};
use edge_metrics::notify::{Metrics, TargetLabels};
use serde::Serialize;

use crate::event::{Envelope, Event};
use crate::pace::{Window, backoff};
use crate::target::{Kind, Payload, Spec, accepts, redact, render, specs};
use edge_util::error_chain;
use edge_util::unix_now_i64;

mod http;

use http::{Attempt, Secrets, attempt, secrets};
pub use http::{client, https_client};

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
                give_up(
                    q,
                    &url,
                    item,
                    Some(status),
                    &format!("notification refused, not retried: {why}"),
                );
                return;
            }
            Attempt::Transient {
                why,
                status,
                retry_after,
            } => {
                if n == attempts {
                    give_up(
                        q,
                        &url,
                        item,
                        status,
                        &format!("notification not delivered after {attempts} attempts: {why}"),
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

/// Counts an event the target will not get (refused, or out of attempts) and says why.
fn give_up(q: &Queue, url: &str, item: &Payload, status: Option<u16>, why: &str) {
    q.metrics.outcome(&q.spec.name, "failed");
    tracing::warn!(
        target_name = q.spec.name.as_str(),
        url,
        event = item.label(),
        status,
        "{why}"
    );
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
