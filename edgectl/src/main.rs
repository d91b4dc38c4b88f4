//! `edgectl`: one CLI for the edge suite. Thin: each subcommand lives in `cmds/`, talks to
//! a daemon over its control socket or runs the daemons' pure code offline.

mod cmds;
mod daemon;
mod ha_conf;
#[cfg(feature = "lab")]
mod lab;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Operate the edge suite: status, config check, plan/apply per daemon.
#[derive(Debug, Parser)]
#[command(name = "edgectl", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file [default: $EDGE_CONFIG, else /etc/edge/edge.toml].
    #[arg(long, short = 'c', global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Status of the whole edge: every daemon, its last run, its errors.
    Status,
    /// Check the configuration file.
    Config(cmds::config::Args),
    /// The Cloudflare DDNS updater (edge-ddns).
    Ddns(cmds::ddns::Args),
    /// The WireGuard endpoint (edge-wg).
    Wg(cmds::wg::Args),
    /// The nftables firewall (edge-fw).
    Fw(cmds::fw::Args),
    /// The bridge/NIC manager (edge-link).
    Link(cmds::link::Args),
    /// Notifications: send a test event to the targets of [notify].
    Notify(cmds::notify::Args),
    /// Two edge hosts under keepalived: the notify FIFO reader, the role, keepalived.conf.
    Ha(cmds::ha::Args),
    /// The user's host in network namespaces with every daemon running for real.
    #[cfg(feature = "lab")]
    Lab(cmds::lab::Args),
    /// Print shell completions.
    Completions {
        /// Shell to generate for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

/// Options every subcommand sees.
#[derive(Debug, Clone)]
pub struct Global {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--json`.
    pub json: bool,
}

impl Global {
    /// The config path after `--config` / `$EDGE_CONFIG` / the default.
    pub fn config_path(&self) -> PathBuf {
        edge_config::resolve_path(self.config.as_deref())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let g = Global {
        config: cli.config.clone(),
        json: cli.json,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edgectl: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let res = rt.block_on(async {
        match cli.command {
            Command::Status => cmds::status::run(&g).await,
            Command::Config(a) => cmds::config::run(a, &g).await,
            #[cfg(feature = "lab")]
            Command::Lab(a) => cmds::lab::run(a, &g).await,
            Command::Ddns(a) => cmds::ddns::run(a, &g).await,
            Command::Wg(a) => cmds::wg::run(a, &g).await,
            Command::Fw(a) => cmds::fw::run(a, &g).await,
            Command::Link(a) => cmds::link::run(a, &g).await,
            Command::Notify(a) => cmds::notify::run(a, &g).await,
            Command::Ha(a) => cmds::ha::run(a, &g).await,
            Command::Completions { shell } => {
                clap_complete::generate(
                    shell,
                    &mut Cli::command(),
                    "edgectl",
                    &mut std::io::stdout(),
                );
                Ok(ExitCode::SUCCESS)
            }
            Command::Man => {
                clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("edgectl: {e:#}");
            ExitCode::from(1)
        }
    }
}
