//! I/O: the edge-fw event loop. Applies the configuration at start and on every reload,
//! watches nf_tables events (`NFNLGRP_NFTABLES`) and repairs foreign changes to our tables,
//! watches address changes (rtnetlink) so a forward without `address` follows its
//! interfaces' addresses with an element-only update, re-verifies every minute as a safety
//! net, exports the per-forward counters, and serves `plan`, `apply [--confirm]`, `confirm`
//! and `status` over the control socket. Every commit goes through one netlink socket whose
//! port the event watcher knows: that is how our own transactions are told from others'.
//!
//! Parts: `watch` (the event threads), `serve` (the loop and its requests), `ranges` (the
//! origin lock's ranges), `status` (what a person is told).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_config::Config;
use edge_ipc::follow::Follower;
use edge_ipc::ha::Standing;
use edge_ipc::shell::{Shell, idle};
use edge_metrics::fw::{ForwardLabels, Metrics};
use edge_notify::{Event as Notification, Notifier, Streak, StreakChange};
use tokio::sync::mpsc;

use crate::apply::{self, ApplyError, Options};
use crate::compile::compile;
use crate::events::ForeignChange;
use crate::ir::Ruleset;
use crate::model::Model;
use crate::nfnl::Socket;
use crate::observe;
use crate::origin::{self, Ranges};
use crate::plan::{self, Update};

mod ranges;
mod serve;
mod status;
mod watch;

use ranges::RangeState;
use watch::{Watch, watch_addresses, watch_tables};

/// Full re-verify interval (safety net behind the events).
const VERIFY_EVERY: Duration = Duration::from_secs(60);
/// Counter export interval.
const COUNTERS_EVERY: Duration = Duration::from_secs(15);
/// Up to this many forwards a status request reads the counters afresh.
const STATUS_FRESH_COUNTERS_UP_TO: usize = 1000;

/// How long address changes settle before the forwards follow them (an address move is a
/// delete and an add; a bridge coming up brings several).
const ADDRESS_SETTLE: Duration = Duration::from_millis(200);

/// The interfaces' addresses, read once per build (rtnetlink).
fn host_addresses() -> BTreeMap<String, Vec<IpAddr>> {
    observe::interface_addresses().unwrap_or_else(|e| {
        tracing::warn!(error = %edge_util::error_chain(&e), "cannot read the interfaces' addresses");
        BTreeMap::new()
    })
}

/// Builds the model and ruleset of a configuration with the interfaces' addresses and the
/// origin lock's ranges in force.
/// `active`: this host is the master of a pair (ignored without `[ha]`).
pub fn build_with(
    config: &Config,
    addrs: BTreeMap<String, Vec<IpAddr>>,
    ranges: &Ranges,
    active: bool,
) -> anyhow::Result<(Model, Ruleset)> {
    let mut m = Model::from_config(config, addrs).context("failed to build the firewall model")?;
    m.env.origin_ranges = ranges.clone();
    if let Some(p) = &mut m.env.pair {
        p.active = active;
    }
    let rs = compile(&m).context("failed to compile the firewall")?;
    Ok((m, rs))
}

/// Builds the model and ruleset of a configuration, reading the interfaces' addresses first.
pub fn build(config: &Config, ranges: &Ranges, active: bool) -> anyhow::Result<(Model, Ruleset)> {
    build_with(config, host_addresses(), ranges, active)
}

struct State {
    /// The socket every commit and read goes through (its port marks our own commits).
    sock: Arc<Socket>,
    model: Model,
    rs: Ruleset,
    metrics: Metrics,
    last_counters: std::collections::HashMap<String, (u64, u64)>,
    pending_confirm: Option<Arc<AtomicBool>>,
    /// The desired state before a pending confirm-apply, restored if it rolls back.
    rollback_to: Option<(Model, Ruleset, bool)>,
    /// The desired ruleset was committed and verified at least once: it passed the
    /// anti-lockout proof and the kernel's dry run, so a repair may rewrite it without them.
    proven: bool,
    /// When `last_counters` was read (unix seconds; 0: not yet).
    counters_at: u64,
    /// Notifications to the operator.
    notifier: Notifier,
    /// Failed applies in a row: one `fw.apply_failed` per streak (drift repairs retry every
    /// minute and would otherwise send one each time).
    failures: Streak,
    /// The origin lock's ranges.
    ranges: RangeState,
    /// keepalived's role, when this host is one of two.
    ha: Follower,
}

