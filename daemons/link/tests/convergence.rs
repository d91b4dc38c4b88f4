//! Property: over random observed states, one plan converges.
//! `plan(desired, simulate(observed, plan(desired, observed))) == []`, every plan passes
//! validation, and the protected NIC and unmanaged links come out exactly as they went in.

// The generators below are not `#[test]` functions, so clippy does not see them as tests.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::pure::*;
use edge_link::model::{
    Address, BridgeInfo, Caps, Desired, Link, Observed, PortInfo, Route, SysctlKey, TABLE_MAIN,
};
use edge_link::plan::{plan, validate};
use edge_link::sim::simulate;
use proptest::prelude::*;

const NICS: [&str; 4] = ["enp3s0f0", "enp4s0f0", "enp4s0f1", "enp3s0f1"];
const BRIDGES: [&str; 4] = ["br-api", "br1", "br0", "virbr0"];
const NETS: [&str; 8] = [
    "192.198.0.30/24",
    "192.198.0.31/24",
    "10.17.5.1/24",
    "10.17.3.1/24",
    "10.17.4.1/24",
    "10.17.6.1/24",
    "192.168.1.10/24",
    "2001:db8::1/64",
];
const DSTS: [&str; 4] = ["0.0.0.0/0", "10.50.0.0/16", "10.17.9.0/24", "10.60.0.0/16"];
const GWS: [Option<&str>; 4] = [
    None,
    Some("192.198.0.1"),
    Some("10.17.5.2"),
    Some("192.168.1.1"),
];
const PROTOS: [u8; 4] = [0, OURS, 4, 16];

fn desired_variants() -> Vec<Desired> {
    vec![
        reference_desired(),
        desired_from(
            r#"[link]
protected = ["enp4s0f1"]
[link.sysctl]
ip_forward = true
bridge_nf_call_iptables = false
[[link.bridge]]
name = "br-api"
ports = ["enp3s0f0", "enp3s0f1"]
addresses = ["192.198.0.30/24", "192.198.0.31/24"]
mtu = 9000
stp = true
forward_delay = 4
multicast_snooping = false
vlan_filtering = true
rp_filter = "strict"
[[link.bridge]]
name = "br1"
ports = ["enp4s0f0"]
addresses = ["10.17.5.1/24", "2001:db8::1/64"]
[[link.port]]
name = "enp3s0f1"
mtu = 1500
hairpin = true
learning = false
cost = 7
priority = 3
[[link.route]]
to = "10.50.0.0/16"
via = "10.17.5.2"
[[link.route]]
to = "0.0.0.0/0"
via = "192.198.0.1"
dev = "br-api"
metric = 100
[[link.route]]
to = "10.60.0.0/16"
dev = "br1"
"#,
        ),
    ]
}

fn arb_link(name: &'static str, bridge_bias: bool) -> impl Strategy<Value = Option<Link>> {
    (
        prop::bool::weighted(if bridge_bias { 0.6 } else { 0.85 }),
        prop::bool::weighted(if bridge_bias { 0.9 } else { 0.05 }),
        prop::sample::select(vec![1400u32, 1500, 9000]),
        any::<bool>(),
        (
            any::<bool>(),
            prop::sample::select(vec![0u32, 400, 1500]),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            any::<bool>(),
            any::<bool>(),
            prop::sample::select(vec![2u32, 7, 100]),
            prop::sample::select(vec![3u16, 32]),
        ),
        1u32..1000,
    )
        .prop_map(move |(present, is_bridge, mtu, up, b, p, index)| {
            present.then(|| Link {
                name: name.into(),
                index,
                kind: Some(if is_bridge { "bridge" } else { "veth" }.into()),
                controller: None,
                mtu,
                up,
                lower_up: up,
                bridge: is_bridge.then_some(BridgeInfo {
                    stp: b.0,
                    forward_delay_cs: b.1,
                    multicast_snooping: b.2,
                    vlan_filtering: b.3,
                }),
                port: Some(PortInfo {
                    hairpin: p.0,
                    learning: p.1,
                    cost: p.2,
                    priority: p.3,
                }),
            })
        })
}

