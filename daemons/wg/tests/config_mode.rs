//! Namespace integration tests of edge-wg as a daemon of the suite: configured from
//! `[wg]` in edge.toml, reloaded with SIGHUP (only the peer difference is applied),
//! status over the control socket, metrics over HTTP, private key mode enforced.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::*;

fn write_config(
    path: &Path,
    dir: &Path,
    ifname: &str,
    key: &Path,
    peers: &[(&str, &str, &str, &str)],
) {
    let mut s = format!(
        "version = 1\n\n[global]\nstate_dir = \"{d}/state\"\nruntime_dir = \"{d}/run\"\n\
         log_format = \"text\"\nlog_level = \"info\"\n\n[global.metrics]\nwg = \"127.0.0.1:9852\"\n\n\
         [wg]\ninterface = \"{ifname}\"\nlisten_port = 51820\nprivate_key = {{ file = \"{k}\" }}\n\
         addresses = [\"10.98.0.1/24\"]\nmtu = 1420\n",
        d = dir.display(),
        k = key.display()
    );
    for (name, pubkey, ip, ep) in peers {
        s.push_str(&format!(
            "\n[[wg.peer]]\nname = \"{name}\"\npublic_key = \"{pubkey}\"\nallowed_ips = [\"{ip}\"]\nendpoint = \"{ep}\"\n"
        ));
    }
    std::fs::write(path, s).unwrap();
}

