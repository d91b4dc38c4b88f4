//! The `[ddns]` rules added by edge-ddns's owner: one test per rule, each asserting the
//! located message and the hint.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::path::Path;

use edge_config::Severity;

const BASE: &str = r#"version = 1

[ddns]
token = { file = "/etc/edge/cf.token" }
quorum = 1

[[ddns.record]]
name = "example.com"

[[ddns.source]]
name = "dns"
kind = "dns"
query = "whoami.cloudflare"
type = "TXT"
class = "CH"
SERVER
"#;

fn errors(server: &str, extra: &str) -> Vec<(String, String, Option<String>)> {
    let text = BASE
        .replace("SERVER", server)
        .replace("quorum = 1", &format!("quorum = 1\n{extra}"));
    match edge_config::parse(Path::new("edge.toml"), &text) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .items()
            .iter()
            .filter(|x| x.severity == Severity::Error)
            .map(|x| {
                (
                    x.location.map(|l| l.to_string()).unwrap_or_default(),
                    x.message.clone(),
                    x.hint.clone(),
                )
            })
            .collect(),
    }
}

#[test]
fn valid_dns_sources_load() {
    assert!(
        errors(
            "server = \"https://cloudflare-dns.com/dns-query\"\ntransport = \"https\"",
            ""
        )
        .is_empty()
    );
    assert!(errors("server = \"1.1.1.1:53\"", "").is_empty());
    assert!(errors("server = \"2606:4700:4700::1111\"", "").is_empty());
}

#[test]
fn doh_needs_an_https_url() {
    let e = errors("server = \"1.1.1.1\"\ntransport = \"https\"", "");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "17:10");
    assert!(e[0].1.contains("is not an https URL"), "{e:?}");
    assert!(
        e[0].2
            .as_deref()
            .unwrap()
            .contains("cloudflare-dns.com/dns-query")
    );
}

#[test]
fn udp_needs_an_ip_address() {
    let e = errors("server = \"one.one.one.one\"", "");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].1.contains("is not an IP address"), "{e:?}");
    assert!(e[0].2.as_deref().unwrap().contains("1.1.1.1:53"));
}

#[test]
fn chaos_class_is_refused_over_tls() {
    let e = errors("server = \"1.1.1.1:853\"\ntransport = \"tls\"", "");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].1.contains("class CH"), "{e:?}");
    assert!(e[0].2.as_deref().unwrap().contains("https"));
}

#[test]
fn verify_interval_has_a_floor_of_one_minute() {
    let e = errors("server = \"1.1.1.1:53\"", "verify_interval = \"10s\"");
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, "6:19");
    assert!(e[0].1.contains("at least 1 minute"), "{e:?}");
    assert!(e[0].2.as_deref().unwrap().contains("24 reads a day"));
}
