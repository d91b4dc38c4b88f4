//! Pure: compiles the [`Model`] into our two tables.
//!
//! Port-forwards are dispatched by ONE map lookup keyed by
//! `iifname . ip daddr . meta l4proto . th dport` (a hash map: constant cost per packet,
//! whatever the number of forwards). Source allow-lists are one verdict-map lookup on the same
//! key that jumps to the forward's own small chain. Per-forward packet/byte counters are named
//! counter objects in `inet edge_state`, selected by an objref map on the same key, so they
//! survive every reload of `inet edge`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;

use edge_config::fw::{Forward, Policy, Proto, SourceSet};
use edge_config::ha::CONNTRACKD_PORT;
use ipnet::IpNet;

use crate::ir::{
    AddrSet, Base, Chain, ChainKind, ElemData, Element, Expr, Family, FwdKey, Hook, L4, Origin,
    Rule, Ruleset, STATE_TABLE, Set, SetKind, TABLE, Table, ct_state,
};
use crate::model::Model;

/// Priority of the state table's counting chain: before the allow-list check.
pub const PRIO_COUNT: i32 = -160;
/// Priority of the origin-lock chain (in the state table): after counting, before the
/// allow-lists.
pub const PRIO_LOCK: i32 = -155;
/// Priority of the allow-list chain: before DNAT (`dstnat`, -100) so `daddr` is the original.
pub const PRIO_ALLOW: i32 = -150;
/// Priority of the DNAT chain.
pub const PRIO_DSTNAT: i32 = -100;
/// Priority of the input and forward filter chains.
pub const PRIO_FILTER: i32 = 0;
/// Priority of the source-NAT chain.
pub const PRIO_SRCNAT: i32 = 100;

/// Packet mark bit set on hairpin (reflected) connections before DNAT, so source NAT can
/// recognise them in postrouting, where the input interface is no longer known.
pub const HAIRPIN_MARK: u32 = 0x1000_0000;

/// ICMP types admitted when `icmp = true` (errors and echo).
pub const ICMP_TYPES: [u8; 4] = [3, 8, 11, 12];
/// ICMPv6 types admitted when `icmp = true` (errors, echo, neighbour discovery).
pub const ICMPV6_TYPES: [u8; 9] = [1, 2, 3, 4, 128, 133, 134, 135, 136];
/// ICMPv6 neighbour discovery (router/neighbour solicitation and advertisement), admitted
/// even with `icmp = false`: without it no IPv6 neighbour can resolve the host's address
/// (conntrack leaves these untracked, so `established` does not cover them).
pub const ICMPV6_ND: [u8; 4] = [133, 134, 135, 136];

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

/// Errors compiling a model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    /// Two forwards claim the same packet (possible through hairpin's inside interfaces).
    #[error("forwards `{first}` and `{second}` ({at}) both claim packets {key}")]
    DispatchConflict {
        /// The forward compiled first.
        first: String,
        /// The forward that collides with it.
        second: String,
        /// `FILE:LINE` of the second.
        at: String,
        /// The colliding key in nft syntax.
        key: String,
    },
}

/// The counter object name of a forward.
pub fn counter_name(forward: &str) -> String {
    format!("fwd_{forward}")
}

/// The allow-list chain name of a forward.
pub fn allow_chain(forward: &str) -> String {
    format!("allow_{forward}")
}

/// The origin-lock chain name of a forward.
pub fn lock_chain(forward: &str) -> String {
    format!("lock_{forward}")
}

/// The counter of a locked forward's dropped direct hits.
pub fn lock_counter(forward: &str) -> String {
    format!("lockdrop_{forward}")
}

/// The name of the set of the origin lock's prefixes of a family (`cf4`, `cf6`).
pub fn ranges_set(f: Family) -> String {
    format!("cf{}", f.suffix())
}

fn protos(p: Proto) -> Vec<L4> {
    match p {
        Proto::Tcp => vec![L4::Tcp],
        Proto::Udp => vec![L4::Udp],
        Proto::Both => vec![L4::Tcp, L4::Udp],
    }
}

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

