//! Namespace integration tests: edge-wg against Debian's `wireguard-go`, driven with the
//! stock `wg` tool. Every test builds its own namespaces (`ewg-*`) and removes them on
//! drop. Needs root; fails (never skips) without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;

/// Two namespaces joined by a veth pair with a WireGuard interface each.
struct Tunnel {
    // drop order: daemons first, then namespaces
    pa: Proc,
    _pb: Proc,
    ka: KeyPair,
    kb: KeyPair,
    ifa: String,
    ifb: String,
    b: Netns,
    a: Netns,
}

const UL_A: &str = "10.99.0.1";
const UL_B: &str = "10.99.0.2";
const OV_A: &str = "10.98.0.1";
const OV_B: &str = "10.98.0.2";

fn tunnel(t: &str, ia: Impl, ib: Impl, envs_a: &[(&str, &str)]) -> Tunnel {
    tunnel_full(t, ia, ib, envs_a, &[])
}

/// edge-wg (A, with extra arguments) against wireguard-go (B).
fn tunnel_with_args(t: &str, args: &[&str]) -> Tunnel {
    tunnel_full(t, Impl::EdgeWg, Impl::WireguardGo, &[], args)
}

fn tunnel_full(t: &str, ia: Impl, ib: Impl, envs_a: &[(&str, &str)], args_a: &[&str]) -> Tunnel {
    require_root();
    let tg = tag(t);
    let a = Netns::new(&format!("{tg}-a"));
    let b = Netns::new(&format!("{tg}-b"));
    veth(
        &a,
        "ula",
        &format!("{UL_A}/24"),
        &b,
        "ulb",
        &format!("{UL_B}/24"),
    );
    let ifa = format!("ewa{tg}");
    let ifb = format!("ewb{tg}");
    let pa = start_daemon_args(&a, ia, &ifa, envs_a, args_a);
    let pb = start_daemon(&b, ib, &ifb, &[]);
    let ka = keypair();
    let kb = keypair();
    iface_up(&a, &ifa, &format!("{OV_A}/24"));
    iface_up(&b, &ifb, &format!("{OV_B}/24"));
    let ka_file = ka.private_file.to_string_lossy().into_owned();
    let kb_file = kb.private_file.to_string_lossy().into_owned();
    a.run(&[
        "wg",
        "set",
        &ifa,
        "private-key",
        &ka_file,
        "listen-port",
        "51820",
        "peer",
        &kb.public,
        "allowed-ips",
        &format!("{OV_B}/32"),
        "endpoint",
        &format!("{UL_B}:51820"),
    ]);
    b.run(&[
        "wg",
        "set",
        &ifb,
        "private-key",
        &kb_file,
        "listen-port",
        "51820",
        "peer",
        &ka.public,
        "allowed-ips",
        &format!("{OV_A}/32"),
        "endpoint",
        &format!("{UL_A}:51820"),
    ]);
    Tunnel {
        pa,
        _pb: pb,
        ka,
        kb,
        ifa,
        ifb,
        b,
        a,
    }
}

