//! I/O: the self-confirming apply. The previous tables are saved, the new ruleset applied,
//! then probes run until they all pass (confirmed by itself), a human confirms
//! (`edgectl fw confirm`), or the window ends — then the saved tables are restored.
//!
//! Where a ruleset-only probe cannot run (the replica without the right to create network
//! namespaces, as under the shipped unit), nothing left can see a lockout, so the apply
//! never confirms itself: only a human confirm keeps it, else the window ends and the saved
//! tables come back.
//!
//! Probes, in the order they run:
//! 1. the anti-lockout proof on the applied IR (symbolic: the first gate, also run before
//!    the apply);
//! 2. the replica ([`crate::replica`]): real SSH connects from each admin/WireGuard network
//!    and real WireGuard datagrams from the internet, through the applied ruleset in a private
//!    copy of the host's interfaces. Both depend on the ruleset alone, so a failure rolls back
//!    at once instead of waiting for the window to end;
//! 3. live checks on the host: each forward target accepts a TCP connect, SSH answers on the
//!    host's address in each admin/WireGuard network (a connect bound to that address), and
//!    something is bound on the WireGuard port. These are retried until the window ends.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use socket2::{Domain, SockAddr, Socket, Type};

use crate::apply::{self, ApplyError, Options};
use crate::ir::{L4, Ruleset};
use crate::model::Model;
use crate::nfnl;
use crate::observe;
use crate::replica::{self, Path};
use crate::rt::Rt;
use crate::safety;

/// One check that the host is still reachable after an apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The applied ruleset still admits SSH from the admin/WireGuard networks and the
    /// WireGuard port (the anti-lockout proof, re-run on the applied IR).
    Admission,
    /// Real packets through the applied ruleset in a replica of the host's interfaces.
    Replica {
        /// The paths probed.
        paths: Vec<Path>,
    },
    /// A TCP connect to a forward's target succeeds.
    Tcp {
        /// What it checks (`forward http -> 10.17.5.30:80`).
        what: String,
        /// Where to connect.
        addr: SocketAddr,
    },
    /// A TCP connect from the host to SSH on its own address in an admin/WireGuard network,
    /// bound to that address (the service answers there).
    LocalSsh {
        /// What it checks.
        what: String,
        /// The host's address and the SSH port.
        addr: SocketAddr,
    },
    /// A UDP socket is bound on the WireGuard port (the WireGuard endpoint answers there).
    UdpBound {
        /// The port.
        port: u16,
    },
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Admission => f.write_str("SSH and WireGuard admitted by the ruleset"),
            Probe::Replica { .. } => f.write_str("replica"),
            Probe::Tcp { what, .. } | Probe::LocalSsh { what, .. } => f.write_str(what),
            Probe::UdpBound { port } => write!(f, "WireGuard udp/{port} bound"),
        }
    }
}

impl Probe {
    /// True when the result depends on the ruleset alone (running it again cannot change it).
    pub fn deterministic(&self) -> bool {
        matches!(self, Probe::Admission | Probe::Replica { .. })
    }
}

/// How a network reaches the host, as the kernel routes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// The network.
    pub net: IpNet,
    /// A source address in it that is not the host's.
    pub src: IpAddr,
    /// The interface its traffic arrives on (the route back to it).
    pub dev: String,
    /// The host's address it would use.
    pub host: IpAddr,
}

/// Asks the kernel how `net` reaches the host: the route to one of its addresses (not the
/// host's own) gives the interface and the host's source address. `None` when there is no
/// route, or the network is local to the host (`lo`).
pub fn reach(rt: &mut Rt, net: IpNet, addrs: &BTreeMap<String, Vec<IpAddr>>) -> Option<Reach> {
    let own: Vec<IpAddr> = addrs.values().flatten().copied().collect();
    // The first few addresses of the network that are not the host's. IPv6's network
    // address is skipped: on a router it is the subnet-router anycast address, local.
    let (src, r) = net
        .hosts()
        .filter(|a| *a != net.network() || net.prefix_len() == net.max_prefix_len())
        .filter(|a| !own.contains(a))
        .take(4)
        .find_map(|src| {
            let r = rt.route_get(src).ok()??;
            (!r.local && r.dev != "lo").then_some((src, r))
        })?;
    let host = r.prefsrc.or_else(|| {
        addrs
            .get(&r.dev)?
            .iter()
            .find(|a| a.is_ipv4() == src.is_ipv4())
            .copied()
    })?;
    Some(Reach {
        net,
        src,
        dev: r.dev,
        host,
    })
}

