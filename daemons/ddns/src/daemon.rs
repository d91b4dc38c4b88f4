//! I/O: the event loop — a sync at startup, on the cron schedule, on SIGHUP (reload), on
//! `edgectl ddns sync`, and (debounced) on address/link events of the WAN interface; plus
//! `edgectl ddns plan`/`status`. Also `edge-ddns --once`.
//!
//! A sync or plan is a job that owns the [`Syncer`] and is polled beside [`Shell::next`]:
//! one job at a time; triggers during a job fold into one queued sync, plans wait, a reload
//! applies when the job finishes, `status` answers at once from what the last job left,
//! and SIGTERM drops the job.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_config::ddns::Ddns;
use edge_config::{Config, Role};
use edge_ipc::ddns::{InProgress, RecordStatus, Status, SyncReport};
use edge_ipc::follow::Follower;
use edge_ipc::ha::{Change, Standing};
use edge_ipc::proto::{ErrorCode, Request, Response};
use edge_ipc::shell::{CommonArgs, Event, Responder, Shell, idle};
use edge_metrics::ddns::Metrics;
use edge_notify::Notifier;
use tokio::sync::mpsc;

use crate::cloudflare::Client;
use crate::quorum::Verdict;
use crate::state::State;
use crate::sync::{Mode, Syncer, family_status, rate_limited_until, render_report};
use edge_ipc::shell::sleep_until;
use edge_util::error_chain;
use edge_util::unix_now;

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
    /// This host became the master (`[ha]`), after the hold-off.
    Master,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Schedule => "schedule",
            Trigger::Reload => "reload",
            Trigger::Manual => "manual",
            Trigger::Netlink => "netlink",
            Trigger::Master => "master",
        }
    }
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

/// A job on the syncer: the loop runs one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// A sync (writes).
    Sync(Trigger),
    /// A dry run for `edgectl ddns plan`.
    Plan,
}

/// A job's future owns the syncer and hands it back with the report.
type JobFuture = Pin<Box<dyn Future<Output = (Syncer, SyncReport)>>>;

/// The job in progress, polled by the loop beside [`Shell::next`].
struct Running {
    job: Job,
    started: Instant,
    started_at: u64,
    /// `sync`/`plan` requests answered when it finishes.
    waiters: Vec<Responder>,
    fut: JobFuture,
}

/// A sync requested while the syncer is busy: every trigger meanwhile folds into it.
#[derive(Debug)]
struct Queued {
    trigger: Trigger,
    waiters: Vec<Responder>,
}

/// What the last job (or reload) left, to answer `status` while the syncer is busy.
#[derive(Debug)]
struct Snapshot {
    cfg: Ddns,
    state: State,
    verdicts: Vec<Verdict>,
    last_success: Option<u64>,
    /// Shares the syncer's pace: the live rate-limit pause.
    client: Client,
}

impl Snapshot {
    fn of(s: &Syncer) -> Snapshot {
        Snapshot {
            cfg: s.config().clone(),
            state: s.state().clone(),
            verdicts: s.last_verdicts().to_vec(),
            last_success: s.last_success(),
            client: s.client().clone(),
        }
    }
}

struct Loop {
    /// `None` while a job runs (the job owns it).
    syncer: Option<Syncer>,
    snap: Snapshot,
    running: Option<Running>,
    queued_sync: Option<Queued>,
    queued_plans: Vec<Responder>,
    /// A reload that arrived during a job, applied when it finishes.
    pending_reload: Option<Arc<Config>>,
    /// The last job was a sync: a waiting plan goes next (neither kind starves the other).
    last_was_sync: bool,
    schedule: Option<cron::Schedule>,
    next: Option<(Instant, u64)>,
    watch: Option<mpsc::Receiver<()>>,
    debounce: Duration,
    /// Record changes, failing/recovered syncs and heartbeats go out through it.
    notifier: Notifier,
    /// This host's role under keepalived (a single host without `[ha]`).
    ha: Follower,
    /// Writes wait until then after becoming master (`ha.ddns_hold_off`).
    hold_until: Option<Instant>,
    /// The next sync that may write lists every record first (the cache of a host that
    /// was not the master is not trusted).
    force_read: bool,
    /// `[ha] ddns_hold_off`.
    hold_off: Duration,
    /// A sync is due when the hold-off ends.
    master_sync_due: bool,
}