fn handshake_from(initiator_is_edge: bool) {
    let t = tunnel(
        if initiator_is_edge { "h1" } else { "h2" },
        Impl::EdgeWg,
        Impl::WireguardGo,
        &[],
    );
    let (from, to) = if initiator_is_edge {
        (&t.a, OV_B)
    } else {
        (&t.b, OV_A)
    };
    // Nothing has been sent yet: no handshake on either side.
    assert_eq!(wg_dump(&t.a, &t.ifa).peers[0].latest_handshake, 0);
    wait_for(
        "first ping over the tunnel",
        Duration::from_secs(10),
        || ping_once(from, to),
    );
    let (sent, got) = ping_stats(from, to, 5, "0.2");
    assert_eq!((sent, got), (5, 5), "pings after the handshake");

    // `wg show` against edge-wg, parsed: keys, port, endpoint, epoch handshake, counters.
    let d = wg_dump(&t.a, &t.ifa);
    assert_eq!(d.private_key, t.ka.private);
    assert_eq!(d.public_key, t.ka.public);
    assert_eq!(d.listen_port, 51820);
    assert_eq!(d.fwmark, "off");
    assert_eq!(d.peers.len(), 1);
    let p = &d.peers[0];
    assert_eq!(p.public_key, t.kb.public);
    assert_eq!(p.preshared_key, "(none)");
    assert_eq!(p.endpoint, format!("{UL_B}:51820"));
    assert_eq!(p.allowed_ips, format!("{OV_B}/32"));
    let now = unix_now();
    assert!(
        p.latest_handshake > now - 60 && p.latest_handshake <= now + 1,
        "latest handshake {} is not a recent epoch time (now {now})",
        p.latest_handshake
    );
    assert!(
        p.rx >= 6 * 84 && p.tx >= 6 * 84,
        "transfer counters {} / {}",
        p.rx,
        p.tx
    );
    assert_eq!(p.keepalive, "off");
    // The human form works too and shows the interface key.
    let (_, show) = t.a.try_run(&["wg", "show", &t.ifa]);
    assert!(
        show.contains(&format!("public key: {}", t.ka.public)),
        "{show}"
    );
    assert!(
        show.contains("latest handshake:") && !show.contains("years"),
        "{show}"
    );
    // The other side agrees on the handshake.
    let other = wg_dump(&t.b, &t.ifb);
    assert!(other.peers[0].latest_handshake.abs_diff(p.latest_handshake) <= 2);
}

#[test]
fn handshake_initiated_by_edge_wg() {
    handshake_from(true);
}

#[test]
fn handshake_initiated_by_wireguard_go() {
    handshake_from(false);
}

