//! Pure: the `[notify]` section — where the daemons send their events (webhooks, ntfy
//! topics) and heartbeats (Healthchecks-style ping URLs), and the thresholds that decide when
//! an event fires. Every daemon reads this one section and sends its own events.

use std::collections::HashSet;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::decode::{At, Ctx, Decode, Node, Table, integer_in, valid_name};
use crate::secret::SecretSource;
use crate::source::Location;
use crate::types::{Dur, HttpUrl, one_of};

/// Every event kind a daemon may send, as named in `events` filters and in the JSON
/// documents (`"kind"`). `test` (sent by `edgectl notify test`) is not listed: it reaches
/// every target whatever its filter.
pub const EVENT_KINDS: [&str; 12] = [
    "ddns.record_changed",
    "ddns.sync_failing",
    "ddns.sync_recovered",
    "fw.apply_failed",
    "fw.rolled_back",
    "fw.drift_repaired",
    "wg.handshake_stale",
    "wg.peer_expired",
    "link.down",
    "link.up",
    "link.nic_missing",
    "link.nic_present",
];

/// The groups an `events` entry may name with a wildcard (`"ddns.*"`).
const GROUPS: [&str; 4] = ["ddns", "fw", "wg", "link"];

/// Default number of events each target may hold while it is slow or down.
pub const DEFAULT_QUEUE: usize = 64;
/// Default requests per minute to one target.
pub const DEFAULT_MAX_PER_MINUTE: u32 = 20;
/// `notify.timeout`: how long one delivery may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `notify.ddns_failing_after`: failed sync runs in a row before `ddns.failing`.
pub const DEFAULT_DDNS_FAILING_AFTER: u32 = 3;
/// `notify.link_down_after`: how long a watched link stays down before `link.down`.
pub const DEFAULT_LINK_DOWN_AFTER: Duration = Duration::from_secs(10);
/// `notify.wg_handshake_stale_after`: silence of a peer meant to stay up before
/// `wg.handshake_stale` (0 turns it off).
pub const DEFAULT_WG_HANDSHAKE_STALE_AFTER: Duration = Duration::from_secs(600);

/// Which events a target receives: kinds (`"ddns.record_changed"`), groups (`"ddns.*"`) or
/// everything (`"*"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventFilter(Vec<String>);

impl EventFilter {
    /// Every event.
    pub fn all() -> Self {
        Self(vec!["*".to_owned()])
    }

    /// True when an event of `kind` passes. `test` always passes.
    pub fn matches(&self, kind: &str) -> bool {
        kind == "test"
            || self.0.iter().any(|p| {
                p == "*"
                    || p == kind
                    || p.strip_suffix(".*")
                        .is_some_and(|g| kind.split('.').next() == Some(g))
            })
    }

    /// The patterns as written.
    pub fn patterns(&self) -> &[String] {
        &self.0
    }
}

/// How a heartbeat is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum HeartbeatMethod {
    /// `POST` with a one-line summary as the body (Healthchecks logs it).
    Post,
    /// `GET` without a body (older Uptime Kuma push monitors).
    Get,
}

/// A `[[notify.webhook]]`: one JSON document per event, POSTed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    /// Target name (logs, metrics, `edgectl notify test NAME`).
    pub name: String,
    /// Where to POST.
    pub url: HttpUrl,
    /// Which events it receives.
    pub events: EventFilter,
    /// Extra headers; each value is a secret (file or systemd credential).
    pub headers: Vec<(String, SecretSource)>,
    /// Requests per minute to this target.
    pub max_per_minute: u32,
    /// Where it is declared.
    pub location: Location,
}

/// A `[[notify.ntfy]]`: one message per event, published to an ntfy topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ntfy {
    /// Target name.
    pub name: String,
    /// The topic URL (`https://ntfy.example.org/edge-alerts`).
    pub url: HttpUrl,
    /// Which events it receives.
    pub events: EventFilter,
    /// Access token (`Authorization: Bearer ...`), for a protected topic.
    pub token: Option<SecretSource>,
    /// Requests per minute to this target.
    pub max_per_minute: u32,
    /// Where it is declared.
    pub location: Location,
}