impl Loop {
    fn new(
        config: &Config,
        metrics: Metrics,
        notify_metrics: edge_metrics::notify::Metrics,
    ) -> anyhow::Result<Loop> {
        let mut syncer = Syncer::new(config, metrics)?;
        let notifier = Notifier::start(config, Role::Ddns.binary(), notify_metrics);
        syncer.set_notifier(notifier.clone());
        let mut l = Loop {
            snap: Snapshot::of(&syncer),
            syncer: Some(syncer),
            running: None,
            queued_sync: None,
            queued_plans: Vec::new(),
            pending_reload: None,
            last_was_sync: false,
            schedule: None,
            next: None,
            watch: None,
            debounce: Duration::from_secs(2),
            notifier,
            ha: Follower::start(config),
            hold_until: None,
            force_read: false,
            hold_off: config
                .ha
                .as_ref()
                .map_or(Duration::ZERO, |h| h.ddns_hold_off),
            master_sync_due: false,
        };
        // keepalived may have made this host the master before edge-ddns started: the same
        // hold-off and fresh read as when told.
        if l.ha.standing() == Standing::Master {
            l.became_master();
        }
        l.configure();
        Ok(l)
    }

    /// (Re)reads schedule, debounce and the WAN watch from the configuration in force.
    fn configure(&mut self) {
        let cfg = &self.snap.cfg;
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

    /// Asks for a sync; during a job it is queued, and every further request folds into
    /// that one queued sync (run once, right after). `waiter` is answered when it finishes.
    fn request_sync(&mut self, trigger: Trigger, waiter: Option<Responder>) {
        match &mut self.queued_sync {
            Some(q) => {
                tracing::debug!(
                    trigger = trigger.as_str(),
                    queued = q.trigger.as_str(),
                    "sync already queued; coalesced"
                );
                q.waiters.extend(waiter);
            }
            None => {
                if let Some(r) = &self.running {
                    tracing::debug!(
                        trigger = trigger.as_str(),
                        running = job_name(r.job),
                        "a job is in progress; the sync runs after it"
                    );
                }
                self.queued_sync = Some(Queued {
                    trigger,
                    waiters: waiter.into_iter().collect(),
                });
            }
        }
        self.start_next();
    }

    /// Asks for a plan; during a job it waits (a plan shares the syncer's state and pace).
    fn request_plan(&mut self, waiter: Responder) {
        self.queued_plans.push(waiter);
        self.start_next();
    }

    /// Starts the next queued job unless one runs.
    fn start_next(&mut self) {
        if self.running.is_some() {
            return;
        }
        let Some(mut syncer) = self.syncer.take() else {
            return;
        };
        let plan_next =
            !self.queued_plans.is_empty() && (self.last_was_sync || self.queued_sync.is_none());
        let (job, waiters) = if plan_next {
            (Job::Plan, std::mem::take(&mut self.queued_plans))
        } else if let Some(q) = self.queued_sync.take() {
            (Job::Sync(q.trigger), q.waiters)
        } else {
            self.syncer = Some(syncer);
            return;
        };
        let now = unix_now();
        let dry = job == Job::Plan;
        let mut force = dry;
        if !dry {
            // Level-triggered: the file says the role even when a SetRole was lost.
            let change = self.ha.refresh();
            self.role_changed(&change);
            let hold = self.write_hold();
            if hold.is_none() && self.force_read {
                force = true;
                self.force_read = false;
            }
            syncer.set_hold(hold);
        }
        let fut: JobFuture = Box::pin(async move {
            let mode = match (dry, force) {
                (true, _) => Mode::Plan,
                (false, true) => Mode::SyncReadingAll,
                (false, false) => Mode::Sync,
            };
            let report = syncer.run(now, mode).await;
            (syncer, report)
        });
        self.running = Some(Running {
            job,
            started: Instant::now(),
            started_at: now,
            waiters,
            fut,
        });
    }

    /// Takes the syncer back from a finished job, answers its waiters, applies a reload
    /// that waited for it and starts what is queued.
    fn finish(&mut self, shell: &mut Shell, syncer: Syncer, report: SyncReport) {
        let Some(r) = self.running.take() else {
            self.syncer = Some(syncer);
            return;
        };
        self.snap = Snapshot::of(&syncer);
        self.syncer = Some(syncer);
        match r.job {
            Job::Sync(trigger) => {
                self.last_was_sync = true;
                record(shell, trigger, &report, r.started.elapsed());
                for w in r.waiters {
                    if report.ok {
                        w.send(done(&report));
                    } else {
                        w.send(Response::Error {
                            code: ErrorCode::Failed,
                            message: render_report(&report),
                        });
                    }
                }
            }
            Job::Plan => {
                self.last_was_sync = false;
                for w in r.waiters {
                    w.send(done(&report));
                }
            }
        }
        if let Some(cfg) = self.pending_reload.take() {
            self.apply_reload(shell, &cfg);
        }
        self.start_next();
    }

    /// Why writes are held now, if they are: not the master, or the hold-off after
    /// becoming it.
    fn write_hold(&self) -> Option<String> {
        match self.ha.standing() {
            Standing::Single => None,
            Standing::Backup => Some("this host is BACKUP".to_owned()),
            Standing::Fault => Some("this host is in FAULT".to_owned()),
            Standing::Master => match self.hold_until {
                Some(t) if Instant::now() < t => Some(format!(
                    "this host became MASTER less than {:?} ago",
                    self.hold_off
                )),
                _ => None,
            },
        }
    }

    /// Becoming the master: no write before the hold-off ends, and then only after a fresh
    /// read of every record.
    fn became_master(&mut self) {
        self.hold_until = Some(Instant::now() + self.hold_off);
        self.force_read = true;
        self.master_sync_due = true;
        tracing::info!(
            hold_off = ?self.hold_off,
            "MASTER: writes wait for the hold-off, then a fresh read of every record"
        );
    }

    /// Acts on a change of role.
    fn role_changed(&mut self, change: &Change) {
        let Change::Changed { to, .. } = change else {
            return;
        };
        match to {
            Standing::Master => self.became_master(),
            Standing::Single => {
                self.hold_until = None;
                self.force_read = true;
            }
            Standing::Backup | Standing::Fault => {
                self.hold_until = None;
                self.master_sync_due = false;
                tracing::info!(role = %to, "writes held: another host is (or may be) the master");
            }
        }
    }

    /// A `SetRole` request.
    fn set_role(&mut self, state: edge_ipc::ha::RoleState, r: Responder) {
        let change = self.ha.set_role(state);
        r.send(self.ha.answer(&change));
        self.role_changed(&change);
    }

    /// A new configuration: applied now, or after the job in progress (see docs/ddns.md:
    /// a job is never cancelled — it may be between a write and saving the state, and it
    /// holds the rate-limit pace that the next one must honour).
    fn reload(&mut self, shell: &mut Shell, cfg: Arc<Config>) {
        if cfg.ddns.is_none() {
            tracing::warn!(
                "the [ddns] section was removed; keeping the previous one until restart"
            );
            return;
        }
        if let Some(r) = &self.running {
            tracing::info!(
                running = job_name(r.job),
                "the new configuration applies when the job in progress finishes"
            );
            self.pending_reload = Some(cfg);
            return;
        }
        self.apply_reload(shell, &cfg);
        self.start_next();
    }

    fn apply_reload(&mut self, shell: &mut Shell, cfg: &Config) {
        let change = self.ha.reload(cfg);
        self.hold_off = cfg.ha.as_ref().map_or(Duration::ZERO, |h| h.ddns_hold_off);
        self.role_changed(&change);
        let Some(syncer) = self.syncer.as_mut() else {
            return;
        };
        match syncer.reconfigure(cfg) {
            Ok(()) => {
                self.notifier.reload(cfg);
                syncer.set_notifier(self.notifier.clone());
                self.snap = Snapshot::of(syncer);
                self.configure();
                self.request_sync(Trigger::Reload, None);
            }
            Err(e) => {
                let msg = format!("reload not applied: {}", error_chain(&e));
                tracing::error!("{msg}");
                shell.push_error(msg);
            }
        }
    }

    /// Answers every waiting request on shutdown (the job in progress is dropped); returns
    /// how many were answered.
    fn abandon(&mut self) -> usize {
        let waiters = self
            .running
            .take()
            .map(|r| r.waiters)
            .unwrap_or_default()
            .into_iter()
            .chain(
                self.queued_sync
                    .take()
                    .map(|q| q.waiters)
                    .unwrap_or_default(),
            )
            .chain(std::mem::take(&mut self.queued_plans));
        let mut n = 0;
        for w in waiters {
            w.send(Response::Error {
                code: ErrorCode::Failed,
                message: "edge-ddns is stopping; the sync did not finish".to_owned(),
            });
            n += 1;
        }
        n
    }

    /// Answers at once, from what the last job left, while another may run.
    fn status(&self, shell: &Shell) -> Response {
        let mut st = shell.base_status();
        let snap = &self.snap;
        let current: Vec<_> = snap
            .verdicts
            .iter()
            .map(|v| (v.family, v.address))
            .collect();
        let records = crate::model::Desired::from_config(&snap.cfg)
            .into_iter()
            .map(|d| {
                let key = d.key();
                let p = snap.state.records.get(&key);
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
            families: snap.verdicts.iter().map(family_status).collect(),
            records,
            next_run: self.next.map(|(_, t)| t),
            last_success: snap.last_success,
            wan_interface: snap.cfg.wan_interface.as_ref().map(ToString::to_string),
            in_progress: self.running.as_ref().map(|r| InProgress {
                trigger: job_name(r.job).to_owned(),
                started_at: r.started_at,
                sync_queued: self.queued_sync.is_some(),
                plans_queued: u32::try_from(self.queued_plans.len()).unwrap_or(u32::MAX),
                reload_pending: self.pending_reload.is_some(),
            }),
            rate_limited_until: rate_limited_until(&snap.client),
            writes_held: self.write_hold(),
        };
        st.detail = edge_ipc::Detail::Ddns(Box::new(detail));
        st.ha = Some(self.ha.status());
        Response::Status(Box::new(st))
    }
}

fn job_name(job: Job) -> &'static str {
    match job {
        Job::Sync(t) => t.as_str(),
        Job::Plan => "plan",
    }
}

/// Records a finished sync in the shell (`status`, READY=1 after the first success).
fn record(shell: &mut Shell, trigger: Trigger, report: &SyncReport, took: Duration) {
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
        shell.record_run(true, summary.clone(), took);
        shell.mark_ready(&summary);
    } else {
        let failed: Vec<&str> = report
            .records
            .iter()
            .filter(|r| !r.outcome.is_in_sync())
            .map(|r| r.detail.as_str())
            .collect();
        shell.record_run(
            false,
            format!("{summary}; not converged: {}", failed.join("; ")),
            took,
        );
    }
}

