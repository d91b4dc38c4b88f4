//! I/O: the edge-fw event loop. Applies the configuration at start and on every reload,
//! watches nf_tables events (`NFNLGRP_NFTABLES`) and repairs foreign changes to our tables,
//! watches address changes (rtnetlink) so a forward without `address` follows its
//! interfaces' addresses with an element-only update, re-verifies every minute as a safety
//! net, exports the per-forward counters, and serves `plan`, `apply [--confirm]`, `confirm`
//! and `status` over the control socket. Every commit goes through one netlink socket whose
//! port the event watcher knows: that is how our own transactions are told from others'.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use edge_config::Config;
use edge_ipc::fw::Request as FwRequest;
use edge_ipc::proto::{ErrorCode, RoleRequest};
use edge_ipc::shell::{Event, Shell, idle};
use edge_ipc::{Request, Response};
use edge_metrics::fw::{ForwardLabels, Metrics};
use edge_notify::{Event as Notification, Notifier, Streak, StreakChange};
use tokio::sync::mpsc;

use crate::apply::{self, ApplyError, Options};
use crate::compile::compile;
use crate::confirm::{self, Outcome};
use crate::events::{self, ForeignChange, Tracker};
use crate::ir::Ruleset;
use crate::model::Model;
use crate::nfnl::Socket;
use crate::observe;
use crate::origin::{self, Decision, Ranges};
use crate::plan::{self, Update};
use crate::replica;
use edge_ipc::follow::Follower;
use edge_ipc::ha::{Change, Standing};
use edge_util::unix_now;

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

/// The first retry after a failed fetch of the ranges; each failure doubles it, up to the
/// refresh interval.
const RANGES_RETRY: Duration = Duration::from_secs(60);

/// The origin lock's ranges: in force, held, and when to look again.
struct RangeState {
    current: Ranges,
    pending: Option<Ranges>,
    checked_at: u64,
    last_error: Option<String>,
    cache: std::path::PathBuf,
    fetching: bool,
    retry: Duration,
    /// `edgectl fw origin-lock refresh` requests waiting for the fetch's outcome.
    waiting: Vec<edge_ipc::shell::Responder>,
}

/// What the event threads report.
#[derive(Debug)]
enum Watch {
    /// A transaction of someone else changed our tables.
    Foreign(ForeignChange),
    /// Notifications were lost (ENOBUFS): our tables must be re-read.
    Lost,
    /// An address was added or removed, or an interface changed.
    Addresses,
    /// A fetch of the origin lock's ranges ended.
    Ranges(Result<Ranges, String>),
}

/// True when `tid` is a thread of this process: the transaction was ours.
fn own_thread(tid: u32) -> bool {
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

/// Subscribes to nf_tables notifications on a blocking thread and reports, at the end of
/// each transaction (NEWGEN), foreign changes to our tables; our own commits (the thread is
/// ours, or the commit came through `own_port`) and other tables' changes cost nothing.
fn watch_tables(tx: mpsc::UnboundedSender<Watch>, own_port: u32) -> anyhow::Result<()> {
    let sock = crate::nfnl::subscribe()
        .context("failed to subscribe to nf_tables events (NFNLGRP_NFTABLES)")?;
    std::thread::Builder::new()
        .name("nft-events".into())
        .spawn(move || {
            let mut buf = Vec::with_capacity(1 << 16);
            let mut tracker = Tracker::default();
            loop {
                let report = match crate::nfnl::recv_events(&sock, &mut buf) {
                    Ok(d) => events::parse(d)
                        .iter()
                        .filter_map(|e| {
                            tracker.feed(e, |tid, portid| {
                                own_thread(tid) || (portid != 0 && portid == own_port)
                            })
                        })
                        .map(Watch::Foreign)
                        .collect(),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        // Events were lost, maybe mid-transaction: start over and re-read.
                        tracker = Tracker::default();
                        vec![Watch::Lost]
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "nf_tables event socket failed");
                        return;
                    }
                };
                for r in report {
                    if tx.send(r).is_err() {
                        return;
                    }
                }
            }
        })
        .context("failed to start the nf_tables event thread")?;
    Ok(())
}