/// A `[[notify.heartbeat]]`: pinged after each DDNS sync, `url` when it succeeded and
/// `fail_url` when it failed (the Healthchecks convention).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    /// Target name.
    pub name: String,
    /// Pinged after a successful sync.
    pub url: HttpUrl,
    /// Pinged after a failed sync (default: `url` with `/fail` appended to its path).
    pub fail_url: HttpUrl,
    /// `POST` (default) or `GET`.
    pub method: HeartbeatMethod,
    /// Requests per minute to this target.
    pub max_per_minute: u32,
    /// Where it is declared.
    pub location: Location,
    /// Byte span of its name (for cross-section warnings).
    #[serde(skip)]
    pub span: Range<usize>,
}

/// The `[notify]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notify {
    /// The host name in events; the system's host name when absent.
    pub host: Option<String>,
    /// Extra CA certificate (PEM) trusted for the targets (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Timeout of one delivery attempt.
    pub timeout: Duration,
    /// Events each target holds while it is slow or down; the oldest goes first.
    pub queue: usize,
    /// Consecutive failed DDNS syncs before `ddns.sync_failing`.
    pub ddns_failing_after: u32,
    /// How long a bridge port must be down or missing before `link.down` or
    /// `link.nic_missing`.
    pub link_down_after: Duration,
    /// How long a WireGuard peer that is meant to stay up (an `endpoint` or a
    /// `persistent_keepalive`) may go without a handshake before `wg.handshake_stale`;
    /// zero: never.
    pub wg_handshake_stale_after: Duration,
    /// Webhooks.
    pub webhooks: Vec<Webhook>,
    /// ntfy topics.
    pub ntfy: Vec<Ntfy>,
    /// Heartbeat URLs.
    pub heartbeats: Vec<Heartbeat>,
}

impl Default for Notify {
    fn default() -> Self {
        Notify {
            host: None,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
            queue: DEFAULT_QUEUE,
            ddns_failing_after: DEFAULT_DDNS_FAILING_AFTER,
            link_down_after: DEFAULT_LINK_DOWN_AFTER,
            wg_handshake_stale_after: DEFAULT_WG_HANDSHAKE_STALE_AFTER,
            webhooks: Vec::new(),
            ntfy: Vec::new(),
            heartbeats: Vec::new(),
        }
    }
}

impl Notify {
    /// Names of every target, in the order of the file's lists (webhooks, ntfy, heartbeats).
    pub fn target_names(&self) -> Vec<&str> {
        self.webhooks
            .iter()
            .map(|w| w.name.as_str())
            .chain(self.ntfy.iter().map(|n| n.name.as_str()))
            .chain(self.heartbeats.iter().map(|h| h.name.as_str()))
            .collect()
    }

    /// True when no target is configured.
    pub fn is_empty(&self) -> bool {
        self.webhooks.is_empty() && self.ntfy.is_empty() && self.heartbeats.is_empty()
    }
}

fn target_name(ctx: &mut Ctx<'_>, t: &mut Table<'_, '_>) -> Option<At<String>> {
    let name: At<String> = t.req(ctx, "name")?;
    if !valid_name(&name.value) {
        ctx.error(
            name.span.clone(),
            &format!("{}.name", t.path()),
            format!("`{}` is not a valid target name", name.value),
        )
        .hint("use 1 to 64 letters, digits, `-`, `_` or `.`, starting with a letter or digit (it labels metrics)");
        return None;
    }
    Some(name)
}

/// An http(s) URL for a target: no password in it (secrets never sit in the TOML), and
/// plain http only to loopback unless nothing secret travels with it.
fn target_url(
    ctx: &mut Ctx<'_>,
    t: &mut Table<'_, '_>,
    key: &'static str,
    secret: Option<&str>,
) -> Option<HttpUrl> {
    let (value, path) = t.raw(key)?;
    let node = Node::new(value, &path);
    let url = HttpUrl::decode(ctx, node.clone())?;
    check_url(ctx, &node, &url, secret)?;
    Some(url)
}

