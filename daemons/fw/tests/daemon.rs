//! The daemon repairs foreign edits of its table and restores it after `nft flush ruleset`;
//! a confirm-apply whose probe fails rolls
//! back to the previous tables byte for byte, also when only real packets (the replica)
//! show that SSH from the admin network is dropped.

mod common;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use edge_fw::apply::Options;
use edge_fw::confirm::{self, Outcome, Probe};
use edge_fw::nfnl::Socket;
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
        common::apply(&m0, &rs0, Options::default()).expect("first apply");
        common::read_live_checked()
    });
    // The new config adds a forward to a target nothing listens on: its probe fails.
    let text = std::fs::read_to_string(&cfg.path).expect("read");
    let text = format!(
        "{text}\n[[fw.forward]]\n# Nobody home.\nname = \"ghost\"\n# Protocol.\nproto = \"tcp\"\n# Port.\nport = 8443\n# Address.\naddress = \"192.198.0.30\"\n# Target.\nto = \"10.17.5.30\"\n"
    );
    let (m1, rs1) = common::build(&common::parse(&cfg.path, &text), Default::default());
    let (out, after) = host.run(move || {
        let probes = confirm::default_probes(&common::here(&m1));
        let flag = Arc::new(AtomicBool::new(false));
        let out = confirm::apply_with_confirm(
            &Socket::open().expect("socket"),
            &m1,
            &rs1,
            Duration::from_millis(1500),
            &probes,
            &flag,
        )
        .expect("confirm apply");
        (out, common::read_live_checked())
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
        let probes = confirm::default_probes(&common::here(&m2));
        let flag = Arc::new(AtomicBool::new(false));
        let o = confirm::apply_with_confirm(
            &Socket::open().expect("socket"),
            &m2,
            &rs2,
            Duration::from_secs(3),
            &probes,
            &flag,
        )
        .expect("confirm");
        (o, common::read_live_checked())
    });
    assert_eq!(
        out2,
        Outcome::ConfirmedByProbes,
        "every probe ran (the replica too) and passed"
    );
    assert!(
        common::our_view(&live2)
            .iter()
            .any(|l| l.starts_with("elem edge/fwd4") && l.contains("tcp . 8080")),
        "the new forward is live"
    );
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

/// The reference config with its state and runtime directories in `dir`, written to
/// `dir/edge.toml`: the path and the text.
fn daemon_config(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let text = std::fs::read_to_string(common::reference_path())
        .expect("read")
        .replace(
            "state_dir = \"/var/lib/edge\"",
            &format!("state_dir = \"{}\"", dir.display()),
        )
        .replace(
            "runtime_dir = \"/run/edge\"",
            &format!("runtime_dir = \"{}\"", dir.display()),
        );
    // The origin lock's list is never fetched from Cloudflare in a test: a closed local
    // port (the daemon keeps the shipped list and says the fetch failed).
    let text = format!("{text}\n[fw.origin_lock]\nurl = \"http://127.0.0.1:9/client/v4/ips\"\n");
    let path = dir.join("edge.toml");
    std::fs::write(&path, &text).expect("write config");
    (path, text)
}

/// True when the live tables in `host` match `rs`.
fn converged(host: &edge_testkit::Netns, rs: &edge_fw::ir::Ruleset) -> bool {
    let rs = rs.clone();
    host.run(move || common::converged(&rs))
}

// One scenario read top to bottom (a hand edit, then a flush, against one running daemon):
// its steps share the namespace, the daemon, the webhook receiver and the compiled ruleset;
// split, each step would take them all as parameters.
#[allow(clippy::too_many_lines)]
fn repairs_foreign_changes(pid_namespace: bool) {
    let lab = common::lab();
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, text) = daemon_config(dir.path());
    // The operator is told of each repair: a webhook on the host namespace's loopback.
    let rx = lab
        .ns("host")
        .run(|| edge_testkit::receiver::Receiver::start_local(edge_testkit::receiver::Answer::Ok));
    let text = format!(
        "{text}\n[notify]\nhost = \"proliant\"\n[[notify.webhook]]\nname = \"hook\"\nurl = \"{}\"\nevents = [\"fw.*\"]\n",
        rx.url("/hook")
    );
    std::fs::write(&path, &text).expect("write config");
    let (_, rs) = common::build(&common::parse(&path, &text), Default::default());
    let host = lab.ns("host");
    let bin = env!("CARGO_BIN_EXE_edge-fw");
    // An empty PATH (`env PATH=`): edge-fw runs no program (no nft, no ip), so it applies,
    // verifies and repairs all the same.
    let mut cmd = std::process::Command::new("/usr/bin/env");
    cmd.arg("PATH=");
    if pid_namespace {
        cmd.args([
            "/usr/bin/unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child=SIGTERM",
        ]);
    }
    cmd.arg(bin);
    cmd.args(["--config", &path.to_string_lossy(), "--log-format", "text"]);
    let mut daemon = host.spawn("edge-fw", cmd);
    assert!(
        wait_for(Duration::from_secs(10), || converged(host, &rs)).is_some(),
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
    // The webhook got exactly the two repairs, each naming its author.
    let events: Vec<serde_json::Value> = rx.received().iter().filter_map(|r| r.json()).collect();
    assert_eq!(events.len(), 2, "{events:#?}");
    for e in &events {
        assert_eq!(e["kind"], "fw.drift_repaired", "{e}");
        assert_eq!(e["source"], "edge-fw", "{e}");
        assert!(
            e["data"]["by"]
                .as_str()
                .is_some_and(|b| b.starts_with("nft[")),
            "{e}"
        );
    }
    assert!(
        events[1]["data"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("deleted")),
        "{events:#?}"
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
        "the flush took the restore path:\n{log}"
    );
}