fn result_of(e: &ApplyError) -> &'static str {
    match e {
        ApplyError::Lockout(_) => "lockout",
        ApplyError::DryRunRejected(_) | ApplyError::CommitRejected(_) => "rejected",
        ApplyError::Verify(_) => "verify_failed",
        _ => "error",
    }
}

impl State {
    /// True unless this host is the BACKUP (or FAULT) of a pair.
    fn active(&self) -> bool {
        self.ha.standing().is_active()
    }

    /// Follows a new role: the master translates egress to the virtual address and admits
    /// new forwarded flows; the BACKUP drops them. The tables are updated in one
    /// transaction, never flushed.
    async fn follow_role(&mut self, shell: &mut Shell, to: Standing) {
        let cfg = shell.config().clone();
        let addrs = self.model.env.addresses.clone();
        match build_with(&cfg, addrs, &self.ranges.current, to.is_active()) {
            Ok((m, rs)) => {
                let why = format!("role {to}");
                let _ = self.apply_desired(shell, m, rs, &why).await;
            }
            Err(e) => {
                let msg = format!("role {to} not followed: {e:#}");
                tracing::error!("{msg}");
                shell.push_error(msg);
            }
        }
    }

    /// Makes `m` and `rs` the desired state and applies them; when the apply fails, the
    /// desired state before comes back (the apply is atomic: the kernel still holds it).
    async fn apply_desired(
        &mut self,
        shell: &mut Shell,
        m: Model,
        rs: Ruleset,
        why: &str,
    ) -> Result<bool, String> {
        let (old_m, old_rs) = (
            std::mem::replace(&mut self.model, m),
            std::mem::replace(&mut self.rs, rs),
        );
        let res = self.apply(shell, why, false).await;
        if res.is_err() {
            self.model = old_m;
            self.rs = old_rs;
        }
        res
    }

    async fn apply(&mut self, shell: &mut Shell, why: &str, force: bool) -> Result<bool, String> {
        self.apply_with(
            shell,
            why,
            Options {
                force,
                ..Options::default()
            },
        )
        .await
    }

    async fn apply_with(
        &mut self,
        shell: &mut Shell,
        why: &str,
        opts: Options,
    ) -> Result<bool, String> {
        let (sock, m, rs) = (self.sock.clone(), self.model.clone(), self.rs.clone());
        let t = Instant::now();
        let res = tokio::task::spawn_blocking(move || apply::apply(&sock, &m, &rs, opts))
            .await
            .map_err(|e| format!("apply task failed: {e}"))?;
        self.proven = res.is_ok();
        match res {
            Ok(r) => {
                let result = match r.change {
                    apply::Change::None => "unchanged",
                    apply::Change::Elements => "elements",
                    apply::Change::Replace => "changed",
                };
                self.metrics.applied(result);
                if r.changed() {
                    self.metrics
                        .last_apply_duration
                        .set(r.total_time.as_secs_f64());
                    tracing::info!(
                        trigger = why,
                        update = r.change.as_str(),
                        messages = r.commit.as_ref().map(|c| c.messages).unwrap_or(0),
                        ms = r.total_time.as_millis() as u64,
                        "ruleset applied"
                    );
                }
                shell.record_run(true, format!("{why}: {}", r.change.as_str()), t.elapsed());
                self.failures.record(true, 1);
                Ok(r.changed())
            }
            Err(e) => {
                self.metrics.applied(result_of(&e));
                if matches!(e, ApplyError::DryRunRejected(_)) {
                    self.metrics.dry_run_rejections.inc();
                }
                if matches!(e, ApplyError::Verify(_)) {
                    self.metrics.verify_failures.inc();
                }
                let msg = format!("{why}: {}", edge_util::error_chain(&e));
                tracing::error!("{msg}");
                shell.push_error(msg.clone());
                shell.record_run(false, msg.clone(), t.elapsed());
                if let Some(StreakChange::Failing { .. }) = self.failures.record(false, 1) {
                    self.notifier
                        .send(Notification::FwApplyFailed { error: msg.clone() });
                }
                Err(msg)
            }
        }
    }

