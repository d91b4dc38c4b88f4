//! Pure: our tables as the kernel holds them — every object with the attributes the kernel
//! reports back in a dump, and nothing it adds on its own (handles, use counts). The
//! compiled IR is lowered to this form ([`crate::lower`]); the kernel's dump is decoded to
//! it ([`crate::codec`]); the read-back compares the two ([`diff`]). No text anywhere: the
//! `Display` impls below exist for people reading a diff.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::uapi;

/// A register as the kernel indexes it internally (4-byte units; 0 is the verdict register).
/// Netlink names the same register two ways (`NFT_REG_1` and `NFT_REG32_00`); the kernel
/// reports the 16-byte name whenever the register is 16-byte aligned, so both sides of a
/// comparison are kept in this one canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reg(pub u32);

impl Reg {
    /// The verdict register.
    pub const VERDICT: Reg = Reg(0);

    /// `NFT_REG_n` (n = 1..4: the 16-byte registers).
    pub const fn r(n: u32) -> Reg {
        Reg(n * 4)
    }

    /// `NFT_REG32_nn` (nn = 0..15: the 4-byte registers).
    pub const fn r32(n: u32) -> Reg {
        Reg(4 + n)
    }

    /// From a register number on the wire (`NFT_REG_*` or `NFT_REG32_*`).
    pub fn from_wire(n: u32) -> Reg {
        if n <= 4 {
            Reg(n * 4)
        } else {
            Reg(n.wrapping_sub(4))
        }
    }

    /// The number the kernel uses on the wire for this register.
    pub fn to_wire(self) -> u32 {
        if self.0.is_multiple_of(4) {
            self.0 / 4
        } else {
            self.0 + 4
        }
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reg {}", self.to_wire())
    }
}

/// A verdict: `NF_ACCEPT`, `NF_DROP`, `NFT_RETURN`, `NFT_JUMP` with its chain, ...
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Verdict {
    /// The verdict code (`NF_*` / `NFT_*`).
    pub code: i32,
    /// The chain of a jump or goto.
    pub chain: Option<String>,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.code {
            libc::NF_ACCEPT => "accept",
            libc::NF_DROP => "drop",
            libc::NFT_RETURN => "return",
            libc::NFT_JUMP => "jump",
            libc::NFT_GOTO => "goto",
            libc::NFT_CONTINUE => "continue",
            libc::NFT_BREAK => "break",
            c => return write!(f, "verdict {c}"),
        };
        f.write_str(name)?;
        if let Some(c) = &self.chain {
            write!(f, " {c}")?;
        }
        Ok(())
    }
}

