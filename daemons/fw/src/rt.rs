//! I/O: rtnetlink, synchronously, in the calling thread's network namespace — the host facts
//! a build needs (interfaces, their addresses, the route to an address), address-change
//! notifications, and the few links, addresses and routes the replica probe builds in its
//! private namespaces. Messages are netlink-packet-route's; nothing is run as a process.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket as NlSocket, SocketAddr, protocols::NETLINK_ROUTE};

/// Errors of an rtnetlink exchange.
#[derive(Debug, thiserror::Error)]
pub enum RtError {
    /// The socket could not be opened or used.
    #[error("cannot talk to rtnetlink ({what})")]
    Io {
        /// What was asked.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The kernel refused a request.
    #[error("the kernel refused {what}")]
    Refused {
        /// What was asked (`ip link add wg0 type veth peer name p0`).
        what: String,
        /// The kernel's errno.
        #[source]
        source: io::Error,
    },
    /// A name that no interface has.
    #[error("no interface named {0}")]
    NoSuchInterface(String),
}

/// The route the kernel picks for an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTo {
    /// Output interface.
    pub dev: String,
    /// The source address the host would use.
    pub prefsrc: Option<IpAddr>,
    /// The address is the host's own (local, or an IPv6 subnet-router anycast address).
    pub local: bool,
}

/// A synchronous rtnetlink socket.
#[derive(Debug)]
pub struct Rt {
    sock: NlSocket,
    seq: u32,
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

impl Rt {
    /// Opens a route-netlink socket in the calling thread's network namespace.
    pub fn open() -> Result<Rt, RtError> {
        let io = |source| RtError::Io {
            what: "opening a socket".to_owned(),
            source,
        };
        let mut sock = NlSocket::new(NETLINK_ROUTE).map_err(io)?;
        sock.bind_auto().map_err(io)?;
        sock.set_ext_ack(true).map_err(io)?;
        Ok(Rt { sock, seq: 1 })
    }

    /// Sends one request and collects every answer until the dump's end or the ack.
    fn request(
        &mut self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, RtError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        let io = |source| RtError::Io {
            what: what.to_owned(),
            source,
        };
        self.sock
            .send_to(&buf, &SocketAddr::new(0, 0), 0)
            .map_err(io)?;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        let mut rx = Vec::with_capacity(64 * 1024);
        loop {
            rx.clear();
            let n = self.sock.recv(&mut rx, 0).map_err(io)?;
            let d = &rx[..n.min(rx.len())];
            let mut off = 0;
            while off + 16 <= d.len() {
                let len = u32::from_ne_bytes([d[off], d[off + 1], d[off + 2], d[off + 3]]) as usize;
                if len < 16 || off + len > d.len() {
                    break;
                }
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&d[off..off + len]);
                off += (len + 3) & !3;
                let Ok(m) = m else { continue };
                if m.header.sequence_number != seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(out),
                        Some(code) => {
                            return Err(RtError::Refused {
                                what: what.to_owned(),
                                source: io::Error::from_raw_os_error(-code.get()),
                            });
                        }
                    },
                    NetlinkPayload::InnerMessage(inner) => {
                        out.push(inner);
                        if !dump {
                            return Ok(out);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Every interface: index → name.
    ///
    /// Equivalent to: `ip link show`.
    pub fn links(&mut self) -> Result<BTreeMap<u32, String>, RtError> {
        let msgs = self.request(
            "ip link show",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => {
                    let name = l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })?;
                    Some((l.header.index, name))
                }
                _ => None,
            })
            .collect())
    }

    fn index(&mut self, name: &str) -> Result<u32, RtError> {
        self.links()?
            .into_iter()
            .find(|(_, n)| n == name)
            .map(|(i, _)| i)
            .ok_or_else(|| RtError::NoSuchInterface(name.to_owned()))
    }

