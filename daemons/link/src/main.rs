//! edge-link: converges the host's bridges, ports, addresses, routes and sysctls over
//! rtnetlink and repairs drift as it happens.

use std::process::ExitCode;

use clap::Parser;
use edge_config::{LoadOptions, LogFormat, Role};
use edge_ipc::shell::{CommonArgs, main_with};
use edge_link::Desired;
use edge_link::daemon::{converge_once, error_chain, plan_once};

/// Converge and watch the host's bridges, NICs, addresses and routes.
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
    let path = edge_config::resolve_path(common.config.as_deref());
    let format = match common.log_format.as_deref() {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    };
    edge_metrics::logging::init(format, common.log_level.as_deref().unwrap_or("info"));
    let loaded = match edge_config::load(
        &path,
        LoadOptions {
            role: Some(Role::Link),
        },
    ) {
        Ok(l) => l,
        Err(d) => {
            eprint!("{}", d.render());
            return ExitCode::from(2);
        }
    };
    let Some(link) = loaded.config.link.as_ref() else {
        eprintln!("edge-link: {} has no [link] section", path.display());
        return ExitCode::from(2);
    };
    let desired = Desired::from_full(link, loaded.config.ha.as_ref());
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge-link: failed to start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async {
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
