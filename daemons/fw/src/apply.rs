//! I/O: applies a compiled ruleset — anti-lockout proof, compare with the live tables (zero
//! writes when they already match), in-kernel dry run, one atomic commit, read-back verify —
//! and restores a saved previous ruleset for confirm/rollback.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ir::{Ruleset, STATE_TABLE, TABLE};
use crate::model::Model;
use crate::netlink::{NetlinkError, Outcome, Plan, Rejection, Socket};
use crate::normalize::{line_diff, normalize};
use crate::observe::{self, ObserveError};
use crate::safety::{self, Lockout};

/// An error with its causes, `what: why: why`, as a log line or an answer shows it.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Errors applying a ruleset. In every case but `Verify` nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The anti-lockout proof failed.
    #[error("{}", join_lockouts(.0))]
    Lockout(Vec<Lockout>),
    /// Reading the live tables failed.
    #[error("cannot read the live tables")]
    Observe(#[from] ObserveError),
    /// Talking to nf_tables failed.
    #[error("cannot talk to nf_tables")]
    Netlink(#[from] NetlinkError),
    /// The kernel rejected the batch in the dry run (nothing changed).
    #[error("the kernel rejected the ruleset in the dry run; the live tables are unchanged:\n{}", join_rejections(.0))]
    DryRunRejected(Vec<Rejection>),
    /// The kernel rejected the commit (nothing changed: the transaction is atomic).
    #[error("the kernel rejected the commit; the live tables are unchanged:\n{}", join_rejections(.0))]
    CommitRejected(Vec<Rejection>),
    /// The committed table does not read back as compiled.
    #[error("the live table inet {table} differs from what was applied ({} lines):\n{}", .diff.len(), .diff.iter().take(20).cloned().collect::<Vec<_>>().join("\n"))]
    Verify {
        /// The table that differs.
        table: String,
        /// `-` live / `+` expected lines.
        diff: Vec<String>,
    },
    /// Restoring a previous ruleset with `nft -f` failed.
    #[error("cannot restore the previous ruleset: {0}")]
    Restore(String),
}

fn join_lockouts(v: &[Lockout]) -> String {
    v.iter()
        .map(|l| format!("  - {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn join_rejections(v: &[Rejection]) -> String {
    v.iter()
        .map(|r| format!("  - {r}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What an apply did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// False when the live tables already matched (no netlink write at all).
    pub changed: bool,
    /// The dry-run batch.
    pub dry_run: Option<Outcome>,
    /// The committed batch.
    pub commit: Option<Outcome>,
    /// Time of the dry run + commit (the kernel part).
    pub netlink_time: Duration,
    /// Total time including read-backs.
    pub total_time: Duration,
}

/// The live texts of our two tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// `nft list table inet edge`, if it exists.
    pub edge: Option<String>,
    /// `nft list table inet edge_state`, if it exists.
    pub state: Option<String>,
}

impl Live {
    /// Reads both tables.
    ///
    /// Equivalent to: `nft list table inet edge; nft list table inet edge_state`.
    pub fn read() -> Result<Self, ObserveError> {
        Ok(Self {
            edge: observe::list_table(TABLE)?,
            state: observe::list_table(STATE_TABLE)?,
        })
    }

    /// Differences between the live tables and a ruleset (`-` live, `+` expected); empty when
    /// they match after normalisation.
    pub fn diff(&self, rs: &Ruleset) -> Vec<String> {
        let mut d = line_diff(
            &normalize(self.edge.as_deref().unwrap_or("")),
            &normalize(&rs.edge.to_string()),
        );
        d.extend(line_diff(
            &normalize(self.state.as_deref().unwrap_or("")),
            &normalize(&rs.state.to_string()),
        ));
        d
    }

    /// The `nft -f` script that puts these tables back exactly: `inet edge` replaced by its
    /// saved text; `inet edge_state` emptied (maps, chains) and re-declared, so counters that
    /// still exist keep their values and deleted ones come back with their saved values.
    pub fn restore_script(&self, extra_counters: &[String]) -> String {
        let mut s = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
        if let Some(e) = &self.edge {
            s.push_str(e);
        }
        if let Some(st) = &self.state {
            s.push_str(&format!("table inet {STATE_TABLE}\n"));
            let lines: Vec<&str> = st.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let t = line.trim();
                for kw in ["map", "set", "chain"] {
                    if let Some(name) = t
                        .strip_prefix(kw)
                        .and_then(|r| r.strip_prefix(' '))
                        .and_then(|r| r.strip_suffix(" {"))
                    {
                        // Declare (with its type) before flushing: a flush of a missing
                        // object fails, and the current table may lack it.
                        let ty = lines
                            .get(i + 1)
                            .map(|l| l.trim())
                            .filter(|l| l.starts_with("type "))
                            .map(|l| format!(" {{ {}{} }}", l.trim_end_matches(';'), ";"))
                            .unwrap_or_default();
                        s.push_str(&format!("add {kw} inet {STATE_TABLE} {name}{ty}\n"));
                        s.push_str(&format!("flush {kw} inet {STATE_TABLE} {name}\n"));
                    }
                }
            }
            // Counters created since the save go (their map elements were just flushed).
            for c in extra_counters {
                s.push_str(&format!("delete counter inet {STATE_TABLE} {c}\n"));
            }
            s.push_str(st);
        }
        s
    }
}

/// Options of one apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Apply even when the live tables already match.
    pub force: bool,
    /// Skip the anti-lockout proof (tests of the proof itself only).
    pub skip_safety: bool,
    /// Stop after the dry run.
    pub dry_run_only: bool,
    /// Restore a ruleset that was applied and verified before and whose tables someone
    /// deleted: commit it at once — no anti-lockout proof, no read before writing, no dry
    /// run (it passed all three when first applied) — then read it back as usual.
    pub restore: bool,
}

/// Applies `rs`: proof, compare, dry run, commit, verify.
pub fn apply(model: &Model, rs: &Ruleset, opts: Options) -> Result<Report, ApplyError> {
    let t0 = Instant::now();
    if opts.restore {
        // Counters of the state table, if it survived, are the ones `rs` wants (a foreign
        // extra one shows in the read-back and is removed by the next full apply).
        let report = commit_plan(&Plan::install(rs, &[]), Commit::Only, t0)?;
        verify(rs)?;
        return Ok(Report {
            total_time: t0.elapsed(),
            ..report
        });
    }
    if !opts.skip_safety {
        safety::check(model, rs).map_err(ApplyError::Lockout)?;
    }
    let live = Live::read()?;
    if !opts.force && live.diff(rs).is_empty() && live.edge.is_some() {
        return Ok(Report {
            changed: false,
            total_time: t0.elapsed(),
            ..Report::default()
        });
    }
    let wanted: Vec<&str> = rs.state.counters.iter().map(String::as_str).collect();
    let stale: Vec<String> = live
        .state
        .as_deref()
        .map(observe::counters_in)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.name)
        .filter(|n| !wanted.contains(&n.as_str()))
        .collect();
    let plan = Plan::install(rs, &stale);
    let mode = if opts.dry_run_only {
        Commit::DryRunOnly
    } else {
        Commit::AfterDryRun
    };
    let report = commit_plan(&plan, mode, t0)?;
    if opts.dry_run_only {
        return Ok(report);
    }
    verify(rs)?;
    Ok(Report {
        total_time: t0.elapsed(),
        ..report
    })
}

/// How [`commit_plan`] sends a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Dry run, then commit.
    AfterDryRun,
    /// Dry run only.
    DryRunOnly,
    /// Commit without a dry run (a rejected commit changes nothing either: it is atomic).
    Only,
}