/// The handle of table `inet edge` as `nft -j` reports it: a replace creates a new table
/// (a new handle), an element-only update does not.
fn table_handle(host: &edge_testkit::Netns) -> u64 {
    let out = host.exec("nft", ["-j", "list", "table", "inet", "edge"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j");
    v["nftables"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find_map(|o| o.get("table")?.get("handle")?.as_u64())
        })
        .expect("table handle")
}

/// Sends `msg` on an open connection to the echo service and reads it back.
fn echo(s: &mut std::net::TcpStream, msg: &[u8]) -> Vec<u8> {
    use std::io::{Read as _, Write as _};
    s.write_all(msg).expect("write");
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).expect("read");
    back
}

#[test]
fn a_forward_without_an_address_follows_its_interface_by_an_element_only_update() {
    let lab = common::lab();
    let host = lab.ns("host");
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, text) = daemon_config(dir.path());
    // A forward that takes its address from br-api (no `address`).
    let text = format!(
        "{text}\n[[fw.forward]]\nname = \"echo\"\nproto = \"tcp\"\nport = 7000\non = [\"br-api\"]\nto = \"10.17.5.30\"\nto_port = 8080\n"
    );
    std::fs::write(&path, &text).expect("write config");
    let cfg = common::parse(&path, &text);
    let (m, rs) = host.run({
        let cfg = cfg.clone();
        move || {
            let addrs = edge_fw::observe::interface_addresses().expect("addresses");
            common::build(&cfg, addrs)
        }
    });
    assert_eq!(m.forward_addresses.last().map(Vec::len), Some(1));
    let mut cmd = std::process::Command::new("/usr/bin/env");
    cmd.args(["PATH=", env!("CARGO_BIN_EXE_edge-fw")]).args([
        "--config",
        &path.to_string_lossy(),
        "--log-format",
        "text",
    ]);
    let mut daemon = host.spawn("edge-fw", cmd);
    assert!(
        wait_for(Duration::from_secs(10), || converged(host, &rs)).is_some(),
        "the daemon applied the ruleset"
    );
    let before = table_handle(host);
    // A connection through the forward on the address br-api has now.
    let mut live = lab.ns("inet").run(|| {
        std::net::TcpStream::connect_timeout(
            &"192.198.0.30:7000".parse().expect("addr"),
            Duration::from_secs(5),
        )
        .expect("connect through the forward")
    });
    live.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(echo(&mut live, b"before"), b"before");
    // br-api gets a second address: the forward follows it, by elements only.
    host.ip(["addr", "add", "192.198.0.31/24", "dev", "br-api"]);
    let arrives = |addr: &'static str| {
        move || {
            std::net::TcpStream::connect_timeout(
                &addr.parse().expect("addr"),
                Duration::from_millis(500),
            )
            .ok()
        }
    };
    let mut second = None;
    wait_for(Duration::from_secs(5), || {
        second = lab.ns("inet").run(arrives("192.198.0.31:7000"));
        second.is_some()
    });
    let mut second = second.expect("the forward follows the new address within 5 s");
    second
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(echo(&mut second, b"second"), b"second");
    assert_eq!(
        echo(&mut live, b"during"),
        b"during",
        "the first connection flows on"
    );
    // And follows its removal.
    host.ip(["addr", "del", "192.198.0.31/24", "dev", "br-api"]);
    let (m2, rs2) = host.run(move || {
        let addrs = edge_fw::observe::interface_addresses().expect("addresses");
        common::build(&cfg, addrs)
    });
    assert_eq!(m2.forward_addresses.last().map(Vec::len), Some(1));
    assert!(
        wait_for(Duration::from_secs(5), || converged(host, &rs2)).is_some(),
        "the removed address left the forward's keys"
    );
    assert_eq!(
        echo(&mut live, b"after!"),
        b"after!",
        "the first connection flows on"
    );
    assert_eq!(
        table_handle(host),
        before,
        "table inet edge was never replaced (element-only updates)"
    );
    assert!(
        applies(host, "elements") >= 2,
        "two element-only updates counted"
    );
    drop(second);
    drop(live);
    let out = daemon.stop().expect("daemon output");
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("interface addresses changed: the forwards follow them"),
        "{log}"
    );
}

