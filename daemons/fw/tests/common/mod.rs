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

/// The reference host's topology (config/edge.toml) with the host configured the way edge-link would leave it, a
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
    // inet also holds a Cloudflare edge's address (see [`CF4`]); the router's default route
    // leads back to it.
    t.addr("inet", "eth0", &format!("{CF4}/32"));
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
    // A Cloudflare edge on "the internet" (an address in its published ranges), which the
    // origin lock admits to the web forwards; the router reaches it through inet.
    addr("inet", "eth0", CF6, 128);
    t.ns("router")
        .ip(["-6", "route", "add", &format!("{CF6}/128"), "via", v6::INET]);
}

/// An address of Cloudflare's published IPv4 ranges held by `inet`: what the origin lock
/// admits (a proxied visitor arrives from such an address).
pub const CF4: &str = "173.245.48.10";
/// The same for IPv6.
pub const CF6: &str = "2400:cb00::10";

/// `curl` from `ns` with source address `src` (a Cloudflare edge, or not), once.
pub fn curl_from(ns: &Netns, src: &str, url: &str) -> Option<String> {
    let out = ns.try_exec(
        "curl",
        ["-s", "-g", "--max-time", "2", "--interface", src, url],
    );
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// [`curl_from`] until it returns a body (up to 8 s).
pub fn curl_from_retry(ns: &Netns, src: &str, url: &str) -> Option<String> {
    let mut body = None;
    wait_for(Duration::from_secs(8), || {
        body = curl_from(ns, src, url);
        body.is_some()
    });
    body
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

// ---------------------------------------------------------------------------------------
// The independent reader: `nft -j list table` must agree with the netlink read-back.
// ---------------------------------------------------------------------------------------

use std::collections::BTreeSet;

use edge_fw::nfnl::Socket;
use edge_fw::wire::{Counter, Live, Table};

/// One line per object of our tables: chains with their hook, priority and policy, rules
/// (position and comment), sets with their size and each element in nft notation, counter
/// names. Counter values are compared apart (they move while packets flow).
pub type View = BTreeSet<String>;

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An element's key or data as our rendering writes it: the interface name quoted.
fn json_concat(v: &serde_json::Value, quote_first: bool) -> String {
    match v.get("concat").and_then(|c| c.as_array()) {
        Some(parts) => parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if i == 0 && quote_first {
                    format!("\"{}\"", scalar(p))
                } else {
                    scalar(p)
                }
            })
            .collect::<Vec<_>>()
            .join(" . "),
        None => scalar(v),
    }
}

/// A prefix or range element of an interval set as nft -j shows it.
fn json_interval(v: &serde_json::Value) -> Option<String> {
    if let Some(p) = v.get("prefix") {
        return Some(format!("{}/{}", scalar(&p["addr"]), scalar(&p["len"])));
    }
    let r = v.get("range")?.as_array()?;
    Some(format!("{}-{}", scalar(&r[0]), scalar(&r[1])))
}

fn json_data(v: &serde_json::Value) -> String {
    if let Some(t) = v.get("jump").and_then(|j| j.get("target")) {
        return format!("jump {}", scalar(t));
    }
    if let Some(s) = v.as_str() {
        return format!("\"{s}\"");
    }
    json_concat(v, false)
}

