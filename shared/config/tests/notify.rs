//! The `[notify]` rules: one test per rule, each asserting the located message and the hint.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use edge_config::notify::HeartbeatMethod;
use edge_config::{LoadOptions, Role, Severity};

fn parse(body: &str) -> Result<edge_config::Loaded, edge_config::Diagnostics> {
    edge_config::parse(Path::new("edge.toml"), &format!("version = 1\n{body}"))
}

/// (location, severity, message, hint) of every diagnostic.
fn diags(body: &str) -> Vec<(String, Severity, String, Option<String>)> {
    let items = match parse(body) {
        Ok(l) => l.warnings.items().to_vec(),
        Err(d) => d.items().to_vec(),
    };
    items
        .into_iter()
        .map(|x| {
            (
                x.location.map(|l| l.to_string()).unwrap_or_default(),
                x.severity,
                x.message,
                x.hint,
            )
        })
        .collect()
}

#[test]
fn a_full_section_loads_with_its_defaults() {
    let l = parse(
        r#"
[notify]
host = "proliant"
[[notify.webhook]]
name = "home"
url = "https://hooks.example.org/edge"
headers = { Authorization = { file = "/etc/edge/hook.token" } }
events = ["ddns.*", "fw.apply_failed"]
[[notify.ntfy]]
name = "phone"
url = "https://ntfy.example.org/edge-alerts"
token = { credential = "ntfy-token" }
max_per_minute = 5
[[notify.heartbeat]]
name = "hc"
url = "https://hc.example.org/ping/0b5c"
"#,
    )
    .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(l.warnings.items().len(), 1, "{}", l.warnings);
    let n = l.config.notify.unwrap();
    assert_eq!(n.host.as_deref(), Some("proliant"));
    assert_eq!(n.timeout.as_secs(), 10);
    assert_eq!(n.queue, 64);
    assert_eq!(n.ddns_failing_after, 3);
    assert_eq!(n.link_down_after.as_secs(), 10);
    assert_eq!(n.wg_handshake_stale_after.as_secs(), 600);
    assert_eq!(n.target_names(), ["home", "phone", "hc"]);
    let w = &n.webhooks[0];
    assert_eq!(w.headers[0].0, "Authorization");
    assert_eq!(w.max_per_minute, 20);
    assert!(w.events.matches("ddns.sync_failing"));
    assert!(!w.events.matches("link.down"));
    assert!(n.ntfy[0].events.matches("link.down"), "default: everything");
    assert_eq!(n.ntfy[0].max_per_minute, 5);
    let h = &n.heartbeats[0];
    assert_eq!(
        h.fail_url.to_string(),
        "https://hc.example.org/ping/0b5c/fail"
    );
    assert_eq!(h.method, HeartbeatMethod::Post);
    // The one warning: nothing pings a heartbeat without [ddns].
    let w = &l.warnings.items()[0];
    assert!(w.message.contains("there is no [ddns] section"), "{w:?}");
}

#[test]
fn an_unknown_event_is_located_with_a_did_you_mean() {
    let d = diags(
        "[notify]\n[[notify.webhook]]\nname = \"a\"\nurl = \"https://x.example/\"\nevents = [\"ddns.*\", \"ddns.record_change\"]\n",
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "6:21");
    assert_eq!(d[0].2, "unknown event `ddns.record_change`");
    assert_eq!(
        d[0].3.as_deref(),
        Some("did you mean \"ddns.record_changed\"?")
    );
    let d = diags(
        "[notify]\n[[notify.webhook]]\nname = \"a\"\nurl = \"https://x.example/\"\nevents = []\n",
    );
    assert_eq!(d[0].2, "`events = []` sends nothing to this target");
    assert_eq!(d[0].0, "6:10");
}

#[test]
fn header_values_are_secrets_never_text_in_the_file() {
    let d = diags(
        "[notify]\n[[notify.webhook]]\nname = \"a\"\nurl = \"https://x.example/\"\nheaders = { Authorization = \"Bearer abc\" }\n",
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "6:29");
    assert!(d[0].2.contains("must not hold the secret itself"), "{d:?}");
    assert!(d[0].3.as_deref().unwrap().contains("file ="), "{d:?}");
    let d = diags(
        "[notify]\n[[notify.webhook]]\nname = \"a\"\nurl = \"https://x.example/\"\nheaders = { Content-Type = { file = \"/etc/edge/x\" } }\n",
    );
    assert_eq!(d[0].2, "header `Content-Type` is set by edge itself");
    let d = diags(
        "[notify]\n[[notify.webhook]]\nname = \"a\"\nurl = \"https://x.example/\"\nheaders = { \"Bad Header\" = { file = \"/etc/edge/x\" } }\n",
    );
    assert_eq!(d[0].2, "`Bad Header` is not a valid HTTP header name");
}