/// Dry run then commit of a prepared plan (or one of them, see [`Commit`]).
pub fn commit_plan(plan: &Plan, mode: Commit, t0: Instant) -> Result<Report, ApplyError> {
    let sock = Socket::open()?;
    let tn = Instant::now();
    let dry = if mode == Commit::Only {
        None
    } else {
        let dry = sock.send(plan, true)?;
        if !dry.rejections.is_empty() {
            return Err(ApplyError::DryRunRejected(dry.rejections));
        }
        Some(dry)
    };
    if mode == Commit::DryRunOnly {
        return Ok(Report {
            changed: false,
            dry_run: dry,
            commit: None,
            netlink_time: tn.elapsed(),
            total_time: t0.elapsed(),
        });
    }
    let commit = sock.send(plan, false)?;
    if !commit.rejections.is_empty() {
        return Err(ApplyError::CommitRejected(commit.rejections));
    }
    Ok(Report {
        changed: true,
        dry_run: dry,
        commit: Some(commit),
        netlink_time: tn.elapsed(),
        total_time: t0.elapsed(),
    })
}

/// Reads our tables back and compares them with `rs`.
///
/// A large set that was just filled is still being resized by the kernel (its rhashtable
/// grows in a deferred worker), and a dump that spans the resize can skip elements: the
/// dump resumes by counting elements in a table whose order changed. So a difference is
/// read again, twice, after short pauses before it is an error (seen at 50,000 forwards,
/// never at the reference host's size).
pub fn verify(rs: &Ruleset) -> Result<(), ApplyError> {
    let want = [
        (TABLE, normalize(&rs.edge.to_string())),
        (STATE_TABLE, normalize(&rs.state.to_string())),
    ];
    let mut pauses = [Duration::from_millis(100), Duration::from_millis(400)].into_iter();
    loop {
        let live = Live::read()?;
        let diff = want.iter().find_map(|(table, want)| {
            let have = if *table == TABLE {
                live.edge.as_deref()
            } else {
                live.state.as_deref()
            };
            let d = line_diff(&normalize(have.unwrap_or("")), want);
            (!d.is_empty()).then_some((*table, d))
        });
        let Some((table, diff)) = diff else {
            return Ok(());
        };
        match pauses.next() {
            Some(p) => std::thread::sleep(p),
            None => {
                return Err(ApplyError::Verify {
                    table: table.to_owned(),
                    diff,
                });
            }
        }
    }
}

