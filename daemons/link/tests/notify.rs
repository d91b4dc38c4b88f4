//! edge-link's notifications, with the daemon running in the host namespace of the
//! reference topology and a local webhook receiver beside it: a NIC missing at start, its
//! arrival, its carrier lost and back — each reported once, with the documented fields,
//! after `notify.link_down_after`. Needs root.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Duration;

use common::lab::*;
use edge_config::Role;
use edge_ipc::{Client, Request, Response};
use edge_testkit::receiver::{Answer, Receiver};
use edge_testkit::wait_for;
use serde_json::{Value, json};

fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/notify-event.schema.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&doc)
        .unwrap()
}

/// (kind, data) of every event received, each checked against the schema.
fn events(rx: &Receiver) -> Vec<(String, Value)> {
    let v = schema();
    rx.received()
        .iter()
        .map(|r| {
            let doc = r.json().unwrap();
            let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{doc}: {errors:?}");
            assert_eq!(doc["source"], "edge-link");
            (
                doc["kind"].as_str().unwrap().to_owned(),
                doc["data"].clone(),
            )
        })
        .collect()
}

fn ev(kind: &str) -> (String, Value) {
    (
        kind.to_owned(),
        json!({"interface": "enp4s0f0", "bridge": "br1"}),
    )
}

/// One value of the daemon's exporter, read inside the host namespace.
fn metric(lab: &Lab, line_start: &'static str) -> Option<f64> {
    let text = lab.host().run(|| {
        let mut s = std::net::TcpStream::connect("127.0.0.1:9854").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn a_missing_nic_its_arrival_and_its_carrier_are_each_reported_once() {
    let lab = Lab::new(&[]);
    // The receiver listens on the host namespace's loopback, as a local relay would.
    let rx = lab.host().run(|| Receiver::start_local(Answer::Ok));
    let mut text = std::fs::read_to_string(&lab.config).unwrap();
    text.push_str(&format!(
        "\n[notify]\nhost = \"proliant\"\nlink_down_after = \"3s\"\n[[notify.webhook]]\nname = \"hook\"\nurl = \"{}\"\nevents = [\"link.*\"]\n",
        rx.url("/hook")
    ));
    std::fs::write(&lab.config, text).unwrap();

    // enp4s0f0 is unplugged when edge-link starts.
    lab.host().ip(["link", "del", "enp4s0f0"]);
    let mut daemon = lab.daemon();
    lab.wait_converged(&mut daemon, Duration::from_secs(20));
    // The grace (3 s) keeps a NIC that edge-link is still bringing up from being reported.
    let arrived = |n: usize| wait_for(Duration::from_secs(20), || rx.count() >= n).is_some();
    assert!(arrived(1), "no link.nic_missing: {:?}", events(&rx));
    assert_eq!(events(&rx), [ev("link.nic_missing")]);

    // Plugged in (created in `lb`, its peer moved into the host namespace), with carrier.
    let (lb, host) = (
        lab.topo.ns("lb").name().to_owned(),
        lab.host().name().to_owned(),
    );
    edge_testkit::run_ok(
        "ip",
        [
            "-n", &lb, "link", "add", "eth0", "type", "veth", "peer", "name", "enp4s0f0", "netns",
            &host,
        ],
    );
    edge_testkit::run_ok("ip", ["-n", &lb, "link", "set", "eth0", "up"]);
    assert!(arrived(2), "no link.nic_present: {:?}", events(&rx));

    // The far end goes down: enp4s0f0 loses its carrier, then gets it back.
    edge_testkit::run_ok("ip", ["-n", &lb, "link", "set", "eth0", "down"]);
    assert!(arrived(3), "no link.down: {:?}", events(&rx));
    edge_testkit::run_ok("ip", ["-n", &lb, "link", "set", "eth0", "up"]);
    assert!(arrived(4), "no link.up: {:?}", events(&rx));

    // One more full run (as `edgectl link apply` asks): nothing new to report.
    let client = Client::new(
        Role::Link,
        edge_config::socket_path(lab.dir.path(), Role::Link),
    )
    .with_timeout(Duration::from_secs(10));
    let resp = runtime().block_on(client.request(Request::Apply { confirm_secs: None }));
    assert!(matches!(resp, Ok(Response::Done { .. })), "{resp:?}");
    assert_eq!(
        metric(&lab, "edge_notify_queue_length{target=\"hook\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &lab,
            "edge_notify_events_total{target=\"hook\",result=\"sent\"}"
        ),
        Some(4.0),
        "exactly the four events were sent"
    );
    assert_eq!(
        events(&rx),
        [
            ev("link.nic_missing"),
            ev("link.nic_present"),
            ev("link.down"),
            ev("link.up"),
        ]
    );
    let first = rx.received()[0].json().unwrap();
    assert_eq!(first["host"], "proliant");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["summary"], "enp4s0f0 (port of br1) does not exist");
    let out = daemon.stop().unwrap();
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("enp4s0f0 (port of br1) has no carrier"),
        "{log}"
    );
}
