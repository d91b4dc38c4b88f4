//! Pure: the intermediate representation of our nftables tables and its `nft -f` rendering.
//!
//! The IR holds exactly the vocabulary the compiler emits, no more: each variant has one
//! kernel encoding ([`crate::lower`]) and one text form, the `nft -f` syntax that `edgectl fw
//! plan` and `edge-fw --print` show (and that `nft list table inet edge` prints for it).

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use ipnet::IpNet;

/// Name of the table that is replaced atomically on every apply.
pub const TABLE: &str = "edge";
/// Name of the long-lived table holding per-forward counters (never replaced).
pub const STATE_TABLE: &str = "edge_state";

/// The smallest size a set is declared with.
const MIN_SET_SIZE: u32 = 16;

/// The size a set of `n` elements is declared with: the next power of two (at least 16).
/// The kernel then picks a fixed-size hash sized once (no resize while elements arrive,
/// none while a dump walks it), and an element-only update has room to add elements until
/// the count crosses the next power of two, when the set is declared anew.
pub fn capacity(n: usize) -> u32 {
    u32::try_from(n)
        .unwrap_or(u32::MAX)
        .max(MIN_SET_SIZE)
        .checked_next_power_of_two()
        .unwrap_or(u32::MAX)
}

/// An IP family of a match or map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    /// Suffix used in object names (`fwd4`, `fwd6`).
    pub fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }

    fn ip_kw(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
}

/// A transport protocol matched or mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum L4 {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
}

impl L4 {
    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            L4::Tcp => 6,
            L4::Udp => 17,
        }
    }

    /// nft keyword.
    pub fn name(self) -> &'static str {
        match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
        }
    }
}

/// The dispatch key every forward map uses: `iifname . ip daddr . meta l4proto . th dport`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FwdKey {
    /// Input interface.
    pub iif: String,
    /// Destination address as it arrives.
    pub daddr: IpAddr,
    /// Transport protocol.
    pub proto: L4,
    /// Destination port as it arrives.
    pub dport: u16,
}

impl fmt::Display for FwdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\"{}\" . {} . {} . {}",
            self.iif,
            self.daddr,
            self.proto.name(),
            self.dport
        )
    }
}

/// What a set element maps its key to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElemData {
    /// A plain set: no data.
    None,
    /// DNAT target address and port.
    Target(IpAddr, u16),
    /// Verdict `jump CHAIN`.
    Jump(String),
    /// Named counter object.
    Counter(String),
}

/// One element of a set or map keyed by [`FwdKey`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Element {
    /// The key.
    pub key: FwdKey,
    /// The data it maps to.
    pub data: ElemData,
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key)?;
        match &self.data {
            ElemData::None => Ok(()),
            ElemData::Target(ip, port) => write!(f, " : {ip} . {port}"),
            ElemData::Jump(c) => write!(f, " : jump {c}"),
            ElemData::Counter(c) => write!(f, " : \"{c}\""),
        }
    }
}

/// The kind of data a set maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetKind {
    /// A plain set (membership).
    Set,
    /// A DNAT map to `addr . port`.
    Target,
    /// A verdict map.
    Verdict,
    /// A counter object map.
    Counter,
}

/// A named set or map keyed by [`FwdKey`] of one family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Set {
    /// Set name.
    pub name: String,
    /// Key family (`ip daddr` vs `ip6 daddr`).
    pub family: Family,
    /// What it maps to.
    pub kind: SetKind,
    /// Elements in compile order.
    pub elements: Vec<Element>,
    /// Stable id used in error messages (`map fwd4`).
    pub id: String,
}

impl Set {
    /// The size the set is declared with (`size N`, `NFTA_SET_DESC_SIZE`): see
    /// [`capacity`].
    pub fn declared_size(&self) -> u32 {
        capacity(self.elements.len())
    }

    fn type_line(&self) -> String {
        let addr = match self.family {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        };
        let key = format!("ifname . {addr} . inet_proto . inet_service");
        match self.kind {
            SetKind::Set => key,
            SetKind::Target => format!("{key} : {addr} . inet_service"),
            SetKind::Verdict => format!("{key} : verdict"),
            SetKind::Counter => format!("{key} : counter"),
        }
    }
}