/// The probes of a model, from the kernel's routes and the addresses the model was built
/// with (run in the namespace the ruleset is applied to): the symbolic gate; the replica paths (SSH from each admin and
/// WireGuard network on the interface it is routed through; WireGuard from the internet on
/// each WAN interface and family that has an address); each TCP forward target; SSH on the
/// host's address in each admin network; the WireGuard port bound.
pub fn default_probes(m: &Model) -> Vec<Probe> {
    let addrs = &m.env.addresses;
    let ssh = m.ssh_port();
    let reaches: Vec<Reach> = match Rt::open() {
        Ok(mut rt) => m
            .admin_networks()
            .into_iter()
            .filter_map(|n| reach(&mut rt, n, addrs))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %edge_util::error_chain(&e), "cannot read routes: no SSH probes");
            Vec::new()
        }
    };
    let mut paths: Vec<Path> = reaches
        .iter()
        .map(|r| Path {
            what: format!(
                "SSH tcp/{ssh} from {} (network {}) on {} to {}",
                r.src, r.net, r.dev, r.host
            ),
            iif: r.dev.clone(),
            src: r.src,
            src_net: r.net,
            dst: r.host,
            proto: L4::Tcp,
            port: ssh,
        })
        .collect();
    if let Some(port) = m.wg_port() {
        for (i, wan) in m.fw.wan.iter().enumerate() {
            let i = u8::try_from(i % 200).unwrap_or(0);
            for host in [true, false].iter().filter_map(|v4| {
                addrs
                    .get(wan.as_str())?
                    .iter()
                    .find(|a| a.is_ipv4() == *v4)
                    .copied()
            }) {
                let src = match host {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7 + i)),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        0xffff,
                        0,
                        0,
                        0,
                        0,
                        7 + u16::from(i),
                    )),
                };
                paths.push(Path {
                    what: format!("WireGuard udp/{port} from {src} on {wan} to {host}"),
                    iif: wan.as_str().to_owned(),
                    src,
                    src_net: IpNet::from(src),
                    dst: host,
                    proto: L4::Udp,
                    port,
                });
            }
        }
    }
    let mut v = vec![Probe::Admission, Probe::Replica { paths }];
    v.extend(
        m.fw.forwards
            .iter()
            .filter(|f| f.proto.has_tcp())
            .map(|f| Probe::Tcp {
                what: format!("forward {} -> {}:{}", f.name, f.to, f.to_port.start),
                addr: SocketAddr::new(f.to, f.to_port.start.get()),
            }),
    );
    let mut hosts: Vec<IpAddr> = reaches.iter().map(|r| r.host).collect();
    hosts.sort();
    hosts.dedup();
    v.extend(hosts.into_iter().map(|h| Probe::LocalSsh {
        what: format!("SSH tcp/{ssh} answers on {h}"),
        addr: SocketAddr::new(h, ssh),
    }));
    if let Some(port) = m.wg_port() {
        v.push(Probe::UdpBound { port });
    }
    v
}

fn udp_bound(port: u16) -> bool {
    // /proc/net/udp{,6}: "sl local_address rem_address st ..." with local as HEX_IP:HEX_PORT.
    let hex = format!(":{port:04X}");
    // thread-self: this thread may have entered another network namespace (setns).
    ["/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"]
        .iter()
        .any(|p| {
            std::fs::read_to_string(p)
                .map(|t| {
                    t.lines().skip(1).any(|l| {
                        l.split_whitespace()
                            .nth(1)
                            .is_some_and(|a| a.ends_with(&hex))
                    })
                })
                .unwrap_or(false)
        })
}

/// A TCP connect from `addr`'s own address to `addr`.
fn connect_bound(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, None).map_err(|e| format!("socket: {e}"))?;
    s.bind(&SockAddr::from(SocketAddr::new(addr.ip(), 0)))
        .map_err(|e| format!("bind {}: {e}", addr.ip()))?;
    s.connect_timeout(&SockAddr::from(addr), timeout)
        .map_err(|e| format!("connect to {addr}: {e}"))
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It passed.
    Pass,
    /// It failed; why, one entry per failing check.
    Fail(Vec<String>),
    /// It could not run here (the replica without the right to create namespaces). A
    /// skipped ruleset-only probe keeps the apply from confirming itself.
    Skipped(String),
}

/// Runs one probe.
pub fn run_probe(p: &Probe, m: &Model, rs: &Ruleset, timeout: Duration) -> Verdict {
    let one = |r: Result<(), String>| match r {
        Ok(()) => Verdict::Pass,
        Err(e) => Verdict::Fail(vec![format!("{p}: {e}")]),
    };
    match p {
        Probe::Admission => match safety::check(m, rs) {
            Ok(()) => Verdict::Pass,
            Err(v) => Verdict::Fail(v.iter().map(|l| format!("{p}: {l}")).collect()),
        },
        Probe::Replica { paths } => match replica::run(rs, paths, timeout) {
            Err(e) => Verdict::Skipped(format!(
                "replica probe not run: {}",
                edge_util::error_chain(&e)
            )),
            Ok(results) => {
                let fails: Vec<String> = paths
                    .iter()
                    .zip(results)
                    .filter_map(|(path, r)| {
                        r.err().map(|e| {
                            format!(
                                "{} is not admitted by the new ruleset (replica: {e})",
                                path.what
                            )
                        })
                    })
                    .collect();
                if fails.is_empty() {
                    Verdict::Pass
                } else {
                    Verdict::Fail(fails)
                }
            }
        },
        Probe::Tcp { addr, .. } => one(TcpStream::connect_timeout(addr, timeout)
            .map(|_| ())
            .map_err(|e| format!("connect to {addr}: {e}"))),
        Probe::LocalSsh { addr, .. } => one(connect_bound(*addr, timeout)),
        Probe::UdpBound { port } => one(if udp_bound(*port) {
            Ok(())
        } else {
            Err(format!("nothing is bound on udp/{port}"))
        }),
    }
}