/// One expression of a rule, with the attributes the kernel reports for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// `meta` load of `key` into `dreg`.
    Meta {
        /// `NFT_META_*`.
        key: u32,
        /// Destination register.
        dreg: Reg,
    },
    /// `meta` store of `sreg` into `key`.
    MetaSet {
        /// `NFT_META_*`.
        key: u32,
        /// Source register.
        sreg: Reg,
    },
    /// `payload` load.
    Payload {
        /// `NFT_PAYLOAD_*_HEADER`.
        base: u32,
        /// Offset in the header.
        offset: u32,
        /// Length in bytes.
        len: u32,
        /// Destination register.
        dreg: Reg,
    },
    /// `cmp` of a register with data.
    Cmp {
        /// Source register.
        sreg: Reg,
        /// `NFT_CMP_*`.
        op: u32,
        /// The data compared with.
        data: Vec<u8>,
    },
    /// `bitwise`: `dreg = (sreg & mask) ^ xor`.
    Bitwise {
        /// Source register.
        sreg: Reg,
        /// Destination register.
        dreg: Reg,
        /// Length in bytes.
        len: u32,
        /// Mask.
        mask: Vec<u8>,
        /// Xor.
        xor: Vec<u8>,
    },
    /// `ct` load.
    Ct {
        /// `NFT_CT_*`.
        key: u32,
        /// Destination register.
        dreg: Reg,
    },
    /// `immediate` of a verdict.
    Verdict(Verdict),
    /// `lookup` in a set (a map when `dreg` is set).
    Lookup {
        /// Source register (the key).
        sreg: Reg,
        /// The set's name.
        set: String,
        /// Destination register of a map's data.
        dreg: Option<Reg>,
        /// `NFT_LOOKUP_F_*`.
        flags: u32,
    },
    /// `objref` through a map: the object the key maps to.
    Objref {
        /// Source register (the key).
        sreg: Reg,
        /// The map's name.
        set: String,
    },
    /// `nat` with address and port from registers.
    Nat {
        /// `NFT_NAT_SNAT` / `NFT_NAT_DNAT`.
        kind: u32,
        /// `NFPROTO_IPV4` / `NFPROTO_IPV6`.
        family: u32,
        /// Address registers (min, max).
        addr: Option<(Reg, Reg)>,
        /// Port registers (min, max).
        proto: Option<(Reg, Reg)>,
        /// `NF_NAT_RANGE_*`.
        flags: u32,
    },
    /// `masq`.
    Masq {
        /// `NF_NAT_RANGE_*`.
        flags: u32,
    },
    /// `immediate` of data into a register.
    Immediate {
        /// Destination register.
        dreg: Reg,
        /// The data.
        data: Vec<u8>,
    },
    /// `exthdr` load (`dreg`) or write (`sreg`) of a TCP option field.
    Exthdr {
        /// `NFT_EXTHDR_OP_*`.
        op: u32,
        /// Option kind (`2`: maximum segment size).
        kind: u8,
        /// Offset in the option.
        offset: u32,
        /// Length in bytes.
        len: u32,
        /// Destination register of a load.
        dreg: Option<Reg>,
        /// Source register of a write.
        sreg: Option<Reg>,
        /// `NFT_EXTHDR_F_*`.
        flags: u32,
    },
    /// `objref` of a named object (`counter name "x"`).
    ObjrefNamed {
        /// `NFT_OBJECT_*`.
        kind: u32,
        /// The object's name.
        name: String,
    },
    /// An expression edge-fw never writes (someone else's), by name.
    Other {
        /// The expression's name (`log`, `limit`, ...).
        name: String,
    },
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("0x");
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn meta_key(k: u32) -> String {
    let name = match k as i32 {
        libc::NFT_META_MARK => "mark",
        libc::NFT_META_IIFNAME => "iifname",
        libc::NFT_META_OIFNAME => "oifname",
        libc::NFT_META_NFPROTO => "nfproto",
        libc::NFT_META_L4PROTO => "l4proto",
        _ => return format!("key {k}"),
    };
    name.to_owned()
}

fn header(base: u32) -> &'static str {
    match base as i32 {
        libc::NFT_PAYLOAD_LL_HEADER => "link",
        libc::NFT_PAYLOAD_NETWORK_HEADER => "network",
        libc::NFT_PAYLOAD_TRANSPORT_HEADER => "transport",
        _ => "other",
    }
}

fn cmp_op(op: u32) -> &'static str {
    match op as i32 {
        libc::NFT_CMP_EQ => "eq",
        libc::NFT_CMP_NEQ => "neq",
        libc::NFT_CMP_LT => "lt",
        libc::NFT_CMP_LTE => "lte",
        libc::NFT_CMP_GT => "gt",
        libc::NFT_CMP_GTE => "gte",
        _ => "op?",
    }
}

/// `[ lookup reg 1 set fwd4 dreg 0 ]`.
fn fmt_lookup(
    f: &mut fmt::Formatter<'_>,
    sreg: Reg,
    set: &str,
    dreg: Option<Reg>,
    flags: u32,
) -> fmt::Result {
    write!(f, "[ lookup {sreg} set {set}")?;
    if let Some(d) = dreg {
        write!(f, " dreg {}", d.to_wire())?;
    }
    if flags != 0 {
        write!(f, " flags {flags:#x}")?;
    }
    f.write_str(" ]")
}

/// `[ nat dnat ip addr_min reg 1 addr_max reg 1 proto_min reg 9 proto_max reg 9 flags 0x3 ]`.
fn fmt_nat(
    f: &mut fmt::Formatter<'_>,
    kind: u32,
    family: u32,
    addr: Option<(Reg, Reg)>,
    proto: Option<(Reg, Reg)>,
    flags: u32,
) -> fmt::Result {
    let k = if kind as i32 == libc::NFT_NAT_DNAT {
        "dnat"
    } else {
        "snat"
    };
    let fam = if family == u32::from(uapi::NFPROTO_IPV6) {
        "ip6"
    } else {
        "ip"
    };
    write!(f, "[ nat {k} {fam}")?;
    if let Some((a, b)) = addr {
        write!(f, " addr_min {a} addr_max {b}")?;
    }
    if let Some((a, b)) = proto {
        write!(f, " proto_min {a} proto_max {b}")?;
    }
    write!(f, " flags {flags:#x} ]")
}