#[test]
fn a_confirm_apply_dropping_ssh_from_the_admin_network_is_rolled_back_though_the_symbolic_check_passes()
 {
    let lab = common::lab();
    let host = lab.ns("host");
    let (m0, rs0) = common::build(&common::dual_stack(), Default::default());
    let before = host.run(move || {
        common::apply(&m0, &rs0, Options::default()).expect("first apply");
        common::read_live_checked()
    });
    // SSH limited to the WireGuard interface: the admin LAN arrives on enp4s0f1 (never named
    // in [fw]), so its SSH is dropped. The symbolic check does not know which interface a
    // network arrives on; it finds wg0 admitting 192.168.1.1 and passes.
    let text = common::wg0_only_ssh(&common::dual_stack_text());
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
        let probes = confirm::default_probes(&common::here(&m));
        let flag = Arc::new(AtomicBool::new(false));
        let t = std::time::Instant::now();
        let out = confirm::apply_with_confirm(
            &Socket::open().expect("socket"),
            &m,
            &rs,
            window,
            &probes,
            &flag,
        )
        .expect("confirm apply");
        (out, common::read_live_checked(), probes, t.elapsed())
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
        common::apply(&m, &rs, Options::default())
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

/// `edgectl --config PATH ARGS`: its exit status and stdout.
fn edgectl(path: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(edge_testkit::binary("edgectl"))
        .arg("--config")
        .arg(path)
        .args(args)
        .output()
        .expect("run edgectl");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `edgectl fw status --json`, parsed.
fn fw_status(path: &std::path::Path) -> edge_ipc::DaemonStatus {
    let (ok, out) = edgectl(path, &["--json", "fw", "status"]);
    assert!(ok, "edgectl fw status: {out}");
    match serde_json::from_str::<edge_ipc::Response>(&out) {
        Ok(edge_ipc::Response::Status(s)) => *s,
        r => panic!("not a status: {r:?}\n{out}"),
    }
}

/// The value of the `edge_fw_applies_total{result="RESULT"}` counter, 0 when absent.
fn applies(host: &edge_testkit::Netns, result: &str) -> u64 {
    let prefix = format!("edge_fw_applies_total{{result=\"{result}\"}} ");
    common::curl(host, "http://127.0.0.1:9853/metrics")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

/// The shipped unit leaves edge-fw without CAP_SYS_ADMIN: the replica cannot run and the
/// remaining probes cannot see a lockout. `edgectl fw apply --confirm 3s` of SSH on wg0 only
/// (the admin LAN arrives on enp4s0f1) must say that it waits for `edgectl fw confirm`, and
/// with none, the previous table comes back and status shows the rollback. A second
/// confirm-apply is kept by `edgectl fw confirm`.
#[test]
// One scenario read top to bottom (a confirm-apply nobody confirms, then one the admin
// confirms): both steps share the daemon, its configuration file and the two rulesets.
#[allow(clippy::too_many_lines)]
fn without_cap_sys_admin_a_confirm_apply_waits_for_edgectl_fw_confirm() {
    let lab = common::lab();
    let host = lab.ns("host");
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, text) = daemon_config(dir.path());
    let (_, rs_old) = common::build(&common::parse(&path, &text), Default::default());
    let new_text = common::wg0_only_ssh(&text);
    let (m_new, rs_new) = common::build(&common::parse(&path, &new_text), Default::default());
    assert_eq!(
        safety::check(&m_new, &rs_new),
        Ok(()),
        "the symbolic check misses it"
    );
    // The daemon without CAP_SYS_ADMIN in any set; root's exec cannot get it back from the
    // bounding set.
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin"])
        .arg(env!("CARGO_BIN_EXE_edge-fw"))
        .args(["--config", &path.to_string_lossy(), "--log-format", "text"]);
    let mut daemon = host.spawn("edge-fw", cmd);
    assert!(
        wait_for(Duration::from_secs(10), || converged(host, &rs_old)).is_some(),
        "the daemon applied the ruleset (running: {})",
        daemon.is_running()
    );
    let pid = fw_status(&path).pid;
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
        let caps = proc_status
            .lines()
            .find_map(|l| l.strip_prefix(set))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .expect("capability set");
        assert_eq!(caps & (1 << 21), 0, "edge-fw has CAP_SYS_ADMIN in {set}");
    }
    let before = host.run(common::read_live_checked);

    // 1. Nobody confirms: the previous table comes back when the window ends.
    std::fs::write(&path, &new_text).expect("write config");
    let (ok, reply) = edgectl(&path, &["fw", "apply", "--confirm", "3s"]);
    let replied = std::time::Instant::now();
    assert!(ok, "{reply}");
    let rolled_back = wait_for(Duration::from_secs(15), || {
        applies(host, "rolled_back") == 1
    });
    assert!(
        rolled_back.is_some(),
        "the unconfirmed apply was not rolled back (confirmed: {}); reply: {reply}",
        applies(host, "confirmed")
    );
    assert!(
        replied.elapsed() >= Duration::from_secs(3),
        "rolled back before the window ended"
    );
    assert_eq!(applies(host, "confirmed"), 0);
    let after = host.run(common::read_live_checked);
    assert_eq!(before.edge, after.edge, "inet edge restored byte for byte");
    assert_eq!(before.state, after.state, "inet edge_state restored");
    assert!(
        reply.contains("cannot create a private network namespace for the replica: Operation not permitted")
            && reply.contains("edge-fw has no CAP_SYS_ADMIN")
            && reply.contains("this apply does not confirm itself: run `edgectl fw confirm` within 3s, else the previous ruleset comes back"),
        "the reply does not say the apply waits for a human: {reply}"
    );
    let st = fw_status(&path);
    assert!(!st.detail.fw().unwrap().pending_confirm, "{:?}", st.detail);
    let last = st
        .recent_errors
        .last()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(
        last.starts_with("confirm-apply rolled back: replica probe not run")
            && last.contains("none came within 3s"),
        "status: {last}"
    );
    assert!(
        converged(host, &rs_old),
        "the desired state is the previous ruleset again"
    );

    // 2. The admin confirms: the new ruleset stays.
    let (ok, reply) = edgectl(&path, &["fw", "apply", "--confirm", "60s"]);
    assert!(ok && reply.contains("does not confirm itself"), "{reply}");
    assert!(
        wait_for(Duration::from_secs(10), || converged(host, &rs_new)).is_some(),
        "the new ruleset went live"
    );
    assert!(fw_status(&path).detail.fw().unwrap().pending_confirm);
    assert_eq!(applies(host, "confirmed"), 0, "confirmed by itself");
    let (ok, reply) = edgectl(&path, &["fw", "confirm"]);
    assert!(ok && reply.trim() == "confirmed", "{reply}");
    assert!(
        wait_for(Duration::from_secs(5), || applies(host, "confirmed") == 1).is_some(),
        "the confirm was not counted"
    );
    assert!(!fw_status(&path).detail.fw().unwrap().pending_confirm);
    assert!(converged(host, &rs_new), "the confirmed ruleset stays");
    let out = daemon.stop().expect("daemon output");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains(
                "this apply does not confirm itself: run `edgectl fw confirm` within 3s"
            )),
        "no warning logged:\n{log}"
    );
}

