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

/// Path of the reference configuration, `config/edge.toml`.
pub fn reference_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/edge.toml")
}

/// The reference configuration.
pub fn reference() -> edge_config::Config {
    let path = reference_path();
    let text = std::fs::read_to_string(&path).expect("config/edge.toml is readable");
    parse(&path, &text)
}

/// IPv6 addresses of the dual-stack lab (documentation and ULA prefixes; they exist only in
/// the test namespaces).
pub mod v6 {
    /// "The internet" (`inet` eth0).
    pub const INET: &str = "2001:db8:18::1";
    /// The ISP router's WAN side.
    pub const ROUTER_WAN: &str = "2001:db8:18::2";
    /// The ISP router's LAN side (towards br-api).
    pub const ROUTER_LAN: &str = "2001:db8:c6::1";
    /// The host's public address on br-api.
    pub const HOST_WAN: &str = "2001:db8:c6::30";
    /// The host on the VM network (br1).
    pub const HOST_VMS: &str = "fd17:5::1";
    /// The ingress VIP on the load balancer.
    pub const INGRESS: &str = "fd17:5::30";
    /// The API VIP on the load balancer.
    pub const API: &str = "fd17:5::10";
    /// A VM on br1.
    pub const VM: &str = "fd17:5::50";
    /// The host on the WireGuard network (wg0).
    pub const HOST_WG: &str = "fd17:9::1";
    /// The WireGuard peer.
    pub const WGPEER: &str = "fd17:9::2";
    /// The host on the admin LAN (enp4s0f1).
    pub const HOST_ADMIN: &str = "fd00:1::1";
    /// The admin's machine.
    pub const ADMIN: &str = "fd00:1::10";
}

/// The reference configuration made dual-stack: IPv6 on br-api, br1, wg0 and in the admin,
/// WireGuard and VM networks, an IPv6 port-forward with hairpin (80 -> the ingress VIP) and
/// an IPv6 forward restricted to the WireGuard network (6443 -> the API VIP). The IPv4
/// forwards stay as they are; masquerade `egress` now covers the IPv6 VM network too.
pub fn dual_stack_text() -> String {
    let path = reference_path();
    let text = std::fs::read_to_string(&path).expect("config/edge.toml is readable");
    let edits = [
        (
            "addresses = [\"192.198.0.30/24\"]",
            "addresses = [\"192.198.0.30/24\", \"2001:db8:c6::30/64\"]",
        ),
        (
            "addresses = [\"10.17.5.1/24\"]",
            "addresses = [\"10.17.5.1/24\", \"fd17:5::1/64\"]",
        ),
        (
            "addresses = [\"10.17.9.1/24\"]",
            "addresses = [\"10.17.9.1/24\", \"fd17:9::1/64\"]",
        ),
        (
            "allowed_ips = [\"10.17.9.2/32\"]",
            "allowed_ips = [\"10.17.9.2/32\", \"fd17:9::2/128\"]",
        ),
        (
            "admin = [\"192.168.1.0/24\"]",
            "admin = [\"192.168.1.0/24\", \"fd00:1::/64\"]",
        ),
        (
            "wireguard = [\"10.17.9.0/24\"]",
            "wireguard = [\"10.17.9.0/24\", \"fd17:9::/64\"]",
        ),
        (
            "vms = [\"10.17.3.0/24\", \"10.17.4.0/24\", \"10.17.5.0/24\"]",
            "vms = [\"10.17.3.0/24\", \"10.17.4.0/24\", \"10.17.5.0/24\", \"fd17:5::/64\"]",
        ),
    ];
    let mut t = text;
    for (from, to) in edits {
        assert!(t.contains(from), "config/edge.toml lacks {from}");
        t = t.replacen(from, to, 1);
    }
    t.push_str(
        "\n[[fw.forward]]\nname = \"http6\"\nproto = \"tcp\"\nport = 80\non = [\"br-api\"]\naddress = \"2001:db8:c6::30\"\nto = \"fd17:5::30\"\nhairpin = true\n\
         \n[[fw.forward]]\nname = \"k8s-api6\"\nproto = \"tcp\"\nport = 6443\non = [\"br-api\", \"wg0\"]\naddress = \"2001:db8:c6::30\"\nto = \"fd17:5::10\"\nfrom = [\"wireguard\"]\n",
    );
    t
}

