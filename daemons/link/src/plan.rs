//! Pure: `(desired, observed) -> Plan`, the list of operations that brings the kernel to the
//! desired state, plus what must wait (NICs not plugged in yet) and what was noticed but is
//! not ours to change.
//!
//! The planner projects each operation it emits through [`crate::sim`], so later phases
//! diff against the state earlier operations leave behind. The phases run in the order the
//! kernel needs: bridges, then their addresses, then ports (with the make-before-break move
//! of an address from a NIC onto its bridge), then routes (after the addresses that make
//! their gateways reachable), then per-interface sysctls, and last the gateway checks and
//! removal of the moved addresses from the NICs.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::model::{
    Address, BridgeSpec, Desired, Link, OWNER_PROTO, Observed, PortInfo, Route, SysctlKey,
    TABLE_LOCAL,
};
use crate::op::{BridgeOptions, Op, PortOptions, PortWas};
use crate::sim;

/// The result of planning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Operations, in the order to apply them.
    pub ops: Vec<Op>,
    /// Things that cannot be converged yet because an interface is missing.
    pub waiting: Vec<Waiting>,
    /// Observations about state we do not own or cannot change.
    pub notes: Vec<Note>,
}

impl Plan {
    /// True when the kernel already matches the configuration.
    pub fn is_converged(&self) -> bool {
        self.ops.is_empty()
    }

    /// True when a note says part of the configuration cannot be carried out.
    pub fn has_errors(&self) -> bool {
        self.notes.iter().any(|n| n.severity() == Severity::Error)
    }
}

/// Renders the plan as a shell script with comments.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for w in &self.waiting {
            writeln!(f, "# waiting: {w}")?;
        }
        for n in &self.notes {
            writeln!(f, "# {}: {n}", n.severity())?;
        }
        if self.ops.is_empty() {
            writeln!(f, "# converged: nothing to do")?;
        }
        for op in &self.ops {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}

/// Something the plan cannot do until an interface appears.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Waiting {
    /// A port NIC is not present (hot-plugged later, or its driver not loaded yet).
    Port {
        /// The NIC.
        port: String,
        /// Its bridge.
        bridge: String,
    },
    /// A route's interface is not present.
    Route {
        /// The route.
        route: Route,
    },
}

impl Waiting {
    /// The missing interface.
    pub fn interface(&self) -> &str {
        match self {
            Waiting::Port { port, .. } => port,
            Waiting::Route { route } => route.dev.as_deref().unwrap_or(""),
        }
    }
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::Port { port, bridge } => {
                write!(f, "port {port} of {bridge} is not present yet")
            }
            Waiting::Route { route } => write!(
                f,
                "route {route}: interface {} is not present yet",
                route.dev.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// How serious a note is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing is wrong.
    Info,
    /// Something outside our control may interfere.
    Warn,
    /// Part of the configuration cannot be carried out.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warn => "warning",
            Severity::Error => "error",
        })
    }
}

