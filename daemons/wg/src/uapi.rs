//! Pure: the cross-platform WireGuard userspace API (UAPI) text protocol: parsing `set=1`
//! transactions, applying them to a [`DeviceConfig`], and formatting `get=1` replies from
//! a [`DeviceStatus`] snapshot. See <https://www.wireguard.com/xplatform/>.

use std::fmt::Write as _;
use std::net::SocketAddr;

use ipnet::IpNet;

use crate::model::{DeviceConfig, Key, PeerConfig, SecretKey};

/// Errors of parsing or applying a UAPI `set` transaction.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UapiError {
    /// A line is not `key=value`.
    #[error("uapi line {line} is not key=value")]
    ParseLine {
        /// 1-based line number.
        line: usize,
    },
    /// A value could not be parsed.
    #[error("uapi line {line}: invalid value for {key}")]
    ParseValue {
        /// 1-based line number.
        line: usize,
        /// The key whose value was invalid.
        key: String,
    },
    /// A key is not known in its context.
    #[error("uapi line {line}: unknown key {key}")]
    UnknownKey {
        /// 1-based line number.
        line: usize,
        /// The unknown key.
        key: String,
    },
    /// A peer-level key appeared before any `public_key=`.
    #[error("uapi line {line}: {key} before any public_key")]
    PeerKeyOutsidePeer {
        /// 1-based line number.
        line: usize,
        /// The misplaced key.
        key: String,
    },
    /// The request is neither `get=1` nor `set=1`.
    #[error("uapi request is neither get=1 nor set=1")]
    ParseOperation,
}

impl UapiError {
    /// The errno that the UAPI reports for this error (positive, as `wg` expects).
    pub fn errno(&self) -> i32 {
        match self {
            UapiError::ParseOperation => libc::EPROTO,
            _ => libc::EINVAL,
        }
    }
}

/// The changes one `set=1` block requests for a peer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerSet {
    /// The peer's public key.
    pub public_key: Key,
    /// `remove=true`.
    pub remove: bool,
    /// `update_only=true`: do not create the peer.
    pub update_only: bool,
    /// `preshared_key=` (all-zero = remove).
    pub preshared_key: Option<Option<SecretKey>>,
    /// `endpoint=`.
    pub endpoint: Option<SocketAddr>,
    /// `persistent_keepalive_interval=`.
    pub persistent_keepalive: Option<u16>,
    /// `replace_allowed_ips=true`.
    pub replace_allowed_ips: bool,
    /// `allowed_ip=` lines, in order.
    pub allowed_ips: Vec<IpNet>,
}

/// A parsed `set=1` transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetRequest {
    /// `private_key=` (empty or all-zero = remove).
    pub private_key: Option<Option<SecretKey>>,
    /// `listen_port=`.
    pub listen_port: Option<u16>,
    /// `fwmark=` (0 = remove).
    pub fwmark: Option<u32>,
    /// `replace_peers=true`.
    pub replace_peers: bool,
    /// Per-peer blocks in order.
    pub peers: Vec<PeerSet>,
}

/// A UAPI request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `get=1`.
    Get,
    /// `set=1` with its body.
    Set(SetRequest),
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Parses a whole request: the first line (`get=1`/`set=1`) and, for set, the body lines
/// (without the terminating empty line).
pub fn parse_request(text: &str) -> Result<Request, UapiError> {
    let mut lines = text.lines();
    match lines.next() {
        Some("get=1") => Ok(Request::Get),
        Some("set=1") => parse_set(lines).map(Request::Set),
        _ => Err(UapiError::ParseOperation),
    }
}

