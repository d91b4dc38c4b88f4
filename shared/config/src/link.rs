//! Pure: the `[link]` section — bridges, their ports and addresses, routes, sysctls and the
//! protected interfaces that nothing may touch.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use crate::decode::{At, Ctx, Table, integer_in};
use crate::source::Location;
use crate::types::{Dur, IfAddr, InterfaceName, Ip, Network, one_of};

/// Reverse-path filter mode (`net.ipv4.conf.<if>.rp_filter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RpFilter {
    /// 0: no source validation.
    Off,
    /// 1: strict (RFC 3704).
    Strict,
    /// 2: loose.
    Loose,
}

impl RpFilter {
    /// The sysctl value.
    pub fn sysctl_value(self) -> u8 {
        match self {
            RpFilter::Off => 0,
            RpFilter::Strict => 1,
            RpFilter::Loose => 2,
        }
    }
}

/// A bridge the manager creates and keeps converged.
#[derive(Debug, Clone, Serialize)]
pub struct Bridge {
    /// Bridge name (`br-api`).
    pub name: InterfaceName,
    /// Interfaces enslaved to it.
    pub ports: Vec<InterfaceName>,
    /// Host addresses on the bridge, with prefix length.
    pub addresses: Vec<IpNet>,
    /// MTU; `None` leaves the kernel's choice.
    pub mtu: Option<u32>,
    /// Spanning tree on/off.
    pub stp: bool,
    /// STP forward delay in seconds.
    pub forward_delay: u32,
    /// IGMP/MLD snooping.
    pub multicast_snooping: bool,
    /// 802.1Q VLAN filtering (where the kernel supports it).
    pub vlan_filtering: bool,
    /// Reverse-path filter for the bridge's addresses.
    pub rp_filter: Option<RpFilter>,
    /// Where the bridge is declared.
    pub location: Location,
}

/// Options for one bridge port.
#[derive(Debug, Clone, Serialize)]
pub struct PortOptions {
    /// The port interface.
    pub name: InterfaceName,
    /// MTU of the port.
    pub mtu: Option<u32>,
    /// STP path cost.
    pub cost: Option<u32>,
    /// STP port priority.
    pub priority: Option<u16>,
    /// Reflect frames back out the port they came in on.
    pub hairpin: Option<bool>,
    /// MAC learning.
    pub learning: Option<bool>,
    /// Where it is declared.
    pub location: Location,
}

/// A static route the manager owns (tagged with its route protocol).
#[derive(Debug, Clone, Serialize)]
pub struct Route {
    /// Destination network (`0.0.0.0/0` for a default route).
    pub to: IpNet,
    /// Gateway.
    pub via: Option<IpAddr>,
    /// Output interface.
    pub dev: Option<InterfaceName>,
    /// Route metric.
    pub metric: Option<u32>,
    /// Routing table id (main when absent).
    pub table: Option<u32>,
    /// Where it is declared.
    pub location: Location,
}

/// Kernel settings the edge needs, each set explicitly only when given.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sysctls {
    /// `net.ipv4.ip_forward`.
    pub ip_forward: Option<bool>,
    /// `net.ipv6.conf.all.forwarding`.
    pub ipv6_forwarding: Option<bool>,
    /// `net.bridge.bridge-nf-call-iptables` (when br_netfilter is loaded).
    pub bridge_nf_call_iptables: Option<bool>,
    /// `net.bridge.bridge-nf-call-ip6tables`.
    pub bridge_nf_call_ip6tables: Option<bool>,
    /// `net.bridge.bridge-nf-call-arptables`.
    pub bridge_nf_call_arptables: Option<bool>,
}

/// The `[link]` section.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    /// Interfaces nothing may touch (the admin NIC).
    pub protected: Vec<InterfaceName>,
    /// Managed bridges.
    pub bridges: Vec<Bridge>,
    /// Per-port options.
    pub ports: Vec<PortOptions>,
    /// Managed routes.
    pub routes: Vec<Route>,
    /// Sysctls.
    pub sysctl: Sysctls,
    /// Period of the safety-net full re-check.
    pub reconcile_interval: Duration,
    /// Quiet time after a netlink event before re-dumping.
    pub debounce: Duration,
    /// Seconds to wait for the gateway when moving an address onto a bridge before reverting.
    pub move_check_timeout: Duration,
}

