//! The event loop: the shell's events and control requests, the event threads' reports,
//! the confirm-apply's outcome and the timers, each handled by a step of its own.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use edge_ipc::fw::Request as FwRequest;
use edge_ipc::ha::Change;
use edge_ipc::proto::{ErrorCode, RoleRequest};
use edge_ipc::shell::{Event, Responder, Shell};
use edge_ipc::{Request, Response};
use edge_notify::Event as Notification;
use edge_util::unix_now;
use tokio::sync::mpsc;
use tokio::time::Sleep;

use super::ranges::refresh_interval;
use super::status::plan_response;
use super::{
    ADDRESS_SETTLE, COUNTERS_EVERY, STATUS_FRESH_COUNTERS_UP_TO, State, VERIFY_EVERY, Watch, build,
    reconfigure,
};
use crate::confirm::{self, Outcome};
use crate::{observe, replica};

/// A confirm-apply's outcome, from its blocking task.
type Settled = Result<Outcome, String>;

/// The senders the loop's steps hand out: to the event loop itself (a fetch of the ranges)
/// and to the confirm-apply's outcome.
pub(super) struct Channels {
    pub(super) watch: mpsc::UnboundedSender<Watch>,
    done: mpsc::UnboundedSender<Settled>,
}

/// The loop's timers besides the periodic ones.
struct Timers {
    /// Address changes settle for a moment before the forwards follow them.
    addresses_due: Pin<Box<Sleep>>,
    addresses_pending: bool,
    /// The next fetch of the origin lock's ranges.
    ranges_due: Pin<Box<Sleep>>,
}

/// Serves events until shutdown.
pub(super) async fn serve(
    st: &mut State,
    shell: &mut Shell,
    mut events: mpsc::UnboundedReceiver<Watch>,
    watch: mpsc::UnboundedSender<Watch>,
) {
    let (done, mut done_rx) = mpsc::unbounded_channel::<Settled>();
    let ch = Channels { watch, done };
    // The startup apply has just read the tables back: the first full re-check is due one
    // period later (an immediate one would race the events for the same change).
    let mut verify =
        tokio::time::interval_at(tokio::time::Instant::now() + VERIFY_EVERY, VERIFY_EVERY);
    let mut counters = tokio::time::interval(COUNTERS_EVERY);
    // The origin lock's ranges: a list older than the refresh interval (or the shipped one)
    // is fetched soon after start, then once per interval.
    let refresh = refresh_interval(shell.config());
    let age = Duration::from_secs(unix_now().saturating_sub(st.ranges.current.fetched_at));
    let first = if age >= refresh {
        Duration::from_secs(5)
    } else {
        refresh - age
    };
    let mut timers = Timers {
        addresses_due: Box::pin(tokio::time::sleep(Duration::from_secs(86_400 * 365))),
        addresses_pending: false,
        ranges_due: Box::pin(tokio::time::sleep(first)),
    };
    loop {
        tokio::select! {
            ev = shell.next() => {
                if !st.on_event(shell, ev, &ch).await {
                    break;
                }
            }
            Some(res) = done_rx.recv() => st.confirm_settled(shell, res),
            Some(first) = events.recv() => st.on_watch(shell, &mut timers, first, &mut events).await,
            () = &mut timers.addresses_due, if timers.addresses_pending => {
                timers.addresses_pending = false;
                st.follow_addresses(shell).await;
            }
            () = &mut timers.ranges_due => {
                if st.locked() {
                    st.fetch_ranges(shell, &ch.watch);
                }
                // The fetch's outcome sets the next time; until then, look again in a day.
                timers.ranges_due.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(86_400));
            }
            _ = verify.tick() => st.check_drift(shell, None).await,
            _ = counters.tick() => {
                // The role file is the safety net for a SetRole that did not arrive.
                if let Change::Changed { to, .. } = st.ha.refresh() {
                    st.follow_role(shell, to).await;
                }
                st.export_counters().await;
            }
        }
    }
}

/// An error answer.
fn failed(message: String) -> Response {
    Response::Error {
        code: ErrorCode::Failed,
        message,
    }
}

/// A done answer with a message only.
fn done(message: String) -> Response {
    Response::Done {
        message,
        detail: serde_json::Value::Null,
    }
}

