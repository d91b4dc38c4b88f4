//! Namespace integration test of edge-wg as one of two hosts under keepalived (`[ha]`),
//! against wireguard-go:
//!
//! 1. On standby (BACKUP: no role file yet) edge-wg sends nothing — traffic for a peer
//!    with a configured endpoint starts no handshake — and its socket is bound to the
//!    virtual address before that address exists (keepalived adds it on the master).
//! 2. Told MASTER over the control socket, it initiates a handshake to the peer at once,
//!    from the virtual address (the peer, which has no endpoint for it, learns the VIP).
//! 3. A new master that knows nothing of the peer (no endpoint, no session: the other
//!    host had them) answers the peer's data of an old session by reaching out with a
//!    handshake initiation: the tunnel is back within seconds, where wireguard-go alone
//!    would wait 15 s and more before it re-handshakes.
//!
//! Namespaces are named `ewp-<pid>-*`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use edge_ipc::ha::{HaRole, RoleState, STATE_VERSION};
use edge_ipc::{Client, Request, Response};

/// The hub's own address on the shared segment.
const HUB_OWN: &str = "10.96.2.1";
/// The virtual address keepalived would move between the hosts.
const VIP: &str = "10.96.2.10";
const SPOKE_UNDERLAY: &str = "10.96.2.2";
const SPOKE_PORT: &str = "40124";
const HUB_TUNNEL: &str = "10.95.1.1";
const SPOKE_TUNNEL: &str = "10.95.1.2";

/// The hub's edge.toml: `[ha]` on the underlay interface with the VIP; the spoke's
/// endpoint configured or not.
fn write_config(dir: &Path, ifname: &str, key: &Path, peer: &str, endpoint: bool) -> PathBuf {
    let mut s = format!(
        "version = 1\n\n[global]\nstate_dir = \"{d}/state\"\nruntime_dir = \"{d}/run\"\n\
         log_format = \"text\"\nlog_level = \"debug\"\n\n[global.metrics]\nwg = \"127.0.0.1:9852\"\n\n\
         [wg]\ninterface = \"{ifname}\"\nlisten_port = 51820\nprivate_key = {{ file = \"{k}\" }}\n\
         addresses = [\"{HUB_TUNNEL}/24\"]\nmtu = 1420\n\n\
         [[wg.peer]]\nname = \"spoke\"\npublic_key = \"{peer}\"\nallowed_ips = [\"{SPOKE_TUNNEL}/32\"]\n",
        d = dir.display(),
        k = key.display()
    );
    if endpoint {
        s.push_str(&format!("endpoint = \"{SPOKE_UNDERLAY}:{SPOKE_PORT}\"\n"));
    }
    s.push_str(&format!(
        "\n[ha]\nname = \"edge-a\"\naddress = \"{HUB_OWN}\"\ninstance = \"edge\"\n\
         virtual_router_id = 30\ninterface = \"u1\"\n\n[ha.peer]\nname = \"edge-b\"\n\
         address = \"10.96.2.32\"\n\n[[ha.vip]]\naddress = \"{VIP}/32\"\n"
    ));
    let path = dir.join("edge.toml");
    fs::write(&path, s).unwrap();
    path
}

fn role(role: HaRole, generation: u64) -> RoleState {
    RoleState {
        version: STATE_VERSION,
        instance: "edge".into(),
        role,
        generation,
        since: unix_now(),
        event: role.as_str().into(),
        priority: Some(100),
        conntrack: None,
    }
}

