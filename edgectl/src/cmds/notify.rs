//! `edgectl notify test [TARGET]`: a test event to every notification target of the file
//! (or one), sent by edgectl itself with the file's secrets, and what each target answered.

use std::process::ExitCode;

use clap::Subcommand;
use edge_notify::NotifyError;
use edge_util::error_chain;

use crate::Global;

/// Arguments of `edgectl notify`.
pub type Args = super::Sub<Cmd>;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Send a test event to every target of [notify] (or only TARGET) and show what each
    /// answered: exit 0 when every target accepted it, 1 otherwise, 2 for a bad file or name.
    Test {
        /// Only this target (its `name`).
        target: Option<String>,
    },
}

/// Runs `edgectl notify ...`.
pub async fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    match args.cmd {
        Cmd::Test { target } => test(g, target.as_deref()).await,
    }
}

async fn test(g: &Global, only: Option<&str>) -> anyhow::Result<ExitCode> {
    let path = g.config_path();
    let Some(loaded) = super::load_or_report(&path) else {
        return Ok(ExitCode::from(2));
    };
    let Some(n) = loaded.config.notify.as_ref().filter(|n| !n.is_empty()) else {
        eprintln!(
            "edgectl: {} has no notification target: add a [[notify.webhook]], [[notify.ntfy]] or [[notify.heartbeat]] (see docs/notify.md)",
            path.display()
        );
        return Ok(ExitCode::from(2));
    };
    let results = match edge_notify::probe(n, only, "edgectl").await {
        Ok(r) => r,
        Err(e @ NotifyError::UnknownTarget { .. }) => {
            eprintln!("edgectl: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => anyhow::bail!("cannot send the test event: {}", error_chain(&e)),
    };
    let all_ok = results.iter().all(|r| r.ok);
    if g.json {
        let doc = serde_json::json!({ "version": 1, "ok": all_ok, "targets": results });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for r in &results {
            let verdict = match (r.ok, r.status) {
                (true, Some(s)) => format!("ok: HTTP {s} in {} ms", r.millis),
                (false, Some(s)) => format!("FAILED: HTTP {s} in {} ms", r.millis),
                (_, None) => format!("FAILED after {} ms", r.millis),
            };
            println!("{:<9} {:<20} {:<36} {verdict}", r.kind, r.target, r.url);
            if !r.detail.is_empty() {
                println!("          {}", r.detail);
            }
        }
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