    /// Someone deleted our tables (`nft flush ruleset`, `nft delete table`): a proven
    /// ruleset is put back at once — no proof and no dry run, both of which it passed when
    /// it was first applied — and read back. Anything else goes through
    /// [`State::check_drift`].
    async fn repair_deleted(&mut self, shell: &mut Shell, change: &ForeignChange) {
        if self.pending_confirm.is_some() {
            return;
        }
        if !self.proven {
            self.check_drift(shell, Some(&change.by)).await;
            return;
        }
        self.metrics.verify_failures.inc();
        tracing::warn!(by = %change.by, "table inet edge was deleted by someone else: restoring");
        let opts = Options {
            restore: true,
            ..Options::default()
        };
        if self.apply_with(shell, "drift repair", opts).await.is_ok() {
            self.metrics.drift_repairs.inc();
            self.notifier.send(Notification::FwDriftRepaired {
                by: Some(change.by.clone()),
                detail: "table inet edge was deleted and has been restored".to_owned(),
            });
        }
    }

    /// Re-reads our tables; a difference is drift: logged, counted and repaired.
    /// `by` names who committed the change, when an event told (`nft[4242]`).
    async fn check_drift(&mut self, shell: &mut Shell, by: Option<&str>) {
        if self.pending_confirm.is_some() {
            return;
        }
        let (sock, m, rs) = (self.sock.clone(), self.model.clone(), self.rs.clone());
        let planned = tokio::task::spawn_blocking(move || {
            observe::read_live(&sock).map(|live| plan::plan(&m, &rs, Some(&live)))
        })
        .await;
        let p = match planned {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                tracing::warn!(error = %edge_util::error_chain(&e), "cannot read the live tables");
                return;
            }
            Err(_) => return,
        };
        if matches!(p.update, Update::Converged) {
            return;
        }
        let diff = p.diff_lines();
        self.metrics.verify_failures.inc();
        tracing::warn!(by = %by.unwrap_or("unknown"), differences = diff.len(), first = %diff.first().cloned().unwrap_or_default(), "table inet edge was changed by someone else: repairing");
        let opts = Options {
            restore: self.proven,
            ..Options::default()
        };
        if self.apply_with(shell, "drift repair", opts).await.is_ok() {
            self.metrics.drift_repairs.inc();
            self.notifier.send(Notification::FwDriftRepaired {
                by: by.map(str::to_owned),
                detail: format!(
                    "{} difference(s) repaired; first: {}",
                    diff.len(),
                    diff.first().cloned().unwrap_or_default()
                ),
            });
        }
    }

    /// An address changed: when the interfaces' addresses the model was built with differ
    /// from the kernel's now, rebuild and apply (an element-only update when only the
    /// forwards' addresses moved).
    async fn follow_addresses(&mut self, shell: &mut Shell) {
        if self.pending_confirm.is_some() {
            return;
        }
        let now = tokio::task::spawn_blocking(host_addresses)
            .await
            .unwrap_or_default();
        if now == self.model.env.addresses {
            return;
        }
        let cfg = shell.config().clone();
        match build_with(&cfg, now, &self.ranges.current, self.active()) {
            Ok((m, rs)) if rs == self.rs => self.model = m,
            Ok((m, rs)) => {
                tracing::info!("interface addresses changed: the forwards follow them");
                let _ = self.apply_desired(shell, m, rs, "address change").await;
            }
            Err(e) => {
                let msg = format!("address change not followed: {e:#}");
                tracing::error!("{msg}");
                shell.push_error(msg);
            }
        }
    }

    /// True when a forward is locked to the proxy's ranges.
    fn locked(&self) -> bool {
        self.model
            .fw
            .forwards
            .iter()
            .any(|f| f.origin_lock.is_some())
    }

    async fn export_counters(&mut self) {
        let sock = self.sock.clone();
        let read = tokio::task::spawn_blocking(move || observe::read_counters(&sock)).await;
        let Ok(Ok(counters)) = read else {
            return;
        };
        for (name, c) in counters {
            let (fwd, lock) = match (name.strip_prefix("fwd_"), name.strip_prefix("lockdrop_")) {
                (Some(f), _) => (f, false),
                (None, Some(f)) => (f, true),
                (None, None) => continue,
            };
            let (pp, pb) = self.last_counters.get(&name).copied().unwrap_or((0, 0));
            let l = ForwardLabels {
                forward: fwd.to_owned(),
            };
            // The kernel counters only grow (they live in the never-replaced state table);
            // a smaller value means the counter was recreated: count from zero again.
            let dp = if c.packets >= pp {
                c.packets - pp
            } else {
                c.packets
            };
            let db = if c.bytes >= pb { c.bytes - pb } else { c.bytes };
            if lock {
                self.metrics.origin_lock_drops.get_or_create(&l).inc_by(dp);
            } else {
                self.metrics.forward_packets.get_or_create(&l).inc_by(dp);
                self.metrics.forward_bytes.get_or_create(&l).inc_by(db);
            }
            self.last_counters.insert(name, (c.packets, c.bytes));
        }
        self.counters_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
    }
}

