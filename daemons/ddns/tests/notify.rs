//! edge-ddns's notifications against local receivers, with the Cloudflare API test server,
//! inside the test's own network namespace: each record change, the failing and recovered
//! streaks (quorum and update failures, across a restart) and the heartbeats arrive once
//! with their documented fields; a receiver that hangs and one that answers 500 do not
//! delay an update; `edge-ddns --once` delivers before it exits.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod common;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use common::*;
use edge_config::Config;
use edge_ddns::sync::{Mode, Syncer};
use edge_metrics::notify::{Metrics as NotifyMetrics, TargetLabels};
use edge_notify::{Notifier, Tuning};
use edge_testkit::cloudflare::Fault;
use edge_testkit::in_new_netns;
use edge_testkit::receiver::{Answer, Receiver};
use hyper::Method;
use serde_json::{Value, json};

/// The lab's configuration with `notify` appended as the `[notify]` section.
fn config_with(lab: &Lab, notify: &str) -> Config {
    let text = format!("{}\n[notify]\n{notify}", lab.config_text("", ""));
    let p = lab.dir.path().join("edge.toml");
    std::fs::write(&p, &text).unwrap();
    match edge_config::parse(&p, &text) {
        Ok(l) => l.config,
        Err(d) => panic!("test configuration refused:\n{d}\n{text}"),
    }
}

fn fast() -> Tuning {
    Tuning {
        attempts: 3,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(100),
        window: Duration::from_secs(60),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Polls `cond` on the runtime (so the delivery tasks keep running); false after `limit`.
async fn until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

fn start(cfg: &Config, tuning: Tuning) -> (Notifier, NotifyMetrics) {
    let m = NotifyMetrics::default();
    let n = Notifier::start_with(cfg.notify.as_ref(), "edge-ddns", m.clone(), tuning);
    assert!(n.is_enabled());
    (n, m)
}

/// One sync at `now`, then every notification it caused delivered.
async fn sync_and_flush(s: &mut Syncer, n: &Notifier, now: u64) -> bool {
    let r = s.run(now, Mode::Sync).await;
    assert!(n.flush(Duration::from_secs(20)).await, "deliveries hang");
    r.ok
}

fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/notify-event.schema.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&doc)
        .unwrap()
}

/// The events the webhook received, each checked against the schema: (kind, data).
fn events(rx: &Receiver) -> Vec<(String, Value)> {
    let v = schema();
    rx.received()
        .iter()
        .filter(|r| r.path == "/hook")
        .map(|r| {
            let doc = r.json().unwrap();
            let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{doc}: {errors:?}");
            assert_eq!(doc["source"], "edge-ddns");
            (
                doc["kind"].as_str().unwrap().to_owned(),
                doc["data"].clone(),
            )
        })
        .collect()
}

/// Heartbeat paths received, in order.
fn pings(rx: &Receiver) -> Vec<String> {
    rx.received()
        .iter()
        .filter(|r| r.path.starts_with("/ping"))
        .map(|r| r.path.clone())
        .collect()
}

fn changed(old: Option<&str>, new: &str) -> (String, Value) {
    (
        "ddns.record_changed".to_owned(),
        json!({"record": "example.com", "type": "A", "old": old, "new": new}),
    )
}

#[test]
fn record_changes_failing_and_recovered_syncs_and_heartbeats_arrive_once() {
    in_new_netns(|| {
        let lab = Lab::new();
        let rx = Receiver::start_local(Answer::Ok);
        let cfg = config_with(
            &lab,
            &format!(
                "ddns_failing_after = 2\n[[notify.webhook]]\nname = \"hook\"\nurl = \"{}\"\n[[notify.heartbeat]]\nname = \"hc\"\nurl = \"{}\"\n",
                rx.url("/hook"),
                rx.url("/ping")
            ),
        );
        runtime().block_on(async {
            let (n, m) = start(&cfg, fast());
            let mut s = lab.syncer(&cfg);
            s.set_notifier(n.clone());

            // Created, then moved: one event each; a converged run sends none.
            assert!(sync_and_flush(&mut s, &n, 1000).await);
            lab.set_all(Some(IP2));
            assert!(sync_and_flush(&mut s, &n, 1060).await);
            assert!(sync_and_flush(&mut s, &n, 1120).await);
            assert_eq!(events(&rx), [changed(None, IP1), changed(Some(IP1), IP2)]);

            // The sources go down: quorum failures. The second in a row is reported, also
            // across a restart between the two (the streak is in the state file).
            lab.set_all(None);
            assert!(!sync_and_flush(&mut s, &n, 1180).await);
            assert_eq!(events(&rx).len(), 2, "one failure is below the threshold");
            let mut s = lab.syncer(&cfg);
            s.set_notifier(n.clone());
            assert!(!sync_and_flush(&mut s, &n, 1240).await);
            assert!(!sync_and_flush(&mut s, &n, 1300).await);
            lab.set_all(Some(IP2));
            assert!(sync_and_flush(&mut s, &n, 1360).await);

            // The address moves but Cloudflare fails every PATCH for two syncs (4 attempts
            // each): update failures; then it works again.
            lab.set_all(Some(IP1));
            lab.cf.inject(Fault::ServerError, 8, Some(Method::PATCH));
            assert!(!sync_and_flush(&mut s, &n, 1420).await);
            assert!(!sync_and_flush(&mut s, &n, 1480).await);
            assert!(sync_and_flush(&mut s, &n, 1540).await);

            let got = events(&rx);
            let failing = |runs: u32, cause: &str| {
                let (k, d) = &got[got
                    .iter()
                    .position(|(k, d)| k == "ddns.sync_failing" && d["cause"] == cause)
                    .unwrap_or_else(|| panic!("no {cause} failure in {got:#?}"))];
                assert_eq!(d["failed_runs"], runs, "{k} {d}");
                d["error"].as_str().unwrap().to_owned()
            };
            let quorum = failing(2, "quorum");
            assert!(quorum.starts_with("ipv4: "), "{quorum}");
            let update = failing(2, "update");
            assert!(update.contains("HTTP 500"), "{update}");
            let kinds: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                kinds,
                [
                    "ddns.record_changed",
                    "ddns.record_changed",
                    "ddns.sync_failing",
                    "ddns.sync_recovered",
                    "ddns.sync_failing",
                    "ddns.record_changed",
                    "ddns.sync_recovered",
                ],
                "{got:#?}"
            );
            assert_eq!(got[3].1, json!({"failed_runs": 3}));
            assert_eq!(got[5], changed(Some(IP2), IP1));
            assert_eq!(got[6].1, json!({"failed_runs": 2}));

            // A heartbeat after every sync: url when it succeeded, url/fail when it failed.
            let (ok, fail) = ("/ping", "/ping/fail");
            assert_eq!(
                pings(&rx),
                [ok, ok, ok, fail, fail, fail, ok, fail, fail, ok]
            );
            let failed_ping = rx
                .received()
                .into_iter()
                .find(|r| r.path == "/ping/fail")
                .unwrap();
            assert!(
                failed_ping.text().starts_with("edge-ddns sync FAILED"),
                "{}",
                failed_ping.text()
            );
            assert_eq!(m.count("hook", "sent"), 7);
            assert_eq!(m.count("hc", "sent"), 10);
            assert_eq!(m.count("hook", "failed") + m.count("hook", "dropped"), 0);
        });
        assert_eq!(lab.a_records()[0]["content"], IP1);
    });
}

