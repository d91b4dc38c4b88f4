//! I/O: the replica probe. Real packets through the candidate ruleset, in the kernel, without
//! touching the host's namespace.
//!
//! A packet the host sends to one of its own addresses goes through `lo`: it matches our
//! `iifname "lo" accept`, is never looked up in the DNAT map, and no rule tied to an
//! interface sees it. So a connect from the host proves that a service answers, not that
//! the firewall admits the admin. The replica does what the kernel allows instead: two
//! private network namespaces (created by `unshare(CLONE_NEWNET)` on two threads, gone
//! with them) joined by one veth pair per interface the probed traffic arrives on, built
//! over rtnetlink ([`crate::rt`]). The host side is named like the host's interface (`enp4s0f1`, `wg0`, `br-api`) and holds
//! the host's address; the peer side holds a source address of the probed network. The
//! ruleset is committed there over netlink as on the host, a TCP listener (or a UDP echo)
//! waits on the probed port, and the peer connects. Other tables of the host are not
//! copied: the replica judges our ruleset only.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use ipnet::IpNet;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::apply::{self, ApplyError};
use crate::ir::{L4, Ruleset};
use crate::rt::{Rt, RtError};
use crate::txn::Transaction;

/// One packet path to probe: traffic from `src` arriving on `iif` for `dst:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The path in words (`SSH tcp/22 from 192.168.1.2 (network 192.168.1.0/24) on enp4s0f1
    /// to 192.168.1.1`).
    pub what: String,
    /// The host interface the traffic arrives on (the replica's interface gets this name).
    pub iif: String,
    /// The source address.
    pub src: IpAddr,
    /// The network the source is in; the replica host routes it back through `iif`.
    pub src_net: IpNet,
    /// The host's address the traffic is for.
    pub dst: IpAddr,
    /// TCP (a connect must complete) or UDP (a datagram must be echoed).
    pub proto: L4,
    /// The destination port.
    pub port: u16,
}

/// Errors setting the replica up (the probe could not run; nothing was judged).
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// A private network namespace could not be created (needs CAP_SYS_ADMIN, and a unit
    /// that allows network namespaces).
    #[error("cannot create a private network namespace for the replica")]
    CreateNamespace(#[source] io::Error),
    /// Building the replica's links, addresses or routes failed.
    #[error("cannot build the replica")]
    Setup(#[from] RtError),
    /// The ruleset could not be committed in the replica.
    #[error("cannot commit the ruleset in the replica")]
    Commit(#[source] Box<ApplyError>),
    /// A listener could not be opened in the replica.
    #[error("cannot listen on {proto}/{port} in the replica")]
    Listen {
        /// `tcp` or `udp`.
        proto: &'static str,
        /// The port.
        port: u16,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A replica thread ended without answering.
    #[error("a replica thread ended unexpectedly")]
    Thread,
}

/// How long a fresh veth may take to carry packets.
const LINK_UP_WITHIN: Duration = Duration::from_secs(3);

/// The host route of an address (`/32`, `/128`).
fn host_net(a: IpAddr) -> IpNet {
    IpNet::from(a)
}

fn unshare_net() -> Result<(), ReplicaError> {
    // SAFETY: unshare(2) with CLONE_NEWNET moves only the calling thread into a new network
    // namespace; it takes no pointers.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        return Err(ReplicaError::CreateNamespace(io::Error::last_os_error()));
    }
    Ok(Rt::open()?.set_up("lo")?)
}

/// Whether the replica can run in the calling thread (and the threads it starts): a thread
/// of its own tries `unshare(CLONE_NEWNET)` and ends, its namespace with it.
///
/// Trying is the only reliable answer. A look at the capability set would miss
/// `RestrictNamespaces=yes`: systemd enforces it with a seccomp filter that makes
/// `unshare(2)` fail with EPERM whatever the capabilities, and a security module can deny
/// it too. The attempt costs one empty namespace (about 2 ms; the kernel frees it in the
/// background) and runs no command.
pub fn available() -> Result<(), ReplicaError> {
    std::thread::Builder::new()
        .name("fw-replica-check".into())
        .spawn(|| {
            // SAFETY: as in `unshare_net`: only this short-lived thread moves.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(ReplicaError::CreateNamespace(io::Error::last_os_error()));
            }
            Ok(())
        })
        .map_err(|_| ReplicaError::Thread)?
        .join()
        .map_err(|_| ReplicaError::Thread)?
}

/// CAP_SYS_ADMIN's bit in the capability sets (`linux/capability.h`).
const CAP_SYS_ADMIN_BIT: u32 = 21;

/// True when the calling thread has CAP_SYS_ADMIN in its effective set (`CapEff` in
/// `/proc/thread-self/status`); false when it cannot tell.
fn has_cap_sys_admin() -> bool {
    std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
            u64::from_str_radix(hex, 16).ok()
        })
        .is_some_and(|eff| eff & (1 << CAP_SYS_ADMIN_BIT) != 0)
}

