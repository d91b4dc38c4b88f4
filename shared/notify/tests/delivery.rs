//! Delivery against real local receivers (edge-testkit's [`Receiver`] on loopback): every
//! event kind arrives once with the documented fields (checked against the published JSON
//! Schema), filters, retries with backoff, refusals, bounded queues, the rate limit,
//! heartbeats, HTTPS with a private CA, secret headers, reloads, and `edgectl notify
//! test`'s probe. (That no secret reaches a log is tests/logs.rs.)

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_config::notify::Notify;
use edge_metrics::notify::{Metrics, TargetLabels};
use edge_notify::event::examples;
use edge_notify::{Event, Notifier, Tuning, probe};
use edge_testkit::receiver::{Answer, Receiver, ReceiverOptions};

/// Fast retries, so that the tests do not wait for the production backoff.
fn fast() -> Tuning {
    Tuning {
        attempts: 3,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(100),
        window: Duration::from_secs(60),
    }
}

fn notify(text: &str) -> Notify {
    let full = format!("version = 1\n[notify]\n{text}");
    match edge_config::parse(Path::new("edge.toml"), &full) {
        Ok(l) => l.config.notify.unwrap(),
        Err(d) => panic!("test configuration refused:\n{d}\n{full}"),
    }
}

fn secret_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/notify-event.schema.json");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&doc)
        .unwrap()
}

fn assert_valid(v: &jsonschema::Validator, doc: &serde_json::Value) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{doc}\n{}", errors.join("\n"));
}

async fn flushed(n: &Notifier) {
    assert!(
        n.flush(Duration::from_secs(20)).await,
        "deliveries did not finish"
    );
}

