//! Offline entry points shared by `edgectl fw` and `edge-fw --print`: compile a whole
//! configuration, prove it safe, diff it against the live tables, and explain the other
//! tables hooked where ours are (`doctor`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use edge_config::Config;

use crate::compile::{CompileError, compile};
use crate::ir::Ruleset;
use crate::model::{Model, ModelError};
use crate::observe::BaseChain;

/// Errors of the offline entry points.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The model could not be built.
    #[error("cannot build the firewall model")]
    Model(#[from] ModelError),
    /// The compiler refused the model.
    #[error("cannot compile the firewall")]
    Compile(#[from] CompileError),
}

/// Model and ruleset of a configuration, given the interface addresses.
pub fn compile_config(
    cfg: &Config,
    addrs: BTreeMap<String, Vec<IpAddr>>,
) -> Result<(Model, Ruleset), PlanError> {
    let m = Model::from_config(cfg, addrs)?;
    let rs = compile(&m)?;
    Ok((m, rs))
}

/// I/O: reads the live base chains and the bridge-netfilter setting, then [`doctor`].
pub fn doctor_live() -> Result<Vec<String>, crate::observe::ObserveError> {
    let chains = crate::observe::base_chains()?;
    let brnf = crate::observe::br_netfilter_loaded().then(|| {
        crate::observe::sysctl("/proc/sys/net/bridge/bridge-nf-call-iptables").as_deref()
            == Some("1")
    });
    Ok(doctor(&chains, brnf))
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