/// Why the calling thread may not create network namespaces, in words for the admin (after
/// [`available`] failed).
pub fn denied_because() -> &'static str {
    if has_cap_sys_admin() {
        "edge-fw may not create network namespaces (RestrictNamespaces=yes in its unit, or a \
         security module)"
    } else {
        "edge-fw has no CAP_SYS_ADMIN (the shipped unit's CapabilityBoundingSet=CAP_NET_ADMIN \
         and RestrictNamespaces=yes deny network namespaces)"
    }
}

/// The interfaces of the paths, in first-seen order; the peer side of interface `i` is `p<i>`.
fn interfaces(paths: &[Path]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for p in paths {
        if !v.contains(&p.iif) {
            v.push(p.iif.clone());
        }
    }
    v
}

/// Host side: veths into the peer (by the peer thread's id), addresses, routes back to the
/// sources, the ruleset, listeners.
fn build_host(
    rs: &Ruleset,
    paths: &[Path],
    peer_tid: i32,
) -> Result<(Vec<TcpListener>, Vec<UdpSocket>), ReplicaError> {
    let mut rt = Rt::open()?;
    let ifaces = interfaces(paths);
    for (i, name) in ifaces.iter().enumerate() {
        rt.add_veth(name, &format!("p{i}"), peer_tid.unsigned_abs())?;
        rt.set_up(name)?;
    }
    let mut done: Vec<(String, IpNet)> = Vec::new();
    for p in paths {
        let addr = (p.iif.clone(), host_net(p.dst));
        if !done.contains(&addr) {
            rt.add_address(&p.iif, addr.1)?;
            done.push(addr);
        }
        rt.replace_route(p.src_net, &p.iif)?;
    }
    // The same transaction as on the host, committed through a socket of this namespace.
    let commit = || -> Result<(), ApplyError> {
        let sock = crate::nfnl::Socket::open()?;
        let tx = Transaction::replace(&crate::lower::ruleset(rs), &Default::default());
        apply::commit(&sock, &tx, true).map(|_| ())
    };
    commit().map_err(|e| ReplicaError::Commit(Box::new(e)))?;
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    let mut ports: Vec<(L4, u16)> = paths.iter().map(|p| (p.proto, p.port)).collect();
    ports.sort();
    ports.dedup();
    for (proto, port) in ports {
        // `[::]` takes IPv4 too (bindv6only is 0 in a fresh namespace).
        let any = SocketAddr::from(([0u16; 8], port));
        match proto {
            L4::Tcp => tcp.push(
                TcpListener::bind(any).map_err(|source| ReplicaError::Listen {
                    proto: "tcp",
                    port,
                    source,
                })?,
            ),
            L4::Udp => {
                let s = UdpSocket::bind(any).map_err(|source| ReplicaError::Listen {
                    proto: "udp",
                    port,
                    source,
                })?;
                s.set_read_timeout(Some(Duration::from_millis(50)))
                    .map_err(|source| ReplicaError::Listen {
                        proto: "udp",
                        port,
                        source,
                    })?;
                udp.push(s);
            }
        }
    }
    Ok((tcp, udp))
}

/// Waits until every interface of one side carries packets (both ends are up by then; the
/// kernel turns their carrier on in a deferred worker, and until it has, a device drops
/// what it is given to send).
fn wait_running(names: impl IntoIterator<Item = String>) -> Result<(), ReplicaError> {
    let mut rt = Rt::open()?;
    for n in names {
        rt.wait_running(&n, LINK_UP_WITHIN)?;
    }
    Ok(())
}

/// Peer side: addresses and routes towards the host's addresses.
fn build_peer(paths: &[Path]) -> Result<(), ReplicaError> {
    let mut rt = Rt::open()?;
    let ifaces = interfaces(paths);
    for i in 0..ifaces.len() {
        rt.set_up(&format!("p{i}"))?;
    }
    let mut done: Vec<IpNet> = Vec::new();
    for p in paths {
        let i = ifaces.iter().position(|n| *n == p.iif).unwrap_or(0);
        let dev = format!("p{i}");
        let a = IpNet::new(p.src, p.src_net.prefix_len()).unwrap_or(IpNet::from(p.src));
        if !done.contains(&a) {
            rt.add_address(&dev, a)?;
            done.push(a);
        }
        rt.replace_route(host_net(p.dst), &dev)?;
    }
    Ok(())
}