/// Parses the body lines of a `set=1` transaction.
pub fn parse_set<'a>(lines: impl Iterator<Item = &'a str>) -> Result<SetRequest, UapiError> {
    let mut req = SetRequest::default();
    for (i, raw) in lines.enumerate() {
        let line = i + 2;
        if raw.is_empty() {
            break;
        }
        let (key, value) = raw.split_once('=').ok_or(UapiError::ParseLine { line })?;
        let bad = || UapiError::ParseValue {
            line,
            key: key.to_string(),
        };
        if key == "public_key" {
            let k = Key::from_hex(value).map_err(|_| bad())?;
            req.peers.push(PeerSet {
                public_key: k,
                ..PeerSet::default()
            });
            continue;
        }
        if let Some(peer) = req.peers.last_mut() {
            match key {
                "remove" => peer.remove = parse_bool(value).ok_or_else(bad)?,
                "update_only" => peer.update_only = parse_bool(value).ok_or_else(bad)?,
                "preshared_key" => {
                    let k = Key::from_hex(value).map_err(|_| bad())?;
                    peer.preshared_key = Some((!k.is_zero()).then_some(SecretKey(k)));
                }
                "endpoint" => peer.endpoint = Some(value.parse().map_err(|_| bad())?),
                "persistent_keepalive_interval" => {
                    peer.persistent_keepalive = Some(value.parse().map_err(|_| bad())?)
                }
                "replace_allowed_ips" => {
                    peer.replace_allowed_ips = parse_bool(value).ok_or_else(bad)?
                }
                "allowed_ip" => {
                    let n: IpNet = value.parse().map_err(|_| bad())?;
                    peer.allowed_ips.push(n.trunc());
                }
                "protocol_version" => {
                    if value != "1" {
                        return Err(bad());
                    }
                }
                _ => {
                    return Err(UapiError::UnknownKey {
                        line,
                        key: key.to_string(),
                    });
                }
            }
            continue;
        }
        match key {
            "private_key" => {
                req.private_key = Some(if value.is_empty() {
                    None
                } else {
                    let k = Key::from_hex(value).map_err(|_| bad())?;
                    (!k.is_zero()).then_some(SecretKey(k))
                })
            }
            "listen_port" => req.listen_port = Some(value.parse().map_err(|_| bad())?),
            "fwmark" => {
                req.fwmark = Some(if value.is_empty() {
                    0
                } else {
                    value.parse().map_err(|_| bad())?
                })
            }
            "replace_peers" => req.replace_peers = parse_bool(value).ok_or_else(bad)?,
            "remove"
            | "update_only"
            | "preshared_key"
            | "endpoint"
            | "persistent_keepalive_interval"
            | "replace_allowed_ips"
            | "allowed_ip"
            | "protocol_version" => {
                return Err(UapiError::PeerKeyOutsidePeer {
                    line,
                    key: key.to_string(),
                });
            }
            _ => {
                return Err(UapiError::UnknownKey {
                    line,
                    key: key.to_string(),
                });
            }
        }
    }
    Ok(req)
}

/// Applies a `set` transaction to a configuration, returning the new configuration.
/// Pure: the device then applies `PeerDiff::new(old, new)`.
pub fn apply_set(cfg: &DeviceConfig, req: &SetRequest) -> DeviceConfig {
    let mut out = cfg.clone();
    if let Some(k) = req.private_key {
        out.private_key = k;
    }
    if let Some(p) = req.listen_port {
        out.listen_port = p;
    }
    if let Some(m) = req.fwmark {
        out.fwmark = m;
    }
    if req.replace_peers {
        out.peers.clear();
    }
    // A peer whose public key equals our own is ignored, as wireguard-go does.
    let own = out.public_key();
    for ps in &req.peers {
        if ps.remove {
            out.peers.remove(&ps.public_key);
            continue;
        }
        if Some(ps.public_key) == own {
            continue;
        }
        let exists = out.peers.contains_key(&ps.public_key);
        if !exists && ps.update_only {
            continue;
        }
        let p = out
            .peers
            .entry(ps.public_key)
            .or_insert_with(|| PeerConfig {
                public_key: ps.public_key,
                ..PeerConfig::default()
            });
        if let Some(v) = ps.preshared_key {
            p.preshared_key = v;
        }
        if let Some(v) = ps.endpoint {
            p.endpoint = Some(v);
        }
        if let Some(v) = ps.persistent_keepalive {
            p.persistent_keepalive = v;
        }
        if ps.replace_allowed_ips {
            p.allowed_ips.clear();
        }
        for n in &ps.allowed_ips {
            if !p.allowed_ips.contains(n) {
                p.allowed_ips.push(*n);
            }
        }
    }
    out
}