#[tokio::test]
async fn every_event_kind_arrives_once_with_the_documented_fields() {
    let rx = Receiver::start_local(Answer::Ok);
    let dir = tempfile::tempdir().unwrap();
    let token = secret_file(dir.path(), "hook.token", "Bearer s3cr3t-hook\n");
    let cfg = notify(&format!(
        "host = \"proliant\"\n[[notify.webhook]]\nname = \"hook\"\nurl = \"{}\"\nheaders = {{ Authorization = {{ file = \"{}\" }} }}\n",
        rx.url("/edge"),
        token.display()
    ));
    let metrics = Metrics::default();
    let n = Notifier::start_with(Some(&cfg), "edge-ddns", metrics.clone(), fast());
    let sent = examples();
    for e in &sent {
        n.send(e.clone());
    }
    flushed(&n).await;

    let got = rx.received();
    assert_eq!(got.len(), sent.len(), "one request per event");
    let v = schema();
    for e in &sent {
        let docs: Vec<serde_json::Value> = got
            .iter()
            .filter_map(|r| r.json())
            .filter(|d| d["kind"] == e.kind())
            .collect();
        assert_eq!(docs.len(), 1, "{} arrived {} times", e.kind(), docs.len());
        let d = &docs[0];
        assert_valid(&v, d);
        assert_eq!(d["version"], 1);
        assert_eq!(d["host"], "proliant");
        assert_eq!(d["source"], "edge-ddns");
        assert_eq!(d["severity"], e.severity().to_string());
        assert_eq!(d["summary"], e.summary());
        assert_eq!(d["data"], e.data(), "{}", e.kind());
    }
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/edge");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("authorization"), Some("Bearer s3cr3t-hook"));
    }
    let ids: std::collections::BTreeSet<String> = got
        .iter()
        .map(|r| r.json().unwrap()["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), sent.len(), "every event has its own id");
    assert_eq!(metrics.count("hook", "sent"), sent.len() as u64);
    assert_eq!(metrics.count("hook", "failed"), 0);
    assert_eq!(metrics.count("hook", "dropped"), 0);
}

#[tokio::test]
async fn each_target_gets_only_the_events_it_asked_for() {
    let (a, b) = (
        Receiver::start_local(Answer::Ok),
        Receiver::start_local(Answer::Ok),
    );
    let cfg = notify(&format!(
        "[[notify.webhook]]\nname = \"dns\"\nurl = \"{}\"\nevents = [\"ddns.*\"]\n[[notify.webhook]]\nname = \"links\"\nurl = \"{}\"\nevents = [\"link.down\", \"link.nic_missing\"]\n",
        a.url("/"),
        b.url("/")
    ));
    let n = Notifier::start_with(Some(&cfg), "edge-link", Metrics::default(), fast());
    for e in examples() {
        n.send(e);
    }
    flushed(&n).await;
    let kinds = |r: &Receiver| -> Vec<String> {
        r.received()
            .iter()
            .map(|x| x.json().unwrap()["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        kinds(&a),
        [
            "ddns.record_changed",
            "ddns.sync_failing",
            "ddns.sync_recovered",
            "test"
        ]
    );
    assert_eq!(kinds(&b), ["link.down", "link.nic_missing", "test"]);
}

#[tokio::test]
async fn a_failing_target_is_retried_and_gets_the_event_once_it_answers() {
    let rx = Receiver::start_local(Answer::FailFirst(2));
    let cfg = notify(&format!(
        "[[notify.webhook]]\nname = \"hook\"\nurl = \"{}\"\n",
        rx.url("/")
    ));
    let m = Metrics::default();
    let n = Notifier::start_with(Some(&cfg), "edge-ddns", m.clone(), fast());
    n.send(examples().remove(0));
    flushed(&n).await;
    let got = rx.received();
    assert_eq!(got.len(), 3, "two 500s, then accepted");
    let ids: Vec<_> = got
        .iter()
        .map(|r| r.json().unwrap()["id"].clone())
        .collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "retries carry the same id: {ids:?}"
    );
    assert_eq!(m.count("hook", "sent"), 1);
    assert_eq!(m.count("hook", "failed"), 0);
    let retries = m
        .retries
        .get_or_create(&TargetLabels {
            target: "hook".into(),
        })
        .get();
    assert_eq!(retries, 2);
}

#[tokio::test]
async fn a_refusal_is_not_retried_and_a_dead_target_is_given_up_after_the_attempts() {
    let refused = Receiver::start_local(Answer::Status(403));
    let broken = Receiver::start_local(Answer::Status(503));
    let cfg = notify(&format!(
        "[[notify.webhook]]\nname = \"refused\"\nurl = \"{}\"\n[[notify.ntfy]]\nname = \"broken\"\nurl = \"{}\"\n",
        refused.url("/"),
        broken.url("/topic")
    ));
    let m = Metrics::default();
    let n = Notifier::start_with(Some(&cfg), "edge-ddns", m.clone(), fast());
    n.send(Event::FwApplyFailed {
        error: "boom".into(),
    });
    flushed(&n).await;
    assert_eq!(refused.count(), 1, "a 403 is final");
    assert_eq!(m.count("refused", "failed"), 1);
    assert_eq!(broken.count(), 3, "every attempt of `fast()`");
    assert_eq!(m.count("broken", "failed"), 1);
    assert_eq!(m.count("broken", "sent"), 0);
}

#[tokio::test]
async fn a_full_queue_drops_its_oldest_events_and_counts_them() {
    let rx = Receiver::start_local(Answer::Ok);
    let cfg = notify(&format!(
        "queue = 2\n[[notify.webhook]]\nname = \"hook\"\nurl = \"{}\"\n",
        rx.url("/")
    ));
    let m = Metrics::default();
    let n = Notifier::start_with(Some(&cfg), "edge-fw", m.clone(), fast());
    // No await between the sends: the delivery task cannot take any before the fourth.
    for i in 1..=4 {
        n.send(Event::FwApplyFailed {
            error: format!("error {i}"),
        });
    }
    flushed(&n).await;
    let errors: Vec<String> = rx
        .received()
        .iter()
        .map(|r| {
            r.json().unwrap()["data"]["error"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(errors, ["error 3", "error 4"], "the newest are kept");
    assert_eq!(m.count("hook", "dropped"), 2);
    assert_eq!(m.count("hook", "sent"), 2);
}

#[tokio::test]
async fn the_rate_limit_holds_back_what_exceeds_max_per_minute() {
    let rx = Receiver::start_local(Answer::Ok);
    let cfg = notify(&format!(
        "[[notify.webhook]]\nname = \"hook\"\nurl = \"{}\"\nmax_per_minute = 2\n",
        rx.url("/")
    ));
    let m = Metrics::default();
    let tuning = Tuning {
        window: Duration::from_secs(3600),
        ..fast()
    };
    let n = Notifier::start_with(Some(&cfg), "edge-fw", m.clone(), tuning);
    for i in 1..=3 {
        n.send(Event::FwRolledBack {
            reason: format!("probe {i}"),
        });
    }
    let start = std::time::Instant::now();
    while rx.count() < 2 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rx.count(), 2, "the first two go out at once");
    // The third waits for the window (an hour): the queue does not empty.
    assert!(!n.flush(Duration::from_millis(500)).await);
    assert_eq!(rx.count(), 2);
    let queued = || {
        m.queued
            .get_or_create(&TargetLabels {
                target: "hook".into(),
            })
            .get()
    };
    let start = std::time::Instant::now();
    while queued() != 1 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(queued(), 1, "the third is held, not dropped");
    assert_eq!(rx.count(), 2);
    assert_eq!(m.count("hook", "dropped"), 0);
}

#[tokio::test]
async fn heartbeats_ping_the_url_or_its_fail_url_and_a_newer_one_replaces_a_waiting_one() {
    let rx = Receiver::start_local(Answer::Ok);
    let cfg = notify(&format!(
        "[[notify.heartbeat]]\nname = \"hc\"\nurl = \"{}\"\n[[notify.webhook]]\nname = \"hook\"\nurl = \"{}\"\n",
        rx.url("/ping/abc"),
        rx.url("/hook")
    ));
    let m = Metrics::default();
    let n = Notifier::start_with(Some(&cfg), "edge-ddns", m.clone(), fast());
    n.heartbeat(false, "sync FAILED: no address");
    flushed(&n).await;
    n.heartbeat(true, "sync ok 1");
    n.heartbeat(true, "sync ok 2");
    flushed(&n).await;
    let got: Vec<(String, String, String)> = rx
        .received()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone(), r.text()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "POST".to_owned(),
                "/ping/abc/fail".to_owned(),
                "sync FAILED: no address".to_owned()
            ),
            (
                "POST".to_owned(),
                "/ping/abc".to_owned(),
                "sync ok 2".to_owned()
            ),
        ],
        "heartbeats go to heartbeat targets only; the waiting `ok 1` was replaced"
    );
    assert_eq!(m.count("hc", "dropped"), 1);
}

#[tokio::test]
async fn https_works_with_the_configured_ca_and_fails_without_it() {
    let rx = Receiver::start(ReceiverOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        tls_names: Some(vec!["127.0.0.1".to_owned()]),
        answer: Answer::Ok,
        log: None,
    });
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, rx.ca_pem().unwrap()).unwrap();
    let url = rx.url("/hook");
    assert!(url.starts_with("https://"), "{url}");
    let with = notify(&format!(
        "ca_file = \"{}\"\n[[notify.webhook]]\nname = \"hook\"\nurl = \"{url}\"\n",
        ca.display()
    ));
    let m = Metrics::default();
    let n = Notifier::start_with(Some(&with), "edge-ddns", m.clone(), fast());
    n.send(examples().remove(0));
    flushed(&n).await;
    assert_eq!(m.count("hook", "sent"), 1);
    assert_eq!(rx.count(), 1);

    let without = notify(&format!(
        "[[notify.webhook]]\nname = \"hook\"\nurl = \"{url}\"\n"
    ));
    let m = Metrics::default();
    let n = Notifier::start_with(Some(&without), "edge-ddns", m.clone(), fast());
    n.send(examples().remove(0));
    flushed(&n).await;
    assert_eq!(m.count("hook", "failed"), 1, "the test CA is not trusted");
    assert_eq!(rx.count(), 1, "no TLS session, no request");
}

