//! The two-host lab end to end: `edgectl lab up --ha` (two edge hosts behind the ISP router,
//! keepalived and conntrackd from Debian on both, the four daemons on both), then
//! `edgectl lab check --ha`: one master; the forwards through it; the DDNS record written by
//! the master; the master's daemons stopped, its WAN link down, its keepalived stopped —
//! each moves the VIP and the forwards to the other host while a long-lived TCP stream
//! through the https forward keeps flowing; both hosts briefly master; zero DDNS writes.
//! The figures (failover time, longest pause, resets, WireGuard, writes) are printed.
//! Every step must pass. `edgectl lab down` leaves no namespace behind.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::process::Command;

use edge_testkit::{binary, require_root};

struct Down(String);

impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(binary("edgectl"))
            .args(["lab", "--name", &self.0, "--wg-if", "wgha", "down"])
            .output();
    }
}

#[test]
fn two_hosts_fail_over_under_keepalived_with_flows_kept_and_no_dns_writes() {
    require_root();
    let name = format!("eha{}", std::process::id());
    let guard = Down(name.clone());
    let lab = |args: &[&str]| {
        let mut all = vec!["lab", "--name", &name, "--wg-if", "wgha"];
        all.extend_from_slice(args);
        Command::new(binary("edgectl")).args(&all).output().unwrap()
    };
    let up = lab(&["up", "--ha"]);
    assert!(
        up.status.success(),
        "lab up --ha failed:\n{}\n{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&up.stdout));

    let check = lab(&["--json", "check", "--ha"]);
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap_or_else(|e| {
        panic!(
            "lab check --ha printed no report ({e}):\n{}\n{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        )
    });
    let steps = report["steps"].as_array().unwrap();
    assert!(steps.len() >= 15, "{report}");
    let mut required_failed = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        let verdict = if s["ok"].as_bool() == Some(true) {
            "PASS"
        } else {
            "FAIL"
        };
        eprintln!(
            "[{verdict}] {}. {}\n       {}",
            i + 1,
            s["name"].as_str().unwrap_or_default(),
            s["detail"].as_str().unwrap_or_default()
        );
        if verdict == "FAIL" {
            required_failed.push(s["name"].as_str().unwrap_or_default().to_owned());
        }
    }
    for f in report["figures"].as_array().unwrap() {
        eprintln!("figure: {}", f.as_str().unwrap_or_default());
    }
    assert!(
        required_failed.is_empty(),
        "required steps failed: {required_failed:#?}"
    );

    let down = lab(&["down"]);
    assert!(down.status.success());
    drop(guard);
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !left.iter().any(|n| n.starts_with(&format!("{name}-"))),
        "namespaces left behind: {left:?}"
    );
}