/// Subscribes to address and link changes on a blocking thread (a forward without
/// `address` follows its interfaces' addresses).
fn watch_addresses(tx: mpsc::UnboundedSender<Watch>) -> anyhow::Result<()> {
    let sock = crate::rt::subscribe_addresses()
        .context("failed to subscribe to address changes (rtnetlink)")?;
    std::thread::Builder::new()
        .name("rt-events".into())
        .spawn(move || {
            let mut buf = Vec::with_capacity(1 << 16);
            loop {
                buf.clear();
                match sock.recv(&mut buf, 0) {
                    Ok(n) => {
                        let d = &buf[..n.min(buf.len())];
                        if crate::rt::is_address_change(d) && tx.send(Watch::Addresses).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // Lost notifications: look at the addresses anyway.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        if tx.send(Watch::Addresses).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "rtnetlink event socket failed");
                        return;
                    }
                }
            }
        })
        .context("failed to start the address event thread")?;
    Ok(())
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
                let (old_m, old_rs) = (
                    std::mem::replace(&mut self.model, m),
                    std::mem::replace(&mut self.rs, rs),
                );
                let why = format!("role {to}");
                if self.apply(shell, &why, false).await.is_err() {
                    self.model = old_m;
                    self.rs = old_rs;
                }
            }
            Err(e) => {
                let msg = format!("role {to} not followed: {e:#}");
                tracing::error!("{msg}");
                shell.push_error(msg);
            }
        }
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
                let (old_m, old_rs) = (
                    std::mem::replace(&mut self.model, m),
                    std::mem::replace(&mut self.rs, rs),
                );
                if self.apply(shell, "address change", false).await.is_err() {
                    self.model = old_m;
                    self.rs = old_rs;
                }
            }
            Err(e) => {
                let msg = format!("address change not followed: {e:#}");
                tracing::error!("{msg}");
                shell.push_error(msg);
            }
        }
    }

    /// The role-specific part of `edgectl status`.
    fn status(&self) -> edge_ipc::fw::Status {
        let forward_list = self
            .model
            .fw
            .forwards
            .iter()
            .map(|f| {
                let (packets, bytes) = self
                    .last_counters
                    .get(&crate::compile::counter_name(&f.name))
                    .copied()
                    .unwrap_or((0, 0));
                let lock_drops = self
                    .last_counters
                    .get(&crate::compile::lock_counter(&f.name))
                    .map_or(0, |c| c.0);
                edge_ipc::fw::ForwardStatus {
                    name: f.name.clone(),
                    rule: describe_forward(f),
                    packets,
                    bytes,
                    locked: f.origin_lock.is_some(),
                    lock_drops,
                }
            })
            .collect();
        let r = &self.ranges;
        let origin_lock = self.locked().then(|| edge_ipc::fw::OriginLockStatus {
            v4: r.current.v4.len(),
            v6: r.current.v6.len(),
            origin: match r.current.origin {
                origin::Origin::Shipped => "shipped".to_owned(),
                origin::Origin::Fetched => "fetched".to_owned(),
            },
            fetched_at: r.current.fetched_at,
            checked_at: r.checked_at,
            pending: r.pending.is_some(),
            last_error: r.last_error.clone(),
        });
        edge_ipc::fw::Status {
            forwards: self.model.fw.forwards.len(),
            rules: self.rs.edge.rule_count(),
            pending_confirm: self.pending_confirm.is_some(),
            forward_list,
            counters_at: self.counters_at,
            drift_repairs: self.metrics.drift_repairs.get(),
            origin_lock,
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

    /// Starts a fetch of the ranges (its outcome comes back as [`Watch::Ranges`]).
    fn fetch_ranges(&mut self, shell: &Shell, tx: &mpsc::UnboundedSender<Watch>) {
        if self.ranges.fetching {
            return;
        }
        self.ranges.fetching = true;
        let src = match &shell.config().fw {
            Some(fw) => fw.origin_lock.clone(),
            None => return,
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let r = origin::fetch(&src, unix_now())
                .await
                .map_err(|e| edge_util::error_chain(&e));
            let _ = tx.send(Watch::Ranges(r));
        });
    }

    /// A fetch ended: put a valid list in force (an element-only update of the sets), hold
    /// one that changes more than half of the ranges until it comes again, keep the list
    /// in force on a failure. Returns when to fetch next.
    async fn ranges_fetched(&mut self, shell: &mut Shell, res: Result<Ranges, String>) -> Duration {
        self.ranges.fetching = false;
        let refresh = shell
            .config()
            .fw
            .as_ref()
            .map_or(edge_config::fw::ORIGIN_LOCK_REFRESH, |f| {
                f.origin_lock.refresh
            });
        let (answer, next) = match res {
            Err(e) => {
                self.metrics.origin_lock_fetch_failures.inc();
                tracing::warn!(error = %e, "cannot refresh the origin lock's ranges; the list in force stays");
                let next = self.ranges.retry;
                self.ranges.retry = (self.ranges.retry * 2).min(refresh);
                self.ranges.last_error = Some(e.clone());
                (Err(e), next)
            }
            Ok(fetched) => {
                self.ranges.retry = RANGES_RETRY;
                self.ranges.checked_at = unix_now();
                self.ranges.last_error = None;
                match origin::decide(&self.ranges.current, &fetched, self.ranges.pending.as_ref()) {
                    Decision::Unchanged => {
                        self.ranges.pending = None;
                        (Ok("the ranges are unchanged".to_owned()), refresh)
                    }
                    Decision::Hold => {
                        let msg = format!(
                            "the fetched list ({} + {} prefixes) changes more than half of the ranges: held until the next fetch gives the same answer",
                            fetched.v4.len(),
                            fetched.v6.len()
                        );
                        tracing::warn!("{msg}");
                        self.ranges.pending = Some(fetched);
                        self.ranges.last_error = Some(msg.clone());
                        (Ok(msg), refresh.min(Duration::from_secs(3600)))
                    }
                    Decision::Accept => {
                        let msg = format!(
                            "new ranges in force: {} IPv4 and {} IPv6 prefixes",
                            fetched.v4.len(),
                            fetched.v6.len()
                        );
                        tracing::info!("{msg}");
                        if let Err(e) = origin::save_cache(&self.ranges.cache, &fetched) {
                            tracing::warn!(path = %self.ranges.cache.display(), error = %e, "cannot keep the ranges for the next start");
                        }
                        self.ranges.pending = None;
                        let old = std::mem::replace(&mut self.ranges.current, fetched);
                        let cfg = shell.config().clone();
                        let addrs = self.model.env.addresses.clone();
                        let res = match build_with(&cfg, addrs, &self.ranges.current, self.active())
                        {
                            Ok((m, rs)) => {
                                let prev = (
                                    std::mem::replace(&mut self.model, m),
                                    std::mem::replace(&mut self.rs, rs),
                                );
                                match self.apply(shell, "origin lock ranges", false).await {
                                    Ok(_) => Ok(msg),
                                    Err(e) => {
                                        (self.model, self.rs) = prev;
                                        Err(e)
                                    }
                                }
                            }
                            Err(e) => Err(format!("{e:#}")),
                        };
                        if res.is_err() {
                            self.ranges.current = old;
                        }
                        self.export_ranges();
                        (res, refresh)
                    }
                }
            }
        };
        for r in std::mem::take(&mut self.ranges.waiting) {
            r.send(match &answer {
                Ok(m) => Response::Done {
                    message: m.clone(),
                    detail: serde_json::Value::Null,
                },
                Err(e) => Response::Error {
                    code: ErrorCode::Failed,
                    message: e.clone(),
                },
            });
        }
        next
    }

    fn export_ranges(&self) {
        let r = &self.ranges.current;
        self.metrics
            .origin_lock_ranges
            .set(i64::try_from(r.v4.len() + r.v6.len()).unwrap_or(i64::MAX));
        self.metrics
            .origin_lock_fetched
            .set(i64::try_from(r.fetched_at).unwrap_or(i64::MAX));
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

/// `tcp 192.198.0.30:443 -> 10.17.5.30:443 from wireguard`.
fn describe_forward(f: &edge_config::fw::Forward) -> String {
    let proto = match f.proto {
        edge_config::fw::Proto::Tcp => "tcp",
        edge_config::fw::Proto::Udp => "udp",
        edge_config::fw::Proto::Both => "tcp+udp",
    };
    let at = f.address.map(|a| match a {
        std::net::IpAddr::V4(a) => format!("{a}:"),
        std::net::IpAddr::V6(a) => format!("[{a}]:"),
    });
    let to = match f.to {
        std::net::IpAddr::V4(a) => a.to_string(),
        std::net::IpAddr::V6(a) => format!("[{a}]"),
    };
    let on = if f.on.is_empty() {
        String::new()
    } else {
        format!(
            " on {}",
            f.on.iter()
                .map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let from = f
        .from
        .as_ref()
        .map(|l| {
            let labels: Vec<&str> = l.iter().map(|s| s.label.as_str()).collect();
            format!(" from {}", labels.join(", "))
        })
        .unwrap_or_default();
    format!(
        "{proto} {}{}{on} -> {to}:{}{from}",
        at.unwrap_or_default(),
        f.port,
        f.to_port
    )
}

/// `edgectl fw plan` through the daemon: the same plan as an apply would make.
fn plan_response(sock: &Socket, m: &Model, rs: &Ruleset) -> Response {
    let live = observe::read_live(sock);
    let p = plan::plan(m, rs, live.as_ref().ok());
    let mut message = format!("{}{}", rs.edge, rs.state);
    match &live {
        Err(e) => message.push_str(&format!(
            "\n# cannot read the live tables: {}",
            edge_util::error_chain(e)
        )),
        Ok(_) => {
            message.push_str(&format!("\n# {}", p.update.describe()));
            let diff = p.diff_lines();
            if !diff.is_empty() {
                message.push_str("\n# differences from the live tables (- live, + compiled):\n");
                message.push_str(&diff.join("\n"));
            }
        }
    }
    for l in &p.lockouts {
        message.push_str(&format!("\n# REFUSED: {l}"));
    }
    Response::Done {
        message,
        detail: serde_json::json!({
            "changes": p.diff_lines().len(),
            "lockouts": p.lockouts.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
        }),
    }
}

/// Runs the daemon until shutdown.
pub async fn run(mut shell: Shell) -> anyhow::Result<()> {
    if shell.config().fw.is_none() {
        return idle(shell, "no [fw] section in the configuration").await;
    }
    let metrics = Metrics::register(&mut shell.registry().write());
    let notify_metrics = edge_metrics::notify::Metrics::register(&mut shell.registry().write());
    let notifier = Notifier::start(shell.config(), "edge-fw", notify_metrics);
    let config = shell.config().clone();
    let sock = Arc::new(Socket::open().context("failed to open the nf_tables socket")?);
    let (tx, mut events) = mpsc::unbounded_channel();
    watch_tables(tx.clone(), sock.portid())?;
    watch_addresses(tx.clone())?;
    // The origin lock starts from the list kept by the last run, else the shipped one.
    let cache = origin::cache_path(&config.global.state_dir);
    let ranges = origin::load_cache(&cache).unwrap_or_else(Ranges::shipped);
    let ha = Follower::start(&config);
    let (model, rs) = build(&config, &ranges, ha.standing().is_active())?;
    let mut st = State {
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
        ranges: RangeState {
            current: ranges,
            pending: None,
            checked_at: 0,
            last_error: None,
            cache,
            fetching: false,
            retry: RANGES_RETRY,
            waiting: Vec::new(),
        },
        ha,
    };
    st.export_ranges();
    if st.apply(&mut shell, "startup", false).await.is_ok() {
        shell.mark_ready("ruleset applied");
    }
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<Outcome, String>>();
    // The startup apply has just read the tables back: the first full re-check is due one
    // period later (an immediate one would race the events for the same change).
    let mut verify =
        tokio::time::interval_at(tokio::time::Instant::now() + VERIFY_EVERY, VERIFY_EVERY);
    let mut counters = tokio::time::interval(COUNTERS_EVERY);
    // Address changes settle for a moment before the forwards follow them.
    let addresses_due = tokio::time::sleep(Duration::from_secs(86_400 * 365));
    tokio::pin!(addresses_due);
    let mut addresses_pending = false;
    // The origin lock's ranges: a list older than the refresh interval (or the shipped one)
    // is fetched soon after start, then once per interval.
    let refresh = config
        .fw
        .as_ref()
        .map_or(edge_config::fw::ORIGIN_LOCK_REFRESH, |f| {
            f.origin_lock.refresh
        });
    let age = Duration::from_secs(unix_now().saturating_sub(st.ranges.current.fetched_at));
    let first = if age >= refresh {
        Duration::from_secs(5)
    } else {
        refresh - age
    };
    let ranges_due = tokio::time::sleep(first);
    tokio::pin!(ranges_due);
    loop {
        tokio::select! {
            ev = shell.next() => match ev {
                Event::Shutdown => break,
                Event::Reloaded(cfg) => {
                    st.ha.reload(&cfg);
                    reconfigure(&mut st, &mut shell, &cfg, "reload").await;
                }
                Event::Request(Request::SetRole(state), r) => {
                    let change = st.ha.set_role(*state);
                    r.send(st.ha.answer(&change));
                    if let Change::Changed { to, .. } = change {
                        st.follow_role(&mut shell, to).await;
                    }
                }
                Event::Request(Request::Status, r) => {
                    // Fresh counters for a person looking (one dump of the state table's
                    // counters, milliseconds at a home server's size); very large rulesets
                    // keep the 15 s cache.
                    if st.model.fw.forwards.len() <= STATUS_FRESH_COUNTERS_UP_TO {
                        st.export_counters().await;
                    }
                    let mut s = shell.base_status();
                    s.detail = edge_ipc::Detail::Fw(Box::new(st.status()));
                    s.ha = Some(st.ha.status());
                    r.send(Response::Status(Box::new(s)));
                }
                Event::Request(Request::Plan, r) => {
                    let (sock, m, rs) = (st.sock.clone(), st.model.clone(), st.rs.clone());
                    let resp = tokio::task::spawn_blocking(move || plan_response(&sock, &m, &rs)).await;
                    r.send(resp.unwrap_or_else(|e| Response::Error { code: ErrorCode::Failed, message: e.to_string() }));
                }
                Event::Request(Request::Apply { confirm_secs: None }, r) => {
                    match st.apply(&mut shell, "manual apply", false).await {
                        Ok(changed) => r.send(Response::Done { message: if changed { "ruleset applied".into() } else { "already converged: nothing written".into() }, detail: serde_json::Value::Null }),
                        Err(m) => r.send(Response::Error { code: ErrorCode::Failed, message: m }),
                    }
                }
                Event::Request(Request::Apply { confirm_secs: Some(secs) }, r) => {
                    if st.pending_confirm.is_some() {
                        r.send(Response::Error { code: ErrorCode::Failed, message: "a confirm-apply is already pending: `edgectl fw confirm` or wait for it".into() });
                        continue;
                    }
                    // Apply what the file says now: re-read it first.
                    if let Err(d) = shell.reload() {
                        r.send(Response::Error { code: ErrorCode::InvalidConfig, message: d.render() });
                        continue;
                    }
                    let cfg = shell.config().clone();
                    let ranges = st.ranges.current.clone();
                    let active = st.active();
                    let built = tokio::task::spawn_blocking(move || build(&cfg, &ranges, active)).await;
                    let (nm, nrs) = match built {
                        Ok(Ok(b)) => b,
                        Ok(Err(e)) => { r.send(Response::Error { code: ErrorCode::Failed, message: format!("{e:#}") }); continue; }
                        Err(e) => { r.send(Response::Error { code: ErrorCode::Failed, message: e.to_string() }); continue; }
                    };
                    // Can the replica, the only probe that sees a lockout, run here? The reply
                    // must say whether this apply can confirm itself.
                    let replica = tokio::task::spawn_blocking(|| replica::available().map_err(|e| (e, replica::denied_because()))).await;
                    let message = match replica {
                        Ok(Ok(())) => format!("applying; confirming by probes within {secs}s (or `edgectl fw confirm`), else the previous ruleset comes back"),
                        Ok(Err((e, why))) => {
                            let msg = format!("applying; the replica probe, the only one that can detect a lockout, cannot run here: {} — {why}. So this apply does not confirm itself: run `edgectl fw confirm` within {secs}s, else the previous ruleset comes back", edge_util::error_chain(&e));
                            tracing::warn!("{msg}");
                            msg
                        }
                        Err(e) => format!("applying; cannot tell whether the replica probe can run ({e}): unless it runs and every probe passes, run `edgectl fw confirm` within {secs}s, else the previous ruleset comes back"),
                    };
                    st.rollback_to = Some((std::mem::replace(&mut st.model, nm), std::mem::replace(&mut st.rs, nrs), st.proven));
                    let flag = Arc::new(AtomicBool::new(false));
                    st.pending_confirm = Some(flag.clone());
                    let (sock, m, rs) = (st.sock.clone(), st.model.clone(), st.rs.clone());
                    let done = done_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        // Routes are read here, off the event loop.
                        let probes = confirm::default_probes(&m);
                        let res = confirm::apply_with_confirm(&sock, &m, &rs, Duration::from_secs(secs), &probes, &flag)
                            .map_err(|e| edge_util::error_chain(&e));
                        let _ = done.send(res);
                    });
                    r.send(Response::Done {
                        message,
                        detail: serde_json::Value::Null,
                    });
                }
                Event::Request(Request::Confirm, r) => match &st.pending_confirm {
                    Some(f) => {
                        f.store(true, Ordering::SeqCst);
                        r.send(Response::Done { message: "confirmed".into(), detail: serde_json::Value::Null });
                    }
                    None => r.send(Response::Error { code: ErrorCode::Failed, message: "nothing to confirm".into() }),
                },
                Event::Request(Request::Role(RoleRequest::Fw(FwRequest::RefreshRanges)), r) => {
                    if !st.locked() {
                        r.send(Response::Error { code: ErrorCode::Failed, message: "no forward has origin_lock: there are no ranges to refresh".into() });
                        continue;
                    }
                    st.ranges.waiting.push(r);
                    st.fetch_ranges(&shell, &tx);
                }
                Event::Request(Request::Role(RoleRequest::Fw(FwRequest::Doctor)), r) => {
                    let sock = st.sock.clone();
                    let notes = tokio::task::spawn_blocking(move || observe::doctor(&sock)).await;
                    r.send(match notes {
                        Ok(Ok(n)) => Response::Done {
                            message: n.iter().map(|l| format!("- {l}")).collect::<Vec<_>>().join("\n"),
                            detail: serde_json::json!(n),
                        },
                        Ok(Err(e)) => Response::Error { code: ErrorCode::Failed, message: edge_util::error_chain(&e) },
                        Err(e) => Response::Error { code: ErrorCode::Failed, message: e.to_string() },
                    });
                }
                Event::Request(_, r) => r.unsupported(shell.role()),
            },
            Some(res) = done_rx.recv() => {
                st.pending_confirm = None;
                match res {
                    Ok(Outcome::RolledBack { failures }) => {
                        st.metrics.applied("rolled_back");
                        let msg = format!("confirm-apply rolled back: {}", failures.join("; "));
                        tracing::error!("{msg}");
                        shell.push_error(msg);
                        st.notifier.send(Notification::FwRolledBack { reason: failures.join("; ") });
                        // The restored tables are the desired state again.
                        if let Some((m, rs, proven)) = st.rollback_to.take() {
                            st.model = m;
                            st.rs = rs;
                            st.proven = proven;
                        }
                    }
                    Ok(o) => {
                        st.rollback_to = None;
                        // Applied (or already live) after the proof, dry run and read-back.
                        st.proven = true;
                        st.metrics.applied("confirmed");
                        tracing::info!(outcome = ?o, "confirm-apply settled");
                    }
                    Err(e) => {
                        if let Some((m, rs, proven)) = st.rollback_to.take() {
                            st.model = m;
                            st.rs = rs;
                            st.proven = proven;
                        }
                        shell.push_error(e.clone());
                        tracing::error!("{e}");
                        st.notifier.send(Notification::FwApplyFailed { error: format!("confirm-apply: {e}") });
                    }
                }
            }
            Some(first) = events.recv() => {
                // Take every change already queued: one repair covers them all.
                let mut deleted = None;
                let mut other = false;
                let mut by = None;
                let mut next = Some(first);
                while let Some(w) = next {
                    match w {
                        Watch::Foreign(c) if c.deleted => deleted = Some(c),
                        Watch::Foreign(c) => {
                            other = true;
                            by = Some(c.by);
                        }
                        Watch::Lost => other = true,
                        Watch::Addresses => {
                            if !addresses_pending {
                                addresses_pending = true;
                                addresses_due.as_mut().reset(tokio::time::Instant::now() + ADDRESS_SETTLE);
                            }
                        }
                        Watch::Ranges(res) => {
                            let next = st.ranges_fetched(&mut shell, res).await;
                            ranges_due.as_mut().reset(tokio::time::Instant::now() + next);
                        }
                    }
                    next = events.try_recv().ok();
                }
                match deleted {
                    Some(c) => st.repair_deleted(&mut shell, &c).await,
                    None if other => st.check_drift(&mut shell, by.as_deref()).await,
                    None => {}
                }
            }
            () = &mut addresses_due, if addresses_pending => {
                addresses_pending = false;
                st.follow_addresses(&mut shell).await;
            }
            () = &mut ranges_due => {
                if st.locked() {
                    st.fetch_ranges(&shell, &tx);
                }
                // The fetch's outcome sets the next time; until then, look again in a day.
                ranges_due.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(86_400));
            }
            _ = verify.tick() => st.check_drift(&mut shell, None).await,
            _ = counters.tick() => {
                // The role file is the safety net for a SetRole that did not arrive.
                if let Change::Changed { to, .. } = st.ha.refresh() {
                    st.follow_role(&mut shell, to).await;
                }
                st.export_counters().await;
            }
        }
    }
    // Whatever is still queued for the operator goes out before the daemon does.
    st.notifier.flush(Duration::from_secs(2)).await;
    shell.stop();
    Ok(())
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
            let (old_m, old_rs, old_proven) = (
                std::mem::replace(&mut st.model, m),
                std::mem::replace(&mut st.rs, rs),
                st.proven,
            );
            if st.apply(shell, why, false).await.is_err() {
                // The previous ruleset stays in force (the apply is atomic); keep it as the
                // desired state so drift repair does not fight the admin.
                st.model = old_m;
                st.rs = old_rs;
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
