//! I/O: turns the IR into one nf_tables batch (messages built by libnftnl through `nftnl`)
//! and sends it the way `nft` does: the whole batch in ONE `sendmsg` with an iovec array,
//! after forcing the socket buffers large enough, with `NETLINK_EXT_ACK` on so a rejected
//! message comes back with the kernel's reason. Each error's sequence number is mapped back to
//! the message that caused it and the config line that produced that message.
//!
//! A batch sent without its trailing `NFNL_MSG_BATCH_END` is a kernel dry run: the kernel
//! checks every message, then aborts the transaction (what `nft --check` does).
//!
//! `nftnl`'s safe API has no maps, verdict maps, objects or lookups with a destination
//! register, so every message here is built with the `nftnl_sys` calls directly; the crate's
//! [`nftnl::Batch`] provides the page buffers and the begin/end messages.

use std::cell::RefCell;
use std::ffi::{CString, c_void};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr;

use nftnl::nftnl_sys as sys;
use nftnl::{Batch, MsgType, NlMsg};

use crate::ir::{
    Base, ChainKind, ElemData, Element, Expr, Family, Hook, Rule, Ruleset, Set, SetKind, Table,
};

// Kernel constants libc does not carry.
const NFT_SET_OBJECT: u32 = 0x40;
const NFT_OBJECT_COUNTER: u32 = 1;
const NFPROTO_INET: u16 = 1;
const NFPROTO_IPV4: u32 = 2;
const NFPROTO_IPV6: u32 = 10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLM_F_ACK_TLVS: u16 = 0x200;
// nft datatype ids, combined for concatenations as nft does (6 bits per field).
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_IFNAME: u32 = 41;
// Registers as nft allocates them for our key `iifname . ip daddr . l4proto . th dport`.
const REG_1: u32 = 1;
const REG_2: u32 = 2;
const REG_3: u32 = 3;
const REG32_01: u32 = 9;
const REG32_05: u32 = 13;
const REG32_06: u32 = 14;
const REG32_09: u32 = 17;
/// Set elements per NEWSETELEM message (each message stays well under 64 KiB).
pub const ELEMS_PER_MSG: usize = 256;

/// Errors building, sending or acknowledging a batch.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The netfilter netlink socket could not be opened or configured.
    #[error("cannot open the nf_tables netlink socket")]
    OpenSocket(#[source] io::Error),
    /// The batch could not be sent.
    #[error("cannot send the nf_tables batch ({bytes} bytes in {pages} pages)")]
    SendBatch {
        /// Batch size.
        bytes: usize,
        /// Number of iovecs.
        pages: usize,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Reading the kernel's answers failed.
    #[error("cannot read the kernel's acknowledgements")]
    ReadAcks(#[source] io::Error),
    /// A string for a message contained a NUL byte.
    #[error("name `{0}` contains a NUL byte")]
    NulInName(String),
}

/// One message the kernel rejected, mapped back to where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Sequence number of the message.
    pub seq: u32,
    /// errno returned by the kernel.
    pub errno: i32,
    /// What the message was (`rule in/ssh#0 edge.toml:207 in chain input`).
    pub what: String,
    /// The kernel's extended-ack text, if any.
    pub reason: Option<String>,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let err = io::Error::from_raw_os_error(self.errno);
        write!(f, "{}: {err}", self.what)?;
        if let Some(r) = &self.reason {
            write!(f, " ({r})")?;
        }
        Ok(())
    }
}

/// One nf_tables message of the batch, in IR terms.
#[derive(Debug, Clone)]
pub enum Msg {
    /// NEWTABLE (create if missing).
    AddTable(String),
    /// DELTABLE.
    DelTable(String),
    /// NEWCHAIN with hook, type, priority and policy when base.
    AddChain(String, String, Option<Base>),
    /// DELRULE without handle: flush a chain.
    FlushChain(String, String),
    /// NEWSET.
    AddSet(String, Set, u32),
    /// DELSETELEM without elements: flush a set.
    FlushSet(String, String),
    /// NEWSETELEM with a chunk of elements.
    /// A chunk of a set's elements; the chunks of one set share it (no copy per chunk).
    AddElems(String, std::sync::Arc<Set>, u32, std::ops::Range<usize>),
    /// NEWOBJ counter.
    AddCounter(String, String),
    /// DELOBJ counter.
    DelCounter(String, String),
    /// NEWRULE appended to a chain.
    AddRule(String, String, Rule),
}

impl Msg {
    /// What the message is, for error messages.
    pub fn describe(&self) -> String {
        match self {
            Msg::AddTable(t) => format!("add table inet {t}"),
            Msg::DelTable(t) => format!("delete table inet {t}"),
            Msg::AddChain(t, c, _) => format!("add chain inet {t} {c}"),
            Msg::FlushChain(t, c) => format!("flush chain inet {t} {c}"),
            Msg::AddSet(t, s, _) => format!("add {} in table {t}", s.id),
            Msg::FlushSet(t, s) => format!("flush set inet {t} {s}"),
            Msg::AddElems(t, s, _, r) => {
                let first = s
                    .elements
                    .get(r.start)
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                format!(
                    "elements {}..{} of {} in table {t} (first: {first})",
                    r.start, r.end, s.id
                )
            }
            Msg::AddCounter(t, c) => format!("add counter inet {t} {c}"),
            Msg::DelCounter(t, c) => format!("delete counter inet {t} {c}"),
            Msg::AddRule(t, c, r) => format!("rule `{}` in chain inet {t} {c}", r.origin.comment()),
        }
    }

