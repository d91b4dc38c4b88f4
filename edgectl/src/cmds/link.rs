//! `edgectl link ...`: the bridge/NIC manager. `plan` works offline: it dumps the current
//! network namespace over netlink and prints what edge-link would change, as `ip` commands;
//! `apply`, `status`, `reload` and `ping` talk to edge-link.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Subcommand;
use edge_config::Role;
use edge_ipc::Request;
use edge_ipc::link::{PlanReport, Status};
use edge_ipc::proto::Response;
use edge_link::Desired;
use edge_link::daemon::{plan_once, plan_report};
use edge_util::error_chain;

use crate::{Global, daemon};

/// Arguments of `edgectl link`.
pub type Args = super::Sub<Cmd>;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Print the operations that would converge this host (run it where the NICs are; reads
    /// only, needs no privileges).
    Plan {
        /// Exit with 3 when the plan is not empty (for scripts and monitoring).
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Ask edge-link to reconcile now.
    Apply,
    /// Show the daemon's status: links, ports, what it waits for, what it noticed.
    Status,
    /// Ask the daemon to re-read its configuration (like SIGHUP).
    Reload,
    /// Check that the daemon answers.
    Ping,
}

/// Runs `edgectl link`.
pub async fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let req = match args.cmd {
        Cmd::Plan { detailed_exitcode } => return plan(g, detailed_exitcode).await,
        Cmd::Apply => Request::Apply { confirm_secs: None },
        Cmd::Status => Request::Status,
        Cmd::Reload => Request::Reload,
        Cmd::Ping => Request::Ping,
    };
    let resp = daemon::ask(Role::Link, g, req).await?;
    match &resp {
        Response::Status(st) if !g.json => {
            print!("{}", daemon::render_status(st));
            if let Some(detail) = st.detail.link() {
                print!("{}", render_detail(detail));
            }
            Ok(ExitCode::SUCCESS)
        }
        Response::Done { message, detail } if !g.json => {
            println!("{message}");
            if let Ok(r) = serde_json::from_value::<PlanReport>(detail.clone()) {
                for op in &r.ops {
                    println!("  {op}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => daemon::print_response(&resp, g),
    }
}

async fn plan(g: &Global, detailed_exitcode: bool) -> anyhow::Result<ExitCode> {
    let path = g.config_path();
    let Some(loaded) = super::load_or_report(&path) else {
        return Ok(ExitCode::from(2));
    };
    let Some(link) = loaded.config.link.as_ref() else {
        eprintln!("edgectl: {} has no [link] section", path.display());
        return Ok(ExitCode::from(2));
    };
    let desired = Desired::from_full(link, loaded.config.ha.as_ref());
    let p = match plan_once(&desired).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "edgectl: cannot read this host's network state: {}",
                error_chain(&e)
            );
            return Ok(ExitCode::from(1));
        }
    };
    if g.json {
        println!("{}", serde_json::to_string_pretty(&plan_report(&p, 0))?);
    } else {
        print!("{p}");
    }
    Ok(if detailed_exitcode && !p.ops.is_empty() {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// Human rendering of edge-link's status detail.
fn render_detail(st: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  state: {} ({} reconcile(s), {} write(s), last {:.1} ms{})",
        if st.converged {
            "converged"
        } else {
            "NOT converged"
        },
        st.reconciles,
        st.writes,
        st.last_reconcile_ms,
        st.last_repair_ms
            .map(|r| format!(", last repair {r:.1} ms after the event"))
            .unwrap_or_default()
    );
    if let Some(s) = st.retry_in_secs {
        let _ = writeln!(out, "  retrying the failed apply in {s} s");
    }
    for l in &st.links {
        let state = if !l.present {
            "absent".to_owned()
        } else {
            format!(
                "{}{} mtu {}",
                if l.admin_up { "up" } else { "DOWN" },
                if l.oper_up { "" } else { " (no carrier)" },
                l.mtu
            )
        };
        let rel = match (l.role.as_str(), &l.controller) {
            ("bridge", _) if l.ports.is_empty() => "no ports".to_owned(),
            ("bridge", _) => format!("ports: {}", l.ports.join(" ")),
            (_, Some(c)) => format!("master {c}"),
            _ => "no master".to_owned(),
        };
        let _ = writeln!(out, "  {:<7} {:<15} {state:<24} {rel}", l.role, l.name);
    }
    for w in &st.waiting {
        let _ = writeln!(out, "  waiting: {w}");
    }
    for p in &st.pending {
        let _ = writeln!(out, "  pending: {p}");
    }
    for n in &st.notes {
        let _ = writeln!(out, "  {n}");
    }
    out
}