fn transfer(t: &Tunnel, from: &Netns, to: &Netns, to_addr: &str, port: u16) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let dst = dir.path().join("dst.bin");
    run(&[
        "dd",
        "if=/dev/urandom",
        &format!("of={}", src.display()),
        "bs=1M",
        "count=48",
        "status=none",
    ]);
    let _ = t;
    let (listen, connect) = if to_addr.starts_with('[') {
        ("TCP6-LISTEN", "TCP6")
    } else {
        ("TCP-LISTEN", "TCP")
    };
    let mut server = to.spawn(
        &[
            "socat",
            "-u",
            &format!("{listen}:{port},reuseaddr"),
            &format!("OPEN:{},creat,trunc", dst.display()),
        ],
        &[],
        &format!("/tmp/ewg-socat-{port}.log"),
    );
    wait_for("socat listening", Duration::from_secs(5), || {
        to.try_run(&["ss", "-ltn"]).1.contains(&format!(":{port} "))
    });
    from.run(&[
        "socat",
        "-u",
        &format!("OPEN:{}", src.display()),
        &format!("{connect}:{to_addr}:{port}"),
    ]);
    wait_for("socat receiver to finish", Duration::from_secs(20), || {
        !server.alive()
    });
    let h = |p: &std::path::Path| {
        String::from_utf8_lossy(&run(&["sha256sum", &p.to_string_lossy()]).stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(h(&src), h(&dst), "content hash after the TCP transfer");
}

#[test]
fn tcp_transfer_both_directions_keeps_content() {
    let t = tunnel("tc", Impl::EdgeWg, Impl::WireguardGo, &[]);
    wait_for("tunnel up", Duration::from_secs(10), || {
        ping_once(&t.a, OV_B)
    });
    // edge-wg sends (TUN super-packets split, encrypted, UDP GSO), wireguard-go receives
    transfer(&t, &t.a, &t.b, OV_B, 5001);
    // wireguard-go sends, edge-wg receives (UDP GRO, decrypt, TUN coalescing)
    transfer(&t, &t.b, &t.a, OV_A, 5002);
    let d = wg_dump(&t.a, &t.ifa);
    assert!(d.peers[0].tx > 48 << 20 && d.peers[0].rx > 48 << 20);
}

#[test]
fn tcp_transfer_between_two_edge_wg() {
    let t = tunnel("te", Impl::EdgeWg, Impl::EdgeWg, &[]);
    wait_for("tunnel up", Duration::from_secs(10), || {
        ping_once(&t.a, OV_B)
    });
    transfer(&t, &t.a, &t.b, OV_B, 5003);
    transfer(&t, &t.b, &t.a, OV_A, 5004);
}

#[test]
fn roaming_follows_the_peers_new_underlay_address() {
    let t = tunnel("ro", Impl::EdgeWg, Impl::WireguardGo, &[]);
    wait_for("tunnel up", Duration::from_secs(10), || {
        ping_once(&t.a, OV_B)
    });
    // 1. The peer moves: its underlay address changes from .2 to .3; edge-wg is not told.
    // wireguard-go 0.0.2022 pins its source address (sticky IP_PKTINFO) until it re-binds,
    // so it is nudged to re-bind with a new listen port: both address and port move.
    // (delete first: deleting a primary address also deletes its secondaries)
    t.b.run(&["ip", "addr", "del", &format!("{UL_B}/24"), "dev", "ulb"]);
    t.b.run(&["ip", "addr", "add", "10.99.0.3/24", "dev", "ulb"]);
    t.b.run(&["wg", "set", &t.ifb, "listen-port", "51821"]);
    // The peer speaks first from its new address; edge-wg must learn it from the
    // authenticated packet and answer there.
    wait_for("ping from the moved peer", Duration::from_secs(15), || {
        ping_once(&t.b, OV_A)
    });
    let d = wg_dump(&t.a, &t.ifa);
    assert_eq!(
        d.peers[0].endpoint, "10.99.0.3:51821",
        "endpoint after the peer roamed"
    );
    let (sent, got) = ping_stats(&t.a, OV_B, 5, "0.2");
    assert_eq!(
        (sent, got),
        (5, 5),
        "edge-wg reaches the peer at its new address"
    );

    // 2. edge-wg moves (.1 -> .4): it holds no pinned source, so its next packet comes from
    // the new address and wireguard-go follows.
    t.a.run(&["ip", "addr", "del", &format!("{UL_A}/24"), "dev", "ula"]);
    t.a.run(&["ip", "addr", "add", "10.99.0.4/24", "dev", "ula"]);
    wait_for("ping after edge-wg moved", Duration::from_secs(15), || {
        ping_once(&t.a, OV_B)
    });
    let d = wg_dump(&t.b, &t.ifb);
    assert_eq!(
        d.peers[0].endpoint, "10.99.0.4:51820",
        "wireguard-go followed edge-wg"
    );
}

#[test]
fn rekey_keeps_traffic_flowing() {
    // Test-only option: edge-wg forces a new handshake every 3 s (instead of 120 s).
    let t = tunnel_with_args("rk", &["--test-rekey-secs", "3"]);
    wait_for("tunnel up", Duration::from_secs(10), || {
        ping_once(&t.a, OV_B)
    });
    let first = wg_dump(&t.b, &t.ifb).peers[0].latest_handshake;
    // 10 s of pings across at least three rekeys: none may be lost.
    let (sent, got) = ping_stats(&t.a, OV_B, 50, "0.2");
    assert_eq!((sent, got), (50, 50), "pings across rekeys");
    let later = wg_dump(&t.b, &t.ifb).peers[0].latest_handshake;
    assert!(
        later >= first + 3,
        "wireguard-go saw a new handshake ({first} -> {later})"
    );
    let ours = wg_dump(&t.a, &t.ifa).peers[0].latest_handshake;
    assert!(
        ours.abs_diff(later) <= 2,
        "both sides agree on the new handshake"
    );
    assert!(t.pa.log().is_empty() || !t.pa.log().contains("panicked"));
}

#[test]
// One scenario read top to bottom: a flow to B runs across adding D and removing C on the
// hub; the steps share the four namespaces, the spokes' keys and the running flow.
#[allow(clippy::too_many_lines)]
fn peer_added_and_removed_while_a_third_keeps_flowing() {
    require_root();
    let tg = tag("pc");
    let hub = Netns::new(&format!("{tg}-hub"));
    let nb = Netns::new(&format!("{tg}-b"));
    let nc = Netns::new(&format!("{tg}-c"));
    let nd = Netns::new(&format!("{tg}-d"));
    veth(&hub, "ub", "10.99.1.1/24", &nb, "ul", "10.99.1.2/24");
    veth(&hub, "uc", "10.99.2.1/24", &nc, "ul", "10.99.2.2/24");
    veth(&hub, "ud", "10.99.3.1/24", &nd, "ul", "10.99.3.2/24");
    let ifh = format!("ewh{tg}");
    let mut ph = start_daemon(&hub, Impl::EdgeWg, &ifh, &[]);
    let kh = keypair();
    iface_up(&hub, &ifh, "10.98.0.1/24");
    let khf = kh.private_file.to_string_lossy().into_owned();
    hub.run(&[
        "wg",
        "set",
        &ifh,
        "private-key",
        &khf,
        "listen-port",
        "51820",
    ]);
    let mut spokes = Vec::new();
    for (i, ns) in [(2u8, &nb), (3, &nc), (4, &nd)] {
        let ifn = format!("ew{i}{tg}");
        let p = start_daemon(ns, Impl::WireguardGo, &ifn, &[]);
        let k = keypair();
        iface_up(ns, &ifn, &format!("10.98.0.{i}/24"));
        let kf = k.private_file.to_string_lossy().into_owned();
        ns.run(&[
            "wg",
            "set",
            &ifn,
            "private-key",
            &kf,
            "peer",
            &kh.public,
            "allowed-ips",
            "10.98.0.1/32",
            "endpoint",
            "10.99.0.1:51820",
            "persistent-keepalive",
            "1",
        ]);
        spokes.push((p, k, ifn));
    }
    // The hub's underlay address for every spoke: each spoke reaches it via its own link.
    for (i, ns) in [(1u8, &nb), (2, &nc), (3, &nd)] {
        ns.run(&[
            "ip",
            "route",
            "add",
            "10.99.0.1/32",
            "via",
            &format!("10.99.{i}.1"),
        ]);
    }
    hub.run(&["ip", "addr", "add", "10.99.0.1/32", "dev", "lo"]);
    // Hub starts with peers B and C.
    for (i, (_, k, _)) in spokes.iter().enumerate().take(2) {
        hub.run(&[
            "wg",
            "set",
            &ifh,
            "peer",
            &k.public,
            "allowed-ips",
            &format!("10.98.0.{}/32", i + 2),
            "endpoint",
            &format!("10.99.{}.2:51820", i + 1),
        ]);
    }
    wait_for("B reachable", Duration::from_secs(10), || {
        ping_once(&hub, "10.98.0.2")
    });
    wait_for("C reachable", Duration::from_secs(10), || {
        ping_once(&hub, "10.98.0.3")
    });
    // Steady traffic to B (100 pings over 5 s) while D is added and C removed.
    let flow = {
        let name = nb.name.clone();
        std::thread::spawn(move || {
            std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &name,
                    "ping",
                    "-q",
                    "-c",
                    "100",
                    "-i",
                    "0.05",
                    "-W",
                    "1",
                    "10.98.0.1",
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        })
    };
    std::thread::sleep(Duration::from_millis(800));
    let kd = &spokes[2].1;
    hub.run(&[
        "wg",
        "set",
        &ifh,
        "peer",
        &kd.public,
        "allowed-ips",
        "10.98.0.4/32",
        "endpoint",
        "10.99.3.2:51820",
    ]);
    wait_for(
        "D reachable after it was added",
        Duration::from_secs(10),
        || ping_once(&hub, "10.98.0.4"),
    );
    let kc = &spokes[1].1;
    hub.run(&["wg", "set", &ifh, "peer", &kc.public, "remove"]);
    assert!(
        !ping_once(&hub, "10.98.0.3"),
        "C must be unreachable after removal"
    );
    let out = flow.join().unwrap_or_default();
    assert!(
        out.contains("100 packets transmitted, 100 received"),
        "traffic to B lost packets: {out}"
    );
    let d = wg_dump(&hub, &ifh);
    assert_eq!(d.peers.len(), 2);
    assert!(d.peers.iter().all(|p| p.public_key != kc.public));
    assert!(ph.alive(), "hub daemon died: {}", ph.log());
}

#[test]
fn handshake_flood_gets_cookies_while_the_real_peer_flows() {
    let t = tunnel("ck", Impl::EdgeWg, Impl::WireguardGo, &[]);
    wait_for("tunnel up", Duration::from_secs(10), || {
        ping_once(&t.a, OV_B)
    });
    // A bogus peer in a third namespace floods valid-mac1 initiations from unknown keys.
    let bogus = Netns::new(&format!("{}-x", tag("ck")));
    veth(&t.a, "ulx", "10.99.5.1/24", &bogus, "ulx", "10.99.5.2/24");
    let our_pub = edge_wg::model::Key::from_base64(&t.ka.public).unwrap();
    let flooder = bogus.enter(move || {
        use boringtun::noise::{Tunn, TunnResult};
        use boringtun::x25519::{PublicKey, StaticSecret};
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let mut buf = [0u8; 256];
        let mut rbuf = [0u8; 256];
        let (mut sent, mut cookies) = (0u32, 0u32);
        let start = std::time::Instant::now();
        // A few distinct initiations (each costs the sender two DH operations), replayed
        // at ~1000/s (10x the budget): every copy carries a valid mac1, so each one counts against the
        // device's handshake budget the way a real flood does.
        let mut inits: Vec<Vec<u8>> = Vec::new();
        for _ in 0..8 {
            let secret = StaticSecret::from(rand::random::<[u8; 32]>());
            let mut tunn = Tunn::new(secret, PublicKey::from(our_pub.0), None, None, 1, None);
            if let TunnResult::WriteToNetwork(p) = tunn.format_handshake_initiation(&mut buf, true)
            {
                inits.push(p.to_vec());
            }
        }
        while start.elapsed() < Duration::from_secs(4) {
            for _ in 0..10 {
                let _ = sock.send_to(&inits[sent as usize % inits.len()], "10.99.5.1:51820");
                sent += 1;
            }
            while let Ok((n, _)) = sock.recv_from(&mut rbuf) {
                if n == 64 && rbuf[0] == 3 {
                    cookies += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (sent, cookies)
    });
    // Meanwhile the real peer's traffic keeps flowing.
    let (sent, got) = ping_stats(&t.b, OV_A, 15, "0.2");
    let (fl_sent, fl_cookies) = flooder.join().unwrap();
    assert!(fl_sent > 1000, "flood sent only {fl_sent} initiations");
    assert!(
        fl_cookies > 0,
        "no cookie reply to {fl_sent} flood initiations"
    );
    assert_eq!((sent, got), (15, 15), "real peer's pings during the flood");
    wait_for("ping after the flood", Duration::from_secs(5), || {
        ping_once(&t.a, OV_B)
    });
}

#[test]
fn ipv6_underlay_and_overlay_carry_a_tcp_transfer() {
    require_root();
    let tg = tag("v6");
    let a = Netns::new(&format!("{tg}-a"));
    let b = Netns::new(&format!("{tg}-b"));
    run(&[
        "ip", "-n", &a.name, "link", "add", "ula", "type", "veth", "peer", "name", "ulb", "netns",
        &b.name,
    ]);
    a.run(&["ip", "addr", "add", "fd99::1/64", "dev", "ula", "nodad"]);
    b.run(&["ip", "addr", "add", "fd99::2/64", "dev", "ulb", "nodad"]);
    a.run(&["ip", "link", "set", "ula", "up"]);
    b.run(&["ip", "link", "set", "ulb", "up"]);
    let (ifa, ifb) = (format!("ewa{tg}"), format!("ewb{tg}"));
    let _pa = start_daemon(&a, Impl::EdgeWg, &ifa, &[]);
    let _pb = start_daemon(&b, Impl::WireguardGo, &ifb, &[]);
    let (ka, kb) = (keypair(), keypair());
    for (ns, ifn, me) in [(&a, &ifa, "fd98::1/64"), (&b, &ifb, "fd98::2/64")] {
        ns.run(&["ip", "link", "set", ifn, "mtu", "1420"]);
        ns.run(&["ip", "addr", "add", me, "dev", ifn, "nodad"]);
        ns.run(&["ip", "link", "set", ifn, "up"]);
    }
    let kaf = ka.private_file.to_string_lossy().into_owned();
    let kbf = kb.private_file.to_string_lossy().into_owned();
    a.run(&[
        "wg",
        "set",
        &ifa,
        "private-key",
        &kaf,
        "listen-port",
        "51820",
        "peer",
        &kb.public,
        "allowed-ips",
        "fd98::2/128",
        "endpoint",
        "[fd99::2]:51820",
    ]);
    b.run(&[
        "wg",
        "set",
        &ifb,
        "private-key",
        &kbf,
        "listen-port",
        "51820",
        "peer",
        &ka.public,
        "allowed-ips",
        "fd98::1/128",
        "endpoint",
        "[fd99::1]:51820",
    ]);
    wait_for("v6 tunnel up", Duration::from_secs(10), || {
        a.try_run(&["ping", "-6", "-c", "1", "-W", "1", "fd98::2"])
            .0
    });
    let t = Tunnel {
        pa: start_daemon_dummy(),
        _pb: start_daemon_dummy(),
        ka,
        kb,
        ifa: ifa.clone(),
        ifb,
        b,
        a,
    };
    transfer(&t, &t.a, &t.b, "[fd98::2]", 5005);
    transfer(&t, &t.b, &t.a, "[fd98::1]", 5006);
    let d = wg_dump(&t.a, &ifa);
    assert_eq!(d.peers[0].endpoint, "[fd99::2]:51820");
}

/// A placeholder process for a `Tunnel` whose daemons are owned elsewhere.
fn start_daemon_dummy() -> Proc {
    let child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    Proc {
        child,
        log: "/dev/null".into(),
        cleanup: None,
    }
}

#[test]
fn standalone_drops_to_a_user_and_keeps_only_cap_net_admin() {
    require_root();
    let t = tunnel_with_args("pr", &["--user", "nobody"]);
    wait_for("tunnel up", Duration::from_secs(10), || {
        ping_once(&t.a, OV_B)
    });
    let pid = t.pa.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    assert_eq!(field("Uid:"), vec!["65534"; 4], "{status}");
    // CAP_NET_ADMIN is bit 12.
    assert_eq!(field("CapEff:"), vec!["0000000000001000"], "{status}");
    assert_eq!(field("CapPrm:"), vec!["0000000000001000"], "{status}");
    assert_eq!(field("CapBnd:"), vec!["0000000000001000"], "{status}");
    // Runtime changes that need CAP_NET_ADMIN still work: fwmark, and a new port.
    t.a.run(&[
        "wg",
        "set",
        &t.ifa,
        "fwmark",
        "0x42",
        "listen-port",
        "51822",
    ]);
    let d = wg_dump(&t.a, &t.ifa);
    assert_eq!((d.fwmark.as_str(), d.listen_port), ("0x42", 51822));
    wait_for(
        "traffic after the port change",
        Duration::from_secs(10),
        || ping_once(&t.a, OV_B),
    );
}