fn check_url(
    ctx: &mut Ctx<'_>,
    node: &Node<'_, '_>,
    url: &HttpUrl,
    secret: Option<&str>,
) -> Option<()> {
    if url.0.password().is_some() {
        node.error(ctx, "a password in the URL would sit in the configuration file in clear text")
            .hint("remove it and send it as a header from a secret file: headers = { Authorization = { file = \"/etc/edge/...\" } }");
        return None;
    }
    if url.is_secure_or_loopback() {
        return Some(());
    }
    match secret {
        Some(what) => {
            node.error(
                ctx,
                format!("`{url}` would send {what} over plain HTTP"),
            )
            .hint("use https:// (with notify.ca_file for a private CA); plain http is accepted only to a loopback address");
            None
        }
        None => {
            node.warn(
                ctx,
                format!("events go to `{url}` over plain HTTP: anyone on the way can read them"),
            )
            .hint("use https:// (with notify.ca_file for a private CA)");
            Some(())
        }
    }
}

fn events(ctx: &mut Ctx<'_>, t: &mut Table<'_, '_>) -> Option<EventFilter> {
    let span = t.raw("events").map(|(v, _)| v.span());
    let Some(list) = t.opt::<Vec<At<String>>>(ctx, "events") else {
        // Absent (or not a list: already reported).
        return span.is_none().then(EventFilter::all);
    };
    let key = format!("{}.events", t.path());
    if list.is_empty() {
        ctx.error(
            span.unwrap_or_else(|| t.span()),
            &key,
            "`events = []` sends nothing to this target",
        )
        .hint("list the events it should receive, e.g. [\"ddns.*\"], or remove the target");
        return None;
    }
    let mut ok = true;
    for e in &list {
        let v = e.value.as_str();
        let known = v == "*"
            || EVENT_KINDS.contains(&v)
            || v.strip_suffix(".*").is_some_and(|g| GROUPS.contains(&g));
        if known {
            continue;
        }
        ok = false;
        let mut choices: Vec<&str> = EVENT_KINDS.to_vec();
        let groups: Vec<String> = GROUPS.iter().map(|g| format!("{g}.*")).collect();
        choices.extend(groups.iter().map(String::as_str));
        let d = ctx.error(e.span.clone(), &key, format!("unknown event `{v}`"));
        match crate::decode::closest(v, &choices) {
            Some(b) => d.hint(format!("did you mean \"{b}\"?")),
            None => d.hint(format!(
                "events are \"*\", a group (\"ddns.*\", \"fw.*\", \"wg.*\", \"link.*\") or one of: {}",
                EVENT_KINDS.join(", ")
            )),
        };
    }
    ok.then(|| EventFilter(list.into_iter().map(|e| e.value).collect()))
}

fn max_per_minute(ctx: &mut Ctx<'_>, t: &mut Table<'_, '_>) -> u32 {
    t.with(ctx, "max_per_minute", |ctx, n| {
        integer_in(ctx, &n, 1, 600).and_then(|v| u32::try_from(v).ok())
    })
    .unwrap_or(DEFAULT_MAX_PER_MINUTE)
}

/// Header names edge sets itself (or that HTTP/1.1 manages): not configurable.
const RESERVED_HEADERS: [&str; 6] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "user-agent",
];

fn valid_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn headers(ctx: &mut Ctx<'_>, t: &mut Table<'_, '_>) -> Option<Vec<(String, SecretSource)>> {
    let mut ok = true;
    let out = t
        .sub(ctx, "headers", |ctx, h| {
            let mut out = Vec::new();
            for (name, name_span, value) in h.entries() {
                let key = format!("{}.{name}", h.path());
                if !valid_header_name(&name) {
                    ctx.error(
                        name_span,
                        &key,
                        format!("`{name}` is not a valid HTTP header name"),
                    )
                    .hint(
                        "a header name is letters, digits and `-` (e.g. Authorization, X-Api-Key)",
                    );
                    ok = false;
                    continue;
                }
                if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    ctx.error(
                        name_span,
                        &key,
                        format!("header `{name}` is set by edge itself"),
                    )
                    .hint("remove it");
                    ok = false;
                    continue;
                }
                match SecretSource::decode(ctx, Node::new(value, &key)) {
                    Some(s) => out.push((name, s)),
                    None => ok = false,
                }
            }
            h.finish_open();
            Some(out)
        })
        .flatten()
        .unwrap_or_default();
    ok.then_some(out)
}

