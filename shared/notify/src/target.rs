//! Pure: the targets of `[notify]` and what one delivery to each looks like — the method,
//! URL, headers and body of the HTTP request, rendered from an event or a heartbeat. Secret
//! headers are not part of it: the I/O layer adds them (they never pass through here, so
//! nothing rendered here can leak them).

use std::sync::Arc;

use edge_config::notify::{EventFilter, HeartbeatMethod, Notify};
use url::Url;

use crate::event::{Envelope, Event, Severity};

/// What kind of target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `[[notify.webhook]]`: the JSON document.
    Webhook,
    /// `[[notify.ntfy]]`: a message with title, priority and tags.
    Ntfy,
    /// `[[notify.heartbeat]]`: a ping after each DDNS sync.
    Heartbeat,
}

impl Kind {
    /// `webhook`, `ntfy` or `heartbeat`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Ntfy => "ntfy",
            Kind::Heartbeat => "heartbeat",
        }
    }
}

/// One target as configured (without its secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: Kind,
    /// Where events (or successful heartbeats) go.
    pub url: Url,
    /// Where failed heartbeats go.
    pub fail_url: Option<Url>,
    /// How heartbeats are sent.
    pub method: HeartbeatMethod,
    /// Which events it receives (heartbeats: none but `test`).
    pub filter: EventFilter,
    /// Requests per minute.
    pub max_per_minute: u32,
}

/// A target that receives events (a webhook or an ntfy topic): POSTed to, no fail URL.
fn event_target(
    kind: Kind,
    name: &str,
    url: &Url,
    filter: &EventFilter,
    max_per_minute: u32,
) -> Spec {
    Spec {
        name: name.to_owned(),
        kind,
        url: url.clone(),
        fail_url: None,
        method: HeartbeatMethod::Post,
        filter: filter.clone(),
        max_per_minute,
    }
}

/// Every target of the section, in the file's order (webhooks, ntfy, heartbeats).
pub fn specs(n: &Notify) -> Vec<Spec> {
    let mut out = Vec::new();
    for w in &n.webhooks {
        out.push(event_target(
            Kind::Webhook,
            &w.name,
            &w.url.0,
            &w.events,
            w.max_per_minute,
        ));
    }
    for t in &n.ntfy {
        out.push(event_target(
            Kind::Ntfy,
            &t.name,
            &t.url.0,
            &t.events,
            t.max_per_minute,
        ));
    }
    for h in &n.heartbeats {
        out.push(Spec {
            name: h.name.clone(),
            kind: Kind::Heartbeat,
            url: h.url.0.clone(),
            fail_url: Some(h.fail_url.0.clone()),
            method: h.method,
            filter: EventFilter::all(),
            max_per_minute: h.max_per_minute,
        });
    }
    out
}

/// What is queued for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// An event (shared by every target it goes to).
    Event(Arc<Envelope>),
    /// The outcome of a DDNS sync, for heartbeats.
    Heartbeat {
        /// The sync succeeded.
        ok: bool,
        /// One line about it (the body of a POSTed ping).
        summary: String,
    },
}

impl Payload {
    /// A short name for logs and metrics: the event kind, or `heartbeat`.
    pub fn label(&self) -> &str {
        match self {
            Payload::Event(e) => e.event.kind(),
            Payload::Heartbeat { .. } => "heartbeat",
        }
    }
}

/// Whether `spec` takes `payload`: webhooks and ntfy take the events their filter passes,
/// heartbeats take heartbeats and the `test` event.
pub fn accepts(spec: &Spec, payload: &Payload) -> bool {
    match (spec.kind, payload) {
        (Kind::Heartbeat, Payload::Heartbeat { .. }) => true,
        (Kind::Heartbeat, Payload::Event(e)) => matches!(e.event, Event::Test { .. }),
        (_, Payload::Heartbeat { .. }) => false,
        (_, Payload::Event(e)) => spec.filter.matches(e.event.kind()),
    }
}

