//! Pure: which peers have gone too long without a handshake (`wg.handshake_stale`).
//!
//! Only peers meant to stay up are watched: those with an `endpoint` (a site this host
//! dials) or a `persistent_keepalive`. A phone or laptop that connects now and then has
//! neither and is never reported. A peer is reported once when it crosses the threshold
//! and again only after it has had a fresh handshake in between. The clock of a peer that
//! never had a handshake starts when watching starts (the daemon's start, or this host
//! becoming the master of a pair: the sessions were the other host's until then).

use std::collections::BTreeSet;
use std::time::Duration;

use edge_notify::Event;

/// What the watch needs to know of one peer.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    /// The peer's name.
    pub name: &'a str,
    /// Unix time of its last handshake; 0 if none.
    pub last_handshake: u64,
    /// Meant to stay up (endpoint or persistent keepalive) and not expired.
    pub watched: bool,
}

/// The peers already reported and when watching started.
#[derive(Debug, Clone)]
pub struct StaleWatch {
    threshold: Duration,
    since: u64,
    reported: BTreeSet<String>,
}

impl StaleWatch {
    /// Starts watching at `now` (Unix seconds); a zero threshold watches nothing.
    pub fn new(threshold: Duration, now: u64) -> StaleWatch {
        StaleWatch {
            threshold,
            since: now,
            reported: BTreeSet::new(),
        }
    }

    /// A new threshold (reload); what was reported stays reported.
    pub fn set_threshold(&mut self, threshold: Duration) {
        self.threshold = threshold;
    }

    /// Starts the clocks again at `now` and forgets what was reported (this host became
    /// the master: the peers talked to the other host until now).
    pub fn restart(&mut self, now: u64) {
        self.since = now;
        self.reported.clear();
    }

    /// The peers reported and not yet back.
    pub fn reported(&self) -> impl Iterator<Item = &str> {
        self.reported.iter().map(String::as_str)
    }

    /// The events due at `now` for these peers (each crossing reported once).
    pub fn check(&mut self, now: u64, peers: &[Seen<'_>]) -> Vec<Event> {
        let limit = self.threshold.as_secs();
        self.reported
            .retain(|n| peers.iter().any(|p| p.watched && p.name == n));
        if limit == 0 {
            self.reported.clear();
            return Vec::new();
        }
        let mut out = Vec::new();
        for p in peers.iter().filter(|p| p.watched) {
            let from = p.last_handshake.max(self.since);
            if now.saturating_sub(from) >= limit {
                if self.reported.insert(p.name.to_owned()) {
                    out.push(Event::WgHandshakeStale {
                        peer: p.name.to_owned(),
                        last_handshake: (p.last_handshake > 0).then_some(p.last_handshake),
                        threshold_secs: limit,
                    });
                }
            } else {
                // Fresh again (a handshake since): the next crossing is reported.
                self.reported.remove(p.name);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seen(name: &str, last: u64, watched: bool) -> Seen<'_> {
        Seen {
            name,
            last_handshake: last,
            watched,
        }
    }

    #[test]
    fn a_site_that_goes_silent_is_reported_once_and_again_after_it_came_back() {
        let mut w = StaleWatch::new(Duration::from_secs(600), 1_000);
        assert!(w.check(1_100, &[seen("site", 1_050, true)]).is_empty());
        let e = w.check(1_650, &[seen("site", 1_050, true)]);
        assert_eq!(
            e,
            vec![Event::WgHandshakeStale {
                peer: "site".into(),
                last_handshake: Some(1_050),
                threshold_secs: 600
            }]
        );
        assert!(w.check(1_700, &[seen("site", 1_050, true)]).is_empty());
        assert_eq!(w.reported().collect::<Vec<_>>(), ["site"]);
        // A handshake: back; silent again: reported again.
        assert!(w.check(1_800, &[seen("site", 1_790, true)]).is_empty());
        assert_eq!(w.reported().count(), 0);
        assert_eq!(w.check(2_400, &[seen("site", 1_790, true)]).len(), 1);
    }

    #[test]
    fn a_peer_that_never_had_a_handshake_is_timed_from_the_start_of_watching() {
        let mut w = StaleWatch::new(Duration::from_secs(60), 5_000);
        assert!(w.check(5_059, &[seen("site", 0, true)]).is_empty());
        assert_eq!(
            w.check(5_060, &[seen("site", 0, true)]),
            vec![Event::WgHandshakeStale {
                peer: "site".into(),
                last_handshake: None,
                threshold_secs: 60
            }]
        );
    }

    #[test]
    fn road_warriors_and_a_zero_threshold_are_never_reported() {
        let mut w = StaleWatch::new(Duration::from_secs(60), 0);
        assert!(w.check(10_000, &[seen("phone", 0, false)]).is_empty());
        let mut off = StaleWatch::new(Duration::ZERO, 0);
        assert!(off.check(10_000, &[seen("site", 1, true)]).is_empty());
    }

    #[test]
    fn becoming_master_starts_the_clocks_again() {
        let mut w = StaleWatch::new(Duration::from_secs(60), 0);
        assert_eq!(w.check(100, &[seen("site", 0, true)]).len(), 1);
        w.restart(1_000);
        assert!(w.check(1_030, &[seen("site", 0, true)]).is_empty());
        assert_eq!(w.check(1_060, &[seen("site", 0, true)]).len(), 1);
    }

    proptest! {
        /// However the checks are spaced, a peer that never handshakes again is reported
        /// exactly once, and never before the threshold.
        #[test]
        fn one_report_per_silence(
            last in 1u64..1_000,
            threshold in 1u64..500,
            steps in proptest::collection::vec(1u64..200, 1..40),
        ) {
            let mut w = StaleWatch::new(Duration::from_secs(threshold), 0);
            let mut now = last;
            let mut reports = 0;
            for s in steps {
                now += s;
                let e = w.check(now, &[seen("site", last, true)]);
                if !e.is_empty() {
                    prop_assert!(now - last >= threshold);
                }
                reports += e.len();
            }
            prop_assert_eq!(reports, usize::from(now - last >= threshold));
        }
    }
}