/// The live state of one peer, as `wg show` and `edgectl wg show` report it.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PeerStatus {
    /// Optional configured name.
    pub name: Option<String>,
    /// Public key (base64 in JSON).
    pub public_key: String,
    /// True when a preshared key is set.
    #[serde(skip)]
    pub preshared_key: Option<[u8; 32]>,
    /// Live endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Last handshake as Unix time (seconds, nanoseconds); (0, 0) = never.
    pub last_handshake: (u64, u32),
    /// Bytes sent (encrypted payload).
    pub tx_bytes: u64,
    /// Bytes received (decrypted payload).
    pub rx_bytes: u64,
    /// Persistent keepalive interval (0 = off).
    pub persistent_keepalive: u16,
    /// Allowed IPs.
    pub allowed_ips: Vec<IpNet>,
}

/// The live state of the device.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct DeviceStatus {
    /// Interface name.
    pub interface: String,
    /// Private key (never serialised to JSON).
    #[serde(skip)]
    pub private_key: Option<[u8; 32]>,
    /// Public key (base64).
    pub public_key: Option<String>,
    /// Bound listen port (0 = not bound).
    pub listen_port: u16,
    /// fwmark (0 = none).
    pub fwmark: u32,
    /// Peers.
    pub peers: Vec<PeerStatus>,
}

