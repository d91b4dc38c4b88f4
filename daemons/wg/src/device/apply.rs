//! I/O: configuration of the running device: [`Device::apply`] and [`Device::apply_set`]
//! validate and bind first (an error changes nothing), then swap keys, peers, allowed IPs
//! and sockets under the state's write lock, where nothing can fail or panic.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::time::Instant;

use boringtun::noise::Tunn;
use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::x25519::{PublicKey, StaticSecret};
use parking_lot::{Mutex, RwLock};
use tracing::{info, warn};

use super::{Device, DeviceError, HANDSHAKE_RATE_LIMIT, Keys, Peer, Sockets, State};
use crate::allowed_ips::AllowedIps;
use crate::diff::{PeerChange, PeerDiff};
use crate::model::{DeviceConfig, Key, PeerConfig, SecretKey};
use crate::proto::PEER_INDEX_MASK;
use crate::stats::PeerCounters;
use crate::udp::{UdpError, UdpSocket};

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

impl Keys {
    /// The noise state of peer `peer` under these keys, with session index prefix `index`.
    fn tunn(&self, peer: &Key, psk: Option<SecretKey>, index: u32) -> Tunn {
        Tunn::new(
            self.secret.clone(),
            PublicKey::from(peer.0),
            psk.map(|s| s.0.0),
            None,
            index,
            Some(self.limiter.clone()),
        )
    }
}

impl Device {
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
        let new_sockets = self.prepare_sockets(&diff, new)?;
        // 2. Infallible changes.
        if let Some(k) = diff.private_key {
            self.set_private_key(&mut st, k);
        }
        for k in &diff.removed {
            remove_peer(&mut st, k);
        }
        for pc in &diff.added {
            self.add_peer(&mut st, pc);
            info!(peer = %pc.public_key.to_base64(), "peer added");
        }
        for c in &diff.changed {
            change_peer(&mut st, c);
        }
        for (k, ep) in force_endpoints {
            if let Some(p) = st.peers.get(k) {
                *p.endpoint.write() = Some(*ep);
            }
        }
        let mut cfg = new.clone();
        keep_one_owner(&st.table, &mut cfg);
        if let Some(s) = new_sockets {
            cfg.listen_port = new.listen_port;
            self.install_sockets(s);
        }
        st.config = cfg;
        self.endpoint_epoch.fetch_add(1, Ordering::Relaxed);
        Ok(diff)
    }

    /// The fallible part of applying `new`: binds new sockets when nothing is bound yet or
    /// a different, explicit port is asked for, or else sets a changed fwmark on the
    /// current ones. Returns the new sockets, not yet in use.
    fn prepare_sockets(
        &self,
        diff: &PeerDiff,
        new: &DeviceConfig,
    ) -> Result<Option<Sockets>, DeviceError> {
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
        Ok(new_sockets)
    }

    /// Puts newly bound sockets in use and starts a receive thread for each; the threads of
    /// the sockets they replace see the new generation and exit.
    fn install_sockets(self: &Arc<Self>, s: Sockets) {
        info!(
            port = s.port,
            gso = s.v4.as_ref().is_some_and(|x| x.gso()),
            gro = s.v4.as_ref().is_some_and(|x| x.gro()),
            "udp sockets bound"
        );
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

    fn set_private_key(&self, st: &mut State, k: Option<SecretKey>) {
        let Some(sk) = k else {
            st.keys = None;
            for p in st.peers.values() {
                *p.tunn.lock() = None;
            }
            return;
        };
        let secret = StaticSecret::from(sk.0.0);
        let public = PublicKey::from(&secret);
        let limiter = Arc::new(RateLimiter::new(&public, HANDSHAKE_RATE_LIMIT));
        let keys = Keys {
            secret,
            public,
            limiter,
        };
        for p in st.peers.values() {
            let mut t = p.tunn.lock();
            match t.as_mut() {
                Some(t) => t.set_static_private(
                    keys.secret.clone(),
                    keys.public,
                    Some(keys.limiter.clone()),
                ),
                None => {
                    let psk = st
                        .config
                        .peers
                        .get(&p.public_key)
                        .and_then(|c| c.preshared_key);
                    *t = Some(keys.tunn(&p.public_key, psk, p.index));
                }
            }
        }
        st.keys = Some(keys);
    }

    fn add_peer(&self, st: &mut State, pc: &PeerConfig) {
        let mut index = st.next_index & PEER_INDEX_MASK;
        while st.by_index.contains_key(&index) {
            index = (index + 1) & PEER_INDEX_MASK;
        }
        st.next_index = index + 1;
        let tunn = st
            .keys
            .as_ref()
            .map(|k| k.tunn(&pc.public_key, pc.preshared_key, index));
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
}

fn remove_peer(st: &mut State, k: &Key) {
    if let Some(p) = st.peers.remove(k) {
        st.by_index.remove(&p.index);
        st.table.retain(|v| !Arc::ptr_eq(v, &p));
        info!(peer = %k.to_base64(), "peer removed");
    }
}

/// Changes an existing peer in place: endpoint, keepalive, preshared key, allowed IPs.
fn change_peer(st: &mut State, c: &PeerChange) {
    let Some(p) = st.peers.get(&c.public_key).cloned() else {
        return;
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
        let t = st
            .keys
            .as_ref()
            .map(|k| k.tunn(&p.public_key, psk, p.index));
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

/// An allowed IP belongs to one peer only: the last one given it wins. Removes from
/// `cfg` each allowed IP that `table` gives another peer.
fn keep_one_owner(table: &AllowedIps<Arc<Peer>>, cfg: &mut DeviceConfig) {
    let owners: Vec<(Key, Vec<ipnet::IpNet>)> = cfg
        .peers
        .values()
        .map(|p| (p.public_key, p.allowed_ips.clone()))
        .collect();
    for (k, ips) in owners {
        for n in ips {
            let Some(owner) = table.get_exact(n) else {
                continue;
            };
            if owner.public_key != k
                && let Some(p) = cfg.peers.get_mut(&k)
            {
                p.allowed_ips.retain(|x| *x != n);
            }
        }
    }
}