impl State {
    /// One event of the shell; false on shutdown.
    async fn on_event(&mut self, shell: &mut Shell, ev: Event, ch: &Channels) -> bool {
        match ev {
            Event::Shutdown => return false,
            Event::Reloaded(cfg) => {
                self.ha.reload(&cfg);
                reconfigure(self, shell, &cfg, "reload").await;
            }
            Event::Request(req, r) => self.on_request(shell, req, r, ch).await,
        }
        true
    }

    /// One control request.
    async fn on_request(&mut self, shell: &mut Shell, req: Request, r: Responder, ch: &Channels) {
        match req {
            Request::SetRole(state) => {
                let change = self.ha.set_role(*state);
                r.send(self.ha.answer(&change));
                if let Change::Changed { to, .. } = change {
                    self.follow_role(shell, to).await;
                }
            }
            Request::Status => {
                // Fresh counters for a person looking (one dump of the state table's
                // counters, milliseconds at a home server's size); very large rulesets
                // keep the 15 s cache.
                if self.model.fw.forwards.len() <= STATUS_FRESH_COUNTERS_UP_TO {
                    self.export_counters().await;
                }
                let mut s = shell.base_status();
                s.detail = edge_ipc::Detail::Fw(Box::new(self.status()));
                s.ha = Some(self.ha.status());
                r.send(Response::Status(Box::new(s)));
            }
            Request::Plan => {
                let (sock, m, rs) = (self.sock.clone(), self.model.clone(), self.rs.clone());
                let resp = tokio::task::spawn_blocking(move || plan_response(&sock, &m, &rs)).await;
                r.send(resp.unwrap_or_else(|e| failed(e.to_string())));
            }
            Request::Apply { confirm_secs: None } => {
                match self.apply(shell, "manual apply", false).await {
                    Ok(changed) => r.send(done(if changed {
                        "ruleset applied".into()
                    } else {
                        "already converged: nothing written".into()
                    })),
                    Err(m) => r.send(failed(m)),
                }
            }
            Request::Apply {
                confirm_secs: Some(secs),
            } => self.apply_confirmed(shell, secs, r, ch).await,
            Request::Confirm => match &self.pending_confirm {
                Some(f) => {
                    f.store(true, Ordering::SeqCst);
                    r.send(done("confirmed".into()));
                }
                None => r.send(failed("nothing to confirm".into())),
            },
            Request::Role(RoleRequest::Fw(FwRequest::RefreshRanges)) => {
                if !self.locked() {
                    r.send(failed(
                        "no forward has origin_lock: there are no ranges to refresh".into(),
                    ));
                    return;
                }
                self.ranges.waiting.push(r);
                self.fetch_ranges(shell, &ch.watch);
            }
            Request::Role(RoleRequest::Fw(FwRequest::Doctor)) => {
                let sock = self.sock.clone();
                let notes = tokio::task::spawn_blocking(move || observe::doctor(&sock)).await;
                r.send(match notes {
                    Ok(Ok(n)) => Response::Done {
                        message: n
                            .iter()
                            .map(|l| format!("- {l}"))
                            .collect::<Vec<_>>()
                            .join("\n"),
                        detail: serde_json::json!(n),
                    },
                    Ok(Err(e)) => failed(edge_util::error_chain(&e)),
                    Err(e) => failed(e.to_string()),
                });
            }
            _ => r.unsupported(shell.role()),
        }
    }