/// The kernel's own notation for expressions (`nft --debug=netlink` prints the same).
// The same variants are destructured by `codec::expr_data`, field for field: that one writes
// the netlink attributes, this one the text notation; both must name every field of every
// variant, so the two matches stay apart.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Meta { key, dreg } => write!(f, "[ meta load {} => {dreg} ]", meta_key(*key)),
            Expr::MetaSet { key, sreg } => write!(f, "[ meta set {} with {sreg} ]", meta_key(*key)),
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => write!(
                f,
                "[ payload load {len}b @ {} header + {offset} => {dreg} ]",
                header(*base)
            ),
            Expr::Cmp { sreg, op, data } => {
                write!(f, "[ cmp {} {sreg} {} ]", cmp_op(*op), hex(data))
            }
            Expr::Bitwise {
                sreg,
                dreg,
                len,
                mask,
                xor,
            } => write!(
                f,
                "[ bitwise {dreg} = ( {sreg} & {} ) ^ {} ({len}b) ]",
                hex(mask),
                hex(xor)
            ),
            Expr::Ct { key, dreg } => {
                let k = match *key as i32 {
                    libc::NFT_CT_STATE => "state".to_owned(),
                    libc::NFT_CT_STATUS => "status".to_owned(),
                    k => format!("key {k}"),
                };
                write!(f, "[ ct load {k} => {dreg} ]")
            }
            Expr::Verdict(v) => write!(f, "[ immediate reg 0 {v} ]"),
            Expr::Lookup {
                sreg,
                set,
                dreg,
                flags,
            } => fmt_lookup(f, *sreg, set, *dreg, *flags),
            Expr::Objref { sreg, set } => write!(f, "[ objref sreg {} set {set} ]", sreg.to_wire()),
            Expr::Nat {
                kind,
                family,
                addr,
                proto,
                flags,
            } => fmt_nat(f, *kind, *family, *addr, *proto, *flags),
            Expr::Masq { flags } => write!(f, "[ masq flags {flags:#x} ]"),
            Expr::Immediate { dreg, data } => write!(f, "[ immediate {dreg} {} ]", hex(data)),
            Expr::Exthdr {
                kind,
                offset,
                len,
                dreg,
                sreg,
                ..
            } => match (dreg, sreg) {
                (_, Some(s)) => write!(
                    f,
                    "[ exthdr write tcpopt {s} => {len}b @ {kind} + {offset} ]"
                ),
                (d, None) => write!(
                    f,
                    "[ exthdr load tcpopt {len}b @ {kind} + {offset} => {} ]",
                    d.unwrap_or(Reg::VERDICT)
                ),
            },
            Expr::ObjrefNamed { kind, name } => write!(f, "[ objref type {kind} name {name} ]"),
            Expr::Other { name } => write!(f, "[ {name} ]"),
        }
    }
}

/// One rule: expressions in order and its comment (from the rule's user data).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Expressions in order.
    pub exprs: Vec<Expr>,
    /// The comment (`in/ssh#0 edge.toml:207`).
    pub comment: Option<String>,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.comment {
            Some(c) => write!(f, "rule \"{c}\":")?,
            None => f.write_str("rule (no comment):")?,
        }
        for e in &self.exprs {
            write!(f, " {e}")?;
        }
        Ok(())
    }
}

/// Hook, type, priority and policy of a base chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BaseChain {
    /// Chain type (`filter`, `nat`, `route`).
    pub kind: String,
    /// `NF_INET_*` hook number.
    pub hook: u32,
    /// Priority.
    pub priority: i32,
    /// `NF_ACCEPT` / `NF_DROP`.
    pub policy: u32,
}

