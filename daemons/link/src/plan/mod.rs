//! Pure: `(desired, observed) -> Plan`, the list of operations that brings the kernel to the
//! desired state, plus what must wait (NICs not plugged in yet) and what was noticed but is
//! not ours to change.
//!
//! The planner projects each operation it emits through [`crate::sim`], so later phases
//! diff against the state earlier operations leave behind. The phases run in the order the
//! kernel needs: bridges, then their addresses, then ports (with the make-before-break move
//! of an address from a NIC onto its bridge), then routes (after the addresses that make
//! their gateways reachable), then per-interface sysctls, and last the gateway checks and
//! removal of the moved addresses from the NICs.

//!
//! Submodules: `notes` holds what a plan reports besides its operations (waiting items and
//! notes), `validate` the check the apply layer runs before the first change; the planner's
//! phases live in `sysctls`, `bridges`, `ports`, `moves` and `routes`.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::model::{Desired, Link, Observed, TABLE_LOCAL};
use crate::op::Op;
use crate::sim;

mod bridges;
mod moves;
mod notes;
mod ports;
mod routes;
mod sysctls;
mod validate;

pub use notes::{Note, Severity, Waiting};
pub use validate::{Problem, validate};

use moves::Move;

/// The result of planning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Operations, in the order to apply them.
    pub ops: Vec<Op>,
    /// Things that cannot be converged yet because an interface is missing.
    pub waiting: Vec<Waiting>,
    /// Observations about state we do not own or cannot change.
    pub notes: Vec<Note>,
}

impl Plan {
    /// True when the kernel already matches the configuration.
    pub fn is_converged(&self) -> bool {
        self.ops.is_empty()
    }

    /// True when a note says part of the configuration cannot be carried out.
    pub fn has_errors(&self) -> bool {
        self.notes.iter().any(|n| n.severity() == Severity::Error)
    }
}

/// Renders the plan as a shell script with comments.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for w in &self.waiting {
            writeln!(f, "# waiting: {w}")?;
        }
        for n in &self.notes {
            writeln!(f, "# {}: {n}", n.severity())?;
        }
        if self.ops.is_empty() {
            writeln!(f, "# converged: nothing to do")?;
        }
        for op in &self.ops {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}

/// Computes the operations that converge `observed` onto `desired`.
pub fn plan(desired: &Desired, observed: &Observed) -> Plan {
    let mut p = Planner {
        desired,
        state: observed.clone(),
        plan: Plan::default(),
        blocked: BTreeSet::new(),
        moves: Vec::new(),
    };
    p.global_sysctls();
    for b in &desired.bridges {
        p.bridge(b);
    }
    for b in &desired.bridges {
        p.bridge_addresses(b);
    }
    p.stale_addresses();
    for b in &desired.bridges {
        p.ports(b);
    }
    p.routes();
    p.interface_sysctls();
    p.finish_moves();
    p.foreign_notes();
    p.plan.notes.sort();
    p.plan.notes.dedup();
    p.plan
}

/// Records a change of one setting: `want` in `set` and `have` in `was`, when `want` is
/// given and differs from `have`.
fn change<T: Copy + PartialEq>(want: Option<T>, have: T, set: &mut Option<T>, was: &mut Option<T>) {
    if let Some(v) = want.filter(|v| *v != have) {
        *set = Some(v);
        *was = Some(have);
    }
}

/// The planner's state, shared by its phases.
struct Planner<'a> {
    desired: &'a Desired,
    /// The observed state with every emitted operation applied.
    state: Observed,
    plan: Plan,
    /// Bridges that cannot be managed (their name is taken by another kind of link).
    blocked: BTreeSet<String>,
    moves: Vec<Move>,
}

impl Planner<'_> {
    fn push(&mut self, op: Op) {
        sim::apply(&mut self.state, &op);
        self.plan.ops.push(op);
    }

    fn note(&mut self, n: Note) {
        self.plan.notes.push(n);
    }

    fn link(&self, name: &str) -> Option<&Link> {
        self.state.links.get(name)
    }

    /// Sets link `name` (observed as `l`) to `mtu` when given, and up when it is down.
    fn mtu_and_up(&mut self, name: &str, mtu: Option<u32>, l: &Link) {
        if let Some(m) = mtu {
            self.push(Op::SetMtu {
                link: name.to_owned(),
                mtu: m,
                was: l.mtu,
            });
        }
        if !l.up {
            self.push(Op::SetUp {
                link: name.to_owned(),
            });
        }
    }

    fn foreign_notes(&mut self) {
        let mut notes = Vec::new();
        for b in &self.desired.bridges {
            for a in self.state.addresses.iter().filter(|a| a.dev == b.name) {
                if !a.is_ours()
                    && !a.is_kernel_managed()
                    && !b.addresses.contains(&a.net)
                    && !self.desired.is_virtual(&a.dev, a.net.addr())
                {
                    notes.push(Note::ForeignAddress {
                        dev: a.dev.clone(),
                        net: a.net,
                        proto: a.proto,
                    });
                }
            }
            for r in self.state.routes.iter() {
                if r.dev.as_deref() == Some(b.name.as_str())
                    && !r.is_ours()
                    && !r.is_kernel()
                    && r.table != TABLE_LOCAL
                {
                    notes.push(Note::ForeignRoute { route: r.clone() });
                }
            }
        }
        self.plan.notes.extend(notes);
    }
}
