//! Pure: a model of how the kernel carries out each [`Op`], including the side effects the
//! planner must plan around (deleting an address silently drops the routes whose gateway it
//! made reachable; deleting a bridge releases its ports and takes its addresses and routes
//! with it). The planner projects its own operations through it, and the convergence
//! property test checks `plan(desired, simulate(observed, plan(desired, observed))) == []`.

use ipnet::IpNet;

use crate::model::{Address, BridgeInfo, DEFAULT_MTU, Link, Observed, PortInfo, Route};
use crate::op::{BridgeOptions, NewBridge, Op, PortOptions};

/// Returns the state after `ops`, as the kernel would leave it.
pub fn simulate(observed: &Observed, ops: &[Op]) -> Observed {
    let mut s = observed.clone();
    for op in ops {
        apply(&mut s, op);
    }
    s
}

/// Applies one operation to `s`. Operations the kernel would refuse (a missing link, an
/// existing key) leave `s` unchanged, as the kernel does.
pub fn apply(s: &mut Observed, op: &Op) {
    match op {
        Op::CreateBridge(b) => create_bridge(s, b),
        Op::SetBridgeOptions { name, set, .. } => set_bridge_options(s, name, set),
        Op::SetVlanFiltering { name, on } => set_vlan_filtering(s, name, *on),
        Op::SetController {
            port, bridge, mtu, ..
        } => set_controller(s, port, bridge, *mtu),
        Op::ReleasePort { port } => with_link(s, port, |l| {
            l.controller = None;
            l.port = None;
        }),
        Op::SetMtu { link, mtu, .. } => with_link(s, link, |l| l.mtu = *mtu),
        Op::SetUp { link } => with_link(s, link, |l| l.up = true),
        Op::SetDown { link } => with_link(s, link, |l| l.up = false),
        Op::SetPortOptions { port, set, .. } => set_port_options(s, port, set),
        Op::AddAddress {
            dev, net, proto, ..
        } => add_address(s, dev, *net, *proto),
        Op::DelAddress { dev, net, .. } => del_address(s, dev, *net),
        Op::AddRoute { route } => add_route(s, route),
        Op::ReplaceRoute { route, .. } => replace_route(s, route),
        Op::DelRoute { route } => del_route(s, route),
        Op::CheckGateway { .. } => {}
        Op::SetSysctl { key, value, .. } => {
            if key.interface().is_some_and(|i| !s.links.contains_key(i)) {
                return;
            }
            s.sysctls.insert(key.clone(), value.clone());
        }
        Op::DeleteLink { name } => delete_link(s, name),
    }
}

/// Runs `change` on link `name` when it exists.
fn with_link(s: &mut Observed, name: &str, change: impl FnOnce(&mut Link)) {
    if let Some(l) = s.links.get_mut(name) {
        change(l);
    }
}

/// Sets `field` to `value` when an operation gives one.
fn set_if<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

fn create_bridge(s: &mut Observed, b: &NewBridge) {
    if s.links.contains_key(&b.name) {
        return;
    }
    let index = s.links.values().map(|l| l.index).max().unwrap_or(1) + 1;
    s.links.insert(
        b.name.clone(),
        Link {
            name: b.name.clone(),
            index,
            kind: Some("bridge".into()),
            controller: None,
            mtu: b.mtu.unwrap_or(DEFAULT_MTU),
            up: true,
            lower_up: false,
            bridge: Some(BridgeInfo {
                stp: b.stp,
                forward_delay_cs: b.forward_delay_cs,
                multicast_snooping: b.multicast_snooping,
                vlan_filtering: false,
            }),
            port: None,
        },
    );
}

fn set_bridge_options(s: &mut Observed, name: &str, set: &BridgeOptions) {
    if let Some(b) = s.links.get_mut(name).and_then(|l| l.bridge.as_mut()) {
        set_if(&mut b.stp, set.stp);
        set_if(&mut b.forward_delay_cs, set.forward_delay_cs);
        set_if(&mut b.multicast_snooping, set.multicast_snooping);
    }
}

fn set_vlan_filtering(s: &mut Observed, name: &str, on: bool) {
    if s.caps.no_vlan_filtering {
        return;
    }
    if let Some(b) = s.links.get_mut(name).and_then(|l| l.bridge.as_mut()) {
        b.vlan_filtering = on;
    }
}

fn set_controller(s: &mut Observed, port: &str, bridge: &str, mtu: Option<u32>) {
    if !s.links.get(bridge).is_some_and(Link::is_bridge) {
        return;
    }
    with_link(s, port, |l| {
        if let Some(m) = mtu {
            l.mtu = m;
        }
        l.up = true;
        if l.controller.as_deref() != Some(bridge) {
            l.controller = Some(bridge.to_owned());
            l.port = Some(PortInfo::KERNEL_DEFAULT);
        }
    });
}

fn set_port_options(s: &mut Observed, port: &str, set: &PortOptions) {
    if let Some(p) = s.links.get_mut(port).and_then(|l| l.port.as_mut()) {
        set_if(&mut p.hairpin, set.hairpin);
        set_if(&mut p.learning, set.learning);
        set_if(&mut p.cost, set.cost);
        set_if(&mut p.priority, set.priority);
    }
}