/// A netfilter hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// prerouting.
    Prerouting,
    /// input.
    Input,
    /// forward.
    Forward,
    /// postrouting.
    Postrouting,
}

impl Hook {
    /// nft keyword.
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// Chain type of a base chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainKind {
    /// `type filter`.
    Filter,
    /// `type nat`.
    Nat,
}

/// A base chain's hook, priority and policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Base {
    /// Chain type.
    pub kind: ChainKind,
    /// Hook.
    pub hook: Hook,
    /// Priority (lower runs first).
    pub priority: i32,
    /// `true`: policy accept; `false`: policy drop.
    pub accept: bool,
}

/// Priority as nft prints it for the inet family (standard names, ±10 offsets).
pub fn priority_name(hook: Hook, prio: i32) -> String {
    let names: &[(&str, i32)] = match hook {
        Hook::Prerouting => &[
            ("raw", -300),
            ("mangle", -150),
            ("dstnat", -100),
            ("filter", 0),
            ("security", 50),
        ],
        Hook::Input | Hook::Forward => &[
            ("raw", -300),
            ("mangle", -150),
            ("filter", 0),
            ("security", 50),
        ],
        Hook::Postrouting => &[
            ("raw", -300),
            ("mangle", -150),
            ("filter", 0),
            ("security", 50),
            ("srcnat", 100),
        ],
    };
    for (n, p) in names {
        if *p == prio {
            return (*n).to_owned();
        }
    }
    for (n, p) in names {
        let d = prio - p;
        if d != 0 && d.abs() <= 10 {
            return if d > 0 {
                format!("{n} + {d}")
            } else {
                format!("{n} - {}", -d)
            };
        }
    }
    prio.to_string()
}

/// `ct state` bits (kernel `NF_CT_STATE_*_BIT`).
pub mod ct_state {
    /// invalid.
    pub const INVALID: u32 = 1;
    /// established.
    pub const ESTABLISHED: u32 = 2;
    /// related.
    pub const RELATED: u32 = 4;
    /// new.
    pub const NEW: u32 = 8;
}

/// One match or statement of a rule, in rule order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `iifname "NAME"`.
    Iifname(String),
    /// `oifname "NAME"`.
    Oifname(String),
    /// `meta nfproto ipv4|ipv6` (only when nothing else implies the family).
    NfProto(Family),
    /// `ip saddr NET` / `ip6 saddr NET` (prefix length > 0).
    Saddr(IpNet),
    /// `tcp dport P` or `tcp dport A-B`.
    Dport(L4, u16, u16),
    /// `icmp type T`.
    IcmpType(u8),
    /// `icmpv6 type T`.
    Icmpv6Type(u8),
    /// `ct state A,B` (mask of [`ct_state`] bits).
    CtState(u32),
    /// `ct status dnat`.
    CtStatusDnat,
    /// `KEY @set` membership.
    InSet(Family, String),
    /// `KEY vmap @map`.
    Vmap(Family, String),
    /// `counter name KEY map @map`.
    CounterMap(Family, String),
    /// `dnat ip to KEY map @map`.
    DnatMap(Family, String),
    /// `meta mark set meta mark | BIT`.
    SetMark(u32),
    /// `meta mark & BIT == BIT`.
    MarkBit(u32),
    /// `ip saddr @SET` / `ip6 saddr @SET`: the source is in a set of prefixes.
    SaddrIn(Family, String),
    /// `counter name "NAME"`: count into a named counter.
    CounterNamed(String),
    /// `tcp flags syn / syn,rst`: a TCP SYN (a connection's first two packets).
    TcpSyn,
    /// `tcp option maxseg size > N`.
    MssAbove(u16),
    /// `tcp option maxseg size set N`.
    SetMss(u16),
    /// `masquerade`.
    Masquerade,
    /// `meta l4proto N` (`vrrp` is 112).
    L4Proto(u8),
    /// `snat ip to ADDR` / `snat ip6 to ADDR`.
    Snat(IpAddr),
    /// `accept`.
    Accept,
    /// `drop`.
    Drop,
    /// `return`.
    Return,
}

