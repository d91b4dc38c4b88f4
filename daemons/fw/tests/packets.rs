//! Packet tests in namespaces with the DESIGN.md topology: real TCP through the compiled
//! ruleset, applied over netlink in the `host` namespace.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use common::{Lab, curl};
use edge_fw::apply::Options;
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
fn internet_reaches_ingress_on_80_and_443_and_only_wireguard_reaches_6443() {
    let lab = common::lab();
    let (m, rs) = common::build(&common::reference(), Default::default());
    // Before: nothing forwards 192.198.0.30:80 (the host has no listener there).
    assert_eq!(curl(lab.ns("inet"), "http://192.198.0.30/"), None);
    apply_in_host(&lab, &m, &rs);
    assert_eq!(
        common::curl_retry(lab.ns("inet"), "http://192.198.0.30/").as_deref(),
        Some("10.17.5.30 port 80")
    );
    assert_eq!(
        common::curl_retry(lab.ns("inet"), "http://192.198.0.30:443/").as_deref(),
        Some("10.17.5.30 port 443")
    );
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
        common::curl_retry(lab.ns("inet"), "http://192.198.0.30/").as_deref(),
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
    // The IPv4 forwards still work next to it.
    assert_eq!(
        common::curl_retry(lab.ns("inet"), "http://192.198.0.30/").as_deref(),
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
