//! I/O: the timer thread: every tick it runs boringtun's timers for each peer (handshake
//! retries, rekeys, keepalives after traffic), sends persistent keepalives and, with
//! `--test-rekey-secs`, forced rekeys; once a second it resets the handshake rate limiter.
//! On standby (the BACKUP of a pair) nothing it would send is sent.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use boringtun::noise::TunnResult;
use boringtun::noise::errors::WireGuardError;

use super::{Device, Peer, Sockets, TICK, now_unix_ms};
use crate::proto::MSG_HANDSHAKE_INIT;

impl Device {
    pub(super) fn timer_loop(self: Arc<Self>) {
        let mut buf = vec![0u8; 2048];
        let mut last_reset = Instant::now();
        let mut last_forced = Instant::now();
        while !self.shutdown.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
            let socks = self.sockets.read().clone();
            let peers: Vec<Arc<Peer>> = {
                let st = self.state.read();
                if last_reset.elapsed() >= Duration::from_secs(1) {
                    if let Some(k) = &st.keys {
                        k.limiter.reset_count();
                    }
                    last_reset = Instant::now();
                }
                st.peers.values().cloned().collect()
            };
            let force = self
                .forced_rekey
                .is_some_and(|iv| last_forced.elapsed() >= iv);
            if force {
                last_forced = Instant::now();
            }
            for p in peers {
                self.peer_timers(&p, &socks, &mut buf, force);
            }
        }
    }

    fn peer_timers(&self, p: &Peer, socks: &Sockets, buf: &mut [u8], force: bool) {
        let ep = p.endpoint();
        let mut guard = p.tunn.lock();
        let Some(t) = guard.as_mut() else { return };
        let mut out: Option<(usize, bool)> = None;
        match t.update_timers(buf) {
            TunnResult::WriteToNetwork(pkt) => {
                out = Some((pkt.len(), pkt[0] == MSG_HANDSHAKE_INIT));
            }
            TunnResult::Err(WireGuardError::ConnectionExpired)
                if !p.expired.swap(true, Ordering::Relaxed) =>
            {
                p.counters
                    .handshake_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if let Some(since) = t.time_since_last_handshake() {
            let ms = now_unix_ms().saturating_sub(since.as_millis() as u64);
            let old = p.counters.last_handshake_ms.load(Ordering::Relaxed);
            if ms.abs_diff(old) > 1000 {
                p.counters.last_handshake_ms.store(ms, Ordering::Relaxed);
            }
        }
        if self.standby() {
            // A BACKUP sends nothing of its own accord; the timers still run (sessions
            // expire), and the master's handshakes replace whatever they would have sent.
            return;
        }
        let (Some(ep), Some((len, is_init))) = (ep, out) else {
            drop(guard);
            self.keepalive_and_rekey(p, socks, buf, force);
            return;
        };
        if is_init {
            self.initiation_sent(p);
        }
        drop(guard);
        self.send_one(socks, &buf[..len], ep);
        self.keepalive_and_rekey(p, socks, buf, force);
    }

    fn keepalive_and_rekey(&self, p: &Peer, socks: &Sockets, buf: &mut [u8], force: bool) {
        let Some(ep) = p.endpoint() else { return };
        let ka = p.keepalive.load(Ordering::Relaxed);
        let due = ka > 0 && {
            let mut last = p.last_keepalive.lock();
            if last.elapsed() >= Duration::from_secs(u64::from(ka)) {
                *last = Instant::now();
                true
            } else {
                false
            }
        };
        if !due && !force {
            return;
        }
        let mut guard = p.tunn.lock();
        let Some(t) = guard.as_mut() else { return };
        let res = if force {
            t.format_handshake_initiation(buf, true)
        } else {
            t.encapsulate(&[], buf)
        };
        if let TunnResult::WriteToNetwork(pkt) = res {
            let len = pkt.len();
            if pkt[0] == MSG_HANDSHAKE_INIT {
                self.initiation_sent(p);
            }
            drop(guard);
            self.send_one(socks, &buf[..len], ep);
        }
    }
}
