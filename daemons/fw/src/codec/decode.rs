//! Decoding: the kernel's dump replies and notifications read back into [`crate::wire`]
//! objects. No byte is trusted: malformed input decodes to `None`, never panics.

use netlink_packet_core::{NetlinkBuffer, NlasIterator};

use crate::uapi::*;
use crate::wire::{
    BaseChain, Chain, Counter, Elem, ElemData, Expr, Reg, Rule, Set, SetSpec, Verdict,
};

/// One netlink message of a datagram.
#[derive(Debug, Clone, Copy)]
pub struct Msg<'a> {
    /// `nlmsg_type` (for nf_tables: `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_*`).
    pub ty: u16,
    /// `nlmsg_flags`.
    pub flags: u16,
    /// `nlmsg_seq`.
    pub seq: u32,
    /// `nlmsg_pid`: the port of the socket that caused it (notifications).
    pub portid: u32,
    /// Everything after the netlink header.
    pub body: &'a [u8],
}

impl<'a> Msg<'a> {
    /// The nf_tables message (`NFT_MSG_*`), if it is one.
    pub fn nft(&self) -> Option<u16> {
        (self.ty >> 8 == NFNL_SUBSYS_NFTABLES).then_some(self.ty & 0xff)
    }

    /// `nfgenmsg.nfgen_family`.
    pub fn family(&self) -> u8 {
        self.body.first().copied().unwrap_or(0)
    }

    /// `nfgenmsg.res_id`: in a dump reply, the low 16 bits of the ruleset generation the
    /// message was filled in.
    pub fn res_id(&self) -> u16 {
        match (self.body.get(2), self.body.get(3)) {
            (Some(a), Some(b)) => u16::from_be_bytes([*a, *b]),
            _ => 0,
        }
    }

    /// The attributes after `nfgenmsg`.
    pub fn attrs(&self) -> &'a [u8] {
        self.body.get(4..).unwrap_or_default()
    }
}

/// The netlink messages of a datagram, in order; stops at the first malformed one.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Msg<'_>> {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        let rest = buf.get(off..)?;
        let nl = NetlinkBuffer::new_checked(rest).ok()?;
        let len = nl.length() as usize;
        let body = rest.get(16..len)?;
        off += (len + 3) & !3;
        Some(Msg {
            ty: nl.message_type(),
            flags: nl.flags(),
            seq: nl.sequence_number(),
            portid: nl.port_number(),
            body,
        })
    })
}

/// The attributes in `b`: (type without flags, value); stops at the first malformed one.
pub fn attrs(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    NlasIterator::new(b).map_while(|r| {
        let n = r.ok()?;
        let (kind, len) = (n.kind(), usize::from(n.length()));
        Some((kind, n.into_inner().get(4..len).unwrap_or_default()))
    })
}

/// A big-endian u32 value.
pub fn be32(v: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
}

fn be64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

/// A NUL-terminated string value.
pub fn c_string(v: &[u8]) -> String {
    String::from_utf8_lossy(v.split(|c| *c == 0).next().unwrap_or_default()).into_owned()
}

fn attr(b: &[u8], ty: u16) -> Option<&[u8]> {
    attrs(b).find(|(t, _)| *t == ty).map(|(_, v)| v)
}

/// An `NLMSG_ERROR`: the errno (0 for an ack), the sequence number of the request it
/// answers, and the kernel's extended-ack text.
pub fn error(m: &Msg<'_>) -> Option<(i32, u32, Option<String>)> {
    if m.ty != libc::NLMSG_ERROR as u16 {
        return None;
    }
    let errno = -i32::from_ne_bytes(m.body.get(..4)?.try_into().ok()?);
    // The request's header follows (16 bytes: len, type, flags, seq, pid).
    let seq = u32::from_ne_bytes(m.body.get(12..16)?.try_into().ok()?);
    let reason = if m.flags & NLM_F_ACK_TLVS != 0 {
        // With NETLINK_CAP_ACK the request's payload is not echoed: the TLVs follow.
        m.body
            .get(20..)
            .and_then(|t| attr(t, NLMSGERR_ATTR_MSG))
            .map(c_string)
    } else {
        None
    };
    Some((errno, seq, reason))
}

/// A table message: its name.
pub fn table(m: &Msg<'_>) -> Option<String> {
    attr(m.attrs(), NFTA_TABLE_NAME).map(c_string)
}

