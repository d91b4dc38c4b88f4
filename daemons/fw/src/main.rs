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
    /// Print the transaction compiled from the configuration (`nft -f` syntax) and the
    /// anti-lockout proof's verdict, and exit (1 when the proof refuses it).
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
    let addrs = edge_fw::observe::interface_addresses().unwrap_or_default();
    let ranges = edge_fw::origin::load_cache(&edge_fw::origin::cache_path(
        &loaded.config.global.state_dir,
    ))
    .unwrap_or_else(edge_fw::origin::Ranges::shipped);
    match edge_fw::plan::compile_config(&loaded.config, addrs, &ranges) {
        Ok((m, rs)) => {
            print!("{}", rs.script());
            // The same plan as the daemon's, without the live tables.
            let p = edge_fw::plan::plan(&m, &rs, None);
            for l in &p.lockouts {
                println!("# REFUSED: {l}");
            }
            if p.allowed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("edge-fw: {e:#}");
            ExitCode::from(2)
        }
    }
}