/// One HTTP request, without the target's secret headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// `POST` or `GET`.
    pub method: &'static str,
    /// Where.
    pub url: Url,
    /// Headers (`Content-Type`, ntfy's `Title`, ...).
    pub headers: Vec<(&'static str, String)>,
    /// The body (empty for GET).
    pub body: Vec<u8>,
}

/// ntfy priorities: 3 is the default, 4 high, 5 urgent.
fn ntfy_priority(s: Severity) -> &'static str {
    match s {
        Severity::Info => "3",
        Severity::Warning => "4",
        Severity::Error => "5",
    }
}

/// ntfy turns these tags into emojis.
fn ntfy_tag(s: Severity) -> &'static str {
    match s {
        Severity::Info => "information_source",
        Severity::Warning => "warning",
        Severity::Error => "rotating_light",
    }
}

/// A header value made of printable ASCII only (a host name could hold anything).
fn header_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// The request that delivers `payload` to `spec`, or `None` when the target does not take
/// it.
pub fn render(spec: &Spec, payload: &Payload) -> Option<Outgoing> {
    if !accepts(spec, payload) {
        return None;
    }
    let text = |body: String| ("Content-Type", body);
    Some(match (spec.kind, payload) {
        (Kind::Webhook, Payload::Event(e)) => Outgoing {
            method: "POST",
            url: spec.url.clone(),
            headers: vec![text("application/json".to_owned())],
            body: e.to_json(),
        },
        (Kind::Ntfy, Payload::Event(e)) => Outgoing {
            method: "POST",
            url: spec.url.clone(),
            headers: vec![
                text("text/plain; charset=utf-8".to_owned()),
                (
                    "Title",
                    header_text(&format!("{}: {}", e.host, e.event.title())),
                ),
                ("Priority", ntfy_priority(e.severity).to_owned()),
                (
                    "Tags",
                    format!("{},{}", ntfy_tag(e.severity), e.event.kind()),
                ),
            ],
            body: format!("{}\n({} on {})", e.summary, e.source, e.host).into_bytes(),
        },
        (Kind::Heartbeat, p) => {
            let (ok, summary) = match p {
                Payload::Heartbeat { ok, summary } => (*ok, summary.clone()),
                Payload::Event(e) => (true, e.summary.clone()),
            };
            let url = match (&spec.fail_url, ok) {
                (Some(f), false) => f.clone(),
                _ => spec.url.clone(),
            };
            match spec.method {
                HeartbeatMethod::Post => Outgoing {
                    method: "POST",
                    url,
                    headers: vec![text("text/plain; charset=utf-8".to_owned())],
                    body: summary.into_bytes(),
                },
                HeartbeatMethod::Get => Outgoing {
                    method: "GET",
                    url,
                    headers: Vec::new(),
                    body: Vec::new(),
                },
            }
        }
        (_, Payload::Heartbeat { .. }) => return None,
    })
}

/// A URL fit for logs: scheme, host and port only. Paths and queries often carry secrets (a
/// Healthchecks ping id, an ntfy topic, a webhook token), so they are never logged.
pub fn redact(url: &Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        Some(h) => h.to_string(),
        None => String::new(),
    };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{host}{port}/…", url.scheme())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_config::notify::Notify;

    fn notify(text: &str) -> Notify {
        let full = format!("version = 1\n{text}");
        match edge_config::parse(std::path::Path::new("t.toml"), &full) {
            Ok(l) => l.config.notify.unwrap(),
            Err(d) => panic!("{d}"),
        }
    }

    fn env(event: Event) -> Payload {
        Payload::Event(Arc::new(Envelope::new(
            event,
            "id".into(),
            "2026-05-04T10:11:12Z".into(),
            "proliant".into(),
            "edge-ddns".into(),
        )))
    }

    fn changed() -> Event {
        Event::DdnsRecordChanged {
            record: "example.com".into(),
            record_type: "A".into(),
            old: Some("81.0.0.2".into()),
            new: "81.0.0.3".into(),
        }
    }

    const ALL: &str = r#"
