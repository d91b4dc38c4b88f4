//! Pure: maps the `[wg]` section of edge.toml (with its secrets already read and its
//! endpoints already resolved by the I/O shell) into the engine's [`DeviceConfig`], and
//! computes which AllowedIPs routes a change adds and removes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

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

/// Builds the engine configuration for a `[wg]` section.
pub fn device_config(wg: &edge_config::wg::Wg, r: &Resolved) -> DeviceConfig {
    let peers = wg
        .peers
        .iter()
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

#[cfg(test)]
mod tests {
    use super::*;

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
