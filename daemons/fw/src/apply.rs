//! I/O: carries out a plan — read the live tables, [`plan`](crate::plan::plan) (anti-lockout
//! proof, zero writes when they already match, an element-only update when only elements
//! differ), in-kernel dry run, one atomic commit, read-back verify — and puts saved tables
//! back for a confirm-apply's rollback. Every write goes through one batch writer
//! ([`crate::txn`] over [`crate::nfnl::Socket`]).

use std::time::{Duration, Instant};

use crate::ir::Ruleset;
use crate::model::Model;
use crate::nfnl::{NetlinkError, Outcome, Rejection, Socket};
use crate::observe::{self, ObserveError};
use crate::plan::{self, Update};
use crate::safety::Lockout;
use crate::txn::Transaction;
use crate::wire::{self, Live};

/// Errors applying a ruleset. In every case but `Verify` nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The anti-lockout proof failed.
    #[error("{}", join(.0))]
    Lockout(Vec<Lockout>),
    /// Reading the live tables failed.
    #[error("cannot read the live tables")]
    Observe(#[from] ObserveError),
    /// Talking to nf_tables failed.
    #[error("cannot talk to nf_tables")]
    Netlink(#[from] NetlinkError),
    /// The kernel rejected the batch in the dry run (nothing changed).
    #[error("the kernel rejected the ruleset in the dry run; the live tables are unchanged:\n{}", join(.0))]
    DryRunRejected(Vec<Rejection>),
    /// The kernel rejected the commit (nothing changed: the transaction is atomic).
    #[error("the kernel rejected the commit; the live tables are unchanged:\n{}", join(.0))]
    CommitRejected(Vec<Rejection>),
    /// The committed tables do not read back as compiled.
    #[error("the live tables differ from what was applied ({} difference(s)):\n{}", .0.len(), .0.iter().take(20).cloned().collect::<Vec<_>>().join("\n"))]
    Verify(Vec<String>),
}

fn join<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|l| format!("  - {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How an apply changed the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Change {
    /// Nothing written: they already matched.
    #[default]
    None,
    /// Set elements and counters only.
    Elements,
    /// `inet edge` replaced, `inet edge_state` converged.
    Replace,
}

impl Change {
    /// `unchanged`, `elements`, `replaced`: for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::None => "unchanged",
            Change::Elements => "elements",
            Change::Replace => "replaced",
        }
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// What was written.
    pub change: Change,
    /// The dry-run batch.
    pub dry_run: Option<Outcome>,
    /// The committed batch.
    pub commit: Option<Outcome>,
    /// Time of reading the live tables before planning.
    pub read_time: Duration,
    /// Time of the dry run + commit (the kernel part).
    pub netlink_time: Duration,
    /// Time of the read-back after the commit.
    pub verify_time: Duration,
    /// Total time.
    pub total_time: Duration,
}

impl Report {
    /// False when the live tables already matched (no netlink write at all).
    pub fn changed(&self) -> bool {
        self.change != Change::None
    }
}

/// Options of one apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Replace even when the live tables already match.
    pub force: bool,
    /// Skip the anti-lockout proof (tests of the proof itself only).
    pub skip_safety: bool,
    /// Put back a ruleset that was applied and verified before and that someone deleted
    /// or changed: no anti-lockout proof and no dry run (it passed both when first
    /// applied), then read back as usual.
    pub restore: bool,
}

/// Applies `rs`: read, plan (proof), dry run, commit, verify.
pub fn apply(
    sock: &Socket,
    model: &Model,
    rs: &Ruleset,
    opts: Options,
) -> Result<Report, ApplyError> {
    let t0 = Instant::now();
    let live = observe::read_live(sock)?;
    let read_time = t0.elapsed();
    let p = plan::plan(model, rs, Some(&live));
    if !opts.skip_safety && !opts.restore && !p.allowed() {
        return Err(ApplyError::Lockout(p.lockouts));
    }
    let (tx, change) = match p.update {
        Update::Converged if !opts.force => {
            return Ok(Report {
                read_time,
                total_time: t0.elapsed(),
                ..Report::default()
            });
        }
        Update::Elements(tx) if !opts.force => (tx, Change::Elements),
        _ => (Transaction::replace(&p.want, &live), Change::Replace),
    };
    let (dry_run, commit, netlink_time) = commit(sock, &tx, !opts.restore)?;
    let tv = Instant::now();
    verify(sock, &p.want)?;
    Ok(Report {
        change,
        dry_run,
        commit: Some(commit),
        read_time,
        netlink_time,
        verify_time: tv.elapsed(),
        total_time: t0.elapsed(),
    })
}