impl BaseChain {
    /// The hook's nft name.
    pub fn hook_name(&self) -> &'static str {
        match self.hook as i32 {
            libc::NF_INET_PRE_ROUTING => "prerouting",
            libc::NF_INET_LOCAL_IN => "input",
            libc::NF_INET_FORWARD => "forward",
            libc::NF_INET_LOCAL_OUT => "output",
            libc::NF_INET_POST_ROUTING => "postrouting",
            _ => "ingress",
        }
    }

    /// The policy's nft name.
    pub fn policy_name(&self) -> &'static str {
        if self.policy == libc::NF_DROP as u32 {
            "drop"
        } else {
            "accept"
        }
    }
}

impl fmt::Display for BaseChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "type {} hook {} priority {} policy {}",
            self.kind,
            self.hook_name(),
            self.priority,
            self.policy_name()
        )
    }
}

/// A chain and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Chain {
    /// Name.
    pub name: String,
    /// Set for base (hooked) chains.
    pub base: Option<BaseChain>,
    /// Rules in order.
    pub rules: Vec<Rule>,
}

/// How a set is declared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetSpec {
    /// `NFT_SET_*` flags.
    pub flags: u32,
    /// Key datatype (nft's id, concatenations combined).
    pub key_type: u32,
    /// Key length in bytes.
    pub key_len: u32,
    /// Data datatype of a map (0 for a plain set).
    pub data_type: u32,
    /// Data length of a map (0 for a plain set).
    pub data_len: u32,
    /// Object type of an object map (0 otherwise).
    pub obj_type: u32,
    /// The declared maximum number of elements (`size N`).
    pub size: Option<u32>,
}

impl SetSpec {
    /// True when a live set declared as `live` can hold what this spec wants with `count`
    /// elements: everything equal, and a declared size at least `count` (a set keeps its
    /// size across element-only updates, so it may be larger than a fresh one would be).
    pub fn fits(&self, live: &SetSpec, count: usize) -> bool {
        let rest_equal = SetSpec {
            size: None,
            ..self.clone()
        } == SetSpec {
            size: None,
            ..live.clone()
        };
        let size_ok = match (self.size, live.size) {
            (None, None) => true,
            (Some(_), Some(s)) => s as usize >= count,
            _ => false,
        };
        rest_equal && size_ok
    }

    /// True for the concatenated keys edge-fw uses (`ifname . addr . proto . port`).
    fn is_forward_key(&self) -> bool {
        self.key_len == 28 || self.key_len == 40
    }
}

impl fmt::Display for SetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "flags {:#x} key type {:#x} len {}",
            self.flags, self.key_type, self.key_len
        )?;
        if self.data_type != 0 {
            write!(f, " data type {:#x} len {}", self.data_type, self.data_len)?;
        }
        if self.obj_type != 0 {
            write!(f, " object type {}", self.obj_type)?;
        }
        if let Some(s) = self.size {
            write!(f, " size {s}")?;
        }
        Ok(())
    }
}

/// What an element maps to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ElemData {
    /// Nothing (a plain set).
    None,
    /// A value (a data map).
    Value(Vec<u8>),
    /// A verdict (a verdict map).
    Verdict(Verdict),
    /// A named object (an object map).
    Objref(String),
}

/// One element of a set or map. Elements sort by key, and at the same key the end of a
/// range before the start of the next one: the order in which the kernel accepts adjacent
/// ranges (`104.16.0.0/13` ends where `104.24.0.0/14` starts).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Elem {
    /// The key's bytes.
    pub key: Vec<u8>,
    /// What it maps to.
    pub data: ElemData,
    /// `NFT_SET_ELEM_*` (`NFT_SET_ELEM_INTERVAL_END` on the element that ends a range).
    pub flags: u32,
}

fn ip_at(b: &[u8], v6: bool) -> Option<IpAddr> {
    if v6 {
        let a: [u8; 16] = b.get(..16)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(a)))
    } else {
        let a: [u8; 4] = b.get(..4)?.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(a)))
    }
}