#[test]
fn a_receiver_that_hangs_and_one_that_answers_500_do_not_delay_an_update() {
    in_new_netns(|| {
        let lab = Lab::new();
        let hang = Receiver::start_local(Answer::Hang);
        let broken = Receiver::start_local(Answer::Status(500));
        let ok = Receiver::start_local(Answer::Ok);
        // Production pacing and the longest timeout the loader allows: a delivery that the
        // sync waited for would hold it for minutes.
        let cfg = config_with(
            &lab,
            &format!(
                "timeout = \"5m\"\n[[notify.webhook]]\nname = \"hang\"\nurl = \"{}\"\n[[notify.webhook]]\nname = \"broken\"\nurl = \"{}\"\n[[notify.webhook]]\nname = \"ok\"\nurl = \"{}\"\n",
                hang.url("/hook"),
                broken.url("/hook"),
                ok.url("/hook")
            ),
        );
        runtime().block_on(async {
            let (n, m) = start(&cfg, Tuning::default());
            let mut s = lab.syncer(&cfg);
            s.set_notifier(n.clone());
            let first = s.run(1000, Mode::Sync).await;
            assert!(first.ok);
            // The first event is now held by `hang` and refused by `broken`.
            assert!(
                until(Duration::from_secs(30), || hang.holding() == 1
                    && broken.count() >= 1)
                .await,
                "hang holds {}, broken got {}",
                hang.holding(),
                broken.count()
            );

            lab.set_all(Some(IP2));
            // A liveness bound only (a hang detector, far above the milliseconds a sync
            // takes, far below what waiting for `hang` would cost).
            let second = hang_detector(s.run(1060, Mode::Sync)).await;
            assert!(second.ok, "{second:?}");
            assert_eq!(second.records[0].outcome, "patched");
            // The update is done while `hang` still holds the first event and `broken` is
            // still being retried: the sync did not wait for either.
            assert_eq!(hang.holding(), 1, "the held request is still open");
            assert_eq!(hang.count(), 1, "the second event waits behind the first");
            let queued = |t: &str| {
                m.queued
                    .get_or_create(&TargetLabels { target: t.into() })
                    .get()
            };
            assert_eq!(queued("hang"), 2);
            assert!(queued("broken") >= 1);
            assert_eq!(m.count("broken", "failed"), 0, "still retrying");
            assert_eq!(m.count("broken", "sent"), 0);

            // The healthy target got both events meanwhile.
            assert!(until(Duration::from_secs(30), || ok.count() == 2).await);
            let news: Vec<Value> = ok
                .received()
                .iter()
                .map(|r| r.json().unwrap()["data"]["new"].clone())
                .collect();
            assert_eq!(news, [json!(IP1), json!(IP2)]);

            // Once `hang` answers, it gets the second event too.
            hang.release();
            assert!(until(Duration::from_secs(30), || hang.count() == 2).await);
        });
        assert_eq!(lab.a_records()[0]["content"], IP2);
    });
}

async fn hang_detector<T>(f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(120), f).await {
        Ok(v) => v,
        Err(_) => panic!("the sync did not finish within 120 s: it waits for a notification"),
    }
}

#[test]
fn once_delivers_the_record_change_before_it_exits() {
    in_new_netns(|| {
        let lab = Lab::new();
        let rx = Receiver::start_local(Answer::Ok);
        config_with(
            &lab,
            &format!(
                "[[notify.webhook]]\nname = \"hook\"\nurl = \"{}\"\n",
                rx.url("/hook")
            ),
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-ddns"))
            .args(["--once", "--config"])
            .arg(lab.dir.path().join("edge.toml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(events(&rx), [changed(None, IP1)]);
        // A dry run sends nothing.
        lab.set_all(Some(IP2));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-ddns"))
            .args(["--once", "--dry-run", "--config"])
            .arg(lab.dir.path().join("edge.toml"))
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(rx.count(), 1);
    });
}
