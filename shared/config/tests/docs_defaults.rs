//! docs/configuration.md states each key's default by hand; this test loads sections that
//! leave every optional key out and compares what the loader decoded with what the page
//! says, so the page cannot drift from the named `DEFAULT_*` constants behind the loader.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// Every section's optional keys left out; only what each section requires.
const MINIMAL: &str = r#"version = 1

[link]

[wg]
interface = "wg0"
listen_port = 51820
private_key = { file = "/etc/edge/wg0.key" }

[ddns]
token = { file = "/etc/edge/cf.token" }
quorum = 1

[[ddns.record]]
name = "example.com"

[[ddns.source]]
name = "iface"
kind = "interface"
interface = "br-api"

[notify]
[[notify.webhook]]
name = "home"
url = "https://hooks.example.org/edge"

[ha]
name = "edge-a"
address = "10.0.0.31"
instance = "edge"
virtual_router_id = 30
interface = "br-api"
[ha.peer]
name = "edge-b"
address = "10.0.0.32"
[[ha.vip]]
address = "10.0.0.30/32"
"#;

/// `[fw]` apart: with `[wg]` in the same file it would have to admit the listen port.
const MINIMAL_FW: &str = r#"version = 1
[fw]
wan = ["br-api"]
"#;

/// The default column of every key table in the page, by (section heading, key).
fn documented() -> HashMap<(String, String), String> {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md"),
    )
    .unwrap();
    let mut section = String::new();
    let mut out = HashMap::new();
    for line in page.lines() {
        if let Some(h) = line.strip_prefix("## ").or(line.strip_prefix("### ")) {
            // "`[ddns]` — edge-ddns" → "[ddns]"
            section = h.split('`').nth(1).unwrap_or(h).to_owned();
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() >= 4 && cells[1].starts_with('`') {
            let key = cells[1].trim_matches('`').to_owned();
            out.insert((section.clone(), key), cells[2].to_owned());
        }
    }
    out
}

/// A duration as the page writes it: `"250ms"`, `"60s"`, `"10m"`, `"1h"`.
fn dur(d: Duration) -> String {
    let ms = d.as_millis();
    let s = if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) && ms >= 600_000 {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    };
    format!("`\"{s}\"`")
}

fn quoted(s: impl std::fmt::Display) -> String {
    format!("`\"{s}\"`")
}

fn plain(s: impl std::fmt::Display) -> String {
    format!("`{s}`")
}

/// A unit enum as the TOML spells it (`Policy::Drop` → `"drop"`).
fn variant(v: impl std::fmt::Debug) -> String {
    quoted(format!("{v:?}").to_lowercase())
}

#[test]
fn the_documented_defaults_are_the_loaders() {
    let l = edge_config::parse(Path::new("edge.toml"), MINIMAL).unwrap_or_else(|d| panic!("{d}"));
    let c = l.config;
    let (link, wg) = (c.link.unwrap(), c.wg.unwrap());
    let fw = edge_config::parse(Path::new("edge.toml"), MINIMAL_FW)
        .unwrap_or_else(|d| panic!("{d}"))
        .config
        .fw
        .unwrap();
    let (ddns, notify, ha) = (c.ddns.unwrap(), c.notify.unwrap(), c.ha.unwrap());
    let g = &c.global;
    let decoded: Vec<(&str, &str, String)> = vec![
        ("[global]", "state_dir", quoted(g.state_dir.display())),
        ("[global]", "runtime_dir", quoted(g.runtime_dir.display())),
        ("[global]", "log_format", variant(g.log_format)),
        ("[global]", "log_level", quoted(&g.log_level)),
        ("[global.metrics]", "ddns", quoted(g.metrics.ddns.0)),
        ("[global.metrics]", "wg", quoted(g.metrics.wg.0)),
        ("[global.metrics]", "fw", quoted(g.metrics.fw.0)),
        ("[global.metrics]", "link", quoted(g.metrics.link.0)),
        ("[link]", "reconcile_interval", dur(link.reconcile_interval)),
        ("[link]", "debounce", dur(link.debounce)),
        ("[link]", "move_check_timeout", dur(link.move_check_timeout)),
        ("[wg]", "mtu", plain(wg.mtu)),
        ("[fw.input]", "policy", variant(fw.input.policy)),
        ("[fw.input]", "icmp", plain(fw.input.icmp)),
        ("[fw.routed]", "policy", variant(fw.routed.policy)),
        ("[ddns]", "api_url", quoted(&ddns.api_url)),
        ("[ddns]", "owner_comment", quoted(&ddns.owner_comment)),
        ("[ddns]", "debounce", dur(ddns.debounce)),
        ("[ddns]", "verify_interval", dur(ddns.verify_interval)),
        ("[ddns]", "timeout", dur(ddns.timeout)),
        (
            "[[ddns.record]]",
            "type",
            variant(ddns.records[0].kind).to_uppercase(),
        ),
        ("[[ddns.record]]", "proxied", plain(ddns.records[0].proxied)),
        ("[[ddns.record]]", "ttl", plain(ddns.records[0].ttl)),
        ("[[ddns.record]]", "adopt", plain(ddns.records[0].adopt)),
        ("[notify]", "timeout", dur(notify.timeout)),
        ("[notify]", "queue", plain(notify.queue)),
        (
            "[notify]",
            "ddns_failing_after",
            plain(notify.ddns_failing_after),
        ),
        ("[notify]", "link_down_after", dur(notify.link_down_after)),
        (
            "[notify]",
            "wg_handshake_stale_after",
            dur(notify.wg_handshake_stale_after),
        ),
        (
            "[[notify.webhook]]",
            "max_per_minute",
            plain(notify.webhooks[0].max_per_minute),
        ),
        ("[ha]", "priority", plain(ha.this.priority)),
        ("[ha]", "advert_int", dur(ha.advert_int)),
        ("[ha]", "conntrackd", plain(ha.conntrackd)),
        (
            "[ha]",
            "conntrackd_config",
            quoted(ha.conntrackd_config.display()),
        ),
        ("[ha]", "ddns_hold_off", dur(ha.ddns_hold_off)),
        ("[ha.peer]", "priority", plain(ha.peer.priority)),
    ];
    let docs = documented();
    let mut wrong = Vec::new();
    for (section, key, value) in decoded {
        match docs.get(&(section.to_owned(), key.to_owned())) {
            Some(d) if *d == value => {}
            Some(d) => wrong.push(format!(
                "{section} {key}: the page says {d}, the loader {value}"
            )),
            None => wrong.push(format!("{section} {key}: not in the page")),
        }
    }
    // The quorum needs a second source to be left at its default.
    assert_eq!(
        docs[&("[ddns]".to_owned(), "quorum".to_owned())],
        plain(edge_config::ddns::DEFAULT_QUORUM)
    );
    // The page writes the schedule in the 5-field form the loader widens.
    let page_schedule = docs[&("[ddns]".to_owned(), "schedule".to_owned())]
        .trim_matches(['`', '"'])
        .to_owned();
    assert_eq!(
        edge_config::ddns::normalise_cron(&page_schedule),
        ddns.schedule
    );
    assert!(
        wrong.is_empty(),
        "docs/configuration.md disagrees with the loader:\n{}",
        wrong.join("\n")
    );
}
