//! Pure: the domain model. [`Desired`] is what the `[link]` section asks for, [`Observed`] is
//! what the kernel holds; both are plain data keyed by interface *name*, so the planner
//! compares them without touching netlink (indexes are resolved by the I/O layers).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

/// The tag on every route (`protocol`) and address (`IFA_PROTO`) edge-link creates.
///
/// Drift checks consider only objects carrying it, so routes and addresses written by
/// libvirt, NetworkManager, systemd-networkd or a human are never removed. 237 is unused by
/// the kernel and by iproute2's `rt_protos` table; `ip route` shows it as `proto 237`.
pub const OWNER_PROTO: u8 = 237;

/// Route protocol the kernel uses for the routes it derives itself (connected subnets).
pub const PROTO_KERNEL: u8 = 2;

/// The main routing table.
pub const TABLE_MAIN: u32 = 254;

/// The local routing table (local and broadcast addresses; never ours).
pub const TABLE_LOCAL: u32 = 255;

/// The metric the kernel gives an IPv6 route added without one.
pub const IPV6_DEFAULT_METRIC: u32 = 1024;

/// Kernel default MTU of a new bridge without ports.
pub const DEFAULT_MTU: u32 = 1500;

/// What the configuration asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Desired {
    /// Managed bridges, in configuration order.
    pub bridges: Vec<BridgeSpec>,
    /// Managed routes (all tagged [`OWNER_PROTO`]).
    pub routes: Vec<Route>,
    /// Kernel settings, each set explicitly.
    pub sysctls: Vec<(SysctlKey, String)>,
    /// Interfaces nothing may touch.
    pub protected: BTreeSet<String>,
    /// How long the gateway may take to answer after an address moved onto a bridge.
    pub move_check_timeout: Duration,
    /// Virtual addresses keepalived moves between two hosts (`[ha]`), by interface:
    /// expected on the master, never reported as foreign, never removed.
    pub virtual_addresses: Vec<(String, IpNet)>,
}

/// One managed bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BridgeSpec {
    /// Bridge name.
    pub name: String,
    /// Its ports (NICs), with their options.
    pub ports: Vec<PortSpec>,
    /// Host addresses on the bridge.
    pub addresses: Vec<IpNet>,
    /// MTU; `None` leaves the kernel's choice.
    pub mtu: Option<u32>,
    /// Spanning tree on.
    pub stp: bool,
    /// STP forward delay in centiseconds (the kernel's `IFLA_BR_FORWARD_DELAY` unit).
    pub forward_delay_cs: u32,
    /// IGMP/MLD snooping.
    pub multicast_snooping: bool,
    /// 802.1Q VLAN filtering.
    pub vlan_filtering: bool,
}

/// One bridge port and its options (`None` leaves the kernel's value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSpec {
    /// Port interface name.
    pub name: String,
    /// MTU of the port (the bridge's when not given).
    pub mtu: Option<u32>,
    /// Hairpin mode.
    pub hairpin: Option<bool>,
    /// MAC learning.
    pub learning: Option<bool>,
    /// STP path cost.
    pub cost: Option<u32>,
    /// STP port priority.
    pub priority: Option<u16>,
}

/// A sysctl the daemon reads or sets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum SysctlKey {
    /// `net.ipv4.ip_forward`.
    IpForward,
    /// `net.ipv6.conf.all.forwarding`.
    Ipv6Forwarding,
    /// `net.ipv4.conf.all.rp_filter` (read only: the effective value is the maximum of it
    /// and the interface's).
    RpFilterAll,
    /// `net.ipv4.conf.<iface>.rp_filter`.
    RpFilter(String),
    /// `net.bridge.bridge-nf-call-iptables`.
    BridgeNfCallIptables,
    /// `net.bridge.bridge-nf-call-ip6tables`.
    BridgeNfCallIp6tables,
    /// `net.bridge.bridge-nf-call-arptables`.
    BridgeNfCallArptables,
}

impl SysctlKey {
    /// The path below `/proc/sys`.
    pub fn path(&self) -> String {
        match self {
            SysctlKey::IpForward => "net/ipv4/ip_forward".into(),
            SysctlKey::Ipv6Forwarding => "net/ipv6/conf/all/forwarding".into(),
            SysctlKey::RpFilterAll => "net/ipv4/conf/all/rp_filter".into(),
            SysctlKey::RpFilter(i) => format!("net/ipv4/conf/{i}/rp_filter"),
            SysctlKey::BridgeNfCallIptables => "net/bridge/bridge-nf-call-iptables".into(),
            SysctlKey::BridgeNfCallIp6tables => "net/bridge/bridge-nf-call-ip6tables".into(),
            SysctlKey::BridgeNfCallArptables => "net/bridge/bridge-nf-call-arptables".into(),
        }
    }