prop_compose! {
    fn arb_observed()(
        nics in (arb_link(NICS[0], false), arb_link(NICS[1], false), arb_link(NICS[2], false), arb_link(NICS[3], false)),
        bridges in (arb_link(BRIDGES[0], true), arb_link(BRIDGES[1], true), arb_link(BRIDGES[2], true), arb_link(BRIDGES[3], true)),
        controllers in prop::collection::vec(0usize..6, 4),
        addrs in prop::collection::vec((0usize..8, 0usize..NETS.len(), 0usize..PROTOS.len()), 0..8),
        routes in prop::collection::vec((0usize..DSTS.len(), 0usize..GWS.len(), 0usize..8, any::<bool>(), 0usize..PROTOS.len()), 0..6),
        sysctls in prop::collection::vec((0usize..7, prop::sample::select(vec!["0", "1", "2"]), any::<bool>()), 0..7),
        no_vlan in any::<bool>(),
    ) -> Observed {
        let mut o = Observed::default();
        let all = [nics.0, nics.1, nics.2, nics.3, bridges.0, bridges.1, bridges.2, bridges.3];
        for l in all.into_iter().flatten() {
            o.links.insert(l.name.clone(), l);
        }
        let bridge_names: Vec<String> = o.links.values().filter(|l| l.is_bridge()).map(|l| l.name.clone()).collect();
        for (i, nic) in NICS.iter().enumerate() {
            let Some(l) = o.links.get_mut(*nic) else { continue };
            if l.is_bridge() {
                l.port = None;
                continue;
            }
            match bridge_names.get(controllers[i]) {
                Some(b) => l.controller = Some(b.clone()),
                None => l.port = None,
            }
        }
        for l in o.links.values_mut() {
            if l.controller.is_none() {
                l.port = None;
            }
        }
        let names: Vec<&str> = NICS.iter().chain(BRIDGES.iter()).copied().collect();
        // One address per (interface, address/prefix), as in the kernel.
        let mut by_addr: BTreeMap<(usize, usize), Address> = BTreeMap::new();
        for (dev, net, proto) in addrs {
            if o.links.contains_key(names[dev]) {
                by_addr.insert((dev, net), Address { dev: names[dev].into(), net: NETS[net].parse().unwrap(), proto: PROTOS[proto] });
            }
        }
        o.addresses = by_addr.into_values().collect();
        // The kernel holds at most one IPv4 route per key, and only gatewayed routes whose
        // gateway is on a connected subnet of their interface.
        let mut by_key: BTreeMap<(String, u32), Route> = BTreeMap::new();
        for (dst, gw, dev, metric100, proto) in routes {
            if !o.links.contains_key(names[dev]) {
                continue;
            }
            let gateway = GWS[gw].map(|g| g.parse().unwrap());
            if let Some(g) = gateway
                && !o.addresses.iter().any(|a| a.dev == names[dev] && a.net.trunc().contains(&g))
            {
                continue;
            }
            let r = Route {
                table: TABLE_MAIN,
                dst: DSTS[dst].parse().unwrap(),
                metric: if metric100 { 100 } else { 0 },
                gateway,
                dev: Some(names[dev].into()),
                protocol: PROTOS[proto],
            };
            by_key.insert((r.dst.to_string(), r.metric), r);
        }
        o.routes = by_key.into_values().collect();
        let keys = [
            SysctlKey::IpForward,
            SysctlKey::Ipv6Forwarding,
            SysctlKey::RpFilterAll,
            SysctlKey::BridgeNfCallIptables,
            SysctlKey::BridgeNfCallIp6tables,
            SysctlKey::RpFilter("br-api".into()),
            SysctlKey::RpFilter("br1".into()),
        ];
        for (k, v, present) in sysctls {
            let key = keys[k].clone();
            if present && key.interface().is_none_or(|i| o.links.contains_key(i)) {
                o.sysctls.insert(key, v.to_owned());
            }
        }
        for l in o.links.keys().cloned().collect::<Vec<_>>() {
            let k = SysctlKey::RpFilter(l.clone());
            if keys.contains(&k) {
                o.sysctls.entry(k).or_insert_with(|| "0".into());
            }
        }
        o.caps = Caps { no_vlan_filtering: no_vlan };
        o
    }
}

/// The link, and the addresses and routes on it we do not own.
fn foreign_state(o: &Observed, name: &str) -> (Option<Link>, Vec<Address>, Vec<Route>) {
    (
        o.links.get(name).cloned(),
        o.addresses
            .iter()
            .filter(|a| a.dev == name && !a.is_ours())
            .cloned()
            .collect(),
        o.routes
            .iter()
            .filter(|r| r.dev.as_deref() == Some(name) && !r.is_ours())
            .cloned()
            .collect(),
    )
}

/// Everything on the link, ours or not.
fn whole_state(o: &Observed, name: &str) -> (Option<Link>, Vec<Address>, Vec<Route>) {
    (
        o.links.get(name).cloned(),
        o.addresses
            .iter()
            .filter(|a| a.dev == name)
            .cloned()
            .collect(),
        o.routes
            .iter()
            .filter(|r| r.dev.as_deref() == Some(name))
            .cloned()
            .collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn one_plan_converges(which in 0usize..2, o in arb_observed()) {
        let d = &desired_variants()[which];
        let p = plan(d, &o);
        let problems = validate(&p.ops, d, &o);
        prop_assert!(problems.is_empty(), "invalid plan {problems:?}\n{p}");
        let after = simulate(&o, &p.ops);
        let again = plan(d, &after);
        prop_assert!(again.ops.is_empty(), "not converged after one plan:\nfirst:\n{p}\nsecond:\n{again}");
        prop_assert_eq!(whole_state(&o, "enp4s0f1"), whole_state(&after, "enp4s0f1"), "protected NIC changed:\n{}", p);
        let mut virbr0 = foreign_state(&after, "virbr0");
        // Foreign routes whose gateway only our (stale, removed) address made reachable go
        // with it, as in the kernel; everything else of a foreign bridge stays.
        let before = foreign_state(&o, "virbr0");
        virbr0.2 = before.2.iter().filter(|r| virbr0.2.contains(r) || r.gateway.is_some()).cloned().collect();
        prop_assert_eq!((before.0, before.1), (virbr0.0, virbr0.1), "foreign bridge changed:\n{}", p);
    }
}