/// A chain message: its table and the chain (without rules).
pub fn chain(m: &Msg<'_>) -> Option<(String, Chain)> {
    let (mut table, mut name, mut hook, mut prio) = (None, None, None, 0i32);
    let (mut policy, mut kind) = (libc::NF_ACCEPT as u32, String::new());
    for (t, v) in attrs(m.attrs()) {
        match t {
            NFTA_CHAIN_TABLE => table = Some(c_string(v)),
            NFTA_CHAIN_NAME => name = Some(c_string(v)),
            NFTA_CHAIN_HOOK => {
                for (h, hv) in attrs(v) {
                    match h {
                        NFTA_HOOK_HOOKNUM => hook = be32(hv),
                        NFTA_HOOK_PRIORITY => prio = be32(hv).unwrap_or(0) as i32,
                        _ => {}
                    }
                }
            }
            NFTA_CHAIN_POLICY => policy = be32(v).unwrap_or(policy),
            NFTA_CHAIN_TYPE => kind = c_string(v),
            _ => {}
        }
    }
    let base = hook.map(|hook| BaseChain {
        kind,
        hook,
        priority: prio,
        policy,
    });
    Some((
        table?,
        Chain {
            name: name?,
            base,
            rules: Vec::new(),
        },
    ))
}

fn data_value_of(v: &[u8]) -> Option<Vec<u8>> {
    attr(v, NFTA_DATA_VALUE).map(<[u8]>::to_vec)
}

fn verdict_of(v: &[u8]) -> Option<Verdict> {
    let inner = attr(v, NFTA_DATA_VERDICT)?;
    let mut out = Verdict {
        code: 0,
        chain: None,
    };
    for (t, x) in attrs(inner) {
        match t {
            NFTA_VERDICT_CODE => out.code = be32(x)? as i32,
            NFTA_VERDICT_CHAIN => out.chain = Some(c_string(x)),
            _ => {}
        }
    }
    Some(out)
}

fn reg_of(v: &[u8]) -> Option<Reg> {
    be32(v).map(Reg::from_wire)
}

