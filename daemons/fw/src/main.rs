//! edge-fw: compiles the `[fw]` section into table `inet edge` and keeps it applied.

use std::process::ExitCode;

use clap::Parser;
use edge_config::Role;
use edge_ipc::shell::{CommonArgs, main_with};

/// Compile the [fw] section into one nftables table and keep it applied atomically.
#[derive(Debug, Parser)]
#[command(name = "edge-fw", version, about)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Print the ruleset compiled from the configuration (`nft -f` syntax) and exit.
    #[arg(long)]
    print: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print {
        return print(&args.common);
    }
    main_with(Role::Fw, args.common, edge_fw::daemon::run)
}

fn print(common: &CommonArgs) -> ExitCode {
    let path = edge_config::resolve_path(common.config.as_deref());
    let loaded = match edge_config::load(&path, edge_config::LoadOptions { role: None }) {
        Ok(l) => l,
        Err(d) => {
            eprint!("{}", d.render());
            return ExitCode::from(2);
        }
    };
    match edge_fw::plan::compile_config(&loaded.config, Default::default()) {
        Ok((_, rs)) => {
            print!("{}", rs.script());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edge-fw: {e:#}");
            ExitCode::from(2)
        }
    }
}