fn webhook(ctx: &mut Ctx<'_>, mut t: Table<'_, '_>) -> Option<(Webhook, Range<usize>)> {
    let location = ctx.location(&t.span());
    let name = target_name(ctx, &mut t);
    let headers = headers(ctx, &mut t);
    let secret = headers
        .as_ref()
        .and_then(|h| h.first())
        .map(|(n, _)| format!("the `{n}` header"));
    let url = if t.raw("url").is_some() {
        target_url(ctx, &mut t, "url", secret.as_deref())
    } else {
        t.req::<HttpUrl>(ctx, "url")
    };
    let events = events(ctx, &mut t);
    let max_per_minute = max_per_minute(ctx, &mut t);
    t.finish(ctx);
    let name = name?;
    Some((
        Webhook {
            name: name.value,
            url: url?,
            events: events?,
            headers: headers?,
            max_per_minute,
            location,
        },
        name.span,
    ))
}

fn ntfy(ctx: &mut Ctx<'_>, mut t: Table<'_, '_>) -> Option<(Ntfy, Range<usize>)> {
    let location = ctx.location(&t.span());
    let name = target_name(ctx, &mut t);
    let token_given = t.raw("token").is_some();
    let token: Option<SecretSource> = t.opt(ctx, "token");
    let url = if t.raw("url").is_some() {
        target_url(
            ctx,
            &mut t,
            "url",
            token_given.then_some("the access token"),
        )
    } else {
        t.req::<HttpUrl>(ctx, "url")
    };
    let events = events(ctx, &mut t);
    let max_per_minute = max_per_minute(ctx, &mut t);
    t.finish(ctx);
    if token_given && token.is_none() {
        return None;
    }
    let name = name?;
    Some((
        Ntfy {
            name: name.value,
            url: url?,
            events: events?,
            token,
            max_per_minute,
            location,
        },
        name.span,
    ))
}

/// `url` with `/fail` appended to its path (query kept): Healthchecks' failure signal.
pub fn fail_url_of(url: &HttpUrl) -> HttpUrl {
    let mut u = url.0.clone();
    let path = format!("{}/fail", u.path().trim_end_matches('/'));
    u.set_path(&path);
    HttpUrl(u)
}

fn heartbeat(ctx: &mut Ctx<'_>, mut t: Table<'_, '_>) -> Option<(Heartbeat, Range<usize>)> {
    let location = ctx.location(&t.span());
    let name = target_name(ctx, &mut t);
    let url = if t.raw("url").is_some() {
        target_url(ctx, &mut t, "url", None)
    } else {
        t.req::<HttpUrl>(ctx, "url")
    };
    let fail_url = if t.raw("fail_url").is_some() {
        target_url(ctx, &mut t, "fail_url", None).map(Some)
    } else {
        Some(None)
    };
    let method = t
        .with(ctx, "method", |c, n| {
            one_of(
                c,
                n,
                &[
                    ("POST", HeartbeatMethod::Post),
                    ("GET", HeartbeatMethod::Get),
                ],
            )
        })
        .unwrap_or(HeartbeatMethod::Post);
    let max_per_minute = max_per_minute(ctx, &mut t);
    t.finish(ctx);
    let name = name?;
    let url = url?;
    let fail_url = fail_url?.unwrap_or_else(|| fail_url_of(&url));
    Some((
        Heartbeat {
            name: name.value,
            url,
            fail_url,
            method,
            max_per_minute,
            location,
            span: name.span.clone(),
        },
        name.span,
    ))
}

