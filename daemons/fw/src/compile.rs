//! Pure: compiles the [`Model`] into our two tables.
//!
//! Port-forwards are dispatched by ONE map lookup keyed by
//! `iifname . ip daddr . meta l4proto . th dport` (a hash map: constant cost per packet,
//! whatever the number of forwards). Source allow-lists are one verdict-map lookup on the same
//! key that jumps to the forward's own small chain. Per-forward packet/byte counters are named
//! counter objects in `inet edge_state`, selected by an objref map on the same key, so they
//! survive every reload of `inet edge`.

use std::net::IpAddr;

use edge_config::fw::{Policy, Proto, SourceSet};
use edge_config::ha::CONNTRACKD_PORT;
use ipnet::IpNet;

use crate::ir::{
    AddrSet, Base, Chain, ChainKind, Element, Expr, Family, Hook, L4, Origin, Rule, Ruleset,
    STATE_TABLE, Set, SetKind, TABLE, Table, ct_state,
};
use crate::model::Model;

mod forwards;

use forwards::forwards;

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

/// One built-in rule per family whose set `{prefix}{4|6}{suffix}` exists in `t`: `exprs` on
/// that set, with the origin `{origin}{4|6}`.
fn dispatch(
    t: &Table,
    prefix: &str,
    suffix: &str,
    origin: &str,
    exprs: impl Fn(Family, String) -> Vec<Expr>,
) -> Vec<Rule> {
    per_family(
        t,
        |f| format!("{prefix}{}{suffix}", f.suffix()),
        |f, n| {
            rule(
                exprs(f, n),
                Origin::builtin(format!("{origin}{}", f.suffix())),
            )
        },
    )
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
    let mut rules = dispatch(edge, "allow", "", "fwd/allow", |f, n| {
        vec![Expr::Vmap(f, n)]
    });
    rules.extend(dispatch(edge, "hairpin", "", "fwd/hairpin-mark", |f, n| {
        vec![Expr::InSet(f, n), Expr::SetMark(HAIRPIN_MARK)]
    }));
    chain_if(
        "prefilter",
        base(ChainKind::Filter, Hook::Prerouting, PRIO_ALLOW, true),
        rules,
    )
}

/// DNAT: one map lookup per family.
fn prerouting_chain(edge: &Table) -> Option<Chain> {
    let rules = dispatch(edge, "fwd", "", "fwd/dispatch", |f, n| {
        vec![Expr::DnatMap(f, n)]
    });
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
    let rules = dispatch(state, "lock", "", "lock/dispatch", |f, n| {
        vec![Expr::CtState(ct_state::NEW), Expr::Vmap(f, n)]
    });
    chain_if(
        "origin",
        base(ChainKind::Filter, Hook::Prerouting, PRIO_LOCK, true),
        rules,
    )
}

/// The state table's counting chain: per-forward counters selected by an objref map.
fn count_chain(state: &Table) -> Option<Chain> {
    let rules = dispatch(state, "fwd", "_ctr", "fwd/count", |f, n| {
        vec![Expr::CounterMap(f, n)]
    });
    chain_if(
        "count",
        base(ChainKind::Filter, Hook::Prerouting, PRIO_COUNT, true),
        rules,
    )
}