fn key_expr(f: Family) -> String {
    format!("iifname . {} daddr . meta l4proto . th dport", f.ip_kw())
}

/// nft name of an ICMP type, as nft prints it.
pub fn icmp_name(t: u8) -> Option<&'static str> {
    Some(match t {
        0 => "echo-reply",
        3 => "destination-unreachable",
        8 => "echo-request",
        11 => "time-exceeded",
        12 => "parameter-problem",
        _ => return None,
    })
}

/// nft name of an ICMPv6 type, as nft prints it.
pub fn icmpv6_name(t: u8) -> Option<&'static str> {
    Some(match t {
        1 => "destination-unreachable",
        2 => "packet-too-big",
        3 => "time-exceeded",
        4 => "parameter-problem",
        128 => "echo-request",
        129 => "echo-reply",
        133 => "nd-router-solicit",
        134 => "nd-router-advert",
        135 => "nd-neighbor-solicit",
        136 => "nd-neighbor-advert",
        _ => return None,
    })
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Iifname(n) => write!(f, "iifname \"{n}\""),
            Expr::Oifname(n) => write!(f, "oifname \"{n}\""),
            Expr::NfProto(Family::V4) => f.write_str("meta nfproto ipv4"),
            Expr::NfProto(Family::V6) => f.write_str("meta nfproto ipv6"),
            Expr::Saddr(net) => {
                let fam = Family::of(net.addr());
                if net.prefix_len() == net.max_prefix_len() {
                    write!(f, "{} saddr {}", fam.ip_kw(), net.addr())
                } else {
                    write!(f, "{} saddr {}", fam.ip_kw(), net)
                }
            }
            Expr::Dport(p, a, b) if a == b => write!(f, "{} dport {a}", p.name()),
            Expr::Dport(p, a, b) => write!(f, "{} dport {a}-{b}", p.name()),
            Expr::IcmpType(t) => match icmp_name(*t) {
                Some(n) => write!(f, "icmp type {n}"),
                None => write!(f, "icmp type {t}"),
            },
            Expr::Icmpv6Type(t) => match icmpv6_name(*t) {
                Some(n) => write!(f, "icmpv6 type {n}"),
                None => write!(f, "icmpv6 type {t}"),
            },
            Expr::CtState(mask) => {
                let mut parts = Vec::new();
                for (bit, name) in [
                    (ct_state::INVALID, "invalid"),
                    (ct_state::ESTABLISHED, "established"),
                    (ct_state::RELATED, "related"),
                    (ct_state::NEW, "new"),
                ] {
                    if mask & bit != 0 {
                        parts.push(name);
                    }
                }
                write!(f, "ct state {}", parts.join(","))
            }
            Expr::CtStatusDnat => f.write_str("ct status dnat"),
            Expr::InSet(fam, s) => write!(f, "{} @{s}", key_expr(*fam)),
            Expr::Vmap(fam, s) => write!(f, "{} vmap @{s}", key_expr(*fam)),
            Expr::CounterMap(fam, s) => write!(f, "counter name {} map @{s}", key_expr(*fam)),
            Expr::DnatMap(fam, s) => {
                write!(f, "dnat {} to {} map @{s}", fam.ip_kw(), key_expr(*fam))
            }
            Expr::SetMark(b) => write!(f, "meta mark set meta mark | {b:#010x}"),
            Expr::MarkBit(b) => write!(f, "meta mark & {b:#010x} == {b:#010x}"),
            Expr::SaddrIn(fam, set) => write!(f, "{} saddr @{set}", fam.ip_kw()),
            Expr::CounterNamed(n) => write!(f, "counter name \"{n}\""),
            Expr::TcpSyn => f.write_str("tcp flags syn / syn,rst"),
            Expr::MssAbove(n) => write!(f, "tcp option maxseg size > {n}"),
            Expr::SetMss(n) => write!(f, "tcp option maxseg size set {n}"),
            Expr::Masquerade => f.write_str("masquerade"),
            Expr::L4Proto(112) => f.write_str("meta l4proto vrrp"),
            Expr::L4Proto(n) => write!(f, "meta l4proto {n}"),
            Expr::Snat(IpAddr::V4(a)) => write!(f, "snat ip to {a}"),
            Expr::Snat(IpAddr::V6(a)) => write!(f, "snat ip6 to {a}"),
            Expr::Accept => f.write_str("accept"),
            Expr::Drop => f.write_str("drop"),
            Expr::Return => f.write_str("return"),
        }
    }
}

