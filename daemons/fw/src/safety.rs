//! Pure: the anti-lockout proof. Before anything is applied, packets that must always reach
//! the host (the WireGuard port from anywhere on the WAN, SSH from the admin and WireGuard
//! networks) are run through the compiled IR; a ruleset that drops or diverts one of them is
//! refused, naming the rule (or chain policy) responsible.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::ir::{ElemData, Expr, Family, FwdKey, Hook, L4, Origin, Ruleset, Table, ct_state};
use crate::model::Model;

/// A new connection's first packet, as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Input interface.
    pub iif: String,
    /// Source address.
    pub saddr: IpAddr,
    /// Destination address (one of the host's).
    pub daddr: IpAddr,
    /// Protocol.
    pub proto: L4,
    /// Destination port.
    pub dport: u16,
}

/// What happens to a packet addressed to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Delivered to a local socket.
    Accepted,
    /// Dropped by this rule.
    DroppedByRule(Origin),
    /// Dropped by the policy of this chain.
    DroppedByPolicy(String),
    /// Rewritten to another host by this forward map element.
    Forwarded(String),
}

/// A must-pass packet the ruleset would not deliver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing a ruleset that would lock the admin out: {what} would be {why}")]
pub struct Lockout {
    /// The packet in words (`WireGuard udp/51820 from 198.51.100.7 on br-api`).
    pub what: String,
    /// Why (`dropped by rule fwd/ssh/deny (edge.toml:120)`).
    pub why: String,
}

enum Step {
    Verdict(Fate),
    Continue,
}

fn matches(e: &Expr, p: &Packet) -> Option<bool> {
    Some(match e {
        Expr::Iifname(n) => *n == p.iif,
        Expr::Oifname(_) | Expr::CtStatusDnat => false,
        Expr::NfProto(f) => Family::of(p.saddr) == *f,
        Expr::Saddr(net) => net.contains(&p.saddr),
        Expr::Dport(proto, a, b) => *proto == p.proto && (*a..=*b).contains(&p.dport),
        Expr::IcmpType(_) | Expr::Icmpv6Type(_) | Expr::MarkBit(_) => false,
        Expr::CtState(mask) => mask & ct_state::NEW != 0,
        // The proof's sources are the admin and WireGuard networks and documentation
        // addresses: never in a prefix set such as Cloudflare's ranges (a must-pass packet
        // that depends on one is refused, as it should be).
        Expr::SaddrIn(..) => false,
        Expr::TcpSyn => p.proto == L4::Tcp,
        Expr::L4Proto(n) => *n == p.proto.number(),
        _ => return None,
    })
}

fn key(p: &Packet) -> FwdKey {
    FwdKey {
        iif: p.iif.clone(),
        daddr: p.daddr,
        proto: p.proto,
        dport: p.dport,
    }
}

fn lookup<'t>(t: &'t Table, set: &str, p: &Packet) -> Option<&'t ElemData> {
    let k = key(p);
    t.set(set)?
        .elements
        .iter()
        .find(|e| e.key == k)
        .map(|e| &e.data)
}

fn run_chain(t: &Table, name: &str, p: &Packet, depth: u8) -> Step {
    let Some(chain) = t.chain(name) else {
        return Step::Continue;
    };
    if depth > 8 {
        return Step::Continue;
    }
    'rules: for r in &chain.rules {
        for e in &r.exprs {
            if let Some(ok) = matches(e, p) {
                if !ok {
                    continue 'rules;
                }
                continue;
            }
            match e {
                Expr::Accept => return Step::Verdict(Fate::Accepted),
                Expr::Drop => return Step::Verdict(Fate::DroppedByRule(r.origin.clone())),
                Expr::Return => return Step::Continue,
                // Statements that count or rewrite but do not decide.
                Expr::CounterNamed(_) | Expr::SetMss(_) => continue,
                Expr::Vmap(_, set) => match lookup(t, set, p) {
                    Some(ElemData::Jump(c)) => match run_chain(t, c, p, depth + 1) {
                        Step::Continue => continue 'rules,
                        v => return v,
                    },
                    _ => continue 'rules,
                },
                Expr::DnatMap(_, set) => {
                    if lookup(t, set, p).is_some() {
                        return Step::Verdict(Fate::Forwarded(format!(
                            "{} @{set} ({})",
                            key(p),
                            r.origin.comment()
                        )));
                    }
                    continue 'rules;
                }
                // Statements without effect on delivery (counters, masquerade, set tests).
                _ => continue 'rules,
            }
        }
    }
    match &chain.base {
        Some(b) if !b.accept => Step::Verdict(Fate::DroppedByPolicy(name.to_owned())),
        _ => Step::Continue,
    }
}

