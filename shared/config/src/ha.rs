//! Pure: the `[ha]` section — two edge hosts under keepalived's VRRP. This host and its peer
//! (name, own address, priority), the VRRP instance (name, router id, interface, advert
//! interval), the virtual addresses the master holds, and conntrackd on/off. A file without
//! `[ha]` is a single host exactly as before.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use crate::decode::{At, Ctx, Node, Table, integer_in, valid_name};
use crate::source::Location;
use crate::types::{Dur, IfAddr, InterfaceName, Ip};

/// The UDP port conntrackd syncs on (its default).
pub const CONNTRACKD_PORT: u16 = 3780;
/// Where Debian's conntrackd reads its configuration.
pub const DEFAULT_CONNTRACKD_CONFIG: &str = "/etc/conntrackd/conntrackd.conf";
/// Default VRRP priority of each host (equal priorities: a host that comes back does not
/// take over again).
pub const DEFAULT_PRIORITY: u8 = 100;
/// Default advertisement interval (VRRPv3 allows centiseconds).
pub const DEFAULT_ADVERT_INT: Duration = Duration::from_millis(500);
/// Default wait after becoming master before edge-ddns may write.
pub const DEFAULT_DDNS_HOLD_OFF: Duration = Duration::from_secs(5);
/// What an unhealthy host loses from its priority (keepalived's `track_file` weight).
pub const HEALTH_PENALTY: u8 = 100;

/// One of the two hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node2 {
    /// Host name (keepalived's `router_id`, logs, status).
    pub name: String,
    /// Its own address on the VRRP interface (never a virtual address).
    pub address: Ipv4Addr,
    /// VRRP priority, 1–254.
    pub priority: u8,
}

/// A virtual address the master holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vip {
    /// Address with prefix (`192.198.0.30/32`).
    pub address: IpNet,
    /// Interface it is added to.
    pub interface: InterfaceName,
    /// Where it is declared.
    pub location: Location,
    /// Byte span of the address (cross-section checks).
    #[serde(skip)]
    pub span: Range<usize>,
}

/// The `[ha]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ha {
    /// This host.
    #[serde(rename = "self")]
    pub this: Node2,
    /// The other host.
    pub peer: Node2,
    /// keepalived's `vrrp_instance` name; only its events are followed.
    pub instance: String,
    /// VRRP virtual router id, 1–255, unique on the segment.
    pub virtual_router_id: u8,
    /// Interface the adverts (and conntrackd's sync) use: the WAN bridge.
    pub interface: InterfaceName,
    /// VRRPv3 advertisement interval.
    pub advert_int: Duration,
    /// Virtual addresses; the first is the one the ISP router forwards to.
    pub vips: Vec<Vip>,
    /// Sync the connection table with conntrackd.
    pub conntrackd: bool,
    /// conntrackd's configuration file (for `conntrackd -C FILE -c` on failover).
    pub conntrackd_config: PathBuf,
    /// How long edge-ddns waits after becoming master before it may write.
    pub ddns_hold_off: Duration,
    /// Where the section is declared.
    pub location: Location,
    /// Byte span of `address` (cross-section checks).
    #[serde(skip)]
    pub address_span: Range<usize>,
    /// Byte span of `interface`.
    #[serde(skip)]
    pub interface_span: Range<usize>,
    /// Byte span of `conntrackd` (or of the section).
    #[serde(skip)]
    pub conntrackd_span: Range<usize>,
}

impl Ha {
    /// True when `ip` is one of the virtual addresses.
    pub fn is_vip(&self, ip: IpAddr) -> bool {
        self.vips.iter().any(|v| v.address.addr() == ip)
    }

    /// The virtual addresses on `interface`.
    pub fn vips_on<'a>(&'a self, interface: &'a str) -> impl Iterator<Item = &'a Vip> + 'a {
        self.vips
            .iter()
            .filter(move |v| v.interface.as_str() == interface)
    }

    /// The same pair seen from the peer: `self` and `peer` swapped (the peer's
    /// keepalived.conf is generated from it).
    pub fn swapped(&self) -> Ha {
        let mut h = self.clone();
        std::mem::swap(&mut h.this, &mut h.peer);
        h
    }
}

