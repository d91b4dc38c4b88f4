//! The reference deployment (`config/edge.toml`) loads, with exactly the expected warning.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::path::Path;

fn reference() -> (std::path::PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/edge.toml");
    let text = std::fs::read_to_string(&path).expect("config/edge.toml is readable");
    (path, text)
}

#[test]
fn reference_config_is_valid_and_warns_once_about_192_198() {
    let (path, text) = reference();
    let loaded = match edge_config::parse(&path, &text) {
        Ok(l) => l,
        Err(d) => panic!("reference config refused:\n{d}"),
    };
    let warnings: Vec<_> = loaded.warnings.warnings().collect();
    let rendered = loaded.warnings.render();
    let private = warnings
        .iter()
        .filter(|w| w.message.contains("192.198.0.0/16 is public address space"))
        .count();
    assert_eq!(
        private, 1,
        "the 192.198 warning appears exactly once:\n{rendered}"
    );
    assert_eq!(warnings.len(), 1, "no other warnings expected:\n{rendered}");
    assert!(rendered.contains("edge.toml:"), "{rendered}");

    let c = loaded.config;
    let link = c.link.as_ref().expect("[link]");
    assert_eq!(link.protected[0].as_str(), "enp4s0f1");
    let names: Vec<_> = link.bridges.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["br-api", "br1", "br0"]);
    assert_eq!(
        link.bridge_of_port("enp3s0f0").map(|b| b.name.as_str()),
        Some("br-api")
    );
    assert_eq!(
        link.bridge_of_port("enp4s0f0").map(|b| b.name.as_str()),
        Some("br1")
    );
    let fw = c.fw.as_ref().expect("[fw]");
    let fwd: Vec<_> = fw
        .forwards
        .iter()
        .map(|f| (f.name.as_str(), f.port.start.get(), f.to.to_string()))
        .collect();
    assert_eq!(
        fwd,
        [
            ("http", 80, "10.17.5.30".to_owned()),
            ("https", 443, "10.17.5.30".to_owned()),
            ("k8s-api", 6443, "10.17.5.10".to_owned()),
        ]
    );
    let api = &fw.forwards[2];
    assert_eq!(
        api.from.as_ref().map(|f| f[0].label.as_str()),
        Some("wireguard")
    );
    let wg = c.wg.as_ref().expect("[wg]");
    assert_eq!(wg.listen_port.get(), 51820);
    assert_eq!(wg.peers.len(), 1);
    let ddns = c.ddns.as_ref().expect("[ddns]");
    assert_eq!(ddns.records[0].name.as_str(), "example.com");
    assert!(ddns.records[0].proxied);
    assert_eq!(ddns.schedule, "0 * * * * *");
}

#[test]
fn every_key_of_the_reference_config_has_a_comment() {
    let (_, text) = reference();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with('[') {
            continue;
        }
        let prev = lines[..i].iter().rev().find(|l| !l.trim().is_empty());
        assert!(
            prev.is_some_and(|p| p.trim_start().starts_with('#')),
            "line {} has no comment above it: {line}",
            i + 1
        );
    }
}

/// A daemon looks only at its own secrets: another daemon's missing secret (a credential that
/// lives in that daemon's credentials directory) is neither an error nor a warning for it,
/// while `edgectl config check` (no role) still warns about every missing one.
#[test]
fn a_daemon_checks_only_its_own_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (_, text) = reference();
    let text = text
        .replace(
            "token = { credential = \"cloudflare-token\", file = \"/etc/edge/cloudflare.token\" }",
            &format!("token = {{ file = \"{}\" }}", token.display()),
        )
        .replace(
            "private_key = { credential = \"wg-private-key\", file = \"/etc/edge/wg0.key\" }",
            "private_key = { file = \"/nonexistent/edge/wg0.key\" }",
        );
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, text).unwrap();
    let ddns = edge_config::load(
        &path,
        edge_config::LoadOptions {
            role: Some(edge_config::Role::Ddns),
        },
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let rendered = ddns.warnings.render();
    assert!(!rendered.contains("wg0.key"), "{rendered}");
    let all = edge_config::load(&path, edge_config::LoadOptions::default())
        .unwrap_or_else(|d| panic!("{d}"));
    assert!(all.warnings.render().contains("/nonexistent/edge/wg0.key"));
    let wg = edge_config::load(
        &path,
        edge_config::LoadOptions {
            role: Some(edge_config::Role::Wg),
        },
    );
    assert!(wg.is_err(), "edge-wg must refuse its own missing key");
}
