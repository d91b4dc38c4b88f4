//! The pure planner, table by table: what it emits for the user's host, and what it refuses
//! to touch.

mod common;

use common::pure::*;
use edge_link::model::{Caps, Observed, SysctlKey};
use edge_link::op::Op;
use edge_link::plan::{Note, Waiting, plan, validate};
use edge_link::sim::simulate;

fn lines(ops: &[Op]) -> Vec<String> {
    ops.iter().map(|o| o.to_string()).collect()
}

#[test]
fn the_users_host_converges_with_a_make_before_break_move() {
    let d = reference_desired();
    let o = host_before();
    let p = plan(&d, &o);
    insta::assert_snapshot!("reference_from_networkd", p.to_string());

    let ops = lines(&p.ops);
    let pos = |needle: &str| {
        ops.iter()
            .position(|l| l.starts_with(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in plan:\n{p}"))
    };
    // Make before break: the bridge holds the address before the NIC is enslaved, the route
    // moves, the gateway is checked, and only then does the NIC lose the address.
    let add = pos("ip address add 192.198.0.30/24 dev br-api");
    let enslave = pos("ip link set enp3s0f0 master br-api up");
    let moved = pos("ip route replace default via 192.198.0.1 dev br-api metric 100 proto 237");
    let check = pos("arping -I br-api -c 1 -w 5 192.198.0.1");
    let del = pos("ip address del 192.198.0.30/24 dev enp3s0f0");
    assert!(
        add < enslave && enslave < moved && moved < check && check < del,
        "{p}"
    );
    assert!(p.waiting.is_empty());
    assert!(validate(&p.ops, &d, &o).is_empty());
    // The admin NIC appears nowhere.
    assert!(
        p.ops
            .iter()
            .all(|op| !op.interfaces().contains(&"enp4s0f1")),
        "{p}"
    );

    let after = simulate(&o, &p.ops);
    let again = plan(&d, &after);
    assert!(again.ops.is_empty(), "second plan must be empty:\n{again}");
}

#[test]
fn an_ipv6_address_moves_onto_its_bridge_without_dad() {
    // The reference host with an IPv6 address and default route on the NIC, which the
    // configuration puts on br-api too.
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/edge.toml"),
    )
    .expect("config/edge.toml");
    let link = &text[text.find("[link]").expect("[link]")..text.find("[wg]").expect("[wg]")]
        .replacen(
            "addresses = [\"192.198.0.30/24\"]",
            "addresses = [\"192.198.0.30/24\", \"fd00:198::30/64\", \"fd00:199::1/64\"]",
            1,
        )
        .replacen(
            "[[link.route]]",
            "[[link.route]]\nto = \"::/0\"\nvia = \"fd00:198::1\"\ndev = \"br-api\"\nmetric = 100\n\n[[link.route]]",
            1,
        );
    let d = desired_from(link);
    let mut o = host_before();
    o.addresses.insert(addr("enp3s0f0", "fd00:198::30/64", 0));
    o.addresses.insert(addr("enp3s0f0", "fe80::1/64", 0));
    o.routes
        .insert(route("::/0", Some("fd00:198::1"), "enp3s0f0", 100, 4));
    let p = plan(&d, &o);
    let ops = lines(&p.ops);
    let pos = |needle: &str| {
        ops.iter()
            .position(|l| l == needle || l.starts_with(&format!("{needle} ")))
            .unwrap_or_else(|| panic!("no `{needle}` in plan:\n{p}"))
    };
    // The host already holds it on the NIC: the bridge's copy skips DAD, which would keep
    // it unusable during the move. A new IPv6 address and an IPv4 one keep DAD.
    let add = pos("ip address add fd00:198::30/64 dev br-api proto 237 nodad");
    pos("ip address add fd00:199::1/64 dev br-api proto 237");
    assert!(
        !ops.iter()
            .any(|l| l.contains("fd00:199::1/64") && l.contains("nodad")),
        "{p}"
    );
    assert!(
        !ops.iter()
            .any(|l| l.contains("192.198.0.30/24") && l.contains("nodad")),
        "{p}"
    );
    let enslave = pos("ip link set enp3s0f0 master br-api up");
    let moved = pos("ip route replace default via fd00:198::1 dev br-api metric 100 proto 237");
    let check = pos("ndisc6 -w 5000 fd00:198::1 br-api");
    let del = pos("ip address del fd00:198::30/64 dev enp3s0f0");
    assert!(
        add < enslave && enslave < moved && moved < check && check < del,
        "{p}"
    );
    // The NIC's link-local address is the kernel's: it stays.
    assert!(!ops.iter().any(|l| l.contains("fe80::1")), "{p}");
    assert!(validate(&p.ops, &d, &o).is_empty());
    let again = plan(&d, &simulate(&o, &p.ops));
    assert!(again.ops.is_empty(), "second plan must be empty:\n{again}");
}

#[test]
fn a_converged_host_plans_nothing() {
    let d = reference_desired();
    let o = host_before();
    let after = simulate(&o, &plan(&d, &o).ops);
    let p = plan(&d, &after);
    assert_eq!(p.ops, vec![]);
    assert_eq!(
        p.to_string().lines().last(),
        Some("# converged: nothing to do")
    );
}

#[test]
fn a_missing_nic_is_waited_for_not_an_error() {
    let d = reference_desired();
    let mut o = host_before();
    o.links.remove("enp4s0f0");
    let p = plan(&d, &o);
    assert_eq!(
        p.waiting,
        vec![Waiting::Port {
            port: "enp4s0f0".into(),
            bridge: "br1".into()
        }]
    );
    assert!(!p.has_errors());
    // br1 is still created and addressed, so the NIC only needs enslaving when it appears.
    assert!(lines(&p.ops).contains(&"ip address add 10.17.5.1/24 dev br1 proto 237".to_owned()));
    let mut later = simulate(&o, &p.ops);
    later.links.insert("enp4s0f0".into(), nic("enp4s0f0", 9));
    let p2 = plan(&d, &later);
    assert_eq!(lines(&p2.ops), vec!["ip link set enp4s0f0 master br1 up"]);
}

#[test]
fn each_drift_is_repaired_by_exactly_one_operation() {
    let d = reference_desired();
    let base = simulate(&host_before(), &plan(&d, &host_before()).ops);
    type Drift = Box<dyn Fn(&mut Observed)>;
    let cases: Vec<(&str, Drift, &str)> = vec![
        (
            "port removed",
            Box::new(|o| {
                let l = o.links.get_mut("enp3s0f0").unwrap();
                l.controller = None;
                l.port = None;
            }),
            "ip link set enp3s0f0 master br-api up",
        ),
        (
            "mtu changed",
            Box::new(|o| o.links.get_mut("br1").unwrap().mtu = 1400),
            "ip link set br1 mtu 1500",
        ),
        (
            "link down",
            Box::new(|o| o.links.get_mut("enp4s0f0").unwrap().up = false),
            "ip link set enp4s0f0 up",
        ),
        (
            "stp switched on",
            Box::new(|o| {
                o.links.get_mut("br0").unwrap().bridge.as_mut().unwrap().stp = true;
            }),
            "ip link set br0 type bridge stp_state 0",
        ),
        (
            "hairpin switched on",
            Box::new(|o| {
                o.links
                    .get_mut("enp3s0f0")
                    .unwrap()
                    .port
                    .as_mut()
                    .unwrap()
                    .hairpin = true;
            }),
            "ip link set enp3s0f0 type bridge_slave hairpin off",
        ),
        (
            "rp_filter reset",
            Box::new(|o| {
                o.sysctls
                    .insert(SysctlKey::RpFilter("br-api".into()), "0".into());
            }),
            "sysctl -w net.ipv4.conf.br-api.rp_filter=2",
        ),
        (
            "ip_forward reset",
            Box::new(|o| {
                o.sysctls.insert(SysctlKey::IpForward, "0".into());
            }),
            "sysctl -w net.ipv4.ip_forward=1",
        ),
    ];
    for (name, drift, want) in cases {
        let mut o = base.clone();
        drift(&mut o);
        let p = plan(&d, &o);
        assert_eq!(lines(&p.ops), vec![want.to_owned()], "{name}");
    }
}

#[test]
fn a_deleted_address_brings_its_silently_dropped_route_back_after_it() {
    let d = reference_desired();
    let base = simulate(&host_before(), &plan(&d, &host_before()).ops);
    // What the kernel does on `ip address del 192.198.0.30/24 dev br-api`: the address goes
    // and so does the default route through 192.198.0.1, without an RTM_DELROUTE.
    let o = simulate(
        &base,
        &[Op::DelAddress {
            dev: "br-api".into(),
            net: "192.198.0.30/24".parse().unwrap(),
            proto: OURS,
        }],
    );
    assert!(!o.routes.iter().any(|r| r.dst.prefix_len() == 0));
    let p = plan(&d, &o);
    assert_eq!(
        lines(&p.ops),
        vec![
            "ip address add 192.198.0.30/24 dev br-api proto 237",
            "ip route add default via 192.198.0.1 dev br-api metric 100 proto 237",
        ]
    );
}

#[test]
fn a_deleted_bridge_is_rebuilt_whole() {
    let d = reference_desired();
    let base = simulate(&host_before(), &plan(&d, &host_before()).ops);
    let o = simulate(
        &base,
        &[Op::DeleteLink {
            name: "br-api".into(),
        }],
    );
    let p = plan(&d, &o);
    assert_eq!(
        lines(&p.ops),
        vec![
            "ip link add br-api mtu 1500 up type bridge stp_state 0 forward_delay 0 mcast_snooping 1",
            "ip address add 192.198.0.30/24 dev br-api proto 237",
            "ip link set enp3s0f0 master br-api up",
            "ip route add default via 192.198.0.1 dev br-api metric 100 proto 237",
            "sysctl -w net.ipv4.conf.br-api.rp_filter=2",
        ]
    );
}

#[test]
fn foreign_objects_are_noted_never_touched() {
    let d = reference_desired();
    let mut o = simulate(&host_before(), &plan(&d, &host_before()).ops);
    o.links.insert("virbr0".into(), bridge("virbr0", 20));
    o.links
        .insert("vnet0".into(), enslaved(nic("vnet0", 21), "br0"));
    o.addresses.insert(addr("virbr0", "192.168.122.1/24", 0));
    o.addresses.insert(addr("br0", "10.17.3.250/24", 0));
    o.routes
        .insert(route("10.99.0.0/16", Some("10.17.3.254"), "br0", 0, 4));
    o.routes
        .insert(route("10.98.0.0/16", None, "virbr0", 0, 16));
    let p = plan(&d, &o);
    assert_eq!(p.ops, vec![], "{p}");
    assert!(p.notes.contains(&Note::ForeignAddress {
        dev: "br0".into(),
        net: "10.17.3.250/24".parse().unwrap(),
        proto: 0
    }));
    assert!(p.notes.iter().any(
        |n| matches!(n, Note::ForeignRoute { route } if route.dst.to_string() == "10.99.0.0/16")
    ));
    // Nothing is said about the foreign bridge: it is not ours to watch.
    assert!(!p.to_string().contains("virbr0"), "{p}");
}

#[test]
fn a_foreign_route_holding_our_key_is_reported_not_replaced() {
    let d = reference_desired();
    let mut o = simulate(&host_before(), &plan(&d, &host_before()).ops);
    o.routes.retain(|r| r.dst.prefix_len() != 0);
    o.routes
        .insert(route("0.0.0.0/0", Some("192.198.0.254"), "br-api", 100, 16));
    let p = plan(&d, &o);
    assert_eq!(p.ops, vec![]);
    assert!(
        p.notes
            .iter()
            .any(|n| matches!(n, Note::RouteConflict { .. })),
        "{p}"
    );
}

#[test]
fn our_stale_objects_are_removed_but_not_on_the_protected_nic() {
    let d = reference_desired();
    let mut o = simulate(&host_before(), &plan(&d, &host_before()).ops);
    o.addresses.insert(addr("br1", "10.17.6.1/24", OURS));
    o.routes
        .insert(route("10.50.0.0/16", Some("10.17.5.2"), "br1", 0, OURS));
    o.addresses
        .insert(addr("enp4s0f1", "192.168.1.99/24", OURS));
    o.routes.insert(route(
        "10.60.0.0/16",
        Some("192.168.1.1"),
        "enp4s0f1",
        0,
        OURS,
    ));
    let p = plan(&d, &o);
    assert_eq!(
        lines(&p.ops),
        vec![
            "ip address del 10.17.6.1/24 dev br1",
            "ip route del 10.50.0.0/16 via 10.17.5.2 dev br1 proto 237",
        ]
    );
    assert_eq!(
        p.notes
            .iter()
            .filter(|n| matches!(n, Note::OwnedOnProtected { .. }))
            .count(),
        2
    );
}

#[test]
fn a_name_held_by_another_kind_of_link_blocks_that_bridge_only() {
    let d = reference_desired();
    let mut o = host_before();
    o.links.insert("br0".into(), nic("br0", 30));
    let p = plan(&d, &o);
    assert!(p.has_errors());
    assert!(
        p.ops.iter().all(|op| !op.interfaces().contains(&"br0")),
        "{p}"
    );
    assert!(
        lines(&p.ops)
            .iter()
            .any(|l| l.starts_with("ip link add br-api"))
    );
}

#[test]
fn vlan_filtering_is_tried_once_then_reported_unsupported() {
    let d = desired_from(
        "[link]\nprotected = []\n[[link.bridge]]\nname = \"brv\"\nvlan_filtering = true\n",
    );
    let o = Observed::default();
    let p = plan(&d, &o);
    assert_eq!(
        lines(&p.ops),
        vec![
            "ip link add brv up type bridge stp_state 0 forward_delay 0 mcast_snooping 1",
            "ip link set brv type bridge vlan_filtering 1",
        ]
    );
    // After the kernel said EOPNOTSUPP, the daemon knows and stops asking.
    let mut after = simulate(&o, &p.ops[..1]);
    after.caps = Caps {
        no_vlan_filtering: true,
    };
    let p2 = plan(&d, &after);
    assert_eq!(p2.ops, vec![]);
    assert!(p2.notes.contains(&Note::VlanFilteringUnsupported {
        bridge: "brv".into()
    }));
}

#[test]
fn a_missing_sysctl_is_fine_when_it_should_be_off() {
    let d = reference_desired();
    let mut o = simulate(&host_before(), &plan(&d, &host_before()).ops);
    o.sysctls.remove(&SysctlKey::BridgeNfCallIptables);
    assert_eq!(plan(&d, &o).ops, vec![]);
    let d_on = desired_from("[link]\n[link.sysctl]\nbridge_nf_call_iptables = true\n");
    let p = plan(&d_on, &Observed::default());
    assert_eq!(p.ops, vec![]);
    assert!(
        p.notes
            .iter()
            .any(|n| matches!(n, Note::SysctlMissing { .. }))
    );
}

#[test]
fn validation_refuses_plans_that_touch_what_is_not_ours() {
    let d = reference_desired();
    let o = host_before();
    let bad = vec![
        Op::SetUp {
            link: "enp4s0f1".into(),
        },
        Op::DelAddress {
            dev: "enp4s0f1".into(),
            net: "192.168.1.10/24".parse().unwrap(),
            proto: 0,
        },
        Op::DelRoute {
            route: route("192.168.1.0/24", None, "enp4s0f1", 0, 2),
        },
        Op::DeleteLink {
            name: "enp3s0f0".into(),
        },
        Op::SetMtu {
            link: "nope0".into(),
            mtu: 1500,
            was: 1500,
        },
    ];
    let problems = validate(&bad, &d, &o);
    let ops_with_problems: std::collections::BTreeSet<usize> =
        problems.iter().map(|p| p.op).collect();
    assert_eq!(ops_with_problems, (0..bad.len()).collect(), "{problems:?}");
}

#[test]
fn keepalived_virtual_addresses_are_expected_never_foreign_never_removed() {
    let mut d = reference_desired();
    d.virtual_addresses = vec![
        ("br-api".into(), "192.198.0.40/32".parse().unwrap()),
        ("br1".into(), "10.17.5.254/32".parse().unwrap()),
    ];
    let mut o = simulate(&host_before(), &plan(&d, &host_before()).ops);
    // The master: keepalived added both (no IFA_PROTO of ours), and someone else's too.
    o.addresses.insert(addr("br-api", "192.198.0.40/32", 0));
    o.addresses.insert(addr("br1", "10.17.5.254/32", 0));
    o.addresses.insert(addr("br-api", "192.198.0.41/32", 0));
    let p = plan(&d, &o);
    assert_eq!(p.ops, vec![], "{p}");
    let foreign: Vec<String> = p
        .notes
        .iter()
        .filter_map(|n| match n {
            Note::ForeignAddress { net, .. } => Some(net.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(foreign, ["192.198.0.41/32"], "{p}");
    // The same address on another interface is not the virtual address.
    o.addresses.insert(addr("br0", "10.17.5.254/32", 0));
    let p = plan(&d, &o);
    assert!(p.notes.contains(&Note::ForeignAddress {
        dev: "br0".into(),
        net: "10.17.5.254/32".parse().unwrap(),
        proto: 0
    }));
    // The backup: keepalived removed them; nothing to add either (they are not ours).
    let o = simulate(&host_before(), &plan(&d, &host_before()).ops);
    assert_eq!(plan(&d, &o).ops, vec![]);
}
