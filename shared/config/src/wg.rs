//! Pure: the `[wg]` section — the WireGuard interface and its peers.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use ipnet::IpNet;
use serde::{Serialize, Serializer};
use toml::de::DeValue;

use crate::decode::{At, Ctx, Decode, Invalid, Node, Table, integer_in};
use crate::secret::SecretSource;
use crate::source::Location;
use crate::types::{Endpoint, IfAddr, InterfaceName, Network, Port, WgKey};

/// One WireGuard peer.
#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    /// A name for humans, logs and metrics (`admin-laptop`).
    pub name: String,
    /// The peer's public key.
    pub public_key: WgKey,
    /// Optional preshared key, from a file or credential.
    pub preshared_key: Option<SecretSource>,
    /// Networks routed to this peer and accepted from it.
    pub allowed_ips: Vec<IpNet>,
    /// Where to reach the peer, if it has a fixed address.
    pub endpoint: Option<Endpoint>,
    /// Keepalive interval in seconds.
    pub persistent_keepalive: Option<u16>,
    /// When the peer stops being admitted (its sessions and routes are dropped then).
    pub expires: Option<Expiry>,
    /// Where the peer is declared.
    pub location: Location,
}

/// A moment given in RFC 3339 with an offset (`2027-01-31T18:00:00Z`), held as Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry(pub i64);

impl Expiry {
    /// Parses an RFC 3339 date-time with an offset (`Z` or `+01:00`).
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        chrono::DateTime::parse_from_rfc3339(s.trim())
            .map(|t| Expiry(t.timestamp()))
            .map_err(|e| {
                Invalid::new(format!(
                    "`{s}` is not an RFC 3339 date-time with an offset: {e}"
                ))
                .hint("write it like 2027-01-31T18:00:00Z (UTC) or 2027-01-31T19:00:00+01:00")
            })
    }

    /// Unix seconds.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// The moment in UTC, RFC 3339 (`2027-01-31T18:00:00Z`).
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp(self.0, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_else(|| format!("@{}", self.0))
    }
}

impl std::fmt::Display for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Expiry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl Decode for Expiry {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        let text = match node.value() {
            DeValue::Datetime(d) => d.to_string(),
            DeValue::String(s) => s.to_string(),
            _ => return node.type_error(ctx, "an RFC 3339 date-time (2027-01-31T18:00:00Z)"),
        };
        match Expiry::parse(&text) {
            Ok(e) => Some(e),
            Err(inv) => {
                let d = node.error(ctx, inv.message);
                if let Some(h) = inv.hint {
                    d.hint(h);
                }
                None
            }
        }
    }
}

/// A DNS server for the peers' endpoint names: `IP` (port 53) or `IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Resolver(pub SocketAddr);

impl Resolver {
    /// Parses `IP`, `IP:PORT` or `[IPv6]:PORT`.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Resolver(a));
        }
        s.parse::<IpAddr>()
            .map(|ip| Resolver(SocketAddr::new(ip, 53)))
            .map_err(|_| {
                Invalid::new(format!("`{s}` is not a DNS server address"))
                    .hint("write an IP address, optionally with a port: \"10.17.3.11\" or \"127.0.0.1:5353\"")
            })
    }
}

impl Decode for Resolver {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        node.parse_str(ctx, "a DNS server address", Resolver::parse)
    }
}

/// The `[wg]` section.
#[derive(Debug, Clone, Serialize)]
pub struct Wg {
    /// TUN interface name (`wg0`).
    pub interface: InterfaceName,
    /// Span of `interface`.
    #[serde(skip)]
    pub interface_span: Range<usize>,
    /// UDP listen port.
    pub listen_port: Port,
    /// Span of `listen_port` (for the firewall cross-check).
    #[serde(skip)]
    pub listen_port_span: Range<usize>,
    /// Location of `listen_port`.
    pub listen_port_location: Location,
    /// The interface's private key.
    pub private_key: SecretSource,
    /// Addresses of the interface (the host's address in the WireGuard network).
    pub addresses: Vec<IpNet>,
    /// Interface MTU.
    pub mtu: u32,
    /// Firewall mark on outgoing UDP packets.
    pub fwmark: Option<u32>,
    /// User to run as after setup (None: stay as started, e.g. systemd's DynamicUser).
    pub user: Option<String>,
    /// DNS servers for the peers' endpoint names (empty: the system's resolv.conf).
    pub resolvers: Vec<SocketAddr>,
    /// The peers.
    pub peers: Vec<Peer>,
    /// Where the section starts.
    pub location: Location,
}

