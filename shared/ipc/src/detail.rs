//! Pure: the role's own part of a [`DaemonStatus`](crate::DaemonStatus), typed. On the wire
//! it is the role's status object itself (`edge_ipc::<role>::Status`); a reader decodes it by
//! the status's `role`, so nothing downstream re-parses JSON.

use std::fmt::{self, Write as _};

use edge_config::Role;
use serde::Serialize;

/// The role's own part of a status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    /// edge-ddns.
    Ddns(Box<crate::ddns::Status>),
    /// edge-wg.
    Wg(Box<crate::wg::Status>),
    /// edge-fw.
    Fw(Box<crate::fw::Status>),
    /// edge-link.
    Link(Box<crate::link::Status>),
    /// Anything else: a daemon idling without its section (`{"idle": why}`), nothing yet,
    /// or a shape this build does not know (a daemon of another version).
    Other(serde_json::Value),
}

impl Default for Detail {
    fn default() -> Self {
        Detail::Other(serde_json::Value::Null)
    }
}

impl Detail {
    /// Decodes a role's detail; what does not decode as that role's status stays `Other`.
    pub fn decode(role: Role, v: serde_json::Value) -> Detail {
        fn typed<T: serde::de::DeserializeOwned>(
            v: serde_json::Value,
            f: impl FnOnce(Box<T>) -> Detail,
        ) -> Detail {
            match serde_json::from_value::<T>(v.clone()) {
                Ok(t) => f(Box::new(t)),
                Err(_) => Detail::Other(v),
            }
        }
        if v.is_null() || v.get("idle").is_some() {
            return Detail::Other(v);
        }
        match role {
            Role::Ddns => typed(v, Detail::Ddns),
            Role::Wg => typed(v, Detail::Wg),
            Role::Fw => typed(v, Detail::Fw),
            Role::Link => typed(v, Detail::Link),
        }
    }

    /// edge-ddns's status, if this is one.
    pub fn ddns(&self) -> Option<&crate::ddns::Status> {
        match self {
            Detail::Ddns(s) => Some(s),
            _ => None,
        }
    }

    /// edge-wg's status, if this is one.
    pub fn wg(&self) -> Option<&crate::wg::Status> {
        match self {
            Detail::Wg(s) => Some(s),
            _ => None,
        }
    }

    /// edge-fw's status, if this is one.
    pub fn fw(&self) -> Option<&crate::fw::Status> {
        match self {
            Detail::Fw(s) => Some(s),
            _ => None,
        }
    }

    /// edge-link's status, if this is one.
    pub fn link(&self) -> Option<&crate::link::Status> {
        match self {
            Detail::Link(s) => Some(s),
            _ => None,
        }
    }

    /// The lines `edgectl status` prints under a daemon, with times relative to `now`.
    pub fn render(&self, now: u64) -> String {
        let mut o = String::new();
        match self {
            Detail::Ddns(d) => render_ddns(&mut o, d, now),
            Detail::Wg(w) => render_wg(&mut o, w, now),
            Detail::Fw(f) => render_fw(&mut o, f, now),
            Detail::Link(l) => render_link(&mut o, l),
            Detail::Other(v) => {
                if let Some(obj) = v.as_object() {
                    for (k, val) in obj {
                        let _ = writeln!(o, "  {k}: {val}");
                    }
                }
            }
        }
        o
    }
}

impl fmt::Display for Detail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(edge_util::unix_now()))
    }
}

/// `12 s ago`, `5 min ago`, `3 h ago`; `never` for 0.
pub fn ago(now: u64, t: u64) -> String {
    if t == 0 {
        return "never".to_owned();
    }
    let s = now.saturating_sub(t);
    match s {
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// A byte count in B, KiB, MiB or GiB.
pub fn bytes(n: u64) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.2} GiB", n as f64 / 1_073_741_824.0),
    }
}

fn render_ddns(o: &mut String, d: &crate::ddns::Status, now: u64) {
    for f in &d.families {
        let _ = writeln!(
            o,
            "  public {}: {}",
            f.family,
            f.address
                .clone()
                .or_else(|| f.failure.clone().map(|e| format!("unknown ({e})")))
                .unwrap_or_else(|| "not detected yet".to_owned())
        );
    }
    for r in &d.records {
        let _ = writeln!(
            o,
            "  record {}: {} ({}, verified {})",
            r.record,
            r.content.clone().unwrap_or_else(|| "-".to_owned()),
            if r.in_sync { "in sync" } else { "OUT OF SYNC" },
            ago(now, r.verified_at.unwrap_or(0))
        );
    }
}

fn render_wg(o: &mut String, w: &crate::wg::Status, now: u64) {
    let _ = writeln!(
        o,
        "  interface {} listening on {}, public key {}",
        w.interface,
        w.listen_port,
        w.public_key.clone().unwrap_or_else(|| "-".to_owned())
    );
    for p in &w.peers {
        let _ = writeln!(
            o,
            "  peer {}: handshake {}, rx {} tx {}{}",
            p.name.clone().unwrap_or_else(|| p.public_key.clone()),
            ago(now, p.latest_handshake),
            bytes(p.rx_bytes),
            bytes(p.tx_bytes),
            p.endpoint
                .as_ref()
                .map(|e| format!(", endpoint {e}"))
                .unwrap_or_default()
        );
    }
}

