//! I/O: carries out a plan one operation at a time over rtnetlink (and `/proc/sys`).
//!
//! Discipline (the one of netavark's `setup.rs`): the plan is validated before the first
//! change; "already exists" and "already gone" count as success and are not journaled; every
//! change that happened journals its inverse, and on the first failure (including a gateway
//! that does not answer after an address move) the journal runs backwards, continuing past
//! errors and reporting all of them. Every request counts as one write, so a converged run
//! can prove it wrote nothing.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressHeaderFlags, AddressMessage, AddressProtocol,
};
use rtnetlink::packet_route::link::{
    BridgeStpState, InfoBridge, InfoKind, LinkAttribute, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec};
use serde::Serialize;

use crate::model::{Caps, Desired, Observed, Route};
use crate::netlink::{Netlink, NetlinkError};
use crate::op::{BridgeOptions, NewBridge, Op, PortOptions};
use crate::plan::{Problem, validate};
use crate::sysctl;

/// How often the neighbour table is polled while waiting for a gateway to answer.
const NEIGH_POLL: Duration = Duration::from_millis(10);
/// How long a moved IPv6 address may take to get its local route (see
/// `Applier::wait_local_route`); in practice a few milliseconds.
const LOCAL_ROUTE_WAIT: Duration = Duration::from_secs(1);
const LOCAL_ROUTE_POLL: Duration = Duration::from_millis(2);

