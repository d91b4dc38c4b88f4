//! I/O: one sync run — detect, then for each record either trust the persisted state (no
//! API call: the steady state) or list it, plan (pure) and apply the plan.
//!
//! A record is read from the API only when the detected address differs from what was last
//! published, when its last confirmation is older than `verify_interval`, or on demand
//! (`edgectl ddns plan`). A failed or split detection never reaches the API.
//!
//! A run (not a dry run) also notifies: `ddns.record_changed` for each record written with a
//! new address, `ddns.sync_failing` when `notify.ddns_failing_after` runs in a row failed
//! and `ddns.sync_recovered` after that, and a heartbeat. Notifying only queues: it never
//! waits for a receiver.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_config::ddns::{Ddns, Family};
use edge_config::{Config, SecretString};
use edge_ipc::ddns::{FamilyStatus, Outcome, RecordOutcome, SourceAnswer, SyncReport};
use edge_metrics::ddns::{AddressLabels, Metrics, RecordLabels, ResultLabels, UpdateLabels};
use edge_notify::{Event, FailureCause, Notifier, StreakChange};

use crate::cloudflare::{ApiError, Client, ClientOptions, RetryPolicy};
use crate::detect::{Detector, DetectorError};
use crate::model::{Desired, Observed, RecordKey};
use crate::plan::{
    Action, CONFLICT_BACKOFF_SECS, KeepReason, Known, NewRecord, ReadDecision, RecordPatch,
    RecordPlan, plan, read_decision,
};
use crate::quorum::{Answer, Verdict};
use crate::state::{self, Published, State};
use edge_util::error_chain;

