//! I/O: the receive path: one thread per UDP socket receives batches (`recvmmsg`, UDP
//! GRO), finds the peer of each datagram, decrypts it, checks the inner source against the
//! peer's allowed IPs and coalesces TCP segments into super-packets for the TUN.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use tracing::{debug, warn};

use super::{Device, Peer, Sockets, now_unix_ms};
use crate::model::Key;
use crate::offload::{Coalescer, Pushed};
use crate::proto::{
    self, COOKIE_REPLY_LEN, DATA_OVERHEAD, Incoming, MAX_PACKET, MSG_COOKIE_REPLY, MSG_DATA,
    MSG_HANDSHAKE_INIT, MSG_HANDSHAKE_RESP,
};
use crate::stats::DropReason;
use crate::tun::TunQueue;
use crate::udp::{RecvBatch, UdpSocket};

impl Device {
    pub(super) fn rx_loop(self: Arc<Self>, sock: Arc<UdpSocket>, generation: u64) {
        let slots = if sock.gro() { 16 } else { 64 };
        let size = if sock.gro() { MAX_PACKET } else { 2048 };
        let mut rb = RecvBatch::new(slots, size);
        let mut ctx = RxCtx {
            plain: vec![0u8; MAX_PACKET],
            co: Coalescer::new(16),
        };
        let tun = self.tun.clone();
        while !self.shutdown.load(Ordering::Relaxed) {
            if self.sockets.read().generation != generation {
                debug!("rx thread of replaced socket exits");
                return;
            }
            let n = match sock.recv_batch(&mut rb) {
                Ok(n) => n,
                Err(e) => {
                    warn!(error = %e, "udp receive failed");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if n == 0 {
                continue;
            }
            let socks = self.sockets.read().clone();
            for i in 0..n {
                let (data, src, seg) = rb.get(i);
                let Some(src) = src else { continue };
                if seg > 0 && data.len() > seg {
                    for d in data.chunks(seg) {
                        self.rx_datagram(&mut ctx, &socks, d, src, &mut |b| {
                            self.tun_write_flow(&tun, b)
                        });
                    }
                } else {
                    self.rx_datagram(&mut ctx, &socks, data, src, &mut |b| {
                        self.tun_write_flow(&tun, b)
                    });
                }
            }
            ctx.co.flush(|b| self.tun_write_flow(&tun, b));
        }
    }

    fn rx_datagram(
        &self,
        ctx: &mut RxCtx,
        socks: &Sockets,
        d: &[u8],
        src: SocketAddr,
        sink: &mut dyn FnMut(&[u8]),
    ) {
        let (ty, peer) = match proto::classify(d) {
            Incoming::Malformed => {
                self.counters.drop(DropReason::Malformed);
                return;
            }
            Incoming::Initiation => match self.identify_initiator(d, src, socks) {
                Some(p) => (MSG_HANDSHAKE_INIT, p),
                None => return,
            },
            Incoming::ForPeer { kind, peer_index } => {
                match self.state.read().by_index.get(&peer_index).cloned() {
                    Some(p) => (kind, p),
                    None => {
                        self.counters.drop(DropReason::UnknownIndex);
                        if kind == MSG_DATA {
                            self.reach_out(src, socks);
                        }
                        return;
                    }
                }
            }
        };
        let RxCtx { plain, co } = ctx;
        let mut tunn_guard = peer.tunn.lock();
        let Some(tunn) = tunn_guard.as_mut() else {
            return;
        };
        let (packet, inner_src) = match tunn.decapsulate(Some(src.ip()), d, plain) {
            TunnResult::WriteToTunnelV4(p, a) => (p, IpAddr::V4(a)),
            TunnResult::WriteToTunnelV6(p, a) => (p, IpAddr::V6(a)),
            TunnResult::WriteToNetwork(out) => {
                // A handshake response, the keepalive that confirms one, or a cookie.
                if out[0] == MSG_COOKIE_REPLY {
                    self.counters.cookie_replies.fetch_add(1, Ordering::Relaxed);
                    self.send_one(socks, out, src);
                    return;
                }
                if ty != MSG_COOKIE_REPLY {
                    self.roamed(&peer, src);
                }
                self.send_one(socks, out, src);
                // Packets queued while there was no session leave once one is usable: now
                // when we initiated (the response made the session current), but not when
                // we only answered an initiation: that session becomes usable with the
                // initiator's first data (its keepalive, below). Flushing here would find
                // no usable session and send an initiation of our own, crossing the peer's:
                // two handshakes in flight at once, which wireguard-go's parallel
                // handshake workers can settle on keys whose index it no longer knows, so
                // that every packet we send is dropped (the continuity test's stall).
                if ty != MSG_HANDSHAKE_INIT {
                    self.flush_queued(&peer, tunn, plain, socks, src);
                }
                if ty == MSG_HANDSHAKE_INIT || ty == MSG_HANDSHAKE_RESP {
                    self.handshake_completed(&peer);
                    peer.expired.store(false, Ordering::Relaxed);
                    peer.counters
                        .last_handshake_ms
                        .store(now_unix_ms(), Ordering::Relaxed);
                }
                return;
            }
            TunnResult::Done => {
                // A keepalive (the initiator's first data confirms the session we answered
                // with: what was queued can go now) or an accepted cookie reply.
                if ty == MSG_DATA {
                    self.roamed(&peer, src);
                    self.flush_queued(&peer, tunn, plain, socks, src);
                }
                return;
            }
            TunnResult::Err(e) => {
                debug!(error = ?e, "decapsulate failed");
                if ty == MSG_HANDSHAKE_INIT || ty == MSG_HANDSHAKE_RESP {
                    peer.counters
                        .handshake_failures
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.counters.drop(DropReason::Decrypt);
                return;
            }
        };
        // Lock order is state before tunn everywhere: release the tunn first.
        drop(tunn_guard);
        self.deliver(&peer, packet, inner_src, src, co, sink);
    }

    /// Sends what boringtun queued for `peer` while it had no session.
    fn flush_queued(
        &self,
        peer: &Peer,
        tunn: &mut Tunn,
        buf: &mut [u8],
        socks: &Sockets,
        dst: SocketAddr,
    ) {
        while let TunnResult::WriteToNetwork(q) = tunn.decapsulate(None, &[], buf) {
            let n = q.len() as u64;
            if q[0] == MSG_HANDSHAKE_INIT {
                self.initiation_sent(peer);
            }
            self.send_one(socks, q, dst);
            peer.counters
                .tx_bytes
                .fetch_add(n.saturating_sub(DATA_OVERHEAD as u64), Ordering::Relaxed);
        }
    }

    /// Hands a decrypted IP packet on towards the TUN, if its inner source address is one
    /// the sending peer may use (its allowed IPs); an authenticated packet also moves the
    /// peer's endpoint to where it came from (roaming).
    fn deliver(
        &self,
        peer: &Arc<Peer>,
        packet: &[u8],
        inner_src: IpAddr,
        src: SocketAddr,
        co: &mut Coalescer,
        sink: &mut dyn FnMut(&[u8]),
    ) {
        let allowed = self
            .state
            .read()
            .table
            .lookup(inner_src)
            .is_some_and(|o| Arc::ptr_eq(o, peer));
        if !allowed {
            self.counters.drop(DropReason::SourceNotAllowed);
            return;
        }
        self.roamed(peer, src);
        peer.counters
            .rx_bytes
            .fetch_add(packet.len() as u64, Ordering::Relaxed);
        if co.push(packet) == Pushed::Full {
            co.flush(&mut *sink);
            co.push(packet);
        }
    }

    /// Writes a received packet to the TUN. Always queue 0: the kernel's automatic queue
    /// steering sends a flow's replies to the queue its packets were written to, so every
    /// flow's transmit lands on one TX thread. Spreading flows over queues by flow hash
    /// ([`offload::flow_hash`]) was measured: two TX threads encrypting for one peer
    /// interleave its nonce counters by more than boringtun's 1024-packet replay window
    /// and the receiver drops them (`InvalidCounter`, TCP retransmits). It needs an
    /// 8192-packet window (a boringtun fork) or per-peer queue pinning first.
    fn tun_write_flow(&self, tun: &[Arc<TunQueue>], buf: &[u8]) {
        let Some(q) = tun.first() else { return };
        if q.write(buf).is_err() {
            self.counters.drop(DropReason::TunWrite);
        }
    }

    /// Runs one received datagram through the receive path (handshake, cookie, decrypt,
    /// source check, coalescing) and hands what would be written to the TUN to `sink`.
    pub fn feed_datagram(&self, d: &[u8], src: SocketAddr, sink: &mut dyn FnMut(&[u8])) {
        let mut ctx = RxCtx {
            plain: vec![0u8; MAX_PACKET],
            co: Coalescer::new(2),
        };
        let socks = self.sockets.read().clone();
        self.rx_datagram(&mut ctx, &socks, d, src, sink);
        ctx.co.flush(sink);
    }

    /// Checks mac1 (and mac2 under load, replying with a cookie), then finds the peer
    /// whose key sent a handshake initiation.
    fn identify_initiator(&self, d: &[u8], src: SocketAddr, socks: &Sockets) -> Option<Arc<Peer>> {
        let st = self.state.read();
        let keys = st.keys.as_ref()?;
        let mut cookie = [0u8; COOKIE_REPLY_LEN];
        let packet = match keys.limiter.verify_packet(Some(src.ip()), d, &mut cookie) {
            Ok(p) => p,
            Err(TunnResult::WriteToNetwork(c)) => {
                self.counters.cookie_replies.fetch_add(1, Ordering::Relaxed);
                self.send_one(socks, c, src);
                return None;
            }
            Err(TunnResult::Err(boringtun::noise::errors::WireGuardError::UnderLoad)) => {
                self.counters.drop(DropReason::UnderLoad);
                return None;
            }
            Err(_) => {
                self.counters.drop(DropReason::InvalidMac);
                return None;
            }
        };
        let Packet::HandshakeInit(init) = packet else {
            self.counters.drop(DropReason::Malformed);
            return None;
        };
        match parse_handshake_anon(&keys.secret, &keys.public, &init) {
            Ok(half) => match st.peers.get(&Key(half.peer_static_public)) {
                Some(p) => Some(p.clone()),
                None => {
                    self.counters.drop(DropReason::UnknownPeer);
                    None
                }
            },
            Err(_) => {
                self.counters.drop(DropReason::Decrypt);
                None
            }
        }
    }
}

/// Per-thread receive buffers: the decrypted packet and the coalescer.
pub(super) struct RxCtx {
    plain: Vec<u8>,
    co: Coalescer,
}