#[tokio::test]
async fn a_target_whose_secret_is_missing_is_left_out_the_others_still_work() {
    let rx = Receiver::start_local(Answer::Ok);
    let cfg = notify(&format!(
        "[[notify.webhook]]\nname = \"nosecret\"\nurl = \"{}\"\nheaders = {{ Authorization = {{ file = \"/nonexistent/edge/hook\" }} }}\n[[notify.webhook]]\nname = \"fine\"\nurl = \"{}\"\n",
        rx.url("/a"),
        rx.url("/b")
    ));
    let n = Notifier::start_with(Some(&cfg), "edge-link", Metrics::default(), fast());
    assert_eq!(n.targets(), ["fine"]);
    n.send(examples().remove(0));
    flushed(&n).await;
    let paths: Vec<String> = rx.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/b"]);
}

#[tokio::test]
async fn the_probe_reports_what_each_target_answered() {
    let ok = Receiver::start_local(Answer::Ok);
    let bad = Receiver::start_local(Answer::Status(500));
    let cfg = notify(&format!(
        "host = \"proliant\"\n[[notify.webhook]]\nname = \"hook\"\nurl = \"{}\"\n[[notify.ntfy]]\nname = \"phone\"\nurl = \"{}\"\n[[notify.heartbeat]]\nname = \"hc\"\nurl = \"{}\"\n",
        ok.url("/hook"),
        bad.url("/topic"),
        ok.url("/ping/abc")
    ));
    let res = probe(&cfg, None, "edgectl").await.unwrap();
    let summary: Vec<(String, &str, bool, Option<u16>)> = res
        .iter()
        .map(|r| (r.target.clone(), r.kind, r.ok, r.status))
        .collect();
    assert_eq!(
        summary,
        [
            ("hook".to_owned(), "webhook", true, Some(200)),
            ("phone".to_owned(), "ntfy", false, Some(500)),
            ("hc".to_owned(), "heartbeat", true, Some(200)),
        ]
    );
    assert_eq!(res[0].detail, "{\"ok\":true}");
    assert!(
        res[1].detail.contains("HTTP 500") && res[1].detail.contains("test receiver says 500"),
        "{}",
        res[1].detail
    );
    assert_eq!(bad.count(), 1, "a probe is one attempt");
    let got = ok.received();
    let hook = got
        .iter()
        .find(|r| r.path == "/hook")
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(hook["kind"], "test");
    assert_eq!(hook["source"], "edgectl");
    assert_valid(&schema(), &hook);
    assert!(got.iter().any(|r| r.path == "/ping/abc"));

    let only = probe(&cfg, Some("hook"), "edgectl").await.unwrap();
    assert_eq!(only.len(), 1);
    let e = probe(&cfg, Some("nope"), "edgectl").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "no notification target is named `nope` (targets: hook, phone, hc)"
    );
}

