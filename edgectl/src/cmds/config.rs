//! `edgectl config check`: the daemons' own loader run offline, with every located error.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Subcommand;
use edge_config::{Config, Diagnostics, LoadOptions};
use serde::Serialize;

use crate::Global;

/// Arguments of `edgectl config`.
pub type Args = super::Sub<Cmd>;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Validate the file: exit 0 when valid (warnings printed), 2 with the located errors.
    Check,
}

#[derive(Serialize)]
struct Report<'a> {
    path: String,
    valid: bool,
    errors: Vec<&'a edge_config::Diagnostic>,
    warnings: Vec<&'a edge_config::Diagnostic>,
    #[serde(skip_serializing_if = "Option::is_none")]
    config: Option<&'a Config>,
}

/// Runs `edgectl config ...`.
pub async fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    match args.cmd {
        Cmd::Check => Ok(check(g)),
    }
}

fn check(g: &Global) -> ExitCode {
    let path = g.config_path();
    let (config, diags): (Option<Config>, Diagnostics) =
        match edge_config::load(&path, LoadOptions { role: None }) {
            Ok(l) => (Some(l.config), l.warnings),
            Err(d) => (None, d),
        };
    if g.json {
        let report = Report {
            path: path.display().to_string(),
            valid: config.is_some(),
            errors: diags.errors().collect(),
            warnings: diags.warnings().collect(),
            config: config.as_ref(),
        };
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("edgectl: cannot render JSON: {e}"),
        }
    } else {
        eprint!("{}", diags.render());
        if let Some(c) = &config {
            print!("{}", summary(c, diags.warnings().count()));
        }
    }
    if config.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// What each daemon will manage, in a few lines.
fn summary(c: &Config, warnings: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}: valid ({} warning{})",
        c.path.display(),
        warnings,
        if warnings == 1 { "" } else { "s" }
    );
    summary_link(&mut o, c);
    summary_fw(&mut o, c);
    summary_wg(&mut o, c);
    summary_ddns(&mut o, c);
    summary_notify(&mut o, c);
    o
}

/// The bridges, with their ports and addresses, and the protected interfaces.
fn summary_link(o: &mut String, c: &Config) {
    let Some(l) = &c.link else {
        o.push_str("  link: no section (edge-link idles)\n");
        return;
    };
    let _ = writeln!(
        o,
        "  link: {} bridge(s), {} route(s); protected: {}",
        l.bridges.len(),
        l.routes.len(),
        l.protected
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for b in &l.bridges {
        let ports: Vec<_> = b.ports.iter().map(|p| p.as_str()).collect();
        let addrs: Vec<_> = b.addresses.iter().map(|a| a.to_string()).collect();
        let _ = writeln!(
            o,
            "    {}: ports [{}], addresses [{}]",
            b.name,
            ports.join(", "),
            addrs.join(", ")
        );
    }
}

/// The forwards, one line each, and the input policy.
fn summary_fw(o: &mut String, c: &Config) {
    let Some(f) = &c.fw else {
        o.push_str("  fw: no section (edge-fw idles)\n");
        return;
    };
    let _ = writeln!(
        o,
        "  fw: {} forward(s), {} input rule(s), input policy {:?}",
        f.forwards.len(),
        f.input.allow.len(),
        f.input.policy
    );
    for fw in &f.forwards {
        let _ = writeln!(
            o,
            "    {}: {:?} {}{} -> {}:{}{}",
            fw.name,
            fw.proto,
            fw.address.map(|a| format!("{a}:")).unwrap_or_default(),
            fw.port,
            fw.to,
            fw.to_port,
            fw.from
                .as_ref()
                .map(|f| format!(
                    " from {}",
                    f.iter()
                        .map(|s| s.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .unwrap_or_default()
        );
    }
}

/// The WireGuard interface, its port and its number of peers.
fn summary_wg(o: &mut String, c: &Config) {
    match &c.wg {
        Some(w) => {
            let _ = writeln!(
                o,
                "  wg: {} listening on udp {}, {} peer(s)",
                w.interface,
                w.listen_port,
                w.peers.len()
            );
        }
        None => o.push_str("  wg: no section (edge-wg idles)\n"),
    }
}

/// The DNS records, the number of detection sources and the quorum.
fn summary_ddns(o: &mut String, c: &Config) {
    match &c.ddns {
        Some(d) => {
            let recs: Vec<_> = d
                .records
                .iter()
                .map(|r| format!("{} {}", r.name, r.kind.as_str()))
                .collect();
            let _ = writeln!(
                o,
                "  ddns: {} ({} source(s), quorum {})",
                recs.join(", "),
                d.sources.len(),
                d.quorum
            );
        }
        None => o.push_str("  ddns: no section (edge-ddns idles)\n"),
    }
}

/// The notification targets' names.
fn summary_notify(o: &mut String, c: &Config) {
    match c.notify.as_ref().filter(|n| !n.is_empty()) {
        Some(n) => {
            let _ = writeln!(
                o,
                "  notify: {} (try them: edgectl notify test)",
                n.target_names().join(", ")
            );
        }
        None => o.push_str("  notify: no targets (no notifications are sent)\n"),
    }
}
