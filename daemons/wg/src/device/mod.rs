//! I/O: the WireGuard device engine. It owns the TUN queues, the UDP sockets, the peers
//! (one `boringtun::noise::Tunn` each) and the threads that move packets:
//!
//! * [`tx`]: one TX thread per TUN queue: read a (super-)packet, split it (GSO), encrypt
//!   every segment into a send batch, and send equal-size runs with UDP GSO / `sendmmsg`;
//! * [`rx`]: one RX thread per UDP socket: `recvmmsg` with UDP GRO, decrypt, coalesce TCP
//!   segments (GRO) and write super-packets to the TUN;
//! * [`timers`]: one timer thread: boringtun timers, persistent keepalive, rate-limiter reset;
//! * [`apply`]: configuration, [`Device::apply`];
//! * this module: the device state.
//!
//! A flow always maps to one TUN queue (kernel flow hash) and one UDP socket, so a flow
//! is handled by one thread in each direction and never reordered. Configuration goes
//! through [`Device::apply`], which validates and binds first and then swaps state under
//! the write lock; nothing in it can panic while the lock is held.

mod apply;
mod rx;
mod standby;
mod timers;
mod tx;

pub use standby::PairState;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use parking_lot::{Mutex, RwLock};
use tracing::{debug, warn};

use crate::allowed_ips::AllowedIps;
use crate::endpoints::LiveEndpoint;
use crate::model::{DeviceConfig, Key};
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
        let dev = Arc::new(Device::new(
            name,
            tun.into_iter().map(Arc::new).collect(),
            opts.forced_rekey,
            false,
            rand::random::<u32>() & PEER_INDEX_MASK,
        ));
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
            .map(|p| PeerMetrics {
                public_key: p.public_key.to_base64(),
                name: p.name.clone(),
                counts: p.counters.snapshot(),
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
        Arc::new(Device::new(name, Vec::new(), None, true, 1))
    }

    /// A device with an empty configuration (no key, no peers, nothing bound) and no
    /// threads yet; `next_index` is the first peer's session index prefix.
    fn new(
        name: &str,
        tun: Vec<Arc<TunQueue>>,
        forced_rekey: Option<Duration>,
        detached: bool,
        next_index: u32,
    ) -> Device {
        Device {
            name: name.to_string(),
            state: RwLock::new(State {
                config: DeviceConfig::default(),
                keys: None,
                peers: HashMap::new(),
                by_index: HashMap::new(),
                table: AllowedIps::new(),
                next_index,
            }),
            sockets: RwLock::new(Arc::new(Sockets {
                v4: None,
                v6: None,
                port: 0,
                generation: 0,
            })),
            tun,
            shutdown: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            endpoint_epoch: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            counters: DeviceCounters::default(),
            epoch: Instant::now(),
            forced_rekey,
            detached,
            pair: PairState::default(),
        }
    }
}