/// The spoke's view of its one peer: (endpoint, latest handshake).
fn spoke_peer(ns: &Netns, ifname: &str) -> (String, u64) {
    let out = ns.run(&["wg", "show", ifname, "dump"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().nth(1).unwrap_or_default().to_owned();
    let f: Vec<&str> = line.split('\t').collect();
    (
        f.get(2).unwrap_or(&"").to_string(),
        f.get(4).and_then(|s| s.parse().ok()).unwrap_or(0),
    )
}

#[test]
// One scenario read top to bottom (standby, MASTER, failover): each phase continues from
// the state the one before left in the same namespaces, wireguard-go log and spoke session.
#[allow(clippy::too_many_lines)]
fn standby_sends_nothing_the_master_initiates_from_the_vip_and_reaches_out_after_a_failover() {
    require_root();
    let tg = tag("");
    let hub = Netns::with_prefix("ewp", &format!("{tg}-hub"));
    let spoke = Netns::with_prefix("ewp", &format!("{tg}-sp"));
    veth(
        &hub,
        "u1",
        &format!("{HUB_OWN}/24"),
        &spoke,
        "ul",
        &format!("{SPOKE_UNDERLAY}/24"),
    );
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (kh, ks) = (keypair(), keypair());
    let key_path = dir.path().join("wg.key");
    fs::write(&key_path, &kh.private).unwrap();
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
    let ifh = format!("eph{tg}");
    let ifs = format!("eps{tg}");
    let cfg = write_config(dir.path(), &ifh, &key_path, &ks.public, true);
    let ctl = edge_config::socket_path(&dir.path().join("run"), edge_config::Role::Wg);

    // The spoke has no endpoint for the hub: it learns it from what the hub sends.
    let wggo = start_wireguard_go_debug(&spoke, &ifs);
    iface_up(&spoke, &ifs, &format!("{SPOKE_TUNNEL}/24"));
    spoke.run(&[
        "wg",
        "set",
        &ifs,
        "private-key",
        &ks.private_file.to_string_lossy(),
        "listen-port",
        SPOKE_PORT,
        "peer",
        &kh.public,
        "allowed-ips",
        &format!("{HUB_TUNNEL}/32"),
    ]);

    // 1. Standby: bound to the VIP before it exists; traffic for the peer starts nothing.
    let mut hubd = start_config_daemon(&hub, &cfg, &ctl, &ifh, 0);
    wait_control(&mut hubd, &ctl);
    hub.run(&["ip", "addr", "add", &format!("{VIP}/32"), "dev", "u1"]);
    let st = wg_status(&ctl);
    assert!(st.standby, "no role file: BACKUP, on standby: {st:?}");
    assert_eq!(st.listen_address.as_deref(), Some(VIP), "{st:?}");
    for _ in 0..3 {
        assert!(!ping_once(&hub, SPOKE_TUNNEL), "a standby host sent data");
    }
    let st = wg_status(&ctl);
    assert_eq!(st.peers[0].latest_handshake, 0, "{st:?}");
    assert_eq!(st.peers[0].handshake_attempts, 0, "{st:?}");
    assert!(
        !wggo.log().contains("Received handshake initiation"),
        "a standby host initiated a handshake: {}",
        wggo.log()
    );

    // 2. MASTER: a handshake at once, without traffic, from the VIP.
    let c = Client::new(edge_config::Role::Wg, ctl.clone());
    let told = Instant::now();
    let r = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(c.request(Request::SetRole(Box::new(role(HaRole::Master, 1)))))
        .unwrap();
    assert!(matches!(r, Response::Done { .. }), "{r:?}");
    wait_for("handshake after MASTER", Duration::from_secs(5), || {
        spoke_peer(&spoke, &ifs).1 > 0
    });
    eprintln!(
        "figure: handshake complete {} ms after SetRole MASTER",
        told.elapsed().as_millis()
    );
    assert_eq!(
        spoke_peer(&spoke, &ifs).0,
        format!("{VIP}:51820"),
        "the master sends from the virtual address"
    );
    assert!(!wg_status(&ctl).standby);
    wait_for("spoke reaches hub", Duration::from_secs(5), || {
        ping_once(&spoke, HUB_TUNNEL)
    });

    // 3. Failover to a host that knows nothing of the spoke: no endpoint, no endpoints.json,
    // no session. The spoke still holds its session with "the other host".
    stop_daemon(&mut hubd);
    drop(hubd);
    fs::remove_dir_all(dir.path().join("state")).unwrap();
    write_config(dir.path(), &ifh, &key_path, &ks.public, false);
    edge_ipc::follow::write_state(
        &edge_ipc::follow::state_path(&dir.path().join("run")),
        &role(HaRole::Master, 2),
    )
    .unwrap();
    let mark = wggo.log().len();
    let mut hubd = start_config_daemon(&hub, &cfg, &ctl, &ifh, 1);
    wait_control(&mut hubd, &ctl);
    let st = wg_status(&ctl);
    assert!(!st.standby, "ha.json says MASTER: {st:?}");
    assert_eq!(st.peers[0].endpoint, None, "{st:?}");
    thread::sleep(Duration::from_millis(300));
    let sent = Instant::now();
    wait_for(
        "the tunnel back after the failover",
        Duration::from_secs(6),
        || ping_once(&spoke, HUB_TUNNEL),
    );
    let back = sent.elapsed();
    eprintln!(
        "figure: tunnel back {} ms after the spoke's first packet to the new master",
        back.as_millis()
    );
    let st = wg_status(&ctl);
    assert!(st.reached_out >= 1, "{st:?}");
    assert_eq!(
        st.peers[0].endpoint.as_deref(),
        Some(format!("{SPOKE_UNDERLAY}:{SPOKE_PORT}").as_str()),
        "{st:?}"
    );
    let after = wggo.log()[mark..].to_string();
    assert!(
        after.contains("Received handshake initiation"),
        "the new master reached out: {after}"
    );
    drop(hubd);
}
