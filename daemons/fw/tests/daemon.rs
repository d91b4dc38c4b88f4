//! The daemon repairs foreign edits of its table and restores it after `nft flush ruleset`;
//! a confirm-apply whose probe fails rolls
//! back to the previous tables byte for byte, also when only real packets (the replica)
//! show that SSH from the admin network is dropped.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use edge_fw::apply::{self, Live, Options};
use edge_fw::confirm::{self, Outcome, Probe};
use edge_fw::safety;
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
    assert_eq!(
        out2,
        Outcome::ConfirmedByProbes {
            skipped: Vec::new()
        },
        "every probe ran (the replica too) and passed"
    );
    assert!(live2.edge.expect("edge").contains("tcp . 8080"));
}

#[test]
fn the_daemon_repairs_a_foreign_nft_edit_of_its_table() {
    repairs_foreign_changes(false);
}

/// In a PID namespace (a container) the thread id the kernel reports for a commit is the
/// global one, which the daemon cannot see: its own commits must still be known as its own
/// (by the netlink port), or each one would look like a foreign deletion and be "repaired"
/// in a loop. Same scenario, the daemon in a PID namespace of its own.
#[test]
fn in_a_pid_namespace_the_daemon_knows_its_own_commits() {
    repairs_foreign_changes(true);
}

fn repairs_foreign_changes(pid_namespace: bool) {
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
    let bin = env!("CARGO_BIN_EXE_edge-fw");
    let mut cmd = if pid_namespace {
        let mut c = std::process::Command::new("unshare");
        c.args([
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child=SIGTERM",
            bin,
        ]);
        c
    } else {
        std::process::Command::new(bin)
    };
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
    // The startup apply (and later the repairs) are the daemon's own commits: never drift.
    std::thread::sleep(Duration::from_millis(700));
    let idle = common::curl(host, "http://127.0.0.1:9853/metrics").unwrap_or_default();
    assert!(
        idle.lines().any(|l| l == "edge_fw_drift_repairs_total 0"),
        "the daemon took its own commit for drift:\n{idle}"
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
    // `nft flush ruleset` (restarting nftables.service) deletes both tables and a foreign
    // one: ours come back, with their contents, from the nf_tables events alone.
    let libvirt = "table ip libvirt_network {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t}\n}\n";
    let mut c = std::process::Command::new("ip");
    c.args(["netns", "exec", host.name(), "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped());
    let mut child = c.spawn().expect("nft");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), libvirt.as_bytes())
        .expect("write");
    assert!(child.wait().expect("nft").success());
    host.exec("nft", ["flush", "ruleset"]);
    let took = wait_for(Duration::from_secs(5), || converged(host, &rs));
    assert!(took.is_some(), "the flushed tables were not restored");
    let tables = String::from_utf8_lossy(&host.exec("nft", ["list", "tables"]).stdout).into_owned();
    assert!(
        !tables.contains("libvirt_network"),
        "a foreign table is not ours to restore: {tables}"
    );
    // Exactly two repairs, and they stay two: the daemon's own commits (which delete and
    // re-add inet edge too) are not taken for drift.
    let repairs = || {
        common::curl(host, "http://127.0.0.1:9853/metrics")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("edge_fw_drift_repairs_total "))
            .map(str::to_owned)
    };
    let ok = wait_for(Duration::from_secs(3), || {
        repairs().as_deref() == Some("edge_fw_drift_repairs_total 2")
    });
    assert!(ok.is_some(), "{:?}", repairs());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(repairs().as_deref(), Some("edge_fw_drift_repairs_total 2"));
    let out = daemon.stop().expect("daemon output");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Both repairs name who made the change: the nft process, not "unknown".
    let named = |what: &str| {
        log.lines()
            .any(|l| l.contains(what) && l.contains("by=nft["))
    };
    assert!(
        named("table inet edge was changed by someone else: repairing"),
        "the foreign edit was repaired and its author named:\n{log}"
    );
    assert!(
        named("table inet edge was deleted by someone else: restoring"),
        "the flush took the no-read restore path:\n{log}"
    );
}

