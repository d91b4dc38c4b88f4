//! Pure: the operations a plan is made of. Each names the `ip`/`sysctl` command that does the
//! same thing (its `Display` prints it, so `edgectl link plan` reads like a shell script), and
//! knows its own inverse, which the apply layer journals to roll a failed run back.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use crate::model::{OWNER_PROTO, Route, SysctlKey};

/// Bridge settings changed by one operation (`None`: left alone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BridgeOptions {
    /// STP on/off.
    pub stp: Option<bool>,
    /// Forward delay in centiseconds.
    pub forward_delay_cs: Option<u32>,
    /// IGMP/MLD snooping.
    pub multicast_snooping: Option<bool>,
}

impl BridgeOptions {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == BridgeOptions::default()
    }
}

/// Bridge-port settings changed by one operation (`None`: left alone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PortOptions {
    /// Hairpin mode.
    pub hairpin: Option<bool>,
    /// MAC learning.
    pub learning: Option<bool>,
    /// STP path cost.
    pub cost: Option<u32>,
    /// STP port priority.
    pub priority: Option<u16>,
}

impl PortOptions {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == PortOptions::default()
    }
}

/// A port's state before it was enslaved, kept to undo the enslaving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortWas {
    /// Previous controller.
    pub controller: Option<String>,
    /// Previous MTU.
    pub mtu: u32,
    /// Previously up.
    pub up: bool,
}

/// The bridge [`Op::CreateBridge`] creates. A struct of its own so that the simulation, the
/// apply layer and the `ip link add` rendering each take it whole. Serialized flat, beside
/// the `op` tag, like the other operations' fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewBridge {
    /// Bridge name.
    pub name: String,
    /// MTU (kernel default when `None`).
    pub mtu: Option<u32>,
    /// STP on.
    pub stp: bool,
    /// Forward delay in centiseconds.
    pub forward_delay_cs: u32,
    /// IGMP/MLD snooping.
    pub multicast_snooping: bool,
}