fn nets(sources: &[SourceSet]) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = sources
        .iter()
        .flat_map(|s| s.nets.iter().copied())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// `ip saddr NET`, or the bare family for a /0.
fn saddr(net: IpNet) -> Expr {
    if net.prefix_len() == 0 {
        Expr::NfProto(Family::of(net.addr()))
    } else {
        Expr::Saddr(net)
    }
}

fn rule(exprs: Vec<Expr>, origin: Origin) -> Rule {
    Rule { exprs, origin }
}

fn base(kind: ChainKind, hook: Hook, priority: i32, accept: bool) -> Option<Base> {
    Some(Base {
        kind,
        hook,
        priority,
        accept,
    })
}

/// Compiles the model into `inet edge` and `inet edge_state`. Deterministic: the same model
/// always yields the same ruleset, element for element. One function per chain, in the
/// order the chains are created.
pub fn compile(m: &Model) -> Result<Ruleset, CompileError> {
    let mut f = forwards(m)?;
    let mut edge = Table::new(TABLE);
    let mut state = Table::new(STATE_TABLE);
    state.counters = std::mem::take(&mut f.counters);
    for fam in FAMILIES {
        let i = fi(fam);
        let sfx = fam.suffix();
        let [fwd, allow, hairpin, ctr, lock] = [
            &mut f.fwd,
            &mut f.allow,
            &mut f.hairpin,
            &mut f.ctr,
            &mut f.lock,
        ]
        .map(|v| std::mem::take(&mut v[i]));
        push_set(&mut edge, format!("fwd{sfx}"), fam, SetKind::Target, fwd);
        push_set(
            &mut edge,
            format!("allow{sfx}"),
            fam,
            SetKind::Verdict,
            allow,
        );
        push_set(
            &mut edge,
            format!("hairpin{sfx}"),
            fam,
            SetKind::Set,
            hairpin,
        );
        push_set(
            &mut state,
            format!("fwd{sfx}_ctr"),
            fam,
            SetKind::Counter,
            ctr,
        );
        push_set(
            &mut state,
            format!("lock{sfx}"),
            fam,
            SetKind::Verdict,
            lock,
        );
        // With any forward locked, both families' ranges are loaded (and refreshed together).
        if !f.lock_chains.is_empty() {
            let r = &m.env.origin_ranges;
            let nets = if fam == Family::V4 { &r.v4 } else { &r.v6 };
            state
                .addr_sets
                .push(AddrSet::new(&ranges_set(fam), fam, nets));
        }
    }
    edge.chains.extend(prefilter_chain(&edge));
    edge.chains.extend(f.allow_chains);
    edge.chains.extend(prerouting_chain(&edge));
    edge.chains.push(input_chain(m));
    edge.chains.push(forward_chain(m));
    edge.chains.extend(postrouting_chain(m, &edge));
    state.chains.extend(count_chain(&state));
    state.chains.extend(origin_chain(&state));
    state.chains.extend(f.lock_chains);
    Ok(Ruleset { edge, state })
}

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

fn fi(f: Family) -> usize {
    usize::from(f == Family::V6)
}

/// What the forwards compile to: per family, the elements of each map; the allow-list
/// chains; the counters.
#[derive(Default)]
struct Forwards {
    fwd: [Vec<Element>; 2],
    allow: [Vec<Element>; 2],
    hairpin: [Vec<Element>; 2],
    ctr: [Vec<Element>; 2],
    lock: [Vec<Element>; 2],
    allow_chains: Vec<Chain>,
    lock_chains: Vec<Chain>,
    counters: Vec<String>,
}