    /// The addresses of every interface (link-local ones left out), by interface name.
    ///
    /// Equivalent to: `ip addr show`.
    pub fn addresses(&mut self) -> Result<BTreeMap<String, Vec<IpAddr>>, RtError> {
        let links = self.links()?;
        let msgs = self.request(
            "ip addr show",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut out: BTreeMap<String, Vec<IpAddr>> =
            links.values().map(|n| (n.clone(), Vec::new())).collect();
        for m in msgs {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            if a.header.scope == AddressScope::Link {
                continue;
            }
            let Some(name) = links.get(&a.header.index) else {
                continue;
            };
            // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on a
            // point-to-point link); without IFA_LOCAL, IFA_ADDRESS is.
            let local = a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let addr = local.or_else(|| {
                a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(ip) = addr {
                out.entry(name.clone()).or_default().push(ip);
            }
        }
        Ok(out)
    }

    /// The route the kernel picks for `addr`; `None` when there is none (unreachable).
    ///
    /// Equivalent to: `ip route get ADDR`.
    pub fn route_get(&mut self, addr: IpAddr) -> Result<Option<RouteTo>, RtError> {
        let mut m = RouteMessage::default();
        m.header.address_family = family(addr);
        m.header.destination_prefix_length = if addr.is_ipv4() { 32 } else { 128 };
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(addr)));
        let msgs = match self.request(
            &format!("ip route get {addr}"),
            RouteNetlinkMessage::GetRoute(m),
            0,
        ) {
            Ok(m) => m,
            // No route: unreachable (ENETUNREACH, EHOSTUNREACH).
            Err(RtError::Refused { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(RouteNetlinkMessage::NewRoute(r)) = msgs.into_iter().next() else {
            return Ok(None);
        };
        let oif = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        let prefsrc = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::PrefSource(RouteAddress::Inet(v)) => Some(IpAddr::V4(*v)),
            RouteAttribute::PrefSource(RouteAddress::Inet6(v)) => Some(IpAddr::V6(*v)),
            _ => None,
        });
        let Some(oif) = oif else {
            return Ok(None);
        };
        let dev = self.links()?.get(&oif).cloned().unwrap_or_default();
        Ok(Some(RouteTo {
            dev,
            prefsrc,
            local: matches!(r.header.kind, RouteType::Local | RouteType::Anycast),
        }))
    }

    /// Creates a veth pair: `name` here, `peer` in the network namespace of thread
    /// `peer_tid`.
    ///
    /// Equivalent to: `ip link add NAME type veth peer name PEER netns TID`.
    pub fn add_veth(&mut self, name: &str, peer: &str, peer_tid: u32) -> Result<(), RtError> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_owned()));
        p.attributes.push(LinkAttribute::NetNsPid(peer_tid));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.request(
            &format!("ip link add {name} type veth peer name {peer} netns {peer_tid}"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(|_| ())
    }

    /// Sets an interface up.
    ///
    /// Equivalent to: `ip link set NAME up`.
    pub fn set_up(&mut self, name: &str) -> Result<(), RtError> {
        let index = self.index(name)?;
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(
            &format!("ip link set {name} up"),
            RouteNetlinkMessage::SetLink(m),
            NLM_F_ACK,
        )
        .map(|_| ())
    }

    /// Waits until an interface is operationally up: the kernel turns a carrier on in a
    /// deferred worker (up to a second later), and until then the device drops what it
    /// is given to send.
    pub fn wait_running(&mut self, name: &str, within: std::time::Duration) -> Result<(), RtError> {
        let t = std::time::Instant::now();
        loop {
            let msgs = self.request(
                &format!("ip link show {name}"),
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                NLM_F_DUMP,
            )?;
            let up = msgs.iter().any(|m| match m {
                RouteNetlinkMessage::NewLink(l) => {
                    l.attributes
                        .contains(&LinkAttribute::IfName(name.to_owned()))
                        && l.attributes.contains(&LinkAttribute::OperState(State::Up))
                }
                _ => false,
            });
            if up {
                return Ok(());
            }
            if t.elapsed() > within {
                return Err(RtError::Refused {
                    what: format!("waiting for {name} to come up"),
                    source: io::Error::from(io::ErrorKind::TimedOut),
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Adds an address without duplicate address detection.
    ///
    /// Equivalent to: `ip addr add ADDR/PREFIX dev NAME nodad`.
    pub fn add_address(&mut self, name: &str, net: IpNet) -> Result<(), RtError> {
        let index = self.index(name)?;
        let mut m = AddressMessage::default();
        m.header.family = family(net.addr());
        m.header.prefix_len = net.prefix_len();
        m.header.index = index;
        m.header.flags = AddressHeaderFlags::Nodad;
        m.attributes.push(AddressAttribute::Local(net.addr()));
        m.attributes.push(AddressAttribute::Address(net.addr()));
        self.request(
            &format!("ip addr add {net} dev {name} nodad"),
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
        )
        .map(|_| ())
    }

    /// Adds (or replaces) a route to `dst` through an interface, without a gateway.
    ///
    /// Equivalent to: `ip route replace DST dev NAME`.
    pub fn replace_route(&mut self, dst: IpNet, name: &str) -> Result<(), RtError> {
        let index = self.index(name)?;
        let mut m = RouteMessage::default();
        m.header.address_family = family(dst.addr());
        m.header.destination_prefix_length = dst.prefix_len();
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = netlink_packet_route::route::RouteProtocol::Boot;
        m.header.scope = RouteScope::Link;
        m.header.kind = RouteType::Unicast;
        if dst.prefix_len() > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(dst.addr())));
        }
        m.attributes.push(RouteAttribute::Oif(index));
        self.request(
            &format!("ip route replace {dst} dev {name}"),
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK,
        )
        .map(|_| ())
    }
}

/// rtnetlink multicast groups of address and link changes (`RTMGRP_LINK`,
/// `RTMGRP_IPV4_IFADDR`, `RTMGRP_IPV6_IFADDR`).
const ADDRESS_GROUPS: u32 = 0x1 | 0x10 | 0x100;

/// Opens a socket that receives a notification whenever an address is added or removed or
/// a link changes (a forward without `address` follows its interfaces' addresses).
///
/// Equivalent to what `ip monitor address link` listens to.
pub fn subscribe_addresses() -> io::Result<NlSocket> {
    let mut sock = NlSocket::new(NETLINK_ROUTE)?;
    sock.bind(&SocketAddr::new(0, ADDRESS_GROUPS))?;
    Ok(sock)
}

/// True when a datagram of [`subscribe_addresses`] reports an address added or removed, or
/// an interface renamed, created or deleted (not the many link statistics updates).
pub fn is_address_change(datagram: &[u8]) -> bool {
    let mut off = 0;
    while off + 16 <= datagram.len() {
        let len = u32::from_ne_bytes([
            datagram[off],
            datagram[off + 1],
            datagram[off + 2],
            datagram[off + 3],
        ]) as usize;
        if len < 16 || off + len > datagram.len() {
            return false;
        }
        let ty = u16::from_ne_bytes([datagram[off + 4], datagram[off + 5]]);
        if matches!(
            ty,
            libc::RTM_NEWADDR | libc::RTM_DELADDR | libc::RTM_NEWLINK | libc::RTM_DELLINK
        ) {
            return true;
        }
        off += (len + 3) & !3;
    }
    false
}
