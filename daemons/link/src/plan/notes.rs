//! What a plan reports besides its operations: what waits for an interface, and notes
//! about state that is not ours to change.

use std::fmt;

use ipnet::IpNet;
use serde::Serialize;

use crate::model::{Route, SysctlKey};

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
