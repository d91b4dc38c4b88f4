//! I/O: the WireGuard device engine. It owns the TUN queues, the UDP sockets, the peers
//! (one `boringtun::noise::Tunn` each) and the threads that move packets:
//!
//! * [`tx`]: one TX thread per TUN queue: read a (super-)packet, split it (GSO), encrypt
//!   every segment into a send batch, and send equal-size runs with UDP GSO / `sendmmsg`;
//! * [`rx`]: one RX thread per UDP socket: `recvmmsg` with UDP GRO, decrypt, coalesce TCP
//!   segments (GRO) and write super-packets to the TUN;
//! * [`timers`]: one timer thread: boringtun timers, persistent keepalive, rate-limiter reset;
//! * this module: the device state and [`Device::apply`].
//!
//! A flow always maps to one TUN queue (kernel flow hash) and one UDP socket, so a flow
//! is handled by one thread in each direction and never reordered. Configuration goes
//! through [`Device::apply`], which validates and binds first and then swaps state under
//! the write lock; nothing in it can panic while the lock is held.

mod rx;
mod standby;
mod timers;
mod tx;

pub use standby::PairState;

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use parking_lot::{Mutex, RwLock};
use tracing::{debug, info, warn};

use crate::allowed_ips::AllowedIps;
use crate::diff::PeerDiff;
use crate::endpoints::LiveEndpoint;
use crate::model::{DeviceConfig, Key, PeerConfig, SecretKey};
use crate::proto::{HANDSHAKE_INIT_LEN, PEER_INDEX_MASK};
use crate::stats::{DeviceCounters, DropReason, MetricsSnapshot, PeerCounters, PeerMetrics};
use crate::tun::TunQueue;
use crate::uapi::{DeviceStatus, PeerStatus};
use crate::udp::{UdpError, UdpSocket};

/// Handshake messages per second before we answer with cookies. Every handshake message
/// is checked twice (here, and inside `Tunn::decapsulate`, which shares the limiter), so
/// this is twice the effective rate.
const HANDSHAKE_RATE_LIMIT: u64 = 100;
/// Timer tick.
const TICK: Duration = Duration::from_millis(100);

/// How the engine runs, chosen by `main`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Test only: force a new handshake with every peer this often (`--test-rekey-secs`),
    /// instead of boringtun's 120 s, so that tests see rekeys under traffic.
    pub forced_rekey: Option<Duration>,
}

/// Errors of applying a configuration.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// Binding the new listen port failed; the old sockets stay.
    #[error("failed to bind listen port {port}")]
    BindPort {
        /// The requested port.
        port: u16,
        /// The cause.
        #[source]
        source: UdpError,
    },
    /// Setting the fwmark failed.
    #[error("failed to set fwmark {mark:#x}")]
    SetFwmark {
        /// The mark.
        mark: u32,
        /// The cause.
        #[source]
        source: UdpError,
    },
    /// Starting a worker thread failed.
    #[error("failed to start thread {name}")]
    SpawnThread {
        /// Thread name.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl DeviceError {
    /// The errno the UAPI reports for this error.
    pub fn errno(&self) -> i32 {
        match self {
            DeviceError::BindPort { source, .. } | DeviceError::SetFwmark { source, .. } => {
                match source {
                    UdpError::Bind { source, .. }
                    | UdpError::CreateSocket { source, .. }
                    | UdpError::SetFwmark { source, .. } => {
                        source.raw_os_error().unwrap_or(libc::EIO)
                    }
                }
            }
            DeviceError::SpawnThread { .. } => libc::EIO,
        }
    }
}