/// One expression from its name and data. Attributes edge-fw does not write make it
/// [`Expr::Other`], so it never equals anything edge-fw wants.
pub(super) fn expr(name: &str, d: &[u8]) -> Expr {
    let other = || Expr::Other {
        name: name.to_owned(),
    };
    let u = |ty| attr(d, ty).and_then(be32);
    let r = |ty| attr(d, ty).and_then(reg_of);
    let decoded = match name {
        "meta" => match (u(NFTA_META_KEY), r(NFTA_META_DREG), r(NFTA_META_SREG)) {
            (Some(key), Some(dreg), None) => Some(Expr::Meta { key, dreg }),
            (Some(key), None, Some(sreg)) => Some(Expr::MetaSet { key, sreg }),
            _ => None,
        },
        "payload" => match attr(d, NFTA_PAYLOAD_SREG) {
            // A payload write, which edge-fw never does.
            Some(_) => None,
            None => Some(Expr::Payload {
                base: u(NFTA_PAYLOAD_BASE).unwrap_or(0),
                offset: u(NFTA_PAYLOAD_OFFSET).unwrap_or(0),
                len: u(NFTA_PAYLOAD_LEN).unwrap_or(0),
                dreg: r(NFTA_PAYLOAD_DREG).unwrap_or(Reg::VERDICT),
            }),
        },
        "cmp" => Some(Expr::Cmp {
            sreg: r(NFTA_CMP_SREG).unwrap_or(Reg::VERDICT),
            op: u(NFTA_CMP_OP).unwrap_or(0),
            data: attr(d, NFTA_CMP_DATA)
                .and_then(data_value_of)
                .unwrap_or_default(),
        }),
        // Only the boolean form (mask and xor; NFT_BITWISE_BOOL = 0).
        "bitwise" if u(NFTA_BITWISE_OP).unwrap_or(0) == 0 => Some(Expr::Bitwise {
            sreg: r(NFTA_BITWISE_SREG).unwrap_or(Reg::VERDICT),
            dreg: r(NFTA_BITWISE_DREG).unwrap_or(Reg::VERDICT),
            len: u(NFTA_BITWISE_LEN).unwrap_or(0),
            mask: attr(d, NFTA_BITWISE_MASK)
                .and_then(data_value_of)
                .unwrap_or_default(),
            xor: attr(d, NFTA_BITWISE_XOR)
                .and_then(data_value_of)
                .unwrap_or_default(),
        }),
        "ct" => match (u(NFTA_CT_KEY), r(NFTA_CT_DREG), attr(d, NFTA_CT_DIRECTION)) {
            // edge-fw never reads one direction only.
            (Some(key), Some(dreg), None) => Some(Expr::Ct { key, dreg }),
            _ => None,
        },
        "immediate" => match r(NFTA_IMMEDIATE_DREG) {
            Some(Reg::VERDICT) => attr(d, NFTA_IMMEDIATE_DATA)
                .and_then(verdict_of)
                .map(Expr::Verdict),
            Some(dreg) => attr(d, NFTA_IMMEDIATE_DATA)
                .and_then(data_value_of)
                .map(|data| Expr::Immediate { dreg, data }),
            None => None,
        },
        "exthdr" => Some(Expr::Exthdr {
            op: u(NFTA_EXTHDR_OP).unwrap_or(0),
            kind: attr(d, NFTA_EXTHDR_TYPE)
                .and_then(|v| v.first().copied())
                .unwrap_or(0),
            offset: u(NFTA_EXTHDR_OFFSET).unwrap_or(0),
            len: u(NFTA_EXTHDR_LEN).unwrap_or(0),
            dreg: r(NFTA_EXTHDR_DREG),
            sreg: r(NFTA_EXTHDR_SREG),
            flags: u(NFTA_EXTHDR_FLAGS).unwrap_or(0),
        }),
        "lookup" => Some(Expr::Lookup {
            sreg: r(NFTA_LOOKUP_SREG).unwrap_or(Reg::VERDICT),
            set: attr(d, NFTA_LOOKUP_SET).map(c_string).unwrap_or_default(),
            dreg: r(NFTA_LOOKUP_DREG),
            flags: u(NFTA_LOOKUP_FLAGS).unwrap_or(0),
        }),
        "objref" => match (r(NFTA_OBJREF_SET_SREG), attr(d, NFTA_OBJREF_SET_NAME)) {
            (Some(sreg), Some(set)) => Some(Expr::Objref {
                sreg,
                set: c_string(set),
            }),
            _ => match (u(NFTA_OBJREF_IMM_TYPE), attr(d, NFTA_OBJREF_IMM_NAME)) {
                (Some(kind), Some(name)) => Some(Expr::ObjrefNamed {
                    kind,
                    name: c_string(name),
                }),
                _ => None,
            },
        },
        "nat" => {
            let pair = |a, b| r(a).map(|x| (x, r(b).unwrap_or(x)));
            Some(Expr::Nat {
                kind: u(NFTA_NAT_TYPE).unwrap_or(0),
                family: u(NFTA_NAT_FAMILY).unwrap_or(0),
                addr: pair(NFTA_NAT_REG_ADDR_MIN, NFTA_NAT_REG_ADDR_MAX),
                proto: pair(NFTA_NAT_REG_PROTO_MIN, NFTA_NAT_REG_PROTO_MAX),
                flags: u(NFTA_NAT_FLAGS).unwrap_or(0),
            })
        }
        // Masquerade to a port range (registers) is not ours.
        "masq" if attr(d, NFTA_MASQ_REG_PROTO_MIN).is_none() => Some(Expr::Masq {
            flags: u(NFTA_MASQ_FLAGS).unwrap_or(0),
        }),
        _ => None,
    };
    decoded.unwrap_or_else(other)
}

/// A rule's comment from its user data (libnftnl's TLVs).
pub(super) fn comment_of(mut ud: &[u8]) -> Option<String> {
    while ud.len() >= 2 {
        let (ty, len) = (ud[0], usize::from(ud[1]));
        let v = ud.get(2..2 + len)?;
        if ty == UDATA_RULE_COMMENT {
            return Some(c_string(v));
        }
        ud = &ud[2 + len..];
    }
    None
}

/// A rule message: its table, chain and the rule.
pub fn rule(m: &Msg<'_>) -> Option<(String, String, Rule)> {
    let (mut table, mut chain) = (None, None);
    let mut rule = Rule {
        exprs: Vec::new(),
        comment: None,
    };
    for (t, v) in attrs(m.attrs()) {
        match t {
            NFTA_RULE_TABLE => table = Some(c_string(v)),
            NFTA_RULE_CHAIN => chain = Some(c_string(v)),
            NFTA_RULE_EXPRESSIONS => {
                for (_, e) in attrs(v).filter(|(t, _)| *t == NFTA_LIST_ELEM) {
                    let name = attr(e, NFTA_EXPR_NAME).map(c_string).unwrap_or_default();
                    let data = attr(e, NFTA_EXPR_DATA).unwrap_or_default();
                    rule.exprs.push(expr(&name, data));
                }
            }
            NFTA_RULE_USERDATA => rule.comment = comment_of(v),
            _ => {}
        }
    }
    Some((table?, chain?, rule))
}

