//! Pure: the peers' endpoints remembered across restarts (the daemon's
//! `<state_dir>/wg/endpoints.json`): which live endpoints are worth remembering, the
//! file's text form, and which remembered endpoints a configuration uses.
//!
//! An endpoint is remembered when it was learned from the peer's authenticated packets
//! (roaming), i.e. when the live endpoint differs from the configured one. On start it is
//! used only for peers without a configured endpoint (a DNS name that did not resolve
//! counts as none): the file never overrides the configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::model::{Key, KeyError, PeerConfig};

/// Format version of the file.
pub const VERSION: u32 = 1;

/// Errors of reading the file's text.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The text is not JSON of the file's shape.
    #[error("failed to decode the endpoints json")]
    Decode {
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The file was written by another format version.
    #[error("unsupported endpoints file version {found} (expected {VERSION})")]
    CheckVersion {
        /// The version found.
        found: u32,
    },
    /// A peer key is not a base64 WireGuard key.
    #[error("failed to parse peer key {key:?} of the endpoints file")]
    ParseKey {
        /// The text found.
        key: String,
        /// The cause.
        #[source]
        source: KeyError,
    },
}

/// One remembered endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remembered {
    /// The peer's configured name, for people reading the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The address the peer's last authenticated packets came from.
    pub endpoint: SocketAddr,
}

/// A peer's endpoints as the device sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveEndpoint {
    /// The peer's public key.
    pub public_key: Key,
    /// The peer's configured name.
    pub name: Option<String>,
    /// The endpoint in the configuration.
    pub configured: Option<SocketAddr>,
    /// Where packets to the peer go now (configured, remembered or roamed).
    pub live: Option<SocketAddr>,
}

/// The remembered endpoints, by peer public key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoints(pub BTreeMap<Key, Remembered>);

/// The file's JSON shape: keys in base64, like `wg` shows them.
#[derive(Serialize, Deserialize)]
struct FileRepr {
    version: u32,
    #[serde(default)]
    peers: BTreeMap<String, Remembered>,
}

impl Endpoints {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Endpoints, ParseError> {
        let f: FileRepr =
            serde_json::from_str(text).map_err(|source| ParseError::Decode { source })?;
        if f.version != VERSION {
            return Err(ParseError::CheckVersion { found: f.version });
        }
        let mut out = BTreeMap::new();
        for (k, r) in f.peers {
            let key = Key::from_base64(&k).map_err(|source| ParseError::ParseKey {
                key: k.clone(),
                source,
            })?;
            out.insert(key, r);
        }
        Ok(Endpoints(out))
    }

    /// Renders the file's text (pretty JSON, peers sorted by key).
    pub fn render(&self) -> Result<String, serde_json::Error> {
        let f = FileRepr {
            version: VERSION,
            peers: self
                .0
                .iter()
                .map(|(k, r)| (k.to_base64(), r.clone()))
                .collect(),
        };
        serde_json::to_string_pretty(&f).map(|mut s| {
            s.push('\n');
            s
        })
    }

    /// What to remember of the device's peers: each live endpoint that differs from the
    /// configured one (it was learned from the peer's packets or from an earlier run).
    pub fn from_live(peers: &[LiveEndpoint]) -> Endpoints {
        Endpoints(
            peers
                .iter()
                .filter_map(|p| {
                    let live = p.live?;
                    (p.configured != Some(live)).then(|| {
                        (
                            p.public_key,
                            Remembered {
                                name: p.name.clone(),
                                endpoint: live,
                            },
                        )
                    })
                })
                .collect(),
        )
    }

    /// The remembered endpoints of those `peers` that have no configured endpoint.
    pub fn hints<'a>(
        &self,
        peers: impl IntoIterator<Item = &'a PeerConfig>,
    ) -> Vec<(Key, SocketAddr)> {
        peers
            .into_iter()
            .filter(|p| p.endpoint.is_none())
            .filter_map(|p| Some((p.public_key, self.0.get(&p.public_key)?.endpoint)))
            .collect()
    }
}

