//! Pure: maps the `[wg]` section of edge.toml (with its secrets already read and its
//! endpoints already resolved by the I/O shell) into the engine's [`DeviceConfig`] at a
//! given time (expired peers are left out), computes which AllowedIPs routes a change adds
//! and removes, and decides when a peer's endpoint name is looked up again
//! ([`Reresolve`]: when its handshakes stop being answered, never on a blind timer).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::model::{DeviceConfig, Key, KeyError, PeerConfig, SecretKey};

/// Secrets and resolved endpoints the shell gathered for one `[wg]` section.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// The interface private key.
    pub private_key: Option<Key>,
    /// Preshared keys by peer name.
    pub preshared: BTreeMap<String, Key>,
    /// Endpoints by peer name (DNS names resolved).
    pub endpoints: BTreeMap<String, SocketAddr>,
}

/// Parses a base64 key read from a secret file or credential.
pub fn parse_secret_key(text: &str) -> Result<Key, KeyError> {
    Key::from_base64(text)
}

/// True when the peer's `expires` is at or before `now` (Unix seconds).
pub fn is_expired(p: &edge_config::wg::Peer, now: i64) -> bool {
    p.expires.is_some_and(|e| e.unix() <= now)
}

/// The next moment after `now` at which a peer expires.
pub fn next_expiry(wg: &edge_config::wg::Wg, now: i64) -> Option<i64> {
    wg.peers
        .iter()
        .filter_map(|p| p.expires.map(|e| e.unix()))
        .filter(|t| *t > now)
        .min()
}

/// The peers whose endpoint is a DNS name, with that name and port.
pub fn dns_endpoints(wg: &edge_config::wg::Wg) -> Vec<(String, String, u16)> {
    wg.peers
        .iter()
        .filter_map(|p| {
            let ep = p.endpoint.as_ref()?;
            ep.host
                .parse::<IpAddr>()
                .is_err()
                .then(|| (p.name.clone(), ep.host.clone(), ep.port.get()))
        })
        .collect()
}

/// Builds the engine configuration for a `[wg]` section at `now` (Unix seconds): peers
/// that expired by then are left out, so the engine drops their sessions and routes.
pub fn device_config(wg: &edge_config::wg::Wg, r: &Resolved, now: i64) -> DeviceConfig {
    let peers = wg
        .peers
        .iter()
        .filter(|p| !is_expired(p, now))
        .map(|p| {
            let key = Key(p.public_key.0);
            let pc = PeerConfig {
                name: Some(p.name.clone()),
                public_key: key,
                preshared_key: r.preshared.get(&p.name).map(|k| SecretKey(*k)),
                endpoint: r.endpoints.get(&p.name).copied(),
                persistent_keepalive: p.persistent_keepalive.unwrap_or(0),
                allowed_ips: p.allowed_ips.iter().map(IpNet::trunc).collect(),
            };
            (key, pc)
        })
        .collect();
    DeviceConfig {
        private_key: r.private_key.map(SecretKey),
        listen_port: wg.listen_port.get(),
        fwmark: wg.fwmark.unwrap_or(0),
        peers,
    }
}

/// Routes to add and to delete when going from `old` to `new` (AllowedIPs of all peers).
pub fn route_diff(old: &DeviceConfig, new: &DeviceConfig) -> (Vec<IpNet>, Vec<IpNet>) {
    let nets = |c: &DeviceConfig| -> BTreeSet<IpNet> {
        c.peers
            .values()
            .flat_map(|p| p.allowed_ips.iter().copied())
            .collect()
    };
    let (o, n) = (nets(old), nets(new));
    (
        n.difference(&o).copied().collect(),
        o.difference(&n).copied().collect(),
    )
}

/// When to look a peer's endpoint name up again: once its handshake initiations have gone
/// unanswered for Rekey-Timeout (the address may have moved), then with a back-off that
/// doubles up to [`Reresolve::MAX_BACKOFF`] while they stay unanswered. Nothing is looked
/// up while handshakes succeed.
#[derive(Debug, Default)]
pub struct Reresolve {
    /// Per peer name: when it was last looked up (time since the daemon started) and how
    /// many lookups this silence has cost so far.
    last: HashMap<String, (Duration, u32)>,
}

impl Reresolve {
    /// The longest wait between two lookups of one silent peer.
    pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

