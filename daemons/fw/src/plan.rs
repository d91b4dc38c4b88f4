//! Pure: the one plan. `plan(model, ruleset, live)` says what the kernel will hold, how it
//! differs from what is live, how to get there (nothing, an element-only update or a
//! replace) and whether the anti-lockout proof refuses it. The daemon, `edgectl fw plan` and
//! `edge-fw --print` all call it, so they cannot disagree. Also: compiling a whole
//! configuration, and `doctor`'s explanation of the other tables hooked where ours are.

use std::collections::BTreeMap;
use std::net::IpAddr;

use edge_config::Config;

use crate::compile::{CompileError, compile};
use crate::ir::Ruleset;
use crate::lower;
use crate::model::{Model, ModelError};
use crate::observe::BaseChain;
use crate::safety::{self, Lockout};
use crate::txn::Transaction;
use crate::wire::{self, Change, Live, Presence};

/// Errors building a plan's inputs.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The model could not be built.
    #[error("cannot build the firewall model")]
    Model(#[from] ModelError),
    /// The compiler refused the model.
    #[error("cannot compile the firewall")]
    Compile(#[from] CompileError),
}

/// Model and ruleset of a configuration, given the interface addresses and the origin
/// lock's ranges.
pub fn compile_config(
    cfg: &Config,
    addrs: BTreeMap<String, Vec<IpAddr>>,
    ranges: &crate::origin::Ranges,
) -> Result<(Model, Ruleset), PlanError> {
    let mut m = Model::from_config(cfg, addrs)?;
    m.env.origin_ranges = ranges.clone();
    let rs = compile(&m)?;
    Ok((m, rs))
}

/// How the live tables become the wanted ones.
#[derive(Debug, Clone)]
pub enum Update {
    /// They match: nothing is written.
    Converged,
    /// Only set elements and counters differ: they are updated, nothing else is touched.
    Elements(Transaction),
    /// `inet edge` is replaced and `inet edge_state` converged.
    Replace(Transaction),
    /// The live tables could not be read: a replace over what they are then.
    Unknown,
}

impl Update {
    /// In words, for `edgectl fw plan`.
    pub fn describe(&self) -> String {
        match self {
            Update::Converged => "the live tables match: nothing to write".to_owned(),
            Update::Elements(t) => format!(
                "element-only update ({} message(s)): no table, chain or rule is replaced",
                t.ops.len()
            ),
            Update::Replace(t) => format!(
                "replace table inet edge and converge inet edge_state ({} message(s))",
                t.ops.len()
            ),
            Update::Unknown => "the live tables could not be read".to_owned(),
        }
    }
}

/// Everything an apply would do, and whether it may.
#[derive(Debug, Clone)]
pub struct FwPlan {
    /// What the kernel will hold.
    pub want: wire::Ruleset,
    /// Differences with the live tables (`None` when they could not be read).
    pub changes: Option<Vec<Change>>,
    /// How to get there.
    pub update: Update,
    /// Counters of forwards that no longer exist (live, not wanted): deleted by the update.
    pub stale_counters: Vec<String>,
    /// Must-pass packets the ruleset would not deliver; non-empty means refused.
    pub lockouts: Vec<Lockout>,
}

impl FwPlan {
    /// True when the ruleset passed the anti-lockout proof.
    pub fn allowed(&self) -> bool {
        self.lockouts.is_empty()
    }

    /// The differences as lines (`-` live, `+` wanted).
    pub fn diff_lines(&self) -> Vec<String> {
        self.changes.as_deref().map(wire::lines).unwrap_or_default()
    }
}

/// Plans the way from `live` (`None`: unknown) to `rs`.
pub fn plan(model: &Model, rs: &Ruleset, live: Option<&Live>) -> FwPlan {
    let want = lower::ruleset(rs);
    let lockouts = safety::check(model, rs).err().unwrap_or_default();
    let Some(live) = live else {
        return FwPlan {
            want,
            changes: None,
            update: Update::Unknown,
            stale_counters: Vec::new(),
            lockouts,
        };
    };
    let changes = wire::diff(&want, live);
    let stale_counters = changes
        .iter()
        .filter_map(|c| match c {
            Change::Counter {
                name,
                how: Presence::Extra,
                ..
            } => Some(name.clone()),
            _ => None,
        })
        .collect();
    let update = if changes.is_empty() {
        Update::Converged
    } else if let Some(tx) = Transaction::elements(&changes) {
        Update::Elements(tx)
    } else {
        Update::Replace(Transaction::replace(&want, live))
    };
    FwPlan {
        want,
        changes: Some(changes),
        update,
        stale_counters,
        lockouts,
    }
}

/// Pure: explains how other tables' base chains on our hooks interact with ours.
pub fn doctor(chains: &[BaseChain], br_netfilter: Option<bool>) -> Vec<String> {
    let mut out = Vec::new();
    for c in chains
        .iter()
        .filter(|c| !(c.family == "inet" && (c.table == "edge" || c.table == "edge_state")))
    {
        let ours = match c.hook.as_str() {
            "prerouting" => {
                "our count (-160), allow-list (mangle -150) and DNAT (dstnat -100) chains"
            }
            "input" => "our input chain (filter 0, policy from [fw.input])",
            "forward" => "our forward chain (filter 0)",
            "postrouting" => "our source-NAT chain (srcnat 100)",
            "output" => "no chain of ours (edge does not filter output)",
            _ => "no chain of ours",
        };
        let mut note = format!(
            "{} {} chain {} (type {}, hook {}, priority {}, policy {}): shares the {} hook with {}.",
            c.family, c.table, c.name, c.kind, c.hook, c.prio, c.policy, c.hook, ours
        );
        if c.table.contains("libvirt") {
            note.push_str(" libvirt rejects traffic on its own NAT networks (virbrN) in its guest_* chains; a reject/drop there is final whatever we accept, but it does not touch externally bridged br-api/br0/br1 traffic.");
        } else if c.table.contains("docker") || c.table == "filter" && c.hook == "forward" {
            note.push_str(" Docker filters forwarded traffic to its bridges; an accept in our table does not override its drop (a drop is final across tables).");
        } else if c.table.contains("kube") {
            note.push_str(" kube-proxy DNATs service addresses; if it runs on this host its dstnat chain sees packets next to ours (ours has the lower priority when equal names sort first).");
        }
        if c.policy == "drop" {
            note.push_str(
                " Its policy is DROP: anything it does not accept is dropped even if we accept it.",
            );
        }
        out.push(note);
    }
    match br_netfilter {
        Some(true) => out.push("br_netfilter is loaded with bridge-nf-call-iptables=1: frames bridged between VMs cross the inet forward hook, so a forward policy of drop would cut VM-to-VM traffic (ours is accept by default). Set [link.sysctl] bridge_nf_call_iptables = false unless you filter bridged traffic on purpose.".to_owned()),
        Some(false) => out.push("br_netfilter is loaded but bridge-nf-call-iptables=0: bridged VM traffic does not cross our chains.".to_owned()),
        None => out.push("br_netfilter is not loaded: bridged VM traffic does not cross our chains.".to_owned()),
    }
    if out.len() == 1 {
        out.insert(
            0,
            "no other table has base chains: only inet edge/edge_state filter this host."
                .to_owned(),
        );
    }
    out
}