/// One peer: its noise state, live endpoint and counters.
pub struct Peer {
    /// The peer's public key.
    pub public_key: Key,
    /// Optional configured name.
    pub name: Option<String>,
    /// 24-bit session index prefix (boringtun shifts it left by 8).
    index: u32,
    tunn: Mutex<Option<Tunn>>,
    endpoint: RwLock<Option<SocketAddr>>,
    keepalive: AtomicU16,
    last_keepalive: Mutex<Instant>,
    expired: AtomicBool,
    /// When the first initiation since the last completed handshake was sent, in ms since
    /// the device started, plus one (0 = none outstanding).
    unanswered_since: AtomicU64,
    /// Counters exported as metrics.
    pub counters: PeerCounters,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("public_key", &self.public_key)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Peer {
    fn endpoint(&self) -> Option<SocketAddr> {
        *self.endpoint.read()
    }

    /// Moves the endpoint to `src` after an authenticated packet came from there; true
    /// when it moved.
    fn roam(&self, src: SocketAddr) -> bool {
        if self.endpoint() == Some(src) {
            return false;
        }
        let mut ep = self.endpoint.write();
        if *ep == Some(src) {
            return false;
        }
        debug!(peer = ?self.public_key, from = ?*ep, to = %src, "endpoint changed");
        *ep = Some(src);
        self.counters
            .endpoint_changes
            .fetch_add(1, Ordering::Relaxed);
        true
    }
}

struct Keys {
    secret: StaticSecret,
    public: PublicKey,
    limiter: Arc<RateLimiter>,
}

struct State {
    config: DeviceConfig,
    keys: Option<Keys>,
    peers: HashMap<Key, Arc<Peer>>,
    by_index: HashMap<u32, Arc<Peer>>,
    table: AllowedIps<Arc<Peer>>,
    next_index: u32,
}

#[derive(Debug)]
struct Sockets {
    v4: Option<Arc<UdpSocket>>,
    v6: Option<Arc<UdpSocket>>,
    port: u16,
    generation: u64,
}

impl Sockets {
    fn for_addr(&self, a: &SocketAddr) -> Option<&Arc<UdpSocket>> {
        if a.is_ipv4() {
            self.v4.as_ref()
        } else {
            self.v6.as_ref()
        }
    }
}

/// The running device.
pub struct Device {
    name: String,
    state: RwLock<State>,
    sockets: RwLock<Arc<Sockets>>,
    tun: Vec<Arc<TunQueue>>,
    shutdown: AtomicBool,
    generation: AtomicU64,
    /// Bumped whenever a live endpoint may have changed (roaming, reconfiguration), so
    /// that the daemon persists endpoints only when they move.
    endpoint_epoch: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Device-wide counters.
    pub counters: DeviceCounters,
    /// When the device started: the origin of the peers' `unanswered_since`.
    epoch: Instant,
    forced_rekey: Option<Duration>,
    /// No sockets, no threads: packets are fed by hand (fuzzing).
    detached: bool,
    /// Two hosts under keepalived: standby, the listen address, reaching out.
    pair: PairState,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Bound IPv4 and IPv6 sockets and the port they share.
type SocketPair = (Option<Arc<UdpSocket>>, Option<Arc<UdpSocket>>, u16);

fn bind_pair(port: u16, fwmark: u32, v4_addr: Option<Ipv4Addr>) -> Result<SocketPair, UdpError> {
    let v4 = match v4_addr {
        Some(a) => UdpSocket::bind_on(a.into(), port, fwmark)?,
        None => UdpSocket::bind(false, port, fwmark)?,
    };
    let port = v4.local_port().unwrap_or(port);
    // IPv6 is best effort: a host without IPv6 still gets an IPv4 endpoint.
    let v6 = match UdpSocket::bind(true, port, fwmark) {
        Ok(s) => Some(Arc::new(s)),
        Err(e) => {
            warn!(error = %e, "no ipv6 udp socket");
            None
        }
    };
    Ok((Some(Arc::new(v4)), v6, port))
}

impl Device {
    /// Starts the engine on already opened TUN queues with an empty configuration
    /// (no key, no peers, port 0 = not bound until configured).
    pub fn start(
        name: &str,
        tun: Vec<TunQueue>,
        opts: &Options,
    ) -> Result<Arc<Device>, DeviceError> {
        if let Some(every) = opts.forced_rekey {
            // Said loudly, so that it is never left on unnoticed in production.
            warn!(
                every_s = every.as_secs(),
                "--test-rekey-secs is set: every session is re-keyed this often (a test option; never use it in production)"
            );
        }
        let dev = Arc::new(Device {
            name: name.to_string(),
            state: RwLock::new(State {
                config: DeviceConfig::default(),
                keys: None,
                peers: HashMap::new(),
                by_index: HashMap::new(),
                table: AllowedIps::new(),
                next_index: rand::random::<u32>() & PEER_INDEX_MASK,
            }),
            sockets: RwLock::new(Arc::new(Sockets {
                v4: None,
                v6: None,
                port: 0,
                generation: 0,
            })),
            tun: tun.into_iter().map(Arc::new).collect(),
            shutdown: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            endpoint_epoch: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            counters: DeviceCounters::default(),
            epoch: Instant::now(),
            forced_rekey: opts.forced_rekey,
            detached: false,
            pair: PairState::default(),
        });
        for i in 0..dev.tun.len() {
            let d = dev.clone();
            dev.spawn(format!("wg-tx{i}"), move || d.tx_loop(i))?;
        }
        let d = dev.clone();
        dev.spawn("wg-timer".into(), move || d.timer_loop())?;
        Ok(dev)
    }