/// What `nft -j list table inet NAME` shows of our tables (run in the calling thread's
/// namespace), and the counters' values.
pub fn nft_view() -> (View, BTreeMap<String, (u64, u64)>) {
    let mut view = View::new();
    let mut counters = BTreeMap::new();
    for table in [edge_fw::ir::TABLE, edge_fw::ir::STATE_TABLE] {
        let out = Command::new("nft")
            .args(["-j", "list", "table", "inet", table])
            .output()
            .expect("nft");
        if !out.status.success() {
            continue;
        }
        view.insert(format!("table {table}"));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j output");
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for o in v["nftables"].as_array().expect("nftables") {
            if let Some(c) = o.get("chain") {
                let name = scalar(&c["name"]);
                match c.get("hook") {
                    Some(h) => view.insert(format!(
                        "chain {table}/{name} type {} hook {} prio {} policy {}",
                        scalar(&c["type"]),
                        scalar(h),
                        scalar(&c["prio"]),
                        scalar(&c["policy"])
                    )),
                    None => view.insert(format!("chain {table}/{name}")),
                };
            } else if let Some(r) = o.get("rule") {
                let chain = scalar(&r["chain"]);
                let i = index.entry(chain.clone()).or_default();
                view.insert(format!(
                    "rule {table}/{chain} #{i} {}",
                    r.get("comment").map(scalar).unwrap_or_default()
                ));
                *i += 1;
            } else if let Some(s) = o.get("set").or_else(|| o.get("map")) {
                let name = scalar(&s["name"]);
                let size = s.get("size").map(scalar).unwrap_or_else(|| "-".into());
                view.insert(format!("set {table}/{name} size {size}"));
                for e in s
                    .get("elem")
                    .and_then(|e| e.as_array())
                    .into_iter()
                    .flatten()
                {
                    let line = match (e.as_array(), json_interval(e)) {
                        (_, Some(i)) => i,
                        (Some(kv), None) => {
                            format!("{} : {}", json_concat(&kv[0], true), json_data(&kv[1]))
                        }
                        (None, None) => match e.as_str() {
                            Some(a) => a.to_owned(),
                            None => json_concat(e, true),
                        },
                    };
                    view.insert(format!("elem {table}/{name} {line}"));
                }
            } else if let Some(c) = o.get("counter") {
                let name = scalar(&c["name"]);
                view.insert(format!("counter {table}/{name}"));
                let n = |k: &str| c.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
                counters.insert(name, (n("packets"), n("bytes")));
            }
        }
    }
    (view, counters)
}

fn table_view(t: &Table, view: &mut View) {
    let name = &t.name;
    view.insert(format!("table {name}"));
    for c in &t.chains {
        match &c.base {
            Some(b) => view.insert(format!(
                "chain {name}/{} type {} hook {} prio {} policy {}",
                c.name,
                b.kind,
                b.hook_name(),
                b.priority,
                b.policy_name()
            )),
            None => view.insert(format!("chain {name}/{}", c.name)),
        };
        for (i, r) in c.rules.iter().enumerate() {
            view.insert(format!(
                "rule {name}/{} #{i} {}",
                c.name,
                r.comment.clone().unwrap_or_default()
            ));
        }
    }
    for s in &t.sets {
        let size = s
            .spec
            .size
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into());
        view.insert(format!("set {name}/{} size {size}", s.name));
        if s.spec.flags & edge_fw::uapi::NFT_SET_INTERVAL != 0 {
            for r in intervals(&s.elements) {
                view.insert(format!("elem {name}/{} {r}", s.name));
            }
            continue;
        }
        for e in &s.elements {
            view.insert(format!("elem {name}/{} {}", s.name, e.render(&s.spec)));
        }
    }
    for c in t.counters.keys() {
        view.insert(format!("counter {name}/{c}"));
    }
}