/// Runs the daemon until shutdown.
pub async fn run(mut shell: Shell) -> anyhow::Result<()> {
    if shell.config().fw.is_none() {
        return idle(shell, "no [fw] section in the configuration").await;
    }
    let (mut st, (events, tx)) = start(&mut shell)?;
    st.export_ranges();
    if st.apply(&mut shell, "startup", false).await.is_ok() {
        shell.mark_ready("ruleset applied");
    }
    serve::serve(&mut st, &mut shell, events, tx).await;
    // Whatever is still queued for the operator goes out before the daemon does.
    st.notifier.flush(Duration::from_secs(2)).await;
    shell.stop();
    Ok(())
}

/// The event threads' reports: the receiving end and a sender for the loop's own tasks.
type WatchChannel = (mpsc::UnboundedReceiver<Watch>, mpsc::UnboundedSender<Watch>);

/// Opens the socket, starts the event threads, the notifier and the role follower, and
/// builds the desired state from the configuration and the last run's ranges.
fn start(shell: &mut Shell) -> anyhow::Result<(State, WatchChannel)> {
    let metrics = Metrics::register(&mut shell.registry().write());
    let notify_metrics = edge_metrics::notify::Metrics::register(&mut shell.registry().write());
    let notifier = Notifier::start(shell.config(), "edge-fw", notify_metrics);
    let config = shell.config().clone();
    let sock = Arc::new(Socket::open().context("failed to open the nf_tables socket")?);
    let (tx, events) = mpsc::unbounded_channel();
    watch_tables(tx.clone(), sock.portid())?;
    watch_addresses(tx.clone())?;
    // The origin lock starts from the list kept by the last run, else the shipped one.
    let cache = origin::cache_path(&config.global.state_dir);
    let ranges = origin::load_cache(&cache).unwrap_or_else(Ranges::shipped);
    let ha = Follower::start(&config);
    let (model, rs) = build(&config, &ranges, ha.standing().is_active())?;
    let st = State {
        sock,
        model,
        rs,
        metrics,
        last_counters: Default::default(),
        pending_confirm: None,
        rollback_to: None,
        proven: false,
        counters_at: 0,
        notifier,
        failures: Streak::default(),
        ranges: RangeState::new(ranges, cache),
        ha,
    };
    Ok((st, (events, tx)))
}

async fn reconfigure(st: &mut State, shell: &mut Shell, cfg: &Arc<Config>, why: &str) {
    if cfg.fw.is_none() {
        tracing::warn!("the [fw] section was removed; keeping the current ruleset until restart");
        return;
    }
    st.notifier.reload(cfg);
    let built = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        let ranges = st.ranges.current.clone();
        let active = st.active();
        move || build(&cfg, &ranges, active)
    })
    .await;
    match built {
        Ok(Ok((m, rs))) => {
            let old_proven = st.proven;
            if st.apply_desired(shell, m, rs, why).await.is_err() {
                // The previous ruleset stays in force (the apply is atomic); keep it as the
                // desired state so drift repair does not fight the admin.
                st.proven = old_proven;
            }
        }
        Ok(Err(e)) => {
            let msg = format!("{why} not applied: {e:#}");
            tracing::error!("{msg}");
            shell.push_error(msg);
        }
        Err(e) => tracing::error!("{why}: build task failed: {e}"),
    }
}
