//! Pure: the `[wg]` section — the WireGuard interface and its peers.

use std::collections::HashMap;
use std::ops::Range;

use ipnet::IpNet;
use serde::Serialize;

use crate::decode::{At, Ctx, Table, integer_in};
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
    /// Where the peer is declared.
    pub location: Location,
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
        .unwrap_or(1420);
    let fwmark = t.opt(ctx, "fwmark");
    let user = t.opt(ctx, "user");
    let location = ctx.location(&t.span());

    struct RawPeer {
        peer: Peer,
        name_span: Range<usize>,
        key_span: Range<usize>,
        allowed: Vec<At<Network>>,
    }
    let raw_peers = t.list(ctx, "peer", |ctx, mut p| {
        let name: Option<At<String>> = p.req(ctx, "name");
        let public_key: Option<At<WgKey>> = p.req(ctx, "public_key");
        let preshared_key: Option<SecretSource> = p.opt(ctx, "preshared_key");
        let allowed: Vec<At<Network>> = p.or(ctx, "allowed_ips", Vec::new());
        let endpoint = p.opt(ctx, "endpoint");
        let persistent_keepalive = p.with(ctx, "persistent_keepalive", |ctx, n| {
            integer_in(ctx, &n, 0, 65535).map(|v| v as u16)
        });
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
                location,
            },
            allowed,
        })
    });
    t.finish(ctx);

    let mut names: HashMap<&str, ()> = HashMap::new();
    let mut keys: HashMap<WgKey, &str> = HashMap::new();
    let mut nets: Vec<(IpNet, &str)> = Vec::new();
    for rp in &raw_peers {
        let p = &rp.peer;
        if names.insert(&p.name, ()).is_some() {
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
        peers,
        location,
    })
}
