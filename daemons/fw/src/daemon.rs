//! I/O: the edge-fw event loop. Applies the configuration at start and on every reload,
//! watches nf_tables events (`NFNLGRP_NFTABLES`) and repairs foreign changes to our tables,
//! re-verifies every minute as a safety net, exports the per-forward counters, and serves
//! `plan`, `apply [--confirm]`, `confirm` and `status` over the control socket.

use std::os::fd::AsRawFd;
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
use tokio::sync::mpsc;

use crate::apply::{self, ApplyError, Live, Options};
use crate::compile::compile;
use crate::confirm::{self, Outcome};
use crate::events::{self, ForeignChange, Tracker};
use crate::ir::Ruleset;
use crate::model::Model;
use crate::observe;
use crate::replica;

/// Full re-verify interval (safety net behind the events).
const VERIFY_EVERY: Duration = Duration::from_secs(60);
/// Counter export interval.
const COUNTERS_EVERY: Duration = Duration::from_secs(15);
/// Up to this many forwards a status request reads the counters afresh.
const STATUS_FRESH_COUNTERS_UP_TO: usize = 1000;

/// Builds the model and ruleset of a configuration, resolving interface addresses first.
pub fn build(config: &Config) -> anyhow::Result<(Model, Ruleset)> {
    let addrs = observe::interface_addresses().unwrap_or_default();
    let m = Model::from_config(config, addrs).context("failed to build the firewall model")?;
    let rs = compile(&m).context("failed to compile the firewall")?;
    Ok((m, rs))
}

/// What the nf_tables event thread reports.
#[derive(Debug)]
enum Watch {
    /// A transaction of someone else changed our tables.
    Foreign(ForeignChange),
    /// Notifications were lost (ENOBUFS): our tables must be re-read.
    Lost,
}

/// True when `tid` is a thread of this process: the transaction was ours.
fn own_thread(tid: u32) -> bool {
    std::path::Path::new(&format!("/proc/self/task/{tid}")).exists()
}