/// A set of `t` named `name` with these elements, when there are any.
fn push_set(t: &mut Table, name: String, family: Family, kind: SetKind, elements: Vec<Element>) {
    if elements.is_empty() {
        return;
    }
    let kw = if kind == SetKind::Set { "set" } else { "map" };
    t.sets.push(Set {
        id: format!("{kw} {name}"),
        name,
        family,
        kind,
        elements,
    });
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
fn forwards(m: &Model) -> Result<Forwards, CompileError> {
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

/// One rule per family whose set `name(family)` exists in `t`: the per-family helper of
/// every chain that dispatches through a set.
fn per_family(
    t: &Table,
    name: impl Fn(Family) -> String,
    make: impl Fn(Family, String) -> Rule,
) -> Vec<Rule> {
    FAMILIES
        .iter()
        .filter_map(|f| {
            let n = name(*f);
            t.set(&n).is_some().then(|| make(*f, n))
        })
        .collect()
}

/// A chain when it has rules.
fn chain_if(name: &str, base: Option<Base>, rules: Vec<Rule>) -> Option<Chain> {
    (!rules.is_empty()).then(|| Chain {
        name: name.to_owned(),
        base,
        rules,
    })
}

/// Before DNAT: allow-lists (one vmap lookup per family), hairpin marks (one set lookup).
fn prefilter_chain(edge: &Table) -> Option<Chain> {
    let mut rules = per_family(
        edge,
        |f| format!("allow{}", f.suffix()),
        |f, n| {
            rule(
                vec![Expr::Vmap(f, n)],
                Origin::builtin(format!("fwd/allow{}", f.suffix())),
            )
        },
    );
    rules.extend(per_family(
        edge,
        |f| format!("hairpin{}", f.suffix()),
        |f, n| {
            rule(
                vec![Expr::InSet(f, n), Expr::SetMark(HAIRPIN_MARK)],
                Origin::builtin(format!("fwd/hairpin-mark{}", f.suffix())),
            )
        },
    ));
    chain_if(
        "prefilter",
        base(ChainKind::Filter, Hook::Prerouting, PRIO_ALLOW, true),
        rules,
    )
}

/// DNAT: one map lookup per family.
fn prerouting_chain(edge: &Table) -> Option<Chain> {
    let rules = per_family(
        edge,
        |f| format!("fwd{}", f.suffix()),
        |f, n| {
            rule(
                vec![Expr::DnatMap(f, n)],
                Origin::builtin(format!("fwd/dispatch{}", f.suffix())),
            )
        },
    );
    chain_if(
        "prerouting",
        base(ChainKind::Nat, Hook::Prerouting, PRIO_DSTNAT, true),
        rules,
    )
}

/// Input: established, invalid, loopback, ICMP, then `[[fw.input.allow]]`.
fn input_chain(m: &Model) -> Chain {
    let fw = &m.fw;
    let mut input = vec![
        rule(
            vec![
                Expr::CtState(ct_state::ESTABLISHED | ct_state::RELATED),
                Expr::Accept,
            ],
            Origin::builtin("base/established"),
        ),
        rule(
            vec![Expr::CtState(ct_state::INVALID), Expr::Drop],
            Origin::builtin("base/invalid"),
        ),
        rule(
            vec![Expr::Iifname("lo".to_owned()), Expr::Accept],
            Origin::builtin("base/loopback"),
        ),
    ];
    if fw.input.icmp {
        for t in ICMP_TYPES {
            input.push(rule(
                vec![Expr::IcmpType(t), Expr::Accept],
                Origin::builtin(format!("icmp/{t}")),
            ));
        }
    }
    let icmpv6: &[u8] = if fw.input.icmp {
        &ICMPV6_TYPES
    } else {
        &ICMPV6_ND
    };
    for t in icmpv6 {
        input.push(rule(
            vec![Expr::Icmpv6Type(*t), Expr::Accept],
            Origin::builtin(format!("icmpv6/{t}")),
        ));
    }
    input.extend(pair_input(m));
    for r in &fw.input.allow {
        let at = Some(m.at(r.location.line));
        let ifaces: Vec<Option<&str>> = if r.interfaces.is_empty() {
            vec![None]
        } else {
            r.interfaces.iter().map(|i| Some(i.as_str())).collect()
        };
        let sources: Vec<Option<IpNet>> = match &r.from {
            None => vec![None],
            Some(s) => nets(s).into_iter().map(Some).collect(),
        };
        let mut k = 0;
        for iif in &ifaces {
            for src in &sources {
                for proto in protos(r.proto) {
                    let mut e = Vec::new();
                    if let Some(i) = iif {
                        e.push(Expr::Iifname((*i).to_owned()));
                    }
                    if let Some(n) = src {
                        e.push(saddr(*n));
                    }
                    e.push(Expr::Dport(proto, r.port.start.get(), r.port.end.get()));
                    e.push(Expr::Accept);
                    input.push(rule(
                        e,
                        Origin {
                            id: format!("in/{}#{k}", r.name),
                            at: at.clone(),
                        },
                    ));
                    k += 1;
                }
            }
        }
    }
    Chain {
        name: "input".to_owned(),
        base: base(
            ChainKind::Filter,
            Hook::Input,
            PRIO_FILTER,
            fw.input.policy == Policy::Accept,
        ),
        rules: input,
    }
}

/// Two hosts under keepalived: the peer's VRRP adverts and conntrackd's sync, from its own
/// address on the VRRP interface, are admitted (before the first advert of each host an
/// advert is not `established`, and without it both hosts would claim master).
fn pair_input(m: &Model) -> Vec<Rule> {
    let Some(p) = &m.env.pair else {
        return Vec::new();
    };
    let from = IpNet::from(p.peer);
    let mut rules = vec![rule(
        vec![
            Expr::Iifname(p.interface.clone()),
            saddr(from),
            Expr::L4Proto(VRRP),
            Expr::Accept,
        ],
        Origin::builtin("ha/vrrp"),
    )];
    if p.conntrackd {
        rules.push(rule(
            vec![
                Expr::Iifname(p.interface.clone()),
                saddr(from),
                Expr::Dport(L4::Udp, CONNTRACKD_PORT, CONNTRACKD_PORT),
                Expr::Accept,
            ],
            Origin::builtin("ha/conntrackd"),
        ));
    }
    rules
}

/// IP protocol number of VRRP.
const VRRP: u8 = 112;

/// TCP through the WireGuard interface, both ways, gets its maximum segment size clamped to
/// what fits the tunnel's MTU (IPv4 and TCP headers: 40 bytes; IPv6: 60): without it, a
/// peer whose path drops ICMP "packet too big" sees connections open and then stall.
fn mss_clamp(m: &Model) -> Vec<Rule> {
    let Some((wg, mtu)) = &m.env.wg_mtu else {
        return Vec::new();
    };
    let mut rules = Vec::new();
    for (dir, iface) in [
        ("out", Expr::Oifname(wg.clone())),
        ("in", Expr::Iifname(wg.clone())),
    ] {
        for (fam, overhead) in [(Family::V4, 40), (Family::V6, 60)] {
            let mss = u16::try_from(mtu.saturating_sub(overhead)).unwrap_or(u16::MAX);
            rules.push(rule(
                vec![
                    iface.clone(),
                    Expr::NfProto(fam),
                    Expr::TcpSyn,
                    Expr::MssAbove(mss),
                    Expr::SetMss(mss),
                ],
                Origin::builtin(format!("mss/{dir}{}", fam.suffix())),
            ));
        }
    }
    rules
}

/// Forward: clamp TCP's segment size through WireGuard, admit port-forwards; with a drop
/// policy, let the inside out.
fn forward_chain(m: &Model) -> Chain {
    let fw = &m.fw;
    let mut rules = mss_clamp(m);
    rules.extend([rule(
        vec![
            Expr::CtState(ct_state::ESTABLISHED | ct_state::RELATED),
            Expr::Accept,
        ],
        Origin::builtin("routed/established"),
    )]);
    // The BACKUP of a pair drops new forwarded flows (never rejects them: a reset would
    // reach a client whose flow the master may still carry); the master admits them once
    // conntrackd has committed the peer's connections.
    if m.env.pair.as_ref().is_some_and(|p| !p.active) {
        rules.push(rule(
            vec![Expr::CtState(ct_state::NEW), Expr::Drop],
            Origin::builtin("ha/standby"),
        ));
    }
    rules.push(rule(
        vec![Expr::CtStatusDnat, Expr::Accept],
        Origin::builtin("routed/port-forwards"),
    ));
    if fw.routed.policy == Policy::Drop {
        for i in fw.lan.iter().chain(fw.vpn.iter()) {
            rules.push(rule(
                vec![Expr::Iifname(i.as_str().to_owned()), Expr::Accept],
                Origin::builtin(format!("routed/from-{i}")),
            ));
        }
    }
    Chain {
        name: "forward".to_owned(),
        base: base(
            ChainKind::Filter,
            Hook::Forward,
            PRIO_FILTER,
            fw.routed.policy == Policy::Accept,
        ),
        rules,
    }
}

/// Source NAT: hairpin reflection, then `[[fw.masquerade]]`.
fn postrouting_chain(m: &Model, edge: &Table) -> Option<Chain> {
    let mut post = Vec::new();
    if edge.set("hairpin4").is_some() || edge.set("hairpin6").is_some() {
        post.push(rule(
            vec![
                Expr::CtStatusDnat,
                Expr::MarkBit(HAIRPIN_MARK),
                Expr::Masquerade,
            ],
            Origin::builtin("fwd/hairpin"),
        ));
    }
    for mq in &m.fw.masquerade {
        let at = Some(m.at(mq.location.line));
        let sources: Vec<Option<IpNet>> = match &mq.from {
            None => vec![None],
            Some(s) => nets(s).into_iter().map(Some).collect(),
        };
        let mut k = 0;
        for out in &mq.out {
            for src in &sources {
                let mut e = vec![Expr::Oifname(out.as_str().to_owned())];
                if let Some(n) = src {
                    e.push(saddr(*n));
                }
                // The master's egress leaves from the virtual address, which the other
                // host takes over with the connections (conntrackd).
                if let Some(vip) = active_vip(m, out.as_str())
                    && src.is_none_or(|n| n.addr().is_ipv4() == vip.is_ipv4())
                {
                    let mut s = e.clone();
                    if src.is_none() {
                        s.push(Expr::NfProto(Family::of(vip)));
                    }
                    s.push(Expr::Snat(vip));
                    post.push(rule(
                        s,
                        Origin {
                            id: format!("masq/{}#{k}/vip", mq.name),
                            at: at.clone(),
                        },
                    ));
                }
                e.push(Expr::Masquerade);
                post.push(rule(
                    e,
                    Origin {
                        id: format!("masq/{}#{k}", mq.name),
                        at: at.clone(),
                    },
                ));
                k += 1;
            }
        }
    }
    chain_if(
        "postrouting",
        base(ChainKind::Nat, Hook::Postrouting, PRIO_SRCNAT, true),
        post,
    )
}

/// The virtual address egress through `out` is translated to: the pair's master only.
fn active_vip(m: &Model, out: &str) -> Option<IpAddr> {
    let p = m.env.pair.as_ref()?;
    (p.active && p.interface == out).then_some(p.vip?)
}

/// The state table's origin-lock chain: a new connection for a locked forward's key jumps to
/// that forward's lock chain (established flows are never re-checked, so a range update
/// leaves them alone).
fn origin_chain(state: &Table) -> Option<Chain> {
    let rules = per_family(
        state,
        |f| format!("lock{}", f.suffix()),
        |f, n| {
            rule(
                vec![Expr::CtState(ct_state::NEW), Expr::Vmap(f, n)],
                Origin::builtin(format!("lock/dispatch{}", f.suffix())),
            )
        },
    );
    chain_if(
        "origin",
        base(ChainKind::Filter, Hook::Prerouting, PRIO_LOCK, true),
        rules,
    )
}

/// The state table's counting chain: per-forward counters selected by an objref map.
fn count_chain(state: &Table) -> Option<Chain> {
    let rules = per_family(
        state,
        |f| format!("fwd{}_ctr", f.suffix()),
        |f, n| {
            rule(
                vec![Expr::CounterMap(f, n)],
                Origin::builtin(format!("fwd/count{}", f.suffix())),
            )
        },
    );
    chain_if(
        "count",
        base(ChainKind::Filter, Hook::Prerouting, PRIO_COUNT, true),
        rules,
    )
}