    /// The interface the key belongs to, if it is per-interface.
    pub fn interface(&self) -> Option<&str> {
        match self {
            SysctlKey::RpFilter(i) => Some(i),
            _ => None,
        }
    }
}

impl fmt::Display for SysctlKey {
    /// The dotted `sysctl(8)` name; a `.` inside an interface name becomes `/`, as sysctl
    /// spells it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysctlKey::RpFilter(i) => write!(f, "net.ipv4.conf.{}.rp_filter", i.replace('.', "/")),
            other => f.write_str(&other.path().replace('/', ".")),
        }
    }
}

/// What the kernel holds, as read by one full dump.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// Every link, by name.
    pub links: BTreeMap<String, Link>,
    /// Every address.
    pub addresses: BTreeSet<Address>,
    /// Every unicast route of every table except `local`.
    pub routes: BTreeSet<Route>,
    /// Values of the sysctls asked for; a missing key means the file does not exist.
    pub sysctls: BTreeMap<SysctlKey, String>,
    /// What the kernel is known to lack (learned by the apply layer).
    pub caps: Caps,
}

/// Kernel features learned at run time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Caps {
    /// The kernel refused bridge VLAN filtering with `EOPNOTSUPP`
    /// (no `CONFIG_BRIDGE_VLAN_FILTERING`).
    pub no_vlan_filtering: bool,
}

/// One link (network interface).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// `IFLA_INFO_KIND` (`bridge`, `veth`, ...); `None` for physical NICs.
    pub kind: Option<String>,
    /// Name of the controller (bridge) it is enslaved to.
    pub controller: Option<String>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Operationally up (carrier present, `IFF_LOWER_UP`).
    pub lower_up: bool,
    /// Bridge settings, when the link is a bridge.
    pub bridge: Option<BridgeInfo>,
    /// Bridge-port settings, when the link is a bridge port.
    pub port: Option<PortInfo>,
}

impl Link {
    /// True when the link is a bridge.
    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }
}

/// Settings of a bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BridgeInfo {
    /// STP enabled.
    pub stp: bool,
    /// Forward delay in centiseconds.
    pub forward_delay_cs: u32,
    /// IGMP/MLD snooping.
    pub multicast_snooping: bool,
    /// VLAN filtering.
    pub vlan_filtering: bool,
}

/// Settings of a bridge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PortInfo {
    /// Hairpin mode.
    pub hairpin: bool,
    /// MAC learning.
    pub learning: bool,
    /// STP path cost.
    pub cost: u32,
    /// STP port priority.
    pub priority: u16,
}

impl PortInfo {
    /// The kernel's settings of a freshly enslaved port (cost depends on the link speed;
    /// 100 is the kernel's value for an unknown speed).
    pub const KERNEL_DEFAULT: PortInfo = PortInfo {
        hairpin: false,
        learning: true,
        cost: 100,
        priority: 32,
    };
}

/// One address on one interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Address {
    /// Interface name.
    pub dev: String,
    /// Address with prefix length (host bits kept: `192.198.0.30/24`).
    pub net: IpNet,
    /// `IFA_PROTO` (0 when unset).
    pub proto: u8,
}

impl Address {
    /// True when edge-link created it.
    pub fn is_ours(&self) -> bool {
        self.proto == OWNER_PROTO
    }

    /// True for addresses the kernel manages by itself (IPv6 link-local).
    pub fn is_kernel_managed(&self) -> bool {
        match self.net.addr() {
            IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
            IpAddr::V4(_) => false,
        }
    }
}

/// One unicast route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Route {
    /// Routing table id.
    pub table: u32,
    /// Destination (network address, host bits zero).
    pub dst: IpNet,
    /// Metric (`RTA_PRIORITY`).
    pub metric: u32,
    /// Gateway.
    pub gateway: Option<IpAddr>,
    /// Output interface; in a desired route `None` lets the planner pick the interface
    /// whose subnet holds the gateway.
    pub dev: Option<String>,
    /// Route protocol.
    pub protocol: u8,
}

/// The kernel's identity of an IPv4 route: two routes with the same key cannot coexist
/// (a second add fails with `EEXIST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RouteKey {
    /// Routing table id.
    pub table: u32,
    /// Destination.
    pub dst: IpNet,
    /// Metric.
    pub metric: u32,
}