/// Sends the probe of one path from the peer side.
fn probe(p: &Path, timeout: Duration) -> Result<(), String> {
    let domain = if p.src.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let (ty, proto) = match p.proto {
        L4::Tcp => (Type::STREAM, Protocol::TCP),
        L4::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let s = Socket::new(domain, ty, Some(proto)).map_err(|e| format!("socket: {e}"))?;
    s.bind(&SockAddr::from(SocketAddr::new(p.src, 0)))
        .map_err(|e| format!("bind {}: {e}", p.src))?;
    let to = SockAddr::from(SocketAddr::new(p.dst, p.port));
    match p.proto {
        L4::Tcp => s
            .connect_timeout(&to, timeout)
            .map_err(|e| format!("connect to {}: {e}", SocketAddr::new(p.dst, p.port))),
        L4::Udp => {
            s.set_read_timeout(Some(timeout))
                .map_err(|e| format!("socket: {e}"))?;
            s.send_to(b"edge-fw replica probe", &to)
                .map_err(|e| format!("send: {e}"))?;
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64];
            s.recv_from(&mut buf)
                .map(|_| ())
                .map_err(|e| format!("no answer from {}: {e}", SocketAddr::new(p.dst, p.port)))
        }
    }
}

/// Commits `rs` in a fresh replica and probes every path; one result per path, in order.
/// `Err` means the replica could not be built (nothing was judged).
pub fn run(
    rs: &Ruleset,
    paths: &[Path],
    timeout: Duration,
) -> Result<Vec<Result<(), String>>, ReplicaError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let (tid_tx, tid_rx) = mpsc::channel::<Result<i32, ReplicaError>>();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let (peer_up_tx, peer_up_rx) = mpsc::channel::<bool>();
    let (go_tx, go_rx) = mpsc::channel::<bool>();
    let finished = Arc::new(AtomicBool::new(false));
    let peer_paths = paths.to_vec();
    // The peer: its own namespace, then the probes once the host side is ready.
    let peer = std::thread::Builder::new()
        .name("fw-replica-peer".into())
        .spawn(move || -> Result<Vec<Result<(), String>>, ReplicaError> {
            if let Err(e) = unshare_net() {
                let _ = tid_tx.send(Err(e));
                return Ok(Vec::new());
            }
            // SAFETY: gettid(2) has no arguments and cannot fail.
            let tid = unsafe { libc::gettid() };
            let _ = tid_tx.send(Ok(tid));
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                _ => return Ok(Vec::new()),
            }
            let built = build_peer(&peer_paths);
            let _ = peer_up_tx.send(built.is_ok());
            built?;
            // Both ends of every link are up: the host side waits for its carriers, then
            // this side for its own.
            if go_rx.recv() != Ok(true) {
                return Ok(Vec::new());
            }
            wait_running((0..interfaces(&peer_paths).len()).map(|i| format!("p{i}")))?;
            Ok(peer_paths.iter().map(|p| probe(p, timeout)).collect())
        })
        .map_err(|_| ReplicaError::Thread)?;
    let peer_tid = match tid_rx.recv() {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            let _ = peer.join();
            return Err(e);
        }
        Err(_) => return Err(ReplicaError::Thread),
    };
    let host_paths = paths.to_vec();
    let rs = rs.clone();
    let stop = finished.clone();
    // The host: its namespace, the ruleset, listeners; echoes UDP until the peer is done.
    let host = std::thread::Builder::new()
        .name("fw-replica-host".into())
        .spawn(move || -> Result<(), ReplicaError> {
            let built = unshare_net().and_then(|()| build_host(&rs, &host_paths, peer_tid));
            let (_tcp, udp) = match built {
                Ok(l) => {
                    let _ = ready_tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return Err(e);
                }
            };
            if peer_up_rx.recv() != Ok(true) {
                return Ok(());
            }
            let running = wait_running(interfaces(&host_paths));
            let _ = go_tx.send(running.is_ok());
            running?;
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::SeqCst) {
                for s in &udp {
                    if let Ok((n, from)) = s.recv_from(&mut buf) {
                        let _ = s.send_to(&buf[..n], from);
                    }
                }
                if udp.is_empty() {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Ok(())
        })
        .map_err(|_| ReplicaError::Thread)?;
    let results = peer.join().map_err(|_| ReplicaError::Thread);
    finished.store(true, Ordering::SeqCst);
    let host = host.join().map_err(|_| ReplicaError::Thread)?;
    host?;
    results?
}
