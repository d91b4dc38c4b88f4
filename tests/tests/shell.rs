//! A daemon started with the example config serves its metrics, and a SIGHUP with a broken
//! config keeps it running on the old one; a fixed config is then taken.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use edge_testkit::{Netns, binary, wait_for};
use nix::sys::signal::Signal;

fn metrics(ns: &Netns, port: u16) -> String {
    let out = ns.try_exec(
        "curl",
        [
            "-fsS",
            "--max-time",
            "2",
            &format!("http://127.0.0.1:{port}/metrics"),
        ],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn example_config_daemon_serves_metrics_and_survives_a_broken_reload() {
    let ns = Netns::new("ee2", "shell");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = d.join("cloudflare.token");
    std::fs::write(&token, "test-token-never-sent\n").unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let reference =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/edge.toml"))
            .unwrap();
    // The example config, with its directories and the token's file moved into the test's
    // temporary directory (the namespace has no route anywhere, so nothing leaves it).
    let config = reference
        .replace(
            "\"/var/lib/edge\"",
            &format!("\"{}\"", d.join("state").display()),
        )
        .replace("\"/run/edge\"", &format!("\"{}\"", d.join("run").display()))
        .replace(
            "\"/etc/edge/cloudflare.token\"",
            &format!("\"{}\"", token.display()),
        );
    let path = d.join("edge.toml");
    std::fs::write(&path, &config).unwrap();

    let mut cmd = Command::new(binary("edge-ddns"));
    cmd.args(["--config", path.to_str().unwrap(), "--log-format", "text"])
        .env_remove("CREDENTIALS_DIRECTORY");
    let mut daemon = ns.spawn("edge-ddns", cmd);

    let mut last = String::new();
    let up = wait_for(Duration::from_secs(20), || {
        last = metrics(&ns, 9851);
        last.contains("edge_build_info{role=\"ddns\"")
    });
    assert!(
        up.is_some(),
        "no edge_build_info on 127.0.0.1:9851; last answer:\n{last}\n{:?}",
        daemon.stop()
    );
    assert_eq!(value(&last, "edge_config_generation"), Some(1.0));

    // A broken config: SIGHUP must keep the daemon on the old one and count the failure.
    std::fs::write(&path, config.replacen("quorum = 2", "quorum = \"two\"", 1)).unwrap();
    daemon.signal(Signal::SIGHUP);
    let counted = wait_for(Duration::from_secs(10), || {
        last = metrics(&ns, 9851);
        value(&last, "edge_config_reload_failures_total") == Some(1.0)
    });
    assert!(counted.is_some(), "reload failure not counted:\n{last}");
    assert!(daemon.is_running(), "the daemon died on a broken reload");
    assert_eq!(value(&last, "edge_config_generation"), Some(1.0));

    // The control socket says so too.
    let sock_cfg = path.to_str().unwrap();
    let out = ns.try_exec(
        binary("edgectl").to_str().unwrap(),
        ["--config", sock_cfg, "ddns", "status", "--json"],
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status JSON: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(status["last_reload"]["ok"], false, "{status}");
    assert!(
        status["last_reload"]["errors"]
            .as_str()
            .unwrap_or_default()
            .contains("`ddns.quorum` must be an integer"),
        "{status}"
    );

    // The fixed file is taken on the next SIGHUP.
    std::fs::write(&path, &config).unwrap();
    daemon.signal(Signal::SIGHUP);
    let taken = wait_for(Duration::from_secs(10), || {
        last = metrics(&ns, 9851);
        value(&last, "edge_config_generation") == Some(2.0)
    });
    assert!(taken.is_some(), "fixed config not taken:\n{last}");

    // SIGTERM stops it cleanly and removes the control socket.
    daemon.signal(Signal::SIGTERM);
    let status = daemon
        .wait_timeout(Duration::from_secs(10))
        .expect("stops on SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(!d.join("run/ddns/control.sock").exists());
    let out = daemon.output_after_stop();
    if let Some(o) = out {
        let logs = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            !logs.contains("test-token-never-sent"),
            "the token leaked into the logs"
        );
    }
}