/// Decodes `[wg]`.
pub(crate) fn decode(ctx: &mut Ctx<'_>, mut t: Table<'_, '_>) -> Option<Wg> {
    let interface: Option<At<InterfaceName>> = t.req(ctx, "interface");
    let listen_port: Option<At<Port>> = t.req(ctx, "listen_port");
    let private_key: Option<SecretSource> = t.req(ctx, "private_key");
    let addresses: Vec<At<IfAddr>> = t.or(ctx, "addresses", Vec::new());
    let mtu = t
        .with(ctx, "mtu", |ctx, n| {
            integer_in(ctx, &n, 576, 65535).map(|v| v as u32)
        })
        .unwrap_or(DEFAULT_MTU);
    let fwmark = t.opt(ctx, "fwmark");
    let user = t.opt(ctx, "user");
    let resolvers: Vec<Resolver> = t.or(ctx, "resolvers", Vec::new());
    let location = ctx.location(&t.span());

    let raw_peers = t.list(ctx, "peer", decode_peer);
    t.finish(ctx);
    check_peers(ctx, &raw_peers);
    let peers = raw_peers.into_iter().map(|r| r.peer).collect();

    let (interface, listen_port, private_key) = (interface?, listen_port?, private_key?);
    Some(Wg {
        interface: interface.value,
        interface_span: interface.span,
        listen_port: listen_port.value,
        listen_port_span: listen_port.span,
        listen_port_location: listen_port.location,
        private_key,
        addresses: addresses.into_iter().map(|a| a.value.0).collect(),
        mtu,
        fwmark,
        user,
        resolvers: resolvers.into_iter().map(|r| r.0).collect(),
        peers,
        location,
    })
}

/// `mtu` of the WireGuard interface: room for the tunnel's 80 bytes inside a 1500 path.
pub const DEFAULT_MTU: u32 = 1420;

/// A peer as decoded, with the spans the checks across peers point at.
struct RawPeer {
    peer: Peer,
    name_span: Range<usize>,
    key_span: Range<usize>,
    allowed: Vec<At<Network>>,
}

/// One `[[wg.peer]]`.
fn decode_peer(ctx: &mut Ctx<'_>, mut p: Table<'_, '_>) -> Option<RawPeer> {
    let name: Option<At<String>> = p.req(ctx, "name");
    let public_key: Option<At<WgKey>> = p.req(ctx, "public_key");
    let preshared_key: Option<SecretSource> = p.opt(ctx, "preshared_key");
    let allowed: Vec<At<Network>> = p.or(ctx, "allowed_ips", Vec::new());
    let endpoint = p.opt(ctx, "endpoint");
    let persistent_keepalive = p.with(ctx, "persistent_keepalive", |ctx, n| {
        integer_in(ctx, &n, 0, 65535).map(|v| v as u16)
    });
    let expires: Option<Expiry> = p.opt(ctx, "expires");
    let location = ctx.location(&p.span());
    p.finish(ctx);
    let (name, key) = (name?, public_key?);
    if name.value.is_empty() {
        ctx.error(name.span.clone(), "wg.peer.name", "peer name is empty");
    }
    Some(RawPeer {
        name_span: name.span.clone(),
        key_span: key.span.clone(),
        peer: Peer {
            name: name.value,
            public_key: key.value,
            preshared_key,
            allowed_ips: allowed.iter().map(|a| a.value.0).collect(),
            endpoint,
            persistent_keepalive: persistent_keepalive.filter(|k| *k > 0),
            expires,
            location,
        },
        allowed,
    })
}

