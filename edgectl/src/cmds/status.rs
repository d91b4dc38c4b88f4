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

/// Human rendering of one daemon's status: the common part, then its role's detail (what
/// `edgectl <role> status` prints, and one block of `edgectl status`).
pub fn render_one(st: &edge_ipc::proto::DaemonStatus) -> String {
    let mut o = crate::daemon::render_status(st);
    o.push_str(&st.detail.render(unix_now()));
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
