//! I/O: the event loop — a sync at startup, on the cron schedule, on SIGHUP (reload), on
//! `edgectl ddns sync`, and (debounced) on address/link events of the WAN interface; plus
//! `edgectl ddns plan`/`status`. Also `edge-ddns --once`.

use std::process::ExitCode;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge_config::{Config, LoadOptions, LogFormat, Role};
use edge_ipc::ddns::{RecordStatus, Status, SyncReport};
use edge_ipc::proto::{ErrorCode, Request, Response};
use edge_ipc::shell::{CommonArgs, Event, Shell, idle};
use edge_metrics::ddns::Metrics;
use tokio::sync::mpsc;

use crate::detect::error_chain;
use crate::sync::{Syncer, family_status, render_report};

/// Why a sync was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Daemon start.
    Startup,
    /// The cron schedule.
    Schedule,
    /// A configuration reload (SIGHUP or `edgectl ddns reload`).
    Reload,
    /// `edgectl ddns sync`.
    Manual,
    /// An address or link event on the WAN interface.
    Netlink,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Schedule => "schedule",
            Trigger::Reload => "reload",
            Trigger::Manual => "manual",
            Trigger::Netlink => "netlink",
        }
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The next time the cron expression fires, as an Instant and a Unix time.
fn next_fire(schedule: &cron::Schedule) -> Option<(Instant, u64)> {
    let next = schedule.upcoming(chrono::Utc).next()?;
    let now = chrono::Utc::now();
    let wait = (next - now).to_std().unwrap_or(Duration::ZERO);
    Some((
        Instant::now() + wait,
        u64::try_from(next.timestamp()).unwrap_or(0),
    ))
}

struct Loop {
    syncer: Syncer,
    schedule: Option<cron::Schedule>,
    next: Option<(Instant, u64)>,
    watch: Option<mpsc::Receiver<()>>,
    debounce: Duration,
}

impl Loop {
    fn new(config: &Config, metrics: Metrics) -> anyhow::Result<Loop> {
        let syncer = Syncer::new(config, metrics)?;
        let mut l = Loop {
            syncer,
            schedule: None,
            next: None,
            watch: None,
            debounce: Duration::from_secs(2),
        };
        l.configure();
        Ok(l)
    }

    /// (Re)reads schedule, debounce and the WAN watch from the syncer's configuration.
    fn configure(&mut self) {
        let cfg = self.syncer.config();
        self.schedule = match cron::Schedule::from_str(&cfg.schedule) {
            Ok(s) => Some(s),
            Err(e) => {
                // The loader validated it; this cannot happen with a loaded configuration.
                tracing::error!(schedule = %cfg.schedule, "invalid schedule, only events will trigger syncs: {e}");
                None
            }
        };
        self.next = self.schedule.as_ref().and_then(next_fire);
        self.debounce = cfg.debounce;
        self.watch = cfg.wan_interface.as_ref().and_then(|i| {
            match crate::netlink::watch(i.as_str()) {
                Ok(rx) => {
                    tracing::info!(interface = %i, "watching address and link events");
                    Some(rx)
                }
                Err(e) => {
                    tracing::warn!(interface = %i, "cannot watch interface events, relying on the schedule: {}", error_chain(&e));
                    None
                }
            }
        });
    }

    async fn sync(&mut self, shell: &mut Shell, trigger: Trigger) -> SyncReport {
        let started = Instant::now();
        let report = self.syncer.run(now_unix(), false, false).await;
        let summary = format!(
            "{}: {} record(s), {} write(s), {} API request(s)",
            trigger.as_str(),
            report.records.len(),
            report.writes,
            report.api_requests
        );
        if report.ok {
            tracing::debug!(
                trigger = trigger.as_str(),
                writes = report.writes,
                api_requests = report.api_requests,
                "sync done"
            );
            shell.record_run(true, summary.clone(), started.elapsed());
            shell.mark_ready(&summary);
        } else {
            let failed: Vec<&str> = report
                .records
                .iter()
                .filter(|r| !matches!(r.outcome.as_str(), "unchanged" | "created" | "patched"))
                .map(|r| r.detail.as_str())
                .collect();
            shell.record_run(
                false,
                format!("{summary}; not converged: {}", failed.join("; ")),
                started.elapsed(),
            );
        }
        report
    }

