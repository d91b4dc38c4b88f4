//! One test per validation rule: each asserts the located message (line:column), and the
//! hint where there is one.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::path::Path;

use edge_config::{Diagnostic, Severity};

/// A small valid file the rules below break one at a time.
const BASE: &str = r#"version = 1

[link]
protected = ["enp4s0f1"]

[[link.bridge]]
name = "br-api"
ports = ["enp3s0f0"]
addresses = ["10.0.0.30/24"]

[wg]
interface = "wg0"
listen_port = 51820
private_key = { file = "/etc/edge/wg0.key" }
addresses = ["10.17.9.1/24"]

[[wg.peer]]
name = "laptop"
public_key = "cDiQaMQHWzqkrUCNxK562xcypEvZk+MLZnnM8QGpalM="
allowed_ips = ["10.17.9.2/32"]

[fw]
wan = ["br-api"]
vpn = ["wg0"]

[fw.networks]
wireguard = ["10.17.9.0/24"]

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
from = ["wireguard"]

[[fw.forward]]
name = "https"
port = 443
to = "10.0.0.40"
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

fn warnings(text: &str) -> Vec<Diagnostic> {
    diags(text)
        .into_iter()
        .filter(|d| d.severity == Severity::Warning)
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
fn base_is_valid_without_warnings() {
    assert!(diags(BASE).is_empty(), "{:#?}", diags(BASE));
}

#[test]
fn syntax_errors_are_located() {
    let t = with("name = \"laptop\"", "name = \"laptop");
    let e = errors(&t);
    assert!(!e.is_empty());
    assert!(e[0].message.starts_with("TOML syntax error"), "{:?}", e[0]);
    assert_eq!(e[0].location.unwrap().line, line_of(&t, "name = \"laptop"));
}

#[test]
fn unknown_keys_are_errors_with_a_did_you_mean() {
    let t = with("port = 443", "portt = 443\nport = 443");
    let d = one_error(
        &t,
        line_of(&t, "portt = 443"),
        1,
        "unknown key `portt` in [[fw.forward]] #1",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean `port`?"));
    let t = with("[fw.input]", "[fw.inptu]\n[fw.input]");
    let d = one_error(&t, line_of(&t, "inptu"), 5, "unknown key `inptu` in [fw]");
    assert_eq!(d.hint.as_deref(), Some("did you mean `input`?"));
}

#[test]
fn version_is_required_and_must_be_1() {
    let t = BASE.replacen("version = 1\n", "", 1);
    one_error(&t, 1, 1, "missing `version = 1`");
    let t = with("version = 1", "version = 2");
    one_error(&t, 1, 11, "version 2 is not supported");
}

#[test]
fn wrong_types_name_the_expected_type() {
    let t = with("listen_port = 51820", "listen_port = \"51820\"");
    one_error(
        &t,
        line_of(&t, "listen_port"),
        15,
        "must be an integer, found a string",
    );
}

#[test]
fn bad_ip_address() {
    let t = with("to = \"10.0.0.40\"", "to = \"10.0.0.400\"");
    one_error(
        &t,
        line_of(&t, "10.0.0.400"),
        6,
        "`10.0.0.400` is not a valid IP address",
    );
}

#[test]
fn bad_cidr() {
    let t = with("\"10.0.0.30/24\"", "\"10.0.0.30/33\"");
    one_error(
        &t,
        line_of(&t, "10.0.0.30/33"),
        14,
        "prefix length must be 0 to 32",
    );
    let t = with("\"10.0.0.30/24\"", "\"10.0.0.30\"");
    let d = one_error(&t, line_of(&t, "10.0.0.30\""), 14, "has no prefix length");
    assert!(d.hint.unwrap().contains("10.0.0.30/24"));
}

#[test]
fn networks_with_host_bits_get_the_fix() {
    let t = with(
        "wireguard = [\"10.17.9.0/24\"]",
        "wireguard = [\"10.17.9.1/24\"]",
    );
    let d = one_error(
        &t,
        line_of(&t, "wireguard = [\"10.17.9.1/24\"]"),
        14,
        "has host bits set",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean 10.17.9.0/24?"));
}

#[test]
fn ports_outside_1_65535() {
    let t = with("port = 443", "port = 70000");
    one_error(
        &t,
        line_of(&t, "port = 70000"),
        8,
        "port 70000 is out of range",
    );
    let t = with("port = 443", "port = 0");
    one_error(&t, line_of(&t, "port = 0"), 8, "port 0 is out of range");
    let t = with("port = 443", "port = \"500-400\"");
    let d = one_error(&t, line_of(&t, "500-400"), 8, "ends before it starts");
    assert!(d.hint.unwrap().contains("400-500"));
}

#[test]
fn interface_names_longer_than_15_bytes() {
    let t = with("name = \"br-api\"", "name = \"br-api-0123456789\"");
    // The bridge is renamed, so the fw zone now names an unmanaged interface: still valid.
    let e = errors(&t);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].message
            .contains("is 17 bytes long; Linux allows at most 15")
    );
    assert_eq!(
        e[0].location.unwrap().line,
        line_of(&t, "br-api-0123456789")
    );
}

#[test]
fn interface_names_with_invalid_characters() {
    let t = with("ports = [\"enp3s0f0\"]", "ports = [\"enp3s0f0:1\"]");
    one_error(&t, line_of(&t, "enp3s0f0:1"), 10, "contains ':'");
}

#[test]
fn duplicate_names() {
    let t = format!("{BASE}\n[[fw.forward]]\nname = \"https\"\nport = 8443\nto = \"10.0.0.41\"\n");
    let d = errors(&t);
    assert!(
        d.iter()
            .any(|d| d.message == "forward name `https` is used twice"),
        "{d:#?}"
    );
    let t = format!("{BASE}\n[[link.bridge]]\nname = \"br-api\"\n");
    let d = errors(&t);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].message, "bridge `br-api` is declared twice");
    assert_eq!(d[0].location.unwrap().line, t.lines().count() as u32);
    let t = format!(
        "{BASE}\n[[wg.peer]]\nname = \"laptop\"\npublic_key = \"Ec/rMvGHRVI/+BJqbmET/fg+8vmgnl3z32BhCosLO08=\"\n"
    );
    assert!(
        errors(&t)
            .iter()
            .any(|d| d.message == "peer name `laptop` is used twice")
    );
}