    /// Message type in the batch.
    fn kind(&self) -> (u16, u16) {
        let create = (libc::NLM_F_CREATE) as u16;
        let (t, f) = match self {
            Msg::AddTable(_) => (libc::NFT_MSG_NEWTABLE, create),
            Msg::DelTable(_) => (libc::NFT_MSG_DELTABLE, 0),
            Msg::AddChain(..) => (libc::NFT_MSG_NEWCHAIN, create),
            Msg::FlushChain(..) => (libc::NFT_MSG_DELRULE, 0),
            Msg::AddSet(..) => (libc::NFT_MSG_NEWSET, create),
            Msg::FlushSet(..) => (libc::NFT_MSG_DELSETELEM, 0),
            Msg::AddElems(..) => (libc::NFT_MSG_NEWSETELEM, create),
            Msg::AddCounter(..) => (libc::NFT_MSG_NEWOBJ, create),
            Msg::DelCounter(..) => (libc::NFT_MSG_DELOBJ, 0),
            Msg::AddRule(..) => (libc::NFT_MSG_NEWRULE, create | (libc::NLM_F_APPEND as u16)),
        };
        (t as u16, f)
    }
}

fn cstr(s: &str) -> CString {
    // Names were validated by edge-config (no NUL); a NUL would only truncate the name.
    CString::new(s.replace('\0', "")).unwrap_or_default()
}

fn concat_type(fields: &[u32]) -> u32 {
    fields.iter().fold(0, |acc, f| (acc << 6) | f)
}

