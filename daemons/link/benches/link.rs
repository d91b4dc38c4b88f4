//! Benchmark of edge-link on the user's host in network namespaces (needs root):
//!
//! 1. converge from scratch: systemd-networkd's state (192.198.0.30 and the default route on
//!    enp3s0f0) to three bridges with the make-before-break move, in-process, N times;
//!    anchor: iproute2 applying the same operations from one `ip -batch` file plus one
//!    `sysctl -w` (no gateway check), measured in the same run;
//! 2. drift repair latency, from the drifting netlink request to the repaired state seen by
//!    a netlink dump, with the release daemon running the reference configuration
//!    (debounce 20 ms); anchor: the configured debounce, the floor of any repair;
//! 3. netlink writes when converged, over reconciles triggered by foreign events; anchor:
//!    the writes of a from-scratch run;
//! 4. the daemon's RSS; anchor: `ip monitor`, a C program that only watches netlink.
//!
//! Run: `cargo bench -p edge-link --bench link` (as root).

#[allow(dead_code)]
#[path = "../tests/common/lab.rs"]
mod lab;

use std::process::Command;
use std::time::{Duration, Instant};

use edge_link::Desired;
use edge_link::daemon::converge_once;
use edge_link::model::{Caps, Observed, SysctlKey};
use edge_link::netlink::Netlink;
use edge_link::op::Op;
use edge_testkit::Netns;
use lab::{Lab, runtime};
use rtnetlink::LinkUnspec;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkMessage;

const CONVERGE_RUNS: usize = 30;
const REPAIRS_PER_KIND: usize = 12;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn max(v: &[Duration]) -> Duration {
    v.iter().copied().max().unwrap_or_default()
}

/// Puts the host back into systemd-networkd's state (untimed).
fn reset(host: &Netns) {
    for b in ["br-api", "br1", "br0"] {
        let _ = host.try_exec("ip", ["link", "del", b]);
    }
    // `replace`: the first reset finds networkd's state already there.
    host.ip(["addr", "replace", "192.198.0.30/24", "dev", "enp3s0f0"]);
    host.ip([
        "route",
        "replace",
        "default",
        "via",
        "192.198.0.1",
        "dev",
        "enp3s0f0",
        "metric",
        "100",
        "proto",
        "static",
    ]);
    host.exec(
        "sysctl",
        [
            "-qw",
            "net.ipv4.ip_forward=0",
            "net.bridge.bridge-nf-call-iptables=1",
            "net.bridge.bridge-nf-call-ip6tables=1",
            "net.bridge.bridge-nf-call-arptables=1",
        ],
    );
}

/// The plan's operations as one `ip -batch` file and one `sysctl -w` command line.
fn as_script(ops: &[Op]) -> (String, Vec<String>) {
    let mut batch = String::new();
    let mut sysctls = vec!["-qw".to_owned()];
    for op in ops {
        let line = op.to_string();
        if let Some(rest) = line.strip_prefix("ip ") {
            // iproute2 6.1 has no `proto` for addresses; the anchor does slightly less.
            let rest = if matches!(op, Op::AddAddress { .. }) {
                rest.replace(" proto 237", "")
            } else {
                rest.to_owned()
            };
            batch.push_str(&rest);
            batch.push('\n');
        } else if let Some(kv) = line.strip_prefix("sysctl -w ") {
            sysctls.push(kv.to_owned());
        }
    }
    (batch, sysctls)
}

