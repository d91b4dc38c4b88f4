//! I/O: the transmit path: one thread per TUN queue reads (super-)packets, finds the peer
//! by destination (allowed IPs), splits GSO super-packets into wire-sized segments,
//! encrypts them into a send batch and sends it with `sendmmsg` / UDP GSO.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use boringtun::noise::TunnResult;
use tracing::warn;

use super::{Device, Sockets};
use crate::offload::{self, VNET_HDR_LEN, VnetHdr};
use crate::proto::{HANDSHAKE_INIT_LEN, MAX_PACKET, MSG_DATA};
use crate::stats::DropReason;
use crate::udp::SendBatch;

impl Device {
    pub(super) fn tx_loop(self: Arc<Self>, q: usize) {
        let tun = self.tun[q].clone();
        let mut rbuf = vec![0u8; VNET_HDR_LEN + MAX_PACKET];
        let mut scratch = vec![0u8; MAX_PACKET];
        let mut hs = vec![0u8; HANDSHAKE_INIT_LEN];
        let mut b4 = SendBatch::new(256 * 1024);
        let mut b6 = SendBatch::new(256 * 1024);
        let mut socks = self.sockets.read().clone();
        let mut pending = 0usize;
        while !self.shutdown.load(Ordering::Relaxed) {
            let n = match tun.read(&mut rbuf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.tx_flush(&socks, &mut b4, &mut b6);
                    pending = 0;
                    tun.poll_readable(250);
                    socks = self.sockets.read().clone();
                    continue;
                }
                Err(e) => {
                    warn!(error = %e, "tun read failed");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            if n <= VNET_HDR_LEN {
                continue;
            }
            self.tx_packet(&rbuf[..n], &mut scratch, &mut hs, &socks, &mut b4, &mut b6);
            pending += 1;
            if pending >= 64 || b4.room() < 96 * 1024 || b6.room() < 96 * 1024 {
                self.tx_flush(&socks, &mut b4, &mut b6);
                pending = 0;
            }
        }
    }

    fn tx_flush(&self, socks: &Sockets, b4: &mut SendBatch, b6: &mut SendBatch) {
        for (b, s) in [(b4, &socks.v4), (b6, &socks.v6)] {
            if b.is_empty() {
                continue;
            }
            match s {
                Some(s) => {
                    if s.send_batch(b).is_err() {
                        self.counters.drop(DropReason::UdpSend);
                    }
                    b.set_gso(s.gso());
                }
                None => {
                    // nothing can carry it: discard the batch
                    self.counters.drop(DropReason::NoEndpoint);
                    b.discard();
                }
            }
        }
    }

    fn tx_packet(
        &self,
        frame: &[u8],
        scratch: &mut [u8],
        hs: &mut [u8],
        socks: &Sockets,
        b4: &mut SendBatch,
        b6: &mut SendBatch,
    ) {
        if self.standby() {
            self.counters.drop(DropReason::Standby);
            return;
        }
        let Ok(h) = VnetHdr::decode(frame) else {
            self.counters.drop(DropReason::Malformed);
            return;
        };
        let pkt = &frame[VNET_HDR_LEN..];
        let peer = {
            let st = self.state.read();
            let p = match pkt[0] >> 4 {
                4 if pkt.len() >= 20 => st.table.lookup_v4([pkt[16], pkt[17], pkt[18], pkt[19]]),
                6 if pkt.len() >= 40 => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(&pkt[24..40]);
                    st.table.lookup_v6(a)
                }
                _ => None,
            };
            match p {
                Some(p) => p.clone(),
                None => {
                    self.counters.drop(DropReason::NoRoute);
                    return;
                }
            }
        };
        let Some(dst) = peer.endpoint() else {
            self.counters.drop(DropReason::NoEndpoint);
            return;
        };
        let batch = if dst.is_ipv4() { b4 } else { b6 };
        let mut guard = peer.tunn.lock();
        let Some(tunn) = guard.as_mut() else {
            self.counters.drop(DropReason::NoEndpoint);
            return;
        };
        let mut tx = 0u64;
        let mut handshake: Option<usize> = None;
        let res = offload::gso_split(pkt, &h, scratch, |seg| {
            // Tunn::encapsulate wants room for the data overhead and at least an initiation.
            if batch.room() < seg.len() + HANDSHAKE_INIT_LEN {
                self.counters.drop(DropReason::UdpSend);
                return;
            }
            match tunn.encapsulate(seg, batch.tail()) {
                TunnResult::WriteToNetwork(out) => {
                    let len = out.len();
                    if out.first() == Some(&MSG_DATA) {
                        batch.commit(len, dst);
                        tx += seg.len() as u64;
                    } else {
                        // no session yet: the packet was queued and this is an initiation
                        let l = len.min(hs.len());
                        hs[..l].copy_from_slice(&batch.tail()[..l]);
                        handshake = Some(l);
                    }
                }
                TunnResult::Err(_) => self.counters.drop(DropReason::NoEndpoint),
                _ => {}
            }
        });
        drop(guard);
        if res.is_err() {
            self.counters.drop(DropReason::Malformed);
        }
        peer.counters.tx_bytes.fetch_add(tx, Ordering::Relaxed);
        if let Some(l) = handshake {
            self.initiation_sent(&peer);
            self.send_one(socks, &hs[..l], dst);
        }
    }
}