#[test]
fn plain_http_is_refused_with_a_secret_and_warned_about_without_one() {
    let d = diags(
        "[notify]\n[[notify.webhook]]\nname = \"a\"\nurl = \"http://192.168.1.5:8123/hook\"\nheaders = { Authorization = { file = \"/etc/edge/t\" } }\n",
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].1, Severity::Error);
    assert_eq!(d[0].0, "5:7");
    assert_eq!(
        d[0].2,
        "`http://192.168.1.5:8123/hook` would send the `Authorization` header over plain HTTP"
    );
    let d = diags(
        "[notify]\n[[notify.ntfy]]\nname = \"a\"\nurl = \"http://ntfy.lan/alerts\"\ntoken = { file = \"/etc/edge/t\" }\n",
    );
    assert_eq!(d[0].1, Severity::Error);
    assert!(d[0].2.contains("the access token"), "{d:?}");
    let d = diags(
        "[notify]\n[[notify.heartbeat]]\nname = \"k\"\nurl = \"http://kuma.lan/api/push/x\"\n[ddns]\ntoken = { file = \"/etc/edge/cf\" }\n[[ddns.record]]\nname = \"example.com\"\n[[ddns.source]]\nname = \"s\"\nkind = \"static\"\naddress = \"81.0.0.2\"\n",
    );
    let http: Vec<_> = d.iter().filter(|x| x.2.contains("plain HTTP")).collect();
    assert_eq!(http.len(), 1, "{d:?}");
    assert_eq!(http[0].1, Severity::Warning);
    // Loopback is fine (tests, a local relay).
    assert!(
        parse("[notify]\n[[notify.webhook]]\nname = \"a\"\nurl = \"http://127.0.0.1:9/h\"\nheaders = { A = { file = \"/etc/edge/t\" } }\n")
            .unwrap()
            .warnings
            .items()
            .is_empty()
    );
}

#[test]
fn a_password_in_a_url_is_refused() {
    let d = diags(
        "[notify]\n[[notify.ntfy]]\nname = \"a\"\nurl = \"https://user:pw@ntfy.example.org/t\"\n",
    );
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].0, "5:7");
    assert!(d[0].2.contains("password in the URL"), "{d:?}");
}

#[test]
fn target_names_are_unique_across_kinds_and_keys_are_checked() {
    let d = diags(
        "[notify]\n[[notify.webhook]]\nname = \"a\"\nurl = \"https://x.example/\"\n[[notify.heartbeat]]\nname = \"a\"\nurl = \"https://y.example/\"\nmethd = \"GET\"\n",
    );
    let msgs: Vec<&str> = d
        .iter()
        .filter(|x| x.1 == Severity::Error)
        .map(|x| x.2.as_str())
        .collect();
    assert_eq!(
        msgs,
        [
            "notification target name `a` is used twice",
            "unknown key `methd` in [[notify.heartbeat]] #1"
        ],
        "{d:?}"
    );
    let dup = d.iter().find(|x| x.2.contains("used twice")).unwrap();
    assert_eq!(dup.0, "7:8");
    let typo = d.iter().find(|x| x.2.contains("methd")).unwrap();
    assert_eq!(typo.3.as_deref(), Some("did you mean `method`?"));
}

#[test]
fn ranges_and_required_keys() {
    let d = diags("[notify]\ntimeout = \"10m\"\nqueue = 0\n[[notify.webhook]]\nname = \"a b\"\n");
    let msgs: Vec<&str> = d.iter().map(|x| x.2.as_str()).collect();
    assert!(
        msgs.contains(&"`notify.timeout` = 10m is out of range: it must be between 100ms and 5m"),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&"`notify.queue` = 0 is out of range: it must be between 1 and 1024"),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&"`a b` is not a valid target name"),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&"missing required key `url` in [[notify.webhook]] #1"),
        "{msgs:?}"
    );
}

/// A daemon must not refuse to start for a notification secret it cannot find (it has a job
/// to do): a warning naming the fix; a secret readable by others is refused as always.
#[test]
fn a_missing_notification_secret_warns_a_daemon_a_readable_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("edge.toml");
    let secret = dir.path().join("hook.token");
    let text = format!(
        "version = 1\n[notify]\n[[notify.webhook]]\nname = \"a\"\nurl = \"https://x.example/\"\nheaders = {{ Authorization = {{ file = \"{}\" }} }}\n",
        secret.display()
    );
    std::fs::write(&cfg, text).unwrap();
    let link = LoadOptions {
        role: Some(Role::Link),
    };
    let l = edge_config::load(&cfg, link).unwrap_or_else(|d| panic!("{d}"));
    let w: Vec<_> = l.warnings.warnings().collect();
    assert_eq!(w.len(), 1, "{}", l.warnings);
    assert!(w[0].message.contains("does not exist"), "{w:?}");
    assert!(
        w[0].hint
            .as_deref()
            .unwrap()
            .contains("systemctl edit edge-link"),
        "{w:?}"
    );
    std::fs::write(&secret, "Bearer x").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let d = edge_config::load(&cfg, link).unwrap_err();
    assert!(d.render().contains("chmod 600"), "{d}");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let l = edge_config::load(&cfg, link).unwrap_or_else(|d| panic!("{d}"));
    assert!(l.warnings.items().is_empty(), "{}", l.warnings);
}

/// The commented `[notify]` example at the end of config/edge.toml is valid once
/// uncommented, and adds no warning.
#[test]
fn the_reference_example_is_valid_once_uncommented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/edge.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("\n# [notify]\n").expect("the example is there");
    let example: String = text[start + 1..]
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .or_else(|| l.strip_prefix('#'))
                .unwrap_or(l)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let full = format!("{text}\n{example}");
    let l = edge_config::parse(&path, &full).unwrap_or_else(|d| panic!("{d}\n{example}"));
    assert_eq!(l.warnings.items().len(), 1, "{}", l.warnings);
    let n = l.config.notify.unwrap();
    assert_eq!(n.target_names(), ["home", "phone", "hc"]);
    assert_eq!(n.webhooks[0].headers[0].0, "Authorization");
}