fn converge(lab: &Lab, desired: &Desired) {
    let host = lab.host();
    let mut ours = Vec::new();
    let mut anchor = Vec::new();
    let mut writes = 0;
    let mut ops = 0;
    for _ in 0..CONVERGE_RUNS {
        reset(host);
        let d = desired.clone();
        let (took, report) = host.run(move || {
            runtime().block_on(async move {
                let t = Instant::now();
                let (p, r) = converge_once(&d).await.expect("converge");
                (t.elapsed(), (p.ops.len(), r.writes))
            })
        });
        ours.push(took);
        (ops, writes) = report;
    }
    for _ in 0..CONVERGE_RUNS {
        reset(host);
        let d = desired.clone();
        let plan = host.run(move || {
            runtime().block_on(async move { edge_link::daemon::plan_once(&d).await.expect("plan") })
        });
        let (batch, sysctls) = as_script(&plan.ops);
        let file = lab.dir.path().join("anchor.batch");
        std::fs::write(&file, batch).expect("batch file");
        let t = Instant::now();
        host.exec("ip", ["-batch", file.to_str().expect("path")]);
        host.exec("sysctl", &sysctls);
        anchor.push(t.elapsed());
    }
    let (m, a) = (median(ours.clone()), median(anchor.clone()));
    println!(
        "converge from scratch ({ops} operations incl. the address move and gateway check, {writes} writes), {CONVERGE_RUNS} runs:"
    );
    println!(
        "  edge-link       median {:7.2} ms   max {:7.2} ms",
        ms(m),
        ms(max(&ours))
    );
    println!(
        "  anchor ip -batch median {:7.2} ms   max {:7.2} ms   (same operations, no gateway check)",
        ms(a),
        ms(max(&anchor))
    );
    println!(
        "  ratio edge-link / anchor: {:.2}   target < 100 ms: {}",
        m.as_secs_f64() / a.as_secs_f64(),
        if m < Duration::from_millis(100) {
            "met"
        } else {
            "MISSED"
        }
    );
}

/// Which drift to cause.
#[derive(Debug, Clone, Copy)]
enum Drift {
    PortRemoved,
    MtuChanged,
    AddressDeleted,
    BridgeDeleted,
    LinkDown,
}

impl Drift {
    const ALL: [Drift; 5] = [
        Drift::PortRemoved,
        Drift::MtuChanged,
        Drift::AddressDeleted,
        Drift::BridgeDeleted,
        Drift::LinkDown,
    ];

    fn name(self) -> &'static str {
        match self {
            Drift::PortRemoved => "port removed from br-api",
            Drift::MtuChanged => "br1 MTU changed",
            Drift::AddressDeleted => "192.198.0.30 deleted (route dropped silently)",
            Drift::BridgeDeleted => "br-api deleted",
            Drift::LinkDown => "enp4s0f0 set down",
        }
    }

    fn repaired(self, o: &Observed) -> bool {
        let port = |p: &str, b: &str| {
            o.links
                .get(p)
                .is_some_and(|l| l.controller.as_deref() == Some(b) && l.up)
        };
        let addr = o
            .addresses
            .iter()
            .any(|a| a.dev == "br-api" && a.net.to_string() == "192.198.0.30/24");
        let route = o
            .routes
            .iter()
            .any(|r| r.dst.prefix_len() == 0 && r.dev.as_deref() == Some("br-api") && r.is_ours());
        match self {
            Drift::PortRemoved => port("enp3s0f0", "br-api"),
            Drift::MtuChanged => o.links.get("br1").is_some_and(|l| l.mtu == 1500),
            Drift::AddressDeleted => addr && route,
            Drift::BridgeDeleted => {
                port("enp3s0f0", "br-api")
                    && addr
                    && route
                    && o.sysctls
                        .get(&SysctlKey::RpFilter("br-api".into()))
                        .map(String::as_str)
                        == Some("2")
            }
            Drift::LinkDown => o.links.get("enp4s0f0").is_some_and(|l| l.up),
        }
    }
}