/// The ranges of an interval set's elements (each start with the end that follows it), as
/// nft -j shows them: `addr/len` for a prefix, `first-last` otherwise.
fn intervals(elems: &[edge_fw::wire::Elem]) -> Vec<String> {
    let ip = |k: &[u8]| -> IpAddr {
        match k.len() {
            4 => IpAddr::from(<[u8; 4]>::try_from(k).expect("v4")),
            _ => IpAddr::from(<[u8; 16]>::try_from(k).expect("v6")),
        }
    };
    let end = edge_fw::uapi::NFT_SET_ELEM_INTERVAL_END;
    let mut out = Vec::new();
    let starts = elems.iter().filter(|e| e.flags & end == 0);
    for s in starts {
        let first = ip(&s.key);
        // The end: the first end element after the start; none means up to the last address.
        let last = elems
            .iter()
            .filter(|e| e.flags & end != 0 && e.key > s.key)
            .map(|e| ip(&e.key))
            .min()
            .map(|after| match after {
                IpAddr::V4(a) => IpAddr::V4((u32::from(a) - 1).into()),
                IpAddr::V6(a) => IpAddr::V6((u128::from(a) - 1).into()),
            })
            .unwrap_or(match first {
                IpAddr::V4(_) => IpAddr::V4(u32::MAX.into()),
                IpAddr::V6(_) => IpAddr::V6(u128::MAX.into()),
            });
        let nets: Vec<ipnet::IpNet> = match (first, last) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                ipnet::Ipv4Subnets::new(a, b, 0).map(Into::into).collect()
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                ipnet::Ipv6Subnets::new(a, b, 0).map(Into::into).collect()
            }
            _ => Vec::new(),
        };
        match nets.as_slice() {
            [one] => out.push(one.to_string()),
            _ => out.push(format!("{first}-{last}")),
        }
    }
    out
}

/// What our netlink read-back shows, in the same form as [`nft_view`].
pub fn our_view(live: &Live) -> View {
    let mut view = View::new();
    for t in [&live.edge, &live.state].into_iter().flatten() {
        table_view(t, &mut view);
    }
    view
}

/// Reads our tables over netlink (in the calling thread's namespace) and asserts that
/// `nft -j list table`, an independent reader, agrees on every object; counters may only
/// have grown between the two reads.
pub fn read_live_checked() -> Live {
    let sock = Socket::open().expect("nf_tables socket");
    let live = edge_fw::observe::read_live(&sock).expect("netlink read-back");
    let (nft, counters) = nft_view();
    let ours = our_view(&live);
    let only_ours: Vec<&String> = ours.difference(&nft).collect();
    let only_nft: Vec<&String> = nft.difference(&ours).collect();
    assert!(
        only_ours.is_empty() && only_nft.is_empty(),
        "the netlink read-back and `nft -j list` disagree:\n only netlink: {only_ours:#?}\n only nft: {only_nft:#?}"
    );
    let state = live.counters();
    for (name, Counter { packets, bytes }) in &state {
        let (np, nb) = counters.get(name).copied().unwrap_or_default();
        assert!(
            np >= *packets && nb >= *bytes,
            "counter {name}: netlink read {packets}/{bytes}, nft later {np}/{nb}"
        );
    }
    live
}

/// Applies `rs` in the calling thread's namespace through a socket of its own.
pub fn apply(
    m: &Model,
    rs: &Ruleset,
    opts: edge_fw::apply::Options,
) -> Result<edge_fw::apply::Report, edge_fw::apply::ApplyError> {
    let sock = Socket::open()?;
    edge_fw::apply::apply(&sock, m, rs, opts)
}

/// Differences between the live tables and `rs` (empty: converged), read over netlink and
/// checked against `nft -j`.
pub fn diff(rs: &Ruleset) -> Vec<String> {
    let live = read_live_checked();
    edge_fw::wire::lines(&edge_fw::wire::diff(&edge_fw::lower::ruleset(rs), &live))
}

/// True when the live tables match `rs` (netlink only: for polling).
pub fn converged(rs: &Ruleset) -> bool {
    Socket::open()
        .ok()
        .and_then(|s| edge_fw::observe::read_live(&s).ok())
        .is_some_and(|l| edge_fw::wire::diff(&edge_fw::lower::ruleset(rs), &l).is_empty())
}

/// The counters of `inet edge_state`, read over netlink and checked against `nft -j`.
pub fn counters() -> BTreeMap<String, Counter> {
    read_live_checked().counters()
}

/// `m` with the interfaces' addresses of the calling thread's namespace, as the daemon
/// builds its model (the probes of a confirm-apply start from them).
pub fn here(m: &Model) -> Model {
    let mut m = m.clone();
    m.env.addresses = edge_fw::observe::interface_addresses().expect("addresses");
    m
}