[notify]
[[notify.webhook]]
name = "hook"
url = "https://hooks.example.org/edge"
events = ["ddns.*"]
[[notify.ntfy]]
name = "phone"
url = "https://ntfy.example.org/edge-topic"
[[notify.heartbeat]]
name = "hc"
url = "https://hc.example.org/ping/0b5c"
[[notify.heartbeat]]
name = "kuma"
url = "https://kuma.example.org/api/push/tok?status=up"
fail_url = "https://kuma.example.org/api/push/tok?status=down"
method = "GET"
"#;

    #[test]
    fn a_webhook_gets_the_json_document_of_the_events_it_asked_for() {
        let s = specs(&notify(ALL));
        let hook = &s[0];
        let out = render(hook, &env(changed())).unwrap();
        assert_eq!(out.method, "POST");
        assert_eq!(out.url.as_str(), "https://hooks.example.org/edge");
        assert_eq!(
            out.headers,
            [("Content-Type", "application/json".to_owned())]
        );
        let v: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(v["kind"], "ddns.record_changed");
        assert_eq!(v["data"]["new"], "81.0.0.3");
        let down = env(Event::LinkDown {
            interface: "enp3s0f0".into(),
            bridge: None,
        });
        assert_eq!(render(hook, &down), None, "filtered out");
        let hb = Payload::Heartbeat {
            ok: true,
            summary: "ok".into(),
        };
        assert_eq!(render(hook, &hb), None, "webhooks take no heartbeats");
    }

    #[test]
    fn ntfy_gets_a_message_with_title_priority_and_tags() {
        let s = specs(&notify(ALL));
        let out = render(
            &s[1],
            &env(Event::LinkNicMissing {
                interface: "enp4s0f0".into(),
                bridge: Some("br1".into()),
            }),
        )
        .unwrap();
        assert_eq!(out.method, "POST");
        assert_eq!(out.url.as_str(), "https://ntfy.example.org/edge-topic");
        let h = |k: &str| {
            out.headers
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(h("Title"), Some("proliant: NIC missing"));
        assert_eq!(h("Priority"), Some("5"));
        assert_eq!(h("Tags"), Some("rotating_light,link.nic_missing"));
        assert_eq!(
            String::from_utf8(out.body).unwrap(),
            "enp4s0f0 (port of br1) does not exist\n(edge-ddns on proliant)"
        );
    }

    #[test]
    fn heartbeats_ping_url_or_fail_url_and_take_only_pings_and_tests() {
        let s = specs(&notify(ALL));
        let (hc, kuma) = (&s[2], &s[3]);
        let ok = Payload::Heartbeat {
            ok: true,
            summary: "sync ok".into(),
        };
        let failed = Payload::Heartbeat {
            ok: false,
            summary: "sync FAILED".into(),
        };
        let o = render(hc, &ok).unwrap();
        assert_eq!(
            (o.method, o.url.as_str()),
            ("POST", "https://hc.example.org/ping/0b5c")
        );
        assert_eq!(o.body, b"sync ok");
        let f = render(hc, &failed).unwrap();
        assert_eq!(f.url.as_str(), "https://hc.example.org/ping/0b5c/fail");
        let k = render(kuma, &failed).unwrap();
        assert_eq!(
            (k.method, k.url.as_str()),
            ("GET", "https://kuma.example.org/api/push/tok?status=down")
        );
        assert!(k.body.is_empty());
        assert_eq!(render(hc, &env(changed())), None);
        let t = render(
            hc,
            &env(Event::Test {
                message: "hello".into(),
            }),
        )
        .unwrap();
        assert_eq!(t.url.as_str(), "https://hc.example.org/ping/0b5c");
    }

    #[test]
    fn logged_urls_keep_only_scheme_host_and_port() {
        let u = Url::parse("https://hc.example.org:8443/ping/secret-uuid?x=1").unwrap();
        assert_eq!(redact(&u), "https://hc.example.org:8443/…");
        let u = Url::parse("http://[::1]:9/t").unwrap();
        assert_eq!(redact(&u), "http://[::1]:9/…");
    }

    #[test]
    fn header_text_is_printable_ascii() {
        assert_eq!(header_text("höst\r\nX: y"), "h?st??X: y");
    }
}
