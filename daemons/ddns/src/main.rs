//! edge-ddns: keeps Cloudflare A/AAAA records on the host's public address.

use std::process::ExitCode;

use clap::Parser;
use edge_config::Role;
use edge_ipc::shell::{CommonArgs, main_with};

/// Keep Cloudflare DNS records on this host's public IP address.
#[derive(Debug, Parser)]
#[command(name = "edge-ddns", version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let args = Args::parse();
    main_with(Role::Ddns, args.common, edge_ddns::run)
}