#[test]
fn a_port_in_two_bridges() {
    let t = format!("{BASE}\n[[link.bridge]]\nname = \"br1\"\nports = [\"enp3s0f0\"]\n");
    one_error(
        &t,
        t.lines().count() as u32,
        10,
        "`enp3s0f0` is a port of both `br-api` and `br1`",
    );
}

#[test]
fn wireguard_port_blocked_by_the_input_policy() {
    let t = with(
        "proto = \"udp\"\nport = 51820",
        "proto = \"udp\"\nport = 51821",
    );
    let d = one_error(
        &t,
        line_of(&t, "listen_port"),
        15,
        "WireGuard listen port 51820/udp is blocked by the firewall",
    );
    assert!(d.hint.unwrap().contains("port = 51820"));
    // Restricting the rule to some sources blocks the others: still an error.
    let t = with(
        "proto = \"udp\"\nport = 51820",
        "proto = \"udp\"\nport = 51820\nfrom = [\"wireguard\"]",
    );
    assert_eq!(errors(&t).len(), 1);
    // An accepting input policy admits it.
    let t = with("policy = \"drop\"", "policy = \"accept\"");
    assert!(errors(&t).is_empty());
}

#[test]
fn a_protected_interface_used_by_a_bridge() {
    let t = with(
        "ports = [\"enp3s0f0\"]",
        "ports = [\"enp3s0f0\", \"enp4s0f1\"]",
    );
    let d = one_error(
        &t,
        line_of(&t, "ports = [\"enp3s0f0\", \"enp4s0f1\"]"),
        22,
        "bridge `br-api` uses protected interface `enp4s0f1` as a port",
    );
    assert!(d.hint.unwrap().contains("never touched"));
}

#[test]
fn a_protected_interface_in_a_route_or_a_firewall_zone() {
    let t = format!("{BASE}\n[[link.route]]\nto = \"192.168.2.0/24\"\ndev = \"enp4s0f1\"\n");
    one_error(
        &t,
        t.lines().count() as u32,
        7,
        "route uses protected interface `enp4s0f1`",
    );
    let t = with("wan = [\"br-api\"]", "wan = [\"br-api\", \"enp4s0f1\"]");
    one_error(
        &t,
        line_of(&t, "wan = "),
        18,
        "`fw.wan` names protected interface `enp4s0f1`",
    );
}

#[test]
fn secrets_never_sit_in_the_toml() {
    let t = with(
        "private_key = { file = \"/etc/edge/wg0.key\" }",
        "private_key = \"YNqHbfBQKaGvzefSSJ4GA9w3Ye7ea5IYeEh8KQPxDnE=\"",
    );
    let d = one_error(
        &t,
        line_of(&t, "private_key"),
        15,
        "must not hold the secret itself",
    );
    assert!(d.hint.unwrap().contains("chmod 600"));
    let t = with("file = \"/etc/edge/wg0.key\"", "file = \"wg0.key\"");
    one_error(
        &t,
        line_of(&t, "private_key"),
        15,
        "must be an absolute path",
    );
}

#[test]
fn unknown_network_names_in_from_lists() {
    let t = with("from = [\"wireguard\"]", "from = [\"wireguad\"]");
    let d = one_error(
        &t,
        line_of(&t, "wireguad"),
        9,
        "`wireguad` is neither a network name",
    );
    assert_eq!(d.hint.as_deref(), Some("did you mean \"wireguard\"?"));
}