/// The dual-stack configuration (see [`dual_stack_text`]).
pub fn dual_stack() -> edge_config::Config {
    parse(&reference_path(), &dual_stack_text())
}

/// Parses config text (panics with the diagnostics).
pub fn parse(path: &Path, text: &str) -> edge_config::Config {
    match edge_config::parse(path, text) {
        Ok(l) => l.config,
        Err(d) => panic!("config refused:\n{d}"),
    }
}

/// `text` with SSH limited to the WireGuard interface (`interfaces = ["wg0"]`): the admin LAN
/// arrives on enp4s0f1 (never named in [fw]), so its SSH is dropped, while the symbolic
/// check finds wg0 admitting the admin network and passes. Only the replica sees it.
pub fn wg0_only_ssh(text: &str) -> String {
    let t = text.replacen(
        "from = [\"admin\", \"wireguard\"]\n",
        "from = [\"admin\", \"wireguard\"]\ninterfaces = [\"wg0\"]\n",
        1,
    );
    assert_ne!(t, text, "the SSH rule of the config was not found");
    t
}

/// Leaves the calling thread, and the threads and processes it starts, without
/// CAP_SYS_ADMIN, as the shipped unit leaves edge-fw: it is dropped from the bounding,
/// inheritable, effective and permitted sets (so neither the thread nor a program it runs,
/// root or not, gets it back). Asserts that `unshare(CLONE_NEWNET)` then fails with EPERM,
/// tried on a thread of its own so that a success would move no test thread.
pub fn drop_cap_sys_admin() {
    use caps::{CapSet, Capability};
    for set in [
        CapSet::Bounding,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::drop(None, set, Capability::CAP_SYS_ADMIN)
            .unwrap_or_else(|e| panic!("drop CAP_SYS_ADMIN from {set:?}: {e}"));
    }
    let unshare = std::thread::spawn(|| nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET))
        .join()
        .expect("unshare thread");
    assert_eq!(
        unshare,
        Err(nix::errno::Errno::EPERM),
        "without CAP_SYS_ADMIN, creating a network namespace must fail with EPERM"
    );
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
    dual_stack_lab(&t);
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
    // IPv6 servers: the VIPs, SSH and WireGuard stand-ins, and a server on "the internet"
    // that says who connected (for masquerade).
    for (ns, addr, port) in [
        (lb, v6::INGRESS, 80),
        (lb, v6::API, 6443),
        (host, "::", 22),
        (t.ns("inet"), v6::INET, 8000),
    ] {
        servers.push(http_server6(ns, addr, port));
    }
    let mut udp6 = Command::new("socat");
    udp6.args([
        "-T2",
        "UDP6-RECVFROM:51820,ipv6only=1,fork,reuseaddr",
        "SYSTEM:echo wg6",
    ]);
    servers.push(host.spawn("udp6-51820", udp6));
    for (ns, addr, port) in [
        (lb, v6::INGRESS, 80),
        (lb, v6::API, 6443),
        (host, "::", 22),
        (t.ns("inet"), v6::INET, 8000),
    ] {
        wait_listening6(ns, addr, port);
    }
    Lab { topo: t, servers }
}