#[test]
// One scenario read top to bottom: the hub, three wireguard-go spokes, a ping flow across
// a SIGHUP reload and the routes after it share the namespaces and the daemon; split, each
// step would take them all as parameters.
#[allow(clippy::too_many_lines)]
fn sighup_applies_only_the_peer_difference() {
    require_root();
    let tg = tag("cf");
    let hub = Netns::new(&format!("{tg}-hub"));
    let spokes_ns = [
        Netns::new(&format!("{tg}-b")),
        Netns::new(&format!("{tg}-c")),
        Netns::new(&format!("{tg}-d")),
    ];
    for (i, ns) in spokes_ns.iter().enumerate() {
        let n = i + 1;
        veth(
            &hub,
            &format!("u{n}"),
            &format!("10.99.{n}.1/24"),
            ns,
            "ul",
            &format!("10.99.{n}.2/24"),
        );
        ns.run(&[
            "ip",
            "route",
            "add",
            "10.99.0.1/32",
            "via",
            &format!("10.99.{n}.1"),
        ]);
    }
    hub.run(&["ip", "addr", "add", "10.99.0.1/32", "dev", "lo"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let kh = keypair();
    let key_path = dir.path().join("wg.key");
    std::fs::write(&key_path, &kh.private).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Spokes: wireguard-go peers listening on the port the hub's config names.
    let mut spokes = Vec::new();
    for (i, ns) in spokes_ns.iter().enumerate() {
        let ifn = format!("ew{}{tg}", i + 2);
        let p = start_daemon(ns, Impl::WireguardGo, &ifn, &[]);
        let k = keypair();
        iface_up(ns, &ifn, &format!("10.98.0.{}/24", i + 2));
        let kf = k.private_file.to_string_lossy().into_owned();
        ns.run(&[
            "wg",
            "set",
            &ifn,
            "private-key",
            &kf,
            "listen-port",
            "51820",
            "peer",
            &kh.public,
            "allowed-ips",
            "10.98.0.1/32",
            "endpoint",
            "10.99.0.1:51820",
        ]);
        spokes.push((p, k, ifn));
    }
    let peer = |i: usize| {
        (
            ["b", "c", "d"][i],
            spokes[i].1.public.as_str(),
            ["10.98.0.2/32", "10.98.0.3/32", "10.98.0.4/32"][i],
            ["10.99.1.2:51820", "10.99.2.2:51820", "10.99.3.2:51820"][i],
        )
    };
    let ifh = format!("ewh{tg}");
    let cfg = dir.path().join("edge.toml");
    write_config(&cfg, dir.path(), &ifh, &key_path, &[peer(0), peer(1)]);
    let cfgs = cfg.to_string_lossy().into_owned();
    let mut hubd = hub.spawn(
        &[env!("CARGO_BIN_EXE_edge-wg"), "-c", &cfgs],
        &[],
        &format!("/tmp/{ifh}.log"),
    );
    let ctl = edge_config::socket_path(&dir.path().join("run"), edge_config::Role::Wg);
    wait_for("control socket", Duration::from_secs(10), || {
        assert!(hubd.alive(), "edge-wg exited: {}", hubd.log());
        ctl.exists()
    });
    // Addresses, MTU and routes come from the config, over rtnetlink.
    let (_, addr) = hub.try_run(&["ip", "-o", "addr", "show", "dev", &ifh]);
    assert!(addr.contains("10.98.0.1/24"), "{addr}");
    let (_, link) = hub.try_run(&["ip", "-o", "link", "show", "dev", &ifh]);
    assert!(link.contains("mtu 1420") && link.contains(",UP"), "{link}");
    wait_for("B reachable", Duration::from_secs(10), || {
        ping_once(&hub, "10.98.0.2")
    });
    wait_for("C reachable", Duration::from_secs(10), || {
        ping_once(&hub, "10.98.0.3")
    });

    // Traffic to B flows while the file changes (C out, D in) and SIGHUP reloads it.
    let name = spokes_ns[0].name.clone();
    let flow = std::thread::spawn(move || {
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &name,
                "ping",
                "-q",
                "-c",
                "80",
                "-i",
                "0.05",
                "-W",
                "1",
                "10.98.0.1",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    });
    std::thread::sleep(Duration::from_millis(800));
    write_config(&cfg, dir.path(), &ifh, &key_path, &[peer(0), peer(2)]);
    // SAFETY: kill(2) on the pid of a child we started and have not reaped.
    unsafe { libc::kill(hubd.child.id() as libc::pid_t, libc::SIGHUP) };
    wait_for("D reachable after reload", Duration::from_secs(10), || {
        ping_once(&hub, "10.98.0.4")
    });
    assert!(!ping_once(&hub, "10.98.0.3"), "C must be gone after reload");
    let out = flow.join().unwrap();
    assert!(
        out.contains("80 packets transmitted, 80 received"),
        "B lost packets during reload: {out}"
    );
    let (_, routes) = hub.try_run(&["ip", "route", "show", "dev", &ifh]);
    assert!(
        routes.contains("10.98.0.4") && !routes.contains("10.98.0.3"),
        "routes after reload: {routes}"
    );

    // Status over the control socket, as `edgectl wg show` gets it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let resp = rt
        .block_on(
            edge_ipc::Client::new(edge_config::Role::Wg, ctl.clone())
                .request(edge_ipc::Request::Status),
        )
        .unwrap();
    let edge_ipc::Response::Status(st) = resp else {
        panic!("not a status: {resp:?}")
    };
    let detail: edge_ipc::wg::Status = st.detail.wg().unwrap().clone();
    assert_eq!(detail.public_key.as_deref(), Some(kh.public.as_str()));
    let names: Vec<_> = detail.peers.iter().filter_map(|p| p.name.clone()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"b".to_string()) && names.contains(&"d".to_string()));
    let b = detail
        .peers
        .iter()
        .find(|p| p.name.as_deref() == Some("b"))
        .unwrap();
    assert!(b.latest_handshake > 0 && b.rx_bytes > 0);
    let shown = edge_ipc::wg::render_show(&detail, unix_now());
    assert!(
        shown.contains("name: b") && shown.contains("latest handshake:"),
        "{shown}"
    );

    // Metrics over HTTP inside the namespace.
    let (ok, metrics) = hub.try_run(&["curl", "-s", "http://127.0.0.1:9852/metrics"]);
    assert!(ok, "metrics endpoint");
    let rx_b = metrics
        .lines()
        .find_map(|l| l.strip_prefix("edge_wg_peer_rx_bytes_total{peer=\"b\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        rx_b > 80 * 84,
        "edge_wg_peer_rx_bytes_total for b: {rx_b}\n{metrics}"
    );
    assert!(
        metrics.contains("edge_wg_packets_dropped_total{reason=\"no_route\"}"),
        "{metrics}"
    );
    // wg show works against the config-mode daemon too.
    let d = wg_dump(&hub, &ifh);
    assert_eq!(d.public_key, kh.public);
    assert_eq!(d.peers.len(), 2);
}

#[test]
fn private_key_readable_by_others_is_refused() {
    require_root();
    let tg = tag("cm");
    let ns = Netns::new(&format!("{tg}-a"));
    let dir = tempfile::tempdir().unwrap();
    let kp = keypair();
    let key_path = dir.path().join("wg.key");
    std::fs::write(&key_path, &kp.private).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ifn = format!("ewk{tg}");
    let cfg = dir.path().join("edge.toml");
    write_config(&cfg, dir.path(), &ifn, &key_path, &[]);
    let out = ns.run_status(&[env!("CARGO_BIN_EXE_edge-wg"), "-c", &cfg.to_string_lossy()]);
    assert!(
        !out.status.success(),
        "edge-wg must refuse a world-readable key"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wg.key"),
        "the error names the key file: {err}"
    );
    assert!(
        !err.contains(&kp.private),
        "the key itself must never be printed"
    );
    assert!(
        !ns.try_run(&["ip", "link", "show", &ifn]).0,
        "no interface left behind"
    );
}
