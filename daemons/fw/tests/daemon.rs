//! The daemon repairs foreign edits of its table; a confirm-apply whose probe fails rolls
//! back to the previous tables byte for byte.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use edge_fw::apply::{self, Live, Options};
use edge_fw::confirm::{self, Outcome};
use edge_testkit::wait_for;

#[test]
fn a_failed_probe_rolls_a_confirm_apply_back() {
    let lab = common::lab();
    let cfg = common::reference();
    let (m, rs) = common::build(&cfg, Default::default());
    let host = lab.ns("host");
    let (m0, rs0) = (m.clone(), rs.clone());
    let before = host.run(move || {
        apply::apply(&m0, &rs0, Options::default()).expect("first apply");
        Live::read().expect("read")
    });
    // The new config adds a forward to a target nothing listens on: its probe fails.
    let text = std::fs::read_to_string(&cfg.path).expect("read");
    let text = format!(
        "{text}\n[[fw.forward]]\n# Nobody home.\nname = \"ghost\"\n# Protocol.\nproto = \"tcp\"\n# Port.\nport = 8443\n# Address.\naddress = \"192.198.0.30\"\n# Target.\nto = \"10.17.5.30\"\n"
    );
    let (m1, rs1) = common::build(&common::parse(&cfg.path, &text), Default::default());
    let (out, after) = host.run(move || {
        let probes = confirm::default_probes(&m1);
        let flag = Arc::new(AtomicBool::new(false));
        let out =
            confirm::apply_with_confirm(&m1, &rs1, Duration::from_millis(1500), &probes, &flag)
                .expect("confirm apply");
        (out, Live::read().expect("read"))
    });
    match &out {
        Outcome::RolledBack { failures } => {
            assert_eq!(failures.len(), 1, "{failures:?}");
            assert!(
                failures[0].contains("forward ghost -> 10.17.5.30:8443"),
                "{failures:?}"
            );
        }
        o => panic!("expected a rollback, got {o:?}"),
    }
    assert_eq!(before.edge, after.edge, "inet edge restored byte for byte");
    assert_eq!(
        before.state, after.state,
        "inet edge_state restored (the new counter removed)"
    );
    // With every probe passing, the same kind of apply confirms by itself.
    let text2 = format!(
        "{}\n[[fw.forward]]\n# Echo.\nname = \"echo\"\n# Protocol.\nproto = \"tcp\"\n# Port.\nport = 8080\n# Address.\naddress = \"192.198.0.30\"\n# Target.\nto = \"10.17.5.30\"\n",
        std::fs::read_to_string(&cfg.path).expect("read")
    );
    let (m2, rs2) = common::build(&common::parse(&cfg.path, &text2), Default::default());
    let (out2, live2) = host.run(move || {
        let probes = confirm::default_probes(&m2);
        let flag = Arc::new(AtomicBool::new(false));
        let o = confirm::apply_with_confirm(&m2, &rs2, Duration::from_secs(3), &probes, &flag)
            .expect("confirm");
        (o, Live::read().expect("read"))
    });
    assert_eq!(out2, Outcome::ConfirmedByProbes);
    assert!(live2.edge.expect("edge").contains("tcp . 8080"));
}

#[test]
fn the_daemon_repairs_a_foreign_nft_edit_of_its_table() {
    let lab = common::lab();
    let cfg = common::reference();
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(&cfg.path)
        .expect("read")
        .replace(
            "state_dir = \"/var/lib/edge\"",
            &format!("state_dir = \"{}\"", dir.path().display()),
        )
        .replace(
            "runtime_dir = \"/run/edge\"",
            &format!("runtime_dir = \"{}\"", dir.path().display()),
        );
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, &text).expect("write config");
    let (_, rs) = common::build(&common::parse(&path, &text), Default::default());
    let host = lab.ns("host");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edge-fw"));
    cmd.args(["--config", &path.to_string_lossy(), "--log-format", "text"]);
    let mut daemon = host.spawn("edge-fw", cmd);
    let rs_a = rs.clone();
    let converged = |host: &edge_testkit::Netns, rs: &edge_fw::ir::Ruleset| {
        let rs = rs.clone();
        host.run(move || {
            Live::read()
                .map(|l| l.diff(&rs).is_empty())
                .unwrap_or(false)
        })
    };
    assert!(
        wait_for(Duration::from_secs(10), || converged(host, &rs_a)).is_some(),
        "the daemon applied the ruleset; log: {:?}",
        daemon.is_running()
    );
    // Someone edits our table by hand.
    host.exec(
        "nft",
        [
            "add", "rule", "inet", "edge", "input", "tcp", "dport", "9999", "accept",
        ],
    );
    let took = wait_for(Duration::from_secs(5), || converged(host, &rs));
    assert!(took.is_some(), "the foreign rule was not removed");
    // Metrics: one drift repair, exported on the namespaced loopback.
    let ok = wait_for(Duration::from_secs(3), || {
        common::curl(host, "http://127.0.0.1:9853/metrics")
            .is_some_and(|m| m.lines().any(|l| l == "edge_fw_drift_repairs_total 1"))
    });
    let metrics = common::curl(host, "http://127.0.0.1:9853/metrics").unwrap_or_default();
    assert!(ok.is_some(), "metrics:\n{metrics}");
    assert!(
        metrics.contains("edge_fw_applies_total{result=\"changed\"}"),
        "{metrics}"
    );
    daemon.stop();
}