/// Why the syncer cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The configuration has no `[ddns]` section.
    #[error("the configuration has no [ddns] section")]
    NoSection,
    /// The token cannot be read.
    #[error("cannot read the Cloudflare API token from {source_desc}")]
    Token {
        /// Where it was looked for.
        source_desc: String,
        /// The cause.
        #[source]
        source: edge_config::SecretError,
    },
    /// The API client cannot be built.
    #[error("cannot set up the Cloudflare API client")]
    Client(#[source] ApiError),
    /// The detector cannot be built.
    #[error("cannot set up detection")]
    Detector(#[source] DetectorError),
}

/// Runs syncs for one configuration, keeping state between runs.
#[derive(Debug)]
pub struct Syncer {
    cfg: Ddns,
    desired: Vec<Desired>,
    client: Client,
    detector: Detector,
    state: State,
    state_path: PathBuf,
    metrics: Metrics,
    conflicts: HashMap<RecordKey, u64>,
    last_verdicts: Vec<Verdict>,
    last_addresses: HashMap<Family, IpAddr>,
    last_success: Option<u64>,
    notifier: Notifier,
    /// Failed syncs in a row before `ddns.sync_failing` (`notify.ddns_failing_after`).
    failing_after: u32,
    /// Why writes are held (this host is not the master, or became it moments ago): a
    /// record that needs a write is reported as `held`, nothing is written.
    hold: Option<String>,
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

/// Unix seconds of `t`, rounded up (a pause must not end early).
fn unix_ceil(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
        .unwrap_or(0)
}

/// Renders a verdict for status and reports.
pub fn family_status(v: &Verdict) -> FamilyStatus {
    FamilyStatus {
        family: family_name(v.family).to_owned(),
        address: v.address.map(|a| a.to_string()),
        failure: v.failure.clone(),
        answers: v
            .answers
            .iter()
            .map(|(name, a)| SourceAnswer {
                source: name.clone(),
                result: a.label().to_owned(),
                detail: match a {
                    Answer::Address { address } => address.to_string(),
                    Answer::Rejected { address, reason } => format!("{address} refused: {reason}"),
                    Answer::Failed { error } => error.clone(),
                },
            })
            .collect(),
    }
}

impl Syncer {
    /// Builds a syncer from the configuration: reads the token, loads the state.
    pub fn new(config: &Config, metrics: Metrics) -> Result<Syncer, SetupError> {
        let token = {
            let cfg = config.ddns.as_ref().ok_or(SetupError::NoSection)?;
            cfg.token.load().map_err(|source| SetupError::Token {
                source_desc: cfg.token.to_string(),
                source,
            })?
        };
        Self::with_token(config, &token, metrics, RetryPolicy::default())
    }

    /// Builds a syncer with an already loaded token and a retry policy (tests, benchmarks).
    pub fn with_token(
        config: &Config,
        token: &SecretString,
        metrics: Metrics,
        retry: RetryPolicy,
    ) -> Result<Syncer, SetupError> {
        let cfg = config.ddns.clone().ok_or(SetupError::NoSection)?;
        let mut opts = ClientOptions::new(cfg.api_url.0.clone());
        opts.ca_file = cfg.ca_file.clone();
        opts.timeout = cfg.timeout;
        opts.retry = retry;
        let mut client = Client::new(opts, token, metrics.clone()).map_err(SetupError::Client)?;
        let detector = Detector::new(&cfg, metrics.clone()).map_err(SetupError::Detector)?;
        let state_path = state::path(&config.global.state_dir);
        let state = state::load(&state_path);
        // A pause that a previous process met (and maybe was stopped in) still holds.
        if let Some(until) = state.rate_limited_until {
            client.resume_pause(UNIX_EPOCH + Duration::from_secs(until));
            if client.paused_until().is_some() {
                tracing::info!(
                    until,
                    "rate limited by Cloudflare (persisted pause): no API request before it ends"
                );
            }
        }
        // Persist every new pause at once: a restart during the wait must keep waiting.
        let path = state_path.clone();
        client.set_pause_hook(Arc::new(move |until| {
            if let Err(e) = state::save_pause(&path, unix_ceil(until)) {
                tracing::error!("{}", error_chain(&e));
            }
        }));
        Ok(Syncer {
            desired: Desired::from_config(&cfg),
            cfg,
            client,
            detector,
            state,
            state_path,
            metrics,
            conflicts: HashMap::new(),
            last_verdicts: Vec::new(),
            last_addresses: HashMap::new(),
            last_success: None,
            notifier: Notifier::disabled(),
            failing_after: config.notify.as_ref().map_or(3, |n| n.ddns_failing_after),
            hold: None,
        })
    }

    /// Sends record changes, failing/recovered syncs and heartbeats through `n` (none
    /// until this is called).
    pub fn set_notifier(&mut self, n: Notifier) {
        self.notifier = n;
    }

    /// Takes a new configuration, keeping the state and what was learnt.
    pub fn reconfigure(&mut self, config: &Config) -> Result<(), SetupError> {
        let mut next = Syncer::new(config, self.metrics.clone())?;
        next.conflicts = std::mem::take(&mut self.conflicts);
        next.last_verdicts = std::mem::take(&mut self.last_verdicts);
        next.last_addresses = std::mem::take(&mut self.last_addresses);
        next.last_success = self.last_success;
        next.notifier = std::mem::take(&mut self.notifier);
        next.hold = self.hold.take();
        // The local budget and a rate-limit pause are Cloudflare's view of this host: kept.
        next.client.share_pace(&self.client);
        *self = next;
        Ok(())
    }

    /// Holds every write for `reason` (`None`: writes allowed). Detection and reads go on;
    /// a record that needs a write is reported as `held`, which is not a failure.
    pub fn set_hold(&mut self, reason: Option<String>) {
        self.hold = reason;
    }

    /// Why writes are held, if they are.
    pub fn hold(&self) -> Option<&str> {
        self.hold.as_deref()
    }

    /// The `[ddns]` section in force.
    pub fn config(&self) -> &Ddns {
        &self.cfg
    }

    /// The persisted state (what was published).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The verdicts of the last detection.
    pub fn last_verdicts(&self) -> &[Verdict] {
        &self.last_verdicts
    }

    /// Unix time of the last fully successful sync.
    pub fn last_success(&self) -> Option<u64> {
        self.last_success
    }

    /// The API client (a clone shares its budget and rate-limit pause).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Unix time (rounded up) before which no API request is sent, while a rate-limit
    /// pause is in force.
    pub fn rate_limited_until(&self) -> Option<u64> {
        rate_limited_until(&self.client)
    }

    fn note_address(&mut self, v: &Verdict) {
        let Some(addr) = v.address else {
            return;
        };
        let fam = family_name(v.family).to_owned();
        if let Some(old) = self.last_addresses.insert(v.family, addr)
            && old != addr
        {
            self.metrics.detected_address.remove(&AddressLabels {
                family: fam.clone(),
                address: old.to_string(),
            });
        }
        self.metrics
            .detected_address
            .get_or_create(&AddressLabels {
                family: fam,
                address: addr.to_string(),
            })
            .set(1);
    }

    async fn zone_for(&mut self, name: &str) -> Result<String, ApiError> {
        if let Some(z) = &self.cfg.zone_id {
            return Ok(z.clone());
        }
        for (zname, id) in &self.state.zones {
            self.client.remember_zone(zname, id);
        }
        let id = self.client.zone_id(name).await?;
        for (zname, zid) in self.client.known_zones() {
            self.state.zones.insert(zname, zid);
        }
        Ok(id)
    }

    /// Detects, then plans and (unless `mode` is a plan) applies every record. `now` is
    /// Unix time.
    pub async fn run(&mut self, now: u64, mode: Mode) -> SyncReport {
        let dry_run = mode.is_plan();
        let calls_before = self.client.requests_sent();
        let mut verdicts = Vec::new();
        for fam in self.cfg.families() {
            let v = self.detector.detect(fam).await;
            self.note_address(&v);
            verdicts.push(v);
        }
        let address = |f: Family| {
            verdicts
                .iter()
                .find(|v| v.family == f)
                .and_then(|v| v.address)
        };
        let mut outcomes = Vec::new();
        let mut writes = 0u64;
        let mut ok = true;
        let mut state_changed = false;
        for d in self.desired.clone() {
            let key = d.key();
            let addr = address(d.kind.family());
            let RecordRun {
                outcome,
                wrote,
                state_changed: changed,
            } = self.sync_record(&d, addr, now, mode).await;
            writes += u64::from(wrote);
            state_changed |= changed;
            let good = outcome.outcome.is_ok();
            ok &= good;
            if !dry_run {
                let in_sync = outcome.outcome.is_in_sync();
                self.metrics
                    .record_in_sync
                    .get_or_create(&RecordLabels {
                        record: key.to_string(),
                    })
                    .set(i64::from(in_sync));
            }
            outcomes.push(outcome);
        }
        let pause = self.rate_limited_until();
        if self.state.rate_limited_until != pause {
            self.state.rate_limited_until = pause;
            state_changed = true;
        }
        let mut streak_change = None;
        if !dry_run {
            let before = self.state.failures;
            streak_change = self.state.failures.record(ok, self.failing_after);
            state_changed |= self.state.failures != before;
        }
        if state_changed
            && !dry_run
            && let Err(e) = state::save(&self.state_path, &self.state)
        {
            tracing::error!("{}", error_chain(&e));
            ok = false;
        }
        if !dry_run {
            self.metrics
                .syncs
                .get_or_create(&ResultLabels {
                    result: if ok { "ok" } else { "failed" }.to_owned(),
                })
                .inc();
            if ok {
                self.last_success = Some(now);
                self.metrics
                    .last_success
                    .set(i64::try_from(now).unwrap_or(i64::MAX));
            }
        }
        let report = SyncReport {
            ok,
            dry_run,
            families: verdicts.iter().map(family_status).collect(),
            records: outcomes,
            api_requests: self.client.requests_sent() - calls_before,
            writes,
        };
        if !dry_run {
            self.notify_run(&report, streak_change);
        }
        self.last_verdicts = verdicts;
        report
    }

    /// Sends what a finished sync means: a change of the failing streak, and the heartbeat.
    fn notify_run(&self, report: &SyncReport, change: Option<StreakChange>) {
        let problems = failures(report);
        match change {
            Some(StreakChange::Failing { failed_runs }) => {
                let cause = if report.families.iter().any(|f| f.address.is_none()) {
                    FailureCause::Quorum
                } else {
                    FailureCause::Update
                };
                tracing::warn!(failed_runs, "DDNS syncs failing: {problems}");
                self.notifier.send(Event::DdnsSyncFailing {
                    failed_runs,
                    cause,
                    error: problems.clone(),
                });
            }
            Some(StreakChange::Recovered { failed_runs }) => {
                tracing::info!(failed_runs, "DDNS syncs recovered");
                self.notifier.send(Event::DdnsSyncRecovered { failed_runs });
            }
            None => {}
        }
        let line = format!(
            "edge-ddns sync {}: {} record(s), {} write(s), {} API request(s)",
            if report.ok { "ok" } else { "FAILED" },
            report.records.len(),
            report.writes,
            report.api_requests
        );
        let summary = if report.ok {
            line
        } else {
            format!("{line}\n{problems}")
        };
        self.notifier.heartbeat(report.ok, summary);
    }

    /// Plans one record and, in a sync, applies the plan.
    async fn sync_record(
        &mut self,
        d: &Desired,
        addr: Option<IpAddr>,
        now: u64,
        mode: Mode,
    ) -> RecordRun {
        let key = d.key();
        let Some(ip) = addr else {
            let p = plan(d, None, &[], &self.cfg.owner_comment);
            return RecordRun::only(outcome(&key, Outcome::Skipped, p.to_string()));
        };
        if let Some(run) = self.without_reading(&key, ip, now, mode.reads_every_record()) {
            return run;
        }
        let (zone, observed) = match self.observe(d).await {
            Ok(z) => z,
            Err(e) => return RecordRun::only(self.fail(&key, &e)),
        };
        let p = plan(d, Some(ip), &observed, &self.cfg.owner_comment);
        tracing::debug!(record = %key, plan = %p, "planned");
        for n in &p.notes {
            tracing::warn!(record = %key, note = ?n, "{p}");
        }
        if mode.is_plan() {
            return RecordRun::only(outcome(&key, planned_outcome(&p.action), p.to_string()));
        }
        if let Some(why) = &self.hold
            && p.is_write()
        {
            tracing::info!(record = %key, "write held: {why}");
            return RecordRun::only(outcome(&key, Outcome::Held, format!("{p} (held: {why})")));
        }
        let at = Target {
            key: &key,
            zone: &zone,
            ip,
            now,
        };
        self.apply(&at, p).await
    }

    /// The outcome of a record not read from the API this run: the state confirmed it
    /// recently, or its creation is backing off after a conflict. `None`: read it.
    fn without_reading(
        &self,
        key: &RecordKey,
        ip: IpAddr,
        now: u64,
        force_read: bool,
    ) -> Option<RecordRun> {
        let known = self.state.records.get(key).map(|p| Known {
            content: &p.content,
            verified_at: p.verified_at,
        });
        match read_decision(
            known,
            ip,
            now,
            self.cfg.verify_interval.as_secs(),
            self.conflicts.get(key).copied(),
            force_read,
        ) {
            ReadDecision::Read => None,
            ReadDecision::Fresh => Some(RecordRun::only(outcome(
                key,
                Outcome::Unchanged,
                format!("= {key}: holds {ip} (confirmed within verify_interval, no API call)"),
            ))),
            ReadDecision::BackingOff { until } => Some(RecordRun::only(outcome(
                key,
                Outcome::Failed,
                format!(
                    "! {key}: creation was refused as a duplicate; not retried before {until} (see earlier error)"
                ),
            ))),
        }
    }

    /// The record's zone and what the API holds under its name and type.
    async fn observe(&mut self, d: &Desired) -> Result<(String, Vec<Observed>), ApiError> {
        let zone = self.zone_for(&d.name).await?;
        let observed = self
            .client
            .list_records(&zone, &d.name, d.kind.as_str())
            .await?;
        Ok((zone, observed))
    }

    fn fail(&self, key: &RecordKey, e: &ApiError) -> RecordOutcome {
        let msg = error_chain(e);
        tracing::error!(record = %key, "sync failed: {msg}");
        self.metrics
            .updates
            .get_or_create(&UpdateLabels {
                record: key.to_string(),
                result: "failed".to_owned(),
            })
            .inc();
        RecordOutcome {
            record: key.to_string(),
            outcome: Outcome::Failed,
            detail: format!("! {key}: {msg}"),
        }
    }

    /// Carries out a record's plan: keep (and remember, or forget, it), create or patch.
    async fn apply(&mut self, at: &Target<'_>, p: RecordPlan) -> RecordRun {
        let line = p.to_string();
        let key = at.key;
        match &p.action {
            Action::Keep {
                reason: KeepReason::InSync { id },
            } => {
                self.remember(at, id.clone(), "unchanged", false);
                RecordRun {
                    outcome: outcome(key, Outcome::Unchanged, line),
                    wrote: false,
                    state_changed: true,
                }
            }
            Action::Keep { reason } => {
                if let KeepReason::Unowned { .. } = reason {
                    tracing::warn!(record = %key, "{line}");
                }
                let removed = self.state.records.remove(key).is_some();
                RecordRun {
                    outcome: outcome(key, Outcome::Skipped, line),
                    wrote: false,
                    state_changed: removed,
                }
            }
            Action::Create { record } => self.create(at, record, line).await,
            Action::Patch { id, from, patch } => self.patch(at, id, from, patch, line).await,
        }
    }

    /// Creates the record; a refusal as a duplicate pauses creating it for
    /// [`CONFLICT_BACKOFF_SECS`].
    async fn create(&mut self, at: &Target<'_>, record: &NewRecord, line: String) -> RecordRun {
        let key = at.key;
        match self.client.create(at.zone, record).await {
            Ok(w) => {
                tracing::info!(record = %key, id = %w.id, content = %w.content, "record created");
                self.notifier.send(Event::DdnsRecordChanged {
                    record: key.name.clone(),
                    record_type: key.kind.as_str().to_owned(),
                    old: None,
                    new: w.content.clone(),
                });
                self.conflicts.remove(key);
                self.remember(at, w.id, "created", true);
                RecordRun {
                    outcome: outcome(key, Outcome::Created, line),
                    wrote: true,
                    state_changed: true,
                }
            }
            Err(e) => {
                let mut outcome = self.fail(key, &e);
                if e.is_duplicate() {
                    self.conflicts
                        .insert(key.clone(), at.now + CONFLICT_BACKOFF_SECS);
                    let why = format!(
                        "Cloudflare says a record with this name already exists although listing {key} showed none: look for a CNAME or another record type on that name, or duplicates in another case; creation is paused for an hour"
                    );
                    tracing::error!(record = %key, codes = ?e.codes(), "{why}");
                    // The report (and `edgectl ddns status`) says it too, not only the log.
                    outcome.detail = format!("{}\n    {why}", outcome.detail);
                }
                RecordRun::only(outcome)
            }
        }
    }

    /// Patches the record; a changed content is notified.
    async fn patch(
        &mut self,
        at: &Target<'_>,
        id: &str,
        from: &str,
        patch: &RecordPatch,
        line: String,
    ) -> RecordRun {
        let key = at.key;
        match self.client.patch(at.zone, id, patch).await {
            Ok(w) => {
                tracing::info!(record = %key, id = %w.id, from = %from, content = %w.content, "record updated");
                if patch.content.is_some() && from != w.content {
                    self.notifier.send(Event::DdnsRecordChanged {
                        record: key.name.clone(),
                        record_type: key.kind.as_str().to_owned(),
                        old: Some(from.to_owned()),
                        new: w.content.clone(),
                    });
                }
                self.remember(at, w.id, "patched", true);
                RecordRun {
                    outcome: outcome(key, Outcome::Patched, line),
                    wrote: true,
                    state_changed: true,
                }
            }
            Err(e) => RecordRun::only(self.fail(key, &e)),
        }
    }

    /// Records in the state that the record `id` holds the address, confirmed now; a
    /// `changed` write is counted as `result`.
    fn remember(&mut self, at: &Target<'_>, id: String, result: &str, changed: bool) {
        let key = at.key;
        let changed_at = if changed {
            Some(at.now)
        } else {
            self.state.records.get(key).and_then(|p| p.changed_at)
        };
        self.state.records.insert(
            key.clone(),
            Published {
                zone_id: at.zone.to_owned(),
                record_id: id,
                content: at.ip.to_string(),
                verified_at: at.now,
                changed_at,
            },
        );
        if changed {
            self.metrics
                .updates
                .get_or_create(&UpdateLabels {
                    record: key.to_string(),
                    result: result.to_owned(),
                })
                .inc();
        }
    }
}

/// What a plan would do, as a dry run reports it.
fn planned_outcome(action: &Action) -> Outcome {
    match action {
        Action::Create { .. } => Outcome::WouldCreate,
        Action::Patch { .. } => Outcome::WouldPatch,
        Action::Keep {
            reason: KeepReason::InSync { .. },
        } => Outcome::Unchanged,
        Action::Keep { .. } => Outcome::Skipped,
    }
}

/// A record's outcome for the report.
fn outcome(key: &RecordKey, outcome: Outcome, detail: String) -> RecordOutcome {
    RecordOutcome {
        record: key.to_string(),
        outcome,
        detail,
    }
}

/// The record a plan is applied to: its key, zone, the address, and the time of the run.
struct Target<'a> {
    key: &'a RecordKey,
    zone: &'a str,
    ip: IpAddr,
    now: u64,
}

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Detect, read what the state does not know to be fresh, write what differs.
    Sync,
    /// A sync that reads every record from the API first, however fresh the state says it
    /// is (this host just became the master: the other host may have written).
    SyncReadingAll,
    /// Detect and read every record, print what would change, change nothing.
    Plan,
}

