//! `edgectl ddns ...`: talk to edge-ddns — status, plan (what a sync would change, changing
//! nothing), sync (now), reload, ping.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use edge_config::Role;
use edge_ipc::Request;
use edge_ipc::ddns::Status;
use edge_ipc::proto::Response;

use crate::{Global, daemon};

/// Arguments of `edgectl ddns`.
pub type Args = super::Sub<Cmd>;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Show the detected addresses, the managed records and the last sync.
    Status,
    /// Show what a sync would change now (detection and API reads only; nothing is written).
    Plan,
    /// Sync now: detect, then create or update records that differ.
    Sync,
    /// Ask the daemon to re-read its configuration (like SIGHUP).
    Reload,
    /// Check that the daemon answers.
    Ping,
}

fn ago(now: u64, t: u64) -> String {
    let d = now.saturating_sub(t);
    match d {
        0..=119 => format!("{d}s ago"),
        120..=7199 => format!("{}m ago", d / 60),
        _ => format!("{}h ago", d / 3600),
    }
}

/// Human rendering of edge-ddns's status detail.
fn render_detail(st: &Status) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut out = String::new();
    for f in &st.families {
        match (&f.address, &f.failure) {
            (Some(a), _) => {
                let _ = writeln!(out, "  {}: {a}", f.family);
            }
            (None, Some(why)) => {
                let _ = writeln!(out, "  {}: NO ADDRESS ({why})", f.family);
            }
            _ => {}
        }
        for a in &f.answers {
            let _ = writeln!(out, "      {:<20} {:<8} {}", a.source, a.result, a.detail);
        }
    }
    for r in &st.records {
        let _ = writeln!(
            out,
            "  {:<32} {:<16} {}{}{}",
            r.record,
            r.content.as_deref().unwrap_or("-"),
            if r.in_sync { "in sync" } else { "NOT IN SYNC" },
            r.verified_at
                .map(|t| format!(", confirmed {}", ago(now, t)))
                .unwrap_or_default(),
            r.changed_at
                .map(|t| format!(", changed {}", ago(now, t)))
                .unwrap_or_default(),
        );
    }
    if let Some(i) = &st.wan_interface {
        let _ = writeln!(out, "  watching {i} for address changes");
    }
    if let Some(t) = st.next_run {
        let _ = writeln!(out, "  next scheduled check in {}s", t.saturating_sub(now));
    }
    out
}

/// Runs `edgectl ddns`.
pub async fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let req = match args.cmd {
        Cmd::Status => Request::Status,
        Cmd::Plan => Request::Plan,
        Cmd::Sync => Request::Apply { confirm_secs: None },
        Cmd::Reload => Request::Reload,
        Cmd::Ping => Request::Ping,
    };
    let resp = daemon::ask(Role::Ddns, g, req).await?;
    if let (Response::Status(st), false) = (&resp, g.json) {
        print!("{}", daemon::render_status(st));
        if let Some(detail) = st.detail.ddns() {
            print!("{}", render_detail(detail));
        }
        return Ok(ExitCode::SUCCESS);
    }
    daemon::print_response(&resp, g)
}
