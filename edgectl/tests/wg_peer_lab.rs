//! `edgectl wg peer` against a running edge-wg in network namespaces (needs root; fails,
//! never skips, without it): a peer added this way completes a handshake with
//! wireguard-go without edge-wg restarting; at its `expires` it stops flowing within a
//! second (status, metric and log say so); `renew` brings it back; `remove` takes it out.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_testkit::{Netns, binary, run_ok, wait_for};

fn edgectl(cfg: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgectl"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("EDGE_CONFIG")
        .output()
        .expect("edgectl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn field<'a>(conf: &'a str, key: &str) -> &'a str {
    conf.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{conf}"))
}

fn ping(ns: &Netns, dst: &str) -> bool {
    ns.try_exec("ping", ["-c", "1", "-W", "1", dst])
        .status
        .success()
}

fn status_of(cfg: &Path, name: &str) -> edge_ipc::wg::PeerStatus {
    let (code, out, err) = edgectl(cfg, &["--json", "wg", "show"]);
    assert_eq!(code, 0, "{err}");
    let st: edge_ipc::wg::Status = serde_json::from_str(&out).unwrap();
    st.peers
        .into_iter()
        .find(|p| p.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no peer {name} in {out}"))
}

fn secret_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{text}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.display().to_string()
}

#[test]
// One peer's life read top to bottom: added, handshaking, expired, renewed, removed, all
// against the same edge-wg, whose PID must stay the same throughout; split, each step would
// take both namespaces, the daemon, the configuration and the phone's interface as
// parameters.
#[allow(clippy::too_many_lines)]
fn an_added_peer_handshakes_without_a_restart_and_stops_at_its_expiry() {
    let hub = Netns::new("ewp", "hub");
    let phone = Netns::new("ewp", "ph");
    run_ok(
        "ip",
        [
            "link",
            "add",
            "ewpv0",
            "netns",
            hub.name(),
            "type",
            "veth",
            "peer",
            "name",
            "ul",
            "netns",
            phone.name(),
        ],
    );
    hub.ip(["addr", "add", "10.99.0.1/24", "dev", "ewpv0"]);
    hub.ip(["link", "set", "ewpv0", "up"]);
    phone.ip(["addr", "add", "10.99.0.2/24", "dev", "ul"]);
    phone.ip(["link", "set", "ul", "up"]);

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = dir.path().display().to_string();
    let cfg = dir.path().join("edge.toml");
    let ifh = "ewphub";
    std::fs::write(
        &cfg,
        format!(
            "version = 1\n\n# The hub of this test.\n[global]\nstate_dir = \"{d}/state\"\n\
             runtime_dir = \"{d}/run\"\nlog_format = \"text\"\n\n[global.metrics]\n\
             wg = \"127.0.0.1:9852\"\n\n# The WireGuard side.\n[wg]\ninterface = \"{ifh}\"\n\
             listen_port = 51820\nprivate_key = {{ file = \"{d}/wg0.key\" }}\n\
             addresses = [\"10.17.9.1/24\"]\n"
        ),
    )
    .unwrap();
    let private = {
        let out = Command::new("wg").arg("genkey").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    secret_file(dir.path(), "wg0.key", &private);
    let mut cmd = Command::new(binary("edge-wg"));
    cmd.arg("-c").arg(&cfg);
    let mut hubd = hub.spawn("edge-wg", cmd);
    let ctl = dir.path().join("run/wg/control.sock");
    wait_for(Duration::from_secs(10), || ctl.exists())
        .unwrap_or_else(|| panic!("edge-wg did not start: {:?}", hubd.stop()));
    let pid = hubd.pid();

    // Add the phone: the client's configuration, as the user would import it.
    let (code, conf, err) = edgectl(
        &cfg,
        &[
            "wg",
            "peer",
            "add",
            "phone",
            "--endpoint",
            "10.99.0.1:51820",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("edge-wg reloaded"), "{err}");
    assert_eq!(field(&conf, "Address"), "10.17.9.2/32");
    let ifp = "ewpphone";
    let mut wggo = Command::new("wireguard-go");
    wggo.args(["-f", ifp]).env("WG_PROCESS_FOREGROUND", "1");
    let _phoned = phone.spawn("wireguard-go", wggo);
    let sock = format!("/var/run/wireguard/{ifp}.sock");
    wait_for(Duration::from_secs(10), || Path::new(&sock).exists()).unwrap();
    let pk = secret_file(dir.path(), "phone.key", field(&conf, "PrivateKey"));
    let psk = secret_file(dir.path(), "phone.psk", field(&conf, "PresharedKey"));
    phone.exec(
        "wg",
        [
            "set",
            ifp,
            "private-key",
            &pk,
            "peer",
            field(&conf, "PublicKey"),
            "preshared-key",
            &psk,
            "allowed-ips",
            "10.17.9.0/24",
            "endpoint",
            field(&conf, "Endpoint"),
        ],
    );
    phone.ip(["addr", "add", field(&conf, "Address"), "dev", ifp]);
    phone.ip(["link", "set", ifp, "up"]);
    // What wg-quick does with AllowedIPs: route them into the tunnel.
    for net in field(&conf, "AllowedIPs").split(", ") {
        phone.ip(["route", "add", net, "dev", ifp]);
    }
    if wait_for(Duration::from_secs(15), || ping(&phone, "10.17.9.1")).is_none() {
        let dump = hub.try_exec("wg", ["show", ifh, "dump"]);
        let pdump = phone.try_exec("wg", ["show", ifp, "dump"]);
        let out = hubd.stop().unwrap();
        panic!(
            "the added peer does not reach the hub:\nhub: {}\nphone: {}\nlog: {}\nconf: {conf}",
            String::from_utf8_lossy(&dump.stdout),
            String::from_utf8_lossy(&pdump.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        hubd.is_running() && hubd.pid() == pid,
        "edge-wg was not restarted"
    );
    let st = status_of(&cfg, "phone");
    assert!(st.latest_handshake > 0, "{st:?}");

    // Expiry in 4 s: pings every 100 ms from the phone, with their reply times.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let expiry = now.as_secs() + 4;
    let (code, _, err) = edgectl(
        &cfg,
        &[
            "wg",
            "peer",
            "renew",
            "phone",
            "--expires",
            &format!("{}s", expiry - now.as_secs()),
        ],
    );
    assert_eq!(code, 0, "{err}");
    // `--expires 4s` is counted from edgectl's clock: read back what it wrote.
    let text = std::fs::read_to_string(&cfg).unwrap();
    let written = text
        .lines()
        .find_map(|l| l.strip_prefix("expires = "))
        .unwrap()
        .trim()
        .to_owned();
    let expiry = edge_config::wg::Expiry::parse(&written).unwrap().unix() as f64;
    let out = phone.try_exec(
        "ping",
        ["-D", "-n", "-i", "0.1", "-c", "70", "-W", "1", "10.17.9.1"],
    );
    let replies: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| {
            l.strip_prefix('[')
                .and_then(|r| r.split(']').next())
                .and_then(|t| t.parse().ok())
        })
        .collect();
    assert!(
        replies.iter().any(|t| *t < expiry - 1.0),
        "the peer flowed before its expiry: {replies:?} (expiry {expiry})"
    );
    let last = replies.iter().copied().fold(0.0, f64::max);
    eprintln!("last reply {:.3} s after the expiry", last - expiry);
    assert!(
        last < expiry + 1.0,
        "replies until {last}, expiry {expiry}: more than a second late"
    );
    assert!(!ping(&phone, "10.17.9.1"));
    let st = status_of(&cfg, "phone");
    assert!(st.expired, "{st:?}");
    let routes = hub.try_exec("ip", ["route", "show", "dev", ifh]);
    assert!(
        !String::from_utf8_lossy(&routes.stdout).contains("10.17.9.2"),
        "the route is gone"
    );
    let metrics = hub.try_exec("curl", ["-s", "http://127.0.0.1:9852/metrics"]);
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    assert!(
        metrics.contains("edge_wg_peer_expired{peer=\"phone\"} 1"),
        "{metrics}"
    );
    let (_, list, _) = edgectl(&cfg, &["wg", "peer", "list"]);
    assert!(list.contains("EXPIRED"), "{list}");

    // Renewed: it flows again, still without a restart.
    let (code, _, err) = edgectl(&cfg, &["wg", "peer", "renew", "phone", "--expires", "1h"]);
    assert_eq!(code, 0, "{err}");
    wait_for(Duration::from_secs(20), || ping(&phone, "10.17.9.1"))
        .expect("the renewed peer flows again");
    assert!(!status_of(&cfg, "phone").expired);

    // Removed: gone from the device and the routes.
    let (code, _, err) = edgectl(&cfg, &["wg", "peer", "remove", "phone"]);
    assert_eq!(code, 0, "{err}");
    assert!(!ping(&phone, "10.17.9.1"));
    let dump = hub.try_exec("wg", ["show", ifh, "dump"]);
    assert_eq!(String::from_utf8_lossy(&dump.stdout).lines().count(), 1);
    assert!(hubd.is_running() && hubd.pid() == pid);
    let out = hubd.stop().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("peer expired"),
        "the log says so"
    );
}