fn render_link(o: &mut String, l: &crate::link::Status) {
    let _ = writeln!(
        o,
        "  {}; {} reconcile(s), {} netlink write(s)",
        if l.converged {
            "converged"
        } else {
            "NOT converged"
        },
        l.reconciles,
        l.writes
    );
    for link in &l.links {
        let _ = writeln!(
            o,
            "  {} ({}): {}{}{}",
            link.name,
            link.role,
            if !link.present {
                "absent".to_owned()
            } else {
                format!(
                    "{}/{}",
                    if link.admin_up { "up" } else { "DOWN" },
                    if link.oper_up {
                        "lower-up"
                    } else {
                        "no-carrier"
                    }
                )
            },
            if link.ports.is_empty() {
                String::new()
            } else {
                format!(", ports {}", link.ports.join(" "))
            },
            link.controller
                .as_ref()
                .map(|c| format!(", in {c}"))
                .unwrap_or_default()
        );
    }
    for w in &l.waiting {
        let _ = writeln!(o, "  waiting for {w}");
    }
}

fn render_fw(o: &mut String, f: &crate::fw::Status, now: u64) {
    let _ = writeln!(
        o,
        "  {} forward(s), {} rule(s) in inet edge, {} drift repair(s){}",
        f.forwards,
        f.rules,
        f.drift_repairs,
        if f.pending_confirm {
            "; an apply waits for confirmation (edgectl fw confirm)"
        } else {
            ""
        }
    );
    for fwd in &f.forward_list {
        let lock = if fwd.locked {
            format!(
                "; locked to Cloudflare, {} direct hit(s) dropped",
                fwd.lock_drops
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            o,
            "  forward {}: {}; {} in {} packet(s){lock}",
            fwd.name,
            fwd.rule,
            bytes(fwd.bytes),
            fwd.packets
        );
    }
    if !f.forward_list.is_empty() {
        let _ = writeln!(o, "  counters read {}", ago(now, f.counters_at));
    }
    if let Some(l) = &f.origin_lock {
        let from = if l.origin == "fetched" {
            format!("fetched {}", ago(now, l.fetched_at))
        } else {
            "as shipped with this release".to_owned()
        };
        let checked = if l.checked_at == 0 {
            "not checked yet".to_owned()
        } else {
            format!("checked {}", ago(now, l.checked_at))
        };
        let _ = writeln!(
            o,
            "  origin lock: Cloudflare's {} IPv4 and {} IPv6 ranges, {from}; {checked}{}",
            l.v4,
            l.v6,
            if l.pending {
                "; a changed list waits for confirmation by the next fetch"
            } else {
                ""
            }
        );
        if let Some(e) = &l.last_error {
            let _ = writeln!(o, "  origin lock: last fetch: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DaemonStatus;

    fn status_json(role: &str, detail: serde_json::Value) -> String {
        serde_json::json!({
            "role": role, "version": "0.1.0", "pid": 7, "ready": true, "started_at": 1,
            "config_path": "/etc/edge/edge.toml", "config_generation": 1, "configured": true,
            "detail": detail,
        })
        .to_string()
    }

    #[test]
    fn each_role_decodes_to_its_type_and_serialises_back_to_the_same_object() {
        let wg = crate::wg::Status {
            interface: "wg0".into(),
            listen_port: 51820,
            ..Default::default()
        };
        let v = serde_json::to_value(&wg).unwrap();
        let st: DaemonStatus = serde_json::from_str(&status_json("wg", v.clone())).unwrap();
        assert_eq!(st.detail.wg(), Some(&wg));
        assert_eq!(st.detail.fw(), None);
        assert_eq!(serde_json::to_value(&st).unwrap()["detail"], v);
        assert!(
            st.detail
                .render(0)
                .contains("interface wg0 listening on 51820")
        );

        let fw = crate::fw::Status {
            forwards: 3,
            ..Default::default()
        };
        let st: DaemonStatus =
            serde_json::from_str(&status_json("fw", serde_json::to_value(&fw).unwrap())).unwrap();
        assert_eq!(st.detail.fw(), Some(&fw));
        let ddns = serde_json::to_value(crate::ddns::Status::default()).unwrap();
        let st: DaemonStatus = serde_json::from_str(&status_json("ddns", ddns)).unwrap();
        assert!(st.detail.ddns().is_some(), "{:?}", st.detail);
        let link = serde_json::to_value(crate::link::Status::default()).unwrap();
        let st: DaemonStatus = serde_json::from_str(&status_json("link", link)).unwrap();
        assert!(st.detail.link().is_some(), "{:?}", st.detail);
    }

    #[test]
    fn an_idle_daemon_or_an_unknown_shape_stays_as_it_came() {
        let idle = serde_json::json!({"idle": "no [wg] section in the configuration"});
        let st: DaemonStatus = serde_json::from_str(&status_json("wg", idle.clone())).unwrap();
        assert_eq!(st.detail, Detail::Other(idle));
        assert_eq!(
            st.detail.render(0),
            "  idle: \"no [wg] section in the configuration\"\n"
        );
        let odd = serde_json::json!({"interface": 5});
        let st: DaemonStatus = serde_json::from_str(&status_json("wg", odd.clone())).unwrap();
        assert_eq!(st.detail, Detail::Other(odd));
        let none: DaemonStatus =
            serde_json::from_str(&status_json("fw", serde_json::Value::Null)).unwrap();
        assert_eq!(none.detail, Detail::default());
        assert_eq!(none.detail.render(0), "");
    }

    #[test]
    fn times_and_sizes_read_as_people_say_them() {
        assert_eq!(ago(100, 0), "never");
        assert_eq!(ago(100, 90), "10 s ago");
        assert_eq!(ago(10_000, 9_000), "16 min ago");
        assert_eq!(bytes(2048), "2.0 KiB");
    }
}