/// The v4 and v6 prefixes of the `cf4`/`cf6` sets in `host`, as nft -j shows them (checked
/// against the netlink read-back).
fn live_ranges(host: &edge_testkit::Netns) -> Vec<String> {
    let live = host.run(common::read_live_checked);
    common::our_view(&live)
        .into_iter()
        .filter_map(|l| {
            l.strip_prefix("elem edge_state/cf4 ")
                .or_else(|| l.strip_prefix("elem edge_state/cf6 "))
                .map(str::to_owned)
        })
        .collect()
}

/// Cloudflare's list, fetched from a local test server by `edgectl fw origin-lock refresh`:
/// a small change goes in force at once by elements only (the state table is never
/// replaced) and is kept for the next start; a list that replaces more than half of the
/// ranges is held until a second fetch gives the same answer; a list with a private prefix
/// is refused and the one in force stays.
#[test]
fn the_origin_lock_ranges_are_refreshed_by_elements_only_and_validated() {
    let lab = common::lab();
    let host = lab.ns("host");
    let server = host.run(|| edge_testkit::cloudflare::CfServer::start_local("unused"));
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, text) = daemon_config(dir.path());
    let text = text.replace(
        "url = \"http://127.0.0.1:9/client/v4/ips\"",
        &format!("url = \"{}/ips\"", server.url()),
    );
    std::fs::write(&path, &text).expect("write config");
    let (_, rs) = common::build(&common::parse(&path, &text), Default::default());
    // The server answers the shipped list until the test changes it.
    server.set_ips(
        edge_config::fw::CLOUDFLARE_V4,
        edge_config::fw::CLOUDFLARE_V6,
    );
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_edge-fw"));
    cmd.args(["--config", &path.to_string_lossy(), "--log-format", "text"]);
    let mut daemon = host.spawn("edge-fw", cmd);
    assert!(
        wait_for(Duration::from_secs(10), || converged(host, &rs)).is_some(),
        "the daemon applied the shipped ranges"
    );
    assert!(live_ranges(host).contains(&"173.245.48.0/20".to_owned()));
    // With the shipped list in force the daemon checks Cloudflare's soon after start (then
    // once a day): wait for that check, so the refreshes below are the only fetches.
    let checked = || {
        let st = fw_status(&path);
        st.detail
            .fw()
            .and_then(|s| s.origin_lock.as_ref())
            .is_some_and(|l| l.checked_at > 0)
    };
    assert!(
        wait_for(Duration::from_secs(20), checked).is_some(),
        "the first check of Cloudflare's list after start"
    );
    assert_eq!(server.ips_served(), 1);
    let before = table_handle_of(host, "edge_state");
    let refresh = || edgectl(&path, &["fw", "origin-lock", "refresh"]);

    // Cloudflare's list gains 45.64.64.0/22 and loses 131.0.72.0/22: in force at once.
    let mut v4: Vec<&str> = edge_config::fw::CLOUDFLARE_V4
        .iter()
        .copied()
        .filter(|n| *n != "131.0.72.0/22")
        .collect();
    v4.push("45.64.64.0/22");
    server.set_ips(&v4, edge_config::fw::CLOUDFLARE_V6);
    let (ok, out) = refresh();
    assert!(
        ok && out.contains("new ranges in force: 15 IPv4 and 7 IPv6"),
        "{out}"
    );
    let live = live_ranges(host);
    assert!(live.contains(&"45.64.64.0/22".to_owned()), "{live:?}");
    assert!(!live.contains(&"131.0.72.0/22".to_owned()), "{live:?}");
    assert_eq!(
        table_handle_of(host, "edge_state"),
        before,
        "inet edge_state was updated in place"
    );
    assert!(applies(host, "elements") >= 1, "an element-only update");
    let st = fw_status(&path);
    let lock: edge_ipc::fw::Status = st.detail.fw().expect("fw status").clone();
    let lock = lock.origin_lock.expect("origin lock status");
    assert_eq!((lock.origin.as_str(), lock.v4, lock.v6), ("fetched", 15, 7));
    let kept = edge_fw::origin::load_cache(&edge_fw::origin::cache_path(dir.path()))
        .expect("the list is kept for the next start");
    assert!(kept.v4.iter().any(|n| n.to_string() == "45.64.64.0/22"));

    // A list that replaces everything: held once, in force when it comes again.
    server.set_ips(&["198.41.128.0/17"], &["2a06:98c0::/29"]);
    let (ok, out) = refresh();
    assert!(ok && out.contains("held until the next fetch"), "{out}");
    assert!(
        live_ranges(host).contains(&"45.64.64.0/22".to_owned()),
        "still the old list"
    );
    let (ok, out) = refresh();
    assert!(
        ok && out.contains("new ranges in force: 1 IPv4 and 1 IPv6"),
        "{out}"
    );
    assert_eq!(live_ranges(host), ["198.41.128.0/17", "2a06:98c0::/29"]);

    // A list with a private prefix is refused; the one in force stays.
    server.set_ips(&["10.0.0.0/8"], &["2400:cb00::/32"]);
    let (ok, out) = refresh();
    assert!(
        !ok && out.contains("10.0.0.0/8 is not a global prefix"),
        "{out}"
    );
    assert_eq!(live_ranges(host), ["198.41.128.0/17", "2a06:98c0::/29"]);
    assert_eq!(server.ips_served(), 5);
    daemon.stop();
}

/// The handle of table `inet NAME` as `nft -j` reports it.
fn table_handle_of(host: &edge_testkit::Netns, name: &str) -> u64 {
    let out = host.exec("nft", ["-j", "list", "table", "inet", name]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j");
    v["nftables"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find_map(|o| o.get("table")?.get("handle")?.as_u64())
        })
        .expect("table handle")
}
