//! edge-link: converges the host's bridges, ports, addresses, routes and sysctls over
//! rtnetlink and repairs drift as it happens.

use std::process::ExitCode;

use clap::Parser;
use edge_config::Role;
use edge_ipc::shell::{CommonArgs, main_with, once_with};
use edge_link::Desired;
use edge_link::daemon::{converge_once, plan_once};
use edge_util::error_chain;

/// Converge and watch the host's bridges, NICs, addresses and routes.
// The same two flags as edge-ddns's main.rs, kept apart on purpose: each help text says
// what this daemon's one run does and what its exit codes mean (the start behind them is
// shared: `edge_ipc::shell::once_with`).
#[derive(Debug, Parser)]
#[command(name = "edge-link", version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Converge once and exit: 0 when applied (or nothing to do), 1 when the apply failed
    /// (it was rolled back), 2 for a bad configuration.
    #[arg(long)]
    once: bool,
    /// With --once: print the plan, change nothing.
    #[arg(long, requires = "once")]
    dry_run: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.once {
        return once(&args.common, args.dry_run);
    }
    main_with(Role::Link, args.common, edge_link::daemon::run)
}

fn once(common: &CommonArgs, dry_run: bool) -> ExitCode {
    once_with(Role::Link, common, |config| async move {
        let Some(link) = config.link.as_ref() else {
            return ExitCode::from(2);
        };
        let desired = Desired::from_full(link, config.ha.as_ref());
        if dry_run {
            return match plan_once(&desired).await {
                Ok(p) => {
                    print!("{p}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("edge-link: {}", error_chain(&e));
                    ExitCode::from(1)
                }
            };
        }
        match converge_once(&desired).await {
            Ok((p, report)) => {
                print!("{p}");
                println!(
                    "# {} change(s) applied, {} already in place, {} write(s)",
                    report.changed.len(),
                    report.already.len(),
                    report.writes
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("edge-link: {}", error_chain(&e));
                ExitCode::from(1)
            }
        }
    })
}
