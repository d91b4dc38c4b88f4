//! `edgectl config check` as a user runs it: exit codes, located errors, warnings, JSON.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

fn edgectl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgectl"))
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

fn reference() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/edge.toml")
        .display()
        .to_string()
}

#[test]
fn the_reference_config_passes_with_the_192_198_warning() {
    let (code, out, err) = edgectl(&["config", "check", "--config", &reference()]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("valid"), "{out}");
    let warning = "warning: 192.198.0.30/24 is not a private address";
    assert_eq!(err.matches(warning).count(), 1, "{err}");
    assert!(err.contains("edge.toml:78:14: warning"), "{err}");
}

#[test]
fn three_mistakes_give_three_located_errors_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    let text = std::fs::read_to_string(reference())
        .unwrap()
        .replacen(
            "addresses = [\"10.17.5.1/24\"]",
            "addresses = [\"10.17.5.1/33\"]",
            1,
        )
        .replacen("hairpin = false\n", "hairpn = false\n", 1)
        .replacen("port = 443\n", "port = 70000\n", 1);
    std::fs::write(&path, &text).unwrap();
    let (code, out, err) = edgectl(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    let line = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let p = path.display();
    for (needle, col, msg) in [
        ("10.17.5.1/33", 14, "prefix length must be 0 to 32"),
        ("hairpn", 1, "unknown key `hairpn` in [[link.port]] #1"),
        ("port = 70000", 8, "port 70000 is out of range"),
    ] {
        let head = format!("{p}:{}:{col}: error:", line(needle));
        assert!(err.contains(&head), "{head} missing in:\n{err}");
        assert!(err.contains(msg), "{msg} missing in:\n{err}");
    }
    assert!(err.contains("did you mean `hairpin`?"), "{err}");
    assert!(err.contains("3 errors"), "{err}");
    assert!(
        err.contains("   |      ^"),
        "a caret under the value:\n{err}"
    );
}

#[test]
fn json_output_reports_errors_with_locations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, "version = 1\n[link]\nprotectd = []\n").unwrap();
    let (code, out, _) = edgectl(&[
        "config",
        "check",
        "--json",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["location"]["line"], 3);
    assert_eq!(v["errors"][0]["hint"], "did you mean `protected`?");
}

#[test]
fn a_token_readable_by_others_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("cloudflare.token");
    std::fs::write(&token, "not-a-real-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = dir.path().join("edge.toml");
    let text = format!(
        "version = 1\n[ddns]\ntoken = {{ file = \"{}\" }}\nquorum = 1\n[[ddns.record]]\nname = \"example.com\"\n[[ddns.source]]\nname = \"fixed\"\nkind = \"static\"\naddress = \"81.2.69.160\"\n",
        token.display()
    );
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = edgectl(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    let t = token.display();
    assert!(
        err.contains(&format!(
            "secret file {t} is readable by group or others (mode 0644)"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("run `chmod 600 {t}`")), "{err}");
    assert!(
        !err.contains("not-a-real-token"),
        "the secret leaked:\n{err}"
    );
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, err) = edgectl(&["config", "check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_missing_file_says_how_to_point_at_one() {
    let (code, _, err) = edgectl(&["config", "check", "--config", "/nonexistent/edge.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the configuration"), "{err}");
    assert!(err.contains("EDGE_CONFIG"), "{err}");
}

#[test]
fn completions_and_man_page_are_generated() {
    let (code, out, _) = edgectl(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(out.contains("edgectl"), "{out}");
    let (code, out, _) = edgectl(&["man"]);
    assert_eq!(code, 0);
    assert!(out.contains(".TH edgectl"), "{out}");
    let (code, out, _) = edgectl(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("edgectl "), "{out}");
}