fn name(ctx: &mut Ctx<'_>, t: &mut Table<'_, '_>, key: &'static str) -> Option<At<String>> {
    let n: At<String> = t.req(ctx, key)?;
    if !valid_name(&n.value) {
        let path = format!("{}.{key}", t.path());
        ctx.error(
            n.span.clone(),
            &path,
            format!("`{}` is not a valid name for keepalived", n.value),
        )
        .hint("use 1 to 64 letters, digits, `-`, `_` or `.`, starting with a letter or digit");
        return None;
    }
    Some(n)
}

fn ipv4(ctx: &mut Ctx<'_>, t: &mut Table<'_, '_>, key: &'static str) -> Option<At<Ipv4Addr>> {
    let a: At<Ip> = t.req(ctx, key)?;
    match a.value.0 {
        IpAddr::V4(v4) => Some(At {
            value: v4,
            span: a.span,
            location: a.location,
        }),
        IpAddr::V6(_) => {
            let path = format!("{}.{key}", t.path());
            ctx.error(
                a.span,
                &path,
                format!("{} is IPv6: [ha] runs one IPv4 VRRP instance", a.value.0),
            )
            .hint("give this host's IPv4 address on the VRRP interface");
            None
        }
    }
}

/// The priority and the span of its value (the table's when absent).
fn priority(ctx: &mut Ctx<'_>, t: &mut Table<'_, '_>) -> (u8, Range<usize>) {
    let span = t
        .raw("priority")
        .map_or_else(|| t.span(), |(v, _)| v.span());
    let p = t
        .with(ctx, "priority", |ctx, n| {
            let v = integer_in(ctx, &n, 1, 254)?;
            u8::try_from(v).ok()
        })
        .unwrap_or(DEFAULT_PRIORITY);
    (p, span)
}

type NodeParts = (Option<At<String>>, Option<At<Ipv4Addr>>, (u8, Range<usize>));

fn node(ctx: &mut Ctx<'_>, t: &mut Table<'_, '_>) -> NodeParts {
    (
        name(ctx, t, "name"),
        ipv4(ctx, t, "address"),
        priority(ctx, t),
    )
}

fn advert_int(ctx: &mut Ctx<'_>, n: Node<'_, '_>) -> Option<Duration> {
    let d = <Dur as crate::decode::Decode>::decode(ctx, n.clone())?.0;
    let ms = d.as_millis();
    if !(10..=40_950).contains(&ms) || ms % 10 != 0 || d.subsec_nanos() % 10_000_000 != 0 {
        n.error(
            ctx,
            format!(
                "advert_int = {} is not a VRRPv3 interval: it must be 10ms to 40.95s in steps of 10ms",
                humantime::format_duration(d)
            ),
        )
        .hint("sub-second failover: \"500ms\" (a hard failure is noticed after about 3 intervals)");
        return None;
    }
    Some(d)
}

fn abs_path(ctx: &mut Ctx<'_>, n: Node<'_, '_>) -> Option<PathBuf> {
    let s = n.str(ctx, "an absolute path")?;
    if !s.starts_with('/') {
        n.error(
            ctx,
            format!("`{}` must be an absolute path, not `{s}`", n.key()),
        );
        return None;
    }
    Some(PathBuf::from(s))
}