/// Formats a `get=1` reply, including the final `errno=0` and the empty line.
pub fn format_get(st: &DeviceStatus) -> String {
    let mut s = String::with_capacity(256 + st.peers.len() * 256);
    if let Some(k) = st.private_key {
        let _ = writeln!(s, "private_key={}", hex::encode(k));
    }
    if st.listen_port != 0 {
        let _ = writeln!(s, "listen_port={}", st.listen_port);
    }
    if st.fwmark != 0 {
        let _ = writeln!(s, "fwmark={}", st.fwmark);
    }
    for p in &st.peers {
        let pk = Key::from_base64(&p.public_key).unwrap_or_default();
        let _ = writeln!(s, "public_key={}", pk.to_hex());
        if let Some(psk) = p.preshared_key {
            let _ = writeln!(s, "preshared_key={}", hex::encode(psk));
        }
        let _ = writeln!(s, "protocol_version=1");
        if let Some(ep) = p.endpoint {
            let _ = writeln!(s, "endpoint={ep}");
        }
        let _ = writeln!(s, "last_handshake_time_sec={}", p.last_handshake.0);
        let _ = writeln!(s, "last_handshake_time_nsec={}", p.last_handshake.1);
        let _ = writeln!(s, "tx_bytes={}", p.tx_bytes);
        let _ = writeln!(s, "rx_bytes={}", p.rx_bytes);
        let _ = writeln!(
            s,
            "persistent_keepalive_interval={}",
            p.persistent_keepalive
        );
        for n in &p.allowed_ips {
            let _ = writeln!(s, "allowed_ip={n}");
        }
    }
    s.push_str("errno=0\n\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hexkey(b: u8) -> String {
        Key([b; 32]).to_hex()
    }

    #[test]
    fn parses_what_wg_set_sends() {
        let text = format!(
            "set=1\nprivate_key={}\nlisten_port=51820\nfwmark=66\nreplace_peers=true\n\
             public_key={}\npreshared_key={}\nendpoint=[fd00::1]:51820\n\
             persistent_keepalive_interval=25\nreplace_allowed_ips=true\n\
             allowed_ip=10.0.0.9/24\nallowed_ip=fd00::/64\n\
             public_key={}\nremove=true\n\n",
            hexkey(1),
            hexkey(2),
            hexkey(3),
            hexkey(4)
        );
        let Request::Set(req) = parse_request(&text).unwrap() else {
            panic!("not a set")
        };
        assert_eq!(req.private_key, Some(Some(SecretKey(Key([1; 32])))));
        assert_eq!(req.listen_port, Some(51820));
        assert_eq!(req.fwmark, Some(66));
        assert!(req.replace_peers);
        assert_eq!(req.peers.len(), 2);
        let p = &req.peers[0];
        assert_eq!(p.public_key, Key([2; 32]));
        assert_eq!(p.endpoint, Some("[fd00::1]:51820".parse().unwrap()));
        assert_eq!(p.persistent_keepalive, Some(25));
        assert!(p.replace_allowed_ips);
        assert_eq!(
            p.allowed_ips,
            vec![
                "10.0.0.0/24".parse::<IpNet>().unwrap(),
                "fd00::/64".parse().unwrap()
            ]
        );
        assert!(req.peers[1].remove);
    }

    #[test]
    fn rejects_bad_input_with_line_numbers() {
        assert_eq!(
            parse_request("set=1\nlisten_port=99999\n\n"),
            Err(UapiError::ParseValue {
                line: 2,
                key: "listen_port".into()
            })
        );
        assert_eq!(
            parse_request("set=1\nendpoint=1.2.3.4:5\n\n"),
            Err(UapiError::PeerKeyOutsidePeer {
                line: 2,
                key: "endpoint".into()
            })
        );
        assert_eq!(
            parse_request("set=1\nbogus\n\n"),
            Err(UapiError::ParseLine { line: 2 })
        );
        assert_eq!(parse_request("put=1\n\n"), Err(UapiError::ParseOperation));
        assert_eq!(
            parse_request("set=1\nfrobnicate=1\n\n").map_err(|e| e.errno()),
            Err(libc::EINVAL)
        );
    }

    #[test]
    fn apply_set_modifies_existing_peers_in_place() {
        let mut cfg = DeviceConfig::default();
        let add = parse_set(
            format!(
                "public_key={}\nendpoint=10.0.0.1:1\nallowed_ip=10.1.0.0/16\n",
                hexkey(2)
            )
            .lines(),
        )
        .unwrap();
        cfg = apply_set(&cfg, &add);
        let modify = parse_set(
            format!(
                "public_key={}\nupdate_only=true\npersistent_keepalive_interval=5\n\
                 replace_allowed_ips=true\nallowed_ip=10.2.0.0/16\n\
                 public_key={}\nupdate_only=true\n",
                hexkey(2),
                hexkey(3)
            )
            .lines(),
        )
        .unwrap();
        let new = apply_set(&cfg, &modify);
        assert_eq!(new.peers.len(), 1, "update_only must not create a peer");
        let p = &new.peers[&Key([2; 32])];
        assert_eq!(p.persistent_keepalive, 5);
        assert_eq!(p.endpoint, Some("10.0.0.1:1".parse().unwrap()));
        assert_eq!(p.allowed_ips, vec!["10.2.0.0/16".parse::<IpNet>().unwrap()]);
    }

    #[test]
    fn own_public_key_is_not_a_peer() {
        let sk = Key([5; 32]);
        let cfg = DeviceConfig {
            private_key: Some(SecretKey(sk)),
            ..DeviceConfig::default()
        };
        let req = parse_set(format!("public_key={}\n", sk.public_from_private().to_hex()).lines())
            .unwrap();
        assert!(apply_set(&cfg, &req).peers.is_empty());
    }

    #[test]
    fn get_reply_has_epoch_times_and_private_key() {
        let st = DeviceStatus {
            interface: "wg0".into(),
            private_key: Some([1; 32]),
            public_key: None,
            listen_port: 51820,
            fwmark: 0,
            peers: vec![PeerStatus {
                public_key: Key([2; 32]).to_base64(),
                endpoint: Some("10.0.0.1:51820".parse().unwrap()),
                last_handshake: (1_700_000_000, 5),
                tx_bytes: 10,
                rx_bytes: 20,
                allowed_ips: vec!["10.1.0.0/16".parse().unwrap()],
                ..PeerStatus::default()
            }],
        };
        let out = format_get(&st);
        let want = format!(
            "private_key={}\nlisten_port=51820\npublic_key={}\nprotocol_version=1\n\
             endpoint=10.0.0.1:51820\nlast_handshake_time_sec=1700000000\n\
             last_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\n\
             persistent_keepalive_interval=0\nallowed_ip=10.1.0.0/16\nerrno=0\n\n",
            hexkey(1),
            hexkey(2)
        );
        assert_eq!(out, want);
    }
}