#[test]
fn overlapping_forwards_and_mismatched_port_ranges() {
    let t =
        format!("{BASE}\n[[fw.forward]]\nname = \"alt\"\nport = \"440-450\"\nto = \"10.0.0.41\"\n");
    one_error(
        &t,
        line_of(&t, "440-450"),
        8,
        "forward `alt` (440-450) overlaps forward `https` (443)",
    );
    let t = with("port = 443", "port = \"443-444\"\nto_port = \"8000-8005\"");
    one_error(
        &t,
        line_of(&t, "to_port"),
        11,
        "to_port 8000-8005 has 6 ports but port 443-444 has 2",
    );
}

#[test]
fn overlapping_allowed_ips_between_peers() {
    let t = format!(
        "{BASE}\n[[wg.peer]]\nname = \"phone\"\npublic_key = \"Ec/rMvGHRVI/+BJqbmET/fg+8vmgnl3z32BhCosLO08=\"\nallowed_ips = [\"10.17.9.0/24\"]\n"
    );
    one_error(
        &t,
        t.lines().count() as u32,
        16,
        "allowed IP 10.17.9.0/24 of peer `phone` overlaps 10.17.9.2/32 of peer `laptop`",
    );
}

#[test]
fn an_input_policy_that_locks_everyone_out() {
    let t = "version = 1\n[fw]\n[fw.input]\npolicy = \"drop\"\n";
    one_error(t, 3, 1, "would lock you out of the host");
}

#[test]
fn ddns_rules() {
    let ddns = "\n[ddns]\ntoken = { file = \"/etc/edge/cf.token\" }\napi_url = \"http://api.example.com/v4\"\nquorum = 2\n\n[[ddns.record]]\nname = \"example.com\"\nproxied = true\nttl = 300\n\n[[ddns.source]]\nname = \"a\"\nkind = \"static\"\naddress = \"203.0.113.7\"\n";
    let t = format!("{BASE}{ddns}");
    let d = diags(&t);
    let find = |m: &str| {
        d.iter()
            .find(|x| x.message.contains(m))
            .unwrap_or_else(|| panic!("no {m:?} in {d:#?}"))
    };
    let http = find("would send the API token over plain HTTP");
    assert_eq!(http.location.unwrap().line, line_of(&t, "api_url"));
    let q = find("quorum = 2 but only 1 source can detect IPv4 addresses");
    assert_eq!(q.location.unwrap().line, line_of(&t, "quorum"));
    let ttl = find("ttl = 300 is ignored");
    assert_eq!(ttl.severity, Severity::Warning);
    let t = format!(
        "{BASE}{}",
        ddns.replace("ttl = 300", "ttl = 10")
            .replace("proxied = true", "proxied = false")
    );
    assert!(
        errors(&t)
            .iter()
            .any(|x| x.message.contains("ttl = 10 is invalid"))
    );
    let t = format!(
        "{BASE}{}",
        ddns.replace("quorum = 2", "quorum = 1\nschedule = \"61 * * * *\"")
    );
    assert!(
        errors(&t)
            .iter()
            .any(|x| x.message.contains("is not a valid cron expression"))
    );
}

#[test]
fn the_192_198_warning_appears_once() {
    let t = with(
        "\"10.0.0.30/24\"",
        "\"10.0.0.30/24\", \"192.198.0.30/24\", \"192.198.0.31/24\"",
    );
    let w = warnings(&t);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].message
            .contains("192.198.0.0/16 is public address space")
    );
    assert!(w[0].hint.as_ref().unwrap().contains("192.168.0.30/24"));
    assert!(errors(&t).is_empty());
}

#[test]
fn a_forward_target_outside_every_managed_network_is_a_warning() {
    let t = with("to = \"10.0.0.40\"", "to = \"10.99.0.40\"");
    let w = warnings(&t);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].message.contains(
            "targets 10.99.0.40, which no managed bridge subnet or declared route reaches"
        )
    );
    assert!(w[0].hint.as_ref().unwrap().contains("libvirt"));
    assert_eq!(w[0].location.unwrap().line, line_of(&t, "10.99.0.40"));
}

#[test]
fn all_errors_of_a_file_are_reported_in_one_run() {
    let t = with("port = 443", "prot = 1\nport = 70000")
        .replace("\"10.0.0.30/24\"", "\"10.0.0.300/24\"");
    let e = errors(&t);
    let msgs: Vec<_> = e.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(e.len(), 3, "{msgs:#?}");
    assert!(msgs[0].contains("10.0.0.300/24"));
    assert!(msgs[1].contains("unknown key `prot`"));
    assert!(msgs[2].contains("port 70000 is out of range"));
    let rendered = edge_config::parse(Path::new("edge.toml"), &t)
        .unwrap_err()
        .render();
    assert!(rendered.contains("3 errors, 0 warnings"), "{rendered}");
}
