//! The origin lock in the configuration: `origin_lock` on a forward, `[fw.origin_lock]`, and
//! the checks that tie it to which DDNS records are proxied. Each asserts the located
//! message and the hint.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::path::Path;

use edge_config::{Diagnostic, Severity};

fn reference() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/edge.toml"))
        .unwrap()
}

/// Every diagnostic of `text` about the origin lock: (severity, line:col, message, hint).
fn lock_diags(text: &str) -> Vec<(Severity, String, String, Option<String>)> {
    let items: Vec<Diagnostic> = match edge_config::parse(Path::new("edge.toml"), text) {
        Ok(l) => l.warnings.items().to_vec(),
        Err(d) => d.items().to_vec(),
    };
    items
        .into_iter()
        .filter(|d| d.key.contains("origin_lock") || d.message.contains("origin"))
        .map(|d| {
            let at = d
                .location
                .map(|l| format!("{}:{}", l.line, l.column))
                .unwrap_or_default();
            (d.severity, at, d.message, d.hint)
        })
        .collect()
}

fn line_of(text: &str, needle: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with(needle))
        .nth(nth)
        .map(|(i, _)| i + 1)
        .unwrap()
}

#[test]
fn the_reference_locks_its_web_forwards_without_a_word() {
    let text = reference();
    assert_eq!(lock_diags(&text), Vec::new());
    let cfg = edge_config::parse(Path::new("edge.toml"), &text)
        .unwrap()
        .config;
    let fw = cfg.fw.unwrap();
    let locked: Vec<&str> = fw
        .forwards
        .iter()
        .filter(|f| f.origin_lock.is_some())
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(locked, ["http", "https"]);
    assert_eq!(
        fw.origin_lock.url.0.as_str(),
        edge_config::fw::CLOUDFLARE_IPS_URL
    );
    assert_eq!(fw.origin_lock.refresh, edge_config::fw::ORIGIN_LOCK_REFRESH);
}

#[test]
fn a_web_forward_of_a_proxied_record_without_a_lock_is_warned_about() {
    let text = reference().replace("origin_lock = \"cloudflare\"\n", "");
    let d = lock_diags(&text);
    assert_eq!(d.len(), 2, "{d:#?}");
    let (sev, at, msg, hint) = &d[0];
    assert_eq!(*sev, Severity::Warning);
    assert_eq!(at, &format!("{}:8", line_of(&text, "port = 80", 0)));
    assert_eq!(
        msg,
        "forward `http` lets anyone reach the origin of proxied record `example.com` directly, around Cloudflare's WAF and DDoS protection"
    );
    assert!(
        hint.as_deref()
            .unwrap()
            .contains("origin_lock = \"cloudflare\"")
    );
}

#[test]
fn a_lock_on_a_forward_serving_an_unproxied_record_is_an_error() {
    let text = reference().replace("proxied = true", "proxied = false");
    let d = lock_diags(&text);
    let errors: Vec<_> = d.iter().filter(|x| x.0 == Severity::Error).collect();
    assert_eq!(errors.len(), 2, "{d:#?}");
    let (_, at, msg, hint) = errors[0];
    assert_eq!(
        at,
        &format!("{}:15", line_of(&text, "origin_lock = \"cloudflare\"", 0))
    );
    assert!(
        msg.starts_with(&format!(
            "forward `http` admits only Cloudflare, but record `example.com` (line {})",
            line_of(&text, "[[ddns.record]]", 0)
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with(
            "is not proxied: its visitors come straight to this host and would be dropped"
        ),
        "{msg}"
    );
    assert!(hint.as_deref().unwrap().contains("proxied = true"));
}

#[test]
fn an_unknown_lock_and_a_refresh_under_an_hour_are_refused() {
    let text = reference().replacen(
        "origin_lock = \"cloudflare\"",
        "origin_lock = \"akamai\"",
        1,
    ) + "\n[fw.origin_lock]\nrefresh = \"10m\"\n";
    let d = lock_diags(&text);
    assert!(
        d.iter().any(|(s, _, m, h)| *s == Severity::Error
            && m == "unknown origin_lock `akamai`"
            && h.as_deref()
                == Some("the one known lock is \"cloudflare\" (Cloudflare's proxy ranges)")),
        "{d:#?}"
    );
    assert!(
        d.iter().any(|(s, at, m, _)| *s == Severity::Error
            && at.starts_with(&line_of(&text, "refresh = ", 0).to_string())
            && m == "refresh = 600s is too short: Cloudflare changes its ranges rarely"),
        "{d:#?}"
    );
}