/// Why one operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// A netlink request failed.
    #[error("netlink request failed")]
    Netlink(#[source] NetlinkError),
    /// An interface named by the operation does not exist.
    #[error("interface `{name}` does not exist")]
    ResolveInterface {
        /// The interface.
        name: String,
    },
    /// Looking an interface up failed.
    #[error("cannot look up interface `{name}`")]
    LookupInterface {
        /// The interface.
        name: String,
        /// Cause.
        #[source]
        source: NetlinkError,
    },
    /// A sysctl write failed.
    #[error("cannot write /proc/sys/{path}")]
    WriteSysctl {
        /// Path below /proc/sys.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// What happened during a rollback.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RollbackReport {
    /// Inverse operations carried out, in order.
    pub undone: Vec<String>,
    /// Inverse operations that failed, with the reason.
    pub failed: Vec<(String, String)>,
}

impl fmt::Display for RollbackReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failed.is_empty() {
            write!(f, "{} change(s) rolled back", self.undone.len())
        } else {
            write!(
                f,
                "{} change(s) rolled back, {} could not be: {}",
                self.undone.len(),
                self.failed.len(),
                self.failed
                    .iter()
                    .map(|(op, e)| format!("`{op}`: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    }
}

/// A failed apply; the state before it is restored as far as the rollback report says.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The plan failed validation; nothing was changed.
    #[error("refusing to apply the plan, nothing was changed: {}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Validate {
        /// What is wrong.
        problems: Vec<Problem>,
    },
    /// An operation failed and the run was rolled back.
    #[error("`{op}` failed ({rollback})")]
    Operation {
        /// The failed operation.
        op: Box<Op>,
        /// What the rollback did.
        rollback: RollbackReport,
        /// Cause.
        #[source]
        source: OpError,
    },
    /// The gateway did not answer after an address moved onto a bridge; the move (and the
    /// whole run) was rolled back.
    #[error("gateway {gateway} did not answer on `{dev}` within {timeout:?} ({rollback})")]
    GatewayCheck {
        /// The bridge.
        dev: String,
        /// The gateway.
        gateway: IpAddr,
        /// How long it was given.
        timeout: Duration,
        /// What the rollback did.
        rollback: RollbackReport,
    },
}

/// What a successful apply did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    /// Operations that changed the kernel's state.
    pub changed: Vec<Op>,
    /// Operations the kernel found already done ("exists" / "not found").
    pub already: Vec<Op>,
    /// Operations the kernel does not support (left undone, reported as notes).
    pub unsupported: Vec<Op>,
    /// Kernel features learned on the way.
    pub caps: Caps,
    /// Requests sent (netlink messages and sysctl writes).
    pub writes: u64,
}

enum Outcome {
    Changed,
    Already,
    Unsupported,
}

/// Applies plans over one netlink connection.
#[derive(Debug)]
pub struct Applier {
    nl: Netlink,
    index: HashMap<String, u32>,
}

impl Applier {
    /// An applier writing through `nl`.
    pub fn new(nl: Netlink) -> Applier {
        Applier {
            nl,
            index: HashMap::new(),
        }
    }

    /// Validates `ops` against the state they were planned from, then applies them in order,
    /// rolling back this run's changes on the first failure.
    pub async fn apply(
        &mut self,
        ops: &[Op],
        desired: &Desired,
        observed: &Observed,
    ) -> Result<ApplyReport, ApplyError> {
        let problems = validate(ops, desired, observed);
        if !problems.is_empty() {
            return Err(ApplyError::Validate { problems });
        }
        self.index = observed
            .links
            .values()
            .map(|l| (l.name.clone(), l.index))
            .collect();
        let start = self.nl.writes();
        let mut report = ApplyReport {
            caps: observed.caps,
            ..ApplyReport::default()
        };
        let mut journal: Vec<Vec<Op>> = Vec::new();
        for op in ops {
            if let Op::CheckGateway {
                dev,
                gateway,
                timeout,
            } = op
            {
                let answered = match self.check_gateway(dev, *gateway, *timeout).await {
                    Ok(a) => a,
                    Err(source) => {
                        let rollback = self.rollback(journal).await;
                        return Err(ApplyError::Operation {
                            op: Box::new(op.clone()),
                            rollback,
                            source,
                        });
                    }
                };
                if !answered {
                    let rollback = self.rollback(journal).await;
                    return Err(ApplyError::GatewayCheck {
                        dev: dev.clone(),
                        gateway: *gateway,
                        timeout: *timeout,
                        rollback,
                    });
                }
                report.already.push(op.clone());
                continue;
            }
            match self.exec(op).await {
                Ok(Outcome::Changed) => {
                    tracing::info!(op = %op, "applied");
                    journal.push(op.inverse());
                    report.changed.push(op.clone());
                }
                Ok(Outcome::Already) => {
                    tracing::debug!(op = %op, "already in place");
                    report.already.push(op.clone());
                }
                Ok(Outcome::Unsupported) => {
                    if matches!(op, Op::SetVlanFiltering { .. }) {
                        report.caps.no_vlan_filtering = true;
                    }
                    tracing::warn!(op = %op, "not supported by this kernel; left undone");
                    report.unsupported.push(op.clone());
                }
                Err(source) => {
                    tracing::error!(op = %op, error = %source, "operation failed; rolling back this run");
                    let rollback = self.rollback(journal).await;
                    return Err(ApplyError::Operation {
                        op: Box::new(op.clone()),
                        rollback,
                        source,
                    });
                }
            }
        }
        report.writes = self.nl.writes() - start;
        Ok(report)
    }

    /// Runs the journal backwards; "not found" counts as undone, other errors are collected
    /// and the rollback goes on.
    async fn rollback(&mut self, journal: Vec<Vec<Op>>) -> RollbackReport {
        let mut r = RollbackReport::default();
        for group in journal.into_iter().rev() {
            for op in group {
                match self.exec(&op).await {
                    Ok(_) => {
                        tracing::info!(op = %op, "rolled back");
                        r.undone.push(op.to_string());
                    }
                    Err(OpError::Netlink(e)) if e.is_not_found() => {
                        r.undone.push(op.to_string());
                    }
                    Err(e) => {
                        tracing::error!(op = %op, error = %e, "rollback step failed");
                        r.failed
                            .push((op.to_string(), format!("{e}: {}", source_text(&e))));
                    }
                }
            }
        }
        r
    }

    async fn resolve(&mut self, name: &str) -> Result<u32, OpError> {
        if let Some(i) = self.index.get(name) {
            return Ok(*i);
        }
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let mut handle = self.nl.handle();
        let mut req = rtnetlink::packet_core::NetlinkMessage::from(RouteNetlinkMessage::GetLink(m));
        req.header.flags = rtnetlink::packet_core::NLM_F_REQUEST;
        let mut resp = handle.request(req).map_err(|e| OpError::LookupInterface {
            name: name.to_owned(),
            source: NetlinkError::Closed(e),
        })?;
        use futures::StreamExt;
        while let Some(msg) = resp.next().await {
            match msg.payload {
                rtnetlink::packet_core::NetlinkPayload::InnerMessage(
                    RouteNetlinkMessage::NewLink(l),
                ) => {
                    self.index.insert(name.to_owned(), l.header.index);
                    return Ok(l.header.index);
                }
                rtnetlink::packet_core::NetlinkPayload::Error(e) if e.code.is_some() => {
                    return Err(OpError::ResolveInterface {
                        name: name.to_owned(),
                    });
                }
                _ => {}
            }
        }
        Err(OpError::ResolveInterface {
            name: name.to_owned(),
        })
    }

    async fn write(&self, msg: RouteNetlinkMessage, flags: u16) -> Result<Outcome, OpError> {
        match self.nl.write(msg, flags).await {
            Ok(()) => Ok(Outcome::Changed),
            Err(e) if e.is_exists() => Ok(Outcome::Already),
            Err(e) => Err(OpError::Netlink(e)),
        }
    }

    async fn delete(&self, msg: RouteNetlinkMessage) -> Result<Outcome, OpError> {
        match self.nl.write(msg, 0).await {
            Ok(()) => Ok(Outcome::Changed),
            Err(e) if e.is_not_found() => Ok(Outcome::Already),
            Err(e) => Err(OpError::Netlink(e)),
        }
    }

    async fn exec(&mut self, op: &Op) -> Result<Outcome, OpError> {
        match op {
            Op::CreateBridge(b) => self.create_bridge(b).await,
            Op::SetBridgeOptions { name, set, .. } => self.set_bridge_options(name, set).await,
            Op::SetVlanFiltering { name, on } => self.set_vlan_filtering(name, *on).await,
            Op::SetController {
                port, bridge, mtu, ..
            } => self.set_controller(port, bridge, *mtu).await,
            Op::ReleasePort { port } => self.set_link(port, |m| m.nocontroller()).await,
            Op::SetMtu { link, mtu, .. } => self.set_link(link, |m| m.mtu(*mtu)).await,
            Op::SetUp { link } => self.set_link(link, |m| m.up()).await,
            Op::SetDown { link } => self.set_link(link, |m| m.down()).await,
            Op::SetPortOptions { port, set, .. } => {
                let i = self.resolve(port).await?;
                self.write(port_change(i, set), 0).await
            }
            Op::AddAddress {
                dev,
                net,
                proto,
                nodad,
            } => self.add_address(dev, net, *proto, *nodad).await,
            Op::DelAddress { dev, net, .. } => self.del_address(dev, net).await,
            Op::AddRoute { route } => self.new_route(route, NLM_F_CREATE | NLM_F_EXCL).await,
            Op::ReplaceRoute { route, .. } => {
                self.new_route(route, NLM_F_CREATE | NLM_F_REPLACE).await
            }
            Op::DelRoute { route } => self.del_route(route).await,
            Op::CheckGateway { .. } => Ok(Outcome::Already),
            Op::SetSysctl { key, value, .. } => {
                self.nl.count_write();
                sysctl::write(key, value).map_err(|source| OpError::WriteSysctl {
                    path: key.path(),
                    source,
                })?;
                Ok(Outcome::Changed)
            }
            Op::DeleteLink { name } => self.delete_link(name).await,
        }
    }

    async fn create_bridge(&mut self, b: &NewBridge) -> Result<Outcome, OpError> {
        let mut m = LinkBridge::new(&b.name)
            .stp_state(stp_state(b.stp))
            .forward_delay(b.forward_delay_cs)
            .mcast_snooping(b.multicast_snooping);
        if let Some(mtu) = b.mtu {
            m = m.mtu(mtu);
        }
        let out = self
            .write(
                RouteNetlinkMessage::NewLink(m.build()),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .await?;
        self.index.remove(&b.name);
        self.resolve(&b.name).await?;
        Ok(out)
    }

    async fn set_bridge_options(
        &mut self,
        name: &str,
        set: &BridgeOptions,
    ) -> Result<Outcome, OpError> {
        let idx = self.resolve(name).await?;
        // The kernel applies the forward delay before the STP state and refuses a
        // delay below 2 s while STP is on: turning STP off goes first, alone.
        if set.stp == Some(false) && set.forward_delay_cs.is_some() {
            let stp_only = BridgeOptions {
                stp: Some(false),
                ..BridgeOptions::default()
            };
            self.write(bridge_change(idx, &stp_only), 0).await?;
            let rest = BridgeOptions { stp: None, ..*set };
            return self.write(bridge_change(idx, &rest), 0).await;
        }
        self.write(bridge_change(idx, set), 0).await
    }

    async fn set_vlan_filtering(&mut self, name: &str, on: bool) -> Result<Outcome, OpError> {
        let idx = self.resolve(name).await?;
        let msg = LinkMessageBuilder::<LinkBridge>::new_with_info_kind(InfoKind::Bridge)
            .index(idx)
            .vlan_filtering(on)
            .build();
        match self.nl.write(RouteNetlinkMessage::NewLink(msg), 0).await {
            Ok(()) => Ok(Outcome::Changed),
            Err(e) if e.is_not_supported() => Ok(Outcome::Unsupported),
            Err(e) => Err(OpError::Netlink(e)),
        }
    }

    async fn set_controller(
        &mut self,
        port: &str,
        bridge: &str,
        mtu: Option<u32>,
    ) -> Result<Outcome, OpError> {
        let p = self.resolve(port).await?;
        let b = self.resolve(bridge).await?;
        let mut m = LinkUnspec::new_with_index(p).controller(b).up();
        if let Some(mtu) = mtu {
            m = m.mtu(mtu);
        }
        self.write(RouteNetlinkMessage::SetLink(m.build()), 0).await
    }

    /// Sends one `RTM_SETLINK` to `name`, its settings added by `set`.
    async fn set_link(
        &mut self,
        name: &str,
        set: impl FnOnce(LinkMessageBuilder<LinkUnspec>) -> LinkMessageBuilder<LinkUnspec>,
    ) -> Result<Outcome, OpError> {
        let i = self.resolve(name).await?;
        let m = set(LinkUnspec::new_with_index(i)).build();
        self.write(RouteNetlinkMessage::SetLink(m), 0).await
    }

    async fn add_address(
        &mut self,
        dev: &str,
        net: &ipnet::IpNet,
        proto: u8,
        nodad: bool,
    ) -> Result<Outcome, OpError> {
        let i = self.resolve(dev).await?;
        let mut m = address_message(i, net, proto);
        if nodad {
            m.header.flags = AddressHeaderFlags::Nodad;
        }
        let out = self
            .write(
                RouteNetlinkMessage::NewAddress(m),
                NLM_F_CREATE | NLM_F_EXCL,
            )
            .await?;
        if let (true, Outcome::Changed, IpAddr::V6(a)) = (nodad, &out, net.addr()) {
            self.wait_local_route(i, a).await?;
        }
        Ok(out)
    }

    /// Waits until the kernel has finished adding the IPv6 address `a` on `idx`. For a
    /// `nodad` address the kernel does the last step — the local route that delivers packets
    /// to it, and the `RTM_NEWADDR` announcement — later, from a work queue; removing the
    /// moved address's old copy before that would leave it undeliverable for a moment, so a
    /// move is only make-before-break once the local route exists. Gives up (logged) after
    /// [`LOCAL_ROUTE_WAIT`]: the gateway check and the rollback still guard the move.
    async fn wait_local_route(&self, idx: u32, a: std::net::Ipv6Addr) -> Result<(), OpError> {
        let deadline = tokio::time::Instant::now() + LOCAL_ROUTE_WAIT;
        loop {
            let mut m = RouteMessage::default();
            m.header.address_family = AddressFamily::Inet6;
            let routes = self
                .nl
                .dump(RouteNetlinkMessage::GetRoute(m))
                .await
                .map_err(OpError::Netlink)?;
            if routes.iter().any(|r| is_local_route(r, idx, a)) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(address = %a, ifindex = idx, "the kernel has not installed the local route of a moved address yet; going on");
                return Ok(());
            }
            tokio::time::sleep(LOCAL_ROUTE_POLL).await;
        }
    }

    async fn del_address(&mut self, dev: &str, net: &ipnet::IpNet) -> Result<Outcome, OpError> {
        let Ok(i) = self.resolve(dev).await else {
            return Ok(Outcome::Already);
        };
        let m = address_message(i, net, 0);
        self.delete(RouteNetlinkMessage::DelAddress(m)).await
    }

    /// Adds or replaces a route, as `flags` say.
    async fn new_route(&mut self, route: &Route, flags: u16) -> Result<Outcome, OpError> {
        let m = self.route_message(route).await?;
        self.write(RouteNetlinkMessage::NewRoute(m), flags).await
    }

    async fn del_route(&mut self, route: &Route) -> Result<Outcome, OpError> {
        let mut m = match self.route_message(route).await {
            Ok(m) => m,
            Err(OpError::ResolveInterface { .. }) => return Ok(Outcome::Already),
            Err(e) => return Err(e),
        };
        // As `ip route del` does: match any scope.
        m.header.scope = RouteScope::NoWhere;
        self.delete(RouteNetlinkMessage::DelRoute(m)).await
    }

    async fn delete_link(&mut self, name: &str) -> Result<Outcome, OpError> {
        let Ok(i) = self.resolve(name).await else {
            return Ok(Outcome::Already);
        };
        let mut m = LinkMessage::default();
        m.header.index = i;
        let out = self.delete(RouteNetlinkMessage::DelLink(m)).await?;
        self.index.remove(name);
        Ok(out)
    }

    async fn route_message(&mut self, r: &Route) -> Result<RouteMessage, OpError> {
        let oif = match &r.dev {
            Some(d) => Some(self.resolve(d).await?),
            None => None,
        };
        Ok(route_message(r, oif))
    }

    /// Asks the kernel to resolve `gateway` on `dev` afresh (ARP or neighbour discovery)
    /// and waits until it answers or `timeout` passes.
    async fn check_gateway(
        &mut self,
        dev: &str,
        gateway: IpAddr,
        timeout: Duration,
    ) -> Result<bool, OpError> {
        let idx = self.resolve(dev).await?;
        // Forget a cached answer: only a reply to a probe sent now proves the path works.
        match self
            .nl
            .write(
                RouteNetlinkMessage::DelNeighbour(neigh_message(idx, gateway)),
                0,
            )
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(OpError::Netlink(e)),
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut kick = true;
        loop {
            if kick {
                if let IpAddr::V6(gw) = gateway
                    && let Err(e) = nudge_ipv6(dev, gw)
                {
                    tracing::debug!(dev, gateway = %gw, error = %e, "no datagram to start neighbour discovery");
                }
                // NTF_USE makes the kernel start resolution at once, as a packet would.
                let mut m = neigh_message(idx, gateway);
                m.header.flags = NeighbourFlags::Use;
                self.nl
                    .write(
                        RouteNetlinkMessage::NewNeighbour(m),
                        NLM_F_CREATE | NLM_F_REPLACE,
                    )
                    .await
                    .map_err(OpError::Netlink)?;
                kick = false;
            }
            match self.neigh_state(idx, gateway).await? {
                Some(
                    NeighbourState::Reachable | NeighbourState::Permanent | NeighbourState::Noarp,
                ) => {
                    return Ok(true);
                }
                // Resolution gave up before our deadline: ask again.
                Some(NeighbourState::Failed) | None => kick = true,
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(NEIGH_POLL).await;
        }
    }

    async fn neigh_state(
        &self,
        idx: u32,
        gateway: IpAddr,
    ) -> Result<Option<NeighbourState>, OpError> {
        let mut m = NeighbourMessage::default();
        m.header.family = family(gateway);
        let all = self
            .nl
            .dump(RouteNetlinkMessage::GetNeighbour(m))
            .await
            .map_err(OpError::Netlink)?;
        let want = neigh_address(gateway);
        Ok(all.into_iter().find_map(|msg| match msg {
            RouteNetlinkMessage::NewNeighbour(n)
                if n.header.ifindex == idx
                    && n.attributes
                        .iter()
                        .any(|a| matches!(a, NeighbourAttribute::Destination(d) if *d == want)) =>
            {
                Some(n.header.state)
            }
            _ => None,
        }))
    }
}

/// Starts neighbour discovery of an IPv6 `gateway` on `dev` with one empty UDP datagram to
/// its discard port (9). `NTF_USE` alone sends no solicitation while `dev`'s link-local
/// address is tentative, as a new bridge's is during its DAD (one to two seconds, longer
/// than a short `move_check_timeout`): without a packet to take the source from, the
/// kernel uses only a usable link-local one. The datagram's source is the moved address,
/// added without DAD, so the solicitation goes out at once.
fn nudge_ipv6(dev: &str, gateway: std::net::Ipv6Addr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    s.bind_device(Some(dev.as_bytes()))?;
    s.send_to(&[], &std::net::SocketAddr::from((gateway, 9)).into())?;
    Ok(())
}

fn source_text(e: &OpError) -> String {
    let mut out = String::new();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = cur {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

fn stp_state(on: bool) -> BridgeStpState {
    if on {
        BridgeStpState::KernelStp
    } else {
        BridgeStpState::Disabled
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    }
}

fn bridge_change(idx: u32, set: &BridgeOptions) -> RouteNetlinkMessage {
    let mut b = LinkMessageBuilder::<LinkBridge>::new_with_info_kind(InfoKind::Bridge).index(idx);
    if let Some(d) = set.forward_delay_cs {
        b = b.append_info_data(InfoBridge::ForwardDelay(d));
    }
    if let Some(s) = set.stp {
        b = b.append_info_data(InfoBridge::StpState(stp_state(s)));
    }
    if let Some(m) = set.multicast_snooping {
        b = b.append_info_data(InfoBridge::MulticastSnooping(m));
    }
    RouteNetlinkMessage::NewLink(b.build())
}

fn port_change(idx: u32, set: &PortOptions) -> RouteNetlinkMessage {
    let mut b = LinkBridgePort::new(idx);
    if let Some(h) = set.hairpin {
        b = b.hairpin(h);
    }
    if let Some(l) = set.learning {
        b = b.learning(l);
    }
    if let Some(c) = set.cost {
        b = b.cost(c);
    }
    if let Some(p) = set.priority {
        b = b.priority(p);
    }
    RouteNetlinkMessage::NewLink(b.build())
}

fn address_message(idx: u32, net: &ipnet::IpNet, proto: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = family(net.addr());
    m.header.prefix_len = net.prefix_len();
    m.header.index = idx;
    m.attributes.push(AddressAttribute::Local(net.addr()));
    m.attributes.push(AddressAttribute::Address(net.addr()));
    if proto != 0 {
        m.attributes
            .push(AddressAttribute::Protocol(AddressProtocol::from(proto)));
    }
    m
}

/// Builds the netlink message of a route (`oif` resolved from its interface).
pub fn route_message(r: &Route, oif: Option<u32>) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family(r.dst.addr());
    m.header.destination_prefix_length = r.dst.prefix_len();
    m.header.table = u8::try_from(r.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    m.header.protocol = RouteProtocol::from(r.protocol);
    m.header.scope = if r.gateway.is_some() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    m.header.kind = RouteType::Unicast;
    if r.dst.prefix_len() > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                r.dst.addr(),
            )));
    }
    m.attributes.push(RouteAttribute::Table(r.table));
    if let Some(gw) = r.gateway {
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    if let Some(i) = oif {
        m.attributes.push(RouteAttribute::Oif(i));
    }
    m.attributes.push(RouteAttribute::Priority(r.metric));
    m
}

/// Whether `m` is the local-table route of `a` on `idx` (`local a dev <idx> table local`).
fn is_local_route(m: &RouteNetlinkMessage, idx: u32, a: std::net::Ipv6Addr) -> bool {
    let RouteNetlinkMessage::NewRoute(r) = m else {
        return false;
    };
    r.header.kind == RouteType::Local
        && r.header.destination_prefix_length == 128
        && r.attributes
            .iter()
            .any(|x| matches!(x, RouteAttribute::Destination(RouteAddress::Inet6(d)) if *d == a))
        && r.attributes
            .iter()
            .any(|x| matches!(x, RouteAttribute::Oif(i) if *i == idx))
}

fn neigh_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    }
}

fn neigh_message(idx: u32, ip: IpAddr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = family(ip);
    m.header.ifindex = idx;
    m.header.state = NeighbourState::None;
    m.attributes
        .push(NeighbourAttribute::Destination(neigh_address(ip)));
    m
}