async fn recv(rx: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// The job in progress (never completes while there is none).
async fn job_done(r: &mut Option<Running>) -> (Syncer, SyncReport) {
    match r {
        Some(r) => r.fut.as_mut().await,
        None => std::future::pending().await,
    }
}

fn done(report: &SyncReport) -> Response {
    Response::Done {
        message: render_report(report),
        detail: serde_json::to_value(report).unwrap_or_default(),
    }
}

/// Runs the daemon until SIGTERM. Syncs run as a job polled beside [`Shell::next`], so the
/// watchdog is fed, `status` answers and SIGTERM stops at once even while a sync waits
/// (a rate-limit pause, retries).
pub async fn run(mut shell: Shell) -> anyhow::Result<()> {
    if shell.config().ddns.is_none() {
        return idle(shell, "no [ddns] section in the configuration").await;
    }
    let metrics = Metrics::register(&mut shell.registry().write());
    let notify_metrics = edge_metrics::notify::Metrics::register(&mut shell.registry().write());
    let config: Arc<Config> = shell.config().clone();
    let mut l = Loop::new(&config, metrics, notify_metrics)?;
    let mut debounce_at: Option<Instant> = None;
    l.request_sync(Trigger::Startup, None);
    loop {
        let cron_at = l.next.map(|(i, _)| i);
        // The end of the hold-off after becoming master: a sync that may write.
        let hold_at = l.hold_until.filter(|_| l.master_sync_due);
        tokio::select! {
            (syncer, report) = job_done(&mut l.running) => l.finish(&mut shell, syncer, report),
            ev = shell.next() => match ev {
                Event::Shutdown => break,
                Event::Reloaded(cfg) => l.reload(&mut shell, cfg),
                Event::Request(Request::Status, r) => r.send(l.status(&shell)),
                Event::Request(Request::Plan, r) => l.request_plan(r),
                Event::Request(Request::Apply { .. }, r) => l.request_sync(Trigger::Manual, Some(r)),
                Event::Request(Request::SetRole(state), r) => l.set_role(*state, r),
                Event::Request(_, r) => r.unsupported(Role::Ddns),
            },
            _ = sleep_until(cron_at) => {
                l.next = l.schedule.as_ref().and_then(next_fire);
                l.request_sync(Trigger::Schedule, None);
            }
            Some(()) = recv(&mut l.watch) => {
                // Restart the quiet period on every event: a PPPoE reconnect sends a burst.
                debounce_at = Some(Instant::now() + l.debounce);
            }
            _ = sleep_until(debounce_at) => {
                debounce_at = None;
                tracing::info!("WAN interface changed; syncing");
                l.request_sync(Trigger::Netlink, None);
            }
            _ = sleep_until(hold_at) => {
                l.master_sync_due = false;
                if l.ha.standing() == Standing::Master {
                    tracing::info!("hold-off over: reading every record before any write");
                    l.request_sync(Trigger::Master, None);
                }
            }
        }
    }
    if let Some(r) = &l.running {
        tracing::info!(
            running = job_name(r.job),
            "stopping during a job; it is dropped (the state file holds every finished write and any rate-limit pause)"
        );
    }
    if l.abandon() > 0 {
        // Let the control connections write those answers before the runtime goes.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A last event (a record changed just before the stop) gets a moment to go out; a
    // receiver that hangs does not hold the stop up for longer.
    if !l.notifier.flush(SHUTDOWN_FLUSH).await {
        tracing::warn!("stopping with notifications still queued (a target is slow or down)");
    }
    shell.stop();
    Ok(())
}

/// How long a stopping daemon waits for queued notifications.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// `edge-ddns --once [--dry-run]`: one sync, printed; exit 0 when every record converged,
/// 1 otherwise, 2 for an invalid configuration.
pub fn once(args: &CommonArgs, dry_run: bool) -> ExitCode {
    edge_ipc::shell::once_with(Role::Ddns, args, |config| async move {
        let registry = edge_metrics::new_registry();
        let metrics = Metrics::register(&mut registry.write());
        let mut syncer = match Syncer::new(&config, metrics) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("edge-ddns: {}", error_chain(&e));
                return ExitCode::from(1);
            }
        };
        let notifier = if dry_run {
            Notifier::disabled()
        } else {
            let m = edge_metrics::notify::Metrics::register(&mut registry.write());
            Notifier::start(&config, Role::Ddns.binary(), m)
        };
        syncer.set_notifier(notifier.clone());
        let mode = if dry_run { Mode::Plan } else { Mode::Sync };
        let report = syncer.run(unix_now(), mode).await;
        println!("{}", render_report(&report));
        // One attempt's timeout and a little more: a cron run must end.
        let wait = config
            .notify
            .as_ref()
            .map_or(Duration::ZERO, |n| n.timeout + Duration::from_secs(5));
        if !notifier.flush(wait).await {
            eprintln!(
                "edge-ddns: notifications not delivered within {} s (a target is slow or down)",
                wait.as_secs()
            );
        }
        if report.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    })
}
