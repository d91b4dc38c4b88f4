//! `edgectl wg ...`: talk to edge-wg: status, a `wg show`-style view, reload, ping; and
//! provision peers (`wg peer`, in `wg_peer.rs`).

use std::process::ExitCode;

use clap::Subcommand;
use edge_config::Role;
use edge_ipc::{Request, Response};

use crate::{Global, daemon};

/// Arguments of `edgectl wg`.
pub type Args = super::Sub<Cmd>;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Show the daemon's status.
    Status,
    /// Show the interface and its peers like `wg show` (keys, endpoints, handshakes, transfer).
    Show,
    /// Ask the daemon to re-read its configuration (like SIGHUP).
    Reload,
    /// Check that the daemon answers.
    Ping,
    /// Add, list, remove and renew peers (edits the configuration, then reloads).
    Peer(super::wg_peer::Args),
}

/// Runs `edgectl wg`.
pub async fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let req = match args.cmd {
        Cmd::Status => Request::Status,
        Cmd::Show => return show(g).await,
        Cmd::Reload => Request::Reload,
        Cmd::Ping => Request::Ping,
        Cmd::Peer(a) => return super::wg_peer::run(a, g).await,
    };
    daemon::simple(Role::Wg, g, req).await
}

async fn show(g: &Global) -> anyhow::Result<ExitCode> {
    let resp = daemon::ask(Role::Wg, g, Request::Status).await?;
    let Response::Status(st) = &resp else {
        return daemon::print_response(&resp, g);
    };
    let detail = st
        .detail
        .wg()
        .ok_or_else(|| anyhow::anyhow!("edge-wg sent a status this edgectl cannot read"))?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&detail)?);
    } else {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        print!("{}", edge_ipc::wg::render_show(detail, now));
    }
    Ok(ExitCode::SUCCESS)
}