impl Route {
    /// The route's identity.
    pub fn key(&self) -> RouteKey {
        RouteKey {
            table: self.table,
            dst: self.dst,
            metric: self.metric,
        }
    }

    /// True when edge-link created it.
    pub fn is_ours(&self) -> bool {
        self.protocol == OWNER_PROTO
    }

    /// True for routes the kernel derives itself (connected subnets, link-local).
    pub fn is_kernel(&self) -> bool {
        self.protocol == PROTO_KERNEL
    }

    /// True when `observed` carries out what this desired route asks for: same key,
    /// gateway, owner tag, and interface when one is asked for.
    pub fn satisfied_by(&self, observed: &Route) -> bool {
        self.key() == observed.key()
            && self.gateway == observed.gateway
            && self.protocol == observed.protocol
            && (self.dev.is_none() || self.dev == observed.dev)
    }
}

/// Renders a route in `ip route` syntax (without the verb).
impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dst.prefix_len() == 0 {
            f.write_str("default")?;
        } else {
            write!(f, "{}", self.dst)?;
        }
        if let Some(gw) = self.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(dev) = &self.dev {
            write!(f, " dev {dev}")?;
        }
        if self.table != TABLE_MAIN {
            write!(f, " table {}", self.table)?;
        }
        let default_metric = if self.dst.addr().is_ipv4() {
            0
        } else {
            IPV6_DEFAULT_METRIC
        };
        if self.metric != default_metric {
            write!(f, " metric {}", self.metric)?;
        }
        write!(f, " proto {}", proto_name(self.protocol))
    }
}

/// The `ip` name of a route protocol number.
pub fn proto_name(p: u8) -> String {
    match p {
        2 => "kernel".into(),
        3 => "boot".into(),
        4 => "static".into(),
        16 => "dhcp".into(),
        9 => "ra".into(),
        other => other.to_string(),
    }
}

impl Desired {
    /// Builds the desired state from a validated `[link]` section.
    pub fn from_config(cfg: &edge_config::link::Link) -> Desired {
        let port_opts = |name: &str| cfg.ports.iter().find(|p| p.name.as_str() == name);
        let bridges = cfg
            .bridges
            .iter()
            .map(|b| BridgeSpec {
                name: b.name.to_string(),
                ports: b
                    .ports
                    .iter()
                    .map(|p| {
                        let o = port_opts(p.as_str());
                        PortSpec {
                            name: p.to_string(),
                            mtu: o.and_then(|o| o.mtu).or(b.mtu),
                            hairpin: o.and_then(|o| o.hairpin),
                            learning: o.and_then(|o| o.learning),
                            cost: o.and_then(|o| o.cost),
                            priority: o.and_then(|o| o.priority),
                        }
                    })
                    .collect(),
                addresses: b.addresses.clone(),
                mtu: b.mtu,
                stp: b.stp,
                forward_delay_cs: b.forward_delay.saturating_mul(100),
                multicast_snooping: b.multicast_snooping,
                vlan_filtering: b.vlan_filtering,
            })
            .collect();
        let routes = cfg
            .routes
            .iter()
            .map(|r| Route {
                table: r.table.unwrap_or(TABLE_MAIN),
                dst: r.to.trunc(),
                metric: r.metric.unwrap_or(if r.to.addr().is_ipv4() {
                    0
                } else {
                    IPV6_DEFAULT_METRIC
                }),
                gateway: r.via,
                dev: r.dev.as_ref().map(|d| d.to_string()),
                protocol: OWNER_PROTO,
            })
            .collect();
        let mut sysctls = Vec::new();
        let s = &cfg.sysctl;
        let flag = |b: bool| if b { "1" } else { "0" }.to_owned();
        for (key, value) in [
            (SysctlKey::IpForward, s.ip_forward),
            (SysctlKey::Ipv6Forwarding, s.ipv6_forwarding),
            (SysctlKey::BridgeNfCallIptables, s.bridge_nf_call_iptables),
            (SysctlKey::BridgeNfCallIp6tables, s.bridge_nf_call_ip6tables),
            (SysctlKey::BridgeNfCallArptables, s.bridge_nf_call_arptables),
        ] {
            if let Some(v) = value {
                sysctls.push((key, flag(v)));
            }
        }
        for b in &cfg.bridges {
            if let Some(rp) = b.rp_filter {
                sysctls.push((
                    SysctlKey::RpFilter(b.name.to_string()),
                    rp.sysctl_value().to_string(),
                ));
            }
        }
        Desired {
            bridges,
            routes,
            sysctls,
            protected: cfg.protected.iter().map(|p| p.to_string()).collect(),
            move_check_timeout: cfg.move_check_timeout,
            virtual_addresses: Vec::new(),
        }
    }