/// Causes `drift` with one netlink request and returns the time until a dump shows it
/// repaired.
async fn drift_once(nl: &Netlink, keys: &[SysctlKey], drift: Drift) -> Duration {
    let o = edge_link::observe::observe(nl, keys, Caps::default())
        .await
        .expect("observe");
    let idx = |n: &str| o.links.get(n).map(|l| l.index).expect("link");
    let msg = match drift {
        Drift::PortRemoved => RouteNetlinkMessage::SetLink(
            LinkUnspec::new_with_index(idx("enp3s0f0"))
                .nocontroller()
                .build(),
        ),
        Drift::MtuChanged => {
            RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(idx("br1")).mtu(1400).build())
        }
        Drift::AddressDeleted => {
            let mut m = AddressMessage::default();
            m.header.family = rtnetlink::packet_route::AddressFamily::Inet;
            m.header.prefix_len = 24;
            m.header.index = idx("br-api");
            m.attributes
                .push(AddressAttribute::Local("192.198.0.30".parse().expect("ip")));
            RouteNetlinkMessage::DelAddress(m)
        }
        Drift::BridgeDeleted => {
            let mut m = LinkMessage::default();
            m.header.index = idx("br-api");
            RouteNetlinkMessage::DelLink(m)
        }
        Drift::LinkDown => {
            RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(idx("enp4s0f0")).down().build())
        }
    };
    let start = Instant::now();
    nl.write(msg, 0).await.expect("drift request");
    loop {
        let o = edge_link::observe::observe(nl, keys, Caps::default())
            .await
            .expect("observe");
        if drift.repaired(&o) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} not repaired",
            drift.name()
        );
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn repairs_and_writes(lab: &Lab, desired: &Desired) {
    let host = lab.host();
    reset(host);
    let mut daemon = lab.daemon();
    let st = lab.wait_converged(&mut daemon, Duration::from_secs(20));
    let from_scratch_writes = st.writes;
    let keys = desired.sysctl_keys();
    let results: Vec<(Drift, Duration)> = host.run(move || {
        runtime().block_on(async move {
            let nl = Netlink::connect().expect("netlink");
            let mut out = Vec::new();
            for round in 0..REPAIRS_PER_KIND {
                for d in Drift::ALL {
                    let took = drift_once(&nl, &keys, d).await;
                    out.push((d, took));
                    // Let the daemon's verification run (triggered by its own writes) pass,
                    // so every drift starts from a quiet, converged host.
                    tokio::time::sleep(Duration::from_millis(60 + (round as u64 % 3) * 10)).await;
                }
            }
            out
        })
    });
    let all: Vec<Duration> = results.iter().map(|(_, d)| *d).collect();
    let m = median(all.clone());
    println!(
        "drift repair, drifting request -> repaired state, {} repairs, daemon debounce 20 ms:",
        all.len()
    );
    for d in Drift::ALL {
        let v: Vec<Duration> = results
            .iter()
            .filter(|(k, _)| matches!((k, d), (a, b) if a.name() == b.name()))
            .map(|(_, t)| *t)
            .collect();
        println!(
            "  {:<48} median {:6.1} ms   max {:6.1} ms",
            d.name(),
            ms(median(v.clone())),
            ms(max(&v))
        );
    }
    println!(
        "  all kinds                                        median {:6.1} ms   max {:6.1} ms",
        ms(m),
        ms(max(&all))
    );
    println!(
        "  ratio median / debounce (anchor 20 ms): {:.2}   target < 200 ms median: {}",
        m.as_secs_f64() / 0.020,
        if m < Duration::from_millis(200) {
            "met"
        } else {
            "MISSED"
        }
    );

    // Writes when converged: foreign events (addresses on lo) make the daemon re-dump and
    // re-plan; it must not write.
    let st0 = lab.wait_converged(&mut daemon, Duration::from_secs(10));
    let runs = 20;
    for i in 0..runs {
        let a = format!("127.88.0.{}/32", i + 1);
        host.ip(["addr", "add", &a, "dev", "lo"]);
        std::thread::sleep(Duration::from_millis(40));
    }
    let st1 = lab.wait_converged(&mut daemon, Duration::from_secs(10));
    println!(
        "netlink writes when converged: {} over {} reconciles triggered by foreign events   (anchor: {} writes to converge from scratch)   target 0: {}",
        st1.writes - st0.writes,
        st1.reconciles - st0.reconciles,
        from_scratch_writes,
        if st1.writes == st0.writes {
            "met"
        } else {
            "MISSED"
        }
    );

    let (rss, hwm) = rss_kib(daemon.pid());
    let mut mon = Command::new("ip");
    mon.args(["monitor", "link", "address", "route"]);
    let monitor = host.spawn("ip-monitor", mon);
    std::thread::sleep(Duration::from_millis(200));
    let (mon_rss, _) = rss_kib(monitor.pid());
    println!(
        "daemon memory: VmRSS {:.1} MiB, peak VmHWM {:.1} MiB   (anchor `ip monitor`: {:.1} MiB, ratio {:.1})   target <= 10 MiB: {}",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        mon_rss as f64 / 1024.0,
        rss as f64 / mon_rss.max(1) as f64,
        if hwm <= 10 * 1024 { "met" } else { "MISSED" }
    );
    drop(monitor);
    daemon.stop();
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing here.
    let lab = Lab::new(&[]);
    let desired = lab.desired();
    println!(
        "edge-link benchmark (release build; kernel {})",
        String::from_utf8_lossy(
            &Command::new("uname")
                .arg("-r")
                .output()
                .map(|o| o.stdout)
                .unwrap_or_default()
        )
        .trim()
    );
    converge(&lab, &desired);
    repairs_and_writes(&lab, &desired);
}
