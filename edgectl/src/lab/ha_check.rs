//! `edgectl lab check --ha`: the two-host lab doing its job.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::check::{Report, Steps, poll_every as poll};
use super::ha::other;
use super::serve::CF_WRITES;
use super::{Lab, alive, net, stop_pid};

/// What a long-lived stream saw.
#[derive(Debug, Default, Clone)]
struct Stream {
    round_trips: u64,
    errors: Vec<String>,
    max_gap: Duration,
}

/// A TCP stream from inside namespace `ns` to `target` (an echo): 512 bytes every 20 ms,
/// each echo checked, never reconnecting (a reset is counted, not hidden).
fn stream(
    ns: &str,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
    st: Arc<Mutex<Stream>>,
) -> std::thread::JoinHandle<()> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let push = |e: String| {
            if let Ok(mut s) = st.lock() {
                s.errors.push(e);
            }
        };
        let Ok(f) = std::fs::File::open(&path) else {
            return push(format!("cannot open {path}"));
        };
        // SAFETY: setns on a namespace file this thread opened; it affects this thread only.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return push("setns failed".to_owned());
        }
        // From Cloudflare's edge address: the origin lock admits only its ranges.
        let connect = || -> std::io::Result<TcpStream> {
            let sock = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            let from: std::net::Ipv4Addr =
                net::CF_EDGE_IP.parse().map_err(std::io::Error::other)?;
            sock.bind(&SocketAddr::from((from, 0)).into())?;
            sock.connect_timeout(&target.into(), Duration::from_secs(5))?;
            Ok(sock.into())
        };
        let mut s = match connect() {
            Ok(s) => s,
            Err(e) => return push(format!("connect {target}: {e}")),
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
        let mut n: u64 = 0;
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let msg: Vec<u8> = (0..512u32)
                .map(|i| (n as u8).wrapping_add(i as u8))
                .collect();
            let mut back = vec![0u8; msg.len()];
            let r = s.write_all(&msg).and_then(|_| s.read_exact(&mut back));
            let Ok(mut g) = st.lock() else { return };
            match r {
                Ok(()) if back == msg => {
                    g.max_gap = g.max_gap.max(last.elapsed());
                    last = Instant::now();
                    g.round_trips += 1;
                }
                Ok(()) => return g.errors.push(format!("corrupted echo at message {n}")),
                Err(e) => return g.errors.push(format!("message {n}: {e}")),
            }
            drop(g);
            std::thread::sleep(Duration::from_millis(20));
        }
    })
}

/// A visitor's request through Cloudflare's proxy: from inet, sourced from Cloudflare's
/// edge address, which the forwards' origin lock admits.
fn visit(lab: &Lab, url: &str) -> (bool, String) {
    curl_with(lab, "inet", &["--interface", net::CF_EDGE_IP, url])
}

fn curl_with(lab: &Lab, node: &str, args: &[&str]) -> (bool, String) {
    curl_within(lab, node, args, "2")
}

/// curl in `node`, giving up after `max_secs`.
fn curl_within(lab: &Lab, node: &str, args: &[&str], max_secs: &str) -> (bool, String) {
    let mut all = vec!["-sS", "--max-time", max_secs];
    all.extend_from_slice(args);
    match lab.topo().ns(node).output("curl", &all) {
        Ok(o) if o.status.success() => (true, String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        Ok(o) => (false, String::from_utf8_lossy(&o.stderr).trim().to_owned()),
        Err(e) => (false, format!("{e:#}")),
    }
}

/// The VMs' gateway: a virtual address on `br1` of the master.
const LAN_GW: &str = "10.17.5.1";

/// A ping from the VMs' network to inet, seen by the ISP router's connection table: its
/// source must be the VIP (snat by the master's edge-fw), never a host's own address.
fn egress_from_vip(lab: &Lab) -> (bool, String) {
    let router = lab.topo().ns("router");
    let _ = router.output("conntrack", &["-D", "-p", "icmp"]);
    let ping = lab
        .topo()
        .ns("lb")
        .output("ping", &["-c1", "-W2", net::INET_GW]);
    if !ping.as_ref().is_ok_and(|o| o.status.success()) {
        return (false, format!("ping {} from lb failed", net::INET_GW));
    }
    let listed = match router.output("conntrack", &["-L", "-p", "icmp", "-d", net::INET_GW]) {
        Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
        Err(e) => return (false, format!("conntrack -L in the router: {e:#}")),
    };
    // The first `src=` of an entry is the original direction's source.
    let sources: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("src=")))
        .collect();
    (
        !sources.is_empty() && sources.iter().all(|s| *s == net::HOST_IP),
        format!("the router saw the ping from {sources:?}"),
    )
}

