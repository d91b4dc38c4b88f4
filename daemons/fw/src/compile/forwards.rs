//! The forwards' part of the compile: every forward's dispatch keys into the maps (refusing
//! two forwards that claim the same packet), its allow-list chain and its origin-lock chain.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;

use edge_config::fw::Forward;
use ipnet::IpNet;

use super::{
    CompileError, allow_chain, counter_name, fi, lock_chain, lock_counter, nets, protos,
    ranges_set, rule, saddr,
};
use crate::ir::{Chain, ElemData, Element, Expr, Family, FwdKey, L4, Origin, Rule};
use crate::model::Model;

/// FxHash (rustc's hasher): the conflict map holds one entry per dispatch key (100k at 50k
/// forwards), and SipHash's DoS resistance buys nothing for keys from our own config.
#[derive(Debug, Default, Clone, Copy)]
struct Fx(u64);

impl std::hash::Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type FxBuild = std::hash::BuildHasherDefault<Fx>;

/// One dispatch key of a forward, borrowing the interface name, with its DNAT target port.
type RawKey<'a> = (&'a str, IpAddr, L4, u16, u16);

/// Keys of a forward with their DNAT target ports: every arriving interface (plus the inside
/// interfaces with hairpin), address, protocol and port of the range.
fn forward_keys<'a>(m: &'a Model, idx: usize, f: &'a Forward) -> Vec<RawKey<'a>> {
    let mut ifaces: Vec<&str> = f.on.iter().map(|i| i.as_str()).collect();
    if f.hairpin {
        for l in &m.fw.lan {
            if !ifaces.contains(&l.as_str()) {
                ifaces.push(l.as_str());
            }
        }
    }
    let addrs: &[IpAddr] = m
        .forward_addresses
        .get(idx)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let (start, end, to_start) = (f.port.start.get(), f.port.end.get(), f.to_port.start.get());
    let mut out = Vec::with_capacity(ifaces.len() * addrs.len() * 2 * usize::from(end - start + 1));
    for iif in &ifaces {
        for daddr in addrs {
            for proto in protos(f.proto) {
                for p in start..=end {
                    out.push((*iif, *daddr, proto, p, to_start + (p - start)));
                }
            }
        }
    }
    out
}

/// What the forwards compile to: per family, the elements of each map; the allow-list
/// chains; the counters.
#[derive(Default)]
pub(super) struct Forwards {
    pub(super) fwd: [Vec<Element>; 2],
    pub(super) allow: [Vec<Element>; 2],
    pub(super) hairpin: [Vec<Element>; 2],
    pub(super) ctr: [Vec<Element>; 2],
    pub(super) lock: [Vec<Element>; 2],
    pub(super) allow_chains: Vec<Chain>,
    pub(super) lock_chains: Vec<Chain>,
    pub(super) counters: Vec<String>,
}

/// The allow-list chain of a forward restricted by `from`: one `return` per source network,
/// then a drop. A forward only sees packets of its target's family: sources of the other
/// family would be dead rules (edge-config refuses a list without any of the right family).
fn allow_list(m: &Model, f: &Forward) -> Option<Chain> {
    let fam = Family::of(f.to);
    let nets: Vec<IpNet> = nets(f.from.as_ref()?)
        .into_iter()
        .filter(|n| Family::of(n.addr()) == fam)
        .collect();
    let at = Some(m.at(f.location.line));
    let mut rules: Vec<Rule> = nets
        .iter()
        .enumerate()
        .map(|(k, n)| {
            rule(
                vec![saddr(*n), Expr::Return],
                Origin {
                    id: format!("fwd/{}/allow#{k}", f.name),
                    at: at.clone(),
                },
            )
        })
        .collect();
    rules.push(rule(
        vec![Expr::Drop],
        Origin {
            id: format!("fwd/{}/deny", f.name),
            at,
        },
    ));
    Some(Chain {
        name: allow_chain(&f.name),
        base: None,
        rules,
    })
}