impl Mode {
    /// Nothing is written.
    pub fn is_plan(self) -> bool {
        self == Mode::Plan
    }

    /// Every record is read from the API, fresh or not.
    pub fn reads_every_record(self) -> bool {
        matches!(self, Mode::SyncReadingAll | Mode::Plan)
    }
}

/// What syncing one record did.
#[derive(Debug)]
struct RecordRun {
    /// The outcome reported.
    outcome: RecordOutcome,
    /// A write reached the API.
    wrote: bool,
    /// The state file must be saved.
    state_changed: bool,
}

impl RecordRun {
    /// Only an outcome: nothing written, nothing for the state file.
    fn only(outcome: RecordOutcome) -> RecordRun {
        RecordRun {
            outcome,
            wrote: false,
            state_changed: false,
        }
    }
}

/// Unix time (rounded up) at which `client`'s rate-limit pause ends, while one is in force.
pub fn rate_limited_until(client: &Client) -> Option<u64> {
    client.paused_until().map(unix_ceil)
}

/// What went wrong in a sync, on one line: the families without an address, then the
/// records that did not converge.
fn failures(r: &SyncReport) -> String {
    let mut parts: Vec<String> = r
        .families
        .iter()
        .filter_map(|f| f.failure.as_ref().map(|why| format!("{}: {why}", f.family)))
        .collect();
    parts.extend(
        r.records
            .iter()
            .filter(|x| !x.outcome.is_in_sync() && x.outcome != Outcome::Held)
            .map(|x| x.detail.trim_start_matches(['!', ' ']).replace('\n', " ")),
    );
    if parts.is_empty() {
        "the state could not be saved (see the log)".to_owned()
    } else {
        parts.join("; ")
    }
}

/// Renders a report for humans.
pub fn render_report(r: &SyncReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for f in &r.families {
        match (&f.address, &f.failure) {
            (Some(a), _) => {
                let agree = f.answers.iter().filter(|x| &x.detail == a).count();
                let _ = writeln!(
                    s,
                    "{}: {a} ({agree} of {} sources agree)",
                    f.family,
                    f.answers.len()
                );
            }
            (None, Some(why)) => {
                let _ = writeln!(s, "{}: no address: {why}", f.family);
            }
            (None, None) => {}
        }
        for x in &f.answers {
            let _ = writeln!(s, "    {:<20} {:<8} {}", x.source, x.result, x.detail);
        }
    }
    for rec in &r.records {
        let _ = writeln!(s, "{}", rec.detail);
    }
    let _ = write!(
        s,
        "{}: {} API request(s), {} write(s)",
        if r.dry_run {
            "plan (nothing changed)"
        } else if r.ok {
            "sync ok"
        } else {
            "sync FAILED"
        },
        r.api_requests,
        r.writes
    );
    s
}