impl Link {
    /// The bridge that has `port` as a port, if any.
    pub fn bridge_of_port(&self, port: &str) -> Option<&Bridge> {
        self.bridges
            .iter()
            .find(|b| b.ports.iter().any(|p| p.as_str() == port))
    }

    /// True when `name` is a protected interface.
    pub fn is_protected(&self, name: &str) -> bool {
        self.protected.iter().any(|p| p.as_str() == name)
    }
}

fn mtu(ctx: &mut Ctx<'_>, t: &mut Table<'_, '_>) -> Option<u32> {
    t.with(ctx, "mtu", |ctx, n| {
        integer_in(ctx, &n, 68, 65535).map(|v| v as u32)
    })
}

fn rp_filter(ctx: &mut Ctx<'_>, t: &mut Table<'_, '_>) -> Option<RpFilter> {
    t.with(ctx, "rp_filter", |ctx, n| {
        one_of(
            ctx,
            n,
            &[
                ("off", RpFilter::Off),
                ("strict", RpFilter::Strict),
                ("loose", RpFilter::Loose),
            ],
        )
    })
}

/// Decodes `[link]` and checks what can be checked inside it.
pub(crate) fn decode(ctx: &mut Ctx<'_>, mut t: Table<'_, '_>) -> Option<Link> {
    let protected: Vec<At<InterfaceName>> = t.or(ctx, "protected", Vec::new());
    let reconcile_interval = t
        .or(ctx, "reconcile_interval", Dur(DEFAULT_RECONCILE_INTERVAL))
        .0;
    let debounce = t.or(ctx, "debounce", Dur(DEFAULT_DEBOUNCE)).0;
    let move_check_timeout = t
        .or(ctx, "move_check_timeout", Dur(DEFAULT_MOVE_CHECK_TIMEOUT))
        .0;
    let sysctl = t
        .sub(ctx, "sysctl", |ctx, mut s| {
            let out = Sysctls {
                ip_forward: s.opt(ctx, "ip_forward"),
                ipv6_forwarding: s.opt(ctx, "ipv6_forwarding"),
                bridge_nf_call_iptables: s.opt(ctx, "bridge_nf_call_iptables"),
                bridge_nf_call_ip6tables: s.opt(ctx, "bridge_nf_call_ip6tables"),
                bridge_nf_call_arptables: s.opt(ctx, "bridge_nf_call_arptables"),
            };
            s.finish(ctx);
            Some(out)
        })
        .flatten()
        .unwrap_or_default();
    let raw_bridges = t.list(ctx, "bridge", decode_bridge);
    let raw_ports = t.list(ctx, "port", decode_port);
    let raw_routes = t.list(ctx, "route", decode_route);
    t.finish(ctx);

    let is_protected = |n: &str| protected.iter().any(|p| p.value.as_str() == n);
    let port_owner = check_bridges(ctx, &raw_bridges, &is_protected);
    check_port_options(ctx, &raw_ports, &port_owner, &is_protected);
    check_route_devices(ctx, &raw_routes, &port_owner, &is_protected);
    check_protected_listed_once(ctx, &protected);
    let bridges: Vec<Bridge> = raw_bridges.into_iter().map(|r| r.bridge).collect();
    check_gateways(ctx, &raw_routes, &bridges);

    Some(Link {
        protected: protected.into_iter().map(|p| p.value).collect(),
        bridges,
        ports: raw_ports.into_iter().map(|(_, p)| p).collect(),
        routes: raw_routes.into_iter().map(|(_, _, r)| r).collect(),
        sysctl,
        reconcile_interval,
        debounce,
        move_check_timeout,
    })
}

/// `reconcile_interval`: the full re-check behind the netlink events.
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(60);
/// `debounce`: quiet time after an event before re-reading the state.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(20);
/// `move_check_timeout`: how long the gateway may stay silent after an address move.
pub const DEFAULT_MOVE_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the hint of an error about a protected interface says.
const PROTECTED_HINT: &str = "protected interfaces (the admin NIC) are never touched by edge: remove it here, or from `link.protected` if it really should be managed";

/// A bridge as decoded, with the spans of its names for the checks across bridges.
struct RawBridge {
    bridge: Bridge,
    name_span: std::ops::Range<usize>,
    ports: Vec<At<InterfaceName>>,
    addrs: Vec<At<IfAddr>>,
}

