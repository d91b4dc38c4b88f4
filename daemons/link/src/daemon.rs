//! I/O: the event loop. Netlink multicast events (links, addresses, routes) start a quiet
//! period (`debounce`); when it ends, one full re-dump, a plan and an apply repair whatever
//! drifted. The kernel drops some routes without an event (`sim.rs`), so no event is trusted
//! for its content: every run re-reads everything. A periodic run (`reconcile_interval`)
//! is the safety net behind the events; a failed apply backs off exponentially (each try
//! rolls itself back) instead of flapping the network on every event. Every observation also
//! feeds the [`NicWatch`], whose `link.*` events go out through the notifier.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_ipc::link::{LinkState, PlanReport, Status};
use edge_ipc::proto::{ErrorCode, Request, Response};
use edge_ipc::shell::{Event, Responder, Shell, idle};
use edge_metrics::link::{BridgeLabels, KindLabels, LinkLabels, Metrics, ResultLabels};
use edge_notify::{Event as Notification, Notifier};
use futures::StreamExt;
use rtnetlink::MulticastGroup;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::apply::{Applier, ApplyError, ApplyReport};
use crate::model::{Caps, Desired, Observed};
use crate::netlink::{Netlink, NetlinkError};
use crate::observe::{ObserveError, observe};
use crate::plan::{Note, Plan, Severity, Waiting, plan};
use crate::watch::NicWatch;
use edge_ipc::shell::sleep_until;
use edge_util::error_chain;

/// The multicast groups whose events trigger a reconcile.
pub const GROUPS: [MulticastGroup; 5] = [
    MulticastGroup::Link,
    MulticastGroup::Ipv4Ifaddr,
    MulticastGroup::Ipv6Ifaddr,
    MulticastGroup::Ipv4Route,
    MulticastGroup::Ipv6Route,
];

/// Under a continuous event storm, a reconcile still runs this many debounce periods after
/// the first event.
const MAX_DEBOUNCE_PERIODS: u32 = 5;