/// Decodes `[ha]` and checks what can be checked inside it.
pub(crate) fn decode(ctx: &mut Ctx<'_>, mut t: Table<'_, '_>) -> Option<Ha> {
    let location = ctx.location(&t.span());
    let (this_name, this_addr, this_prio) = node(ctx, &mut t);
    let instance = name(ctx, &mut t, "instance");
    let vrid = t.with(ctx, "virtual_router_id", |ctx, n| {
        integer_in(ctx, &n, 1, 255).and_then(|v| u8::try_from(v).ok())
    });
    if t.raw("virtual_router_id").is_none() {
        ctx.error(
            t.span(),
            "ha.virtual_router_id",
            "missing required key `virtual_router_id` in [ha]",
        )
        .hint("add `virtual_router_id = 30` (1 to 255, the same on both hosts, unused by other VRRP routers on the segment)");
    }
    let interface: Option<At<InterfaceName>> = t.req(ctx, "interface");
    let advert = t
        .with(ctx, "advert_int", advert_int)
        .unwrap_or(DEFAULT_ADVERT_INT);
    let conntrackd_span = t
        .raw("conntrackd")
        .map_or_else(|| t.span(), |(v, _)| v.span());
    let conntrackd = t.or(ctx, "conntrackd", false);
    let conntrackd_config = t
        .with(ctx, "conntrackd_config", abs_path)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONNTRACKD_CONFIG));
    let hold_off_node = t.raw("ddns_hold_off").map(|(v, k)| (v.span(), k));
    let ddns_hold_off = t.or(ctx, "ddns_hold_off", Dur(DEFAULT_DDNS_HOLD_OFF)).0;
    if let Some((span, key)) = hold_off_node
        && ddns_hold_off > Duration::from_secs(600)
    {
        ctx.error(
            span,
            &key,
            "ddns_hold_off is longer than 10 minutes: a new master would leave the record stale that long",
        )
        .hint("a few seconds are enough to ride out a flapping pair: \"5s\"");
    }
    let peer = t
        .sub(ctx, "peer", |ctx, mut p| {
            let n = node(ctx, &mut p);
            p.finish(ctx);
            Some(n)
        })
        .flatten();
    if t.raw("peer").is_none() {
        ctx.error(t.span(), "ha.peer", "missing [ha.peer]: the other host")
            .hint("add:\n[ha.peer]\nname = \"edge-b\"\naddress = \"192.198.0.32\"");
    }
    let default_if = interface.as_ref().map(|i| i.value.clone());
    let vips = t.list(ctx, "vip", |ctx, v| decode_vip(ctx, v, default_if.as_ref()));
    if t.raw("vip").is_none() {
        ctx.error(
            t.span(),
            "ha.vip",
            "[ha] has no virtual address: the master must hold the address the ISP router forwards to",
        )
        .hint("add:\n[[ha.vip]]\naddress = \"192.198.0.30/32\"");
    }
    t.finish(ctx);

    let (this_name, this_addr, peer) = (this_name?, this_addr?, peer?);
    let (peer_name, peer_addr, peer_prio) = peer;
    let (peer_name, peer_addr) = (peer_name?, peer_addr?);
    let ((this_prio, prio_span), (peer_prio, _)) = (this_prio, peer_prio);
    check_pair(
        ctx,
        (&this_name, &this_addr, this_prio),
        (&peer_name, &peer_addr, peer_prio),
        prio_span,
        &vips,
    );
    Some(Ha {
        this: Node2 {
            name: this_name.value,
            address: this_addr.value,
            priority: this_prio,
        },
        peer: Node2 {
            name: peer_name.value,
            address: peer_addr.value,
            priority: peer_prio,
        },
        instance: instance?.value,
        virtual_router_id: vrid?,
        interface_span: interface
            .as_ref()
            .map(|i| i.span.clone())
            .unwrap_or_default(),
        interface: interface?.value,
        advert_int: advert,
        vips,
        conntrackd,
        conntrackd_config,
        ddns_hold_off,
        location,
        address_span: this_addr.span,
        conntrackd_span,
    })
}

/// One `[[ha.vip]]`: an IPv4 address, on `default_if` (the VRRP interface) unless given.
fn decode_vip(
    ctx: &mut Ctx<'_>,
    mut v: Table<'_, '_>,
    default_if: Option<&InterfaceName>,
) -> Option<Vip> {
    let location = ctx.location(&v.span());
    let address: Option<At<IfAddr>> = v.req(ctx, "address");
    let iface: Option<InterfaceName> = v.opt(ctx, "interface");
    let path = format!("{}.address", v.path());
    v.finish(ctx);
    let a = address?;
    if !a.value.0.addr().is_ipv4() {
        ctx.error(
            a.span.clone(),
            &path,
            format!("{} is IPv6: [ha] runs one IPv4 VRRP instance", a.value.0),
        );
        return None;
    }
    Some(Vip {
        address: a.value.0,
        interface: iface.or_else(|| default_if.cloned())?,
        location,
        span: a.span,
    })
}