/// A route as decoded: its gateway and device with their spans, and the route.
type RawRoute = (Option<At<Ip>>, Option<At<InterfaceName>>, Route);

/// One `[[link.bridge]]`.
fn decode_bridge(ctx: &mut Ctx<'_>, mut b: Table<'_, '_>) -> Option<RawBridge> {
    let name: Option<At<InterfaceName>> = b.req(ctx, "name");
    let ports: Vec<At<InterfaceName>> = b.or(ctx, "ports", Vec::new());
    let addrs: Vec<At<IfAddr>> = b.or(ctx, "addresses", Vec::new());
    let mtu = mtu(ctx, &mut b);
    let stp = b.or(ctx, "stp", false);
    let fd_node = b.raw("forward_delay").map(|(v, k)| (v.span(), k));
    let forward_delay: u32 = b.or(ctx, "forward_delay", if stp { 15 } else { 0 });
    if let Some((span, key)) = fd_node {
        check_forward_delay(ctx, span, &key, stp, forward_delay);
    }
    let multicast_snooping = b.or(ctx, "multicast_snooping", true);
    let vlan_filtering = b.or(ctx, "vlan_filtering", false);
    let rp = rp_filter(ctx, &mut b);
    let location = ctx.location(&b.span());
    b.finish(ctx);
    let name = name?;
    Some(RawBridge {
        name_span: name.span.clone(),
        bridge: Bridge {
            name: name.value,
            ports: ports.iter().map(|p| p.value.clone()).collect(),
            addresses: addrs.iter().map(|a| a.value.0).collect(),
            mtu,
            stp,
            forward_delay,
            multicast_snooping,
            vlan_filtering,
            rp_filter: rp,
            location,
        },
        ports,
        addrs,
    })
}

/// `forward_delay` within what the kernel takes: 2–30 s with STP, 0–30 s without.
fn check_forward_delay(
    ctx: &mut Ctx<'_>,
    span: std::ops::Range<usize>,
    key: &str,
    stp: bool,
    forward_delay: u32,
) {
    let ok = if stp {
        (2..=30).contains(&forward_delay)
    } else {
        forward_delay <= 30
    };
    if !ok {
        ctx.error(
            span,
            key,
            format!(
                "forward_delay = {forward_delay} is out of range: with stp = {stp} it must be {}",
                if stp {
                    "2 to 30 seconds"
                } else {
                    "0 to 30 seconds"
                }
            ),
        );
    }
}

/// One `[[link.port]]`: options of a bridge port.
fn decode_port(
    ctx: &mut Ctx<'_>,
    mut p: Table<'_, '_>,
) -> Option<(At<InterfaceName>, PortOptions)> {
    let name: Option<At<InterfaceName>> = p.req(ctx, "name");
    let mtu = mtu(ctx, &mut p);
    let cost = p.opt(ctx, "cost");
    let priority = p.with(ctx, "priority", |ctx, n| {
        integer_in(ctx, &n, 0, 63).map(|v| v as u16)
    });
    let hairpin = p.opt(ctx, "hairpin");
    let learning = p.opt(ctx, "learning");
    let location = ctx.location(&p.span());
    p.finish(ctx);
    let name = name?;
    Some((
        name.clone(),
        PortOptions {
            name: name.value,
            mtu,
            cost,
            priority,
            hairpin,
            learning,
            location,
        },
    ))
}

/// One `[[link.route]]`.
fn decode_route(ctx: &mut Ctx<'_>, mut r: Table<'_, '_>) -> Option<RawRoute> {
    let to: Option<At<Network>> = r.req(ctx, "to");
    let via: Option<At<Ip>> = r.opt(ctx, "via");
    let dev: Option<At<InterfaceName>> = r.opt(ctx, "dev");
    let metric = r.opt(ctx, "metric");
    let table = r.with(ctx, "table", |ctx, n| {
        integer_in(ctx, &n, 1, i128::from(u32::MAX)).map(|v| v as u32)
    });
    let span = r.span();
    let location = ctx.location(&span);
    r.finish(ctx);
    let to = to?;
    if via.is_none() && dev.is_none() {
        ctx.error(
            span.clone(),
            "link.route",
            format!(
                "route to {} needs `via` (a gateway) or `dev` (an interface)",
                to.value.0
            ),
        );
        return None;
    }
    if let Some(v) = &via
        && v.value.0.is_ipv4() != to.value.0.addr().is_ipv4()
    {
        ctx.error(
            v.span.clone(),
            "link.route.via",
            format!(
                "gateway {} is not of the same IP family as {}",
                v.value.0, to.value.0
            ),
        );
        return None;
    }
    Some((
        via.clone(),
        dev.clone(),
        Route {
            to: to.value.0,
            via: via.map(|v| v.value.0),
            dev: dev.map(|d| d.value),
            metric,
            table,
            location,
        },
    ))
}