/// First wait after a failed apply; doubled per failure up to `reconcile_interval`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// A failed one-shot convergence.
#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink connection")]
    Connect(#[source] NetlinkError),
    /// The kernel's state could not be read.
    #[error("cannot read the kernel's network state")]
    Observe(#[source] ObserveError),
    /// The apply failed (and was rolled back).
    #[error("cannot apply the plan")]
    Apply(#[source] Box<ApplyError>),
}

/// What one reconcile run did.
#[derive(Debug)]
pub enum RunOutcome {
    /// Nothing to do.
    Converged,
    /// Changes applied.
    Repaired(ApplyReport),
    /// Changes are due but the last apply failed recently; retried at the given time.
    Deferred(Instant),
    /// The apply failed and was rolled back.
    Failed(ApplyError),
    /// The state could not be read.
    Error(ObserveError),
}

impl RunOutcome {
    /// The `result` label of `edge_link_reconcile_runs_total`.
    pub fn label(&self) -> &'static str {
        match self {
            RunOutcome::Converged => "converged",
            RunOutcome::Repaired(_) => "repaired",
            RunOutcome::Deferred(_) => "deferred",
            RunOutcome::Failed(_) => "failed",
            RunOutcome::Error(_) => "error",
        }
    }
}

/// Dump, plan and apply, with the bookkeeping the daemon and the metrics need.
#[derive(Debug)]
pub struct Reconciler {
    desired: Desired,
    nl: Netlink,
    applier: Applier,
    caps: Caps,
    converged_once: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    max_backoff: Duration,
    metrics: Option<Metrics>,
    last_observed: Option<Observed>,
    last_plan: Option<Plan>,
    notes_seen: BTreeSet<Note>,
    waiting_seen: BTreeSet<Waiting>,
    runs: u64,
    last_duration: Duration,
    last_repair: Option<Duration>,
    watch: NicWatch,
    notifier: Notifier,
}

impl Reconciler {
    /// A reconciler for `desired`, connected in the calling thread's network namespace.
    pub fn new(desired: Desired, metrics: Option<Metrics>) -> Result<Reconciler, NetlinkError> {
        let nl = Netlink::connect()?;
        Ok(Reconciler {
            desired,
            applier: Applier::new(nl.clone()),
            nl,
            caps: Caps::default(),
            converged_once: false,
            retry_at: None,
            backoff: FIRST_BACKOFF,
            max_backoff: Duration::from_secs(60),
            metrics,
            last_observed: None,
            last_plan: None,
            notes_seen: BTreeSet::new(),
            waiting_seen: BTreeSet::new(),
            runs: 0,
            last_duration: Duration::ZERO,
            last_repair: None,
            watch: NicWatch::new(Duration::from_secs(10)),
            notifier: Notifier::disabled(),
        })
    }

    /// Sends the `link.*` events through `n`, a NIC being reported after `grace`
    /// (`notify.link_down_after`).
    pub fn set_notifier(&mut self, n: Notifier, grace: Duration) {
        self.notifier = n;
        self.watch.set_grace(grace);
    }

    /// When a down or missing NIC is due to be reported, if one is waiting for that.
    pub fn watch_deadline(&self) -> Option<Instant> {
        self.watch.deadline()
    }

    /// Reports the NICs whose grace ended by `now` (no new observation needed).
    pub fn watch_tick(&mut self, now: Instant) {
        let events = self.watch.tick(now);
        self.notify(events);
    }

    fn notify(&self, events: Vec<Notification>) {
        for e in events {
            match e.severity() {
                edge_notify::Severity::Info => tracing::info!(kind = e.kind(), "{}", e.summary()),
                _ => tracing::warn!(kind = e.kind(), "{}", e.summary()),
            }
            self.notifier.send(e);
        }
    }

    /// Replaces the desired state (after a configuration reload); a pending backoff ends.
    pub fn set_desired(&mut self, desired: Desired) {
        self.desired = desired;
        self.retry_at = None;
        self.backoff = FIRST_BACKOFF;
    }

    /// Caps the backoff after failed applies.
    pub fn set_max_backoff(&mut self, max: Duration) {
        self.max_backoff = max.max(FIRST_BACKOFF);
    }

    /// Requests sent to the kernel so far.
    pub fn writes(&self) -> u64 {
        self.nl.writes()
    }

    /// Reads the state and plans, without changing anything.
    pub async fn plan(&self) -> Result<(Observed, Plan), ObserveError> {
        let observed = observe(&self.nl, &self.desired.sysctl_keys(), self.caps).await?;
        let p = plan(&self.desired, &observed);
        Ok((observed, p))
    }

    /// One run: dump, plan, and apply unless backing off (`force` ignores the backoff).
    /// `first_event` is when the first event of this drift arrived, for the repair latency.
    pub async fn run(&mut self, first_event: Option<Instant>, force: bool) -> RunOutcome {
        let start = Instant::now();
        self.runs += 1;
        let outcome = match self.plan().await {
            Err(e) => RunOutcome::Error(e),
            Ok((observed, p)) => {
                self.observe_notes(&p);
                let events = self.watch.observe(Instant::now(), &self.desired, &observed);
                self.notify(events);
                let outcome = if p.ops.is_empty() {
                    RunOutcome::Converged
                } else if let Some(at) = self.retry_at.filter(|at| !force && Instant::now() < *at) {
                    RunOutcome::Deferred(at)
                } else {
                    tracing::debug!(ops = p.ops.len(), "plan:\n{p}");
                    match self.applier.apply(&p.ops, &self.desired, &observed).await {
                        Ok(report) => RunOutcome::Repaired(report),
                        Err(e) => RunOutcome::Failed(e),
                    }
                };
                self.record_state(&observed);
                self.last_observed = Some(observed);
                self.last_plan = Some(p);
                outcome
            }
        };
        self.last_duration = start.elapsed();
        self.after_run(&outcome, first_event);
        outcome
    }

    fn after_run(&mut self, outcome: &RunOutcome, first_event: Option<Instant>) {
        match outcome {
            RunOutcome::Converged => {
                self.converged_once = true;
                self.retry_at = None;
                self.backoff = FIRST_BACKOFF;
            }
            RunOutcome::Repaired(report) => {
                self.caps = report.caps;
                self.retry_at = None;
                self.backoff = FIRST_BACKOFF;
                let latency = first_event.map(|t| t.elapsed());
                if self.converged_once {
                    self.last_repair = latency;
                }
                if let Some(m) = &self.metrics
                    && self.converged_once
                {
                    for op in &report.changed {
                        m.drift_repairs
                            .get_or_create(&KindLabels {
                                kind: op.kind().to_owned(),
                            })
                            .inc();
                    }
                    if let Some(l) = latency {
                        m.repair_latency.observe(l.as_secs_f64());
                    }
                }
                tracing::info!(
                    changed = report.changed.len(),
                    writes = report.writes,
                    latency_ms = latency.map(|l| l.as_secs_f64() * 1e3),
                    "{}",
                    if self.converged_once {
                        "drift repaired"
                    } else {
                        "converged"
                    }
                );
            }
            RunOutcome::Deferred(at) => {
                tracing::debug!(
                    retry_in_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64,
                    "changes due; backing off after a failed apply"
                );
            }
            RunOutcome::Failed(e) => {
                self.retry_at = Some(Instant::now() + self.backoff);
                tracing::error!(
                    retry_in_s = self.backoff.as_secs(),
                    "cannot converge: {}",
                    error_chain(e)
                );
                self.backoff = (self.backoff * 2).min(self.max_backoff);
            }
            RunOutcome::Error(e) => {
                tracing::error!("cannot read the network state: {}", error_chain(e));
            }
        }
        if let Some(m) = &self.metrics {
            m.reconcile_runs
                .get_or_create(&ResultLabels {
                    result: outcome.label().to_owned(),
                })
                .inc();
            m.last_reconcile_duration
                .set(self.last_duration.as_secs_f64());
            let w = self.nl.writes();
            m.netlink_writes
                .inc_by(w.saturating_sub(m.netlink_writes.get()));
        }
    }

    /// Logs new waiting items and notes (once each) and counts new foreign observations.
    fn observe_notes(&mut self, p: &Plan) {
        let waiting: BTreeSet<Waiting> = p.waiting.iter().cloned().collect();
        for w in waiting.difference(&self.waiting_seen) {
            tracing::info!(interface = w.interface(), "waiting: {w}");
        }
        for w in self.waiting_seen.difference(&waiting) {
            tracing::info!(interface = w.interface(), "present now: {w}");
        }
        self.waiting_seen = waiting;
        let notes: BTreeSet<Note> = p.notes.iter().cloned().collect();
        for n in notes.difference(&self.notes_seen) {
            match n.severity() {
                Severity::Error => tracing::error!(kind = n.kind(), "{n}"),
                Severity::Warn => tracing::warn!(kind = n.kind(), "{n}"),
                Severity::Info => tracing::info!(kind = n.kind(), "{n}"),
            }
            if n.is_foreign()
                && let Some(m) = &self.metrics
            {
                m.foreign_changes
                    .get_or_create(&KindLabels {
                        kind: n.kind().to_owned(),
                    })
                    .inc();
            }
        }
        self.notes_seen = notes;
        if let Some(m) = &self.metrics {
            m.waiting_interfaces.set(p.waiting.len() as i64);
            m.plan_errors.set(
                p.notes
                    .iter()
                    .filter(|n| n.severity() == Severity::Error)
                    .count() as i64,
            );
        }
    }

    fn record_state(&self, o: &Observed) {
        let Some(m) = &self.metrics else {
            return;
        };
        for name in self.desired.managed_interfaces() {
            let labels = LinkLabels {
                link: name.to_owned(),
            };
            let l = o.links.get(name);
            m.link_present
                .get_or_create(&labels)
                .set(i64::from(l.is_some()));
            m.link_admin_up
                .get_or_create(&labels)
                .set(i64::from(l.is_some_and(|l| l.up)));
            m.link_oper_up
                .get_or_create(&labels)
                .set(i64::from(l.is_some_and(|l| l.lower_up)));
        }
        for b in &self.desired.bridges {
            let ports = o
                .links
                .values()
                .filter(|l| l.controller.as_deref() == Some(b.name.as_str()))
                .count();
            m.bridge_ports
                .get_or_create(&BridgeLabels {
                    bridge: b.name.clone(),
                })
                .set(ports as i64);
        }
    }

    /// The role-specific status.
    pub fn status(&self) -> Status {
        let mut links = Vec::new();
        for b in &self.desired.bridges {
            let mut names = vec![(b.name.as_str(), "bridge")];
            names.extend(b.ports.iter().map(|p| (p.name.as_str(), "port")));
            for (name, role) in names {
                let l = self.last_observed.as_ref().and_then(|o| o.links.get(name));
                let ports = match (role, &self.last_observed) {
                    ("bridge", Some(o)) => o
                        .links
                        .values()
                        .filter(|p| p.controller.as_deref() == Some(name))
                        .map(|p| p.name.clone())
                        .collect(),
                    _ => Vec::new(),
                };
                links.push(LinkState {
                    name: name.to_owned(),
                    role: role.to_owned(),
                    present: l.is_some(),
                    admin_up: l.is_some_and(|l| l.up),
                    oper_up: l.is_some_and(|l| l.lower_up),
                    mtu: l.map_or(0, |l| l.mtu),
                    controller: l.and_then(|l| l.controller.clone()),
                    ports,
                });
            }
        }
        let (pending, waiting, notes) = match &self.last_plan {
            Some(p) => report_parts(p),
            None => Default::default(),
        };
        Status {
            converged: self.last_plan.as_ref().is_some_and(Plan::is_converged),
            pending,
            waiting,
            notes,
            links,
            reconciles: self.runs,
            writes: self.nl.writes(),
            last_reconcile_ms: self.last_duration.as_secs_f64() * 1e3,
            last_repair_ms: self.last_repair.map(|d| d.as_secs_f64() * 1e3),
            retry_in_secs: self
                .retry_at
                .map(|t| t.saturating_duration_since(Instant::now()).as_secs()),
            virtual_addresses: self
                .desired
                .virtual_addresses
                .iter()
                .map(|(dev, net)| edge_ipc::link::VirtualAddress {
                    address: net.to_string(),
                    interface: dev.clone(),
                    present: self.last_observed.as_ref().is_some_and(|o| {
                        o.addresses
                            .iter()
                            .any(|a| &a.dev == dev && a.net.addr() == net.addr())
                    }),
                })
                .collect(),
        }
    }
}

fn report_parts(p: &Plan) -> (Vec<String>, Vec<String>, Vec<String>) {
    (
        p.ops.iter().map(ToString::to_string).collect(),
        p.waiting.iter().map(ToString::to_string).collect(),
        p.notes
            .iter()
            .map(|n| format!("{}: {n}", n.severity()))
            .collect(),
    )
}

/// A plan as the control protocol carries it.
pub fn plan_report(p: &Plan, writes: u64) -> PlanReport {
    let (ops, waiting, notes) = report_parts(p);
    PlanReport {
        ops,
        waiting,
        notes,
        writes,
    }
}

/// Observes, plans and applies once in the calling thread's namespace (`edge-link --once`,
/// tests and the benchmark).
pub async fn converge_once(desired: &Desired) -> Result<(Plan, ApplyReport), ConvergeError> {
    let nl = Netlink::connect().map_err(ConvergeError::Connect)?;
    let observed = observe(&nl, &desired.sysctl_keys(), Caps::default())
        .await
        .map_err(ConvergeError::Observe)?;
    let p = plan(desired, &observed);
    let mut applier = Applier::new(nl);
    let report = applier
        .apply(&p.ops, desired, &observed)
        .await
        .map_err(|e| ConvergeError::Apply(Box::new(e)))?;
    Ok((p, report))
}

/// Observes and plans once in the calling thread's namespace (`edgectl link plan`).
pub async fn plan_once(desired: &Desired) -> Result<Plan, ConvergeError> {
    let nl = Netlink::connect().map_err(ConvergeError::Connect)?;
    let observed = observe(&nl, &desired.sysctl_keys(), Caps::default())
        .await
        .map_err(ConvergeError::Observe)?;
    Ok(plan(desired, &observed))
}

fn event_kind(msg: &NetlinkMessage<RouteNetlinkMessage>) -> &'static str {
    match &msg.payload {
        NetlinkPayload::InnerMessage(m) => match m {
            RouteNetlinkMessage::NewLink(_) => "new_link",
            // A port leaving its bridge arrives as RTM_DELLINK of the bridge family while
            // the device still exists: not a deletion.
            RouteNetlinkMessage::DelLink(l)
                if l.header.interface_family == AddressFamily::Bridge =>
            {
                "port_left_bridge"
            }
            RouteNetlinkMessage::DelLink(_) => "del_link",
            RouteNetlinkMessage::NewAddress(_) => "new_address",
            RouteNetlinkMessage::DelAddress(_) => "del_address",
            RouteNetlinkMessage::NewRoute(_) => "new_route",
            RouteNetlinkMessage::DelRoute(_) => "del_route",
            _ => "other",
        },
        NetlinkPayload::Overrun(_) => "overrun",
        _ => "other",
    }
}