fn add_address(s: &mut Observed, dev: &str, net: IpNet, proto: u8) {
    if !s.links.contains_key(dev) || s.addresses.iter().any(|a| a.dev == dev && a.net == net) {
        return;
    }
    s.addresses.insert(Address {
        dev: dev.to_owned(),
        net,
        proto,
    });
}

fn del_address(s: &mut Observed, dev: &str, net: IpNet) {
    let before = s.addresses.len();
    s.addresses.retain(|a| !(a.dev == dev && a.net == net));
    if s.addresses.len() != before {
        drop_unreachable_routes(s);
    }
}

fn add_route(s: &mut Observed, route: &Route) {
    let Some(dev) = &route.dev else {
        return;
    };
    if !s.links.contains_key(dev) || s.routes.iter().any(|r| r.key() == route.key()) {
        return;
    }
    s.routes.insert(route.clone());
}

fn replace_route(s: &mut Observed, route: &Route) {
    if !route.dev.as_ref().is_some_and(|d| s.links.contains_key(d)) {
        return;
    }
    let key = route.key();
    // The kernel replaces the first route holding the key.
    if let Some(first) = s.routes.iter().find(|r| r.key() == key).cloned() {
        s.routes.remove(&first);
    }
    s.routes.insert(route.clone());
}

fn del_route(s: &mut Observed, route: &Route) {
    s.routes.retain(|r| {
        !(r.key() == route.key()
            && r.gateway == route.gateway
            && r.protocol == route.protocol
            && (route.dev.is_none() || r.dev == route.dev))
    });
}

fn delete_link(s: &mut Observed, name: &str) {
    if s.links.remove(name).is_none() {
        return;
    }
    for l in s.links.values_mut() {
        if l.controller.as_deref() == Some(name) {
            l.controller = None;
            l.port = None;
        }
    }
    s.addresses.retain(|a| a.dev != name);
    s.routes.retain(|r| r.dev.as_deref() != Some(name));
    s.sysctls.retain(|k, _| k.interface() != Some(name));
}

/// The kernel flushes a gatewayed route, without an `RTM_DELROUTE`, once no address on its
/// interface holds a subnet containing the gateway any more (measured on the kernels we support).
fn drop_unreachable_routes(s: &mut Observed) {
    let addresses = &s.addresses;
    s.routes.retain(|r: &Route| match (&r.gateway, &r.dev) {
        (Some(gw), Some(dev)) => addresses
            .iter()
            .any(|a| &a.dev == dev && a.net.trunc().contains(gw)),
        _ => true,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OWNER_PROTO, TABLE_MAIN};

    fn veth(name: &str, index: u32) -> Link {
        Link {
            name: name.into(),
            index,
            kind: Some("veth".into()),
            controller: None,
            mtu: 1500,
            up: true,
            lower_up: true,
            bridge: None,
            port: None,
        }
    }

    #[test]
    fn deleting_the_address_drops_the_routes_through_it() {
        let mut s = Observed::default();
        s.links.insert("enp3s0f0".into(), veth("enp3s0f0", 2));
        let addr = Op::AddAddress {
            dev: "enp3s0f0".into(),
            net: "192.198.0.30/24".parse().unwrap(),
            proto: 0,
            nodad: false,
        };
        let route = Route {
            table: TABLE_MAIN,
            dst: "10.17.0.0/16".parse().unwrap(),
            metric: 0,
            gateway: Some("192.198.0.1".parse().unwrap()),
            dev: Some("enp3s0f0".into()),
            protocol: OWNER_PROTO,
        };
        let s = simulate(
            &s,
            &[
                addr.clone(),
                Op::AddRoute {
                    route: route.clone(),
                },
            ],
        );
        assert!(s.routes.contains(&route));
        let s = simulate(&s, &addr.inverse());
        assert!(
            s.routes.is_empty(),
            "route must vanish with its gateway's subnet"
        );
    }

    #[test]
    fn deleting_a_bridge_releases_its_ports() {
        let mut s = Observed::default();
        s.links.insert("enp3s0f0".into(), veth("enp3s0f0", 2));
        let create = Op::CreateBridge(NewBridge {
            name: "br-api".into(),
            mtu: None,
            stp: false,
            forward_delay_cs: 0,
            multicast_snooping: true,
        });
        let enslave = Op::SetController {
            port: "enp3s0f0".into(),
            bridge: "br-api".into(),
            mtu: None,
            was: crate::op::PortWas {
                controller: None,
                mtu: 1500,
                up: true,
            },
        };
        let s = simulate(&s, &[create.clone(), enslave]);
        assert_eq!(s.links["enp3s0f0"].controller.as_deref(), Some("br-api"));
        let s = simulate(&s, &create.inverse());
        assert!(!s.links.contains_key("br-api"));
        assert_eq!(s.links["enp3s0f0"].controller, None);
    }
}
