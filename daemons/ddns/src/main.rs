//! edge-ddns: keeps Cloudflare A/AAAA records on the host's public address.

use std::process::ExitCode;

use clap::Parser;
use edge_config::Role;
use edge_ipc::shell::{CommonArgs, main_with};

/// Keep Cloudflare DNS records on this host's public IP address.
// The same two flags as edge-link's main.rs, kept apart on purpose: each help text says
// what this daemon's one run does and what its exit codes mean (the start behind them is
// shared: `edge_ipc::shell::once_with`).
#[derive(Debug, Parser)]
#[command(name = "edge-ddns", version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Run one sync and exit: 0 when every record converged, 1 otherwise, 2 for a bad
    /// configuration (for systemd timers or cron).
    #[arg(long)]
    once: bool,
    /// With --once: detect and read the API, print what would change, change nothing.
    #[arg(long, requires = "once")]
    dry_run: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.once {
        return edge_ddns::daemon::once(&args.common, args.dry_run);
    }
    main_with(Role::Ddns, args.common, edge_ddns::daemon::run)
}