fn key_type(f: Family) -> (u32, u32) {
    match f {
        Family::V4 => (
            concat_type(&[
                TYPE_IFNAME,
                TYPE_IPADDR,
                TYPE_INET_PROTOCOL,
                TYPE_INET_SERVICE,
            ]),
            28,
        ),
        Family::V6 => (
            concat_type(&[
                TYPE_IFNAME,
                TYPE_IP6ADDR,
                TYPE_INET_PROTOCOL,
                TYPE_INET_SERVICE,
            ]),
            40,
        ),
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Key bytes as nft lays out a concatenation: each field padded to 4 bytes.
fn key_bytes(e: &Element) -> Vec<u8> {
    let mut k = vec![0u8; 16];
    let name = e.key.iif.as_bytes();
    let n = name.len().min(15);
    k[..n].copy_from_slice(&name[..n]);
    k.extend(ip_bytes(&e.key.daddr));
    k.extend([e.key.proto.number(), 0, 0, 0]);
    k.extend(e.key.dport.to_be_bytes());
    k.extend([0, 0]);
    k
}

/// Builds one expression with `nftnl_expr_alloc` and attribute setters.
struct X(ptr::NonNull<sys::nftnl_expr>);

impl X {
    fn new(name: &str) -> Self {
        let n = cstr(name);
        // SAFETY: `n` is a valid C string; libnftnl copies what it needs.
        let p = unsafe { sys::nftnl_expr_alloc(n.as_ptr()) };
        match ptr::NonNull::new(p) {
            Some(p) => X(p),
            // Allocation failure: nothing sensible to do (nftnl aborts the same way).
            None => std::process::abort(),
        }
    }
    fn u32(self, attr: u32, v: u32) -> Self {
        // SAFETY: the expression pointer is valid and owned by us until added to a rule.
        unsafe { sys::nftnl_expr_set_u32(self.0.as_ptr(), attr as u16, v) };
        self
    }
    fn data(self, attr: u32, d: &[u8]) -> Self {
        // SAFETY: libnftnl copies `d.len()` bytes from a valid slice.
        unsafe {
            sys::nftnl_expr_set(
                self.0.as_ptr(),
                attr as u16,
                d.as_ptr().cast::<c_void>(),
                d.len() as u32,
            )
        };
        self
    }
    fn str(self, attr: u32, s: &str) -> Self {
        let c = cstr(s);
        // SAFETY: libnftnl duplicates the string.
        unsafe { sys::nftnl_expr_set_str(self.0.as_ptr(), attr as u16, c.as_ptr()) };
        self
    }
}

fn meta(key: u32, dreg: u32) -> X {
    X::new("meta")
        .u32(sys::NFTNL_EXPR_META_KEY, key)
        .u32(sys::NFTNL_EXPR_META_DREG, dreg)
}

fn payload(base: u32, offset: u32, len: u32, dreg: u32) -> X {
    X::new("payload")
        .u32(sys::NFTNL_EXPR_PAYLOAD_DREG, dreg)
        .u32(sys::NFTNL_EXPR_PAYLOAD_BASE, base)
        .u32(sys::NFTNL_EXPR_PAYLOAD_OFFSET, offset)
        .u32(sys::NFTNL_EXPR_PAYLOAD_LEN, len)
}

fn cmp(op: u32, data: &[u8]) -> X {
    X::new("cmp")
        .u32(sys::NFTNL_EXPR_CMP_SREG, REG_1)
        .u32(sys::NFTNL_EXPR_CMP_OP, op)
        .data(sys::NFTNL_EXPR_CMP_DATA, data)
}

fn bitwise_mask(len: u32, mask: &[u8]) -> X {
    let xor = vec![0u8; mask.len()];
    X::new("bitwise")
        .u32(sys::NFTNL_EXPR_BITWISE_SREG, REG_1)
        .u32(sys::NFTNL_EXPR_BITWISE_DREG, REG_1)
        .u32(sys::NFTNL_EXPR_BITWISE_LEN, len)
        .data(sys::NFTNL_EXPR_BITWISE_MASK, mask)
        .data(sys::NFTNL_EXPR_BITWISE_XOR, &xor)
}

fn verdict(code: i32, chain: Option<&str>) -> X {
    let x = X::new("immediate")
        .u32(sys::NFTNL_EXPR_IMM_DREG, libc::NFT_REG_VERDICT as u32)
        .u32(sys::NFTNL_EXPR_IMM_VERDICT, code as u32);
    match chain {
        Some(c) => x.str(sys::NFTNL_EXPR_IMM_CHAIN, c),
        None => x,
    }
}

fn ifname_bytes(n: &str) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    let s = n.as_bytes();
    let l = s.len().min(15);
    b[..l].copy_from_slice(&s[..l]);
    b
}

fn nfproto(f: Family) -> Vec<X> {
    let v = match f {
        Family::V4 => NFPROTO_IPV4,
        Family::V6 => NFPROTO_IPV6,
    };
    vec![
        meta(libc::NFT_META_NFPROTO as u32, REG_1),
        cmp(libc::NFT_CMP_EQ as u32, &[v as u8]),
    ]
}

/// `nfproto` guard + the four-field key in registers, as nft emits it.
fn key_exprs(f: Family) -> Vec<X> {
    let mut v = nfproto(f);
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER as u32;
    let th = libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32;
    v.push(meta(libc::NFT_META_IIFNAME as u32, REG_1));
    match f {
        Family::V4 => {
            v.push(payload(nh, 16, 4, REG_2));
            v.push(meta(libc::NFT_META_L4PROTO as u32, REG32_05));
            v.push(payload(th, 2, 2, REG32_06));
        }
        Family::V6 => {
            v.push(payload(nh, 24, 16, REG_2));
            v.push(meta(libc::NFT_META_L4PROTO as u32, REG_3));
            v.push(payload(th, 2, 2, REG32_09));
        }
    }
    v
}

fn lookup(set: &str, set_id: u32, dreg: Option<u32>) -> X {
    let x = X::new("lookup")
        .u32(sys::NFTNL_EXPR_LOOKUP_SREG, REG_1)
        .str(sys::NFTNL_EXPR_LOOKUP_SET, set)
        .u32(sys::NFTNL_EXPR_LOOKUP_SET_ID, set_id);
    match dreg {
        Some(d) => x.u32(sys::NFTNL_EXPR_LOOKUP_DREG, d),
        None => x,
    }
}

fn ct_bits(key: u32, mask: u32) -> Vec<X> {
    vec![
        X::new("ct")
            .u32(sys::NFTNL_EXPR_CT_KEY, key)
            .u32(sys::NFTNL_EXPR_CT_DREG, REG_1),
        bitwise_mask(4, &mask.to_ne_bytes()),
        cmp(libc::NFT_CMP_NEQ as u32, &0u32.to_ne_bytes()),
    ]
}

/// The netlink expressions of one IR expression (the same ones nft 1.0.6 generates).
fn exprs_of(e: &Expr, set_id: &dyn Fn(&str) -> u32) -> Vec<X> {
    let th = libc::NFT_PAYLOAD_TRANSPORT_HEADER as u32;
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER as u32;
    let eq = libc::NFT_CMP_EQ as u32;
    match e {
        Expr::Iifname(n) => vec![
            meta(libc::NFT_META_IIFNAME as u32, REG_1),
            cmp(eq, &ifname_bytes(n)),
        ],
        Expr::Oifname(n) => vec![
            meta(libc::NFT_META_OIFNAME as u32, REG_1),
            cmp(eq, &ifname_bytes(n)),
        ],
        Expr::NfProto(f) => nfproto(*f),
        Expr::Saddr(net) => {
            let fam = Family::of(net.addr());
            let mut v = nfproto(fam);
            let off = if fam == Family::V4 { 12 } else { 8 };
            let addr = ip_bytes(&net.network());
            let plen = u32::from(net.prefix_len());
            if plen % 8 == 0 {
                let n = (plen / 8) as usize;
                v.push(payload(nh, off, n as u32, REG_1));
                v.push(cmp(eq, &addr[..n]));
            } else {
                v.push(payload(nh, off, addr.len() as u32, REG_1));
                v.push(bitwise_mask(addr.len() as u32, &ip_bytes(&net.netmask())));
                v.push(cmp(eq, &addr));
            }
            v
        }
        Expr::Dport(p, a, b) => {
            let mut v = vec![
                meta(libc::NFT_META_L4PROTO as u32, REG_1),
                cmp(eq, &[p.number()]),
                payload(th, 2, 2, REG_1),
            ];
            if a == b {
                v.push(cmp(eq, &a.to_be_bytes()));
            } else {
                v.push(cmp(libc::NFT_CMP_GTE as u32, &a.to_be_bytes()));
                v.push(cmp(libc::NFT_CMP_LTE as u32, &b.to_be_bytes()));
            }
            v
        }
        Expr::IcmpType(t) | Expr::Icmpv6Type(t) => {
            let (fam, proto) = if matches!(e, Expr::IcmpType(_)) {
                (Family::V4, 1u8)
            } else {
                (Family::V6, 58u8)
            };
            let mut v = nfproto(fam);
            v.push(meta(libc::NFT_META_L4PROTO as u32, REG_1));
            v.push(cmp(eq, &[proto]));
            v.push(payload(th, 0, 1, REG_1));
            v.push(cmp(eq, &[*t]));
            v
        }
        Expr::CtState(mask) => ct_bits(libc::NFT_CT_STATE as u32, *mask),
        // IPS_DST_NAT = 1 << 5.
        Expr::CtStatusDnat => ct_bits(libc::NFT_CT_STATUS as u32, 0x20),
        Expr::InSet(f, s) => {
            let mut v = key_exprs(*f);
            v.push(lookup(s, set_id(s), None));
            v
        }
        Expr::Vmap(f, s) => {
            let mut v = key_exprs(*f);
            v.push(lookup(s, set_id(s), Some(libc::NFT_REG_VERDICT as u32)));
            v
        }
        Expr::CounterMap(f, s) => {
            let mut v = key_exprs(*f);
            v.push(
                X::new("objref")
                    .u32(sys::NFTNL_EXPR_OBJREF_SET_SREG, REG_1)
                    .str(sys::NFTNL_EXPR_OBJREF_SET_NAME, s)
                    .u32(sys::NFTNL_EXPR_OBJREF_SET_ID, set_id(s)),
            );
            v
        }
        Expr::DnatMap(f, s) => {
            let mut v = key_exprs(*f);
            v.push(lookup(s, set_id(s), Some(REG_1)));
            let (fam, proto_reg) = match f {
                Family::V4 => (NFPROTO_IPV4, REG32_01),
                Family::V6 => (NFPROTO_IPV6, REG_2),
            };
            v.push(
                X::new("nat")
                    .u32(sys::NFTNL_EXPR_NAT_TYPE, libc::NFT_NAT_DNAT as u32)
                    .u32(sys::NFTNL_EXPR_NAT_FAMILY, fam)
                    .u32(sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, REG_1)
                    .u32(sys::NFTNL_EXPR_NAT_REG_ADDR_MAX, REG_1)
                    .u32(sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, proto_reg)
                    .u32(sys::NFTNL_EXPR_NAT_REG_PROTO_MAX, proto_reg)
                    // NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED
                    .u32(sys::NFTNL_EXPR_NAT_FLAGS, 3),
            );
            v
        }
        Expr::SetMark(bit) => vec![
            meta(libc::NFT_META_MARK as u32, REG_1),
            X::new("bitwise")
                .u32(sys::NFTNL_EXPR_BITWISE_SREG, REG_1)
                .u32(sys::NFTNL_EXPR_BITWISE_DREG, REG_1)
                .u32(sys::NFTNL_EXPR_BITWISE_LEN, 4)
                .data(sys::NFTNL_EXPR_BITWISE_MASK, &(!bit).to_ne_bytes())
                .data(sys::NFTNL_EXPR_BITWISE_XOR, &bit.to_ne_bytes()),
            X::new("meta")
                .u32(sys::NFTNL_EXPR_META_KEY, libc::NFT_META_MARK as u32)
                .u32(sys::NFTNL_EXPR_META_SREG, REG_1),
        ],
        Expr::MarkBit(bit) => vec![
            meta(libc::NFT_META_MARK as u32, REG_1),
            bitwise_mask(4, &bit.to_ne_bytes()),
            cmp(eq, &bit.to_ne_bytes()),
        ],
        Expr::Masquerade => vec![X::new("masq")],
        Expr::Accept => vec![verdict(libc::NF_ACCEPT, None)],
        Expr::Drop => vec![verdict(libc::NF_DROP, None)],
        Expr::Return => vec![verdict(libc::NFT_RETURN, None)],
    }
}

fn comment_udata(c: &str) -> Vec<u8> {
    // NFTNL_UDATA_RULE_COMMENT (0), length with the NUL, value; at most 255 bytes.
    let mut s: Vec<u8> = c.as_bytes().iter().copied().take(250).collect();
    s.push(0);
    let mut v = vec![0u8, s.len() as u8];
    v.extend(s);
    v
}

fn hook_num(h: Hook) -> u32 {
    match h {
        Hook::Prerouting => libc::NF_INET_PRE_ROUTING as u32,
        Hook::Input => libc::NF_INET_LOCAL_IN as u32,
        Hook::Forward => libc::NF_INET_FORWARD as u32,
        Hook::Postrouting => libc::NF_INET_POST_ROUTING as u32,
    }
}

/// A batch of [`Msg`]s with the set ids they share.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Messages in batch order.
    pub msgs: Vec<Msg>,
    sets: Vec<(String, String, u32)>,
}