/// The checks across bridges: no protected or duplicate bridge, a port in one bridge only
/// and never a bridge itself, an address on one bridge only. Returns each port's bridge.
fn check_bridges(
    ctx: &mut Ctx<'_>,
    raw_bridges: &[RawBridge],
    is_protected: &dyn Fn(&str) -> bool,
) -> HashMap<String, String> {
    let mut names: HashMap<String, std::ops::Range<usize>> = HashMap::new();
    let mut port_owner: HashMap<String, String> = HashMap::new();
    let mut addr_owner: HashMap<IpAddr, String> = HashMap::new();
    for rb in raw_bridges {
        let bname = rb.bridge.name.as_str();
        if is_protected(bname) {
            ctx.error(
                rb.name_span.clone(),
                "link.bridge.name",
                format!("bridge `{bname}` is a protected interface"),
            )
            .hint(PROTECTED_HINT);
        }
        if names
            .insert(bname.to_owned(), rb.name_span.clone())
            .is_some()
        {
            ctx.error(
                rb.name_span.clone(),
                "link.bridge.name",
                format!("bridge `{bname}` is declared twice"),
            )
            .hint("bridge names must be unique: merge the two [[link.bridge]] tables");
        }
        for p in &rb.ports {
            let pname = p.value.as_str();
            if is_protected(pname) {
                ctx.error(
                    p.span.clone(),
                    "link.bridge.ports",
                    format!("bridge `{bname}` uses protected interface `{pname}` as a port"),
                )
                .hint(PROTECTED_HINT);
            }
            if pname == bname {
                ctx.error(
                    p.span.clone(),
                    "link.bridge.ports",
                    format!("bridge `{bname}` cannot be a port of itself"),
                );
            }
            if let Some(other) = port_owner.insert(pname.to_owned(), bname.to_owned()) {
                ctx.error(
                    p.span.clone(),
                    "link.bridge.ports",
                    format!(
                        "`{pname}` is a port of both `{other}` and `{bname}`; an interface can be in one bridge only"
                    ),
                );
            }
        }
        for a in &rb.addrs {
            let ip = a.value.0.addr();
            warn_not_private(ctx, a.value.0, a.span.clone(), "link.bridge.addresses");
            if let Some(other) = addr_owner.insert(ip, bname.to_owned()) {
                ctx.error(
                    a.span.clone(),
                    "link.bridge.addresses",
                    format!("address {ip} is assigned twice (on `{other}` and `{bname}`)"),
                );
            }
        }
    }
    for rb in raw_bridges {
        for p in &rb.ports {
            if names.contains_key(p.value.as_str()) && p.value != rb.bridge.name {
                ctx.error(
                    p.span.clone(),
                    "link.bridge.ports",
                    format!(
                        "`{}` is itself a managed bridge and cannot be a port of `{}`",
                        p.value, rb.bridge.name
                    ),
                );
            }
        }
    }
    port_owner
}

/// `[[link.port]]` options name a port of a bridge, once, and never a protected interface.
fn check_port_options(
    ctx: &mut Ctx<'_>,
    raw_ports: &[(At<InterfaceName>, PortOptions)],
    port_owner: &HashMap<String, String>,
    is_protected: &dyn Fn(&str) -> bool,
) {
    let mut seen_port_opts: HashSet<String> = HashSet::new();
    for (name, _) in raw_ports {
        let n = name.value.as_str();
        if is_protected(n) {
            ctx.error(
                name.span.clone(),
                "link.port.name",
                format!("port options name protected interface `{n}`"),
            )
            .hint(PROTECTED_HINT);
        } else if !port_owner.contains_key(n) {
            ctx.error(
                name.span.clone(),
                "link.port.name",
                format!("[[link.port]] `{n}` is not a port of any [[link.bridge]]"),
            )
            .hint("add it to a bridge's `ports`, or remove these options");
        }
        if !seen_port_opts.insert(n.to_owned()) {
            ctx.error(
                name.span.clone(),
                "link.port.name",
                format!("options for port `{n}` are given twice"),
            );
        }
    }
}