/// Where a rule comes from: its stable id and the config line that produced it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    /// Stable id (`in/ssh#0`, `fwd/dispatch4`).
    pub id: String,
    /// `FILE:LINE` of the config item, when it comes from one.
    pub at: Option<String>,
}

impl Origin {
    /// An origin without a config line (built-in rules).
    pub fn builtin(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            at: None,
        }
    }

    /// The rule comment: `ID` or `ID FILE:LINE`.
    pub fn comment(&self) -> String {
        match &self.at {
            Some(at) => format!("{} {at}", self.id),
            None => self.id.clone(),
        }
    }
}

/// One rule: expressions in order and the origin written into its comment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Matches and statements.
    pub exprs: Vec<Expr>,
    /// Stable id and config line (the rule's comment).
    pub origin: Origin,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.exprs.iter().enumerate() {
            if i > 0 {
                f.write_char(' ')?;
            }
            write!(f, "{e}")?;
        }
        write!(f, " comment \"{}\"", self.origin.comment())
    }
}

/// A chain: base (hooked) or regular (jump target).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chain {
    /// Chain name.
    pub name: String,
    /// Hook, type, priority and policy of a base chain.
    pub base: Option<Base>,
    /// Rules in order.
    pub rules: Vec<Rule>,
}

/// One of our tables (family inet).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Table {
    /// Table name.
    pub name: String,
    /// Named counter objects.
    pub counters: Vec<String>,
    /// Sets and maps.
    pub sets: Vec<Set>,
    /// Sets of address prefixes (`flags interval`).
    pub addr_sets: Vec<AddrSet>,
    /// Chains in creation order.
    pub chains: Vec<Chain>,
}

/// A named set of address prefixes of one family (`type ipv4_addr; flags interval`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AddrSet {
    /// Set name.
    pub name: String,
    /// The prefixes' family.
    pub family: Family,
    /// The prefixes, sorted, none inside another.
    pub nets: Vec<IpNet>,
}

impl AddrSet {
    /// A set of `nets` of `family`: sorted, other families and prefixes inside another
    /// left out (nft refuses overlapping intervals).
    pub fn new(name: &str, family: Family, nets: &[IpNet]) -> Self {
        let mut v: Vec<IpNet> = nets
            .iter()
            .filter(|n| Family::of(n.addr()) == family)
            .map(IpNet::trunc)
            .collect();
        v.sort();
        v.dedup();
        let all = v.clone();
        v.retain(|n| !all.iter().any(|o| o != n && o.contains(n)));
        Self {
            name: name.to_owned(),
            family,
            nets: v,
        }
    }

    /// The size it is declared with: room for each prefix's start and end elements.
    pub fn declared_size(&self) -> u32 {
        capacity(2 * self.nets.len() + 1)
    }
}

impl Table {
    /// An empty table.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            counters: Vec::new(),
            sets: Vec::new(),
            addr_sets: Vec::new(),
            chains: Vec::new(),
        }
    }

    /// Number of rules over all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }

    /// A chain by name.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// A set by name.
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }
}

/// `nft list table` formatting of the table (elements one per line).
impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.render(f, true)
    }
}

/// The table's declarations only (sets without elements, chains without rules, sizes as
/// the full table declares them).
struct Declarations<'a>(&'a Table);

impl fmt::Display for Declarations<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.render(f, false)
    }
}

/// A set's `elements = { a,\n b }` line, one element per line as `nft list` shows them.
fn elements_line(f: &mut fmt::Formatter<'_>, items: &[impl fmt::Display]) -> fmt::Result {
    f.write_str("\t\telements = { ")?;
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(",\n\t\t\t     ")?;
        }
        write!(f, "{e}")?;
    }
    f.write_str(" }\n")
}