impl Plan {
    fn set_id(&self, table: &str, name: &str) -> u32 {
        self.sets
            .iter()
            .find(|(t, n, _)| t == table && n == name)
            .map(|(_, _, id)| *id)
            .unwrap_or(0)
    }

    fn add_table_contents(&mut self, t: &Table, fresh: bool) {
        let name = &t.name;
        for c in &t.counters {
            self.msgs.push(Msg::AddCounter(name.clone(), c.clone()));
        }
        for s in &t.sets {
            let id = self.sets.len() as u32 + 1;
            self.sets.push((name.clone(), s.name.clone(), id));
            self.msgs.push(Msg::AddSet(name.clone(), s.clone(), id));
            if !fresh {
                self.msgs.push(Msg::FlushSet(name.clone(), s.name.clone()));
            }
        }
        for c in &t.chains {
            self.msgs
                .push(Msg::AddChain(name.clone(), c.name.clone(), c.base));
            if !fresh {
                self.msgs
                    .push(Msg::FlushChain(name.clone(), c.name.clone()));
            }
        }
    }

    fn add_table_fill(&mut self, t: &Table) {
        for s in &t.sets {
            let id = self.set_id(&t.name, &s.name);
            let shared = std::sync::Arc::new(s.clone());
            let mut i = 0;
            while i < s.elements.len() {
                let end = (i + ELEMS_PER_MSG).min(s.elements.len());
                self.msgs
                    .push(Msg::AddElems(t.name.clone(), shared.clone(), id, i..end));
                i = end;
            }
        }
        for c in &t.chains {
            for r in &c.rules {
                self.msgs
                    .push(Msg::AddRule(t.name.clone(), c.name.clone(), r.clone()));
            }
        }
    }

