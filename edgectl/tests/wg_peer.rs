//! `edgectl wg peer` as a user runs it on a copy of config/edge.toml (its state and key
//! paths moved into a temporary directory, no daemon running): the client's configuration
//! and QR code, the file edited with every comment kept, the same loader's verdict, and
//! every refusal leaving the file byte for byte as it was.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A known interface key and its public key (`wg pubkey`), RFC 7748's Alice.
const HOST_PRIVATE: &str = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
const HOST_PUBLIC: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";

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

struct Copy {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    text: String,
}

/// config/edge.toml with state_dir, runtime_dir and the key file inside a temporary
/// directory (and, with `key`, the interface key written there).
fn copy(key: bool) -> Copy {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let reference =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/edge.toml"))
            .unwrap();
    let text = reference
        .replace(
            "state_dir = \"/var/lib/edge\"",
            &format!("state_dir = \"{d}/state\""),
        )
        .replace(
            "runtime_dir = \"/run/edge\"",
            &format!("runtime_dir = \"{d}/run\""),
        )
        .replace(
            "file = \"/etc/edge/wg0.key\"",
            &format!("file = \"{d}/wg0.key\""),
        );
    assert_ne!(text, reference);
    let cfg = dir.path().join("edge.toml");
    std::fs::write(&cfg, &text).unwrap();
    if key {
        let k = dir.path().join("wg0.key");
        std::fs::write(&k, format!("{HOST_PRIVATE}\n")).unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    Copy { dir, cfg, text }
}

fn comments(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.trim_start().starts_with('#'))
        .collect()
}

fn field<'a>(conf: &'a str, key: &str) -> &'a str {
    conf.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{conf}"))
}