    /// True when the name of `peer` should be looked up now; `unanswered` is how long its
    /// initiations have gone unanswered (None: its last handshake succeeded), `now` the
    /// time since the daemon started. Records the lookup when it says yes.
    pub fn due(&mut self, peer: &str, unanswered: Option<Duration>, now: Duration) -> bool {
        let Some(silent) = unanswered else {
            // Answered: a later silence starts a new back-off.
            self.last.remove(peer);
            return false;
        };
        if silent < crate::proto::REKEY_TIMEOUT {
            return false;
        }
        let silence_began = now.saturating_sub(silent);
        match self.last.get(peer).copied() {
            // Already looked up during this silence: wait out the back-off.
            Some((at, n)) if at >= silence_began => {
                let wait = crate::proto::REKEY_TIMEOUT
                    .saturating_mul(1 << n.saturating_sub(1).min(16))
                    .min(Self::MAX_BACKOFF);
                if now.saturating_sub(at) < wait {
                    return false;
                }
                self.last.insert(peer.to_owned(), (now, n + 1));
                true
            }
            _ => {
                self.last.insert(peer.to_owned(), (now, 1));
                true
            }
        }
    }

    /// Forgets peers that are gone from the configuration.
    pub fn retain(&mut self, names: &[String]) {
        self.last.retain(|k, _| names.contains(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn names_are_looked_up_only_when_handshakes_go_unanswered() {
        let mut r = Reresolve::default();
        // Handshakes succeed: never, however long it runs.
        for t in 0..1000 {
            assert!(!r.due("site", None, s(t)));
        }
        // Unanswered for less than Rekey-Timeout: not yet.
        assert!(!r.due("site", Some(s(4)), s(1004)));
        // 5 s without an answer: look it up.
        assert!(r.due("site", Some(s(5)), s(1005)));
        // Still silent: back-off of 5 s, then 10 s, 20 s...
        assert!(!r.due("site", Some(s(6)), s(1006)));
        assert!(r.due("site", Some(s(10)), s(1010)));
        assert!(!r.due("site", Some(s(15)), s(1015)));
        assert!(r.due("site", Some(s(20)), s(1020)));
        assert!(!r.due("site", Some(s(39)), s(1039)));
        assert!(r.due("site", Some(s(40)), s(1040)));
        // Answered: the next silence starts over at once.
        assert!(!r.due("site", None, s(1041)));
        assert!(r.due("site", Some(s(5)), s(1100)));
        // Other peers are independent.
        assert!(r.due("other", Some(s(5)), s(1100)));
    }

    #[test]
    fn the_back_off_is_capped() {
        let mut r = Reresolve::default();
        let mut t = 0;
        let mut lookups = Vec::new();
        for _ in 0..4000 {
            t += 1;
            if r.due("site", Some(s(t)), s(t)) {
                lookups.push(t);
            }
        }
        let gaps: Vec<u64> = lookups.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g <= 300), "{gaps:?}");
        assert_eq!(gaps.last(), Some(&300));
    }

    #[test]
    fn expired_peers_are_left_out_at_their_time() {
        let text = include_str!("../../../config/edge.toml").replace(
            "persistent_keepalive = 0\n",
            "persistent_keepalive = 0\nexpires = 2027-01-31T18:00:00Z\n",
        );
        let cfg = edge_config::parse(std::path::Path::new("e.toml"), &text)
            .unwrap()
            .config;
        let wg = cfg.wg.unwrap();
        let at = 1_801_418_400;
        assert_eq!(
            device_config(&wg, &Resolved::default(), at - 1).peers.len(),
            1
        );
        assert_eq!(device_config(&wg, &Resolved::default(), at).peers.len(), 0);
        assert_eq!(next_expiry(&wg, at - 1), Some(at));
        assert_eq!(next_expiry(&wg, at), None);
        assert!(dns_endpoints(&wg).is_empty());
    }

    fn peer(b: u8, ips: &[&str]) -> PeerConfig {
        PeerConfig {
            public_key: Key([b; 32]),
            allowed_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            ..PeerConfig::default()
        }
    }

    #[test]
    fn route_diff_adds_and_removes_only_changes() {
        let mk = |ps: Vec<PeerConfig>| DeviceConfig {
            peers: ps.into_iter().map(|p| (p.public_key, p)).collect(),
            ..DeviceConfig::default()
        };
        let old = mk(vec![
            peer(1, &["10.0.0.1/32", "10.1.0.0/24"]),
            peer(2, &["10.0.0.2/32"]),
        ]);
        let new = mk(vec![peer(1, &["10.0.0.1/32"]), peer(3, &["10.0.0.3/32"])]);
        let (add, del) = route_diff(&old, &new);
        assert_eq!(add, vec!["10.0.0.3/32".parse::<IpNet>().unwrap()]);
        assert_eq!(
            del,
            vec![
                "10.0.0.2/32".parse::<IpNet>().unwrap(),
                "10.1.0.0/24".parse().unwrap()
            ]
        );
        assert_eq!(route_diff(&new, &new), (vec![], vec![]));
    }

    #[test]
    fn secret_keys_are_base64() {
        let k = Key([3; 32]);
        assert_eq!(parse_secret_key(&k.to_base64()), Ok(k));
        assert!(parse_secret_key("not a key").is_err());
    }
}
