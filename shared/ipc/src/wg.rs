//! Pure: control messages only edge-wg understands, the shape of its status detail, and
//! the `wg show`-style rendering `edgectl wg show` prints.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// One peer in edge-wg's status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PeerStatus {
    /// Configured name, if any.
    pub name: Option<String>,
    /// Public key (base64).
    pub public_key: String,
    /// True when a preshared key is set (the key itself is never sent).
    pub preshared_key: bool,
    /// Live endpoint (`ip:port`).
    pub endpoint: Option<String>,
    /// Allowed IPs.
    pub allowed_ips: Vec<String>,
    /// Last completed handshake, Unix seconds (0 = never).
    pub latest_handshake: u64,
    /// Plaintext bytes received.
    pub rx_bytes: u64,
    /// Plaintext bytes sent.
    pub tx_bytes: u64,
    /// Persistent keepalive interval in seconds (0 = off).
    pub persistent_keepalive: u16,
    /// Handshake initiations sent.
    pub handshake_attempts: u64,
    /// Endpoint changes learned from authenticated packets.
    pub endpoint_changes: u64,
    /// The configured endpoint when it is a DNS name (`host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_host: Option<String>,
    /// The address that name last resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_endpoint: Option<String>,
    /// When it was last resolved, Unix seconds (0 = never).
    #[serde(default)]
    pub resolved_at: u64,
    /// When the peer expires, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// True once it expired: its sessions and routes are gone until it is renewed.
    #[serde(default)]
    pub expired: bool,
}

/// The role-specific part of edge-wg's status (`DaemonStatus::detail`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// Interface name.
    pub interface: String,
    /// Interface public key (base64), if a private key is set.
    pub public_key: Option<String>,
    /// Bound UDP port (0 = none).
    pub listen_port: u16,
    /// fwmark (0 = off).
    pub fwmark: u32,
    /// Peers.
    pub peers: Vec<PeerStatus>,
    /// Cookie replies sent under load.
    pub cookie_replies: u64,
    /// The address listened on when not every address (a pair's virtual address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_address: Option<String>,
    /// True while this host is the BACKUP (or FAULT) of a pair: it sends nothing of its
    /// own accord.
    #[serde(default)]
    pub standby: bool,
    /// Handshake initiations sent to the source of data of a session this host did not
    /// hold (after a failover).
    #[serde(default)]
    pub reached_out: u64,
}

fn ago(secs: u64) -> String {
    let units = [
        ("day", 86_400),
        ("hour", 3_600),
        ("minute", 60),
        ("second", 1),
    ];
    let mut parts = Vec::new();
    let mut left = secs;
    for (name, size) in units {
        let n = left / size;
        if n > 0 {
            parts.push(format!("{n} {name}{}", if n == 1 { "" } else { "s" }));
            left %= size;
        }
    }
    if parts.is_empty() {
        "Now".to_owned()
    } else {
        format!("{} ago", parts.join(", "))
    }
}

