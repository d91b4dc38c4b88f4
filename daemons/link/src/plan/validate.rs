//! The check a plan passes before the apply layer makes its first change.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::model::{Desired, OWNER_PROTO, Observed};
use crate::op::{NewBridge, Op};

/// A reason a plan must not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Index of the operation in the plan.
    pub op: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "operation {}: {}", self.op + 1, self.message)
    }
}

/// Checks a plan before its first change: it names no protected interface, uses only
/// interfaces that exist or that an earlier operation creates, never deletes a link, and
/// removes only objects we own (or, in an address move, the moved port's).
pub fn validate(ops: &[Op], desired: &Desired, observed: &Observed) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut known: BTreeSet<String> = observed.links.keys().cloned().collect();
    let is_port = |name: &str| desired.bridge_of_port(name).is_some();
    for (i, op) in ops.iter().enumerate() {
        let mut bad = |message: String| problems.push(Problem { op: i, message });
        for name in op.interfaces() {
            if desired.is_protected(name) {
                bad(format!("`{op}` names protected interface `{name}`"));
            }
        }
        if op.is_rollback_only() {
            bad(format!("`{op}` may only appear in a rollback"));
        }
        if let Op::CreateBridge(NewBridge { name, .. }) = op {
            known.insert(name.clone());
        } else {
            for name in op.interfaces() {
                if !known.contains(name) {
                    bad(format!("`{op}` uses `{name}`, which does not exist"));
                }
            }
        }
        match op {
            Op::DelAddress { dev, proto, .. } if *proto != OWNER_PROTO && !is_port(dev) => {
                bad(format!("`{op}` removes an address we do not own"));
            }
            Op::DelRoute { route } if !route.is_ours() => {
                bad(format!("`{op}` removes a route we do not own"));
            }
            Op::ReplaceRoute { was, .. }
                if !was.is_ours() && !was.dev.as_deref().is_some_and(is_port) =>
            {
                bad(format!("`{op}` replaces a route we do not own"));
            }
            _ => {}
        }
    }
    problems
}
