//! The `[ha]` rules: one test per rule, each asserting the located message and the hint.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::path::Path;
use std::time::Duration;

use edge_config::Severity;

fn parse(body: &str) -> Result<edge_config::Loaded, edge_config::Diagnostics> {
    edge_config::parse(Path::new("edge.toml"), &format!("version = 1\n{body}"))
}

/// (location, severity, message, hint) of every diagnostic.
fn diags(body: &str) -> Vec<(String, Severity, String, Option<String>)> {
    let items = match parse(body) {
        Ok(l) => l.warnings.items().to_vec(),
        Err(d) => d.items().to_vec(),
    };
    items
        .into_iter()
        .map(|x| {
            (
                x.location.map(|l| l.to_string()).unwrap_or_default(),
                x.severity,
                x.message,
                x.hint,
            )
        })
        .collect()
}

const HA: &str = r#"[ha]
name = "edge-a"
address = "10.0.0.31"
instance = "edge"
virtual_router_id = 30
interface = "br-api"
[ha.peer]
name = "edge-b"
address = "10.0.0.32"
[[ha.vip]]
address = "10.0.0.30/32"
"#;

#[test]
fn a_minimal_section_loads_with_its_defaults() {
    let l = parse(HA).unwrap_or_else(|d| panic!("{d}"));
    assert!(l.warnings.is_empty(), "{}", l.warnings);
    let ha = l.config.ha.unwrap();
    assert_eq!(ha.this.name, "edge-a");
    assert_eq!(ha.this.address.to_string(), "10.0.0.31");
    assert_eq!((ha.this.priority, ha.peer.priority), (100, 100));
    assert_eq!(ha.peer.name, "edge-b");
    assert_eq!(ha.advert_int, Duration::from_millis(500));
    assert_eq!(ha.ddns_hold_off, Duration::from_secs(5));
    assert!(!ha.conntrackd);
    assert_eq!(
        ha.conntrackd_config,
        Path::new("/etc/conntrackd/conntrackd.conf")
    );
    assert_eq!(ha.vips.len(), 1);
    assert_eq!(
        ha.vips[0].interface.as_str(),
        "br-api",
        "default: ha.interface"
    );
    assert!(ha.is_vip("10.0.0.30".parse().unwrap()));
    let peer_view = ha.swapped();
    assert_eq!(peer_view.this.name, "edge-b");
    assert_eq!(peer_view.peer.name, "edge-a");
}

#[test]
fn a_file_without_ha_has_none() {
    let l = parse("[global]\n").unwrap();
    assert!(l.config.ha.is_none());
}

#[test]
fn missing_parts_are_each_reported_with_the_snippet_to_add() {
    let d = diags(
        "[ha]\nname = \"edge-a\"\naddress = \"10.0.0.31\"\ninstance = \"edge\"\ninterface = \"br-api\"\n",
    );
    let msgs: Vec<&str> = d.iter().map(|x| x.2.as_str()).collect();
    assert!(
        msgs.contains(&"missing required key `virtual_router_id` in [ha]"),
        "{d:?}"
    );
    assert!(msgs.contains(&"missing [ha.peer]: the other host"), "{d:?}");
    let vip = d
        .iter()
        .find(|x| x.2.contains("no virtual address"))
        .unwrap();
    assert_eq!(vip.0, "2:1");
    assert!(vip.3.as_deref().unwrap().contains("[[ha.vip]]"), "{vip:?}");
}

#[test]
fn advert_int_must_be_a_vrrpv3_interval() {
    let d = diags(&HA.replace(
        "interface = \"br-api\"\n",
        "interface = \"br-api\"\nadvert_int = \"5ms\"\n",
    ));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "8:14");
    assert_eq!(
        d[0].2,
        "advert_int = 5ms is not a VRRPv3 interval: it must be 10ms to 40.95s in steps of 10ms"
    );
    let d = diags(&HA.replace(
        "interface = \"br-api\"\n",
        "interface = \"br-api\"\nadvert_int = \"505ms\"\n",
    ));
    assert_eq!(d.len(), 1, "{d:?}");
    let ok = parse(&HA.replace(
        "interface = \"br-api\"\n",
        "interface = \"br-api\"\nadvert_int = \"1s\"\n",
    ))
    .unwrap();
    assert_eq!(ok.config.ha.unwrap().advert_int, Duration::from_secs(1));
}

