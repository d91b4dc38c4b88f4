//! edge-wg's notifications, against a local webhook receiver in the daemon's namespace and
//! wireguard-go as a peer: a site that handshook and then went silent, and a site that never
//! answered, are each reported once as `wg.handshake_stale` after
//! `notify.wg_handshake_stale_after`; a road warrior (no endpoint, no keepalive) never is; a
//! peer whose `expires` passes is reported once as `wg.peer_expired`. Every document is
//! checked against docs/notify-event.schema.json. Namespaces are named `ewn-<pid>-*`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::*;
use edge_testkit::receiver::{Answer, Receiver};
use serde_json::Value;

const HUB_UNDERLAY: &str = "10.96.4.1";
const SPOKE_UNDERLAY: &str = "10.96.4.2";
const SPOKE_PORT: &str = "40125";

fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/notify-event.schema.json");
    let doc: Value = serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&doc)
        .unwrap()
}

/// (kind, data) of every event received, each checked against the schema.
fn events(rx: &Receiver) -> Vec<(String, Value)> {
    let v = schema();
    rx.received()
        .iter()
        .map(|r| {
            let doc = r.json().unwrap();
            let errors: Vec<String> = v.iter_errors(&doc).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{doc}: {errors:?}");
            assert_eq!(doc["source"], "edge-wg");
            (
                doc["kind"].as_str().unwrap().to_owned(),
                doc["data"].clone(),
            )
        })
        .collect()
}

fn rfc3339(unix: u64) -> String {
    let out = Command::new("date")
        .args(["-u", "-d", &format!("@{unix}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[test]
// One scenario read top to bottom: the config with its silent site and expiring peers is
// written inline, then each notification is checked in the order it arrives from the same
// receiver; split, each part would take the receiver, keys and daemon as parameters.
#[allow(clippy::too_many_lines)]
fn silent_sites_and_expired_peers_are_each_reported_once() {
    require_root();
    let tg = tag("");
    let hub = Netns::with_prefix("ewn", &format!("{tg}-hub"));
    let spoke = Netns::with_prefix("ewn", &format!("{tg}-sp"));
    veth(
        &hub,
        "u1",
        &format!("{HUB_UNDERLAY}/24"),
        &spoke,
        "ul",
        &format!("{SPOKE_UNDERLAY}/24"),
    );
    let rx = hub
        .enter(|| Receiver::start_local(Answer::Ok))
        .join()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (kh, ks) = (keypair(), keypair());
    let (kphone, kgone, ktemp) = (keypair(), keypair(), keypair());
    let key_path = dir.path().join("wg.key");
    fs::write(&key_path, &kh.private).unwrap();
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
    let ifh = format!("enh{tg}");
    let ifs = format!("ens{tg}");
    let expires_at = unix_now() + 4;
    let cfg = format!(
        "version = 1\n\n[global]\nstate_dir = \"{d}/state\"\nruntime_dir = \"{d}/run\"\n\
         log_format = \"text\"\nlog_level = \"debug\"\n\n[global.metrics]\nwg = \"127.0.0.1:9852\"\n\n\
         [wg]\ninterface = \"{ifh}\"\nlisten_port = 51820\nprivate_key = {{ file = \"{k}\" }}\n\
         addresses = [\"10.95.4.1/24\"]\nmtu = 1420\n\n\
         [[wg.peer]]\nname = \"site\"\npublic_key = \"{site}\"\nallowed_ips = [\"10.95.4.2/32\"]\n\
         endpoint = \"{SPOKE_UNDERLAY}:{SPOKE_PORT}\"\n\n\
         [[wg.peer]]\nname = \"gone\"\npublic_key = \"{gone}\"\nallowed_ips = [\"10.95.4.3/32\"]\n\
         endpoint = \"10.96.4.99:51820\"\n\n\
         [[wg.peer]]\nname = \"phone\"\npublic_key = \"{phone}\"\nallowed_ips = [\"10.95.4.4/32\"]\n\n\
         [[wg.peer]]\nname = \"temp\"\npublic_key = \"{temp}\"\nallowed_ips = [\"10.95.4.5/32\"]\n\
         expires = \"{exp}\"\n\n\
         [notify]\nhost = \"hub\"\nwg_handshake_stale_after = \"3s\"\n\
         [[notify.webhook]]\nname = \"hook\"\nurl = \"{url}\"\nevents = [\"wg.*\"]\n",
        d = dir.path().display(),
        k = key_path.display(),
        site = ks.public,
        gone = kgone.public,
        phone = kphone.public,
        temp = ktemp.public,
        exp = rfc3339(expires_at),
        url = rx.url("/hook"),
    );
    let cfg_path = dir.path().join("edge.toml");
    fs::write(&cfg_path, cfg).unwrap();

    let _wggo = start_daemon(&spoke, Impl::WireguardGo, &ifs, &[]);
    iface_up(&spoke, &ifs, "10.95.4.2/24");
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
        "10.95.4.1/32",
    ]);
    let ctl = edge_config::socket_path(&dir.path().join("run"), edge_config::Role::Wg);
    let mut hubd = start_config_daemon(&hub, &cfg_path, &ctl, &ifh, 0);
    wait_control(&mut hubd, &ctl);
    // The site handshakes (the hub initiates at start), then stays silent.
    wait_for("the site's handshake", Duration::from_secs(5), || {
        ping_once(&hub, "10.95.4.2")
    });

    wait_for("three events", Duration::from_secs(12), || rx.count() >= 3);
    // Each once: nothing more after another threshold.
    thread::sleep(Duration::from_secs(4));
    let mut got = events(&rx);
    got.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then(a.1["peer"].as_str().cmp(&b.1["peer"].as_str()))
    });
    assert_eq!(got.len(), 3, "{got:#?}\n{}", hubd.log());
    let (k, d) = &got[0];
    assert_eq!(
        (k.as_str(), d["peer"].as_str()),
        ("wg.handshake_stale", Some("gone"))
    );
    assert!(d["last_handshake"].is_null(), "{d}");
    assert_eq!(d["threshold_secs"], 3);
    let (k, d) = &got[1];
    assert_eq!(
        (k.as_str(), d["peer"].as_str()),
        ("wg.handshake_stale", Some("site"))
    );
    assert!(
        d["last_handshake"].is_string(),
        "the site did handshake: {d}"
    );
    let (k, d) = &got[2];
    assert_eq!(
        (k.as_str(), d["peer"].as_str()),
        ("wg.peer_expired", Some("temp"))
    );
    assert_eq!(d["expired_at"].as_str(), Some(rfc3339(expires_at).as_str()));
    drop(hubd);
}