/// Sends a transaction: a dry run first when `dry_run_first`, then the commit. Returns
/// both outcomes and the time they took.
pub fn commit(
    sock: &Socket,
    tx: &Transaction,
    dry_run_first: bool,
) -> Result<(Option<Outcome>, Outcome, Duration), ApplyError> {
    let t = Instant::now();
    let batch = sock.encode(tx);
    let dry = if dry_run_first {
        let d = sock.send_batch(tx, &batch, true)?;
        if !d.rejections.is_empty() {
            return Err(ApplyError::DryRunRejected(d.rejections));
        }
        Some(d)
    } else {
        None
    };
    let c = sock.send_batch(tx, &batch, false)?;
    if !c.rejections.is_empty() {
        return Err(ApplyError::CommitRejected(c.rejections));
    }
    Ok((dry, c, t.elapsed()))
}

/// Only the kernel's dry run of `rs` over the live tables (what `nft --check` does):
/// nothing changes either way.
pub fn dry_run(sock: &Socket, rs: &Ruleset) -> Result<Outcome, ApplyError> {
    let live = observe::read_live(sock)?;
    let tx = Transaction::replace(&crate::lower::ruleset(rs), &live);
    let d = sock.send(&tx, true)?;
    if !d.rejections.is_empty() {
        return Err(ApplyError::DryRunRejected(d.rejections));
    }
    Ok(d)
}

/// Reads our tables back and compares them with `want`; the live tables when they match.
pub fn verify(sock: &Socket, want: &wire::Ruleset) -> Result<Live, ApplyError> {
    let live = observe::read_live(sock)?;
    let changes = wire::diff(want, &live);
    if changes.is_empty() {
        Ok(live)
    } else {
        Err(ApplyError::Verify(wire::lines(&changes)))
    }
}

/// Differences between two reads of the live tables (counter values aside).
pub fn differences(before: &Live, after: &Live) -> Vec<String> {
    let mut lines = Vec::new();
    for ((name, a), (_, b)) in before.tables().into_iter().zip(after.tables()) {
        match (a, b) {
            (Some(a), b) => lines.extend(wire::lines(&wire::diff_table(a, b))),
            (None, Some(_)) => lines.push(format!("- table inet {name} (not there before)")),
            (None, None) => {}
        }
    }
    lines
}

/// Puts back tables read earlier (`saved`) in one transaction: `inet edge` exactly as it
/// was, `inet edge_state` converged to it (counters that still exist keep their values,
/// deleted ones come back with their saved values), then reads them back.
pub fn restore(sock: &Socket, saved: &Live) -> Result<(), ApplyError> {
    let now = observe::read_live(sock)?;
    let tx = Transaction::restore(saved, &now);
    commit(sock, &tx, false)?;
    let after = observe::read_live(sock)?;
    let d = differences(saved, &after);
    if d.is_empty() {
        Ok(())
    } else {
        Err(ApplyError::Verify(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_read_says_what_and_why() {
        let e = ApplyError::Observe(ObserveError::Netlink(NetlinkError::OpenSocket(
            std::io::Error::from_raw_os_error(libc::EPERM),
        )));
        let s = edge_util::error_chain(&e);
        assert!(
            s.starts_with("cannot read the live tables: cannot dump the nf_tables ruleset: cannot open the nf_tables netlink socket (edge-fw needs CAP_NET_ADMIN)"),
            "{s}"
        );
        assert!(s.ends_with("Operation not permitted (os error 1)"), "{s}");
    }
}