/// Test data: peer `[1; 32]` "laptop" at 198.51.100.7:51820 and unnamed peer `[2; 32]`
/// at `v6_endpoint` (also used by `state`'s tests).
#[cfg(test)]
pub(crate) fn two_peers(v6_endpoint: &str) -> Endpoints {
    let mut e = Endpoints::default();
    e.0.insert(
        Key([1; 32]),
        Remembered {
            name: Some("laptop".into()),
            endpoint: "198.51.100.7:51820".parse().unwrap(),
        },
    );
    e.0.insert(
        Key([2; 32]),
        Remembered {
            name: None,
            endpoint: v6_endpoint.parse().unwrap(),
        },
    );
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(b: u8, configured: Option<&str>, live: Option<&str>) -> LiveEndpoint {
        LiveEndpoint {
            public_key: Key([b; 32]),
            name: Some(format!("p{b}")),
            configured: configured.map(|s| s.parse().unwrap()),
            live: live.map(|s| s.parse().unwrap()),
        }
    }

    #[test]
    fn only_learned_endpoints_are_remembered() {
        let e = Endpoints::from_live(&[
            live(1, None, Some("198.51.100.7:51820")),
            live(2, Some("192.0.2.1:51820"), Some("192.0.2.1:51820")),
            live(3, Some("192.0.2.1:51820"), Some("203.0.113.9:4000")),
            live(4, None, None),
        ]);
        let keys: Vec<u8> = e.0.keys().map(|k| k.0[0]).collect();
        assert_eq!(keys, vec![1, 3]);
        assert_eq!(
            e.0[&Key([3; 32])].endpoint,
            "203.0.113.9:4000".parse().unwrap()
        );
        assert_eq!(e.0[&Key([1; 32])].name.as_deref(), Some("p1"));
    }

    #[test]
    fn text_round_trips_with_ipv6_and_unnamed_peers() {
        let e = two_peers("[2001:db8::7]:41641");
        let text = e.render().unwrap();
        assert!(text.contains(&Key([1; 32]).to_base64()), "{text}");
        assert!(text.contains("\"[2001:db8::7]:41641\""), "{text}");
        assert!(
            !text.contains("null"),
            "unnamed peers have no name field: {text}"
        );
        assert_eq!(Endpoints::parse(&text).unwrap(), e);
    }

    #[test]
    fn bad_text_is_an_error_naming_the_problem() {
        assert!(matches!(
            Endpoints::parse("{not json"),
            Err(ParseError::Decode { .. })
        ));
        assert!(matches!(
            Endpoints::parse(r#"{"version": 9, "peers": {}}"#),
            Err(ParseError::CheckVersion { found: 9 })
        ));
        assert!(matches!(
            Endpoints::parse(r#"{"version": 1, "peers": {"xyz": {"endpoint": "192.0.2.1:1"}}}"#),
            Err(ParseError::ParseKey { .. })
        ));
        assert!(matches!(
            Endpoints::parse(&format!(
                r#"{{"version": 1, "peers": {{"{}": {{"endpoint": "nowhere"}}}}}}"#,
                Key([1; 32]).to_base64()
            )),
            Err(ParseError::Decode { .. })
        ));
    }

    #[test]
    fn hints_only_for_peers_without_a_configured_endpoint() {
        let mut e = Endpoints::default();
        for b in [1u8, 2, 3] {
            e.0.insert(
                Key([b; 32]),
                Remembered {
                    name: None,
                    endpoint: format!("198.51.100.{b}:51820").parse().unwrap(),
                },
            );
        }
        let peers = [
            PeerConfig {
                public_key: Key([1; 32]),
                ..PeerConfig::default()
            },
            PeerConfig {
                public_key: Key([2; 32]),
                endpoint: Some("192.0.2.2:51820".parse().unwrap()),
                ..PeerConfig::default()
            },
            PeerConfig {
                public_key: Key([4; 32]),
                ..PeerConfig::default()
            },
        ];
        assert_eq!(
            e.hints(&peers),
            vec![(Key([1; 32]), "198.51.100.1:51820".parse().unwrap())]
        );
    }
}