/// An observation the planner reports without acting on it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum Note {
    /// A configured bridge name is held by a link of another kind.
    NotABridge {
        /// Name.
        name: String,
        /// Its kind.
        kind: String,
    },
    /// The kernel lacks bridge VLAN filtering.
    VlanFilteringUnsupported {
        /// Bridge asking for it.
        bridge: String,
    },
    /// An address we do not own sits on a managed bridge.
    ForeignAddress {
        /// Interface.
        dev: String,
        /// Address.
        net: IpNet,
        /// Its `IFA_PROTO`.
        proto: u8,
    },
    /// A route we do not own uses a managed bridge.
    ForeignRoute {
        /// The route.
        route: Route,
    },
    /// A route we do not own holds the key of a configured route, which is therefore not
    /// added.
    RouteConflict {
        /// The configured route.
        wanted: Route,
        /// The route in the way.
        holder: Route,
    },
    /// A configured route's gateway is on no connected subnet, so the kernel would refuse it.
    GatewayUnreachable {
        /// The route.
        route: Route,
    },
    /// A port holds an address no bridge declares; it stops working once the NIC is a port.
    PortAddress {
        /// The port.
        port: String,
        /// The address.
        net: IpNet,
    },
    /// A route on a port could not be moved onto the bridge (its gateway is not in a moved
    /// subnet).
    PortRouteLeft {
        /// The port.
        port: String,
        /// The route.
        route: Route,
    },
    /// A port is taken from a controller that is not its configured bridge.
    PortTaken {
        /// The port.
        port: String,
        /// Its current controller.
        from: String,
    },
    /// A configured port is enslaved to a protected interface, so it is left where it is.
    PortInProtected {
        /// The port.
        port: String,
        /// Its protected controller.
        controller: String,
    },
    /// An address moves onto its bridge without a gateway to check reachability with.
    NoGatewayToCheck {
        /// The bridge.
        bridge: String,
    },
    /// An object tagged as ours sits on a protected interface and is left alone.
    OwnedOnProtected {
        /// What it is.
        what: String,
    },
    /// A sysctl does not exist on this kernel (e.g. bridge-nf-call-* without br_netfilter).
    SysctlMissing {
        /// Key.
        key: SysctlKey,
        /// Desired value.
        value: String,
    },
    /// `net.ipv4.conf.all.rp_filter` is stricter than an interface's configured value; the
    /// kernel uses the maximum of the two.
    RpFilterCapped {
        /// Interface.
        iface: String,
        /// Configured value.
        wanted: String,
        /// The global value.
        all: String,
    },
}

impl Note {
    /// How serious it is.
    pub fn severity(&self) -> Severity {
        match self {
            Note::NotABridge { .. }
            | Note::GatewayUnreachable { .. }
            | Note::PortInProtected { .. } => Severity::Error,
            Note::VlanFilteringUnsupported { .. }
            | Note::RouteConflict { .. }
            | Note::PortAddress { .. }
            | Note::PortRouteLeft { .. }
            | Note::OwnedOnProtected { .. }
            | Note::SysctlMissing { .. }
            | Note::RpFilterCapped { .. }
            | Note::ForeignAddress { .. } => Severity::Warn,
            Note::ForeignRoute { .. } | Note::PortTaken { .. } | Note::NoGatewayToCheck { .. } => {
                Severity::Info
            }
        }
    }

    /// A short label, for the `edge_link_foreign_changes_total{kind}` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Note::NotABridge { .. } => "not_a_bridge",
            Note::VlanFilteringUnsupported { .. } => "vlan_filtering_unsupported",
            Note::ForeignAddress { .. } => "foreign_address",
            Note::ForeignRoute { .. } => "foreign_route",
            Note::RouteConflict { .. } => "route_conflict",
            Note::GatewayUnreachable { .. } => "gateway_unreachable",
            Note::PortAddress { .. } => "port_address",
            Note::PortRouteLeft { .. } => "port_route_left",
            Note::PortTaken { .. } => "port_taken",
            Note::PortInProtected { .. } => "port_in_protected",
            Note::NoGatewayToCheck { .. } => "no_gateway_to_check",
            Note::OwnedOnProtected { .. } => "owned_on_protected",
            Note::SysctlMissing { .. } => "sysctl_missing",
            Note::RpFilterCapped { .. } => "rp_filter_capped",
        }
    }

    /// True for notes about objects another manager owns.
    pub fn is_foreign(&self) -> bool {
        matches!(
            self,
            Note::ForeignAddress { .. }
                | Note::ForeignRoute { .. }
                | Note::RouteConflict { .. }
                | Note::PortAddress { .. }
                | Note::PortTaken { .. }
        )
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::NotABridge { name, kind } => write!(
                f,
                "`{name}` exists but is a {kind} link, not a bridge; it is left alone (delete it or rename the bridge)"
            ),
            Note::VlanFilteringUnsupported { bridge } => write!(
                f,
                "bridge `{bridge}` asks for vlan_filtering, but this kernel lacks bridge VLAN filtering (EOPNOTSUPP); left off"
            ),
            Note::ForeignAddress { dev, net, proto } => write!(
                f,
                "address {net} on managed `{dev}` is not ours (proto {proto}); left alone"
            ),
            Note::ForeignRoute { route } => write!(f, "route {route} is not ours; left alone"),
            Note::RouteConflict { wanted, holder } => write!(
                f,
                "configured route {wanted} is not added: foreign route {holder} holds its key (table, destination, metric)"
            ),
            Note::GatewayUnreachable { route } => write!(
                f,
                "configured route {route} is not added: its gateway is on no connected subnet"
            ),
            Note::PortAddress { port, net } => write!(
                f,
                "port `{port}` holds {net}, which no bridge declares; it stops answering once `{port}` is a bridge port"
            ),
            Note::PortRouteLeft { port, route } => write!(
                f,
                "route {route} on port `{port}` is not moved onto the bridge (its gateway is outside the moved subnets)"
            ),
            Note::PortTaken { port, from } => {
                write!(f, "port `{port}` is taken from `{from}`")
            }
            Note::PortInProtected { port, controller } => write!(
                f,
                "port `{port}` is enslaved to protected `{controller}` and is left there"
            ),
            Note::NoGatewayToCheck { bridge } => write!(
                f,
                "address moved onto `{bridge}` without a gateway to check reachability with"
            ),
            Note::OwnedOnProtected { what } => {
                write!(
                    f,
                    "{what} carries our tag but sits on a protected interface; left alone"
                )
            }
            Note::SysctlMissing { key, value } => write!(
                f,
                "{key} does not exist on this kernel; wanted {value} (for net.bridge.*: load br_netfilter, or drop the key)"
            ),
            Note::RpFilterCapped { iface, wanted, all } => write!(
                f,
                "rp_filter {wanted} on `{iface}` is overridden by net.ipv4.conf.all.rp_filter = {all} (the kernel uses the maximum)"
            ),
        }
    }
}