    fn status(&self, shell: &Shell) -> Response {
        let mut st = shell.base_status();
        let state = self.syncer.state();
        let current: Vec<_> = self
            .syncer
            .last_verdicts()
            .iter()
            .map(|v| (v.family, v.address))
            .collect();
        let records = crate::model::Desired::from_config(self.syncer.config())
            .into_iter()
            .map(|d| {
                let key = d.key();
                let p = state.records.get(&key);
                let detected = current
                    .iter()
                    .find(|(f, _)| *f == d.kind.family())
                    .and_then(|(_, a)| *a);
                RecordStatus {
                    record: key.to_string(),
                    content: p.map(|p| p.content.clone()),
                    record_id: p.map(|p| p.record_id.clone()),
                    in_sync: match (p, detected) {
                        (Some(p), Some(a)) => p.content.parse().ok() == Some(a),
                        _ => false,
                    },
                    verified_at: p.map(|p| p.verified_at),
                    changed_at: p.and_then(|p| p.changed_at),
                }
            })
            .collect();
        let detail = Status {
            families: self
                .syncer
                .last_verdicts()
                .iter()
                .map(family_status)
                .collect(),
            records,
            next_run: self.next.map(|(_, t)| t),
            last_success: self.syncer.last_success(),
            wan_interface: self
                .syncer
                .config()
                .wan_interface
                .as_ref()
                .map(ToString::to_string),
        };
        st.detail = serde_json::to_value(detail).unwrap_or_default();
        Response::Status(Box::new(st))
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

async fn recv(rx: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

fn done(report: &SyncReport) -> Response {
    Response::Done {
        message: render_report(report),
        detail: serde_json::to_value(report).unwrap_or_default(),
    }
}

/// Runs the daemon until SIGTERM.
pub async fn run(mut shell: Shell) -> anyhow::Result<()> {
    if shell.config().ddns.is_none() {
        return idle(shell, "no [ddns] section in the configuration").await;
    }
    let metrics = Metrics::register(&mut shell.registry().write());
    let config: Arc<Config> = shell.config().clone();
    let mut l = Loop::new(&config, metrics)?;
    let mut debounce_at: Option<Instant> = None;
    l.sync(&mut shell, Trigger::Startup).await;
    loop {
        let cron_at = l.next.map(|(i, _)| i);
        tokio::select! {
            ev = shell.next() => match ev {
                Event::Shutdown => break,
                Event::Reloaded(cfg) => {
                    if cfg.ddns.is_none() {
                        tracing::warn!("the [ddns] section was removed; keeping the previous one until restart");
                        continue;
                    }
                    match l.syncer.reconfigure(&cfg) {
                        Ok(()) => {
                            l.configure();
                            l.sync(&mut shell, Trigger::Reload).await;
                        }
                        Err(e) => {
                            let msg = format!("reload not applied: {}", error_chain(&e));
                            tracing::error!("{msg}");
                            shell.push_error(msg);
                        }
                    }
                }
                Event::Request(Request::Status, r) => r.send(l.status(&shell)),
                Event::Request(Request::Plan, r) => {
                    let report = l.syncer.run(now_unix(), true, true).await;
                    r.send(done(&report));
                }
                Event::Request(Request::Apply { .. }, r) => {
                    let report = l.sync(&mut shell, Trigger::Manual).await;
                    if report.ok {
                        r.send(done(&report));
                    } else {
                        r.send(Response::Error { code: ErrorCode::Failed, message: render_report(&report) });
                    }
                }
                Event::Request(_, r) => r.unsupported(Role::Ddns),
            },
            _ = sleep_until(cron_at) => {
                l.next = l.schedule.as_ref().and_then(next_fire);
                l.sync(&mut shell, Trigger::Schedule).await;
            }
            Some(()) = recv(&mut l.watch) => {
                // Restart the quiet period on every event: a PPPoE reconnect sends a burst.
                debounce_at = Some(Instant::now() + l.debounce);
            }
            _ = sleep_until(debounce_at) => {
                debounce_at = None;
                tracing::info!("WAN interface changed; syncing");
                l.sync(&mut shell, Trigger::Netlink).await;
            }
        }
    }
    shell.stop();
    Ok(())
}

/// `edge-ddns --once [--dry-run]`: one sync, printed; exit 0 when every record converged,
/// 1 otherwise, 2 for an invalid configuration.
pub fn once(args: &CommonArgs, dry_run: bool) -> ExitCode {
    let path = edge_config::resolve_path(args.config.as_deref());
    let format = match args.log_format.as_deref() {
        Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        _ => LogFormat::Auto,
    };
    let loaded = match edge_config::load(
        &path,
        LoadOptions {
            role: Some(Role::Ddns),
        },
    ) {
        Ok(l) => l,
        Err(d) => {
            eprint!("{}", d.render());
            return ExitCode::from(2);
        }
    };
    let level = args
        .log_level
        .clone()
        .unwrap_or_else(|| loaded.config.global.log_level.clone());
    edge_metrics::logging::init(format, &level);
    for w in loaded.warnings.warnings() {
        tracing::warn!("{}", loaded.warnings.render_one(w).trim_end());
    }
    if loaded.config.ddns.is_none() {
        eprintln!("edge-ddns: {} has no [ddns] section", path.display());
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge-ddns: failed to start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let registry = edge_metrics::new_registry();
        let metrics = Metrics::register(&mut registry.write());
        let mut syncer = match Syncer::new(&loaded.config, metrics) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("edge-ddns: {}", error_chain(&e));
                return ExitCode::from(1);
            }
        };
        let report = syncer.run(now_unix(), dry_run, dry_run).await;
        println!("{}", render_report(&report));
        if report.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    })
}
