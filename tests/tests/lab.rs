//! The lab as an end-to-end test: `edgectl lab up`, every `check` step passing, then
//! continuity while traffic runs — a TCP stream through the port-forward and one through the
//! WireGuard tunnel: each daemon reloaded with a changed config (0 connection resets),
//! edge-fw stopped (the forwards keep working), edge-link restarted (no link flap), edge-wg
//! restarted (the peer re-handshakes, the stream recovers; the gap is measured).
//! Finally `edgectl lab down` leaves no namespace behind.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use edge_e2e::{CF_EDGE_IP, StreamStats, assert_flowing, stream, stream_from};
use edge_testkit::{binary, require_root, wait_for};

struct LabGuard {
    name: String,
    /// Daemons this test started again (reaped after `lab down` stops them by PID).
    children: Mutex<Vec<std::process::Child>>,
}

impl LabGuard {
    fn edgectl(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["lab", "--name", &self.name, "--wg-if", "wge2e"];
        all.extend_from_slice(args);
        Command::new(binary("edgectl")).args(&all).output().unwrap()
    }
    fn dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/{}", self.name))
    }
    fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.name)
    }
    fn config(&self) -> PathBuf {
        self.dir().join("edge.toml")
    }
    fn pid_of(&self, label: &str) -> i32 {
        fs::read_to_string(self.dir().join("pids"))
            .unwrap()
            .lines()
            .rev()
            .find_map(|l| {
                let (l, p) = l.split_once(' ')?;
                (l == label).then(|| p.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no pid for {label}"))
    }
    /// Starts a daemon again in the host namespace, recorded so that `lab down` stops it.
    fn respawn(&self, role: &str) {
        let log =
            fs::File::create(self.dir().join(format!("logs/edge-{role}.restart.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns("host")])
            .arg(binary(&format!("edge-{role}")))
            .args(["--config", self.config().to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.dir().join("pids"))
            .unwrap();
        writeln!(f, "edge-{role} {}", child.id()).unwrap();
        self.children.lock().unwrap().push(child);
    }
    fn status(&self, role: &str) -> serde_json::Value {
        let out = Command::new(binary("edgectl"))
            .args([
                "--config",
                self.config().to_str().unwrap(),
                role,
                "status",
                "--json",
            ])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }
    fn wait_ready(&self, role: &str) {
        let ok = wait_for(Duration::from_secs(30), || {
            self.status(role)["status"]["ready"] == true || self.status(role)["ready"] == true
        });
        assert!(ok.is_some(), "edge-{role} did not become ready again");
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = self.edgectl(&["down"]);
        for mut c in self.children.lock().unwrap().drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

fn gone(pid: i32, timeout: Duration) -> bool {
    wait_for(timeout, || {
        !Path::new(&format!("/proc/{pid}")).exists()
            || fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    })
    .is_some()
}

#[test]
// One scenario read top to bottom: the reloads, edge-fw's stop and the restarts of edge-link
// and edge-wg act on one lab under the same two long-lived streams, whose counters must show
// no reset across all of them; split, each step would take the lab, both streams and their
// stats as parameters.
#[allow(clippy::too_many_lines)]
fn the_lab_passes_every_check_and_traffic_survives_reloads_and_restarts() {
    require_root();
    let lab = LabGuard {
        name: format!("edge-e2e{}", std::process::id()),
        children: Mutex::new(Vec::new()),
    };
    let up = lab.edgectl(&["up"]);
    assert!(
        up.status.success(),
        "lab up failed:\n{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );

    let check = lab.edgectl(&["check"]);
    let text = String::from_utf8_lossy(&check.stdout).into_owned();
    eprintln!("{text}");
    assert!(
        check.status.success(),
        "lab check failed:\n{text}\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let follow: f64 = text
        .lines()
        .find_map(|l| l.split(" after ").nth(1)?.strip_suffix(" s")?.parse().ok())
        .unwrap();
    eprintln!("figure: DDNS record followed the public address in {follow:.1} s");

    // `edgectl status --json` reports every daemon with its real state.
    let out = Command::new(binary("edgectl"))
        .args([
            "--config",
            lab.config().to_str().unwrap(),
            "status",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "edgectl status: not every daemon is ready:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["version"], 1);
    let daemon = |role: &str| -> serde_json::Value {
        st["daemons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["role"] == role)
            .cloned()
            .unwrap_or_else(|| panic!("no {role} in {st}"))
    };
    for role in ["link", "fw", "wg", "ddns"] {
        let d = daemon(role);
        assert_eq!(d["running"], true, "{d}");
        assert_eq!(d["status"]["ready"], true, "{d}");
        assert_eq!(d["status"]["configured"], true, "{d}");
    }
    assert_eq!(daemon("link")["status"]["detail"]["converged"], true);
    let fw = daemon("fw")["status"]["detail"].clone();
    assert_eq!(fw["forwards"], 3);
    // The checks sent requests through every forward: each one's counter saw them.
    for name in ["http", "https", "k8s-api"] {
        let f = fw["forward_list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no forward {name} in {fw}"));
        assert!(f["packets"].as_u64().unwrap() > 0, "{f}");
        assert!(f["bytes"].as_u64().unwrap() > 0, "{f}");
    }
    let wg = daemon("wg")["status"]["detail"].clone();
    assert!(
        wg["peers"][0]["latest_handshake"].as_u64().unwrap() > 0,
        "{wg}"
    );
    let ddns = daemon("ddns")["status"]["detail"].clone();
    assert_eq!(ddns["records"][0]["content"], "81.0.0.3", "{ddns}");
    assert_eq!(ddns["records"][0]["in_sync"], true, "{ddns}");

    // Restarting nftables.service flushes the whole ruleset: edge-fw puts its table back.
    let host = lab.ns("host");
    let flushed = Command::new("ip")
        .args(["netns", "exec", &host, "nft", "flush", "ruleset"])
        .status()
        .unwrap();
    assert!(flushed.success());
    let restored = wait_for(Duration::from_secs(5), || {
        Command::new("ip")
            .args([
                "netns", "exec", &host, "nft", "list", "table", "inet", "edge",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let restored = restored.expect("edge-fw did not restore its table after `nft flush ruleset`");
    eprintln!(
        "figure: table inet edge restored {} ms after `nft flush ruleset`",
        restored.as_millis()
    );

    // The check moved the public address to 81.0.0.3 and the remote followed it.
    let stop = Arc::new(AtomicBool::new(false));
    let fwd = Arc::new(Mutex::new(StreamStats::default()));
    let tun = Arc::new(Mutex::new(StreamStats::default()));
    // The forward's origin lock admits Cloudflare's ranges only: the visitor comes from
    // Cloudflare's edge.
    let t1 = stream_from(
        &lab.ns("inet"),
        Some(CF_EDGE_IP.parse().unwrap()),
        "81.0.0.3:80".parse().unwrap(),
        stop.clone(),
        fwd.clone(),
    );
    let t2 = stream(
        &lab.ns("remote"),
        "10.17.5.10:6443".parse().unwrap(),
        stop.clone(),
        tun.clone(),
    );
    assert_flowing("forward", &fwd, Duration::from_secs(10));
    assert_flowing("tunnel", &tun, Duration::from_secs(10));

    // 1. Each daemon reloaded with a changed config: no reset on either stream.
    let cfg = fs::read_to_string(lab.config()).unwrap();
    let changed = cfg
        .replacen("reconcile_interval = \"60s\"", "reconcile_interval = \"45s\"", 1)
        .replacen("verify_interval = \"1h\"", "verify_interval = \"2h\"", 1)
        .replacen(
            "# SSH only from the admin LAN and the WireGuard network.",
            "[[fw.input.allow]]\nname = \"node-exporter\"\nproto = \"tcp\"\nport = 9100\nfrom = [\"admin\"]\n\n# SSH only from the admin LAN and the WireGuard network.",
            1,
        )
        + "\n[[wg.peer]]\nname = \"phone\"\npublic_key = \"Ec/rMvGHRVI/+BJqbmET/fg+8vmgnl3z32BhCosLO08=\"\nallowed_ips = [\"10.17.9.3/32\"]\n";
    assert_ne!(changed, cfg);
    fs::write(lab.config(), &changed).unwrap();
    for role in ["link", "fw", "wg", "ddns"] {
        let out = Command::new(binary("edgectl"))
            .args(["--config", lab.config().to_str().unwrap(), role, "reload"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "reload of edge-{role}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            lab.status(role)["config_generation"],
            2,
            "edge-{role} took the new config"
        );
    }
    assert_flowing("forward (after reloads)", &fwd, Duration::from_secs(10));
    assert_flowing("tunnel (after reloads)", &tun, Duration::from_secs(10));
    eprintln!("figure: reloads of all four daemons: 0 connection resets");

    // 2. edge-fw stopped: the forwards keep working (its table stays), also for new connections.
    let fw_pid = lab.pid_of("edge-fw");
    signal(fw_pid, nix::sys::signal::Signal::SIGTERM);
    assert!(
        gone(fw_pid, Duration::from_secs(10)),
        "edge-fw did not stop"
    );
    assert_flowing("forward (edge-fw stopped)", &fwd, Duration::from_secs(10));
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("inet"),
            "curl",
            "-sS",
            "--max-time",
            "3",
            "--interface",
            CF_EDGE_IP,
            "http://81.0.0.3:443/",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("10.17.5.30:443 answered"),
        "a new connection through the forward failed with edge-fw stopped"
    );
    lab.respawn("fw");
    lab.wait_ready("fw");
    eprintln!("figure: edge-fw stopped: forwards kept working (old and new connections)");

    // 3. edge-link restarted: no link event at all (it finds everything converged).
    let mut monitor = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("host"),
            "ip",
            "-o",
            "monitor",
            "link",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_millis(300));
    let link_pid = lab.pid_of("edge-link");
    signal(link_pid, nix::sys::signal::Signal::SIGTERM);
    assert!(gone(link_pid, Duration::from_secs(10)));
    lab.respawn("link");
    lab.wait_ready("link");
    thread::sleep(Duration::from_secs(1));
    monitor.kill().unwrap();
    let mut events = String::new();
    monitor
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut events)
        .unwrap();
    let _ = monitor.wait();
    let flaps: Vec<&str> = events.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        flaps.is_empty(),
        "edge-link restart caused link events: {flaps:#?}"
    );
    assert_flowing(
        "forward (edge-link restarted)",
        &fwd,
        Duration::from_secs(10),
    );
    eprintln!("figure: edge-link restart: {} link events", flaps.len());

    // 4. edge-wg restarted: the peer re-handshakes and the stream recovers.
    let wg_pid = lab.pid_of("edge-wg");
    tun.lock().unwrap().max_gap = Duration::ZERO;
    signal(wg_pid, nix::sys::signal::Signal::SIGTERM);
    assert!(gone(wg_pid, Duration::from_secs(10)));
    lab.respawn("wg");
    lab.wait_ready("wg");
    assert_flowing("tunnel (edge-wg restarted)", &tun, Duration::from_secs(90));
    let gap = tun.lock().unwrap().max_gap;
    eprintln!(
        "figure: edge-wg restart: the tunnel stream survived (no reset); longest pause in its echoes {:.1} s",
        gap.as_secs_f64()
    );

    stop.store(true, Ordering::Relaxed);
    t1.join().unwrap();
    t2.join().unwrap();
    let (f, t) = (fwd.lock().unwrap().clone(), tun.lock().unwrap().clone());
    assert!(f.errors.is_empty() && t.errors.is_empty(), "{f:?} {t:?}");
    eprintln!(
        "figure: forward stream {} round trips, tunnel stream {} round trips",
        f.round_trips, t.round_trips
    );

    let down = lab.edgectl(&["down"]);
    assert!(down.status.success());
    let left: Vec<String> = fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !left.iter().any(|n| n.starts_with(&lab.name)),
        "namespaces left behind: {left:?}"
    );
    assert!(!lab.dir().exists());
}