#[tokio::test]
async fn a_reload_switches_targets_and_keeps_source_metrics_and_tuning() {
    let (a, b) = (
        Receiver::start_local(Answer::Ok),
        Receiver::start_local(Answer::Ok),
    );
    let config = |url: String| {
        let text =
            format!("version = 1\n[notify]\n[[notify.webhook]]\nname = \"t\"\nurl = \"{url}\"\n");
        edge_config::parse(Path::new("edge.toml"), &text)
            .unwrap()
            .config
    };
    let m = Metrics::default();
    let first = config(a.url("/"));
    let mut n = Notifier::start_with(first.notify.as_ref(), "edge-fw", m.clone(), fast());
    n.send(examples().remove(0));
    n.reload(&config(b.url("/")));
    n.send(examples().remove(1));
    flushed(&n).await;
    // The old target still gets what was queued for it; the new one what came after.
    // (The old task drains in the background: wait until its delivery is counted.)
    let start = std::time::Instant::now();
    while m.count("t", "sent") < 2 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        m.count("t", "sent"),
        2,
        "one metrics registry across the reload"
    );
    assert_eq!(b.count(), 1);
    assert_eq!(a.count(), 1);
    assert_eq!(b.received()[0].json().unwrap()["source"], "edge-fw");
    n.reload(
        &edge_config::parse(Path::new("e.toml"), "version = 1\n")
            .unwrap()
            .config,
    );
    assert!(!n.is_enabled());
    n.send(examples().remove(0));
    assert_eq!(a.count() + b.count(), 2);
}
