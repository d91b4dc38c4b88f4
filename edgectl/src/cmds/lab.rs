//! `edgectl lab up|check|down`: the whole edge of the user's host in network namespaces.

use std::process::ExitCode;

use clap::Subcommand;

use crate::Global;
use crate::lab::{Lab, check, serve};

/// Arguments of `edgectl lab`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Prefix of the lab's namespaces (`<name>-host`, ...) and its directory `/run/<name>`.
    #[arg(long, default_value = "edge-lab", value_name = "NAME")]
    name: String,
    /// Name of the WireGuard interface on the lab's host.
    #[arg(long, default_value = "wg0", value_name = "IFNAME")]
    wg_if: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build the topology, start the four daemons and the world around them, wait for READY.
    Up {
        /// Start no daemon: leave the host namespace to edge as installed (a container booted
        /// in it, as the installed-system test does); its configuration is written to
        /// `/run/<name>/installed.toml`.
        #[arg(long)]
        world_only: bool,
        /// Two edge hosts behind the ISP router, keepalived and conntrackd on both.
        #[arg(long, conflicts_with = "world_only")]
        ha: bool,
    },
    /// Show, step by step, that the suite does its job.
    Check {
        /// The two-host lab's checks: failovers, the stream across them, DDNS writes.
        #[arg(long)]
        ha: bool,
    },
    /// Stop everything the lab started and remove its namespaces and files.
    Down,
    /// Serve the lab's stand-ins for the world (run by `up` inside the namespaces).
    #[command(hide = true)]
    Serve {
        /// `inet` or `lb`.
        node: String,
        /// The lab directory.
        #[arg(long)]
        dir: std::path::PathBuf,
    },
}

/// Runs `edgectl lab ...`.
pub async fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let me = std::env::current_exe()?;
    let bin = me
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let lab = Lab::new(&args.name, bin, &args.wg_if);
    if !matches!(args.cmd, Cmd::Serve { .. }) && unsafe_not_root() {
        anyhow::bail!("the lab builds network namespaces: run it as root (sudo edgectl lab ...)");
    }
    // The lab's own steps block (processes, polling); keep them off the async runtime.
    let g = g.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<ExitCode> {
        match args.cmd {
            Cmd::Up {
                world_only: true, ..
            } => {
                lab.up(&me, false)?;
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Up { ha: true, .. } => {
                lab.up_ha(&me)?;
                for h in crate::lab::ha::HOSTS {
                    println!(
                        "== host {h}: edgectl --config {} ha status",
                        lab.host_config(h).display()
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Up { .. } => {
                lab.up(&me, true)?;
                println!(
                    "== the lab is up; edgectl --config {} status:",
                    lab.config_path().display()
                );
                let st = crate::cmds::status::collect_blocking(&lab.config_path());
                print!("{}", crate::cmds::status::render(&st));
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Check { ha } => {
                let report = if ha {
                    crate::lab::ha_check::run(&lab)
                } else {
                    check::run(&lab)
                };
                if g.json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{}", report.render());
                }
                Ok(if report.ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            }
            Cmd::Down => {
                let removed = lab.down()?;
                if removed.is_empty() {
                    println!("nothing to remove");
                } else {
                    println!("removed: {}", removed.join(", "));
                }
                Ok(ExitCode::SUCCESS)
            }
            Cmd::Serve { node, dir } => {
                match node.as_str() {
                    "inet" => {
                        let token = std::fs::read_to_string(dir.join("token"))?;
                        serve::inet(&dir, token.trim())?;
                    }
                    "lb" => serve::lb(&dir)?,
                    other => anyhow::bail!("unknown lab node `{other}`"),
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    })
    .await?
}

fn unsafe_not_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() != 0 }
}