/// IPv6 on the lab: the internet and the ISP router, br-api, the VM network on br1 (the load
/// balancer and the VM), the WireGuard stand-in and the admin LAN; the host and the router
/// route IPv6. Addresses skip duplicate address detection (`nodad`) so they work at once.
fn dual_stack_lab(t: &Topology) {
    let addr = |node: &str, dev: &str, a: &str, len: u8| {
        t.ns(node)
            .ip(["addr", "add", &format!("{a}/{len}"), "dev", dev, "nodad"]);
    };
    addr("inet", "eth0", v6::INET, 64);
    addr("router", "wan", v6::ROUTER_WAN, 64);
    addr("router", "lan0", v6::ROUTER_LAN, 64);
    addr("host", "br-api", v6::HOST_WAN, 64);
    addr("host", "br1", v6::HOST_VMS, 64);
    addr("host", "wg0", v6::HOST_WG, 64);
    addr("host", "enp4s0f1", v6::HOST_ADMIN, 64);
    addr("lb", "eth0", v6::INGRESS, 64);
    addr("lb", "eth0", v6::API, 64);
    addr("vm", "eth0", v6::VM, 64);
    addr("wgpeer", "eth0", v6::WGPEER, 64);
    addr("admin", "eth0", v6::ADMIN, 64);
    for (node, via) in [
        ("host", v6::ROUTER_LAN),
        ("lb", v6::HOST_VMS),
        ("vm", v6::HOST_VMS),
        ("wgpeer", v6::HOST_WG),
        ("admin", v6::HOST_ADMIN),
    ] {
        t.ns(node).ip(["-6", "route", "add", "default", "via", via]);
    }
    // The internet knows the host's public prefix only; the VM network (ULA) is not routed
    // there, so VM traffic reaches the internet only when masqueraded.
    t.ns("inet").ip([
        "-6",
        "route",
        "add",
        "2001:db8:c6::/64",
        "via",
        v6::ROUTER_WAN,
    ]);
    for node in ["host", "router"] {
        t.ns(node)
            .exec("sysctl", ["-qw", "net.ipv6.conf.all.forwarding=1"]);
    }
}

/// A tiny HTTP server on IPv6 answering `[LOCAL] port PORT from [PEER]` (socat writes the
/// addresses in full, bracketed: parse them with [`who6`]).
pub fn http_server6(ns: &Netns, addr: &str, port: u16) -> ChildGuard {
    let mut c = Command::new("socat");
    c.arg(format!(
        "TCP6-LISTEN:{port},bind=[{addr}],ipv6only=1,reuseaddr,fork"
    ))
    .arg(
        "SYSTEM:echo HTTP/1.0 200 OK; echo; echo $SOCAT_SOCKADDR port $SOCAT_SOCKPORT from $SOCAT_PEERADDR",
    );
    ns.spawn(&format!("http6-{addr}-{port}"), c)
}

/// What an [`http_server6`] answered: the local address and port it was reached on, and the
/// peer address it saw.
pub fn who6(body: &str) -> Option<(IpAddr, u16, IpAddr)> {
    let mut w = body.split_whitespace();
    let ip = |s: &str| s.trim_matches(['[', ']']).parse::<IpAddr>().ok();
    let local = ip(w.next()?)?;
    let port = (w.next()? == "port").then(|| w.next())??.parse().ok()?;
    let peer = (w.next()? == "from").then(|| w.next())??;
    Some((local, port, ip(peer)?))
}

/// Parses an address constant of [`v6`].
pub fn ip6(a: &str) -> IpAddr {
    a.parse().expect("an IPv6 address")
}

/// Waits until something listens on `[addr]:port` (TCP, IPv6) in `ns`.
pub fn wait_listening6(ns: &Netns, addr: &str, port: u16) {
    let want = format!("[{addr}]:{port}");
    let ok = wait_for(Duration::from_secs(5), || {
        let out = ns.try_exec("ss", ["-Hltn6"]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|w| w == want || (addr == "::" && w == format!("*:{port}")))
    });
    assert!(ok.is_some(), "nothing listens on {want} in {}", ns.name());
}

/// `curl -6 http://[ADDR]:PORT/` from `ns`, retried like [`curl_retry`].
pub fn curl6_retry(ns: &Netns, addr: &str, port: u16) -> Option<String> {
    curl_retry(ns, &format!("http://[{addr}]:{port}/"))
}

/// `curl -6 http://[ADDR]:PORT/` from `ns` once (timeout 2 s).
pub fn curl6(ns: &Netns, addr: &str, port: u16) -> Option<String> {
    curl(ns, &format!("http://[{addr}]:{port}/"))
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
    // -g: IPv6 literals in brackets are not URL globs.
    let out = ns.try_exec("curl", ["-s", "-g", "--max-time", "2", url]);
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