/// A set message: its table and the set (without elements).
pub fn set(m: &Msg<'_>) -> Option<(String, Set)> {
    let (mut table, mut name) = (None, None);
    let mut spec = SetSpec {
        flags: 0,
        key_type: 0,
        key_len: 0,
        data_type: 0,
        data_len: 0,
        obj_type: 0,
        size: None,
    };
    for (t, v) in attrs(m.attrs()) {
        match t {
            NFTA_SET_TABLE => table = Some(c_string(v)),
            NFTA_SET_NAME => name = Some(c_string(v)),
            NFTA_SET_FLAGS => spec.flags = be32(v).unwrap_or(0),
            NFTA_SET_KEY_TYPE => spec.key_type = be32(v).unwrap_or(0),
            NFTA_SET_KEY_LEN => spec.key_len = be32(v).unwrap_or(0),
            NFTA_SET_DATA_TYPE => spec.data_type = be32(v).unwrap_or(0),
            NFTA_SET_DATA_LEN => spec.data_len = be32(v).unwrap_or(0),
            NFTA_SET_OBJ_TYPE => spec.obj_type = be32(v).unwrap_or(0),
            NFTA_SET_DESC => spec.size = attr(v, NFTA_SET_DESC_SIZE).and_then(be32),
            _ => {}
        }
    }
    Some((
        table?,
        Set {
            name: name?,
            spec,
            elements: Vec::new(),
        },
    ))
}

/// A set-element message: its table, set and elements.
pub fn elems(m: &Msg<'_>) -> Option<(String, String, Vec<Elem>)> {
    let (mut table, mut set, mut out) = (None, None, Vec::new());
    for (t, v) in attrs(m.attrs()) {
        match t {
            NFTA_SET_ELEM_LIST_TABLE => table = Some(c_string(v)),
            NFTA_SET_ELEM_LIST_SET => set = Some(c_string(v)),
            NFTA_SET_ELEM_LIST_ELEMENTS => {
                for (_, e) in attrs(v).filter(|(t, _)| *t == NFTA_LIST_ELEM) {
                    let mut key = Vec::new();
                    let mut data = ElemData::None;
                    let mut flags = 0;
                    for (a, x) in attrs(e) {
                        match a {
                            NFTA_SET_ELEM_KEY => key = data_value_of(x).unwrap_or_default(),
                            NFTA_SET_ELEM_FLAGS => flags = be32(x).unwrap_or(0),
                            NFTA_SET_ELEM_DATA => {
                                data = match data_value_of(x) {
                                    Some(v) => ElemData::Value(v),
                                    None => verdict_of(x)
                                        .map(ElemData::Verdict)
                                        .unwrap_or(ElemData::None),
                                }
                            }
                            NFTA_SET_ELEM_OBJREF => data = ElemData::Objref(c_string(x)),
                            _ => {}
                        }
                    }
                    out.push(Elem { key, data, flags });
                }
            }
            _ => {}
        }
    }
    Some((table?, set?, out))
}

/// A counter object message: its table, name and values (`None` for other objects).
pub fn counter(m: &Msg<'_>) -> Option<(String, String, Counter)> {
    let a = m.attrs();
    if attr(a, NFTA_OBJ_TYPE).and_then(be32)? != NFT_OBJECT_COUNTER {
        return None;
    }
    let d = attr(a, NFTA_OBJ_DATA).unwrap_or_default();
    Some((
        attr(a, NFTA_OBJ_TABLE).map(c_string)?,
        attr(a, NFTA_OBJ_NAME).map(c_string)?,
        Counter {
            packets: attr(d, NFTA_COUNTER_PACKETS).and_then(be64).unwrap_or(0),
            bytes: attr(d, NFTA_COUNTER_BYTES).and_then(be64).unwrap_or(0),
        },
    ))
}

/// A generation message (NEWGEN): the generation, the committing thread's id and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gen {
    /// The ruleset generation.
    pub id: u32,
    /// The committing thread's id (`NFTA_GEN_PROC_PID`).
    pub tid: u32,
    /// The committing thread's name.
    pub comm: String,
}

/// Decodes a NEWGEN message.
pub fn gen_of(m: &Msg<'_>) -> Gen {
    let a = m.attrs();
    Gen {
        id: attr(a, NFTA_GEN_ID).and_then(be32).unwrap_or(0),
        tid: attr(a, NFTA_GEN_PROC_PID).and_then(be32).unwrap_or(0),
        comm: attr(a, NFTA_GEN_PROC_NAME)
            .map(c_string)
            .unwrap_or_default(),
    }
}

/// The table an object message belongs to: attribute 1 of every table, chain, rule, set,
/// element and object message is the table's name.
pub fn table_of(m: &Msg<'_>) -> Option<String> {
    attr(m.attrs(), 1).map(c_string)
}