/// Computes the operations that converge `observed` onto `desired`.
pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
    let mut p = Planner {
        desired,
        state: observed.clone(),
        plan: Plan::default(),
        blocked: BTreeSet::new(),
        moves: Vec::new(),
    };
    p.global_sysctls();
    for b in &desired.bridges {
        p.bridge(b);
    }
    for b in &desired.bridges {
        p.bridge_addresses(b);
    }
    p.stale_addresses();
    for b in &desired.bridges {
        p.ports(b);
    }
    p.routes();
    p.interface_sysctls();
    p.finish_moves();
    p.foreign_notes();
    p.plan.notes.sort();
    p.plan.notes.dedup();
    p.plan
}

/// An address move from a NIC onto its bridge in progress.
struct Move {
    bridge: String,
    port: String,
    addresses: Vec<Address>,
    gateways: Vec<IpAddr>,
}

struct Planner<'a> {
    desired: &'a Desired,
    /// The observed state with every emitted operation applied.
    state: Observed,
    plan: Plan,
    /// Bridges that cannot be managed (their name is taken by another kind of link).
    blocked: BTreeSet<String>,
    moves: Vec<Move>,
}

impl Planner<'_> {
    fn push(&mut self, op: Op) {
        sim::apply(&mut self.state, &op);
        self.plan.ops.push(op);
    }

    fn note(&mut self, n: Note) {
        self.plan.notes.push(n);
    }

    fn link(&self, name: &str) -> Option<&Link> {
        self.state.links.get(name)
    }

    fn global_sysctls(&mut self) {
        for (key, value) in &self.desired.sysctls {
            if key.interface().is_some() {
                continue;
            }
            match self.state.sysctls.get(key) {
                Some(cur) if cur == value => {}
                Some(cur) => {
                    let was = Some(cur.clone());
                    self.push(Op::SetSysctl {
                        key: key.clone(),
                        value: value.clone(),
                        was,
                    });
                }
                // Without the file the feature is absent, which is what "0" asks for.
                None if value == "0" => {}
                None => self.note(Note::SysctlMissing {
                    key: key.clone(),
                    value: value.clone(),
                }),
            }
        }
    }

    fn bridge(&mut self, b: &BridgeSpec) {
        if self.desired.is_protected(&b.name) {
            return;
        }
        match self.link(&b.name) {
            None => self.push(Op::CreateBridge {
                name: b.name.clone(),
                mtu: b.mtu,
                stp: b.stp,
                forward_delay_cs: b.forward_delay_cs,
                multicast_snooping: b.multicast_snooping,
            }),
            Some(l) if !l.is_bridge() => {
                let kind = l.kind.clone().unwrap_or_else(|| "physical".into());
                self.blocked.insert(b.name.clone());
                self.note(Note::NotABridge {
                    name: b.name.clone(),
                    kind,
                });
                return;
            }
            Some(_) => {}
        }
        let Some(l) = self.link(&b.name).cloned() else {
            return;
        };
        if let Some(info) = l.bridge {
            let mut set = BridgeOptions::default();
            let mut was = BridgeOptions::default();
            if info.stp != b.stp {
                set.stp = Some(b.stp);
                was.stp = Some(info.stp);
            }
            if info.forward_delay_cs != b.forward_delay_cs {
                set.forward_delay_cs = Some(b.forward_delay_cs);
                was.forward_delay_cs = Some(info.forward_delay_cs);
            }
            if info.multicast_snooping != b.multicast_snooping {
                set.multicast_snooping = Some(b.multicast_snooping);
                was.multicast_snooping = Some(info.multicast_snooping);
            }
            if !set.is_empty() {
                self.push(Op::SetBridgeOptions {
                    name: b.name.clone(),
                    set,
                    was,
                });
            }
            if info.vlan_filtering != b.vlan_filtering {
                if self.state.caps.no_vlan_filtering {
                    if b.vlan_filtering {
                        self.note(Note::VlanFilteringUnsupported {
                            bridge: b.name.clone(),
                        });
                    }
                } else {
                    self.push(Op::SetVlanFiltering {
                        name: b.name.clone(),
                        on: b.vlan_filtering,
                    });
                }
            }
        }
        if let Some(m) = b.mtu
            && m != l.mtu
        {
            self.push(Op::SetMtu {
                link: b.name.clone(),
                mtu: m,
                was: l.mtu,
            });
        }
        if !l.up {
            self.push(Op::SetUp {
                link: b.name.clone(),
            });
        }
    }

    fn bridge_addresses(&mut self, b: &BridgeSpec) {
        if self.blocked.contains(&b.name) || self.link(&b.name).is_none() {
            return;
        }
        for net in &b.addresses {
            let present = self
                .state
                .addresses
                .iter()
                .any(|a| a.dev == b.name && a.net == *net);
            if !present {
                // The host already holds it on a port about to be moved onto the bridge:
                // DAD could only find the host itself, and would keep the bridge's copy
                // unusable while the move runs.
                let nodad = net.addr().is_ipv6()
                    && self.state.addresses.iter().any(|a| {
                        a.net.addr() == net.addr() && b.ports.iter().any(|p| p.name == a.dev)
                    });
                self.push(Op::AddAddress {
                    dev: b.name.clone(),
                    net: *net,
                    proto: OWNER_PROTO,
                    nodad,
                });
            }
        }
    }

    /// Removes addresses we tagged that the configuration no longer asks for.
    fn stale_addresses(&mut self) {
        let stale: Vec<Address> = self
            .state
            .addresses
            .iter()
            .filter(|a| a.is_ours())
            .filter(|a| {
                !self
                    .desired
                    .bridges
                    .iter()
                    .any(|b| b.name == a.dev && b.addresses.contains(&a.net))
            })
            .cloned()
            .collect();
        for a in stale {
            if self.desired.is_protected(&a.dev) {
                self.note(Note::OwnedOnProtected {
                    what: format!("address {} on `{}`", a.net, a.dev),
                });
                continue;
            }
            self.push(Op::DelAddress {
                dev: a.dev,
                net: a.net,
                proto: a.proto,
            });
        }
    }

    fn ports(&mut self, b: &BridgeSpec) {
        if self.blocked.contains(&b.name) || self.link(&b.name).is_none() {
            return;
        }
        for p in &b.ports {
            if self.desired.is_protected(&p.name) {
                continue;
            }
            let Some(l) = self.link(&p.name).cloned() else {
                self.plan.waiting.push(Waiting::Port {
                    port: p.name.clone(),
                    bridge: b.name.clone(),
                });
                continue;
            };
            if let Some(c) = l
                .controller
                .as_deref()
                .filter(|c| self.desired.is_protected(c))
            {
                self.plan.notes.push(Note::PortInProtected {
                    port: p.name.clone(),
                    controller: c.to_owned(),
                });
                continue;
            }
            let want_mtu = p.mtu.filter(|m| *m != l.mtu);
            if l.controller.as_deref() != Some(b.name.as_str()) {
                if let Some(from) = &l.controller {
                    self.note(Note::PortTaken {
                        port: p.name.clone(),
                        from: from.clone(),
                    });
                }
                self.push(Op::SetController {
                    port: p.name.clone(),
                    bridge: b.name.clone(),
                    mtu: want_mtu,
                    was: PortWas {
                        controller: l.controller.clone(),
                        mtu: l.mtu,
                        up: l.up,
                    },
                });
            } else {
                if let Some(m) = want_mtu {
                    self.push(Op::SetMtu {
                        link: p.name.clone(),
                        mtu: m,
                        was: l.mtu,
                    });
                }
                if !l.up {
                    self.push(Op::SetUp {
                        link: p.name.clone(),
                    });
                }
            }
            let info = self
                .link(&p.name)
                .and_then(|l| l.port)
                .unwrap_or(PortInfo::KERNEL_DEFAULT);
            let mut set = PortOptions::default();
            let mut was = PortOptions::default();
            if let Some(v) = p.hairpin.filter(|v| *v != info.hairpin) {
                set.hairpin = Some(v);
                was.hairpin = Some(info.hairpin);
            }
            if let Some(v) = p.learning.filter(|v| *v != info.learning) {
                set.learning = Some(v);
                was.learning = Some(info.learning);
            }
            if let Some(v) = p.cost.filter(|v| *v != info.cost) {
                set.cost = Some(v);
                was.cost = Some(info.cost);
            }
            if let Some(v) = p.priority.filter(|v| *v != info.priority) {
                set.priority = Some(v);
                was.priority = Some(info.priority);
            }
            if !set.is_empty() {
                self.push(Op::SetPortOptions {
                    port: p.name.clone(),
                    set,
                    was,
                });
            }
            self.move_routes_off_port(b, &p.name);
        }
    }

    /// Make-before-break: when a port holds an address its bridge should hold, the bridge
    /// already has it (added by [`Self::bridge_addresses`]) and the port is enslaved (above);
    /// now the routes move onto the bridge. The gateway check and the removal of the old
    /// address come last ([`Self::finish_moves`]), after the configured routes exist.
    fn move_routes_off_port(&mut self, b: &BridgeSpec, port: &str) {
        let mut moved = Vec::new();
        for a in self.state.addresses.iter().filter(|a| a.dev == port) {
            if b.addresses.iter().any(|d| d.addr() == a.net.addr()) {
                moved.push(a.clone());
            } else if !a.is_kernel_managed() {
                self.plan.notes.push(Note::PortAddress {
                    port: port.to_owned(),
                    net: a.net,
                });
            }
        }
        if moved.is_empty() {
            return;
        }
        let subnets: Vec<IpNet> = moved.iter().map(|a| a.net.trunc()).collect();
        let on_port: Vec<Route> = self
            .state
            .routes
            .iter()
            .filter(|r| r.dev.as_deref() == Some(port) && !r.is_kernel() && r.table != TABLE_LOCAL)
            .cloned()
            .collect();
        let mut gateways = Vec::new();
        for r in on_port {
            let movable = r
                .gateway
                .is_none_or(|gw| subnets.iter().any(|s| s.contains(&gw)));
            if !movable {
                self.note(Note::PortRouteLeft {
                    port: port.to_owned(),
                    route: r,
                });
                continue;
            }
            // A route the configuration declares becomes ours on the way; others keep their
            // protocol so their owner still recognises them.
            let declared = self
                .desired
                .routes
                .iter()
                .any(|d| d.key() == r.key() && d.gateway == r.gateway);
            let new = Route {
                dev: Some(b.name.clone()),
                protocol: if declared { OWNER_PROTO } else { r.protocol },
                ..r.clone()
            };
            gateways.extend(r.gateway);
            self.push(Op::ReplaceRoute { route: new, was: r });
        }
        self.moves.push(Move {
            bridge: b.name.clone(),
            port: port.to_owned(),
            addresses: moved,
            gateways,
        });
    }

    /// The interface through which `gw` is reachable: one whose address subnet holds it,
    /// a managed bridge first.
    fn dev_for_gateway(&self, gw: IpAddr) -> Option<String> {
        let holders: Vec<&Address> = self
            .state
            .addresses
            .iter()
            .filter(|a| a.net.trunc().contains(&gw))
            .filter(|a| !self.desired.is_protected(&a.dev))
            .collect();
        holders
            .iter()
            .find(|a| self.desired.is_bridge(&a.dev))
            .or(holders.first())
            .map(|a| a.dev.clone())
    }

    fn routes(&mut self) {
        for r in &self.desired.routes {
            let dev = match (&r.dev, r.gateway) {
                (Some(d), _) => Some(d.clone()),
                (None, Some(gw)) => self.dev_for_gateway(gw),
                (None, None) => None,
            };
            let Some(dev) = dev else {
                self.note(Note::GatewayUnreachable { route: r.clone() });
                continue;
            };
            if self.desired.is_protected(&dev) || self.blocked.contains(&dev) {
                continue;
            }
            let want = Route {
                dev: Some(dev.clone()),
                ..r.clone()
            };
            if self.link(&dev).is_none() {
                self.plan.waiting.push(Waiting::Route { route: want });
                continue;
            }
            if let Some(gw) = r.gateway {
                let reachable = self
                    .state
                    .addresses
                    .iter()
                    .any(|a| a.dev == dev && a.net.trunc().contains(&gw));
                if !reachable {
                    self.note(Note::GatewayUnreachable { route: want });
                    continue;
                }
            }
            let at_key: Vec<Route> = self
                .state
                .routes
                .iter()
                .filter(|o| o.key() == r.key())
                .cloned()
                .collect();
            if at_key.iter().any(|o| r.satisfied_by(o)) {
                continue;
            }
            let on_protected = |o: &Route| {
                o.dev
                    .as_deref()
                    .is_some_and(|d| self.desired.is_protected(d))
            };
            if let Some(o) = at_key.iter().find(|o| on_protected(o)) {
                // Even our own route there stays: the key is taken on a NIC we never touch.
                self.note(Note::RouteConflict {
                    wanted: want,
                    holder: o.clone(),
                });
            } else if let Some(o) = at_key.iter().find(|o| o.is_ours()) {
                self.push(Op::ReplaceRoute {
                    route: want,
                    was: o.clone(),
                });
            } else if let Some(o) = at_key.first() {
                self.note(Note::RouteConflict {
                    wanted: want,
                    holder: o.clone(),
                });
            } else {
                self.push(Op::AddRoute { route: want });
            }
        }
        let stale: Vec<Route> = self
            .state
            .routes
            .iter()
            .filter(|o| o.is_ours())
            .filter(|o| !self.desired.routes.iter().any(|r| r.key() == o.key()))
            .cloned()
            .collect();
        for o in stale {
            if o.dev
                .as_deref()
                .is_some_and(|d| self.desired.is_protected(d))
            {
                self.note(Note::OwnedOnProtected {
                    what: format!("route {o}"),
                });
                continue;
            }
            self.push(Op::DelRoute { route: o });
        }
    }

    fn interface_sysctls(&mut self) {
        for (key, value) in &self.desired.sysctls {
            let Some(iface) = key.interface() else {
                continue;
            };
            if self.link(iface).is_none() || self.blocked.contains(iface) {
                continue;
            }
            let cur = self.state.sysctls.get(key).cloned();
            if cur.as_ref() != Some(value) {
                self.push(Op::SetSysctl {
                    key: key.clone(),
                    value: value.clone(),
                    was: cur,
                });
            }
            if let SysctlKey::RpFilter(_) = key
                && let Some(all) = self.state.sysctls.get(&SysctlKey::RpFilterAll)
                && all.as_str() > value.as_str()
            {
                self.note(Note::RpFilterCapped {
                    iface: iface.to_owned(),
                    wanted: value.clone(),
                    all: all.clone(),
                });
            }
        }
    }

    fn finish_moves(&mut self) {
        let moves = std::mem::take(&mut self.moves);
        for m in moves {
            let subnets: Vec<IpNet> = m.addresses.iter().map(|a| a.net.trunc()).collect();
            let mut gateways: Vec<IpAddr> = m.gateways.clone();
            gateways.extend(
                self.desired
                    .routes
                    .iter()
                    .filter_map(|r| r.gateway)
                    .filter(|gw| subnets.iter().any(|s| s.contains(gw))),
            );
            gateways.sort();
            gateways.dedup();
            if gateways.is_empty() {
                self.note(Note::NoGatewayToCheck {
                    bridge: m.bridge.clone(),
                });
            }
            for gw in gateways {
                self.push(Op::CheckGateway {
                    dev: m.bridge.clone(),
                    gateway: gw,
                    timeout: self.desired.move_check_timeout,
                });
            }
            for a in m.addresses {
                self.push(Op::DelAddress {
                    dev: m.port.clone(),
                    net: a.net,
                    proto: a.proto,
                });
            }
        }
    }

    fn foreign_notes(&mut self) {
        let mut notes = Vec::new();
        for b in &self.desired.bridges {
            for a in self.state.addresses.iter().filter(|a| a.dev == b.name) {
                if !a.is_ours()
                    && !a.is_kernel_managed()
                    && !b.addresses.contains(&a.net)
                    && !self.desired.is_virtual(&a.dev, a.net.addr())
                {
                    notes.push(Note::ForeignAddress {
                        dev: a.dev.clone(),
                        net: a.net,
                        proto: a.proto,
                    });
                }
            }
            for r in self.state.routes.iter() {
                if r.dev.as_deref() == Some(b.name.as_str())
                    && !r.is_ours()
                    && !r.is_kernel()
                    && r.table != TABLE_LOCAL
                {
                    notes.push(Note::ForeignRoute { route: r.clone() });
                }
            }
        }
        self.plan.notes.extend(notes);
    }
}

