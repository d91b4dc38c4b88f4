//! Pure: `(old, new) -> PeerDiff`, the difference between two device configurations
//! that a reload (SIGHUP) or a UAPI `set` applies, so that untouched peers keep their
//! sessions.

use std::net::SocketAddr;

use ipnet::IpNet;

use crate::model::{DeviceConfig, Key, PeerConfig, SecretKey};

/// What changed in one existing peer; `None` means unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerChange {
    /// The peer's public key.
    pub public_key: Key,
    /// New preshared key (inner None = removed).
    pub preshared_key: Option<Option<SecretKey>>,
    /// New configured endpoint (inner None = cleared).
    pub endpoint: Option<Option<SocketAddr>>,
    /// New persistent keepalive interval.
    pub persistent_keepalive: Option<u16>,
    /// New allowed IPs list.
    pub allowed_ips: Option<Vec<IpNet>>,
}

impl PeerChange {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        self.preshared_key.is_none()
            && self.endpoint.is_none()
            && self.persistent_keepalive.is_none()
            && self.allowed_ips.is_none()
    }
}

/// The difference between two device configurations.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerDiff {
    /// New private key (inner None = removed).
    pub private_key: Option<Option<SecretKey>>,
    /// New listen port.
    pub listen_port: Option<u16>,
    /// New fwmark.
    pub fwmark: Option<u32>,
    /// Peers to create.
    pub added: Vec<PeerConfig>,
    /// Peers to delete, by public key.
    pub removed: Vec<Key>,
    /// Peers to modify in place.
    pub changed: Vec<PeerChange>,
}

impl PeerDiff {
    /// Computes what must change to go from `old` to `new`.
    pub fn new(old: &DeviceConfig, new: &DeviceConfig) -> PeerDiff {
        let mut d = PeerDiff {
            private_key: (old.private_key != new.private_key).then_some(new.private_key),
            listen_port: (old.listen_port != new.listen_port).then_some(new.listen_port),
            fwmark: (old.fwmark != new.fwmark).then_some(new.fwmark),
            ..PeerDiff::default()
        };
        for (k, o) in &old.peers {
            match new.peers.get(k) {
                None => d.removed.push(*k),
                Some(n) => {
                    let mut sorted_o = o.allowed_ips.clone();
                    let mut sorted_n = n.allowed_ips.clone();
                    sorted_o.sort();
                    sorted_n.sort();
                    let c = PeerChange {
                        public_key: *k,
                        preshared_key: (o.preshared_key != n.preshared_key)
                            .then_some(n.preshared_key),
                        endpoint: (o.endpoint != n.endpoint).then_some(n.endpoint),
                        persistent_keepalive: (o.persistent_keepalive != n.persistent_keepalive)
                            .then_some(n.persistent_keepalive),
                        allowed_ips: (sorted_o != sorted_n).then(|| n.allowed_ips.clone()),
                    };
                    if !c.is_empty() {
                        d.changed.push(c);
                    }
                }
            }
        }
        for (k, n) in &new.peers {
            if !old.peers.contains_key(k) {
                d.added.push(n.clone());
            }
        }
        d
    }

    /// True when applying the diff would change nothing.
    pub fn is_empty(&self) -> bool {
        self.private_key.is_none()
            && self.listen_port.is_none()
            && self.fwmark.is_none()
            && self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
    }

    /// Applies the diff to a configuration (what the device does, minus the I/O).
    pub fn apply_to(&self, cfg: &mut DeviceConfig) {
        if let Some(k) = self.private_key {
            cfg.private_key = k;
        }
        if let Some(p) = self.listen_port {
            cfg.listen_port = p;
        }
        if let Some(m) = self.fwmark {
            cfg.fwmark = m;
        }
        for k in &self.removed {
            cfg.peers.remove(k);
        }
        for p in &self.added {
            cfg.peers.insert(p.public_key, p.clone());
        }
        for c in &self.changed {
            if let Some(p) = cfg.peers.get_mut(&c.public_key) {
                if let Some(v) = c.preshared_key {
                    p.preshared_key = v;
                }
                if let Some(v) = c.endpoint {
                    p.endpoint = v;
                }
                if let Some(v) = c.persistent_keepalive {
                    p.persistent_keepalive = v;
                }
                if let Some(v) = &c.allowed_ips {
                    p.allowed_ips = v.clone();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn peer(b: u8, ips: &[&str]) -> PeerConfig {
        PeerConfig {
            public_key: Key([b; 32]),
            allowed_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            ..PeerConfig::default()
        }
    }

    fn dev(peers: Vec<PeerConfig>) -> DeviceConfig {
        DeviceConfig {
            private_key: Some(SecretKey(Key([9; 32]))),
            listen_port: 51820,
            fwmark: 0,
            peers: peers.into_iter().map(|p| (p.public_key, p)).collect(),
        }
    }

    #[test]
    fn added_removed_and_changed_are_separated() {
        let old = dev(vec![peer(1, &["10.0.0.1/32"]), peer(2, &["10.0.0.2/32"])]);
        let mut p2 = peer(2, &["10.0.0.2/32", "10.1.0.0/24"]);
        p2.persistent_keepalive = 25;
        let new = dev(vec![p2, peer(3, &["10.0.0.3/32"])]);
        let d = PeerDiff::new(&old, &new);
        assert_eq!(d.removed, vec![Key([1; 32])]);
        assert_eq!(d.added.len(), 1);
        assert_eq!(d.added[0].public_key, Key([3; 32]));
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].persistent_keepalive, Some(25));
        assert!(d.changed[0].allowed_ips.is_some());
        assert!(d.changed[0].endpoint.is_none());
        assert!(d.private_key.is_none() && d.listen_port.is_none());
    }

    #[test]
    fn reordered_allowed_ips_are_no_change() {
        let old = dev(vec![peer(1, &["10.0.0.1/32", "10.0.1.0/24"])]);
        let new = dev(vec![peer(1, &["10.0.1.0/24", "10.0.0.1/32"])]);
        assert!(PeerDiff::new(&old, &new).is_empty());
    }

    fn arb_dev() -> impl Strategy<Value = DeviceConfig> {
        (
            proptest::collection::vec((0u8..6, 0u16..3, proptest::option::of(0u8..3)), 0..6),
            0u16..3,
        )
            .prop_map(|(peers, port)| {
                let mut d = dev(peers
                    .into_iter()
                    .map(|(k, ka, psk)| {
                        let mut p = peer(k, &["10.0.0.0/8"]);
                        p.persistent_keepalive = ka;
                        p.preshared_key = psk.map(|b| SecretKey(Key([b; 32])));
                        p
                    })
                    .collect());
                d.listen_port = port;
                d
            })
    }

    proptest! {
        #[test]
        fn applying_the_diff_converges(old in arb_dev(), new in arb_dev()) {
            let d = PeerDiff::new(&old, &new);
            let mut cur = old.clone();
            d.apply_to(&mut cur);
            prop_assert_eq!(&cur, &new);
            prop_assert!(PeerDiff::new(&cur, &new).is_empty());
        }
    }
}
