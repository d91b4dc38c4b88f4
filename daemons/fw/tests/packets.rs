//! Packet tests in namespaces with the reference host's topology: real TCP through the compiled
//! ruleset, applied over netlink in the `host` namespace.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use common::{Lab, curl};
use edge_fw::apply::{self, Options};
use edge_fw::ir::Ruleset;
use edge_fw::model::Model;

fn apply_in_host(lab: &Lab, m: &Model, rs: &Ruleset) {
    let (m, rs) = (m.clone(), rs.clone());
    lab.ns("host")
        .run(move || {
            common::apply(&m, &rs, Options::default())
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
}

#[test]
fn cloudflare_reaches_ingress_on_80_and_443_direct_hits_are_dropped_and_only_wireguard_reaches_6443()
 {
    let lab = common::lab();
    let (m, rs) = common::build(&common::reference(), Default::default());
    // Before: nothing forwards 192.198.0.30:80 (the host has no listener there).
    assert_eq!(curl(lab.ns("inet"), "http://192.198.0.30/"), None);
    apply_in_host(&lab, &m, &rs);
    // The web forwards are locked to Cloudflare's ranges: a Cloudflare edge gets through...
    assert_eq!(
        common::curl_from_retry(lab.ns("inet"), common::CF4, "http://192.198.0.30/").as_deref(),
        Some("10.17.5.30 port 80")
    );
    assert_eq!(
        common::curl_from_retry(lab.ns("inet"), common::CF4, "http://192.198.0.30:443/").as_deref(),
        Some("10.17.5.30 port 443")
    );
    // ...a direct hit from anywhere else does not, and is counted.
    assert_eq!(
        common::curl_from(lab.ns("inet"), "198.18.0.1", "http://192.198.0.30/"),
        None,
        "a direct hit around Cloudflare"
    );
    assert!(counter(&lab, "lockdrop_http") > 0, "the drop is counted");
    // 6443: the internet is outside the allow-list; the WireGuard network is inside.
    assert_eq!(curl(lab.ns("inet"), "http://192.198.0.30:6443/"), None);
    assert_eq!(
        common::curl_retry(lab.ns("wgpeer"), "http://192.198.0.30:6443/").as_deref(),
        Some("10.17.5.10 port 6443")
    );
    // The named counters in inet edge_state saw the traffic.
    let counters = lab.ns("host").run(common::counters);
    let get = |n: &str| counters.get(n).map(|c| c.packets).unwrap_or(0);
    assert!(
        get("fwd_http") > 0 && get("fwd_https") > 0 && get("fwd_k8s-api") > 0,
        "{counters:?}"
    );
}

#[test]
fn input_policy_admits_ssh_from_admin_and_wireguard_only() {
    let lab = common::lab();
    let (m, rs) = common::build(&common::reference(), Default::default());
    apply_in_host(&lab, &m, &rs);
    assert!(
        common::curl_retry(lab.ns("admin"), "http://192.168.1.1:22/").is_some(),
        "ssh from the admin LAN"
    );
    assert!(
        common::curl_retry(lab.ns("wgpeer"), "http://10.17.9.1:22/").is_some(),
        "ssh from WireGuard"
    );
    assert_eq!(
        curl(lab.ns("inet"), "http://192.198.0.30:22/"),
        None,
        "ssh from the internet"
    );
    // WireGuard's UDP port answers from the internet.
    let answered = edge_testkit::wait_for(Duration::from_secs(8), || {
        let out = lab
            .ns("inet")
            .try_exec("sh", ["-c", "echo x | socat -T2 - UDP4:192.198.0.30:51820"]);
        String::from_utf8_lossy(&out.stdout).trim() == "wg"
    });
    assert!(
        answered.is_some(),
        "the WireGuard port answers from the internet"
    );
}

#[test]
fn hairpin_from_the_vm_side_reaches_the_ingress_through_the_public_address() {
    let lab = common::lab();
    let (m, rs) = common::build(&common::reference(), Default::default());
    apply_in_host(&lab, &m, &rs);
    // A VM on the same bridge as the ingress uses the public address: DNAT to the ingress,
    // and source NAT so the ingress answers through the host, not straight to the VM.
    assert_eq!(
        common::curl_retry(lab.ns("vm"), "http://192.198.0.30/").as_deref(),
        Some("10.17.5.30 port 80")
    );
    assert_eq!(
        common::curl_retry(lab.ns("vm"), "http://192.198.0.30:443/").as_deref(),
        Some("10.17.5.30 port 443")
    );
}

#[test]
fn hairpin_off_means_no_reflection() {
    let lab = common::lab();
    let cfg = common::reference();
    let text = std::fs::read_to_string(&cfg.path).expect("read");
    let text = text.replace("hairpin = true", "hairpin = false");
    let cfg = common::parse(&cfg.path, &text);
    let (m, rs) = common::build(&cfg, Default::default());
    apply_in_host(&lab, &m, &rs);
    assert_eq!(
        common::curl_from_retry(lab.ns("inet"), common::CF4, "http://192.198.0.30/").as_deref(),
        Some("10.17.5.30 port 80")
    );
    assert_eq!(curl(lab.ns("vm"), "http://192.198.0.30/"), None);
}

#[test]
fn established_tcp_connections_and_counters_survive_a_reload() {
    let lab = common::lab();
    let cfg = common::reference();
    let base = std::fs::read_to_string(&cfg.path).expect("read");
    let with_echo = format!(
        "{base}\n[[fw.forward]]\n# Echo.\nname = \"echo\"\n# Protocol.\nproto = \"tcp\"\n# Port.\nport = 8080\n# Address.\naddress = \"192.198.0.30\"\n# Target.\nto = \"10.17.5.30\"\n"
    );
    let c1 = common::parse(&cfg.path, &with_echo);
    let (m1, rs1) = common::build(&c1, Default::default());
    apply_in_host(&lab, &m1, &rs1);

    let (to_main, from_client) = mpsc::channel::<String>();
    let (to_client, from_main) = mpsc::channel::<()>();
    let inet = lab.ns("inet").name().to_owned();
    let client = std::thread::spawn(move || {
        let path = format!("/run/netns/{inet}");
        let f = std::fs::File::open(path).expect("netns file");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let mut s = TcpStream::connect_timeout(
            &"192.198.0.30:8080".parse().expect("addr"),
            Duration::from_secs(2),
        )
        .expect("connect through the forward");
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let mut buf = [0u8; 6];
        s.write_all(b"before").expect("write");
        s.read_exact(&mut buf).expect("echo before the reload");
        to_main
            .send(String::from_utf8_lossy(&buf).into_owned())
            .expect("send");
        from_main.recv().expect("reload done");
        s.write_all(b"after!").expect("write after the reload");
        let r = s
            .read_exact(&mut buf)
            .map(|_| String::from_utf8_lossy(&buf).into_owned());
        to_main
            .send(r.unwrap_or_else(|e| format!("read failed: {e}")))
            .expect("send");
    });
    assert_eq!(from_client.recv().expect("client"), "before");
    let counters = |lab: &Lab| lab.ns("host").run(common::counters);
    let echo_before = *counters(&lab).get("fwd_echo").expect("counter");
    assert!(echo_before.packets > 0);
    // Reload with a different ruleset (the https forward removed, ssh rule unchanged).
    let reduced = with_echo.replacen("name = \"https\"", "name = \"https2\"", 1);
    let c2 = common::parse(&cfg.path, &reduced);
    let (m2, rs2) = common::build(&c2, Default::default());
    assert_ne!(rs1, rs2);
    apply_in_host(&lab, &m2, &rs2);
    to_client.send(()).expect("signal");
    assert_eq!(
        from_client.recv().expect("client"),
        "after!",
        "the connection survived the reload"
    );
    client.join().expect("client thread");
    let after = counters(&lab);
    let echo_after = *after.get("fwd_echo").expect("counter kept");
    assert!(
        echo_after.packets > echo_before.packets,
        "counter kept counting: {echo_before:?} -> {echo_after:?}"
    );
    assert!(
        !after.contains_key("fwd_https"),
        "stale counter removed: {after:?}"
    );
    assert!(after.contains_key("fwd_https2"));
}

#[test]
fn a_foreign_libvirt_like_table_is_left_untouched() {
    let lab = common::lab();
    let host = lab.ns("host");
    let libvirt = "table ip libvirt_network {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tcounter packets 0 bytes 0 jump guest_cross\n\t}\n\n\tchain guest_cross {\n\t\tiifname \"virbr0\" oifname \"virbr0\" accept\n\t}\n}\n";
    let mut c = std::process::Command::new("ip");
    c.args(["netns", "exec", host.name(), "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped());
    let mut child = c.spawn().expect("nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(libvirt.as_bytes())
        .expect("write");
    assert!(child.wait().expect("nft").success());
    let before = host
        .exec("nft", ["list", "table", "ip", "libvirt_network"])
        .stdout;
    let (m, rs) = common::build(&common::reference(), Default::default());
    apply_in_host(&lab, &m, &rs);
    let mut rs2 = rs.clone();
    rs2.edge.chains.retain(|c| c.name != "postrouting");
    apply_in_host(&lab, &m, &rs2);
    let after = host
        .exec("nft", ["list", "table", "ip", "libvirt_network"])
        .stdout;
    assert_eq!(
        String::from_utf8_lossy(&before),
        String::from_utf8_lossy(&after)
    );
    let tables = String::from_utf8_lossy(&host.exec("nft", ["list", "tables"]).stdout).into_owned();
    assert!(tables.contains("table ip libvirt_network"), "{tables}");
    let d = lab.ns("host").run(move || common::diff(&rs2));
    assert!(d.is_empty(), "{d:#?}");
}

// ---------------------------------------------------------------------------------------
// IPv6: the same topology, dual-stack (`common::dual_stack`).
// ---------------------------------------------------------------------------------------

use common::{curl6, curl6_retry, ip6, v6, who6};

fn counter(lab: &Lab, name: &str) -> u64 {
    lab.ns("host")
        .run(common::counters)
        .get(name)
        .map(|c| c.packets)
        .unwrap_or(0)
}

fn ping6(ns: &edge_testkit::Netns, addr: &str) -> bool {
    ns.try_exec("ping", ["-6", "-c1", "-W2", addr])
        .status
        .success()
}

#[test]
fn ipv6_internet_reaches_the_ingress_and_only_wireguard_reaches_6443() {
    let lab = common::lab();
    let (m, rs) = common::build(&common::dual_stack(), Default::default());
    assert_eq!(
        curl6(lab.ns("inet"), v6::HOST_WAN, 80),
        None,
        "no forward yet"
    );
    apply_in_host(&lab, &m, &rs);
    // DNAT to the IPv6 ingress VIP; the ingress sees the client's own address.
    let body = curl6_retry(lab.ns("inet"), v6::HOST_WAN, 80).expect("80 over IPv6");
    assert_eq!(
        who6(&body),
        Some((ip6(v6::INGRESS), 80, ip6(v6::INET))),
        "{body}"
    );
    // The IPv4 forwards (locked to Cloudflare) still work next to it.
    assert_eq!(
        common::curl_from_retry(lab.ns("inet"), common::CF4, "http://192.198.0.30/").as_deref(),
        Some("10.17.5.30 port 80")
    );
    // The allow-list: the internet is outside it, the WireGuard network inside.
    assert_eq!(curl6(lab.ns("inet"), v6::HOST_WAN, 6443), None);
    let body = curl6_retry(lab.ns("wgpeer"), v6::HOST_WAN, 6443).expect("6443 from WireGuard");
    assert_eq!(
        who6(&body),
        Some((ip6(v6::API), 6443, ip6(v6::WGPEER))),
        "{body}"
    );
    assert!(counter(&lab, "fwd_http6") > 0 && counter(&lab, "fwd_k8s-api6") > 0);
}

#[test]
fn ipv6_input_policy_admits_neighbour_discovery_echo_and_ssh_from_admin_and_wireguard_only() {
    let lab = common::lab();
    let (m, rs) = common::build(&common::dual_stack(), Default::default());
    apply_in_host(&lab, &m, &rs);
    assert!(
        common::curl6_retry(lab.ns("admin"), v6::HOST_ADMIN, 22).is_some(),
        "ssh from the IPv6 admin LAN"
    );
    assert!(
        common::curl6_retry(lab.ns("wgpeer"), v6::HOST_WG, 22).is_some(),
        "ssh from the IPv6 WireGuard network"
    );
    assert_eq!(
        curl6(lab.ns("inet"), v6::HOST_WAN, 22),
        None,
        "ssh from the internet over IPv6"
    );
    // Echo (and the router's neighbour discovery of the host) through the input chain.
    assert!(
        ping6(lab.ns("inet"), v6::HOST_WAN),
        "ping6 from the internet"
    );
    let answered = edge_testkit::wait_for(Duration::from_secs(8), || {
        let out = lab.ns("inet").try_exec(
            "sh",
            [
                "-c",
                &format!("echo x | socat -T2 - UDP6:[{}]:51820", v6::HOST_WAN),
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim() == "wg6"
    });
    assert!(answered.is_some(), "WireGuard's port answers over IPv6");

    // icmp = false: echo is dropped, but neighbour discovery stays admitted (IPv6 cannot work
    // without it), so SSH from the admin LAN still connects with empty neighbour caches.
    let text = common::dual_stack_text().replace("icmp = true", "icmp = false");
    let (m2, rs2) = common::build(
        &common::parse(&common::reference_path(), &text),
        Default::default(),
    );
    apply_in_host(&lab, &m2, &rs2);
    let flush = |lab: &Lab| {
        for n in ["host", "admin", "router", "inet"] {
            lab.ns(n).ip(["-6", "neigh", "flush", "all"]);
        }
    };
    flush(&lab);
    assert!(!ping6(lab.ns("inet"), v6::HOST_WAN), "echo dropped");
    assert!(
        common::curl6_retry(lab.ns("admin"), v6::HOST_ADMIN, 22).is_some(),
        "ssh from the admin LAN with icmp = false"
    );
    // Control: the same ruleset without the neighbour-discovery rules cuts IPv6 to the host.
    let mut no_nd = rs2.clone();
    for c in &mut no_nd.edge.chains {
        c.rules.retain(|r| !r.origin.id.starts_with("icmpv6/13"));
    }
    let (m3, nd3) = (m2.clone(), no_nd);
    lab.ns("host")
        .run(move || {
            common::apply(
                &m3,
                &nd3,
                Options {
                    skip_safety: true,
                    ..Options::default()
                },
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
        })
        .unwrap_or_else(|e| panic!("apply failed: {e}"));
    flush(&lab);
    assert_eq!(
        curl6(lab.ns("admin"), v6::HOST_ADMIN, 22),
        None,
        "without neighbour discovery the admin cannot reach the host"
    );
}

#[test]
fn ipv6_hairpin_from_the_vm_side_reaches_the_ingress_through_the_public_address() {
    let lab = common::lab();
    let (m, rs) = common::build(&common::dual_stack(), Default::default());
    apply_in_host(&lab, &m, &rs);
    // The ingress sees the host (masqueraded on br1), so it answers through the host.
    let body = curl6_retry(lab.ns("vm"), v6::HOST_WAN, 80).expect("hairpin over IPv6");
    assert_eq!(
        who6(&body),
        Some((ip6(v6::INGRESS), 80, ip6(v6::HOST_VMS))),
        "{body}"
    );
}

#[test]
fn ipv6_vm_network_is_masqueraded_to_the_internet() {
    let lab = common::lab();
    // Before: the internet has no route back to the VM network's ULA prefix.
    assert_eq!(curl6(lab.ns("vm"), v6::INET, 8000), None);
    let (m, rs) = common::build(&common::dual_stack(), Default::default());
    apply_in_host(&lab, &m, &rs);
    let body = curl6_retry(lab.ns("vm"), v6::INET, 8000).expect("VM to the internet");
    assert_eq!(
        who6(&body),
        Some((ip6(v6::INET), 8000, ip6(v6::HOST_WAN))),
        "the internet sees the host's public IPv6 address: {body}"
    );
}

// ---------------------------------------------------------------------------------------
// The origin lock.
// ---------------------------------------------------------------------------------------

/// The reference with `from` on the locked http forward: the escape hatch.
#[test]
fn the_from_list_of_a_locked_forward_is_its_escape_hatch() {
    let lab = common::lab();
    let cfg = common::reference();
    let text = std::fs::read_to_string(&cfg.path).expect("read").replacen(
        "origin_lock = \"cloudflare\"\n",
        "origin_lock = \"cloudflare\"\nfrom = [\"198.18.0.1/32\"]\n",
        1,
    );
    let (m, rs) = common::build(&common::parse(&cfg.path, &text), Default::default());
    apply_in_host(&lab, &m, &rs);
    // The monitor in `from` gets through on http, Cloudflare too...
    assert_eq!(
        common::curl_from_retry(lab.ns("inet"), "198.18.0.1", "http://192.198.0.30/").as_deref(),
        Some("10.17.5.30 port 80")
    );
    assert_eq!(
        common::curl_from_retry(lab.ns("inet"), common::CF4, "http://192.198.0.30/").as_deref(),
        Some("10.17.5.30 port 80")
    );
    // ...https has no `from`: the monitor is a direct hit there.
    assert_eq!(
        common::curl_from(lab.ns("inet"), "198.18.0.1", "http://192.198.0.30:443/"),
        None
    );
    assert_eq!(counter(&lab, "lockdrop_http"), 0);
    assert!(counter(&lab, "lockdrop_https") > 0);
}

/// A locked echo forward on 8080 (to the load balancer's echo service), with the ranges in
/// force given.
fn locked_echo(ranges_v4: &[&str]) -> (Model, Ruleset) {
    let cfg = common::reference();
    let text = format!(
        "{}\n[[fw.forward]]\nname = \"echo\"\nport = 8080\non = [\"br-api\"]\naddress = \"192.198.0.30\"\nto = \"10.17.5.30\"\norigin_lock = \"cloudflare\"\n",
        std::fs::read_to_string(&cfg.path).expect("read")
    );
    let mut m =
        Model::from_config(&common::parse(&cfg.path, &text), Default::default()).expect("model");
    m.env.origin_ranges.v4 = ranges_v4
        .iter()
        .map(|n| n.parse().expect("prefix"))
        .collect();
    let rs = edge_fw::compile::compile(&m).expect("compile");
    (m, rs)
}

/// Cloudflare changes its list: the set is updated by elements only, an established
/// connection from a range that left the list keeps flowing (only new connections are
/// checked), a new one from it is dropped, one from the new range gets through.
#[test]
fn a_range_update_changes_the_set_and_leaves_established_connections_alone() {
    let lab = common::lab();
    let (m1, rs1) = locked_echo(&["173.245.48.0/20", "103.21.244.0/22"]);
    apply_in_host(&lab, &m1, &rs1);
    let connect = |src: &'static str| {
        lab.ns("inet").run(move || {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            let from: std::net::SocketAddr = format!("{src}:0").parse().expect("addr");
            s.bind(&from.into()).expect("bind");
            s.connect_timeout(
                &"192.198.0.30:8080"
                    .parse::<std::net::SocketAddr>()
                    .expect("addr")
                    .into(),
                Duration::from_secs(2),
            )
            .ok()
            .map(|()| {
                let t: TcpStream = s.into();
                t.set_read_timeout(Some(Duration::from_secs(5)))
                    .expect("timeout");
                t
            })
        })
    };
    let echo = |s: &mut TcpStream, msg: &[u8]| -> bool {
        let mut back = vec![0u8; msg.len()];
        s.write_all(msg).is_ok() && s.read_exact(&mut back).is_ok() && back == msg
    };
    let mut live = None;
    edge_testkit::wait_for(Duration::from_secs(8), || {
        live = connect(common::CF4);
        live.is_some()
    });
    let mut live = live.expect("a Cloudflare edge connects through the lock");
    assert!(echo(&mut live, b"before"));
    let handle = |lab: &Lab| {
        let out = lab
            .ns("host")
            .exec("nft", ["-j", "list", "table", "inet", "edge_state"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft -j");
        v["nftables"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find_map(|o| o.get("table")?.get("handle")?.as_u64())
            })
            .expect("handle")
    };
    let before = handle(&lab);
    // The new list drops 173.245.48.0/20 and adds 198.41.128.0/17.
    inet_add(&lab, "198.41.128.10/32");
    let (m2, rs2) = locked_echo(&["103.21.244.0/22", "198.41.128.0/17"]);
    let change = lab
        .ns("host")
        .run(move || common::apply(&m2, &rs2, Options::default()).map(|r| r.change))
        .expect("apply the new ranges");
    assert_eq!(change, apply::Change::Elements, "an element-only update");
    assert_eq!(handle(&lab), before, "inet edge_state was not replaced");
    assert!(
        echo(&mut live, b"during"),
        "the established connection flows on"
    );
    assert!(
        connect(common::CF4).is_none(),
        "a new connection from a range that left the list is dropped"
    );
    assert!(
        connect("198.41.128.10").is_some_and(|mut s| echo(&mut s, b"new")),
        "the new range gets through"
    );
    assert!(echo(&mut live, b"after!"));
}

/// Adds an address to "the internet" (a source for the tests).
fn inet_add(lab: &Lab, cidr: &str) {
    lab.ns("inet").ip(["addr", "add", cidr, "dev", "eth0"]);
}

// ---------------------------------------------------------------------------------------
// MSS clamping through the WireGuard interface.
// ---------------------------------------------------------------------------------------

/// Bytes a client in `wgpeer` receives from a 1 MB download off the load balancer within 5 s.
fn download_through_wg0(lab: &Lab) -> usize {
    let size = 1 << 20;
    let server_ns = lab.ns("lb").name().to_owned();
    let server = std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{server_ns}")).expect("netns");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let l = std::net::TcpListener::bind("10.17.5.30:9090").expect("bind");
        if let Ok((mut s, _)) = l.accept() {
            // A stalled path keeps the data unacknowledged: give up with the client.
            let _ = s.set_write_timeout(Some(Duration::from_secs(7)));
            let _ = s.write_all(&vec![b'x'; size]);
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let got = lab.ns("wgpeer").run(move || {
        let Ok(mut s) = TcpStream::connect_timeout(
            &"10.17.5.30:9090".parse().expect("addr"),
            Duration::from_secs(3),
        ) else {
            return 0;
        };
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    let _ = server.join();
    got
}

/// The tunnel's MTU (1420) is smaller than the client's (1500), and the path drops ICMP
/// "fragmentation needed" (common on the internet): without clamping, the server sends
/// segments that do not fit and the download stalls; with edge-fw's clamp (derived from
/// `[wg] mtu`) the server is told a segment size that fits, and it completes.
#[test]
fn mss_clamping_through_wg0_saves_a_download_over_a_smaller_mtu() {
    let lab = common::lab();
    lab.ns("host").ip(["link", "set", "wg0", "mtu", "1420"]);
    // The server's side drops "fragmentation needed": path MTU discovery cannot help.
    let mut c = std::process::Command::new("ip");
    c.args(["netns", "exec", lab.ns("lb").name(), "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped());
    let mut child = c.spawn().expect("nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"table inet blackhole {\n\tchain in {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ticmp type destination-unreachable drop\n\t}\n}\n")
        .expect("write");
    assert!(child.wait().expect("nft").success());
    let cfg = common::reference();
    let (m, _) = common::build(&cfg, Default::default());
    assert_eq!(m.env.wg_mtu, Some(("wg0".to_owned(), 1420)), "from [wg]");
    // Without the clamp: the download stalls.
    let mut unclamped = m.clone();
    unclamped.env.wg_mtu = None;
    let rs = edge_fw::compile::compile(&unclamped).expect("compile");
    apply_in_host(&lab, &unclamped, &rs);
    let without = download_through_wg0(&lab);
    assert!(
        without < 1 << 20,
        "the path must stall without clamping ({without} bytes)"
    );
    // With it: complete.
    let rs = edge_fw::compile::compile(&m).expect("compile");
    apply_in_host(&lab, &m, &rs);
    let with = download_through_wg0(&lab);
    assert_eq!(with, 1 << 20, "the clamped download completes");
    eprintln!(
        "download through wg0 (MTU 1420, ICMP blocked): {without} bytes without clamping, {with} with"
    );
}