/// The origin-lock chain of a forward: sources in the proxy's ranges and in its `from` list
/// return (on to the allow-list and DNAT); anything else is counted and dropped.
fn origin_lock(m: &Model, f: &Forward) -> Chain {
    let fam = Family::of(f.to);
    let at = Some(m.at(f.location.line));
    let mut rules = vec![rule(
        vec![Expr::SaddrIn(fam, ranges_set(fam)), Expr::Return],
        Origin {
            id: format!("lock/{}/cloudflare", f.name),
            at: at.clone(),
        },
    )];
    let from: Vec<IpNet> = f
        .from
        .as_deref()
        .map(nets)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| Family::of(n.addr()) == fam)
        .collect();
    for (k, n) in from.iter().enumerate() {
        rules.push(rule(
            vec![saddr(*n), Expr::Return],
            Origin {
                id: format!("lock/{}/allow#{k}", f.name),
                at: at.clone(),
            },
        ));
    }
    rules.push(rule(
        vec![Expr::CounterNamed(lock_counter(&f.name)), Expr::Drop],
        Origin {
            id: format!("lock/{}/deny", f.name),
            at,
        },
    ));
    Chain {
        name: lock_chain(&f.name),
        base: None,
        rules,
    }
}

/// Every forward's dispatch keys into the maps, refusing two forwards that claim the same
/// packet.
pub(super) fn forwards(m: &Model) -> Result<Forwards, CompileError> {
    let fw = &m.fw;
    let approx: usize = fw
        .forwards
        .iter()
        .map(|f| f.on.len() * f.port.len() as usize)
        .sum();
    let mut claimed: HashMap<(usize, IpAddr, L4, u16), usize, FxBuild> =
        HashMap::with_capacity_and_hasher(approx, FxBuild::default());
    // Interface names interned to small numbers for the conflict map.
    let mut iface_ids: Vec<&str> = Vec::new();
    let mut out = Forwards::default();
    out.fwd[0].reserve(approx);
    out.ctr[0].reserve(approx);
    for (idx, f) in fw.forwards.iter().enumerate() {
        let counter = counter_name(&f.name);
        out.counters.push(counter.clone());
        // A locked forward's `from` is the lock's escape hatch, checked in its lock chain;
        // an allow-list of its own would drop the proxy.
        let (allow, lock) = match f.origin_lock {
            Some(_) => (None, Some(origin_lock(m, f))),
            None => (allow_list(m, f), None),
        };
        let jump = allow.as_ref().map(|c| c.name.clone());
        let lock_jump = lock.as_ref().map(|c| c.name.clone());
        out.allow_chains.extend(allow);
        if lock.is_some() {
            out.counters.push(lock_counter(&f.name));
        }
        out.lock_chains.extend(lock);
        for (iif, daddr, proto, dport, to_port) in forward_keys(m, idx, f) {
            let key = FwdKey {
                iif: iif.to_owned(),
                daddr,
                proto,
                dport,
            };
            let iid = match iface_ids.iter().position(|x| *x == iif) {
                Some(i) => i,
                None => {
                    iface_ids.push(iif);
                    iface_ids.len() - 1
                }
            };
            match claimed.entry((iid, daddr, proto, dport)) {
                Entry::Occupied(o) => {
                    return Err(CompileError::DispatchConflict {
                        first: fw.forwards[*o.get()].name.clone(),
                        second: f.name.clone(),
                        at: m.at(f.location.line),
                        key: key.to_string(),
                    });
                }
                Entry::Vacant(v) => {
                    v.insert(idx);
                }
            }
            let fam = fi(Family::of(key.daddr));
            // Keys added for reflection (an inside interface, not one the forward is `on`).
            if f.hairpin && !f.on.iter().any(|o| o.as_str() == key.iif) {
                out.hairpin[fam].push(Element {
                    key: key.clone(),
                    data: ElemData::None,
                });
            }
            if let Some(j) = &jump {
                out.allow[fam].push(Element {
                    key: key.clone(),
                    data: ElemData::Jump(j.clone()),
                });
            }
            // The lock holds for the interfaces the forward is `on`; inside hosts using the
            // public address (hairpin) never come through the proxy.
            if let Some(j) = &lock_jump
                && f.on.iter().any(|o| o.as_str() == key.iif)
            {
                out.lock[fam].push(Element {
                    key: key.clone(),
                    data: ElemData::Jump(j.clone()),
                });
            }
            out.ctr[fam].push(Element {
                key: key.clone(),
                data: ElemData::Counter(counter.clone()),
            });
            out.fwd[fam].push(Element {
                key,
                data: ElemData::Target(f.to, to_port),
            });
        }
    }
    Ok(out)
}