/// This host and its peer: different names and addresses, priorities close enough for the
/// health penalty to hand over, virtual addresses that are neither host's and listed once.
fn check_pair(
    ctx: &mut Ctx<'_>,
    this: (&At<String>, &At<Ipv4Addr>, u8),
    peer: (&At<String>, &At<Ipv4Addr>, u8),
    prio_span: Range<usize>,
    vips: &[Vip],
) {
    let (this_name, this_addr, this_prio) = this;
    let (peer_name, peer_addr, peer_prio) = peer;
    if peer_name.value == this_name.value {
        ctx.error(
            peer_name.span.clone(),
            "ha.peer.name",
            format!("the peer has this host's name `{}`", this_name.value),
        )
        .hint("each host has its own name: this file describes this host in [ha] and the other one in [ha.peer]");
    }
    if peer_addr.value == this_addr.value {
        ctx.error(
            peer_addr.span.clone(),
            "ha.peer.address",
            format!("the peer has this host's address {}", this_addr.value),
        )
        .hint("give each host its own address on the VRRP interface (the virtual address goes in [[ha.vip]])");
    }
    if this_prio.abs_diff(peer_prio) >= HEALTH_PENALTY {
        ctx.error(
            prio_span,
            "ha.priority",
            format!(
                "priorities {this_prio} and {peer_prio} differ by {} or more: an unhealthy master (its priority lowered by {HEALTH_PENALTY}) would stay master",
                HEALTH_PENALTY
            ),
        )
        .hint("keep the priorities within 99 of each other (equal priorities: a host that comes back does not take over again)");
    }
    let mut seen: HashSet<IpAddr> = HashSet::new();
    for v in vips {
        let ip = v.address.addr();
        if ip == IpAddr::V4(this_addr.value) || ip == IpAddr::V4(peer_addr.value) {
            ctx.error(
                v.span.clone(),
                "ha.vip.address",
                format!("virtual address {ip} is also a host's own address"),
            )
            .hint("the virtual address moves between the hosts; each host keeps its own address besides it");
        }
        if !seen.insert(ip) {
            ctx.error(
                v.span.clone(),
                "ha.vip.address",
                format!("virtual address {ip} is listed twice"),
            );
        }
    }
}

/// Checks between `[ha]` and the other sections.
pub(crate) fn cross_check(ctx: &mut Ctx<'_>, cfg: &crate::Config) {
    let Some(ha) = &cfg.ha else {
        return;
    };
    if let Some(link) = &cfg.link {
        for (name, span) in std::iter::once((&ha.interface, ha.interface_span.clone()))
            .chain(ha.vips.iter().map(|v| (&v.interface, v.span.clone())))
        {
            if link.is_protected(name.as_str()) {
                ctx.error(
                    span,
                    "ha.interface",
                    format!("[ha] uses protected interface `{name}`"),
                )
                .hint("protected interfaces (the admin NIC) are never touched by edge: VRRP runs on the WAN bridge");
            }
        }
        match link.bridges.iter().find(|b| b.name == ha.interface) {
            Some(b) => {
                if !b
                    .addresses
                    .iter()
                    .any(|a| a.addr() == IpAddr::V4(ha.this.address))
                {
                    ctx.error(
                        ha.address_span.clone(),
                        "ha.address",
                        format!(
                            "this host's address {} is not an address of bridge `{}` in [link]",
                            ha.this.address, b.name
                        ),
                    )
                    .hint(format!(
                        "add it to the bridge: addresses = [\"{}/24\"] in the [[link.bridge]] named \"{}\" (keepalived sends its adverts from it)",
                        ha.this.address, b.name
                    ));
                }
            }
            None => {
                ctx.warn(
                    ha.interface_span.clone(),
                    "ha.interface",
                    format!("`{}` is not a bridge of [link]", ha.interface),
                )
                .hint("fine if another tool manages it; VRRP normally runs on the WAN bridge (br-api)");
            }
        }
        for v in &ha.vips {
            if let Some(b) = link
                .bridges
                .iter()
                .find(|b| b.addresses.iter().any(|a| a.addr() == v.address.addr()))
            {
                ctx.error(
                    v.span.clone(),
                    "ha.vip.address",
                    format!(
                        "virtual address {} is also a fixed address of bridge `{}` in [link]",
                        v.address.addr(),
                        b.name
                    ),
                )
                .hint(format!(
                    "keepalived adds it on the master only: remove {} from the bridge's `addresses` and give this host its own address there",
                    v.address.addr()
                ));
            }
        }
    }
    if let Some(fw) = &cfg.fw {
        for f in &fw.forwards {
            if f.address == Some(IpAddr::V4(ha.this.address)) {
                ctx.warn(
                    f.to_span.clone(),
                    &format!("fw.forward.{}.address", f.name),
                    format!(
                        "forward `{}` arrives at this host's own address {}, not at a virtual address: after a failover the ISP router sends to the virtual address",
                        f.name, ha.this.address
                    ),
                )
                .hint("key the forward on the virtual address the ISP router forwards to (the first [[ha.vip]])");
            }
        }
    }
}