    fn spawn(&self, name: String, f: impl FnOnce() + Send + 'static) -> Result<(), DeviceError> {
        let h = std::thread::Builder::new()
            .name(name.clone())
            .spawn(f)
            .map_err(|source| DeviceError::SpawnThread { name, source })?;
        self.threads.lock().push(h);
        Ok(())
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration currently applied.
    pub fn config(&self) -> DeviceConfig {
        self.state.read().config.clone()
    }

    /// A counter that changes whenever a peer's live endpoint may have changed.
    pub fn endpoint_epoch(&self) -> u64 {
        self.endpoint_epoch.load(Ordering::Relaxed)
    }

    /// Every peer's configured and live endpoint.
    pub fn live_endpoints(&self) -> Vec<LiveEndpoint> {
        let st = self.state.read();
        st.config
            .peers
            .values()
            .filter_map(|pc| {
                let p = st.peers.get(&pc.public_key)?;
                Some(LiveEndpoint {
                    public_key: pc.public_key,
                    name: pc.name.clone(),
                    configured: pc.endpoint,
                    live: p.endpoint(),
                })
            })
            .collect()
    }

    /// Gives peers that have no live endpoint yet the endpoint remembered for them (from
    /// an earlier run); returns how many were given one.
    pub fn seed_endpoints(&self, hints: &[(Key, SocketAddr)]) -> usize {
        let st = self.state.read();
        let mut n = 0;
        for (k, ep) in hints {
            let Some(p) = st.peers.get(k) else { continue };
            let mut live = p.endpoint.write();
            if live.is_none() {
                *live = Some(*ep);
                n += 1;
            }
        }
        n
    }

    /// Sends a handshake initiation now to each of these peers that has a live endpoint
    /// (instead of waiting for traffic); boringtun's timers retry it every 5 s for 90 s
    /// when unanswered. Returns how many were sent (none on standby).
    pub fn initiate_handshakes(&self, keys: &[Key]) -> usize {
        if self.standby() {
            return 0;
        }
        let socks = self.sockets.read().clone();
        let peers: Vec<Arc<Peer>> = {
            let st = self.state.read();
            keys.iter()
                .filter_map(|k| st.peers.get(k).cloned())
                .collect()
        };
        let mut buf = [0u8; HANDSHAKE_INIT_LEN];
        let mut sent = 0;
        for p in peers {
            let Some(ep) = p.endpoint() else { continue };
            let mut guard = p.tunn.lock();
            let Some(t) = guard.as_mut() else { continue };
            let len = match t.format_handshake_initiation(&mut buf, false) {
                TunnResult::WriteToNetwork(pkt) => pkt.len(),
                _ => continue,
            };
            drop(guard);
            self.initiation_sent(&p);
            debug!(peer = ?p.public_key, endpoint = %ep, "handshake initiated");
            self.send_one(&socks, &buf[..len], ep);
            sent += 1;
        }
        sent
    }

    /// Counts a handshake initiation sent to `p` and, if none was outstanding, notes when
    /// the peer started not answering.
    fn initiation_sent(&self, p: &Peer) {
        p.counters
            .handshake_attempts
            .fetch_add(1, Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let _ = p
            .unanswered_since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Notes a completed handshake with `p`: nothing is outstanding any more.
    fn handshake_completed(&self, p: &Peer) {
        p.unanswered_since.store(0, Ordering::Relaxed);
    }

    /// Peers whose handshake initiations have gone unanswered, and for how long since the
    /// first of them (the daemon looks up a DNS endpoint again when this passes
    /// Rekey-Timeout, instead of on a timer).
    pub fn unanswered_handshakes(&self) -> Vec<(Key, Duration)> {
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        self.state
            .read()
            .peers
            .values()
            .filter_map(|p| {
                let since = p.unanswered_since.load(Ordering::Relaxed);
                (since != 0).then(|| {
                    (
                        p.public_key,
                        Duration::from_millis(now.saturating_sub(since)),
                    )
                })
            })
            .collect()
    }

    /// Records that an authenticated packet of `peer` came from `src`.
    fn roamed(&self, peer: &Peer, src: SocketAddr) {
        if peer.roam(src) {
            self.endpoint_epoch.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stops every thread and waits for them.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let hs: Vec<_> = std::mem::take(&mut *self.threads.lock());
        for h in hs {
            let _ = h.join();
        }
    }

    /// Applies a new configuration: binds a changed port first (an error leaves
    /// everything as it was), then updates keys and peers under the write lock.
    /// Peers that did not change keep their sessions. `force_endpoints` resets the live
    /// endpoint of these peers even when the configured one did not change (UAPI `set`).
    pub fn apply(
        self: &Arc<Self>,
        new: &DeviceConfig,
        force_endpoints: &[(Key, SocketAddr)],
    ) -> Result<PeerDiff, DeviceError> {
        self.apply_with(|_| new.clone(), force_endpoints)
    }

    /// Applies a UAPI `set` transaction; the new configuration is computed from the
    /// current one under the same lock, so concurrent changes cannot be lost.
    pub fn apply_set(
        self: &Arc<Self>,
        req: &crate::uapi::SetRequest,
    ) -> Result<PeerDiff, DeviceError> {
        let forced: Vec<(Key, SocketAddr)> = req
            .peers
            .iter()
            .filter(|p| !p.remove)
            .filter_map(|p| p.endpoint.map(|e| (p.public_key, e)))
            .collect();
        self.apply_with(|old| crate::uapi::apply_set(old, req), &forced)
    }

    fn apply_with(
        self: &Arc<Self>,
        make: impl FnOnce(&DeviceConfig) -> DeviceConfig,
        force_endpoints: &[(Key, SocketAddr)],
    ) -> Result<PeerDiff, DeviceError> {
        let mut st = self.state.write();
        let new_cfg = make(&st.config);
        let new = &new_cfg;
        let diff = PeerDiff::new(&st.config, new);
        // 1. Fallible work first, nothing changed yet.
        let cur = self.sockets.read().clone();
        let fwmark = new.fwmark;
        // Re-bind only when nothing is bound yet or a different, explicit port is asked for.
        let rebind = !self.detached && cur.v4.is_none()
            || (diff.listen_port.is_some() && new.listen_port != 0 && new.listen_port != cur.port);
        let new_sockets = if rebind {
            let (v4, v6, port) = bind_pair(new.listen_port, fwmark, self.pair.listen_v4())
                .map_err(|source| DeviceError::BindPort {
                    port: new.listen_port,
                    source,
                })?;
            Some(Sockets {
                v4,
                v6,
                port,
                generation: self.generation.fetch_add(1, Ordering::SeqCst) + 1,
            })
        } else {
            None
        };
        if let (None, Some(m)) = (&new_sockets, diff.fwmark) {
            for s in [&cur.v4, &cur.v6].into_iter().flatten() {
                s.set_fwmark(m)
                    .map_err(|source| DeviceError::SetFwmark { mark: m, source })?;
            }
        }
        // 2. Infallible changes.
        if let Some(k) = diff.private_key {
            self.set_private_key(&mut st, k);
        }
        for k in &diff.removed {
            if let Some(p) = st.peers.remove(k) {
                st.by_index.remove(&p.index);
                st.table.retain(|v| !Arc::ptr_eq(v, &p));
                info!(peer = %k.to_base64(), "peer removed");
            }
        }
        for pc in &diff.added {
            self.add_peer(&mut st, pc);
            info!(peer = %pc.public_key.to_base64(), "peer added");
        }
        for c in &diff.changed {
            let Some(p) = st.peers.get(&c.public_key).cloned() else {
                continue;
            };
            if let Some(ep) = c.endpoint {
                *p.endpoint.write() = ep;
                // A new address: its silence is counted from the next initiation on.
                p.unanswered_since.store(0, Ordering::Relaxed);
            }
            if let Some(ka) = c.persistent_keepalive {
                p.keepalive.store(ka, Ordering::Relaxed);
            }
            if let Some(psk) = c.preshared_key {
                // boringtun fixes the PSK at Tunn creation: a new Tunn (same index) takes
                // it; the next packet starts a handshake that uses it.
                let t = st.keys.as_ref().map(|k| {
                    Tunn::new(
                        k.secret.clone(),
                        PublicKey::from(p.public_key.0),
                        psk.map(|s| s.0.0),
                        None,
                        p.index,
                        Some(k.limiter.clone()),
                    )
                });
                *p.tunn.lock() = t;
            }
            if let Some(ips) = &c.allowed_ips {
                st.table.retain(|v| !Arc::ptr_eq(v, &p));
                for n in ips {
                    st.table.insert(*n, p.clone());
                }
            }
            info!(peer = %c.public_key.to_base64(), "peer changed");
        }
        for (k, ep) in force_endpoints {
            if let Some(p) = st.peers.get(k) {
                *p.endpoint.write() = Some(*ep);
            }
        }
        let mut cfg = new.clone();
        // An allowed IP belongs to one peer only: the last one given it wins.
        let owners: Vec<(Key, Vec<ipnet::IpNet>)> = cfg
            .peers
            .values()
            .map(|p| (p.public_key, p.allowed_ips.clone()))
            .collect();
        for (k, ips) in owners {
            for n in ips {
                let Some(owner) = st.table.get_exact(n) else {
                    continue;
                };
                if owner.public_key != k
                    && let Some(p) = cfg.peers.get_mut(&k)
                {
                    p.allowed_ips.retain(|x| *x != n);
                }
            }
        }
        if let Some(s) = new_sockets {
            info!(
                port = s.port,
                gso = s.v4.as_ref().is_some_and(|x| x.gso()),
                gro = s.v4.as_ref().is_some_and(|x| x.gro()),
                "udp sockets bound"
            );
            cfg.listen_port = new.listen_port;
            let s = Arc::new(s);
            *self.sockets.write() = s.clone();
            for (fam, sock) in [("v4", &s.v4), ("v6", &s.v6)] {
                if let Some(sock) = sock.clone() {
                    let d = self.clone();
                    let generation = s.generation;
                    // A failed spawn leaves that family without receive; report, go on.
                    if let Err(e) =
                        self.spawn(format!("wg-rx{fam}"), move || d.rx_loop(sock, generation))
                    {
                        warn!(error = %e, "rx thread not started");
                    }
                }
            }
        }
        st.config = cfg;
        self.endpoint_epoch.fetch_add(1, Ordering::Relaxed);
        Ok(diff)
    }

    fn set_private_key(&self, st: &mut State, k: Option<SecretKey>) {
        match k {
            None => {
                st.keys = None;
                for p in st.peers.values() {
                    *p.tunn.lock() = None;
                }
            }
            Some(sk) => {
                let secret = StaticSecret::from(sk.0.0);
                let public = PublicKey::from(&secret);
                let limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT));
                for p in st.peers.values() {
                    let mut t = p.tunn.lock();
                    match t.as_mut() {
                        Some(t) => {
                            t.set_static_private(secret.clone(), public, Some(limiter.clone()))
                        }
                        None => {
                            let psk = st
                                .config
                                .peers
                                .get(&p.public_key)
                                .and_then(|c| c.preshared_key);
                            *t = Some(Tunn::new(
                                secret.clone(),
                                PublicKey::from(p.public_key.0),
                                psk.map(|s| s.0.0),
                                None,
                                p.index,
                                Some(limiter.clone()),
                            ));
                        }
                    }
                }
                st.keys = Some(Keys {
                    secret,
                    public,
                    limiter,
                });
            }
        }
    }

    fn add_peer(&self, st: &mut State, pc: &PeerConfig) {
        let mut index = st.next_index & PEER_INDEX_MASK;
        while st.by_index.contains_key(&index) {
            index = (index + 1) & PEER_INDEX_MASK;
        }
        st.next_index = index + 1;
        let tunn = st.keys.as_ref().map(|k| {
            Tunn::new(
                k.secret.clone(),
                PublicKey::from(pc.public_key.0),
                pc.preshared_key.map(|s| s.0.0),
                None,
                index,
                Some(k.limiter.clone()),
            )
        });
        let p = Arc::new(Peer {
            public_key: pc.public_key,
            name: pc.name.clone(),
            index,
            tunn: Mutex::new(tunn),
            endpoint: RwLock::new(pc.endpoint),
            keepalive: AtomicU16::new(pc.persistent_keepalive),
            last_keepalive: Mutex::new(Instant::now()),
            expired: AtomicBool::new(false),
            unanswered_since: AtomicU64::new(0),
            counters: PeerCounters::default(),
        });
        for n in &pc.allowed_ips {
            st.table.insert(*n, p.clone());
        }
        st.by_index.insert(index, p.clone());
        st.peers.insert(pc.public_key, p);
    }

    /// The live state, as `wg show` reports it.
    pub fn status(&self) -> DeviceStatus {
        let st = self.state.read();
        let socks = self.sockets.read().clone();
        let now = SystemTime::now();
        let mut peers: Vec<PeerStatus> = st
            .config
            .peers
            .values()
            .filter_map(|pc| {
                let p = st.peers.get(&pc.public_key)?;
                let ms = p.counters.last_handshake_ms.load(Ordering::Relaxed);
                // Prefer the live value: boringtun knows the session's age.
                let since = p
                    .tunn
                    .lock()
                    .as_ref()
                    .and_then(|t| t.time_since_last_handshake());
                let last = match since.and_then(|d| now.checked_sub(d)) {
                    Some(t) => t.duration_since(UNIX_EPOCH).unwrap_or_default(),
                    None if ms > 0 => Duration::from_millis(ms),
                    None => Duration::ZERO,
                };
                Some(PeerStatus {
                    name: pc.name.clone(),
                    public_key: pc.public_key.to_base64(),
                    preshared_key: pc.preshared_key.map(|k| k.0.0),
                    endpoint: p.endpoint(),
                    last_handshake: (last.as_secs(), last.subsec_nanos()),
                    tx_bytes: p.counters.tx_bytes.load(Ordering::Relaxed),
                    rx_bytes: p.counters.rx_bytes.load(Ordering::Relaxed),
                    persistent_keepalive: p.keepalive.load(Ordering::Relaxed),
                    allowed_ips: pc.allowed_ips.clone(),
                })
            })
            .collect();
        peers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        DeviceStatus {
            interface: self.name.clone(),
            private_key: st.config.private_key.map(|k| k.0.0),
            public_key: st.config.public_key().map(|k| k.to_base64()),
            listen_port: socks.port,
            fwmark: st.config.fwmark,
            peers,
        }
    }

    /// A copy of every counter, for metrics.
    pub fn metrics(&self) -> MetricsSnapshot {
        let st = self.state.read();
        let mut peers: Vec<PeerMetrics> = st
            .peers
            .values()
            .map(|p| {
                let c = &p.counters;
                PeerMetrics {
                    public_key: p.public_key.to_base64(),
                    name: p.name.clone(),
                    rx_bytes: c.rx_bytes.load(Ordering::Relaxed),
                    tx_bytes: c.tx_bytes.load(Ordering::Relaxed),
                    handshake_attempts: c.handshake_attempts.load(Ordering::Relaxed),
                    handshake_failures: c.handshake_failures.load(Ordering::Relaxed),
                    endpoint_changes: c.endpoint_changes.load(Ordering::Relaxed),
                    last_handshake_seconds: c.last_handshake_ms.load(Ordering::Relaxed) / 1000,
                }
            })
            .collect();
        peers.sort_by(|a, b| a.public_key.cmp(&b.public_key));
        MetricsSnapshot {
            peers,
            cookie_replies: self.counters.cookie_replies.load(Ordering::Relaxed),
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.label().to_string(), self.counters.drops(*r)))
                .collect(),
        }
    }

    fn send_one(&self, socks: &Sockets, buf: &[u8], dst: SocketAddr) {
        match socks.for_addr(&dst) {
            Some(s) => {
                if s.send_to(buf, dst).is_err() {
                    self.counters.drop(DropReason::UdpSend);
                }
            }
            None => self.counters.drop(DropReason::NoEndpoint),
        }
    }

    /// A device with no TUN, no sockets and no threads, for feeding datagrams by hand
    /// ([`Device::feed_datagram`]); used by the fuzz targets.
    pub fn detached(name: &str) -> Arc<Device> {
        Arc::new(Device {
            name: name.to_string(),
            state: RwLock::new(State {
                config: DeviceConfig::default(),
                keys: None,
                peers: HashMap::new(),
                by_index: HashMap::new(),
                table: AllowedIps::new(),
                next_index: 1,
            }),
            sockets: RwLock::new(Arc::new(Sockets {
                v4: None,
                v6: None,
                port: 0,
                generation: 0,
            })),
            tun: Vec::new(),
            shutdown: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            endpoint_epoch: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            counters: DeviceCounters::default(),
            epoch: Instant::now(),
            forced_rekey: None,
            detached: true,
            pair: PairState::default(),
        })
    }
}