/// One change to the kernel's network state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Creates a bridge, up. Equivalent to:
    /// `ip link add br-api mtu 1500 up type bridge stp_state 0 forward_delay 0 mcast_snooping 1`.
    CreateBridge(NewBridge),
    /// Changes bridge settings. Equivalent to: `ip link set br-api type bridge stp_state 0`.
    SetBridgeOptions {
        /// Bridge name.
        name: String,
        /// New values.
        set: BridgeOptions,
        /// Previous values of the same fields.
        was: BridgeOptions,
    },
    /// Turns VLAN filtering on or off; the kernel may lack it (`EOPNOTSUPP`). Equivalent to:
    /// `ip link set br-api type bridge vlan_filtering 1`.
    SetVlanFiltering {
        /// Bridge name.
        name: String,
        /// New value.
        on: bool,
    },
    /// Enslaves a NIC to its bridge with its MTU, and sets it up, in one message.
    /// Equivalent to: `ip link set enp3s0f0 mtu 1500 master br-api up`.
    SetController {
        /// The port.
        port: String,
        /// The bridge.
        bridge: String,
        /// MTU to set with it, when it differs.
        mtu: Option<u32>,
        /// What to restore on rollback.
        was: PortWas,
    },
    /// Releases a port from its bridge (rollback only). Equivalent to:
    /// `ip link set enp3s0f0 nomaster`.
    ReleasePort {
        /// The port.
        port: String,
    },
    /// Sets a link's MTU. Equivalent to: `ip link set br-api mtu 9000`.
    SetMtu {
        /// Interface.
        link: String,
        /// New MTU.
        mtu: u32,
        /// Previous MTU.
        was: u32,
    },
    /// Sets a link up. Equivalent to: `ip link set br-api up`.
    SetUp {
        /// Interface.
        link: String,
    },
    /// Sets a link down (rollback only). Equivalent to: `ip link set br-api down`.
    SetDown {
        /// Interface.
        link: String,
    },
    /// Changes bridge-port settings. Equivalent to:
    /// `ip link set enp3s0f0 type bridge_slave hairpin off learning on`.
    SetPortOptions {
        /// The port.
        port: String,
        /// New values.
        set: PortOptions,
        /// Previous values of the same fields.
        was: PortOptions,
    },
    /// Adds an address, tagged with its `IFA_PROTO`. Equivalent to:
    /// `ip address add 192.198.0.30/24 dev br-api proto 237`.
    AddAddress {
        /// Interface.
        dev: String,
        /// Address with prefix length.
        net: IpNet,
        /// `IFA_PROTO` tag ([`OWNER_PROTO`] unless restoring a foreign address).
        proto: u8,
        /// Skip duplicate address detection (`IFA_F_NODAD`, IPv6 only): set when the
        /// bridge takes over an address the host already holds on the port being moved.
        /// With DAD the kernel keeps the new copy tentative (unusable, not even as the
        /// source of the gateway check's neighbour solicitation) for one to two seconds.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        nodad: bool,
    },
    /// Removes an address. Equivalent to: `ip address del 192.198.0.30/24 dev enp3s0f0`.
    DelAddress {
        /// Interface.
        dev: String,
        /// Address with prefix length.
        net: IpNet,
        /// Its `IFA_PROTO`, restored on rollback.
        proto: u8,
    },
    /// Adds a route (fails with `EEXIST`, taken as success, if one holds its key).
    /// Equivalent to: `ip route add default via 192.198.0.1 dev br-api metric 100 proto 237`.
    AddRoute {
        /// The route.
        route: Route,
    },
    /// Replaces the route holding the same key (moves it to another interface, changes its
    /// gateway, or takes ownership of it). Equivalent to: `ip route replace default via
    /// 192.198.0.1 dev br-api metric 100 proto 237`.
    ReplaceRoute {
        /// The new route.
        route: Route,
        /// The route it replaces.
        was: Route,
    },
    /// Removes a route. Equivalent to: `ip route del 10.0.0.0/8 via 10.17.5.2 proto 237`.
    DelRoute {
        /// The route.
        route: Route,
    },
    /// Checks that the gateway answers ARP (IPv6: neighbour discovery) on the interface
    /// within `timeout`; on failure the whole run is rolled back. Equivalent to:
    /// `arping -I br-api -c 1 -w 5 192.198.0.1`.
    CheckGateway {
        /// Interface to ask on.
        dev: String,
        /// The gateway.
        gateway: IpAddr,
        /// How long to wait for the answer.
        timeout: Duration,
    },
    /// Sets a sysctl. Equivalent to: `sysctl -w net.ipv4.ip_forward=1`.
    SetSysctl {
        /// Key.
        key: SysctlKey,
        /// New value.
        value: String,
        /// Previous value, when the key existed.
        was: Option<String>,
    },
    /// Deletes a link (rollback of [`Op::CreateBridge`] only). Equivalent to:
    /// `ip link del br-api`.
    DeleteLink {
        /// Interface.
        name: String,
    },
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

fn flag(b: bool) -> u8 {
    u8::from(b)
}

/// `ip link add …`: the command that creates the bridge, up.
impl fmt::Display for NewBridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ip link add {}", self.name)?;
        if let Some(m) = self.mtu {
            write!(f, " mtu {m}")?;
        }
        write!(
            f,
            " up type bridge stp_state {} forward_delay {} mcast_snooping {}",
            flag(self.stp),
            self.forward_delay_cs,
            flag(self.multicast_snooping)
        )
    }
}

/// The `ip link set … type bridge` arguments of the fields that are set, each with a
/// leading space.
impl fmt::Display for BridgeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = self.stp {
            write!(f, " stp_state {}", flag(s))?;
        }
        if let Some(d) = self.forward_delay_cs {
            write!(f, " forward_delay {d}")?;
        }
        if let Some(m) = self.multicast_snooping {
            write!(f, " mcast_snooping {}", flag(m))?;
        }
        Ok(())
    }
}

