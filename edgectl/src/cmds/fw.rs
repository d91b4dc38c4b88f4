//! `edgectl fw ...`: the firewall. As root, `plan` and `doctor` work here (the pure compiler,
//! the same plan edge-fw makes, and a netlink read of the live tables); others ask edge-fw,
//! which members of group `edge` may. `apply`, `confirm`, `status`, `reload` and `ping`
//! talk to edge-fw.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use edge_config::Role;
use edge_fw::nfnl::Socket;
use edge_fw::{observe, plan};
use edge_ipc::Request;
use edge_ipc::proto::RoleRequest;

use crate::{Global, daemon};

/// Arguments of `edgectl fw`.
pub type Args = super::Sub<Cmd>;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Print the ruleset compiled from the configuration, how it differs from the live tables
    /// and what an apply would write (as root read here; otherwise asked of edge-fw).
    Plan {
        /// Print the full `nft -f` transaction (replace inet edge, converge inet edge_state).
        #[arg(long)]
        script: bool,
    },
    /// Ask edge-fw to apply the configuration now.
    Apply {
        /// Keep the previous ruleset and restore it unless probes pass (or `edgectl fw
        /// confirm` runs) within this time, e.g. `60s`.
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        confirm: Option<Duration>,
    },
    /// Confirm a pending `apply --confirm` by hand.
    Confirm,
    /// List other tables' base chains on our hooks and how they interact with ours (as root
    /// read here; otherwise asked of edge-fw, which members of group `edge` may do).
    Doctor,
    /// Show the daemon's status.
    Status,
    /// Ask the daemon to re-read its configuration (like SIGHUP).
    Reload,
    /// Check that the daemon answers.
    Ping,
    /// The origin lock's ranges (Cloudflare's published list).
    #[command(subcommand)]
    OriginLock(OriginLockCmd),
}

#[derive(Debug, Subcommand)]
pub enum OriginLockCmd {
    /// Fetch Cloudflare's list now (root): a valid list is put in force by an element-only
    /// update; one that changes more than half of the ranges waits for a second identical
    /// answer.
    Refresh,
}

/// Runs `edgectl fw`.
pub async fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let req = match args.cmd {
        Cmd::Plan { script } if root || script => return plan_cmd(g, script),
        Cmd::Plan { .. } => Request::Plan,
        Cmd::Doctor if root => return doctor(g),
        Cmd::Doctor => Request::Role(RoleRequest::Fw(edge_ipc::fw::Request::Doctor)),
        Cmd::Apply { confirm } => Request::Apply {
            confirm_secs: confirm.map(|d| d.as_secs().max(1)),
        },
        Cmd::Confirm => Request::Confirm,
        Cmd::Status => Request::Status,
        Cmd::Reload => Request::Reload,
        Cmd::Ping => Request::Ping,
        Cmd::OriginLock(OriginLockCmd::Refresh) => {
            Request::Role(RoleRequest::Fw(edge_ipc::fw::Request::RefreshRanges))
        }
    };
    daemon::simple(Role::Fw, g, req).await
}

fn plan_cmd(g: &Global, script: bool) -> anyhow::Result<ExitCode> {
    let path = g.config_path();
    let Some(loaded) = super::load_or_report(&path) else {
        return Ok(ExitCode::from(2));
    };
    let addrs = observe::interface_addresses().unwrap_or_default();
    // The origin lock's ranges as edge-fw last kept them, else the shipped list.
    let ranges = edge_fw::origin::load_cache(&edge_fw::origin::cache_path(
        &loaded.config.global.state_dir,
    ))
    .unwrap_or_else(edge_fw::origin::Ranges::shipped);
    let (m, rs) = plan::compile_config(&loaded.config, addrs, &ranges)
        .with_context(|| format!("failed to compile the [fw] section of {}", path.display()))?;
    // Reading the live tables needs CAP_NET_ADMIN; without it the plan is still useful.
    let live = Socket::open()
        .map_err(edge_fw::observe::ObserveError::from)
        .and_then(|s| observe::read_live(&s));
    let p = plan::plan(&m, &rs, live.as_ref().ok());
    if g.json {
        let v = serde_json::json!({
            "ruleset": rs.script(),
            "rules": rs.edge.rule_count(),
            "update": p.update.describe(),
            "lockouts": p.lockouts.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            "diff": live.as_ref().ok().map(|_| p.diff_lines()),
            "live_error": live.as_ref().err().map(|e| edge_util::error_chain(e)),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        if script {
            print!("{}", rs.script());
        } else {
            print!("{}{}", rs.edge, rs.state);
        }
        println!();
        match &live {
            Ok(l) if l.edge.is_none() => {
                println!("# table inet edge is not live yet: `edgectl fw apply` would create it")
            }
            Ok(_) => {
                println!("# {}", p.update.describe());
                let diff = p.diff_lines();
                if !diff.is_empty() {
                    println!("# differences from the live tables (- live, + compiled):");
                    for l in diff {
                        println!("{l}");
                    }
                }
            }
            Err(e) => println!(
                "# cannot read the live tables ({}); run as root to see the differences",
                edge_util::error_chain(e)
            ),
        }
        for l in &p.lockouts {
            println!("# REFUSED: {l}");
        }
    }
    Ok(if p.allowed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn doctor(g: &Global) -> anyhow::Result<ExitCode> {
    let sock = Socket::open().context("failed to open the nf_tables socket")?;
    let notes = observe::doctor(&sock).context("failed to list the base chains")?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&notes)?);
    } else {
        for n in notes {
            println!("- {n}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
