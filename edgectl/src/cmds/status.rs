//! `edgectl status`: one screen for the whole edge, or a versioned JSON document.
//!
//! JSON shape (`"version": 1`): `{ "version": 1, "config": PATH, "daemons": [ { "role":
//! "link", "unit": "edge-link", "running": true, "status": DaemonStatus } | { "role": ...,
//! "running": false, "error": "why, which unit, what to do" } ] }`, where `DaemonStatus` is
//! `edge_ipc::proto::DaemonStatus` and its `detail` is the role's `edge_ipc::<role>::Status`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use edge_config::Role;
use edge_ipc::proto::DaemonStatus;
use edge_ipc::{Client, Request, Response};
use serde::Serialize;

use crate::Global;
use edge_util::unix_now;

/// Version of the JSON document.
pub const STATUS_JSON_VERSION: u32 = 1;

/// One daemon's entry.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// Role.
    pub role: Role,
    /// systemd unit.
    pub unit: String,
    /// True when it answered.
    pub running: bool,
    /// Its status, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<DaemonStatus>>,
    /// Why it did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole edge.
#[derive(Debug, Serialize)]
pub struct Edge {
    /// Version of this document's shape.
    pub version: u32,
    /// The configuration file used to find the sockets.
    pub config: String,
    /// One entry per daemon, in start order.
    pub daemons: Vec<Entry>,
}

/// Asks every daemon for its status.
pub async fn collect(config: &Path) -> Edge {
    let runtime_dir = std::fs::read_to_string(config)
        .map(|t| edge_config::peek_runtime_dir(&t))
        .unwrap_or_else(|_| edge_config::Global::default().runtime_dir);
    let mut daemons = Vec::new();
    for role in Role::ALL {
        let client = Client::new(role, edge_config::socket_path(&runtime_dir, role))
            .with_timeout(std::time::Duration::from_secs(5));
        let entry = match client.request(Request::Status).await {
            Ok(Response::Status(st)) => Entry {
                role,
                unit: role.binary().to_owned(),
                running: true,
                status: Some(st),
                error: None,
            },
            Ok(other) => Entry {
                role,
                unit: role.binary().to_owned(),
                running: true,
                status: None,
                error: Some(format!("unexpected answer: {other:?}")),
            },
            Err(e) => Entry {
                role,
                unit: role.binary().to_owned(),
                running: false,
                status: None,
                error: Some(e.to_string()),
            },
        };
        daemons.push(entry);
    }
    Edge {
        version: STATUS_JSON_VERSION,
        config: config.display().to_string(),
        daemons,
    }
}

/// [`collect`] from synchronous code (the lab's).
#[cfg(feature = "lab")]
pub fn collect_blocking(config: &Path) -> Edge {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(collect(config)),
        Err(_) => Edge {
            version: STATUS_JSON_VERSION,
            config: config.display().to_string(),
            daemons: Vec::new(),
        },
    }
}

fn ago(now: u64, t: u64) -> String {
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

fn bytes(n: u64) -> String {
    match n {
        0..=1023 => format!("{n} B"),
        1024..=1_048_575 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..=1_073_741_823 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.2} GiB", n as f64 / 1_073_741_824.0),
    }
}

fn detail(o: &mut String, role: Role, v: &serde_json::Value, now: u64) {
    match role {
        Role::Ddns => {
            if let Ok(d) = serde_json::from_value::<edge_ipc::ddns::Status>(v.clone()) {
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
                return;
            }
        }
        Role::Wg => {
            if let Ok(w) = serde_json::from_value::<edge_ipc::wg::Status>(v.clone()) {
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
                return;
            }
        }
        Role::Link => {
            if let Ok(l) = serde_json::from_value::<edge_ipc::link::Status>(v.clone()) {
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
                return;
            }
        }
        Role::Fw => {
            if let Ok(f) = serde_json::from_value::<edge_ipc::fw::Status>(v.clone()) {
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
                return;
            }
        }
    }
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            let _ = writeln!(o, "  {k}: {val}");
        }
    }
}

/// Human rendering of one daemon's status: the common part, then its role's detail (what
/// `edgectl <role> status` prints, and one block of `edgectl status`).
pub fn render_one(st: &edge_ipc::proto::DaemonStatus) -> String {
    let mut o = crate::daemon::render_status(st);
    detail(&mut o, st.role, &st.detail, unix_now());
    o
}

/// Human rendering of the whole edge.
pub fn render(edge: &Edge) -> String {
    let mut o = String::new();
    for e in &edge.daemons {
        match &e.status {
            Some(st) => {
                o.push_str(&render_one(st));
            }
            None => {
                let _ = writeln!(
                    o,
                    "{}: DOWN — {}",
                    e.unit,
                    e.error.clone().unwrap_or_default()
                );
            }
        }
    }
    o
}

/// Runs `edgectl status`.
pub async fn run(g: &Global) -> anyhow::Result<ExitCode> {
    let edge = collect(&g.config_path()).await;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&edge)?);
    } else {
        print!("{}", render(&edge));
    }
    let all_up = edge
        .daemons
        .iter()
        .all(|d| d.status.as_ref().is_some_and(|s| s.ready));
    Ok(if all_up {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