fn cf_writes(lab: &Lab) -> Option<u64> {
    std::fs::read_to_string(lab.dir.join(CF_WRITES))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn record(lab: &Lab) -> Option<String> {
    super::check::record_of(lab)
}

/// The latest PID recorded for `label` that still runs.
fn pid_of(lab: &Lab, label: &str) -> Option<i32> {
    lab.pids()
        .into_iter()
        .rev()
        .find(|(l, p)| l == label && alive(*p))
        .map(|(_, p)| p)
}

/// Waits until the VIP moved from `from` to the other host; returns how long it took.
fn moved(lab: &Lab, from: &str, t0: Instant) -> Option<Duration> {
    let to = other(from);
    poll(Duration::from_secs(20), Duration::from_millis(20), || {
        (lab.master() == Some(to)).then(|| t0.elapsed())
    })
}

/// The service through the new master `to`: a new connection to the http forward, begun
/// once `to` holds the VIP (one that the old master could still have served does not count).
/// Each attempt gives up on a connection not made within 0.3 s, so a SYN dropped during the
/// switch costs a new attempt 0.3 s later, not TCP's 1 s retransmission (which would hide
/// when the forward really came back).
fn forwards_back(lab: &Lab, to: &str, t0: Instant) -> Option<Duration> {
    let url = format!("http://{}:80/", net::PUBLIC_IP);
    poll(Duration::from_secs(20), Duration::from_millis(50), || {
        if lab.master() != Some(to) {
            return None;
        }
        let (ok, body) = curl_within(
            lab,
            "inet",
            &[
                "--connect-timeout",
                "0.3",
                "--interface",
                net::CF_EDGE_IP,
                &url,
            ],
            "1",
        );
        (ok && body.contains("answered")).then(|| t0.elapsed())
    })
}

/// WireGuard traffic through the new master `to`: the API VIP through the tunnel, begun
/// once `to` holds the VIP.
fn tunnel_back(lab: &Lab, to: &str, t0: Instant) -> Option<Duration> {
    let url = format!("http://{}:6443/", net::API_VIP);
    poll(Duration::from_secs(20), Duration::from_millis(50), || {
        if lab.master() != Some(to) {
            return None;
        }
        let (ok, body) = curl_within(lab, "remote", &["--connect-timeout", "0.3", &url], "1");
        (ok && body.contains("answered")).then(|| t0.elapsed())
    })
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(
        || "never (20 s)".to_owned(),
        |d| format!("{:.2} s", d.as_secs_f64()),
    )
}

/// Runs every step of the two-host lab.
pub fn run(lab: &Lab) -> Report {
    let mut steps = Steps::default();
    let mut figures: Vec<String> = Vec::new();
    let mut master = lab.master();
    initial_state(lab, &mut steps, master);

    // Everything below runs with a long-lived stream through the https forward.
    // The record's creation is counted by the test server's writer (every 100 ms): wait
    // for it before taking the baseline.
    let writes_before = poll(Duration::from_secs(10), Duration::from_millis(50), || {
        cf_writes(lab).filter(|n| *n >= 1)
    });
    let stream = LongStream::start(lab);
    steps.take(
        format!(
            "a long-lived TCP stream flows through the https forward ({})",
            stream.target
        ),
        || {
            let ok = stream.flowing();
            (ok, format!("{:?}", stream.seen()))
        },
    );
    for failure in FAILURES {
        master = failover(lab, &mut steps, &mut figures, &stream, &failure, master);
    }
    split_brain(lab, &mut steps);

    let s = stream.stop();
    figures.push(format!(
        "stream through the https forward: {} round trips, {} reset(s)/error(s) {:?}",
        s.round_trips,
        s.errors.len(),
        s.errors
    ));
    no_ddns_writes(lab, &mut steps, &mut figures, writes_before);
    Report {
        steps: steps.0,
        record_follow_seconds: None,
        figures,
    }
}

/// The first steps, before anything fails: one master, the forwards, the record, the
/// tunnel and the VMs' egress through it.
fn initial_state(lab: &Lab, steps: &mut Steps, master: Option<&str>) {
    steps.take(
        "exactly one host holds the VIP, and the role files agree".to_owned(),
        || one_master(lab, master),
    );
    for port in [80, 443] {
        steps.take(
            format!(
                "inet reaches the ingress VIP through the master: {}:{port} → router → VIP {} → DNAT → {}:{port}",
                net::PUBLIC_IP,
                net::HOST_IP,
                net::INGRESS_VIP
            ),
            || {
                let (ok, body) = visit(lab, &format!("http://{}:{port}/", net::PUBLIC_IP));
                (
                    ok && body.contains(&format!("{}:{port} answered", net::INGRESS_VIP)),
                    body,
                )
            },
        );
    }
    steps.take(
        format!(
            "the master writes the DDNS record example.com A {} (after its hold-off)",
            net::PUBLIC_IP
        ),
        || match poll(Duration::from_secs(40), Duration::from_millis(200), || {
            record(lab).filter(|r| r == net::PUBLIC_IP)
        }) {
            Some(r) => (true, format!("example.com A {r}")),
            None => (false, format!("record is {:?}", record(lab))),
        },
    );
    steps.take(
        "the remote peer (wireguard-go) reaches the API VIP through the tunnel to the master"
            .to_owned(),
        || {
            let t0 = Instant::now();
            let _ = lab
                .topo()
                .ns("remote")
                .output("ping", &["-c1", "-W1", "10.17.9.1"]);
            match tunnel_back(lab, master.unwrap_or("no host"), t0) {
                Some(d) => (
                    true,
                    format!("through the tunnel after {:.1} s", d.as_secs_f64()),
                ),
                None => (false, "no answer through the tunnel within 20 s".to_owned()),
            }
        },
    );
    steps.take(
        format!(
            "a VM's egress leaves from the VIP: lb → {} → masquerade → router sees {}",
            LAN_GW,
            net::HOST_IP
        ),
        || egress_from_vip(lab),
    );
}

/// Exactly one host holds the VIP and the role files say so.
fn one_master(lab: &Lab, master: Option<&str>) -> (bool, String) {
    match master {
        Some(m) => {
            let (rm, ro) = (lab.host_role(m), lab.host_role(other(m)));
            let ok = rm
                .as_ref()
                .is_some_and(|r| r.role == edge_ipc::ha::HaRole::Master)
                && ro
                    .as_ref()
                    .is_some_and(|r| r.role != edge_ipc::ha::HaRole::Master);
            (
                ok,
                format!(
                    "host {m} holds {}: ha.json {:?} / host {}: {:?}",
                    net::HOST_IP,
                    rm.map(|r| (r.role, r.generation)),
                    other(m),
                    ro.map(|r| (r.role, r.generation))
                ),
            )
        }
        None => (
            false,
            format!(
                "VIP on a: {}, on b: {}",
                lab.holds_vip("a"),
                lab.holds_vip("b")
            ),
        ),
    }
}

/// The long-lived stream through the https forward, running in its own thread.
struct LongStream {
    target: SocketAddr,
    stop: Arc<AtomicBool>,
    st: Arc<Mutex<Stream>>,
    th: std::thread::JoinHandle<()>,
}

impl LongStream {
    /// Starts the stream from inet to the https forward.
    fn start(lab: &Lab) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::new(Mutex::new(Stream::default()));
        let target: SocketAddr = SocketAddr::from(([81, 0, 0, 2], 443));
        let th = stream(
            &lab.topo().ns("inet").name,
            target,
            stop.clone(),
            st.clone(),
        );
        Self {
            target,
            stop,
            st,
            th,
        }
    }

    /// True when more than five round trips pass without an error within 10 s.
    fn flowing(&self) -> bool {
        let before = self.st.lock().map(|s| s.round_trips).unwrap_or(0);
        poll(Duration::from_secs(10), Duration::from_millis(50), || {
            let s = self.st.lock().ok()?;
            (s.errors.is_empty() && s.round_trips > before + 5).then_some(())
        })
        .is_some()
    }

    /// What the stream saw so far.
    fn seen(&self) -> Stream {
        self.st.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Starts measuring the longest pause anew.
    fn reset_gap(&self) {
        if let Ok(mut s) = self.st.lock() {
            s.max_gap = Duration::ZERO;
        }
    }

    /// Stops the stream; what it saw.
    fn stop(self) -> Stream {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.th.join();
        self.st.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// One way the master fails, and how it heals.
struct Failure {
    what: &'static str,
    fail: fn(&Lab, &str) -> anyhow::Result<()>,
    heal: fn(&Lab, &str) -> anyhow::Result<()>,
}

/// The failures of the master the lab goes through, in order.
const FAILURES: [Failure; 3] = [
    Failure {
        what: "the master host's four daemons are stopped",
        fail: stop_daemons,
        heal: start_daemons,
    },
    Failure {
        what: "the master host's WAN link goes down",
        fail: wan_down,
        heal: wan_up,
    },
    Failure {
        what: "keepalived on the master host is stopped",
        fail: stop_keepalived,
        heal: start_keepalived,
    },
];

fn stop_daemons(lab: &Lab, h: &str) -> anyhow::Result<()> {
    for role in edge_config::Role::ALL {
        if let Some(p) = pid_of(lab, &format!("{h}-{}", role.binary())) {
            stop_pid(p);
        }
    }
    Ok(())
}

fn start_daemons(lab: &Lab, h: &str) -> anyhow::Result<()> {
    lab.start_daemons(h)
}

fn wan_down(lab: &Lab, h: &str) -> anyhow::Result<()> {
    lab.topo()
        .ns(h)
        .ip(&["link", "set", "enp3s0f0", "down"])
        .map(|_| ())
}

fn wan_up(lab: &Lab, h: &str) -> anyhow::Result<()> {
    lab.topo()
        .ns(h)
        .ip(&["link", "set", "enp3s0f0", "up"])
        .map(|_| ())
}

fn stop_keepalived(lab: &Lab, h: &str) -> anyhow::Result<()> {
    if let Some(p) = pid_of(lab, &format!("{h}-keepalived")) {
        stop_pid(p);
    }
    Ok(())
}

fn start_keepalived(lab: &Lab, h: &str) -> anyhow::Result<()> {
    lab.start_keepalived(h).map(|_| ())
}

/// When the VIP, the forwards and WireGuard came back after a failure.
struct Recovery {
    took: Option<Duration>,
    service: Option<Duration>,
    wg: Option<Duration>,
}

/// Fails `master` the way `f` says, checks that everything moves to the other host while
/// the stream keeps flowing, heals it and checks that it stays BACKUP. Returns the master
/// after that.
fn failover(
    lab: &Lab,
    steps: &mut Steps,
    figures: &mut Vec<String>,
    stream: &LongStream,
    f: &Failure,
    master: Option<&'static str>,
) -> Option<&'static str> {
    let what = f.what;
    let Some(m) = master else {
        steps.take(format!("{what}: everything moves to the backup"), || {
            (false, "no single master to fail".to_owned())
        });
        return master;
    };
    stream.reset_gap();
    let t0 = Instant::now();
    let failed = (f.fail)(lab, m);
    let r = measure_recovery(lab, m, t0);
    moved_steps(lab, steps, stream, what, m, &failed, &r);
    let gap = stream.seen().max_gap;
    figures.push(format!(
        "{what}: failover {} (VIP moved), forwards back {}, longest stream pause {:.2} s, WireGuard back {}",
        secs(r.took),
        secs(r.service),
        gap.as_secs_f64(),
        secs(r.wg)
    ));
    let healed = (f.heal)(lab, m);
    steps.take(
        format!("host {m} recovers and stays BACKUP (equal priorities: no second failover)"),
        || stays_backup(lab, m, &healed),
    );
    lab.master()
}

/// The three are measured side by side from the failure of `m` at `t0`.
fn measure_recovery(lab: &Lab, m: &str, t0: Instant) -> Recovery {
    let to = other(m);
    std::thread::scope(|s| {
        let vip = s.spawn(|| moved(lab, m, t0));
        let fwd = s.spawn(|| forwards_back(lab, to, t0));
        let tun = s.spawn(|| tunnel_back(lab, to, t0));
        Recovery {
            took: vip.join().ok().flatten(),
            service: fwd.join().ok().flatten(),
            wg: tun.join().ok().flatten(),
        }
    })
}

/// The steps after a failure of `m`: the VIP and the forwards moved, the stream kept
/// flowing, WireGuard and the VMs' egress go through the other host.
fn moved_steps(
    lab: &Lab,
    steps: &mut Steps,
    stream: &LongStream,
    what: &str,
    m: &str,
    failed: &anyhow::Result<()>,
    r: &Recovery,
) {
    steps.take(
        format!(
            "{what} (host {m}): the VIP and the forwards move to host {}",
            other(m)
        ),
        || match failed {
            Err(e) => (false, format!("{e:#}")),
            Ok(()) => (
                r.took.is_some() && r.service.is_some(),
                format!(
                    "VIP on host {} after {}; a new connection through the http forward after {}",
                    other(m),
                    secs(r.took),
                    secs(r.service)
                ),
            ),
        },
    );
    steps.take(
        format!("{what}: the long-lived stream through the https forward keeps flowing (no reset)"),
        || {
            let ok = stream.flowing();
            let s = stream.seen();
            (
                ok,
                format!(
                    "longest pause {:.2} s, {} round trips, resets/errors {:?}",
                    s.max_gap.as_secs_f64(),
                    s.round_trips,
                    s.errors
                ),
            )
        },
    );
    steps.take(
        format!(
            "{what}: WireGuard traffic is back through host {}",
            other(m)
        ),
        || {
            (
                r.wg.is_some(),
                format!("the API VIP through the tunnel after {}", secs(r.wg)),
            )
        },
    );
    steps.take(
        format!(
            "{what}: a VM's egress leaves from the VIP through host {}",
            other(m)
        ),
        || egress_from_vip(lab),
    );
}

/// Host `m`, healed, becomes BACKUP and the VIP stays on the other host.
fn stays_backup(lab: &Lab, m: &str, healed: &anyhow::Result<()>) -> (bool, String) {
    if let Err(e) = healed {
        return (false, format!("{e:#}"));
    }
    let ok = poll(Duration::from_secs(20), Duration::from_millis(100), || {
        lab.host_role(m)
            .filter(|r| r.role == edge_ipc::ha::HaRole::Backup)
            .map(|_| ())
    })
    .is_some();
    std::thread::sleep(Duration::from_secs(2));
    (
        ok && lab.master() == Some(other(m)),
        format!(
            "host {m}: {:?}; VIP on host {:?}",
            lab.host_role(m).map(|r| r.role),
            lab.master()
        ),
    )
}

/// Both hosts claim master: the VRRP adverts between them are lost for a moment.
fn split_brain(lab: &Lab, steps: &mut Steps) {
    steps.take(
        "both hosts briefly claim MASTER (adverts lost for 3 s), then one backs down".to_owned(),
        || {
            let router = lab.topo().ns("router");
            let rules = "table bridge edge_lab_split {\n  chain forward {\n    type filter hook forward priority 0;\n    ip protocol vrrp drop\n  }\n}\n";
            let path = lab.dir.join("split.nft");
            if std::fs::write(&path, rules).is_err() {
                return (false, "cannot write the split rules".to_owned());
            }
            if let Err(e) = router.run("nft", &["-f", &path.to_string_lossy()]) {
                return (false, format!("{e:#}"));
            }
            let both = poll(Duration::from_secs(10), Duration::from_millis(50), || {
                (lab.holds_vip("a") && lab.holds_vip("b")).then_some(())
            });
            std::thread::sleep(Duration::from_secs(3));
            let _ = router.run("nft", &["delete", "table", "bridge", "edge_lab_split"]);
            let one = poll(Duration::from_secs(15), Duration::from_millis(50), || {
                lab.master()
            });
            (
                both.is_some() && one.is_some(),
                format!(
                    "both held the VIP: {}; then master: host {:?}",
                    both.is_some(),
                    one
                ),
            )
        },
    );
}

/// The last step: no DDNS write came from the failovers and the split.
fn no_ddns_writes(
    lab: &Lab,
    steps: &mut Steps,
    figures: &mut Vec<String>,
    writes_before: Option<u64>,
) {
    // A DDNS write would only come from a failover: the public address never changed.
    // Wait for both hosts' next scheduled syncs (every 5 s) after the last hold-off (3 s).
    std::thread::sleep(Duration::from_secs(8));
    let writes_after = cf_writes(lab);
    let delta = match (writes_before, writes_after) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b)),
        _ => None,
    };
    figures.push(format!(
        "DDNS writes during the failovers and the split: {delta:?}"
    ));
    steps.take(
        "the DDNS record received zero writes during the failovers and the split, and still holds the public address".to_owned(),
        || {
            let r = record(lab);
            (
                delta == Some(0) && r.as_deref() == Some(net::PUBLIC_IP),
                format!("writes: {delta:?}; example.com A {r:?}"),
            )
        },
    );
}