#[test]
fn a_confirm_apply_dropping_ssh_from_the_admin_network_is_rolled_back_though_the_symbolic_check_passes()
 {
    let lab = common::lab();
    let host = lab.ns("host");
    let (m0, rs0) = common::build(&common::dual_stack(), Default::default());
    let before = host.run(move || {
        apply::apply(&m0, &rs0, Options::default()).expect("first apply");
        Live::read().expect("read")
    });
    // SSH limited to the WireGuard interface: the admin LAN arrives on enp4s0f1 (never named
    // in [fw]), so its SSH is dropped. The symbolic check does not know which interface a
    // network arrives on; it finds wg0 admitting 192.168.1.1 and passes.
    let text = common::dual_stack_text().replacen(
        "from = [\"admin\", \"wireguard\"]\n",
        "from = [\"admin\", \"wireguard\"]\ninterfaces = [\"wg0\"]\n",
        1,
    );
    assert_ne!(text, common::dual_stack_text());
    let (m1, rs1) = common::build(
        &common::parse(&common::reference_path(), &text),
        Default::default(),
    );
    assert_eq!(
        safety::check(&m1, &rs1),
        Ok(()),
        "the symbolic check misses it"
    );
    let window = Duration::from_secs(30);
    let (m, rs) = (m1.clone(), rs1.clone());
    let (out, after, probes, took) = host.run(move || {
        let probes = confirm::default_probes(&m);
        let flag = Arc::new(AtomicBool::new(false));
        let t = std::time::Instant::now();
        let out =
            confirm::apply_with_confirm(&m, &rs, window, &probes, &flag).expect("confirm apply");
        (out, Live::read().expect("read"), probes, t.elapsed())
    });
    // The probes were derived from the kernel's routes: the admin LAN through enp4s0f1 and
    // the WireGuard network through wg0, each to the host's address there.
    let Some(Probe::Replica { paths }) = probes.iter().find(|p| matches!(p, Probe::Replica { .. }))
    else {
        panic!("no replica probe: {probes:?}");
    };
    let whats: Vec<&str> = paths.iter().map(|p| p.what.as_str()).collect();
    for w in [
        "SSH tcp/22 from 192.168.1.2 (network 192.168.1.0/24) on enp4s0f1 to 192.168.1.1",
        "SSH tcp/22 from fd00:1::2 (network fd00:1::/64) on enp4s0f1 to fd00:1::1",
        "SSH tcp/22 from 10.17.9.2 (network 10.17.9.0/24) on wg0 to 10.17.9.1",
        "SSH tcp/22 from fd17:9::2 (network fd17:9::/64) on wg0 to fd17:9::1",
        "WireGuard udp/51820 from 198.51.100.7 on br-api to 192.198.0.30",
        "WireGuard udp/51820 from 2001:db8:ffff::7 on br-api to 2001:db8:c6::30",
    ] {
        assert!(whats.contains(&w), "{w} missing from {whats:#?}");
    }
    match &out {
        Outcome::RolledBack { failures } => {
            assert_eq!(failures.len(), 2, "{failures:#?}");
            assert!(
                failures.iter().all(|f| f.contains("on enp4s0f1")
                    && f.contains("is not admitted by the new ruleset")),
                "{failures:#?}"
            );
        }
        o => panic!("expected a rollback, got {o:?}"),
    }
    assert!(
        took < window,
        "a ruleset-only failure rolls back at once, not after the window"
    );
    assert_eq!(before.edge, after.edge, "inet edge restored byte for byte");
    assert_eq!(before.state, after.state, "inet edge_state restored");
    assert!(
        common::curl_retry(lab.ns("admin"), "http://192.168.1.1:22/").is_some(),
        "SSH from the admin LAN works again"
    );
    // The replica was right: applied without confirmation, the same ruleset cuts the admin
    // LAN's SSH (both families) while the WireGuard network keeps it.
    let (m, rs) = (m1.clone(), rs1.clone());
    host.run(move || {
        apply::apply(&m, &rs, Options::default())
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .expect("plain apply");
    assert_eq!(
        common::curl(lab.ns("admin"), "http://192.168.1.1:22/"),
        None
    );
    assert_eq!(
        common::curl6(lab.ns("admin"), common::v6::HOST_ADMIN, 22),
        None
    );
    assert!(common::curl_retry(lab.ns("wgpeer"), "http://10.17.9.1:22/").is_some());
}
