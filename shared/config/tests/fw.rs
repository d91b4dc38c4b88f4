//! `[fw]` rules about address families: one test per rule, each asserting the located
//! message (line:column) and the hint.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::path::Path;

use edge_config::{Diagnostic, Severity};

/// A small valid dual-stack file the rules below break one at a time.
const BASE: &str = r#"version = 1

[link]
protected = ["enp4s0f1"]

[[link.bridge]]
name = "br-api"
ports = ["enp3s0f0"]
addresses = ["10.0.0.30/24", "2001:db8:c6::30/64"]

[[link.bridge]]
name = "br1"
ports = ["enp4s0f0"]
addresses = ["10.17.5.1/24", "fd17:5::1/64"]

[wg]
interface = "wg0"
listen_port = 51820
private_key = { file = "/etc/edge/wg0.key" }
addresses = ["10.17.9.1/24", "fd17:9::1/64"]

[[wg.peer]]
name = "laptop"
public_key = "cDiQaMQHWzqkrUCNxK562xcypEvZk+MLZnnM8QGpalM="
allowed_ips = ["10.17.9.2/32", "fd17:9::2/128"]

[fw]
wan = ["br-api"]
lan = ["br1"]
vpn = ["wg0"]

[fw.networks]
wireguard = ["10.17.9.0/24", "fd17:9::/64"]
wireguard4 = ["10.17.9.0/24"]
admin6 = ["fd00:1::/64"]

[fw.input]
policy = "drop"

[[fw.input.allow]]
name = "wireguard"
proto = "udp"
port = 51820

[[fw.input.allow]]
name = "ssh"
proto = "tcp"
port = 22
from = ["wireguard", "admin6"]

[[fw.forward]]
name = "https"
port = 443
to = "10.17.5.30"

[[fw.forward]]
name = "https6"
port = 443
to = "fd17:5::30"
hairpin = true

[[fw.forward]]
name = "api6"
port = 6443
address = "2001:db8:c6::30"
to = "fd17:5::10"
from = ["wireguard"]
"#;

fn diags(text: &str) -> Vec<Diagnostic> {
    match edge_config::parse(Path::new("edge.toml"), text) {
        Ok(l) => l.warnings.items().to_vec(),
        Err(d) => d.items().to_vec(),
    }
}

fn errors(text: &str) -> Vec<Diagnostic> {
    diags(text)
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

/// Replaces the first occurrence of `from` in BASE (which must exist).
fn with(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "BASE lacks {from:?}");
    BASE.replacen(from, to, 1)
}

/// Asserts exactly one error, at `line:col`, whose message contains `msg`; returns it.
fn one_error(text: &str, line: u32, col: u32, msg: &str) -> Diagnostic {
    let e = errors(text);
    assert_eq!(e.len(), 1, "expected one error, got {e:#?}");
    let d = e.into_iter().next().unwrap();
    let loc = d.location.expect("located");
    assert_eq!(
        (loc.line, loc.column),
        (line, col),
        "wrong place for {:?}",
        d.message
    );
    assert!(d.message.contains(msg), "{:?} lacks {msg:?}", d.message);
    d
}

fn line_of(text: &str, needle: &str) -> u32 {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i as u32 + 1)
        .unwrap_or_else(|| panic!("{needle:?} not found"))
}

#[test]
fn a_dual_stack_file_is_valid_without_warnings() {
    assert!(diags(BASE).is_empty(), "{:#?}", diags(BASE));
    let cfg = edge_config::parse(Path::new("edge.toml"), BASE)
        .unwrap()
        .config;
    let fw = cfg.fw.unwrap();
    let api6 = fw.forwards.iter().find(|f| f.name == "api6").unwrap();
    assert!(api6.to.is_ipv6());
    let from = api6.from.as_ref().unwrap();
    assert_eq!(from[0].nets.len(), 2, "both families of `wireguard` kept");
}

#[test]
fn a_forward_whose_allow_list_has_no_network_of_its_family_is_refused() {
    // IPv6 target, IPv4-only sources.
    let t = with(
        "to = \"fd17:5::10\"\nfrom = [\"wireguard\"]",
        "to = \"fd17:5::10\"\nfrom = [\"wireguard4\", \"10.0.0.0/8\"]",
    );
    let d = one_error(
        &t,
        line_of(&t, "from = [\"wireguard4\""),
        8,
        "forward `api6` targets IPv6 address fd17:5::10 but `from` holds only IPv4 networks: nobody could reach it",
    );
    assert_eq!(d.key, "fw.forward[2].from");
    assert_eq!(
        d.hint.as_deref(),
        Some(
            "add an IPv6 network to the list (or to the [fw.networks] entry it names), or write one forward per family"
        )
    );
    // IPv4 target, IPv6-only sources.
    let t = with(
        "to = \"10.17.5.30\"\n",
        "to = \"10.17.5.30\"\nfrom = [\"admin6\"]\n",
    );
    one_error(
        &t,
        line_of(&t, "from = [\"admin6\"]"),
        8,
        "forward `https` targets IPv4 address 10.17.5.30 but `from` holds only IPv6 networks",
    );
    // An unknown name is reported once, as unknown, not also as the wrong family.
    let t = with("from = [\"wireguard\"]", "from = [\"wireguad\"]");
    one_error(
        &t,
        line_of(&t, "wireguad\"]"),
        9,
        "`wireguad` is neither a network name",
    );
}

#[test]
fn forwards_of_different_families_on_the_same_port_do_not_overlap() {
    // BASE has `https` (IPv4) and `https6` (IPv6) on 443 without `address`: valid.
    assert!(errors(BASE).is_empty(), "{:#?}", errors(BASE));
    // Two of the same family still collide, located at the second one's port.
    let t = format!(
        "{BASE}\n[[fw.forward]]\nname = \"alt6\"\nport = \"440-450\"\nto = \"fd17:5::31\"\n"
    );
    one_error(
        &t,
        line_of(&t, "440-450"),
        8,
        "forward `alt6` (440-450) overlaps forward `https6` (443)",
    );
}