/// Runs `nft -f -` with a script (used to restore a saved previous ruleset byte for byte).
///
/// Equivalent to: `nft -f - < script`.
pub fn nft_file(script: &str) -> Result<(), ApplyError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ApplyError::Restore(format!("cannot run nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| ApplyError::Restore(format!("cannot write to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| ApplyError::Restore(format!("nft did not finish: {e}")))?;
    if !out.status.success() {
        return Err(ApplyError::Restore(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

/// Puts saved tables back (atomically: one `nft -f` transaction), removing counters that
/// were created after the save.
pub fn restore(prev: &Live) -> Result<(), ApplyError> {
    let now = Live::read()?;
    let keep: Vec<String> = prev
        .state
        .as_deref()
        .map(observe::counters_in)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.name)
        .collect();
    let extra: Vec<String> = now
        .state
        .as_deref()
        .map(observe::counters_in)
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.name)
        .filter(|n| !keep.contains(n))
        .collect();
    nft_file(&prev.restore_script(&extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_read_back_says_which_command_and_why() {
        let e = ApplyError::Observe(ObserveError::Spawn {
            cmd: "nft -j list table inet edge".to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
        let s = error_chain(&e);
        assert!(
            s.starts_with("cannot read the live tables: cannot run `nft -j list table inet edge`"),
            "{s}"
        );
        assert!(s.contains("nftables and iproute2"), "{s}");
        assert!(s.ends_with("entity not found"), "{s}");
    }
}
