//! Two edge hosts under keepalived (`[ha]`): the ruleset of each role. The BACKUP admits the
//! peer's VRRP and conntrackd, drops (never rejects) new forwarded flows and translates
//! nothing to the virtual address; the master admits new flows and sends the VMs' egress
//! from the virtual address. Without `[ha]` the ruleset is the single host's.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use edge_fw::daemon::build_with;
use edge_fw::origin::Ranges;

/// The reference as host a of the two-host lab: its own addresses on the bridges, the
/// shared ones virtual.
fn host_a() -> edge_config::Config {
    let text = std::fs::read_to_string(common::reference_path()).expect("reference");
    let text =
        text.replace(
            "addresses = [\"192.198.0.30/24\"]",
            "addresses = [\"192.198.0.31/24\"]",
        )
        .replace(
            "addresses = [\"10.17.5.1/24\"]",
            "addresses = [\"10.17.5.2/24\"]",
        ) + r#"
[ha]
name = "edge-a"
address = "192.198.0.31"
instance = "edge"
virtual_router_id = 30
interface = "br-api"
conntrackd = true

[ha.peer]
name = "edge-b"
address = "192.198.0.32"

[[ha.vip]]
address = "192.198.0.30/32"

[[ha.vip]]
address = "10.17.5.1/32"
interface = "br1"
"#;
    common::parse(&common::reference_path(), &text)
}

fn addrs() -> BTreeMap<String, Vec<IpAddr>> {
    BTreeMap::from([
        ("br-api".to_owned(), vec!["192.198.0.31".parse().unwrap()]),
        ("br1".to_owned(), vec!["10.17.5.2".parse().unwrap()]),
    ])
}

/// The lines of the `edge` table that carry one of these rule ids.
fn lines_of(text: &str, id: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains(&format!("\"{id}")))
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn the_backup_admits_the_peer_and_drops_new_forwarded_flows_without_translating_to_the_vip() {
    let (_, rs) = build_with(&host_a(), addrs(), &Ranges::shipped(), false).expect("build");
    let t = rs.edge.to_string();
    let vrrp = lines_of(&t, "ha/vrrp");
    assert_eq!(vrrp.len(), 1, "{t}");
    assert!(
        vrrp[0].contains("iifname \"br-api\"")
            && vrrp[0].contains("ip saddr 192.198.0.32")
            && vrrp[0].contains("meta l4proto vrrp")
            && vrrp[0].contains("accept"),
        "{vrrp:?}"
    );
    let sync = lines_of(&t, "ha/conntrackd");
    assert_eq!(sync.len(), 1, "{t}");
    assert!(
        sync[0].contains("ip saddr 192.198.0.32")
            && sync[0].contains("udp dport 3780")
            && sync[0].contains("accept"),
        "{sync:?}"
    );
    let standby = lines_of(&t, "ha/standby");
    assert_eq!(standby.len(), 1, "{t}");
    assert!(
        standby[0].contains("ct state new") && standby[0].contains("drop"),
        "{standby:?}"
    );
    assert!(!standby[0].contains("reject"), "{standby:?}");
    // Before the port forwards' accept, so that no new forwarded flow gets through.
    let pos = |id: &str| t.find(&format!("\"{id}")).unwrap_or(usize::MAX);
    assert!(pos("ha/standby") < pos("routed/port-forwards"), "{t}");
    assert!(
        !t.contains("snat"),
        "the backup translates nothing to the VIP:\n{t}"
    );
}

#[test]
fn the_master_admits_new_flows_and_sends_egress_from_the_vip() {
    let (_, rs) = build_with(&host_a(), addrs(), &Ranges::shipped(), true).expect("build");
    let t = rs.edge.to_string();
    assert!(lines_of(&t, "ha/standby").is_empty(), "{t}");
    assert_eq!(lines_of(&t, "ha/vrrp").len(), 1, "{t}");
    let vip: Vec<String> = t
        .lines()
        .filter(|l| l.contains("/vip"))
        .map(|l| l.trim().to_owned())
        .collect();
    // One before each masquerade out of br-api (the VMs' networks, the WireGuard network).
    let masq = t
        .lines()
        .filter(|l| l.contains("comment \"masq/") && !l.contains("/vip"))
        .count();
    assert_eq!(vip.len(), masq, "{t}");
    assert!(vip.len() >= 2, "{t}");
    for l in &vip {
        assert!(
            l.contains("oifname \"br-api\"") && l.contains("snat") && l.contains("192.198.0.30"),
            "{l}"
        );
    }
    // Each snat comes before the masquerade it replaces.
    for k in 0..masq {
        let snat = t.find(&format!("masq/egress#{k}/vip")).unwrap();
        let masquerade = t.find(&format!("masq/egress#{k} ")).unwrap();
        assert!(snat < masquerade, "{t}");
    }
}

#[test]
fn a_single_host_has_no_pair_rules() {
    let (_, rs) =
        build_with(&common::reference(), addrs(), &Ranges::shipped(), true).expect("build");
    let t = rs.edge.to_string();
    for id in ["ha/vrrp", "ha/conntrackd", "ha/standby"] {
        assert!(
            lines_of(&t, id).is_empty(),
            "{id} in a single host's table:\n{t}"
        );
    }
    assert!(!t.contains("snat"), "{t}");
}

#[test]
fn a_pair_without_conntrackd_admits_only_vrrp() {
    let text = std::fs::read_to_string(common::reference_path()).expect("reference")
        + r#"
[ha]
name = "edge-a"
address = "192.198.0.30"
instance = "edge"
virtual_router_id = 30
interface = "br-api"

[ha.peer]
name = "edge-b"
address = "192.198.0.32"

[[ha.vip]]
address = "192.198.0.40/32"
"#;
    let cfg = common::parse(&common::reference_path(), &text);
    let (_, rs) = build_with(&cfg, addrs(), &Ranges::shipped(), false).expect("build");
    let t = rs.edge.to_string();
    assert_eq!(lines_of(&t, "ha/vrrp").len(), 1, "{t}");
    assert!(lines_of(&t, "ha/conntrackd").is_empty(), "{t}");
}