/// Runs a packet addressed to the host through our base chains on prerouting and input, in
/// priority order. Other tables are not modelled (`edgectl fw doctor` reports them).
pub fn fate(rs: &Ruleset, p: &Packet) -> Fate {
    let mut chains: Vec<(i32, &Table, &str)> = Vec::new();
    for t in [&rs.state, &rs.edge] {
        for c in &t.chains {
            if let Some(b) = &c.base
                && matches!(b.hook, Hook::Prerouting | Hook::Input)
            {
                // prerouting always runs before input, whatever the priorities.
                let order = if b.hook == Hook::Prerouting {
                    b.priority - 10_000
                } else {
                    b.priority
                };
                chains.push((order, t, c.name.as_str()));
            }
        }
    }
    chains.sort_by_key(|(o, _, _)| *o);
    for (_, t, name) in chains {
        if let Step::Verdict(v) = run_chain(t, name, p, 0) {
            if v == Fate::Accepted {
                // An accept ends this base chain only; later chains still see the packet.
                continue;
            }
            return v;
        }
    }
    Fate::Accepted
}

fn first_host(net: &IpNet) -> IpAddr {
    net.hosts().next().unwrap_or(net.addr())
}

fn host_addr(m: &Model, iface: &str, fam: Family) -> IpAddr {
    m.env
        .addresses
        .get(iface)
        .and_then(|v| v.iter().find(|a| Family::of(**a) == fam).copied())
        .or_else(|| {
            m.forward_addresses
                .iter()
                .flatten()
                .find(|a| Family::of(**a) == fam)
                .copied()
        })
        .unwrap_or(match fam {
            Family::V4 => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            Family::V6 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        })
}

/// Families peers may use to reach WireGuard on a WAN interface: IPv4 always (the ISP
/// router forwards it), IPv6 when the interface has an IPv6 address or a forward arrives at
/// one there.
fn wan_families(m: &Model, wan: &str) -> Vec<Family> {
    let v6_addr = m
        .env
        .addresses
        .get(wan)
        .is_some_and(|v| v.iter().any(IpAddr::is_ipv6));
    let v6_fwd =
        m.fw.forwards
            .iter()
            .zip(&m.forward_addresses)
            .any(|(f, a)| f.on.iter().any(|i| i.as_str() == wan) && a.iter().any(IpAddr::is_ipv6));
    if v6_addr || v6_fwd {
        vec![Family::V4, Family::V6]
    } else {
        vec![Family::V4]
    }
}

fn describe(f: &Fate) -> String {
    match f {
        Fate::Accepted => "accepted".to_owned(),
        Fate::DroppedByRule(o) => format!("dropped by rule `{}`", o.comment()),
        Fate::DroppedByPolicy(c) => {
            format!("dropped by the drop policy of chain `{c}` (no rule accepts it)")
        }
        Fate::Forwarded(k) => format!("forwarded away from the host by {k}"),
    }
}

/// Checks the must-pass packets; every failure is returned.
pub fn check(m: &Model, rs: &Ruleset) -> Result<(), Vec<Lockout>> {
    let mut errs = Vec::new();
    if let Some(port) = m.wg_port() {
        for wan in &m.fw.wan {
            for fam in wan_families(m, wan.as_str()) {
                let saddr = match fam {
                    Family::V4 => IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)),
                    Family::V6 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 7)),
                };
                let p = Packet {
                    iif: wan.as_str().to_owned(),
                    saddr,
                    daddr: host_addr(m, wan.as_str(), fam),
                    proto: L4::Udp,
                    dport: port,
                };
                let f = fate(rs, &p);
                if f != Fate::Accepted {
                    errs.push(Lockout {
                        what: format!("WireGuard udp/{port} from {} on {}", p.saddr, p.iif),
                        why: describe(&f),
                    });
                }
            }
        }
    }
    let ssh = m.ssh_port();
    let mut candidates: Vec<String> =
        m.fw.vpn
            .iter()
            .chain(m.fw.lan.iter())
            .chain(m.fw.wan.iter())
            .map(|i| i.as_str().to_owned())
            .collect();
    for r in m.fw.input.allow.iter().filter(|r| r.name == "ssh") {
        candidates.extend(r.interfaces.iter().map(|i| i.as_str().to_owned()));
    }
    // An interface outside every zone (the admin NIC is never named in [fw]).
    candidates.push("edge-other0".to_owned());
    for net in m.admin_networks() {
        let saddr = first_host(&net);
        let fam = Family::of(saddr);
        let mut last = None;
        let ok = candidates.iter().any(|iif| {
            let p = Packet {
                iif: iif.clone(),
                saddr,
                daddr: host_addr(m, iif, fam),
                proto: L4::Tcp,
                dport: ssh,
            };
            let f = fate(rs, &p);
            let ok = f == Fate::Accepted;
            last = Some(f);
            ok
        });
        if !ok && let Some(f) = last {
            errs.push(Lockout {
                what: format!("SSH tcp/{ssh} from {saddr} (network {net})"),
                why: describe(&f),
            });
        }
    }
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}