    /// The transaction that installs `rs`: `inet edge` replaced (add, delete, add + contents);
    /// `inet edge_state` converged in place (declare, flush, refill), dropping the counters
    /// of forwards that no longer exist (`stale_counters`, read from the live table).
    pub fn install(rs: &Ruleset, stale_counters: &[String]) -> Self {
        let mut p = Plan::default();
        let e = &rs.edge.name;
        p.msgs.push(Msg::AddTable(e.clone()));
        p.msgs.push(Msg::DelTable(e.clone()));
        p.msgs.push(Msg::AddTable(e.clone()));
        p.add_table_contents(&rs.edge, true);
        p.msgs.push(Msg::AddTable(rs.state.name.clone()));
        p.add_table_contents(&rs.state, false);
        p.add_table_fill(&rs.edge);
        p.add_table_fill(&rs.state);
        for c in stale_counters {
            p.msgs
                .push(Msg::DelCounter(rs.state.name.clone(), c.clone()));
        }
        p
    }

    /// Builds the nftnl batch; returns it with the sequence number of every message.
    pub fn build(&self) -> (nftnl::FinalizedBatch, Vec<u32>) {
        let mut batch = Batch::new();
        let seqs = RefCell::new(Vec::with_capacity(self.msgs.len()));
        for m in &self.msgs {
            batch.add(
                &Writer {
                    msg: m,
                    plan: self,
                    seqs: &seqs,
                },
                MsgType::Add,
            );
        }
        (batch.finalize(), seqs.into_inner())
    }
}

struct Writer<'a> {
    msg: &'a Msg,
    plan: &'a Plan,
    seqs: &'a RefCell<Vec<u32>>,
}

// SAFETY: every message is built by libnftnl's own `*_nlmsg_build_payload`, which never writes
// more than one netlink message (at most `nft_nlmsg_maxsize()` bytes, as element messages are
// chunked by ELEMS_PER_MSG).
unsafe impl NlMsg for Writer<'_> {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _: MsgType) {
        self.seqs.borrow_mut().push(seq);
        let (ty, flags) = self.msg.kind();
        // SAFETY: `buf` has room for one message (caller contract of NlMsg::write).
        let nlh = unsafe { sys::nftnl_nlmsg_build_hdr(buf.cast(), ty, NFPROTO_INET, flags, seq) };
        // SAFETY: each arm allocates a libnftnl object, fills it with valid C strings and
        // buffers, serialises it into `nlh` and frees it.
        unsafe { write_payload(nlh, self.msg, self.plan) };
    }
}