    /// `edgectl fw apply --confirm SECS`: applies what the file says now and confirms it by
    /// probes (or by `edgectl fw confirm`) within `secs`, else rolls back; the outcome comes
    /// back on `ch.done`.
    async fn apply_confirmed(&mut self, shell: &mut Shell, secs: u64, r: Responder, ch: &Channels) {
        if self.pending_confirm.is_some() {
            r.send(failed(
                "a confirm-apply is already pending: `edgectl fw confirm` or wait for it".into(),
            ));
            return;
        }
        // Apply what the file says now: re-read it first.
        if let Err(d) = shell.reload() {
            r.send(Response::Error {
                code: ErrorCode::InvalidConfig,
                message: d.render(),
            });
            return;
        }
        let cfg = shell.config().clone();
        let ranges = self.ranges.current.clone();
        let active = self.active();
        let built = tokio::task::spawn_blocking(move || build(&cfg, &ranges, active)).await;
        let (nm, nrs) = match built {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                r.send(failed(format!("{e:#}")));
                return;
            }
            Err(e) => {
                r.send(failed(e.to_string()));
                return;
            }
        };
        let message = confirm_message(secs).await;
        self.rollback_to = Some((
            std::mem::replace(&mut self.model, nm),
            std::mem::replace(&mut self.rs, nrs),
            self.proven,
        ));
        let flag = Arc::new(AtomicBool::new(false));
        self.pending_confirm = Some(flag.clone());
        let (sock, m, rs) = (self.sock.clone(), self.model.clone(), self.rs.clone());
        let done_tx = ch.done.clone();
        tokio::task::spawn_blocking(move || {
            // Routes are read here, off the event loop.
            let probes = confirm::default_probes(&m);
            let res = confirm::apply_with_confirm(
                &sock,
                &m,
                &rs,
                Duration::from_secs(secs),
                &probes,
                &flag,
            )
            .map_err(|e| edge_util::error_chain(&e));
            let _ = done_tx.send(res);
        });
        r.send(done(message));
    }

    /// A confirm-apply settled: confirmed (the new ruleset is proven), or rolled back or
    /// failed (the desired state before it comes back).
    fn confirm_settled(&mut self, shell: &mut Shell, res: Settled) {
        self.pending_confirm = None;
        match res {
            Ok(Outcome::RolledBack { failures }) => {
                self.metrics.applied("rolled_back");
                let msg = format!("confirm-apply rolled back: {}", failures.join("; "));
                tracing::error!("{msg}");
                shell.push_error(msg);
                self.notifier.send(Notification::FwRolledBack {
                    reason: failures.join("; "),
                });
                // The restored tables are the desired state again.
                self.roll_back();
            }
            Ok(o) => {
                self.rollback_to = None;
                // Applied (or already live) after the proof, dry run and read-back.
                self.proven = true;
                self.metrics.applied("confirmed");
                tracing::info!(outcome = ?o, "confirm-apply settled");
            }
            Err(e) => {
                self.roll_back();
                shell.push_error(e.clone());
                tracing::error!("{e}");
                self.notifier.send(Notification::FwApplyFailed {
                    error: format!("confirm-apply: {e}"),
                });
            }
        }
    }

    /// The desired state before a confirm-apply is the desired state again.
    fn roll_back(&mut self) {
        if let Some((m, rs, proven)) = self.rollback_to.take() {
            self.model = m;
            self.rs = rs;
            self.proven = proven;
        }
    }

    /// The event threads reported: every change already queued is taken, and one repair
    /// covers them all; address changes start the settle timer; a fetch's outcome is put in
    /// force.
    async fn on_watch(
        &mut self,
        shell: &mut Shell,
        timers: &mut Timers,
        first: Watch,
        events: &mut mpsc::UnboundedReceiver<Watch>,
    ) {
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
                    if !timers.addresses_pending {
                        timers.addresses_pending = true;
                        timers
                            .addresses_due
                            .as_mut()
                            .reset(tokio::time::Instant::now() + ADDRESS_SETTLE);
                    }
                }
                Watch::Ranges(res) => {
                    let next = self.ranges_fetched(shell, res).await;
                    timers
                        .ranges_due
                        .as_mut()
                        .reset(tokio::time::Instant::now() + next);
                }
            }
            next = events.try_recv().ok();
        }
        match deleted {
            Some(c) => self.repair_deleted(shell, &c).await,
            None if other => self.check_drift(shell, by.as_deref()).await,
            None => {}
        }
    }
}

/// The reply to a confirm-apply: whether the replica, the only probe that sees a lockout,
/// can run here, so whether this apply can confirm itself.
async fn confirm_message(secs: u64) -> String {
    let replica = tokio::task::spawn_blocking(|| {
        replica::available().map_err(|e| (e, replica::denied_because()))
    })
    .await;
    match replica {
        Ok(Ok(())) => format!(
            "applying; confirming by probes within {secs}s (or `edgectl fw confirm`), else the previous ruleset comes back"
        ),
        Ok(Err((e, why))) => {
            let msg = format!(
                "applying; the replica probe, the only one that can detect a lockout, cannot run here: {} — {why}. So this apply does not confirm itself: run `edgectl fw confirm` within {secs}s, else the previous ruleset comes back",
                edge_util::error_chain(&e)
            );
            tracing::warn!("{msg}");
            msg
        }
        Err(e) => format!(
            "applying; cannot tell whether the replica probe can run ({e}): unless it runs and every probe passes, run `edgectl fw confirm` within {secs}s, else the previous ruleset comes back"
        ),
    }
}