fn port_at(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

/// The key `"br-api" . 192.198.0.30 . tcp . 80` of one of our concatenated keys.
fn forward_key(k: &[u8]) -> Option<String> {
    let v6 = match k.len() {
        28 => false,
        40 => true,
        _ => return None,
    };
    let name = k.get(..16)?;
    let name = String::from_utf8_lossy(name.split(|c| *c == 0).next().unwrap_or_default());
    let alen = if v6 { 16 } else { 4 };
    let addr = ip_at(k.get(16..)?, v6)?;
    let proto = match k.get(16 + alen)? {
        6 => "tcp".to_owned(),
        17 => "udp".to_owned(),
        p => p.to_string(),
    };
    let port = port_at(k.get(20 + alen..)?)?;
    Some(format!("\"{name}\" . {addr} . {proto} . {port}"))
}

impl Ord for Elem {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key
            .cmp(&other.key)
            .then(other.flags.cmp(&self.flags))
            .then(self.data.cmp(&other.data))
    }
}

impl PartialOrd for Elem {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Elem {
    /// The element in nft's notation where its layout is one of ours, else in hex.
    pub fn render(&self, spec: &SetSpec) -> String {
        let key = if spec.is_forward_key() {
            forward_key(&self.key).unwrap_or_else(|| hex(&self.key))
        } else {
            match self.key.len() {
                4 => ip_at(&self.key, false).map(|a| a.to_string()),
                16 => ip_at(&self.key, true).map(|a| a.to_string()),
                _ => None,
            }
            .unwrap_or_else(|| hex(&self.key))
        };
        let key = if self.flags & crate::uapi::NFT_SET_ELEM_INTERVAL_END != 0 {
            format!("{key} (end)")
        } else {
            key
        };
        let data = match &self.data {
            ElemData::None => String::new(),
            ElemData::Value(v) => {
                let target = match v.len() {
                    8 => ip_at(v, false).zip(port_at(v.get(4..).unwrap_or_default())),
                    20 => ip_at(v, true).zip(port_at(v.get(16..).unwrap_or_default())),
                    _ => None,
                };
                match target {
                    Some((ip, port)) => format!(" : {ip} . {port}"),
                    None => format!(" : {}", hex(v)),
                }
            }
            ElemData::Verdict(v) => format!(" : {v}"),
            ElemData::Objref(o) => format!(" : \"{o}\""),
        };
        format!("{key}{data}")
    }
}

/// A set or map and its elements (sorted, as a set: the kernel's order means nothing).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Set {
    /// Name.
    pub name: String,
    /// Declaration.
    pub spec: SetSpec,
    /// Elements, sorted.
    pub elements: Vec<Elem>,
}

/// A counter object's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Counter {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// One table (family inet) with everything in it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Name.
    pub name: String,
    /// Chains in creation order.
    pub chains: Vec<Chain>,
    /// Sets and maps in creation order.
    pub sets: Vec<Set>,
    /// Named counters and their values (desired tables hold zeros).
    pub counters: BTreeMap<String, Counter>,
}

impl Table {
    /// A set by name.
    pub fn set(&self, name: &str) -> Option<&Set> {
        self.sets.iter().find(|s| s.name == name)
    }

    /// A chain by name.
    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    /// Number of rules over all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.iter().map(|c| c.rules.len()).sum()
    }

    /// Number of set elements over all sets.
    pub fn element_count(&self) -> usize {
        self.sets.iter().map(|s| s.elements.len()).sum()
    }
}

/// What edge-fw wants in the kernel: `inet edge` (replaced whole) and `inet edge_state`
/// (converged in place; its counters live across applies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// `inet edge`.
    pub edge: Table,
    /// `inet edge_state`.
    pub state: Table,
}

/// What the kernel holds of ours, read in one consistent generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// `inet edge`, if it exists.
    pub edge: Option<Table>,
    /// `inet edge_state`, if it exists.
    pub state: Option<Table>,
    /// The ruleset generation the read saw.
    pub generation: u32,
}

impl Live {
    /// What the kernel holds as a ruleset (a missing table as an empty one of its name).
    pub fn tables(&self) -> [(&str, Option<&Table>); 2] {
        [
            (crate::ir::TABLE, self.edge.as_ref()),
            (crate::ir::STATE_TABLE, self.state.as_ref()),
        ]
    }

    /// The counters of `inet edge_state` (empty when it is missing).
    pub fn counters(&self) -> BTreeMap<String, Counter> {
        self.state
            .as_ref()
            .map(|t| t.counters.clone())
            .unwrap_or_default()
    }
}

mod compare;
pub use compare::{Change, Presence, diff, diff_table, lines};

#[cfg(test)]
mod tests;