/// Subscribes to nf_tables notifications on a blocking thread and reports, at the end of
/// each transaction (NEWGEN), foreign changes to our tables; our own commits and other
/// tables' changes cost nothing.
fn watch(tx: mpsc::UnboundedSender<Watch>) -> anyhow::Result<()> {
    let fd = crate::netlink::subscribe_events()
        .context("failed to subscribe to nf_tables events (NFNLGRP_NFTABLES)")?;
    std::thread::Builder::new()
        .name("nft-events".into())
        .spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut tracker = Tracker::default();
            loop {
                // SAFETY: reading into a live buffer of the given length.
                let n =
                    unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
                let report = if n < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() == std::io::ErrorKind::Interrupted {
                        continue;
                    }
                    if e.raw_os_error() != Some(libc::ENOBUFS) {
                        tracing::error!(error = %e, "nf_tables event socket failed");
                        return;
                    }
                    // Events were lost, maybe mid-transaction: start over and re-read.
                    tracker = Tracker::default();
                    vec![Watch::Lost]
                } else {
                    events::parse(&buf[..n as usize])
                        .iter()
                        .filter_map(|e| {
                            tracker.feed(e, |tid, portid| {
                                own_thread(tid) || crate::netlink::is_own_portid(portid)
                            })
                        })
                        .map(Watch::Foreign)
                        .collect()
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

struct State {
    model: Model,
    rs: Ruleset,
    metrics: Metrics,
    last_counters: std::collections::HashMap<String, (u64, u64)>,
    pending_confirm: Option<Arc<AtomicBool>>,
    /// The desired state before a pending confirm-apply, restored if it rolls back.
    rollback_to: Option<(Model, Ruleset, bool)>,
    /// The desired ruleset was committed and verified at least once: it passed the
    /// anti-lockout proof and the kernel's dry run, so a repair may rewrite it blindly.
    proven: bool,
    /// When `last_counters` was read (unix seconds; 0: not yet).
    counters_at: u64,
}

fn result_of(e: &ApplyError) -> &'static str {
    match e {
        ApplyError::Lockout(_) => "lockout",
        ApplyError::DryRunRejected(_) | ApplyError::CommitRejected(_) => "rejected",
        ApplyError::Verify { .. } => "verify_failed",
        _ => "error",
    }
}

impl State {
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
        let (m, rs) = (self.model.clone(), self.rs.clone());
        let t = Instant::now();
        let res = tokio::task::spawn_blocking(move || apply::apply(&m, &rs, opts))
            .await
            .map_err(|e| format!("apply task failed: {e}"))?;
        self.proven = res.is_ok();
        match res {
            Ok(r) => {
                self.metrics
                    .applied(if r.changed { "changed" } else { "unchanged" });
                if r.changed {
                    self.metrics
                        .last_apply_duration
                        .set(r.total_time.as_secs_f64());
                    tracing::info!(
                        trigger = why,
                        messages = r.commit.as_ref().map(|c| c.messages).unwrap_or(0),
                        ms = r.total_time.as_millis() as u64,
                        "ruleset applied"
                    );
                }
                shell.record_run(
                    true,
                    format!("{why}: {}", if r.changed { "applied" } else { "unchanged" }),
                    t.elapsed(),
                );
                Ok(r.changed)
            }
            Err(e) => {
                self.metrics.applied(result_of(&e));
                if matches!(e, ApplyError::DryRunRejected(_)) {
                    self.metrics.dry_run_rejections.inc();
                }
                if matches!(e, ApplyError::Verify { .. }) {
                    self.metrics.verify_failures.inc();
                }
                let msg = format!("{why}: {}", crate::apply::error_chain(&e));
                tracing::error!("{msg}");
                shell.push_error(msg.clone());
                shell.record_run(false, msg.clone(), t.elapsed());
                Err(msg)
            }
        }
    }

    /// Someone deleted our tables (`nft flush ruleset`, `nft delete table`): there is
    /// nothing to read before writing, so a proven ruleset is committed at once — no read,
    /// no proof, no dry run, all of which it passed when it was first applied — and read
    /// back afterwards. Anything else goes through [`State::check_drift`].
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
        }
    }

    /// Re-reads our tables; a difference is drift: logged, counted and repaired.
    /// `by` names who committed the change, when an event told (`nft[4242]`).
    async fn check_drift(&mut self, shell: &mut Shell, by: Option<&str>) {
        if self.pending_confirm.is_some() {
            return;
        }
        let rs = self.rs.clone();
        let diff = tokio::task::spawn_blocking(move || Live::read().map(|l| l.diff(&rs))).await;
        let diff = match diff {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::warn!(
                    error = %crate::apply::error_chain(&e),
                    "cannot read the live tables"
                );
                return;
            }
            Err(_) => return,
        };
        if diff.is_empty() {
            return;
        }
        self.metrics.verify_failures.inc();
        tracing::warn!(by = %by.unwrap_or("unknown"), lines = diff.len(), first = %diff.first().cloned().unwrap_or_default(), "table inet edge was changed by someone else: repairing");
        if self.apply(shell, "drift repair", true).await.is_ok() {
            self.metrics.drift_repairs.inc();
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
                edge_ipc::fw::ForwardStatus {
                    name: f.name.clone(),
                    rule: describe_forward(f),
                    packets,
                    bytes,
                }
            })
            .collect();
        edge_ipc::fw::Status {
            forwards: self.model.fw.forwards.len(),
            rules: self.rs.edge.rule_count(),
            pending_confirm: self.pending_confirm.is_some(),
            forward_list,
            counters_at: self.counters_at,
            drift_repairs: self.metrics.drift_repairs.get(),
        }
    }

    async fn export_counters(&mut self) {
        let listing =
            tokio::task::spawn_blocking(|| observe::list_table(crate::ir::STATE_TABLE)).await;
        let Ok(Ok(Some(text))) = listing else {
            return;
        };
        for c in observe::counters_in(&text) {
            let Some(name) = c.name.strip_prefix("fwd_") else {
                continue;
            };
            let (pp, pb) = self.last_counters.get(&c.name).copied().unwrap_or((0, 0));
            let l = ForwardLabels {
                forward: name.to_owned(),
            };
            // The kernel counters only grow (they live in the never-replaced state table);
            // a smaller value means the counter was recreated: count from zero again.
            let dp = if c.packets >= pp {
                c.packets - pp
            } else {
                c.packets
            };
            let db = if c.bytes >= pb { c.bytes - pb } else { c.bytes };
            self.metrics.forward_packets.get_or_create(&l).inc_by(dp);
            self.metrics.forward_bytes.get_or_create(&l).inc_by(db);
            self.last_counters.insert(c.name, (c.packets, c.bytes));
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

fn plan_response(rs: &Ruleset) -> Response {
    let live = Live::read();
    let diff = match &live {
        Ok(l) => l.diff(rs),
        Err(e) => vec![format!(
            "(cannot read the live tables: {})",
            crate::apply::error_chain(e)
        )],
    };
    let message = if diff.is_empty() {
        format!("{}\n# the live tables match: nothing to apply", rs.edge)
    } else {
        format!(
            "{}\n# diff against the live tables (- live, + compiled):\n{}",
            rs.edge,
            diff.join("\n")
        )
    };
    Response::Done {
        message,
        detail: serde_json::json!({ "changes": diff.len() }),
    }
}

/// Runs the daemon until shutdown.
pub async fn run(mut shell: Shell) -> anyhow::Result<()> {
    if shell.config().fw.is_none() {
        return idle(shell, "no [fw] section in the configuration").await;
    }
    let metrics = Metrics::register(&mut shell.registry().write());
    let config = shell.config().clone();
    let (model, rs) = build(&config)?;
    let mut st = State {
        model,
        rs,
        metrics,
        last_counters: Default::default(),
        pending_confirm: None,
        rollback_to: None,
        proven: false,
        counters_at: 0,
    };
    let (tx, mut events) = mpsc::unbounded_channel();
    watch(tx)?;
    if st.apply(&mut shell, "startup", false).await.is_ok() {
        shell.mark_ready("ruleset applied");
    }
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<Outcome, String>>();
    // The startup apply has just read the tables back: the first full re-check is due one
    // period later (an immediate one would race the events for the same change).
    let mut verify =
        tokio::time::interval_at(tokio::time::Instant::now() + VERIFY_EVERY, VERIFY_EVERY);
    let mut counters = tokio::time::interval(COUNTERS_EVERY);
    loop {
        tokio::select! {
            ev = shell.next() => match ev {
                Event::Shutdown => break,
                Event::Reloaded(cfg) => reconfigure(&mut st, &mut shell, &cfg, "reload").await,
                Event::Request(Request::Status, r) => {
                    // Fresh counters for a person looking (one `nft list` of the state table,
                    // milliseconds at a home server's size); very large rulesets keep the
                    // 15 s cache.
                    if st.model.fw.forwards.len() <= STATUS_FRESH_COUNTERS_UP_TO {
                        st.export_counters().await;
                    }
                    let mut s = shell.base_status();
                    s.detail = serde_json::to_value(st.status()).unwrap_or_default();
                    r.send(Response::Status(Box::new(s)));
                }
                Event::Request(Request::Plan, r) => {
                    let rs = st.rs.clone();
                    let resp = tokio::task::spawn_blocking(move || plan_response(&rs)).await;
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
                    let built = tokio::task::spawn_blocking(move || build(&cfg)).await;
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
                            let msg = format!("applying; the replica probe, the only one that can detect a lockout, cannot run here: {} — {why}. So this apply does not confirm itself: run `edgectl fw confirm` within {secs}s, else the previous ruleset comes back", confirm::chain(&e));
                            tracing::warn!("{msg}");
                            msg
                        }
                        Err(e) => format!("applying; cannot tell whether the replica probe can run ({e}): unless it runs and every probe passes, run `edgectl fw confirm` within {secs}s, else the previous ruleset comes back"),
                    };
                    st.rollback_to = Some((std::mem::replace(&mut st.model, nm), std::mem::replace(&mut st.rs, nrs), st.proven));
                    let flag = Arc::new(AtomicBool::new(false));
                    st.pending_confirm = Some(flag.clone());
                    let (m, rs) = (st.model.clone(), st.rs.clone());
                    let done = done_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        // Routes and addresses are read here, off the event loop.
                        let probes = confirm::default_probes(&m);
                        let res = confirm::apply_with_confirm(&m, &rs, Duration::from_secs(secs), &probes, &flag)
                            .map_err(|e| e.to_string());
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
                Event::Request(Request::Role(RoleRequest::Fw(FwRequest::Doctor)), r) => {
                    let notes = tokio::task::spawn_blocking(crate::plan::doctor_live).await;
                    r.send(match notes {
                        Ok(Ok(n)) => Response::Done {
                            message: n.iter().map(|l| format!("- {l}")).collect::<Vec<_>>().join("\n"),
                            detail: serde_json::json!(n),
                        },
                        Ok(Err(e)) => Response::Error { code: ErrorCode::Failed, message: apply::error_chain(&e) },
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
                    }
                    next = events.try_recv().ok();
                }
                match deleted {
                    Some(c) => st.repair_deleted(&mut shell, &c).await,
                    None if other => st.check_drift(&mut shell, by.as_deref()).await,
                    None => {}
                }
            }
            _ = verify.tick() => st.check_drift(&mut shell, None).await,
            _ = counters.tick() => st.export_counters().await,
        }
    }
    shell.stop();
    Ok(())
}

async fn reconfigure(st: &mut State, shell: &mut Shell, cfg: &Arc<Config>, why: &str) {
    if cfg.fw.is_none() {
        tracing::warn!("the [fw] section was removed; keeping the current ruleset until restart");
        return;
    }
    let built = tokio::task::spawn_blocking({
        let cfg = cfg.clone();
        move || build(&cfg)
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
