//! Helpers shared by the namespaced tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use edge_fw::compile::compile;
use edge_fw::ir::Ruleset;
use edge_fw::model::Model;

/// Namespace prefix of every namespace these tests create.
pub const PREFIX: &str = "efw";

/// The reference configuration.
pub fn reference() -> edge_config::Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/edge.toml");
    let text = std::fs::read_to_string(&path).expect("config/edge.toml is readable");
    parse(&path, &text)
}

/// Parses config text (panics with the diagnostics).
pub fn parse(path: &Path, text: &str) -> edge_config::Config {
    match edge_config::parse(path, text) {
        Ok(l) => l.config,
        Err(d) => panic!("config refused:\n{d}"),
    }
}

/// Model and ruleset of a config, with optional interface addresses.
pub fn build(cfg: &edge_config::Config, addrs: BTreeMap<String, Vec<IpAddr>>) -> (Model, Ruleset) {
    let m = Model::from_config(cfg, addrs).expect("model");
    let rs = compile(&m).expect("compile");
    (m, rs)
}

use std::process::Command;
use std::time::Duration;

use edge_testkit::{ChildGuard, Netns, Topology, wait_for};

/// The DESIGN.md topology with the host configured the way edge-link would leave it, a
/// stand-in for the WireGuard interface (a veth named `wg0` to node `wgpeer`: the firewall
/// only sees `iifname "wg0"` and tunnel addresses), and servers on the load balancer.
pub struct Lab {
    /// The namespaces (dropped last).
    pub topo: Topology,
    /// Servers started in the namespaces (dropped first, killed by PID).
    pub servers: Vec<ChildGuard>,
}

impl Lab {
    /// A namespace of the lab.
    pub fn ns(&self, node: &str) -> &Netns {
        self.topo.ns(node)
    }
}

/// Builds the lab: inet -> router -> host br-api 192.198.0.30 -> (DNAT) -> lb 10.17.5.30/.10.
pub fn lab() -> Lab {
    let mut t = Topology::reference_host(PREFIX);
    t.add("wgpeer");
    // A VM on the web bridge next to the load balancer (its tap device `vnet0`, as libvirt
    // names them, enslaved to br1).
    t.add("vm");
    t.link("vm", "eth0", "host", "vnet0");
    t.addr("vm", "eth0", "10.17.5.50/24");
    t.route("vm", &["default", "via", "10.17.5.1"]);
    t.link("wgpeer", "eth0", "host", "wg0");
    t.addr("wgpeer", "eth0", "10.17.9.2/24");
    t.route("wgpeer", &["default", "via", "10.17.9.1"]);
    let h = t.ns("host");
    for (br, port, addr) in [
        ("br-api", "enp3s0f0", "192.198.0.30/24"),
        ("br1", "enp4s0f0", "10.17.5.1/24"),
    ] {
        h.ip(["link", "add", br, "type", "bridge", "forward_delay", "0"]);
        h.ip(["link", "set", port, "master", br]);
        h.ip(["addr", "add", addr, "dev", br]);
        h.ip(["link", "set", br, "up"]);
    }
    h.ip(["link", "set", "vnet0", "master", "br1"]);
    h.ip(["link", "add", "br0", "type", "bridge", "forward_delay", "0"]);
    h.ip(["addr", "add", "10.17.3.1/24", "dev", "br0"]);
    h.ip(["link", "set", "br0", "up"]);
    h.ip(["addr", "add", "192.168.1.1/24", "dev", "enp4s0f1"]);
    h.ip(["addr", "add", "10.17.9.1/24", "dev", "wg0"]);
    h.ip(["route", "add", "default", "via", "192.198.0.1"]);
    t.forward("host");
    // "The internet" reaches the host's public-side address through the ISP router.
    t.route("inet", &["192.198.0.0/24", "via", "198.18.0.2"]);
    t.route("admin", &["default", "via", "192.168.1.1"]);
    let lb = t.ns("lb");
    let mut servers = Vec::new();
    for (addr, port) in [
        ("10.17.5.30", 80),
        ("10.17.5.30", 443),
        ("10.17.5.10", 6443),
    ] {
        servers.push(http_server(lb, addr, port));
    }
    servers.push(echo_server(lb, "10.17.5.30", 8080));
    // SSH and WireGuard stand-ins on the host itself.
    let host = t.ns("host");
    servers.push(http_server(host, "0.0.0.0", 22));
    let mut udp = Command::new("socat");
    udp.args([
        "-T2",
        "UDP4-RECVFROM:51820,fork,reuseaddr",
        "SYSTEM:echo wg",
    ]);
    servers.push(host.spawn("udp-51820", udp));
    for (ns, port) in [(lb, 80), (lb, 443), (lb, 6443), (lb, 8080), (host, 22)] {
        wait_listening(ns, port);
    }
    Lab { topo: t, servers }
}

/// A tiny HTTP server answering `ADDR port PORT` (socat, one process per connection).
pub fn http_server(ns: &Netns, addr: &str, port: u16) -> ChildGuard {
    let mut c = Command::new("socat");
    // socat splits its address on `,` and `:` and mangles `\\`: plain echoes only.
    c.arg(format!("TCP4-LISTEN:{port},bind={addr},reuseaddr,fork"))
        .arg(format!(
            "SYSTEM:echo HTTP/1.0 200 OK; echo; echo {addr} port {port}"
        ));
    ns.spawn(&format!("http-{addr}-{port}"), c)
}

/// A TCP echo server.
pub fn echo_server(ns: &Netns, addr: &str, port: u16) -> ChildGuard {
    let mut c = Command::new("socat");
    c.arg(format!("TCP4-LISTEN:{port},bind={addr},reuseaddr,fork"))
        .arg("EXEC:cat");
    ns.spawn(&format!("echo-{addr}-{port}"), c)
}

/// Waits until something listens on TCP `port` in `ns`.
pub fn wait_listening(ns: &Netns, port: u16) {
    let ok = wait_for(Duration::from_secs(5), || {
        let out = ns.try_exec("ss", ["-Hltn", &format!("sport = :{port}")]);
        !String::from_utf8_lossy(&out.stdout).trim().is_empty()
    });
    assert!(ok.is_some(), "nothing listens on {port} in {}", ns.name());
}

/// `curl http://URL` from `ns`: the body, or `None` when it fails (timeout 2 s).
pub fn curl(ns: &Netns, url: &str) -> Option<String> {
    let out = ns.try_exec("curl", ["-s", "--max-time", "2", url]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `curl` until it returns a body (up to 8 s: the machine may be loaded by parallel tests);
/// the last body or `None`.
pub fn curl_retry(ns: &Netns, url: &str) -> Option<String> {
    let mut last = None;
    wait_for(Duration::from_secs(8), || {
        last = curl(ns, url);
        last.is_some()
    });
    last
}