/// A route's `dev` is neither protected nor a bridge port (a port hands every frame to its
/// bridge).
fn check_route_devices(
    ctx: &mut Ctx<'_>,
    raw_routes: &[RawRoute],
    port_owner: &HashMap<String, String>,
    is_protected: &dyn Fn(&str) -> bool,
) {
    for (_, dev, _) in raw_routes {
        if let Some(d) = dev
            && is_protected(d.value.as_str())
        {
            ctx.error(
                d.span.clone(),
                "link.route.dev",
                format!("route uses protected interface `{}`", d.value),
            )
            .hint(PROTECTED_HINT);
        } else if let Some(d) = dev
            && let Some(bridge) = port_owner.get(d.value.as_str())
        {
            // A bridge port hands every frame to its bridge: a route out of the port itself
            // stops working the moment edge-link enslaves it.
            ctx.error(
                d.span.clone(),
                "link.route.dev",
                format!(
                    "route uses `{}`, which is a port of bridge `{bridge}`",
                    d.value
                ),
            )
            .hint(format!("route through the bridge: dev = \"{bridge}\""));
        }
    }
}

/// An interface listed twice in `protected` is worth a warning.
fn check_protected_listed_once(ctx: &mut Ctx<'_>, protected: &[At<InterfaceName>]) {
    let mut seen_prot: HashSet<String> = HashSet::new();
    for p in protected {
        if !seen_prot.insert(p.value.to_string()) {
            ctx.warn(
                p.span.clone(),
                "link.protected",
                format!("`{}` is listed twice in `protected`", p.value),
            );
        }
    }
}

/// A route's gateway inside a managed bridge's subnet (else the kernel may refuse it).
fn check_gateways(ctx: &mut Ctx<'_>, raw_routes: &[RawRoute], bridges: &[Bridge]) {
    for (via, _, route) in raw_routes {
        if let Some(v) = via {
            let reachable = bridges
                .iter()
                .flat_map(|b| b.addresses.iter())
                .any(|a| a.trunc().contains(&v.value.0));
            if !reachable {
                ctx.warn(
                    v.span.clone(),
                    "link.route.via",
                    format!(
                        "gateway {} of the route to {} is not inside any managed bridge subnet",
                        v.value.0, route.to
                    ),
                )
                .hint("the kernel refuses a route whose gateway is not on a connected network (unless another manager provides one)");
            }
        }
    }
}

/// Warns once per network when an IPv4 address the host holds is not in a private range.
/// 192.198.0.0/24 gets its own words: it is the reference host's (deliberate) choice and the
/// classic typo of 192.168.0.0/24.
pub(crate) fn warn_not_private(
    ctx: &mut Ctx<'_>,
    net: IpNet,
    span: std::ops::Range<usize>,
    key: &str,
) {
    let IpAddr::V4(v4) = net.addr() else {
        return;
    };
    if v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || crate::types::is_cgnat(net.addr())
    {
        return;
    }
    let network = net.trunc();
    let o = v4.octets();
    let once = format!("non-private:{network}");
    if o[0] == 192 && o[1] == 198 {
        if let Some(d) = ctx.warn_once(
            &once,
            span,
            key,
            format!(
                "{net} is not a private address: 192.198.0.0/16 is public address space (the private range is 192.168.0.0/16)"
            ),
        ) {
            d.hint(format!(
                "kept as written, as on the reference host; if you meant {}.{}.{}.{}/{}, fix the address (this warning appears once)",
                192, 168, o[2], o[3], net.prefix_len()
            ));
        }
    } else if let Some(d) = ctx.warn_once(
        &once,
        span,
        key,
        format!("{net} is not in a private range: {network} is public address space"),
    ) {
        d.hint("make sure this address is yours to use on this network");
    }
}