    /// Builds the desired state of a whole configuration: `[link]`, and the virtual
    /// addresses of `[ha]` as expected foreign addresses.
    pub fn from_full(link: &edge_config::link::Link, ha: Option<&edge_config::ha::Ha>) -> Desired {
        let mut d = Desired::from_config(link);
        if let Some(ha) = ha {
            d.virtual_addresses = ha
                .vips
                .iter()
                .map(|v| (v.interface.to_string(), v.address))
                .collect();
        }
        d
    }

    /// True when `ip` on `dev` is a virtual address keepalived holds on the master.
    pub fn is_virtual(&self, dev: &str, ip: IpAddr) -> bool {
        self.virtual_addresses
            .iter()
            .any(|(d, n)| d == dev && n.addr() == ip)
    }

    /// The sysctls the observer must read: every desired one, plus the global rp_filter
    /// that caps the per-interface ones.
    pub fn sysctl_keys(&self) -> Vec<SysctlKey> {
        let mut keys: Vec<SysctlKey> = self.sysctls.iter().map(|(k, _)| k.clone()).collect();
        if keys.iter().any(|k| matches!(k, SysctlKey::RpFilter(_))) {
            keys.push(SysctlKey::RpFilterAll);
        }
        keys
    }

    /// The bridge a port belongs to, if any.
    pub fn bridge_of_port(&self, port: &str) -> Option<&BridgeSpec> {
        self.bridges
            .iter()
            .find(|b| b.ports.iter().any(|p| p.name == port))
    }

    /// True when `name` is a managed bridge.
    pub fn is_bridge(&self, name: &str) -> bool {
        self.bridges.iter().any(|b| b.name == name)
    }

    /// True when `name` is protected.
    pub fn is_protected(&self, name: &str) -> bool {
        self.protected.contains(name)
    }

    /// Every interface name the configuration manages (bridges and their ports).
    pub fn managed_interfaces(&self) -> BTreeSet<&str> {
        self.bridges
            .iter()
            .flat_map(|b| {
                std::iter::once(b.name.as_str()).chain(b.ports.iter().map(|p| p.name.as_str()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys_render_like_sysctl8() {
        assert_eq!(SysctlKey::IpForward.to_string(), "net.ipv4.ip_forward");
        assert_eq!(
            SysctlKey::RpFilter("br-api".into()).to_string(),
            "net.ipv4.conf.br-api.rp_filter"
        );
        assert_eq!(
            SysctlKey::RpFilter("eth0.10".into()).to_string(),
            "net.ipv4.conf.eth0/10.rp_filter"
        );
        assert_eq!(
            SysctlKey::RpFilter("eth0.10".into()).path(),
            "net/ipv4/conf/eth0.10/rp_filter"
        );
        assert_eq!(
            SysctlKey::BridgeNfCallIptables.to_string(),
            "net.bridge.bridge-nf-call-iptables"
        );
    }

    #[test]
    fn routes_render_in_ip_syntax() {
        let r = Route {
            table: TABLE_MAIN,
            dst: "0.0.0.0/0".parse().unwrap(),
            metric: 100,
            gateway: Some("192.198.0.1".parse().unwrap()),
            dev: Some("br-api".into()),
            protocol: OWNER_PROTO,
        };
        assert_eq!(
            r.to_string(),
            "default via 192.198.0.1 dev br-api metric 100 proto 237"
        );
        let r6 = Route {
            table: 100,
            dst: "2001:db8::/32".parse().unwrap(),
            metric: IPV6_DEFAULT_METRIC,
            gateway: None,
            dev: Some("br0".into()),
            protocol: 4,
        };
        assert_eq!(
            r6.to_string(),
            "2001:db8::/32 dev br0 table 100 proto static"
        );
    }

    #[test]
    fn link_local_ipv6_is_kernel_managed() {
        let a = |s: &str| Address {
            dev: "br0".into(),
            net: s.parse().unwrap(),
            proto: 0,
        };
        assert!(a("fe80::1/64").is_kernel_managed());
        assert!(!a("2001:db8::1/64").is_kernel_managed());
        assert!(!a("10.0.0.1/24").is_kernel_managed());
    }
}