/// Peer names and keys unique, allowed IPs disjoint between peers.
fn check_peers(ctx: &mut Ctx<'_>, raw_peers: &[RawPeer]) {
    let mut names: HashSet<&str> = HashSet::new();
    let mut keys: HashMap<WgKey, &str> = HashMap::new();
    let mut nets: Vec<(IpNet, &str)> = Vec::new();
    for rp in raw_peers {
        let p = &rp.peer;
        if !names.insert(&p.name) {
            ctx.error(
                rp.name_span.clone(),
                "wg.peer.name",
                format!("peer name `{}` is used twice", p.name),
            )
            .hint("peer names must be unique");
        }
        if let Some(other) = keys.insert(p.public_key, &p.name) {
            ctx.error(
                rp.key_span.clone(),
                "wg.peer.public_key",
                format!("peers `{other}` and `{}` have the same public key", p.name),
            );
        }
        for a in &rp.allowed {
            if let Some((net, other)) = nets
                .iter()
                .find(|(n, o)| *o != p.name && (n.contains(&a.value.0) || a.value.0.contains(n)))
            {
                ctx.error(
                    a.span.clone(),
                    "wg.peer.allowed_ips",
                    format!(
                        "allowed IP {} of peer `{}` overlaps {net} of peer `{other}`",
                        a.value.0, p.name
                    ),
                )
                .hint(
                    "WireGuard routes each address to exactly one peer: make the ranges disjoint",
                );
            }
        }
        nets.extend(rp.allowed.iter().map(|a| (a.value.0, p.name.as_str())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wg_of(peer_extra: &str, wg_extra: &str) -> Result<Wg, String> {
        let text = format!(
            "version = 1\n[wg]\ninterface = \"wg0\"\nlisten_port = 51820\n\
             private_key = {{ file = \"/etc/edge/wg0.key\" }}\n{wg_extra}\n\
             [[wg.peer]]\nname = \"phone\"\n\
             public_key = \"cDiQaMQHWzqkrUCNxK562xcypEvZk+MLZnnM8QGpalM=\"\n{peer_extra}\n"
        );
        crate::parse(std::path::Path::new("t.toml"), &text)
            .map(|l| l.config.wg.unwrap())
            .map_err(|d| d.render())
    }

    #[test]
    fn expires_reads_toml_date_times_and_strings_with_an_offset() {
        let w = wg_of("expires = 2027-01-31T18:00:00Z", "").unwrap();
        assert_eq!(w.peers[0].expires, Some(Expiry(1_801_418_400)));
        let w = wg_of("expires = \"2027-01-31T19:00:00+01:00\"", "").unwrap();
        assert_eq!(w.peers[0].expires, Some(Expiry(1_801_418_400)));
        assert_eq!(
            w.peers[0].expires.unwrap().to_rfc3339(),
            "2027-01-31T18:00:00Z"
        );
        assert_eq!(wg_of("", "").unwrap().peers[0].expires, None);
    }

    #[test]
    fn an_expiry_without_offset_is_a_located_error() {
        let e = wg_of("expires = 2027-01-31T18:00:00", "").unwrap_err();
        assert!(e.contains("t.toml:10:11"), "{e}");
        assert!(e.contains("offset"), "{e}");
        let e = wg_of("expires = \"next week\"", "").unwrap_err();
        assert!(
            e.contains("2027-01-31T18:00:00Z"),
            "hint shows the form: {e}"
        );
    }

    #[test]
    fn resolvers_default_to_port_53() {
        let w = wg_of(
            "",
            "resolvers = [\"10.17.3.11\", \"127.0.0.1:5353\", \"[::1]:53\"]",
        )
        .unwrap();
        let want: Vec<SocketAddr> = ["10.17.3.11:53", "127.0.0.1:5353", "[::1]:53"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(w.resolvers, want);
        let e = wg_of("", "resolvers = [\"dns.example\"]").unwrap_err();
        assert!(e.contains("not a DNS server address"), "{e}");
    }
}
