//! `edgectl notify test` as a user runs it, against local receivers: the event arrives, the
//! answer of each target is shown, exit codes tell the outcome.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use edge_testkit::receiver::{Answer, Receiver};

fn edgectl(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgectl"))
        .arg("--config")
        .arg(config)
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

fn write_config(dir: &Path, notify: &str) -> std::path::PathBuf {
    let p = dir.join("edge.toml");
    std::fs::write(&p, format!("version = 1\n{notify}")).unwrap();
    p
}

#[test]
fn the_webhook_receives_a_json_test_event_and_the_answer_is_shown() {
    let rx = Receiver::start_local(Answer::Ok);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("hook.token");
    std::fs::write(&token, "Bearer t0k3n-for-the-hook\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[notify]\nhost = \"proliant\"\n[[notify.webhook]]\nname = \"home\"\nurl = \"{}\"\nheaders = {{ Authorization = {{ file = \"{}\" }} }}\n",
            rx.url("/edge/hook"),
            token.display()
        ),
    );
    let (code, out, err) = edgectl(&cfg, &["notify", "test"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let line = out.lines().next().unwrap();
    assert!(line.starts_with("webhook   home"), "{out}");
    assert!(line.contains("ok: HTTP 200"), "{out}");
    assert!(
        line.contains(&format!("http://{}/…", rx.addr())),
        "the URL is shown without its path: {out}"
    );
    assert!(out.contains("{\"ok\":true}"), "the answer's body: {out}");
    assert!(
        !out.contains("/edge/hook") && !out.contains("t0k3n"),
        "{out}"
    );

    let got = rx.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, "POST");
    assert_eq!(got[0].path, "/edge/hook");
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(
        got[0].header("authorization"),
        Some("Bearer t0k3n-for-the-hook")
    );
    let doc = got[0].json().unwrap();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["kind"], "test");
    assert_eq!(doc["source"], "edgectl");
    assert_eq!(doc["host"], "proliant");
    assert!(
        doc["data"]["message"]
            .as_str()
            .unwrap()
            .contains("target `home` works"),
        "{doc}"
    );
}

#[test]
fn a_failing_target_fails_the_command_and_each_answer_is_reported() {
    let ok = Receiver::start_local(Answer::Ok);
    let bad = Receiver::start_local(Answer::Status(500));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            "[notify]\n[[notify.ntfy]]\nname = \"phone\"\nurl = \"{}\"\n[[notify.heartbeat]]\nname = \"hc\"\nurl = \"{}\"\n",
            bad.url("/alerts"),
            ok.url("/ping/abc")
        ),
    );
    let (code, out, err) = edgectl(&cfg, &["notify", "test"]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("FAILED: HTTP 500"), "{out}");
    assert!(out.contains("test receiver says 500"), "{out}");
    assert!(out.contains("heartbeat hc"), "{out}");
    assert_eq!(ok.received()[0].path, "/ping/abc");
    assert!(bad.received()[0].header("title").is_some());

    let (code, out, _) = edgectl(&cfg, &["--json", "notify", "test", "hc"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["ok"], true);
    assert_eq!(v["targets"].as_array().unwrap().len(), 1);
    assert_eq!(v["targets"][0]["target"], "hc");
    assert_eq!(v["targets"][0]["status"], 200);

    let (code, _, err) = edgectl(&cfg, &["notify", "test", "pager"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no notification target is named `pager` (targets: phone, hc)"),
        "{err}"
    );
}

#[test]
fn without_targets_it_says_what_to_add() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let (code, _, err) = edgectl(&cfg, &["notify", "test"]);
    assert_eq!(code, 2);
    assert!(err.contains("has no notification target"), "{err}");
    assert!(err.contains("[[notify.webhook]]"), "{err}");
    let (code, _, err) = edgectl(&cfg, &["config", "check"]);
    assert_eq!(code, 0, "{err}");
}