fn done(message: String, report: PlanReport) -> Response {
    Response::Done {
        message,
        detail: serde_json::to_value(report).unwrap_or_default(),
    }
}

/// Runs the daemon until SIGTERM. Nothing is torn down on exit: the network stays as it is
/// (a restart therefore causes no link flap).
pub async fn run(shell: Shell) -> anyhow::Result<()> {
    let Some(cfg) = shell.config().link.clone() else {
        return idle(shell, "no [link] section in the configuration").await;
    };
    let (conn, _handle, mut events) = rtnetlink::new_multicast_connection(&GROUPS)
        .context("failed to subscribe to netlink link, address and route events")?;
    let events_task = tokio::spawn(conn);
    let mut daemon = Daemon::start(shell, &cfg)?;
    let result = daemon.serve(&mut events).await;
    events_task.abort();
    daemon.stop().await;
    result
}

/// How long a NIC may be down before `link.down` goes out.
fn link_down_grace(c: &edge_config::Config) -> Duration {
    c.notify
        .as_ref()
        .map_or(Duration::from_secs(10), |n| n.link_down_after)
}

/// The periodic reconcile's timer; a late tick is delayed, not made up for.
fn periodic_timer(interval: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at((Instant::now() + interval).into(), interval);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// The running daemon: what its event handlers share.
struct Daemon {
    shell: Shell,
    r: Reconciler,
    notifier: Notifier,
    ha: edge_ipc::follow::Follower,
    metrics: Metrics,
    debounce: Duration,
    interval: Duration,
    periodic: tokio::time::Interval,
    /// When the next reconcile runs.
    due: Option<Instant>,
    /// The first netlink event since the last reconcile.
    first_event: Option<Instant>,
}

impl Daemon {
    /// Registers the metrics, starts the notifier and the role follower, and opens the
    /// reconciler's netlink connection; the first reconcile is due at once.
    fn start(shell: Shell, cfg: &edge_config::link::Link) -> anyhow::Result<Daemon> {
        let metrics = Metrics::register(&mut shell.registry().write());
        let notify_metrics = edge_metrics::notify::Metrics::register(&mut shell.registry().write());
        let notifier = Notifier::start(shell.config(), "edge-link", notify_metrics);
        let mut r = Reconciler::new(
            Desired::from_full(cfg, shell.config().ha.as_ref()),
            Some(metrics.clone()),
        )
        .context("failed to open a netlink connection")?;
        r.set_max_backoff(cfg.reconcile_interval);
        r.set_notifier(notifier.clone(), link_down_grace(shell.config()));
        let ha = edge_ipc::follow::Follower::start(shell.config());
        Ok(Daemon {
            r,
            notifier,
            ha,
            metrics,
            debounce: cfg.debounce,
            interval: cfg.reconcile_interval,
            periodic: periodic_timer(cfg.reconcile_interval),
            due: Some(Instant::now()),
            first_event: None,
            shell,
        })
    }

    /// Handles events until SIGTERM (`Ok`) or the end of the netlink event stream.
    async fn serve<A>(
        &mut self,
        events: &mut (impl futures::Stream<Item = (NetlinkMessage<RouteNetlinkMessage>, A)> + Unpin),
    ) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                ev = self.shell.next() => match ev {
                    Event::Shutdown => return Ok(()),
                    Event::Reloaded(cfg) => self.reload(&cfg),
                    Event::Request(req, resp) => self.request(req, resp).await,
                },
                msg = events.next() => {
                    let Some((msg, _)) = msg else {
                        return Err(anyhow::anyhow!("the netlink event stream ended"));
                    };
                    self.netlink_event(&msg);
                }
                _ = self.periodic.tick() => {
                    self.due = Some(self.due.map_or(Instant::now(), |d| d.min(Instant::now())));
                }
                _ = sleep_until(self.r.watch_deadline()) => self.r.watch_tick(Instant::now()),
                _ = sleep_until(self.due) => self.reconcile().await,
            }
        }
    }

    fn reload(&mut self, cfg: &edge_config::Config) {
        let Some(l) = &cfg.link else {
            tracing::warn!(
                "the [link] section was removed; keeping the previous one until restart (nothing is torn down)"
            );
            return;
        };
        self.notifier.reload(cfg);
        self.r
            .set_notifier(self.notifier.clone(), link_down_grace(cfg));
        self.r.set_desired(Desired::from_full(l, cfg.ha.as_ref()));
        self.ha.reload(cfg);
        self.r.set_max_backoff(l.reconcile_interval);
        self.debounce = l.debounce;
        if l.reconcile_interval != self.interval {
            self.interval = l.reconcile_interval;
            self.periodic = periodic_timer(self.interval);
        }
        self.due = Some(Instant::now());
    }

    async fn request(&mut self, req: Request, resp: Responder) {
        match req {
            Request::Status => {
                let mut st = self.shell.base_status();
                st.detail = edge_ipc::Detail::Link(Box::new(self.r.status()));
                st.ha = Some(self.ha.status());
                resp.send(Response::Status(Box::new(st)));
            }
            // edge-link does the same in every role (the virtual addresses are
            // keepalived's); it follows the role for `edgectl ha status`.
            Request::SetRole(state) => {
                let change = self.ha.set_role(*state);
                resp.send(self.ha.answer(&change));
            }
            Request::Plan => match self.r.plan().await {
                Ok((_, p)) => resp.send(done(p.to_string(), plan_report(&p, 0))),
                Err(e) => resp.send(Response::Error {
                    code: ErrorCode::Failed,
                    message: error_chain(&e),
                }),
            },
            Request::Apply { .. } => resp.send(self.apply_now().await),
            _ => resp.unsupported(self.shell.role()),
        }
    }

    /// `edgectl link apply`: one reconcile now, even while backing off.
    async fn apply_now(&mut self) -> Response {
        let before = self.r.writes();
        let outcome = self.r.run(self.first_event.take(), true).await;
        let p = self.r.last_plan.clone().unwrap_or_default();
        let writes = self.r.writes() - before;
        record(&mut self.shell, &outcome, self.r.last_duration);
        let failed = |message| Response::Error {
            code: ErrorCode::Failed,
            message,
        };
        match outcome {
            RunOutcome::Converged => {
                done("converged: nothing to do".into(), plan_report(&p, writes))
            }
            RunOutcome::Repaired(rep) => done(
                format!(
                    "{} change(s) applied, {} write(s)",
                    rep.changed.len(),
                    rep.writes
                ),
                plan_report(&p, writes),
            ),
            RunOutcome::Failed(e) => failed(error_chain(&e)),
            RunOutcome::Error(e) => failed(error_chain(&e)),
            RunOutcome::Deferred(_) => failed("deferred".into()),
        }
    }

    /// Counts the event and moves the next reconcile to the end of the quiet period.
    fn netlink_event(&mut self, msg: &NetlinkMessage<RouteNetlinkMessage>) {
        let kind = event_kind(msg);
        self.metrics
            .netlink_events
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
        let now = Instant::now();
        let first = *self.first_event.get_or_insert(now);
        let latest = first + self.debounce * MAX_DEBOUNCE_PERIODS;
        let at = (now + self.debounce).min(latest);
        // A pending backoff retry stays where it is; events only make runs earlier.
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
    }

    /// The due reconcile; schedules the next one when it failed or was deferred.
    async fn reconcile(&mut self) {
        self.due = None;
        let outcome = self.r.run(self.first_event.take(), false).await;
        record(&mut self.shell, &outcome, self.r.last_duration);
        match &outcome {
            RunOutcome::Converged | RunOutcome::Repaired(_) => {
                self.shell.mark_ready(&summary(&outcome));
            }
            RunOutcome::Deferred(at) => self.due = Some(*at),
            RunOutcome::Failed(_) => self.due = self.r.retry_at,
            RunOutcome::Error(_) => self.due = Some(Instant::now() + FIRST_BACKOFF),
        }
    }

    /// Sends what the notifier still holds (for up to 2 s) and stops the shell.
    async fn stop(self) {
        if !self.notifier.flush(Duration::from_secs(2)).await {
            tracing::warn!("stopping with notifications still queued (a target is slow or down)");
        }
        self.shell.stop();
    }
}

fn summary(outcome: &RunOutcome) -> String {
    match outcome {
        RunOutcome::Converged => "converged".into(),
        RunOutcome::Repaired(r) => format!("{} change(s) applied", r.changed.len()),
        RunOutcome::Deferred(_) => "changes due; backing off".into(),
        RunOutcome::Failed(e) => format!("apply failed and was rolled back: {}", error_chain(e)),
        RunOutcome::Error(e) => format!("cannot read the network state: {}", error_chain(e)),
    }
}

fn record(shell: &mut Shell, outcome: &RunOutcome, took: Duration) {
    let ok = matches!(outcome, RunOutcome::Converged | RunOutcome::Repaired(_));
    if !matches!(outcome, RunOutcome::Deferred(_)) {
        shell.record_run(ok, summary(outcome), took);
    }
}