/// The `ip link set … type bridge_slave` arguments of the fields that are set, each with a
/// leading space.
impl fmt::Display for PortOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(h) = self.hairpin {
            write!(f, " hairpin {}", on_off(h))?;
        }
        if let Some(l) = self.learning {
            write!(f, " learning {}", on_off(l))?;
        }
        if let Some(c) = self.cost {
            write!(f, " cost {c}")?;
        }
        if let Some(p) = self.priority {
            write!(f, " priority {p}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::CreateBridge(b) => b.fmt(f),
            Op::SetBridgeOptions { name, set, .. } => {
                write!(f, "ip link set {name} type bridge{set}")
            }
            Op::SetVlanFiltering { name, on } => {
                write!(
                    f,
                    "ip link set {name} type bridge vlan_filtering {}",
                    flag(*on)
                )
            }
            Op::SetController {
                port, bridge, mtu, ..
            } => {
                write!(f, "ip link set {port}")?;
                if let Some(m) = mtu {
                    write!(f, " mtu {m}")?;
                }
                write!(f, " master {bridge} up")
            }
            Op::ReleasePort { port } => write!(f, "ip link set {port} nomaster"),
            Op::SetMtu { link, mtu, .. } => write!(f, "ip link set {link} mtu {mtu}"),
            Op::SetUp { link } => write!(f, "ip link set {link} up"),
            Op::SetDown { link } => write!(f, "ip link set {link} down"),
            Op::SetPortOptions { port, set, .. } => {
                write!(f, "ip link set {port} type bridge_slave{set}")
            }
            Op::AddAddress {
                dev,
                net,
                proto,
                nodad,
            } => {
                write!(f, "ip address add {net} dev {dev}")?;
                if *proto != 0 {
                    write!(f, " proto {proto}")?;
                }
                if *nodad {
                    write!(f, " nodad")?;
                }
                Ok(())
            }
            Op::DelAddress { dev, net, .. } => write!(f, "ip address del {net} dev {dev}"),
            Op::AddRoute { route } => write!(f, "ip route add {route}"),
            Op::ReplaceRoute { route, .. } => write!(f, "ip route replace {route}"),
            Op::DelRoute { route } => write!(f, "ip route del {route}"),
            Op::CheckGateway {
                dev,
                gateway,
                timeout,
            } => {
                let secs = timeout.as_secs_f64();
                if gateway.is_ipv4() {
                    write!(f, "arping -I {dev} -c 1 -w {secs} {gateway}")?;
                } else {
                    write!(f, "ndisc6 -w {} {gateway} {dev}", timeout.as_millis())?;
                }
                f.write_str("    # the gateway must answer, or the whole run is rolled back")
            }
            Op::SetSysctl { key, value, .. } => write!(f, "sysctl -w {key}={value}"),
            Op::DeleteLink { name } => write!(f, "ip link del {name}"),
        }
    }
}