unsafe fn write_payload(nlh: *mut libc::nlmsghdr, msg: &Msg, plan: &Plan) {
    unsafe {
        match msg {
            Msg::AddTable(t) | Msg::DelTable(t) => {
                let o = sys::nftnl_table_alloc();
                let n = cstr(t);
                sys::nftnl_table_set_str(o, sys::NFTNL_TABLE_NAME as u16, n.as_ptr());
                sys::nftnl_table_set_u32(
                    o,
                    sys::NFTNL_TABLE_FAMILY as u16,
                    u32::from(NFPROTO_INET),
                );
                sys::nftnl_table_nlmsg_build_payload(nlh, o);
                sys::nftnl_table_free(o);
            }
            Msg::AddChain(t, c, base) => {
                let o = sys::nftnl_chain_alloc();
                let (tn, cn) = (cstr(t), cstr(c));
                sys::nftnl_chain_set_str(o, sys::NFTNL_CHAIN_TABLE as u16, tn.as_ptr());
                sys::nftnl_chain_set_str(o, sys::NFTNL_CHAIN_NAME as u16, cn.as_ptr());
                sys::nftnl_chain_set_u32(
                    o,
                    sys::NFTNL_CHAIN_FAMILY as u16,
                    u32::from(NFPROTO_INET),
                );
                if let Some(b) = base {
                    let ty = cstr(match b.kind {
                        ChainKind::Filter => "filter",
                        ChainKind::Nat => "nat",
                    });
                    sys::nftnl_chain_set_u32(o, sys::NFTNL_CHAIN_HOOKNUM as u16, hook_num(b.hook));
                    sys::nftnl_chain_set_s32(o, sys::NFTNL_CHAIN_PRIO as u16, b.priority);
                    sys::nftnl_chain_set_str(o, sys::NFTNL_CHAIN_TYPE as u16, ty.as_ptr());
                    let pol = if b.accept {
                        libc::NF_ACCEPT
                    } else {
                        libc::NF_DROP
                    };
                    sys::nftnl_chain_set_u32(o, sys::NFTNL_CHAIN_POLICY as u16, pol as u32);
                }
                sys::nftnl_chain_nlmsg_build_payload(nlh, o);
                sys::nftnl_chain_free(o);
            }
            Msg::FlushChain(t, c) => {
                let o = sys::nftnl_rule_alloc();
                let (tn, cn) = (cstr(t), cstr(c));
                sys::nftnl_rule_set_str(o, sys::NFTNL_RULE_TABLE as u16, tn.as_ptr());
                sys::nftnl_rule_set_str(o, sys::NFTNL_RULE_CHAIN as u16, cn.as_ptr());
                sys::nftnl_rule_set_u32(o, sys::NFTNL_RULE_FAMILY as u16, u32::from(NFPROTO_INET));
                sys::nftnl_rule_nlmsg_build_payload(nlh, o);
                sys::nftnl_rule_free(o);
            }
            Msg::AddSet(t, s, id) => {
                let o = new_set(t, &s.name, *id);
                let (kt, kl) = key_type(s.family);
                sys::nftnl_set_set_u32(o, sys::NFTNL_SET_KEY_TYPE as u16, kt);
                sys::nftnl_set_set_u32(o, sys::NFTNL_SET_KEY_LEN as u16, kl);
                if let Some(n) = s.declared_size(t) {
                    sys::nftnl_set_set_u32(o, sys::NFTNL_SET_DESC_SIZE as u16, n);
                }
                match s.kind {
                    SetKind::Set => {}
                    SetKind::Target => {
                        let (addr, len) = match s.family {
                            Family::V4 => (TYPE_IPADDR, 8),
                            Family::V6 => (TYPE_IP6ADDR, 20),
                        };
                        sys::nftnl_set_set_u32(
                            o,
                            sys::NFTNL_SET_FLAGS as u16,
                            libc::NFT_SET_MAP as u32,
                        );
                        sys::nftnl_set_set_u32(
                            o,
                            sys::NFTNL_SET_DATA_TYPE as u16,
                            concat_type(&[addr, TYPE_INET_SERVICE]),
                        );
                        sys::nftnl_set_set_u32(o, sys::NFTNL_SET_DATA_LEN as u16, len);
                    }
                    SetKind::Verdict => {
                        sys::nftnl_set_set_u32(
                            o,
                            sys::NFTNL_SET_FLAGS as u16,
                            libc::NFT_SET_MAP as u32,
                        );
                        sys::nftnl_set_set_u32(
                            o,
                            sys::NFTNL_SET_DATA_TYPE as u16,
                            libc::NFT_DATA_VERDICT,
                        );
                    }
                    SetKind::Counter => {
                        sys::nftnl_set_set_u32(o, sys::NFTNL_SET_FLAGS as u16, NFT_SET_OBJECT);
                        sys::nftnl_set_set_u32(
                            o,
                            sys::NFTNL_SET_OBJ_TYPE as u16,
                            NFT_OBJECT_COUNTER,
                        );
                    }
                }
                sys::nftnl_set_nlmsg_build_payload(nlh, o);
                sys::nftnl_set_free(o);
            }
            Msg::FlushSet(t, s) => {
                let o = new_set(t, s, 0);
                sys::nftnl_set_elems_nlmsg_build_payload(nlh, o);
                sys::nftnl_set_free(o);
            }
            Msg::AddElems(t, s, id, range) => {
                let o = new_set(t, &s.name, *id);
                for e in s.elements.get(range.clone()).unwrap_or_default() {
                    let el = sys::nftnl_set_elem_alloc();
                    let k = key_bytes(e);
                    sys::nftnl_set_elem_set(
                        el,
                        sys::NFTNL_SET_ELEM_KEY as u16,
                        k.as_ptr().cast(),
                        k.len() as u32,
                    );
                    match &e.data {
                        ElemData::None => {}
                        ElemData::Target(ip, port) => {
                            let mut d = ip_bytes(ip);
                            d.extend(port.to_be_bytes());
                            d.extend([0, 0]);
                            sys::nftnl_set_elem_set(
                                el,
                                sys::NFTNL_SET_ELEM_DATA as u16,
                                d.as_ptr().cast(),
                                d.len() as u32,
                            );
                        }
                        ElemData::Jump(c) => {
                            let v = libc::NFT_JUMP as u32;
                            sys::nftnl_set_elem_set(
                                el,
                                sys::NFTNL_SET_ELEM_VERDICT as u16,
                                (&v as *const u32).cast(),
                                4,
                            );
                            let cn = cstr(c);
                            sys::nftnl_set_elem_set(
                                el,
                                sys::NFTNL_SET_ELEM_CHAIN as u16,
                                cn.as_ptr().cast(),
                                cn.as_bytes_with_nul().len() as u32,
                            );
                        }
                        ElemData::Counter(c) => {
                            let cn = cstr(c);
                            sys::nftnl_set_elem_set(
                                el,
                                sys::NFTNL_SET_ELEM_OBJREF as u16,
                                cn.as_ptr().cast(),
                                cn.as_bytes_with_nul().len() as u32,
                            );
                        }
                    }
                    sys::nftnl_set_elem_add(o, el);
                }
                sys::nftnl_set_elems_nlmsg_build_payload(nlh, o);
                sys::nftnl_set_free(o);
            }
            Msg::AddCounter(t, c) | Msg::DelCounter(t, c) => {
                let o = sys::nftnl_obj_alloc();
                let (tn, cn) = (cstr(t), cstr(c));
                sys::nftnl_obj_set_str(o, sys::NFTNL_OBJ_TABLE as u16, tn.as_ptr());
                sys::nftnl_obj_set_str(o, sys::NFTNL_OBJ_NAME as u16, cn.as_ptr());
                sys::nftnl_obj_set_u32(o, sys::NFTNL_OBJ_FAMILY as u16, u32::from(NFPROTO_INET));
                sys::nftnl_obj_set_u32(o, sys::NFTNL_OBJ_TYPE as u16, NFT_OBJECT_COUNTER);
                sys::nftnl_obj_nlmsg_build_payload(nlh, o);
                sys::nftnl_obj_free(o);
            }
            Msg::AddRule(t, c, r) => {
                let o = sys::nftnl_rule_alloc();
                let (tn, cn) = (cstr(t), cstr(c));
                sys::nftnl_rule_set_str(o, sys::NFTNL_RULE_TABLE as u16, tn.as_ptr());
                sys::nftnl_rule_set_str(o, sys::NFTNL_RULE_CHAIN as u16, cn.as_ptr());
                sys::nftnl_rule_set_u32(o, sys::NFTNL_RULE_FAMILY as u16, u32::from(NFPROTO_INET));
                let set_id = |s: &str| plan.set_id(t, s);
                for e in &r.exprs {
                    for x in exprs_of(e, &set_id) {
                        // The rule takes ownership of the expression.
                        sys::nftnl_rule_add_expr(o, x.0.as_ptr());
                    }
                }
                let ud = comment_udata(&r.origin.comment());
                sys::nftnl_rule_set_data(
                    o,
                    sys::NFTNL_RULE_USERDATA as u16,
                    ud.as_ptr().cast(),
                    ud.len() as u32,
                );
                sys::nftnl_rule_nlmsg_build_payload(nlh, o);
                sys::nftnl_rule_free(o);
            }
        }
    }
}