fn duration_in(
    ctx: &mut Ctx<'_>,
    t: &mut Table<'_, '_>,
    key: &'static str,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Duration {
    let node = t.raw(key).map(|(v, k)| (v.span(), k));
    let d = t.or(ctx, key, Dur(default)).0;
    if let Some((span, k)) = node
        && (d < min || d > max)
    {
        ctx.error(
            span,
            &k,
            format!(
                "`{k}` = {} is out of range: it must be between {} and {}",
                humantime::format_duration(d),
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        );
    }
    d
}

/// Decodes `[notify]`.
pub(crate) fn decode(ctx: &mut Ctx<'_>, mut t: Table<'_, '_>) -> Option<Notify> {
    let d = Notify::default();
    let host = t.with(ctx, "host", |ctx, n| {
        let s = n.str(ctx, "a host name (string)")?;
        if s.is_empty() || s.len() > 253 || s.chars().any(char::is_control) {
            n.error(ctx, format!("`{s}` is not a usable host name"))
                .hint("1 to 253 characters without control characters, e.g. \"proliant\"");
            return None;
        }
        Some(s.to_owned())
    });
    let ca_file = t.with(ctx, "ca_file", |ctx, n| {
        let s = n.str(ctx, "an absolute path")?;
        if !s.starts_with('/') {
            n.error(
                ctx,
                format!("`notify.ca_file` must be an absolute path, not `{s}`"),
            );
            return None;
        }
        Some(PathBuf::from(s))
    });
    let timeout = duration_in(
        ctx,
        &mut t,
        "timeout",
        d.timeout,
        Duration::from_millis(100),
        Duration::from_secs(300),
    );
    let queue = t
        .with(ctx, "queue", |ctx, n| {
            integer_in(ctx, &n, 1, 1024).and_then(|v| usize::try_from(v).ok())
        })
        .unwrap_or(d.queue);
    let ddns_failing_after = t
        .with(ctx, "ddns_failing_after", |ctx, n| {
            integer_in(ctx, &n, 1, 1000).and_then(|v| u32::try_from(v).ok())
        })
        .unwrap_or(d.ddns_failing_after);
    let link_down_after = duration_in(
        ctx,
        &mut t,
        "link_down_after",
        d.link_down_after,
        Duration::ZERO,
        Duration::from_secs(3600),
    );
    let wg_handshake_stale_after = duration_in(
        ctx,
        &mut t,
        "wg_handshake_stale_after",
        d.wg_handshake_stale_after,
        Duration::ZERO,
        Duration::from_secs(30 * 86_400),
    );
    let webhooks = t.list(ctx, "webhook", webhook);
    let ntfy = t.list(ctx, "ntfy", ntfy);
    let heartbeats = t.list(ctx, "heartbeat", heartbeat);
    t.finish(ctx);

    let mut seen: HashSet<String> = HashSet::new();
    let spans = webhooks
        .iter()
        .map(|(w, s)| (w.name.as_str(), s))
        .chain(ntfy.iter().map(|(n, s)| (n.name.as_str(), s)))
        .chain(heartbeats.iter().map(|(h, s)| (h.name.as_str(), s)));
    for (name, span) in spans {
        if !seen.insert(name.to_owned()) {
            ctx.error(
                span.clone(),
                "notify.name",
                format!("notification target name `{name}` is used twice"),
            )
            .hint("target names label metrics and select a target in `edgectl notify test NAME`: make them unique across webhook, ntfy and heartbeat");
        }
    }
    Some(Notify {
        host,
        ca_file,
        timeout,
        queue,
        ddns_failing_after,
        link_down_after,
        wg_handshake_stale_after,
        webhooks: webhooks.into_iter().map(|(w, _)| w).collect(),
        ntfy: ntfy.into_iter().map(|(n, _)| n).collect(),
        heartbeats: heartbeats.into_iter().map(|(h, _)| h).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(p: &[&str]) -> EventFilter {
        EventFilter(p.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn filters_match_kinds_groups_and_everything() {
        let f = filter(&["ddns.*", "fw.apply_failed"]);
        assert!(f.matches("ddns.record_changed"));
        assert!(f.matches("fw.apply_failed"));
        assert!(!f.matches("fw.rolled_back"));
        assert!(!f.matches("link.down"));
        assert!(f.matches("test"), "test reaches every target");
        assert!(EventFilter::all().matches("wg.peer_expired"));
        // A group is a whole first label, not a prefix.
        assert!(!filter(&["fw.*"]).matches("fwx.y"));
    }

    #[test]
    fn the_fail_url_appends_to_the_path_and_keeps_the_query() {
        let u = HttpUrl::parse("https://hc.example.org/ping/abc?create=1").unwrap();
        assert_eq!(
            fail_url_of(&u).to_string(),
            "https://hc.example.org/ping/abc/fail?create=1"
        );
        let u = HttpUrl::parse("https://hc.example.org/ping/abc/").unwrap();
        assert_eq!(
            fail_url_of(&u).to_string(),
            "https://hc.example.org/ping/abc/fail"
        );
    }

    #[test]
    fn target_names_are_labels() {
        assert!(valid_name("home-assistant"));
        assert!(valid_name("hc.1"));
        assert!(!valid_name(""));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
