//! The `[link]` rules not covered by `rules.rs`: one test per rule, each asserting the
//! located message (and the hint where there is one).

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::path::Path;

use edge_config::{Diagnostic, Severity};

const BASE: &str = r#"version = 1

[link]
protected = ["enp4s0f1"]

[[link.bridge]]
name = "br-api"
ports = ["enp3s0f0"]
addresses = ["10.0.0.30/24"]

[[link.bridge]]
name = "br1"
ports = ["enp4s0f0"]
addresses = ["10.17.5.1/24"]
"#;

fn diags(text: &str) -> Vec<Diagnostic> {
    match edge_config::parse(Path::new("edge.toml"), text) {
        Ok(l) => l.warnings.items().to_vec(),
        Err(d) => d.items().to_vec(),
    }
}

fn of(text: &str, sev: Severity) -> Vec<Diagnostic> {
    diags(text)
        .into_iter()
        .filter(|d| d.severity == sev)
        .collect()
}

fn line_of(text: &str, needle: &str) -> u32 {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i as u32 + 1)
        .unwrap_or_else(|| panic!("`{needle}` not in:\n{text}"))
}

/// Exactly one diagnostic of `sev`, on `line`, whose message contains `msg`.
fn one(text: &str, sev: Severity, line: u32, msg: &str) -> Diagnostic {
    let d = of(text, sev);
    assert_eq!(d.len(), 1, "expected one {sev:?}, got {d:#?}");
    let d = d.into_iter().next().unwrap();
    assert!(d.message.contains(msg), "`{}` lacks `{msg}`", d.message);
    assert_eq!(d.location.map(|l| l.line), Some(line), "{d:#?}");
    d
}

fn add(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn the_base_file_is_valid() {
    assert!(of(BASE, Severity::Error).is_empty(), "{:#?}", diags(BASE));
}

#[test]
fn forward_delay_range_depends_on_stp() {
    let t = BASE.replace(
        "name = \"br1\"",
        "name = \"br1\"\nstp = true\nforward_delay = 1",
    );
    one(
        &t,
        Severity::Error,
        line_of(&t, "forward_delay"),
        "with stp = true it must be 2 to 30 seconds",
    );
    let t = BASE.replace("name = \"br1\"", "name = \"br1\"\nforward_delay = 31");
    one(
        &t,
        Severity::Error,
        line_of(&t, "forward_delay"),
        "0 to 30 seconds",
    );
    let t = BASE.replace("name = \"br1\"", "name = \"br1\"\nforward_delay = 0");
    assert!(of(&t, Severity::Error).is_empty());
}

#[test]
fn mtu_out_of_range() {
    let t = BASE.replace("name = \"br1\"", "name = \"br1\"\nmtu = 67");
    one(&t, Severity::Error, line_of(&t, "mtu = 67"), "");
}

#[test]
fn rp_filter_is_one_of_three_words() {
    let t = BASE.replace("name = \"br1\"", "name = \"br1\"\nrp_filter = \"medium\"");
    one(&t, Severity::Error, line_of(&t, "rp_filter"), "");
}

#[test]
fn a_route_needs_a_gateway_or_an_interface() {
    let t = add("\n[[link.route]]\nto = \"10.50.0.0/16\"\n");
    one(
        &t,
        Severity::Error,
        line_of(&t, "[[link.route]]"),
        "needs `via` (a gateway) or `dev`",
    );
}

#[test]
fn a_gateway_of_the_other_family() {
    let t = add("\n[[link.route]]\nto = \"2001:db8::/32\"\nvia = \"10.17.5.2\"\n");
    one(
        &t,
        Severity::Error,
        line_of(&t, "via ="),
        "is not of the same IP family",
    );
}

#[test]
fn a_gateway_outside_every_managed_subnet_is_a_warning() {
    let t = add("\n[[link.route]]\nto = \"10.50.0.0/16\"\nvia = \"10.99.0.1\"\n");
    assert!(of(&t, Severity::Error).is_empty());
    let d = one(
        &t,
        Severity::Warning,
        line_of(&t, "via ="),
        "is not inside any managed bridge subnet",
    );
    assert!(d.hint.unwrap().contains("refuses a route"));
}

#[test]
fn a_route_out_of_a_bridge_port() {
    let t = add("\n[[link.route]]\nto = \"10.50.0.0/16\"\ndev = \"enp3s0f0\"\n");
    let d = one(
        &t,
        Severity::Error,
        line_of(&t, "dev = \"enp3s0f0\""),
        "is a port of bridge `br-api`",
    );
    assert_eq!(
        d.hint.as_deref(),
        Some("route through the bridge: dev = \"br-api\"")
    );
}

#[test]
fn a_protected_bridge_name() {
    let t = BASE.replace("name = \"br1\"", "name = \"enp4s0f1\"");
    let d = one(
        &t,
        Severity::Error,
        line_of(&t, "name = \"enp4s0f1\""),
        "bridge `enp4s0f1` is a protected interface",
    );
    assert!(d.hint.unwrap().contains("never touched"));
}

#[test]
fn a_bridge_as_its_own_port() {
    let t = BASE.replace("ports = [\"enp4s0f0\"]", "ports = [\"br1\"]");
    one(
        &t,
        Severity::Error,
        line_of(&t, "ports = [\"br1\"]"),
        "cannot be a port of itself",
    );
}

#[test]
fn a_managed_bridge_as_a_port_of_another() {
    let t = BASE.replace("ports = [\"enp4s0f0\"]", "ports = [\"br-api\"]");
    one(
        &t,
        Severity::Error,
        line_of(&t, "ports = [\"br-api\"]"),
        "is itself a managed bridge",
    );
}

#[test]
fn an_address_on_two_bridges() {
    let t = BASE.replace("10.17.5.1/24", "10.0.0.30/24");
    one(
        &t,
        Severity::Error,
        line_of(&t, "name = \"br1\"") + 2,
        "address 10.0.0.30 is assigned twice",
    );
}

#[test]
fn port_options_rules() {
    let t = add("\n[[link.port]]\nname = \"enp3s0f1\"\n");
    let d = one(
        &t,
        Severity::Error,
        line_of(&t, "enp3s0f1"),
        "is not a port of any [[link.bridge]]",
    );
    assert!(d.hint.unwrap().contains("add it to a bridge"));
    let t = add("\n[[link.port]]\nname = \"enp4s0f1\"\n");
    one(
        &t,
        Severity::Error,
        line_of(&t, "name = \"enp4s0f1\""),
        "port options name protected interface",
    );
    let t = add(
        "\n[[link.port]]\nname = \"enp3s0f0\"\n\n[[link.port]]\nname = \"enp3s0f0\"\nhairpin = true\n",
    );
    one(
        &t,
        Severity::Error,
        t.lines().count() as u32 - 1,
        "options for port `enp3s0f0` are given twice",
    );
    let t = add("\n[[link.port]]\nname = \"enp3s0f0\"\npriority = 64\n");
    one(&t, Severity::Error, line_of(&t, "priority"), "");
}

#[test]
fn a_protected_interface_listed_twice_is_a_warning() {
    let t = BASE.replace(
        "protected = [\"enp4s0f1\"]",
        "protected = [\"enp4s0f1\", \"enp4s0f1\"]",
    );
    assert!(of(&t, Severity::Error).is_empty());
    one(
        &t,
        Severity::Warning,
        line_of(&t, "protected"),
        "is listed twice",
    );
}