/// A reason a plan must not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Index of the operation in the plan.
    pub op: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "operation {}: {}", self.op + 1, self.message)
    }
}

/// Checks a plan before its first change: it names no protected interface, uses only
/// interfaces that exist or that an earlier operation creates, never deletes a link, and
/// removes only objects we own (or, in an address move, the moved port's).
pub fn validate(ops: &[Op], desired: &Desired, observed: &Observed) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut known: BTreeSet<String> = observed.links.keys().cloned().collect();
    let is_port = |name: &str| desired.bridge_of_port(name).is_some();
    for (i, op) in ops.iter().enumerate() {
        let mut bad = |message: String| problems.push(Problem { op: i, message });
        for name in op.interfaces() {
            if desired.is_protected(name) {
                bad(format!("`{op}` names protected interface `{name}`"));
            }
        }
        if op.is_rollback_only() {
            bad(format!("`{op}` may only appear in a rollback"));
        }
        if let Op::CreateBridge { name, .. } = op {
            known.insert(name.clone());
        } else {
            for name in op.interfaces() {
                if !known.contains(name) {
                    bad(format!("`{op}` uses `{name}`, which does not exist"));
                }
            }
        }
        match op {
            Op::DelAddress { dev, proto, .. } if *proto != OWNER_PROTO && !is_port(dev) => {
                bad(format!("`{op}` removes an address we do not own"));
            }
            Op::DelRoute { route } if !route.is_ours() => {
                bad(format!("`{op}` removes a route we do not own"));
            }
            Op::ReplaceRoute { was, .. }
                if !was.is_ours() && !was.dev.as_deref().is_some_and(is_port) =>
            {
                bad(format!("`{op}` replaces a route we do not own"));
            }
            _ => {}
        }
    }
    problems
}