unsafe fn new_set(table: &str, name: &str, id: u32) -> *mut sys::nftnl_set {
    unsafe {
        let o = sys::nftnl_set_alloc();
        let (tn, sn) = (cstr(table), cstr(name));
        sys::nftnl_set_set_str(o, sys::NFTNL_SET_TABLE as u16, tn.as_ptr());
        sys::nftnl_set_set_str(o, sys::NFTNL_SET_NAME as u16, sn.as_ptr());
        sys::nftnl_set_set_u32(o, sys::NFTNL_SET_FAMILY as u16, u32::from(NFPROTO_INET));
        if id != 0 {
            sys::nftnl_set_set_u32(o, sys::NFTNL_SET_ID as u16, id);
        }
        o
    }
}

/// What a sent batch did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Messages sent (without begin/end).
    pub messages: usize,
    /// Bytes handed to `sendmsg`.
    pub bytes: usize,
    /// iovecs (nftnl pages) in the one `sendmsg`.
    pub pages: usize,
    /// Rejected messages, mapped back to their source; empty means accepted.
    pub rejections: Vec<Rejection>,
}

/// A netfilter netlink socket configured like nft's: extended acks, capped acks.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
}

fn setsockopt_int(fd: i32, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: passing a pointer to a live i32 and its size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Netlink ports of the sockets this process committed through, newest last (a few dozen:
/// the notifications of a commit arrive within milliseconds).
static OWN_PORTIDS: std::sync::Mutex<std::collections::VecDeque<u32>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());
const OWN_PORTIDS_KEPT: usize = 64;

fn remember_own_portid(portid: u32) {
    let mut v = OWN_PORTIDS.lock().unwrap_or_else(|e| e.into_inner());
    if v.len() == OWN_PORTIDS_KEPT {
        v.pop_front();
    }
    v.push_back(portid);
}

/// True when `portid` is the port of one of this process's recent [`Socket`]s: the
/// transaction a notification reports was committed by us.
pub fn is_own_portid(portid: u32) -> bool {
    portid != 0
        && OWN_PORTIDS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&portid)
}

/// Opens a netlink socket joined to `NFNLGRP_NFTABLES`: every nf_tables transaction in this
/// network namespace arrives on it as notifications (see [`crate::events`]).
///
/// Equivalent to what `nft monitor` listens to.
pub fn subscribe_events() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned immediately.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_NETFILTER,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: zeroed sockaddr_nl is valid; groups selects NFNLGRP_NFTABLES.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = 1 << (libc::NFNLGRP_NFTABLES - 1);
    // SAFETY: binding with a pointer to a live sockaddr_nl of the right size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