#[test]
fn the_two_hosts_must_differ_and_the_vip_is_neither() {
    let d = diags(&HA.replace(
        "name = \"edge-b\"\naddress = \"10.0.0.32\"",
        "name = \"edge-a\"\naddress = \"10.0.0.31\"",
    ));
    let msgs: Vec<&str> = d.iter().map(|x| x.2.as_str()).collect();
    assert_eq!(
        msgs,
        [
            "the peer has this host's name `edge-a`",
            "the peer has this host's address 10.0.0.31"
        ]
    );
    assert_eq!(d[0].0, "9:8");
    let d = diags(&HA.replace("10.0.0.30/32", "10.0.0.32/32"));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].2,
        "virtual address 10.0.0.32 is also a host's own address"
    );
    assert_eq!(d[0].0, "12:11");
}

#[test]
fn ipv6_and_bad_names_are_refused() {
    let d = diags(&HA.replace("address = \"10.0.0.31\"", "address = \"fd00::31\""));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].2, "fd00::31 is IPv6: [ha] runs one IPv4 VRRP instance");
    let d = diags(&HA.replace("instance = \"edge\"", "instance = \"my edge\""));
    assert_eq!(d[0].2, "`my edge` is not a valid name for keepalived");
    assert_eq!(d[0].0, "5:12");
}

#[test]
fn priorities_must_let_an_unhealthy_master_lose() {
    let d = diags(&HA.replace(
        "instance = \"edge\"",
        "instance = \"edge\"\npriority = 250\n",
    ));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "6:12");
    assert!(
        d[0].2
            .starts_with("priorities 250 and 100 differ by 100 or more"),
        "{d:?}"
    );
    let d = diags(&HA.replace(
        "instance = \"edge\"",
        "instance = \"edge\"\npriority = 255\n",
    ));
    assert!(d[0].2.contains("between 1 and 254"), "{d:?}");
}

const LINK: &str = r#"[link]
protected = ["enp4s0f1"]
[[link.bridge]]
name = "br-api"
ports = ["enp3s0f0"]
addresses = ["10.0.0.31/24"]
"#;

#[test]
fn with_link_the_own_address_is_on_the_bridge_and_the_vip_is_not() {
    let l = parse(&format!("{LINK}{HA}")).unwrap_or_else(|d| panic!("{d}"));
    assert!(l.warnings.is_empty(), "{}", l.warnings);

    let d = diags(&format!(
        "{}{HA}",
        LINK.replace("10.0.0.31/24", "10.0.0.33/24")
    ));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "10:11");
    assert_eq!(
        d[0].2,
        "this host's address 10.0.0.31 is not an address of bridge `br-api` in [link]"
    );

    let d = diags(&format!(
        "{}{HA}",
        LINK.replace("[\"10.0.0.31/24\"]", "[\"10.0.0.31/24\", \"10.0.0.30/24\"]")
    ));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].2,
        "virtual address 10.0.0.30 is also a fixed address of bridge `br-api` in [link]"
    );
    assert!(
        d[0].3.as_deref().unwrap().contains("remove 10.0.0.30"),
        "{d:?}"
    );
}

#[test]
fn with_link_protected_and_unmanaged_interfaces_are_reported() {
    let d = diags(&format!(
        "{LINK}{}",
        HA.replace("interface = \"br-api\"", "interface = \"enp4s0f1\"")
    ));
    let errs: Vec<_> = d.iter().filter(|x| x.1 == Severity::Error).collect();
    assert!(
        errs.iter()
            .any(|x| x.2 == "[ha] uses protected interface `enp4s0f1`"),
        "{d:?}"
    );
    let d = diags(&format!(
        "{LINK}{}",
        HA.replace("interface = \"br-api\"", "interface = \"br9\"")
    ));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].1, Severity::Warning);
    assert_eq!(d[0].2, "`br9` is not a bridge of [link]");
}

const FW: &str = r#"[fw]
wan = ["br-api"]
[fw.input]
policy = "drop"
[[fw.input.allow]]
name = "ssh"
port = 22
"#;

#[test]
fn conntrackd_needs_no_input_rule_edge_fw_admits_the_peer_itself() {
    let ha = HA.replace(
        "interface = \"br-api\"",
        "interface = \"br-api\"\nconntrackd = true",
    );
    let d = diags(&format!("{FW}{ha}"));
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn a_forward_on_the_own_address_is_warned_about() {
    let fwd = "[[fw.forward]]\nname = \"http\"\nport = 80\naddress = \"10.0.0.31\"\nto = \"10.17.5.30\"\n";
    let d = diags(&format!("{FW}{fwd}{HA}"));
    let w: Vec<_> = d
        .iter()
        .filter(|x| x.2.contains("not at a virtual address"))
        .collect();
    assert_eq!(w.len(), 1, "{d:?}");
    assert_eq!(w[0].1, Severity::Warning);
    let d = diags(&format!(
        "{FW}{}{HA}",
        fwd.replace("10.0.0.31", "10.0.0.30")
    ));
    assert!(!d.iter().any(|x| x.2.contains("virtual address")), "{d:?}");
}