/// How often a pending apply looks at the confirm flag.
const CONFIRM_POLL: Duration = Duration::from_millis(50);

/// How a self-confirming apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every probe ran and passed: confirmed by itself.
    ConfirmedByProbes,
    /// Confirmed by hand (`edgectl fw confirm`): before the probes passed, or while the apply
    /// waited for it because a ruleset-only probe could not run.
    ConfirmedByHand,
    /// Probes failed (a deterministic one at once, live ones until the window ended), or a
    /// ruleset-only probe could not run and no confirm came within the window: the previous
    /// tables were restored.
    RolledBack {
        /// The failures seen last, one per failing check.
        failures: Vec<String>,
    },
    /// The tables already matched: nothing to confirm.
    Unchanged,
}

/// Applies `rs`, then confirms it by probes or by hand within `window`, else restores the
/// tables saved before the apply (byte for byte, counters keeping their values). When a
/// ruleset-only probe is skipped, only a confirm by hand keeps the new ruleset.
pub fn apply_with_confirm(
    sock: &nfnl::Socket,
    m: &Model,
    rs: &Ruleset,
    window: Duration,
    probes: &[Probe],
    confirmed: &Arc<AtomicBool>,
) -> Result<Outcome, ApplyError> {
    let prev = observe::read_live(sock)?;
    let report = apply::apply(sock, m, rs, Options::default())?;
    if !report.changed() {
        return Ok(Outcome::Unchanged);
    }
    let deadline = Instant::now() + window;
    let probe_timeout = Duration::from_millis(800);
    let mut skipped = Vec::new();
    // The ruleset-only probes run once: their answer cannot change within the window.
    let mut failures: Vec<String> = Vec::new();
    for p in probes.iter().filter(|p| p.deterministic()) {
        match run_probe(p, m, rs, probe_timeout) {
            Verdict::Pass => {}
            Verdict::Fail(f) => failures.extend(f),
            Verdict::Skipped(why) => {
                tracing::warn!(probe = %p, reason = %why, "probe skipped");
                skipped.push(why);
            }
        }
    }
    if failures.is_empty() {
        if !skipped.is_empty() {
            tracing::warn!(
                window = %humantime::format_duration(window),
                "a probe that can detect a lockout could not run: this apply does not confirm \
                 itself; `edgectl fw confirm` keeps it, else the previous ruleset comes back"
            );
        }
        // Failing live probes are retried often (they may pass any moment); while the apply
        // waits for a human, they run only for the failure text, so less often.
        let live_every = if skipped.is_empty() {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        };
        let mut next_live = Instant::now();
        loop {
            if confirmed.load(Ordering::SeqCst) {
                return Ok(Outcome::ConfirmedByHand);
            }
            if Instant::now() >= next_live {
                failures = probes
                    .iter()
                    .filter(|p| !p.deterministic())
                    .flat_map(|p| match run_probe(p, m, rs, probe_timeout) {
                        Verdict::Fail(f) => f,
                        Verdict::Pass | Verdict::Skipped(_) => Vec::new(),
                    })
                    .collect();
                // The live probes cannot see a lockout (SSH over `lo` is always admitted):
                // with the replica skipped, their passing proves nothing; only a human
                // confirms.
                if failures.is_empty() && skipped.is_empty() {
                    return Ok(Outcome::ConfirmedByProbes);
                }
                next_live = Instant::now() + live_every;
            }
            let now = Instant::now();
            if now >= deadline {
                // A confirm that came while the probes ran.
                if confirmed.load(Ordering::SeqCst) {
                    return Ok(Outcome::ConfirmedByHand);
                }
                break;
            }
            std::thread::sleep(
                CONFIRM_POLL
                    .min(deadline - now)
                    .min(next_live.saturating_duration_since(now)),
            );
        }
        if !skipped.is_empty() {
            failures.insert(
                0,
                format!(
                    "{}; only `edgectl fw confirm` could keep this ruleset, and none came \
                     within {}",
                    skipped.join("; "),
                    humantime::format_duration(window)
                ),
            );
        }
    }
    tracing::warn!(failures = ?failures, "confirm-apply not confirmed: restoring the previous ruleset");
    apply::restore(sock, &prev)?;
    Ok(Outcome::RolledBack { failures })
}
