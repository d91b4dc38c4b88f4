//! `edgectl wg ...`: talk to edge-wg. The owner of edge-wg adds its own subcommands here.

use std::process::ExitCode;

use clap::Subcommand;
use edge_config::Role;
use edge_ipc::Request;

use crate::{Global, daemon};

/// Arguments of `edgectl wg`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Show the daemon's status.
    Status,
    /// Ask the daemon to re-read its configuration (like SIGHUP).
    Reload,
    /// Check that the daemon answers.
    Ping,
}

/// Runs `edgectl wg`.
pub async fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let req = match args.cmd {
        Cmd::Status => Request::Status,
        Cmd::Reload => Request::Reload,
        Cmd::Ping => Request::Ping,
    };
    daemon::simple(Role::Wg, g, req).await
}
