//! I/O: the engine's part in a pair of hosts under keepalived (`[ha]`).
//!
//! * A BACKUP (or FAULT) host is on **standby**: it sends nothing of its own accord — no
//!   handshake initiation, no keepalive, nothing from its TUN — and only answers what
//!   reaches it. Two hosts with the same key initiating to the same peer would fight for it.
//! * The master **listens on the virtual address** the ISP router forwards to, so that what
//!   it sends leaves from there (bound with `IP_FREEBIND`: the address is keepalived's and
//!   comes and goes with the role).
//! * The master **reaches out**: a roaming peer's endpoint is known only to the host it last
//!   talked to. After a failover the peer keeps sending data of a session the new master
//!   does not hold; the new master answers the source of such a packet with a handshake
//!   initiation — for the peer whose endpoint it is, or else for each peer without a
//!   current session (a wrong peer's initiation fails its mac1 check there and is dropped).
//!   At most once a second per source, at most [`REACH_OUT_PEERS`] peers each time.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use boringtun::noise::TunnResult;
use parking_lot::{Mutex, RwLock};
use tracing::{debug, info};

use super::{Device, Peer, Sockets};
use crate::proto::HANDSHAKE_INIT_LEN;

/// How often one source may be reached out to.
const REACH_OUT_EVERY: Duration = Duration::from_secs(1);
/// How many sources are remembered for that limit (beyond it, new sources wait).
const REACH_OUT_SOURCES: usize = 64;
/// How many peers one source is offered at most.
pub const REACH_OUT_PEERS: usize = 8;
/// A session older than this is not current (WireGuard's Reject-After-Time).
const REJECT_AFTER: Duration = Duration::from_secs(180);

/// The engine's pair state.
#[derive(Debug, Default)]
pub struct PairState {
    standby: AtomicBool,
    reach_out: AtomicBool,
    listen_v4: RwLock<Option<Ipv4Addr>>,
    recent: Mutex<HashMap<SocketAddr, Instant>>,
    /// Handshake initiations sent by reaching out.
    pub reached_out: AtomicU64,
}

impl PairState {
    pub(super) fn listen_v4(&self) -> Option<Ipv4Addr> {
        *self.listen_v4.read()
    }
}

impl Device {
    /// The IPv4 address to listen on instead of every address (the pair's virtual address).
    /// Takes effect when the sockets are bound: set it before the first configuration.
    pub fn set_listen_address(&self, a: Option<Ipv4Addr>) {
        *self.pair.listen_v4.write() = a;
    }

    /// The IPv4 address the sockets listen on, when not every address.
    pub fn listen_address(&self) -> Option<Ipv4Addr> {
        self.pair.listen_v4()
    }

    /// Standby (BACKUP, FAULT) or active (master, single host). Returns true when it changed.
    pub fn set_standby(&self, on: bool) -> bool {
        let was = self.pair.standby.swap(on, Ordering::SeqCst);
        if was != on {
            info!(
                standby = on,
                "{}",
                if on {
                    "standby: no handshake initiation, keepalive or data is sent; what arrives is answered"
                } else {
                    "active: this host initiates handshakes and sends to peers"
                }
            );
        }
        was != on
    }

    /// True while on standby.
    pub fn standby(&self) -> bool {
        self.pair.standby.load(Ordering::Relaxed)
    }

    /// Whether data of an unknown session is answered with a handshake initiation (a host
    /// of a pair).
    pub fn set_reach_out(&self, on: bool) {
        self.pair.reach_out.store(on, Ordering::Relaxed);
    }

    /// Handshake initiations sent by reaching out so far.
    pub fn reached_out(&self) -> u64 {
        self.pair.reached_out.load(Ordering::Relaxed)
    }

    /// A data packet from `src` of a session no peer holds: reach out to `src` (see the
    /// module documentation). Returns how many initiations were sent.
    pub(super) fn reach_out(&self, src: SocketAddr, socks: &Sockets) -> usize {
        if self.standby() || !self.pair.reach_out.load(Ordering::Relaxed) {
            return 0;
        }
        {
            let now = Instant::now();
            let mut recent = self.pair.recent.lock();
            recent.retain(|_, t| now.duration_since(*t) < REACH_OUT_EVERY);
            if recent.contains_key(&src) || recent.len() >= REACH_OUT_SOURCES {
                return 0;
            }
            recent.insert(src, now);
        }
        let targets: Vec<Arc<Peer>> = {
            let st = self.state.read();
            let owners: Vec<Arc<Peer>> = st
                .peers
                .values()
                .filter(|p| p.endpoint() == Some(src))
                .cloned()
                .collect();
            if owners.is_empty() {
                st.peers
                    .values()
                    .filter(|p| !has_current_session(p))
                    .take(REACH_OUT_PEERS)
                    .cloned()
                    .collect()
            } else {
                owners
            }
        };
        let mut buf = [0u8; HANDSHAKE_INIT_LEN];
        let mut sent = 0;
        for p in targets {
            let len = {
                let mut g = p.tunn.lock();
                let Some(t) = g.as_mut() else { continue };
                match t.format_handshake_initiation(&mut buf, true) {
                    TunnResult::WriteToNetwork(pkt) => pkt.len(),
                    _ => continue,
                }
            };
            self.initiation_sent(&p);
            debug!(peer = ?p.public_key, to = %src, "reaching out: data of a session this host does not hold");
            self.send_one(socks, &buf[..len], src);
            sent += 1;
        }
        self.pair
            .reached_out
            .fetch_add(sent as u64, Ordering::Relaxed);
        sent
    }
}

fn has_current_session(p: &Peer) -> bool {
    p.tunn
        .lock()
        .as_ref()
        .and_then(|t| t.time_since_last_handshake())
        .is_some_and(|d| d < REJECT_AFTER)
}
