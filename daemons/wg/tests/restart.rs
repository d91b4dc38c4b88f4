//! Namespace integration test of a restart of the config-mode daemon against wireguard-go:
//! a peer with no configured endpoint roams in, edge-wg remembers where it came from
//! (`<state_dir>/wg/endpoints.json`), and after a restart edge-wg initiates the handshake
//! itself, so the peer — still holding the old session, which would keep it silent for
//! 15 s and more — needs to do nothing. Also: a TCP stream through the tunnel recovers
//! across a restart (the gap is printed), and a reload that re-creates a peer (new
//! preshared key) re-handshakes at once. Namespaces are named `ewr-<pid>-*`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const HUB_UNDERLAY: &str = "10.96.1.1";
const SPOKE_UNDERLAY: &str = "10.96.1.2";
const SPOKE_PORT: &str = "40123";
const HUB_TUNNEL: &str = "10.95.0.1";
const SPOKE_TUNNEL: &str = "10.95.0.2";
/// The echo service behind the hub (on its loopback), reached through the tunnel.
const ECHO: &str = "10.94.0.1:7000";

/// The hub's edge.toml: one peer without an endpoint (it roams in), optionally with a PSK.
fn write_config(dir: &Path, ifname: &str, key: &Path, peer: &str, psk: Option<&Path>) -> PathBuf {
    let mut s = format!(
        "version = 1\n\n[global]\nstate_dir = \"{d}/state\"\nruntime_dir = \"{d}/run\"\n\
         log_format = \"text\"\nlog_level = \"debug\"\n\n[global.metrics]\nwg = \"127.0.0.1:9852\"\n\n\
         [wg]\ninterface = \"{ifname}\"\nlisten_port = 51820\nprivate_key = {{ file = \"{k}\" }}\n\
         addresses = [\"{HUB_TUNNEL}/24\"]\nmtu = 1420\n\n\
         [[wg.peer]]\nname = \"spoke\"\npublic_key = \"{peer}\"\nallowed_ips = [\"{SPOKE_TUNNEL}/32\"]\n",
        d = dir.display(),
        k = key.display()
    );
    if let Some(p) = psk {
        s.push_str(&format!(
            "preshared_key = {{ file = \"{}\" }}\n",
            p.display()
        ));
    }
    let path = dir.join("edge.toml");
    fs::write(&path, s).unwrap();
    path
}

fn write_secret(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// The hub's view of its one peer: (endpoint, latest handshake), if its UAPI answers.
fn hub_peer(ns: &Netns, ifname: &str) -> Option<(String, u64)> {
    let (ok, out) = ns.try_run(&["wg", "show", ifname, "dump"]);
    if !ok {
        return None;
    }
    let line = out.lines().nth(1)?;
    let f: Vec<&str> = line.split('\t').collect();
    Some((f.get(2)?.to_string(), f.get(4)?.parse().ok()?))
}

/// What the TCP stream through the tunnel saw.
#[derive(Debug, Default, Clone)]
struct StreamStats {
    round_trips: u64,
    errors: Vec<String>,
    max_gap: Duration,
}

/// An echo server on the hub side: one connection, echoed until EOF.
fn echo_server(hub: &Netns) -> thread::JoinHandle<()> {
    let listener = hub
        .enter(|| TcpListener::bind(ECHO).unwrap())
        .join()
        .unwrap();
    thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    })
}