impl Op {
    /// A short label of what the operation repairs, for logs and the
    /// `edge_link_drift_repairs_total{kind}` metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::CreateBridge(_) | Op::DeleteLink { .. } => "bridge",
            Op::SetBridgeOptions { .. } | Op::SetVlanFiltering { .. } => "bridge_options",
            Op::SetController { .. } | Op::ReleasePort { .. } => "port",
            Op::SetMtu { .. } => "mtu",
            Op::SetUp { .. } | Op::SetDown { .. } => "link_state",
            Op::SetPortOptions { .. } => "port_options",
            Op::AddAddress { .. } | Op::DelAddress { .. } => "address",
            Op::AddRoute { .. } | Op::ReplaceRoute { .. } | Op::DelRoute { .. } => "route",
            Op::CheckGateway { .. } => "gateway_check",
            Op::SetSysctl { .. } => "sysctl",
        }
    }

    /// Every interface the operation names.
    pub fn interfaces(&self) -> Vec<&str> {
        match self {
            Op::CreateBridge(NewBridge { name, .. })
            | Op::SetBridgeOptions { name, .. }
            | Op::SetVlanFiltering { name, .. }
            | Op::DeleteLink { name } => vec![name],
            Op::SetController {
                port, bridge, was, ..
            } => {
                let mut v = vec![port.as_str(), bridge.as_str()];
                v.extend(was.controller.as_deref());
                v
            }
            Op::ReleasePort { port } | Op::SetPortOptions { port, .. } => vec![port],
            Op::SetMtu { link, .. } | Op::SetUp { link } | Op::SetDown { link } => vec![link],
            Op::AddAddress { dev, .. }
            | Op::DelAddress { dev, .. }
            | Op::CheckGateway { dev, .. } => vec![dev],
            Op::AddRoute { route } | Op::DelRoute { route } => {
                route.dev.as_deref().into_iter().collect()
            }
            Op::ReplaceRoute { route, was } => route
                .dev
                .as_deref()
                .into_iter()
                .chain(was.dev.as_deref())
                .collect(),
            Op::SetSysctl { key, .. } => key.interface().into_iter().collect(),
        }
    }

    /// The operations that undo this one, in the order to run them; empty when there is
    /// nothing to undo (a check) or it cannot be undone (a deletion, which forward plans
    /// never contain).
    pub fn inverse(&self) -> Vec<Op> {
        match self {
            Op::CreateBridge(b) => vec![Op::DeleteLink {
                name: b.name.clone(),
            }],
            Op::SetBridgeOptions { name, set, was } => vec![Op::SetBridgeOptions {
                name: name.clone(),
                set: *was,
                was: *set,
            }],
            Op::SetVlanFiltering { name, on } => vec![Op::SetVlanFiltering {
                name: name.clone(),
                on: !on,
            }],
            Op::SetController { port, mtu, was, .. } => {
                let mut v = Vec::new();
                match &was.controller {
                    Some(c) => v.push(Op::SetController {
                        port: port.clone(),
                        bridge: c.clone(),
                        mtu: None,
                        was: was.clone(),
                    }),
                    None => v.push(Op::ReleasePort { port: port.clone() }),
                }
                if let Some(m) = mtu {
                    v.push(Op::SetMtu {
                        link: port.clone(),
                        mtu: was.mtu,
                        was: *m,
                    });
                }
                if !was.up {
                    v.push(Op::SetDown { link: port.clone() });
                }
                v
            }
            Op::SetMtu { link, mtu, was } => vec![Op::SetMtu {
                link: link.clone(),
                mtu: *was,
                was: *mtu,
            }],
            Op::SetUp { link } => vec![Op::SetDown { link: link.clone() }],
            Op::SetDown { link } => vec![Op::SetUp { link: link.clone() }],
            Op::SetPortOptions { port, set, was } => vec![Op::SetPortOptions {
                port: port.clone(),
                set: *was,
                was: *set,
            }],
            Op::AddAddress {
                dev, net, proto, ..
            } => vec![Op::DelAddress {
                dev: dev.clone(),
                net: *net,
                proto: *proto,
            }],
            Op::DelAddress { dev, net, proto } => vec![Op::AddAddress {
                dev: dev.clone(),
                net: *net,
                proto: *proto,
                nodad: false,
            }],
            Op::AddRoute { route } => vec![Op::DelRoute {
                route: route.clone(),
            }],
            Op::ReplaceRoute { route, was } => vec![Op::ReplaceRoute {
                route: was.clone(),
                was: route.clone(),
            }],
            Op::DelRoute { route } => vec![Op::AddRoute {
                route: route.clone(),
            }],
            Op::SetSysctl { key, value, was } => match was {
                Some(w) => vec![Op::SetSysctl {
                    key: key.clone(),
                    value: w.clone(),
                    was: Some(value.clone()),
                }],
                None => Vec::new(),
            },
            Op::ReleasePort { .. } | Op::CheckGateway { .. } | Op::DeleteLink { .. } => Vec::new(),
        }
    }

    /// True for operations only a rollback may use.
    pub fn is_rollback_only(&self) -> bool {
        matches!(
            self,
            Op::ReleasePort { .. } | Op::SetDown { .. } | Op::DeleteLink { .. }
        )
    }

    /// True when the address or route the operation creates is tagged as ours.
    pub fn creates_owned(&self) -> bool {
        match self {
            Op::AddAddress { proto, .. } => *proto == OWNER_PROTO,
            Op::AddRoute { route } | Op::ReplaceRoute { route, .. } => route.is_ours(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TABLE_MAIN;

    fn default_route(dev: &str, proto: u8) -> Route {
        Route {
            table: TABLE_MAIN,
            dst: "0.0.0.0/0".parse().unwrap(),
            metric: 100,
            gateway: Some("192.198.0.1".parse().unwrap()),
            dev: Some(dev.into()),
            protocol: proto,
        }
    }

    /// Enslaves `enp3s0f0` (down, MTU 9000, no controller before) to `br-api` at MTU 1500.
    fn enslave_down_port() -> Op {
        Op::SetController {
            port: "enp3s0f0".into(),
            bridge: "br-api".into(),
            mtu: Some(1500),
            was: PortWas {
                controller: None,
                mtu: 9000,
                up: false,
            },
        }
    }

    #[test]
    fn every_op_prints_its_ip_equivalent() {
        let cases: Vec<(Op, &str)> = vec![
            (
                Op::CreateBridge(NewBridge {
                    name: "br-api".into(),
                    mtu: Some(1500),
                    stp: false,
                    forward_delay_cs: 0,
                    multicast_snooping: true,
                }),
                "ip link add br-api mtu 1500 up type bridge stp_state 0 forward_delay 0 mcast_snooping 1",
            ),
            (
                Op::SetBridgeOptions {
                    name: "br0".into(),
                    set: BridgeOptions {
                        stp: Some(true),
                        forward_delay_cs: Some(1500),
                        multicast_snooping: None,
                    },
                    was: BridgeOptions::default(),
                },
                "ip link set br0 type bridge stp_state 1 forward_delay 1500",
            ),
            (
                Op::SetVlanFiltering {
                    name: "br0".into(),
                    on: true,
                },
                "ip link set br0 type bridge vlan_filtering 1",
            ),
            (
                enslave_down_port(),
                "ip link set enp3s0f0 mtu 1500 master br-api up",
            ),
            (
                Op::SetPortOptions {
                    port: "enp3s0f0".into(),
                    set: PortOptions {
                        hairpin: Some(false),
                        learning: Some(true),
                        cost: None,
                        priority: Some(8),
                    },
                    was: PortOptions::default(),
                },
                "ip link set enp3s0f0 type bridge_slave hairpin off learning on priority 8",
            ),
            (
                Op::AddAddress {
                    dev: "br-api".into(),
                    net: "192.198.0.30/24".parse().unwrap(),
                    proto: OWNER_PROTO,
                    nodad: false,
                },
                "ip address add 192.198.0.30/24 dev br-api proto 237",
            ),
            (
                Op::DelAddress {
                    dev: "enp3s0f0".into(),
                    net: "192.198.0.30/24".parse().unwrap(),
                    proto: 0,
                },
                "ip address del 192.198.0.30/24 dev enp3s0f0",
            ),
            (
                Op::AddRoute {
                    route: default_route("br-api", OWNER_PROTO),
                },
                "ip route add default via 192.198.0.1 dev br-api metric 100 proto 237",
            ),
            (
                Op::SetSysctl {
                    key: SysctlKey::RpFilter("br-api".into()),
                    value: "2".into(),
                    was: Some("0".into()),
                },
                "sysctl -w net.ipv4.conf.br-api.rp_filter=2",
            ),
            (
                Op::CheckGateway {
                    dev: "br-api".into(),
                    gateway: "192.198.0.1".parse().unwrap(),
                    timeout: Duration::from_secs(5),
                },
                "arping -I br-api -c 1 -w 5 192.198.0.1    # the gateway must answer, or the whole run is rolled back",
            ),
        ];
        for (op, want) in cases {
            assert_eq!(op.to_string(), want);
        }
    }

    #[test]
    fn create_bridge_serializes_flat_beside_its_tag() {
        let op = Op::CreateBridge(NewBridge {
            name: "br-api".into(),
            mtu: None,
            stp: false,
            forward_delay_cs: 0,
            multicast_snooping: true,
        });
        assert_eq!(
            serde_json::to_value(&op).unwrap(),
            serde_json::json!({
                "op": "create_bridge",
                "name": "br-api",
                "mtu": null,
                "stp": false,
                "forward_delay_cs": 0,
                "multicast_snooping": true,
            })
        );
    }

    #[test]
    fn inverses_restore_previous_values() {
        let op = enslave_down_port();
        assert_eq!(
            op.inverse(),
            vec![
                Op::ReleasePort {
                    port: "enp3s0f0".into()
                },
                Op::SetMtu {
                    link: "enp3s0f0".into(),
                    mtu: 9000,
                    was: 1500
                },
                Op::SetDown {
                    link: "enp3s0f0".into()
                },
            ]
        );
        let moved = Op::ReplaceRoute {
            route: default_route("br-api", OWNER_PROTO),
            was: default_route("enp3s0f0", 4),
        };
        assert_eq!(
            moved.inverse(),
            vec![Op::ReplaceRoute {
                route: default_route("enp3s0f0", 4),
                was: default_route("br-api", OWNER_PROTO),
            }]
        );
        let del = Op::DelAddress {
            dev: "enp3s0f0".into(),
            net: "192.198.0.30/24".parse().unwrap(),
            proto: 4,
        };
        assert_eq!(
            del.inverse(),
            vec![Op::AddAddress {
                dev: "enp3s0f0".into(),
                net: "192.198.0.30/24".parse().unwrap(),
                proto: 4,
                nodad: false,
            }]
        );
        let new_key = Op::SetSysctl {
            key: SysctlKey::RpFilter("br0".into()),
            value: "2".into(),
            was: None,
        };
        assert!(new_key.inverse().is_empty());
    }
}