impl Table {
    fn render(&self, f: &mut fmt::Formatter<'_>, contents: bool) -> fmt::Result {
        writeln!(f, "table inet {} {{", self.name)?;
        let mut first = true;
        let mut sep = |f: &mut fmt::Formatter<'_>| -> fmt::Result {
            if !first {
                f.write_char('\n')?;
            }
            first = false;
            Ok(())
        };
        for c in &self.counters {
            sep(f)?;
            writeln!(f, "\tcounter {c} {{\n\t\tpackets 0 bytes 0\n\t}}")?;
        }
        for s in &self.sets {
            sep(f)?;
            let kw = if s.kind == SetKind::Set { "set" } else { "map" };
            writeln!(f, "\t{kw} {} {{", s.name)?;
            writeln!(f, "\t\ttype {}", s.type_line())?;
            writeln!(f, "\t\tsize {}", s.declared_size())?;
            if contents && !s.elements.is_empty() {
                elements_line(f, &s.elements)?;
            }
            f.write_str("\t}\n")?;
        }
        for s in &self.addr_sets {
            sep(f)?;
            writeln!(f, "\tset {} {{", s.name)?;
            let ty = match s.family {
                Family::V4 => "ipv4_addr",
                Family::V6 => "ipv6_addr",
            };
            writeln!(f, "\t\ttype {ty}")?;
            writeln!(f, "\t\tsize {}", s.declared_size())?;
            writeln!(f, "\t\tflags interval")?;
            if contents && !s.nets.is_empty() {
                elements_line(f, &s.nets)?;
            }
            f.write_str("\t}\n")?;
        }
        for c in &self.chains {
            sep(f)?;
            writeln!(f, "\tchain {} {{", c.name)?;
            if let Some(b) = &c.base {
                let kind = match b.kind {
                    ChainKind::Filter => "filter",
                    ChainKind::Nat => "nat",
                };
                writeln!(
                    f,
                    "\t\ttype {kind} hook {} priority {}; policy {};",
                    b.hook.name(),
                    priority_name(b.hook, b.priority),
                    if b.accept { "accept" } else { "drop" }
                )?;
            }
            for r in c.rules.iter().filter(|_| contents) {
                writeln!(f, "\t\t{r}")?;
            }
            f.write_str("\t}\n")?;
        }
        f.write_str("}\n")
    }
}

/// Everything we own in the kernel: the replaced table and the long-lived state table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ruleset {
    /// `inet edge`, replaced atomically.
    pub edge: Table,
    /// `inet edge_state`: per-forward counters and the chain that feeds them.
    pub state: Table,
}

impl Ruleset {
    /// The `nft -f` script that applies this ruleset the way the netlink apply does:
    /// replace `inet edge` (add, delete, add) and converge `inet edge_state` in place
    /// (declare, flush its maps and chains, refill), so its counters keep their values.
    pub fn script(&self) -> String {
        let mut s = String::new();
        let t = &self.edge.name;
        let st = &self.state.name;
        let _ = writeln!(s, "table inet {t}\ndelete table inet {t}");
        s.push_str(&self.edge.to_string());
        s.push_str(&Declarations(&self.state).to_string());
        for set in &self.state.sets {
            let kw = if set.kind == SetKind::Set {
                "set"
            } else {
                "map"
            };
            let _ = writeln!(s, "flush {kw} inet {st} {}", set.name);
        }
        for set in &self.state.addr_sets {
            let _ = writeln!(s, "flush set inet {st} {}", set.name);
        }
        for c in &self.state.chains {
            let _ = writeln!(s, "flush chain inet {st} {}", c.name);
        }
        s.push_str(&self.state.to_string());
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_are_powers_of_two_with_room() {
        assert_eq!(capacity(0), 16);
        assert_eq!(capacity(3), 16);
        assert_eq!(capacity(16), 16);
        assert_eq!(capacity(17), 32);
        assert_eq!(capacity(100_000), 131_072);
    }
}