/// From the spoke: 512-byte messages every 20 ms, each echo checked; never reconnects.
fn stream(
    spoke: &Netns,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<StreamStats>>,
) -> thread::JoinHandle<()> {
    spoke.enter(move || {
        let target: SocketAddr = ECHO.parse().unwrap();
        let mut s = match TcpStream::connect_timeout(&target, Duration::from_secs(5)) {
            Ok(s) => s,
            Err(e) => {
                stats.lock().unwrap().errors.push(format!("connect: {e}"));
                return;
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut last = Instant::now();
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let msg: Vec<u8> = (0..512).map(|i| (n as u8).wrapping_add(i as u8)).collect();
            let mut back = vec![0u8; msg.len()];
            let r = s.write_all(&msg).and_then(|_| s.read_exact(&mut back));
            let mut st = stats.lock().unwrap();
            match r {
                Ok(()) if back == msg => {
                    st.max_gap = st.max_gap.max(last.elapsed());
                    last = Instant::now();
                    st.round_trips += 1;
                }
                Ok(()) => {
                    st.errors.push(format!("corrupted echo at message {n}"));
                    return;
                }
                Err(e) => {
                    st.errors.push(format!("message {n}: {e}"));
                    return;
                }
            }
            drop(st);
            thread::sleep(Duration::from_millis(20));
        }
    })
}

fn round_trips(stats: &Arc<Mutex<StreamStats>>) -> u64 {
    stats.lock().unwrap().round_trips
}

#[test]
// One scenario read top to bottom (roam, idle restart, restart under a TCP stream, reload
// with a new preshared key): each phase restarts the same daemon on the state the one
// before left in the endpoint file, the namespaces and wireguard-go's log.
#[allow(clippy::too_many_lines)]
fn restart_initiates_the_handshake_to_the_remembered_endpoint() {
    require_root();
    let tg = tag("");
    let hub = Netns::with_prefix("ewr", &format!("{tg}-hub"));
    let spoke = Netns::with_prefix("ewr", &format!("{tg}-sp"));
    veth(
        &hub,
        "u1",
        &format!("{HUB_UNDERLAY}/24"),
        &spoke,
        "ul",
        &format!("{SPOKE_UNDERLAY}/24"),
    );
    hub.run(&["ip", "addr", "add", "10.94.0.1/32", "dev", "lo"]);
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (kh, ks) = (keypair(), keypair());
    let key_path = dir.path().join("wg.key");
    write_secret(&key_path, &kh.private);
    let ifh = format!("erh{tg}");
    let ifs = format!("ers{tg}");
    let cfg = write_config(dir.path(), &ifh, &key_path, &ks.public, None);
    let ctl = edge_config::socket_path(&dir.path().join("run"), edge_config::Role::Wg);
    let state_file = dir.path().join("state/wg/endpoints.json");

    let mut hubd = start_config_daemon(&hub, &cfg, &ctl, &ifh, 0);
    wait_for("control socket", Duration::from_secs(10), || {
        assert!(hubd.alive(), "edge-wg exited: {}", hubd.log());
        ctl.exists()
    });
    let wggo = start_wireguard_go_debug(&spoke, &ifs);
    iface_up(&spoke, &ifs, &format!("{SPOKE_TUNNEL}/24"));
    spoke.run(&["ip", "route", "add", "10.94.0.1/32", "dev", &ifs]);
    // No persistent keepalive: after the first exchange the peer stays silent unless it
    // has traffic to send.
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
        &format!("{HUB_TUNNEL}/32,10.94.0.1/32"),
        "endpoint",
        &format!("{HUB_UNDERLAY}:51820"),
    ]);

    // 1. The peer roams in; the hub learns and remembers its endpoint.
    assert_eq!(
        hub_peer(&hub, &ifh).map(|p| p.0).as_deref(),
        Some("(none)"),
        "no endpoint before the peer roams in"
    );
    wait_for("spoke reaches hub", Duration::from_secs(10), || {
        ping_once(&spoke, HUB_TUNNEL)
    });
    let learned = format!("{SPOKE_UNDERLAY}:{SPOKE_PORT}");
    wait_for("endpoints.json", Duration::from_secs(5), || {
        fs::read_to_string(&state_file).is_ok_and(|t| t.contains(&learned))
    });
    let text = fs::read_to_string(&state_file).unwrap();
    assert!(
        text.contains(&ks.public) && text.contains("\"spoke\""),
        "{text}"
    );
    let meta = fs::metadata(&state_file).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "endpoints.json mode");
    assert_eq!(
        fs::metadata(state_file.parent().unwrap()).unwrap().mode() & 0o777,
        0o700,
        "state directory mode"
    );
    let inode = meta.ino();

    // 2. Idle tunnel, restart: the hub handshakes at once; the peer only answers.
    thread::sleep(Duration::from_millis(300));
    let log_mark = wggo.log().len();
    stop_daemon(&mut hubd);
    let started = Instant::now();
    let mut hubd = start_config_daemon(&hub, &cfg, &ctl, &ifh, 1);
    let mut first_endpoint = None;
    wait_for(
        "handshake after the restart",
        Duration::from_secs(10),
        || {
            assert!(hubd.alive(), "edge-wg exited: {}", hubd.log());
            match hub_peer(&hub, &ifh) {
                Some((ep, hs)) => {
                    first_endpoint.get_or_insert(ep);
                    hs > 0
                }
                None => false,
            }
        },
    );
    let took = started.elapsed();
    eprintln!(
        "figure: idle restart: handshake complete {} ms after edge-wg was started again",
        took.as_millis()
    );
    assert_eq!(
        first_endpoint.as_deref(),
        Some(learned.as_str()),
        "the restarted hub knows the remembered endpoint before the peer sends anything"
    );
    assert!(
        took < Duration::from_secs(2),
        "handshake took {took:?} after the restart (the peer's own timers need 15 s and more)"
    );
    let after = wggo.log()[log_mark..].to_string();
    assert!(
        after.contains("Received handshake initiation"),
        "the hub initiated: {after}"
    );
    assert!(
        !after.contains("Sending handshake initiation"),
        "the peer did not have to act: {after}"
    );
    wait_for("control socket", Duration::from_secs(10), || ctl.exists());
    assert!(
        wg_status(&ctl).peers[0].handshake_attempts >= 1,
        "edge-wg counted its initiation"
    );
    assert!(ping_once(&hub, SPOKE_TUNNEL), "tunnel works after restart");
    assert_eq!(
        fs::metadata(&state_file).unwrap().ino(),
        inode,
        "the endpoint did not change, so the file was not rewritten"
    );

    // 3. A TCP stream from the peer through the tunnel recovers across a restart.
    let server = echo_server(&hub);
    let stop_flag = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Mutex::new(StreamStats::default()));
    let client = stream(&spoke, stop_flag.clone(), stats.clone());
    wait_for("stream flowing", Duration::from_secs(10), || {
        round_trips(&stats) > 20
    });
    stats.lock().unwrap().max_gap = Duration::ZERO;
    let before = round_trips(&stats);
    let t0 = Instant::now();
    stop_daemon(&mut hubd);
    let down = t0.elapsed();
    let mut hubd = start_config_daemon(&hub, &cfg, &ctl, &ifh, 2);
    wait_for(
        "the stream to recover after the restart",
        Duration::from_secs(10),
        || {
            assert!(hubd.alive(), "edge-wg exited: {}", hubd.log());
            assert!(
                stats.lock().unwrap().errors.is_empty(),
                "{:?}",
                stats.lock().unwrap().errors
            );
            round_trips(&stats) > before + 5
        },
    );
    thread::sleep(Duration::from_millis(500));
    let st = stats.lock().unwrap().clone();
    assert!(st.errors.is_empty(), "stream broke: {:?}", st.errors);
    eprintln!(
        "figure: restart under a TCP stream: edge-wg down {} ms, longest pause in the echoes {:.2} s",
        down.as_millis(),
        st.max_gap.as_secs_f64()
    );
    stop_flag.store(true, Ordering::Relaxed);
    client.join().unwrap();
    server.join().unwrap();

    // 4. A reload that re-creates the peer (new preshared key) re-handshakes at once.
    wait_for("control socket", Duration::from_secs(10), || ctl.exists());
    let attempts = wg_status(&ctl).peers[0].handshake_attempts;
    let psk = String::from_utf8_lossy(&run(&["wg", "genpsk"]).stdout)
        .trim()
        .to_string();
    let psk_path = dir.path().join("spoke.psk");
    write_secret(&psk_path, &psk);
    spoke.run(&[
        "wg",
        "set",
        &ifs,
        "peer",
        &kh.public,
        "preshared-key",
        &psk_path.to_string_lossy(),
    ]);
    write_config(dir.path(), &ifh, &key_path, &ks.public, Some(&psk_path));
    thread::sleep(Duration::from_millis(200));
    let log_mark = wggo.log().len();
    let t = Instant::now();
    // SAFETY: kill(2) on the pid of a child we started and have not reaped.
    unsafe { libc::kill(hubd.child.id() as libc::pid_t, libc::SIGHUP) };
    wait_for(
        "handshake after the psk reload",
        Duration::from_secs(5),
        || wggo.log()[log_mark..].contains("Received handshake initiation"),
    );
    eprintln!(
        "figure: reload with a new preshared key: initiation received {} ms after SIGHUP",
        t.elapsed().as_millis()
    );
    assert!(
        wg_status(&ctl).peers[0].handshake_attempts > attempts,
        "edge-wg initiated it"
    );
    assert!(
        ping_once(&hub, SPOKE_TUNNEL),
        "tunnel works with the new psk"
    );
    assert!(
        !wggo.log()[log_mark..].contains("Sending handshake initiation"),
        "the peer did not have to act: {}",
        &wggo.log()[log_mark..]
    );
    drop(hubd);
}