fn bytes(n: u64) -> String {
    let units = [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (name, size) in units {
        if n >= size {
            return format!("{:.2} {name}", n as f64 / size as f64);
        }
    }
    format!("{n} B")
}

/// Renders the status the way `wg show <iface>` does; `now` is the current Unix time.
pub fn render_show(st: &Status, now: u64) -> String {
    let mut s = String::new();
    render_interface(&mut s, st);
    for p in &st.peers {
        s.push('\n');
        render_peer(&mut s, p, now);
    }
    s
}

/// The `interface:` section: keys, port, the pair's role, fwmark.
fn render_interface(s: &mut String, st: &Status) {
    let _ = writeln!(s, "interface: {}", st.interface);
    if let Some(k) = &st.public_key {
        let _ = writeln!(s, "  public key: {k}");
        let _ = writeln!(s, "  private key: (hidden)");
    }
    if st.listen_port != 0 {
        match &st.listen_address {
            Some(a) => {
                let _ = writeln!(s, "  listening port: {} (on {a} only)", st.listen_port);
            }
            None => {
                let _ = writeln!(s, "  listening port: {}", st.listen_port);
            }
        }
    }
    if st.standby {
        let _ = writeln!(
            s,
            "  standby: this host is the BACKUP; it answers but initiates nothing"
        );
    }
    if st.reached_out > 0 {
        let _ = writeln!(
            s,
            "  reached out: {} handshake initiations to peers whose session was with the other host",
            st.reached_out
        );
    }
    if st.fwmark != 0 {
        let _ = writeln!(s, "  fwmark: {:#x}", st.fwmark);
    }
}

/// One `peer:` section.
fn render_peer(s: &mut String, p: &PeerStatus, now: u64) {
    let _ = writeln!(s, "peer: {}", p.public_key);
    if let Some(n) = &p.name {
        let _ = writeln!(s, "  name: {n}");
    }
    if p.preshared_key {
        let _ = writeln!(s, "  preshared key: (hidden)");
    }
    render_expiry(s, p, now);
    render_endpoint(s, p, now);
    let ips = if p.allowed_ips.is_empty() {
        "(none)".to_owned()
    } else {
        p.allowed_ips.join(", ")
    };
    let _ = writeln!(s, "  allowed ips: {ips}");
    render_traffic(s, p, now);
}

/// `EXPIRED …` once the peer expired, `expires: in …` before.
fn render_expiry(s: &mut String, p: &PeerStatus, now: u64) {
    if p.expired {
        let _ = writeln!(
            s,
            "  EXPIRED {} (no sessions, no routes; renew it to bring it back)",
            ago(now.saturating_sub(p.expires.unwrap_or(now)))
        );
    } else if let Some(t) = p.expires {
        let _ = writeln!(
            s,
            "  expires: in {}",
            ago(t.saturating_sub(now)).trim_end_matches(" ago")
        );
    }
}

/// The live endpoint, and the configured endpoint name with what it resolved to.
fn render_endpoint(s: &mut String, p: &PeerStatus, now: u64) {
    if let Some(e) = &p.endpoint {
        let _ = writeln!(s, "  endpoint: {e}");
    }
    if let Some(h) = &p.endpoint_host {
        match &p.resolved_endpoint {
            Some(a) => {
                let _ = writeln!(
                    s,
                    "  endpoint name: {h} (resolved to {a}, {})",
                    ago(now.saturating_sub(p.resolved_at)).to_lowercase()
                );
            }
            None => {
                let _ = writeln!(s, "  endpoint name: {h} (not resolved)");
            }
        }
    }
}

/// Latest handshake, transfer and persistent keepalive, each when there is one.
fn render_traffic(s: &mut String, p: &PeerStatus, now: u64) {
    if p.latest_handshake > 0 {
        let _ = writeln!(
            s,
            "  latest handshake: {}",
            ago(now.saturating_sub(p.latest_handshake))
        );
    }
    if p.rx_bytes > 0 || p.tx_bytes > 0 {
        let _ = writeln!(
            s,
            "  transfer: {} received, {} sent",
            bytes(p.rx_bytes),
            bytes(p.tx_bytes)
        );
    }
    if p.persistent_keepalive > 0 {
        let _ = writeln!(
            s,
            "  persistent keepalive: every {}",
            ago(u64::from(p.persistent_keepalive)).trim_end_matches(" ago")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_wg_show() {
        let st = Status {
            interface: "wg0".into(),
            public_key: Some("PUB=".into()),
            listen_port: 51820,
            fwmark: 0,
            peers: vec![PeerStatus {
                name: Some("laptop".into()),
                public_key: "PEER=".into(),
                endpoint: Some("192.0.2.1:51820".into()),
                allowed_ips: vec!["10.17.9.2/32".into()],
                latest_handshake: 1_000,
                rx_bytes: 2048,
                tx_bytes: 300,
                persistent_keepalive: 25,
                ..PeerStatus::default()
            }],
            cookie_replies: 0,
            ..Status::default()
        };
        let out = render_show(&st, 1_065);
        let want = "interface: wg0\n  public key: PUB=\n  private key: (hidden)\n  \
                    listening port: 51820\n\npeer: PEER=\n  name: laptop\n  \
                    endpoint: 192.0.2.1:51820\n  allowed ips: 10.17.9.2/32\n  \
                    latest handshake: 1 minute, 5 seconds ago\n  \
                    transfer: 2.00 KiB received, 300 B sent\n  \
                    persistent keepalive: every 25 seconds\n";
        assert_eq!(out, want);
        // The BACKUP of a pair, listening on the virtual address only.
        let pair = Status {
            listen_address: Some("192.198.0.30".into()),
            standby: true,
            ..st
        };
        let out = render_show(&pair, 1_065);
        assert!(
            out.contains("  listening port: 51820 (on 192.198.0.30 only)\n  standby: this host is the BACKUP; it answers but initiates nothing\n"),
            "{out}"
        );
        assert!(!out.contains("reached out"), "{out}");
        let master = Status {
            standby: false,
            reached_out: 3,
            ..pair
        };
        let out = render_show(&master, 1_065);
        assert!(
            out.contains("\n  reached out: 3 handshake initiations to peers whose session was with the other host\n"),
            "{out}"
        );
    }

    #[test]
    fn expiry_and_the_endpoint_name_are_shown() {
        let mut st = Status {
            interface: "wg0".into(),
            peers: vec![PeerStatus {
                name: Some("site".into()),
                public_key: "PEER=".into(),
                endpoint: Some("198.51.100.9:51820".into()),
                endpoint_host: Some("site.example.org:51820".into()),
                resolved_endpoint: Some("198.51.100.9:51820".into()),
                resolved_at: 990,
                expires: Some(1000 + 3 * 3600),
                ..PeerStatus::default()
            }],
            ..Status::default()
        };
        let out = render_show(&st, 1000);
        assert!(out.contains("  expires: in 3 hours\n"), "{out}");
        assert!(
            out.contains("  endpoint name: site.example.org:51820 (resolved to 198.51.100.9:51820, 10 seconds ago)\n"),
            "{out}"
        );
        st.peers[0].expired = true;
        let out = render_show(&st, 1000 + 4 * 3600);
        assert!(out.contains("  EXPIRED 1 hour ago"), "{out}");
    }
}
