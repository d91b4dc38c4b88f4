//! `edgectl link ...`: talk to edge-link. The owner of edge-link adds its own subcommands here.

use std::process::ExitCode;

use clap::Subcommand;
use edge_config::Role;
use edge_ipc::Request;

use crate::{Global, daemon};

/// Arguments of `edgectl link`.
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

/// Runs `edgectl link`.
pub async fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let req = match args.cmd {
        Cmd::Status => Request::Status,
        Cmd::Reload => Request::Reload,
        Cmd::Ping => Request::Ping,
    };
    daemon::simple(Role::Link, g, req).await
}