impl Socket {
    /// Opens `NETLINK_NETFILTER` with `NETLINK_EXT_ACK` and `NETLINK_CAP_ACK` on.
    pub fn open() -> Result<Self, NetlinkError> {
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(NetlinkError::OpenSocket(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh, valid descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        setsockopt_int(raw, libc::SOL_NETLINK, libc::NETLINK_EXT_ACK, 1)
            .map_err(NetlinkError::OpenSocket)?;
        setsockopt_int(raw, libc::SOL_NETLINK, libc::NETLINK_CAP_ACK, 1)
            .map_err(NetlinkError::OpenSocket)?;
        // Bind now (port 0: the kernel picks a free port) to learn the port our commits'
        // notifications will carry.
        // SAFETY: zeroed sockaddr_nl is valid; bind/getsockname get a live one of its size.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        let r = unsafe { libc::bind(raw, (&addr as *const libc::sockaddr_nl).cast(), len) };
        if r < 0 {
            return Err(NetlinkError::OpenSocket(io::Error::last_os_error()));
        }
        // SAFETY: as above.
        let r = unsafe {
            libc::getsockname(raw, (&mut addr as *mut libc::sockaddr_nl).cast(), &mut len)
        };
        if r < 0 {
            return Err(NetlinkError::OpenSocket(io::Error::last_os_error()));
        }
        remember_own_portid(addr.nl_pid);
        Ok(Self { fd })
    }

    /// Sends the batch in one `sendmsg` (without its END message when `dry_run`), then
    /// reads every answer the kernel queued while processing it.
    pub fn send(&self, plan: &Plan, dry_run: bool) -> Result<Outcome, NetlinkError> {
        let (batch, seqs) = plan.build();
        let mut pages: Vec<&[u8]> = batch.iter().collect();
        if dry_run && let Some(last) = pages.last_mut() {
            // The last 20 bytes are NFNL_MSG_BATCH_END (nlmsghdr + nfgenmsg). Without it the
            // kernel validates everything and aborts.
            let n = last.len();
            if n >= 20 && u16::from_ne_bytes([last[n - 16], last[n - 15]]) == NFNL_MSG_BATCH_END {
                *last = &last[..n - 20];
            }
        }
        let bytes: usize = pages.iter().map(|p| p.len()).sum();
        let fd = self.fd.as_raw_fd();
        // As nft's mnl_batch_talk: the whole batch must fit the send buffer, and the answers
        // (only errors and the begin/end acks: no per-message F_ACK) the receive buffer.
        let snd = i32::try_from(bytes + (1 << 16)).unwrap_or(i32::MAX);
        let rcv =
            i32::try_from((plan.msgs.len() * 256).clamp(1 << 20, 64 << 20)).unwrap_or(i32::MAX);
        let force = |name, v| {
            setsockopt_int(fd, libc::SOL_SOCKET, name, v).map_err(|source| {
                NetlinkError::SendBatch {
                    bytes,
                    pages: pages.len(),
                    source,
                }
            })
        };
        force(libc::SO_SNDBUFFORCE, snd)?;
        force(libc::SO_RCVBUFFORCE, rcv)?;

        let mut iov: Vec<libc::iovec> = pages
            .iter()
            .map(|p| libc::iovec {
                iov_base: p.as_ptr() as *mut c_void,
                iov_len: p.len(),
            })
            .collect();
        // SAFETY: zeroed sockaddr_nl is valid; pid 0 = the kernel.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: zeroed msghdr is valid; fields point to live locals for the call.
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_name = (&mut addr as *mut libc::sockaddr_nl).cast();
        mh.msg_namelen = std::mem::size_of::<libc::sockaddr_nl>() as u32;
        mh.msg_iov = iov.as_mut_ptr();
        mh.msg_iovlen = iov.len();
        // SAFETY: all pointers in `mh` are valid for the duration of the call.
        let r = unsafe { libc::sendmsg(fd, &mh, 0) };
        if r < 0 {
            return Err(NetlinkError::SendBatch {
                bytes,
                pages: pages.len(),
                source: io::Error::last_os_error(),
            });
        }
        // nfnetlink processes the batch inside sendmsg: every answer is queued by now.
        let rejections = self.drain(plan, &seqs)?;
        Ok(Outcome {
            messages: plan.msgs.len(),
            bytes,
            pages: pages.len(),
            rejections,
        })
    }

    fn drain(&self, plan: &Plan, seqs: &[u32]) -> Result<Vec<Rejection>, NetlinkError> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            // SAFETY: receiving into a live buffer of the given length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::WouldBlock {
                    break;
                }
                return Err(NetlinkError::ReadAcks(e));
            }
            let n = n as usize;
            let mut off = 0;
            while off + 16 <= n {
                let h = &buf[off..n];
                let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let ty = u16::from_ne_bytes([h[4], h[5]]);
                let flags = u16::from_ne_bytes([h[6], h[7]]);
                if len < 16 || off + len > n {
                    break;
                }
                if ty == libc::NLMSG_ERROR as u16 && len >= 36 {
                    let errno = -i32::from_ne_bytes([h[16], h[17], h[18], h[19]]);
                    let seq = u32::from_ne_bytes([h[28], h[29], h[30], h[31]]);
                    if errno != 0 {
                        let reason = if flags & NLM_F_ACK_TLVS != 0 {
                            ext_ack_msg(&h[36..len])
                        } else {
                            None
                        };
                        let what = seqs
                            .iter()
                            .position(|s| *s == seq)
                            .and_then(|i| plan.msgs.get(i))
                            .map(Msg::describe)
                            .unwrap_or_else(|| format!("batch control message (seq {seq})"));
                        out.push(Rejection {
                            seq,
                            errno,
                            what,
                            reason,
                        });
                    }
                }
                off += (len + 3) & !3;
            }
        }
        Ok(out)
    }
}

fn ext_ack_msg(mut tlvs: &[u8]) -> Option<String> {
    while tlvs.len() >= 4 {
        let len = u16::from_ne_bytes([tlvs[0], tlvs[1]]) as usize;
        let ty = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        if len < 4 || len > tlvs.len() {
            return None;
        }
        if ty == NLMSGERR_ATTR_MSG {
            let s = &tlvs[4..len];
            let s = s.split(|b| *b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(s).into_owned());
        }
        tlvs = &tlvs[((len + 3) & !3).min(tlvs.len())..];
    }
    None
}
