//! I/O: one full dump of links, addresses and routes over rtnetlink (plus the sysctls asked
//! for), turned into the plain [`Observed`] structs the planner compares. Interface indexes
//! are resolved to names here, so nothing downstream deals in indexes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    BridgeStpState, InfoBridge, InfoBridgePort, InfoData, InfoPortData, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::model::{
    Address, BridgeInfo, Caps, Link, Observed, PortInfo, Route, SysctlKey, TABLE_LOCAL,
};
use crate::netlink::{Netlink, NetlinkError};
use crate::sysctl;

/// A failed observation.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The link dump failed.
    #[error("cannot dump links")]
    DumpLinks(#[source] NetlinkError),
    /// The address dump failed.
    #[error("cannot dump addresses")]
    DumpAddresses(#[source] NetlinkError),
    /// A route dump failed.
    #[error("cannot dump {family} routes")]
    DumpRoutes {
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// Cause.
        #[source]
        source: NetlinkError,
    },
    /// A sysctl could not be read.
    #[error("cannot read sysctl {key}")]
    ReadSysctl {
        /// The key.
        key: SysctlKey,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Reads the whole state: links, addresses, IPv4 and IPv6 routes, and `sysctl_keys`.
pub async fn observe(
    nl: &Netlink,
    sysctl_keys: &[SysctlKey],
    caps: Caps,
) -> Result<Observed, ObserveError> {
    let links = nl
        .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
        .await
        .map_err(ObserveError::DumpLinks)?;
    let addrs = nl
        .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
        .await
        .map_err(ObserveError::DumpAddresses)?;
    let mut routes = Vec::new();
    for (family, af) in [
        ("IPv4", AddressFamily::Inet),
        ("IPv6", AddressFamily::Inet6),
    ] {
        let mut msg = RouteMessage::default();
        msg.header.address_family = af;
        let got = nl
            .dump(RouteNetlinkMessage::GetRoute(msg))
            .await
            .map_err(|source| ObserveError::DumpRoutes { family, source })?;
        routes.extend(got);
    }
    let mut observed = from_messages(links, addrs, routes);
    for key in sysctl_keys {
        match sysctl::read(key) {
            Ok(Some(v)) => {
                observed.sysctls.insert(key.clone(), v);
            }
            Ok(None) => {}
            Err(source) => {
                return Err(ObserveError::ReadSysctl {
                    key: key.clone(),
                    source,
                });
            }
        }
    }
    observed.caps = caps;
    Ok(observed)
}

/// Builds the observed state from dump answers (pure; unit-tested with crafted messages).
pub fn from_messages(
    links: Vec<RouteNetlinkMessage>,
    addrs: Vec<RouteNetlinkMessage>,
    routes: Vec<RouteNetlinkMessage>,
) -> Observed {
    let links: Vec<(Link, Option<u32>)> = links
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => parse_link(&l),
            _ => None,
        })
        .collect();
    let names: HashMap<u32, String> = links
        .iter()
        .map(|(l, _)| (l.index, l.name.clone()))
        .collect();
    let mut out = Observed {
        links: BTreeMap::new(),
        addresses: BTreeSet::new(),
        routes: BTreeSet::new(),
        sysctls: BTreeMap::new(),
        caps: Caps::default(),
    };
    for (mut l, controller) in links {
        l.controller = controller.and_then(|c| names.get(&c).cloned());
        out.links.insert(l.name.clone(), l);
    }
    for m in addrs {
        if let RouteNetlinkMessage::NewAddress(a) = m
            && let Some(a) = parse_address(&a, &names)
        {
            out.addresses.insert(a);
        }
    }
    for m in routes {
        if let RouteNetlinkMessage::NewRoute(r) = m
            && let Some(r) = parse_route(&r, &names)
        {
            out.routes.insert(r);
        }
    }
    out
}

/// Parses one link; the controller comes back as an index to resolve.
pub fn parse_link(m: &LinkMessage) -> Option<(Link, Option<u32>)> {
    let mut name = None;
    let mut mtu = 0;
    let mut controller = None;
    let mut kind = None;
    let mut bridge = None;
    let mut port = None;
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Mtu(v) => mtu = *v,
            LinkAttribute::Controller(c) => controller = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    match i {
                        LinkInfo::Kind(k) => kind = Some(k.to_string()),
                        LinkInfo::Data(InfoData::Bridge(opts)) => bridge = Some(parse_bridge(opts)),
                        LinkInfo::PortData(InfoPortData::BridgePort(opts)) => {
                            port = Some(parse_port(opts));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let name = name?;
    Some((
        Link {
            name,
            index: m.header.index,
            kind,
            controller: None,
            mtu,
            up: m.header.flags.contains(LinkFlags::Up),
            lower_up: m.header.flags.contains(LinkFlags::LowerUp),
            bridge,
            port: if controller.is_some() { port } else { None },
        },
        controller,
    ))
}

fn parse_bridge(opts: &[InfoBridge]) -> BridgeInfo {
    let mut b = BridgeInfo {
        stp: false,
        forward_delay_cs: 0,
        multicast_snooping: true,
        vlan_filtering: false,
    };
    for o in opts {
        match o {
            InfoBridge::StpState(s) => b.stp = !matches!(s, BridgeStpState::Disabled),
            InfoBridge::ForwardDelay(d) => b.forward_delay_cs = *d,
            InfoBridge::MulticastSnooping(v) => b.multicast_snooping = *v,
            InfoBridge::VlanFiltering(v) => b.vlan_filtering = *v,
            _ => {}
        }
    }
    b
}

fn parse_port(opts: &[InfoBridgePort]) -> PortInfo {
    let mut p = PortInfo::KERNEL_DEFAULT;
    for o in opts {
        match o {
            InfoBridgePort::HairpinMode(v) => p.hairpin = *v,
            InfoBridgePort::Learning(v) => p.learning = *v,
            InfoBridgePort::Cost(v) => p.cost = *v,
            InfoBridgePort::Priority(v) => p.priority = *v,
            _ => {}
        }
    }
    p
}

/// Parses one address (its interface index resolved through `names`).
pub fn parse_address(m: &AddressMessage, names: &HashMap<u32, String>) -> Option<Address> {
    let dev = names.get(&m.header.index)?.clone();
    let mut local = None;
    let mut address = None;
    let mut proto = 0u8;
    for a in &m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            AddressAttribute::Protocol(p) => proto = u8::from(*p),
            _ => {}
        }
    }
    // IPv4 puts the interface's own address in IFA_LOCAL (IFA_ADDRESS is the peer on
    // point-to-point links); IPv6 uses IFA_ADDRESS only.
    let ip = local.or(address)?;
    let net = IpNet::new(ip, m.header.prefix_len).ok()?;
    Some(Address { dev, net, proto })
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Parses one unicast route outside the local table; other kinds return `None`.
pub fn parse_route(m: &RouteMessage, names: &HashMap<u32, String>) -> Option<Route> {
    if m.header.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(m.header.table);
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    let mut metric = 0;
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Gateway(g) => gateway = route_ip(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => metric = *p,
            _ => {}
        }
    }
    if table == TABLE_LOCAL || table == u32::from(RouteHeader::RT_TABLE_UNSPEC) {
        return None;
    }
    let unspecified = match m.header.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let dst = IpNet::new(
        dst.unwrap_or(unspecified),
        m.header.destination_prefix_length,
    )
    .ok()?
    .trunc();
    Some(Route {
        table,
        dst,
        metric,
        gateway,
        dev: oif.and_then(|i| names.get(&i).cloned()),
        protocol: u8::from(m.header.protocol),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::address::AddressProtocol;
    use rtnetlink::packet_route::link::InfoKind;
    use rtnetlink::packet_route::route::RouteProtocol;

    fn link_msg(
        index: u32,
        name: &str,
        attrs: Vec<LinkAttribute>,
        up: bool,
    ) -> RouteNetlinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        if up {
            m.header.flags = LinkFlags::Up | LinkFlags::LowerUp;
        }
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes.push(LinkAttribute::Mtu(1500));
        m.attributes.extend(attrs);
        RouteNetlinkMessage::NewLink(m)
    }

    #[test]
    fn dump_messages_become_named_plain_state() {
        let links = vec![
            link_msg(
                5,
                "br-api",
                vec![LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Bridge),
                    LinkInfo::Data(InfoData::Bridge(vec![
                        InfoBridge::StpState(BridgeStpState::KernelStp),
                        InfoBridge::ForwardDelay(1500),
                        InfoBridge::MulticastSnooping(false),
                        InfoBridge::VlanFiltering(false),
                    ])),
                ])],
                true,
            ),
            link_msg(
                3,
                "enp3s0f0",
                vec![
                    LinkAttribute::Controller(5),
                    LinkAttribute::LinkInfo(vec![
                        LinkInfo::Kind(InfoKind::Veth),
                        LinkInfo::PortData(InfoPortData::BridgePort(vec![
                            InfoBridgePort::HairpinMode(true),
                            InfoBridgePort::Cost(2),
                        ])),
                    ]),
                ],
                false,
            ),
        ];
        let mut a = AddressMessage::default();
        a.header.index = 5;
        a.header.prefix_len = 24;
        a.attributes = vec![
            AddressAttribute::Address("192.198.0.30".parse().unwrap()),
            AddressAttribute::Local("192.198.0.30".parse().unwrap()),
            AddressAttribute::Protocol(AddressProtocol::Other(237)),
        ];
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet;
        r.header.table = 254;
        r.header.kind = RouteType::Unicast;
        r.header.protocol = RouteProtocol::Other(237);
        r.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::Inet("192.198.0.1".parse().unwrap())),
            RouteAttribute::Oif(5),
            RouteAttribute::Priority(100),
        ];
        let mut local = r.clone();
        local.header.table = 255;
        let o = from_messages(
            links,
            vec![RouteNetlinkMessage::NewAddress(a)],
            vec![
                RouteNetlinkMessage::NewRoute(r),
                RouteNetlinkMessage::NewRoute(local),
            ],
        );
        let br = &o.links["br-api"];
        assert!(br.is_bridge() && br.up);
        assert_eq!(
            br.bridge,
            Some(BridgeInfo {
                stp: true,
                forward_delay_cs: 1500,
                multicast_snooping: false,
                vlan_filtering: false
            })
        );
        let nic = &o.links["enp3s0f0"];
        assert_eq!(nic.controller.as_deref(), Some("br-api"));
        assert!(!nic.up);
        assert_eq!(
            nic.port.map(|p| (p.hairpin, p.cost, p.learning)),
            Some((true, 2, true))
        );
        let addr: Vec<_> = o.addresses.iter().collect();
        assert_eq!(addr.len(), 1);
        assert_eq!(addr[0].net.to_string(), "192.198.0.30/24");
        assert!(addr[0].is_ours());
        let routes: Vec<_> = o.routes.iter().collect();
        assert_eq!(routes.len(), 1, "local-table routes are skipped");
        assert_eq!(
            routes[0].to_string(),
            "default via 192.198.0.1 dev br-api metric 100 proto 237"
        );
    }
}