#[test]
fn add_prints_the_client_config_and_a_qr_code_and_remove_restores_the_file() {
    let c = copy(true);
    let (code, out, err) = edgectl(&c.cfg, &["wg", "peer", "add", "phone", "--qr"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.starts_with("[Interface]\nPrivateKey = "), "{out}");
    assert!(out.contains("\nAddress = 10.17.9.3/32\n"), "{out}");
    assert!(
        out.contains(&format!("[Peer]\nPublicKey = {HOST_PUBLIC}\n")),
        "{out}"
    );
    assert_eq!(
        field(&out, "AllowedIPs"),
        "10.17.3.0/24, 10.17.4.0/24, 10.17.5.0/24, 10.17.9.0/24"
    );
    assert_eq!(field(&out, "Endpoint"), "example.com:51820");
    // The QR code: block characters, as many columns on every line.
    let qr: Vec<&str> = out.lines().filter(|l| l.contains('█')).collect();
    assert!(qr.len() > 20, "{out}");
    let width = qr[0].chars().count();
    assert!(qr.iter().all(|l| l.chars().count() == width));
    // The only record is proxied: the user is told.
    assert!(err.contains("proxied by Cloudflare"), "{err}");
    assert!(err.contains("not running"), "{err}");

    // The file: one more peer, every comment still there, the same loader accepts it.
    let after = std::fs::read_to_string(&c.cfg).unwrap();
    for line in comments(&c.text) {
        assert!(after.contains(line), "comment lost: {line}");
    }
    let (code, _, err) = edgectl(&c.cfg, &["config", "check"]);
    assert_eq!(code, 0, "{err}");
    let private = field(&out, "PrivateKey");
    let psk = field(&out, "PresharedKey");
    let pubkey = edge_wg::model::Key::from_base64(private)
        .unwrap()
        .public_from_private()
        .to_base64();
    assert!(
        after.contains(&format!("public_key = \"{pubkey}\"")),
        "{after}"
    );
    assert!(
        !after.contains(psk),
        "the preshared key never sits in the TOML"
    );
    // The preshared key is in edge-wg's state directory, 0600; the client's private key is
    // nowhere on the host.
    let psk_file = c.dir.path().join("state/wg/psk/phone.psk");
    assert_eq!(std::fs::read_to_string(&psk_file).unwrap().trim(), psk);
    let mode = std::fs::metadata(&psk_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    for entry in walk(c.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(private),
            "{} holds the client's private key",
            entry.display()
        );
    }

    let (code, out, err) = edgectl(&c.cfg, &["wg", "peer", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("phone") && l.contains("10.17.9.3/32")),
        "{out}"
    );

    let (code, _, err) = edgectl(&c.cfg, &["wg", "peer", "remove", "phone"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&c.cfg).unwrap(), c.text);
    assert!(!psk_file.exists(), "the preshared key add made is removed");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn refusals_exit_2_and_leave_the_file_untouched() {
    let c = copy(true);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["add", "bad name"], "is not usable"),
        (vec!["add", "admin-laptop"], "already exists"),
        (
            vec!["add", "tablet", "--allowed-ips", "10.17.9.2/32"],
            "is taken",
        ),
        (
            vec!["add", "tablet", "--allowed-ips", "10.17.9.1/32"],
            "the host",
        ),
        (vec!["add", "tablet", "--expires", "someday"], "RFC 3339"),
        (vec!["add", "tablet", "--endpoint", "no-port"], "--endpoint"),
        (vec!["remove", "nobody"], "no peer named"),
        (vec!["renew", "nobody", "--expires", "30d"], "no peer named"),
    ];
    for (args, want) in cases {
        let mut a = vec!["wg", "peer"];
        a.extend(args.iter());
        let (code, out, err) = edgectl(&c.cfg, &a);
        assert_eq!(code, 2, "{args:?}\nstdout:\n{out}\nstderr:\n{err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(err.contains("nothing was changed"), "{args:?}: {err}");
        assert!(!out.contains("PrivateKey"), "{args:?}: {out}");
        assert_eq!(std::fs::read_to_string(&c.cfg).unwrap(), c.text, "{args:?}");
    }
    assert!(!c.dir.path().join("state/wg/psk/tablet.psk").exists());

    // A full network: a /30 has two hosts, the host's and admin-laptop's.
    let full = c.text.replace(
        "addresses = [\"10.17.9.1/24\"]",
        "addresses = [\"10.17.9.1/30\"]",
    );
    std::fs::write(&c.cfg, &full).unwrap();
    let (code, _, err) = edgectl(&c.cfg, &["wg", "peer", "add", "tablet"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("10.17.9.0/30 is full"), "{err}");
    assert_eq!(std::fs::read_to_string(&c.cfg).unwrap(), full);
}

#[test]
fn output_expiry_renew_and_a_missing_interface_key() {
    let c = copy(false);
    let out_file = c.dir.path().join("phone.conf");
    let (code, out, err) = edgectl(
        &c.cfg,
        &[
            "wg",
            "peer",
            "add",
            "phone",
            "--expires",
            "2030-01-01T00:00:00Z",
            "--endpoint",
            "vpn.example.com:51820",
            "--output",
            out_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("PrivateKey"),
        "written to the file only: {out}"
    );
    // The interface had no key: it was created (0600) and the client names its public key.
    assert!(err.contains("created the interface's private key"), "{err}");
    let key_file = c.dir.path().join("wg0.key");
    let private = std::fs::read_to_string(&key_file).unwrap();
    let host_pub = edge_wg::model::Key::from_base64(private.trim())
        .unwrap()
        .public_from_private()
        .to_base64();
    let conf = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(field(&conf, "PublicKey"), host_pub);
    assert_eq!(field(&conf, "Endpoint"), "vpn.example.com:51820");
    for f in [&out_file, &key_file] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", f.display());
    }
    let text = std::fs::read_to_string(&c.cfg).unwrap();
    assert!(text.contains("expires = 2030-01-01T00:00:00Z"), "{text}");

    let (code, _, err) = edgectl(
        &c.cfg,
        &[
            "wg",
            "peer",
            "renew",
            "phone",
            "--expires",
            "2031-06-01T12:00:00+02:00",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = edgectl(&c.cfg, &["--json", "wg", "peer", "list"]);
    assert_eq!(code, 0);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let phone = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "phone")
        .unwrap();
    assert_eq!(phone["expires"], "2031-06-01T10:00:00Z");
    assert_eq!(phone["expired"], false);

    // An expiry in the past is listed as expired.
    let (code, _, err) = edgectl(
        &c.cfg,
        &[
            "wg",
            "peer",
            "renew",
            "phone",
            "--expires",
            "2020-01-01T00:00:00Z",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = edgectl(&c.cfg, &["wg", "peer", "list"]);
    assert!(out.contains("EXPIRED 2020-01-01T00:00:00Z"), "{out}");
    let (code, _, _) = edgectl(
        &c.cfg,
        &["wg", "peer", "renew", "phone", "--expires", "never"],
    );
    assert_eq!(code, 0);
    assert!(
        !std::fs::read_to_string(&c.cfg)
            .unwrap()
            .contains("expires =")
    );
    // --output never overwrites.
    let (code, _, err) = edgectl(
        &c.cfg,
        &[
            "wg",
            "peer",
            "add",
            "tablet",
            "--output",
            out_file.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("the file exists"), "{err}");
}
