//! Pure: nf_tables netlink messages to and from [`crate::wire`] objects. Encoding writes the
//! attributes the kernel expects for each object we create or delete; decoding reads the
//! kernel's dump replies and notifications back into the same objects. Both sides are the
//! kernel's user-space ABI (`linux/netfilter/nf_tables.h`); no library sits between edge-fw
//! and the kernel, and no byte is trusted: malformed input decodes to `None`, never panics.

use crate::uapi::*;
use crate::wire::{BaseChain, Counter, Elem, ElemData, Expr, Reg, Rule, Set, Verdict};

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

/// Netlink attributes being written (each padded to 4 bytes).
#[derive(Debug, Default)]
pub struct Attrs(Vec<u8>);

impl Attrs {
    /// No attributes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn header(&mut self, ty: u16, len: usize) {
        let l = u16::try_from(4 + len).unwrap_or(u16::MAX);
        self.0.extend(l.to_ne_bytes());
        self.0.extend(ty.to_ne_bytes());
    }

    fn pad(&mut self) {
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
    }

    /// An attribute holding raw bytes.
    pub fn put(&mut self, ty: u16, v: &[u8]) -> &mut Self {
        self.header(ty, v.len());
        self.0.extend_from_slice(v);
        self.pad();
        self
    }

    /// A big-endian u32 (`NLA_U32` in nf_tables is network order).
    pub fn u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }

    /// A big-endian u64.
    pub fn u64(&mut self, ty: u16, v: u64) -> &mut Self {
        self.put(ty, &v.to_be_bytes())
    }

    /// A NUL-terminated string.
    pub fn str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v: Vec<u8> = s.bytes().filter(|b| *b != 0).collect();
        v.push(0);
        self.put(ty, &v)
    }

    /// A nested attribute whose contents `f` writes.
    pub fn nest(&mut self, ty: u16, f: impl FnOnce(&mut Attrs)) -> &mut Self {
        let mut inner = Attrs::new();
        f(&mut inner);
        self.put(ty | NLA_F_NESTED, &inner.0)
    }
}

/// Appends one netlink message (`nlmsghdr` + `nfgenmsg` + attributes) to `buf`.
pub fn put_message(
    buf: &mut Vec<u8>,
    ty: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    attrs: &[u8],
) {
    let len = u32::try_from(16 + 4 + attrs.len()).unwrap_or(u32::MAX);
    buf.extend(len.to_ne_bytes());
    buf.extend(ty.to_ne_bytes());
    buf.extend(flags.to_ne_bytes());
    buf.extend(seq.to_ne_bytes());
    buf.extend(0u32.to_ne_bytes());
    buf.push(family);
    buf.push(0); // NFNETLINK_V0
    buf.extend(res_id.to_be_bytes());
    buf.extend_from_slice(attrs);
}

fn data_value(a: &mut Attrs, ty: u16, v: &[u8]) {
    a.nest(ty, |d| {
        d.put(NFTA_DATA_VALUE, v);
    });
}

fn verdict(a: &mut Attrs, ty: u16, v: &Verdict) {
    a.nest(ty, |d| {
        d.nest(NFTA_DATA_VERDICT, |x| {
            x.u32(NFTA_VERDICT_CODE, v.code as u32);
            if let Some(c) = &v.chain {
                x.str(NFTA_VERDICT_CHAIN, c);
            }
        });
    });
}

/// Set ids of the sets a batch creates, by name (0: created earlier, referred to by name).
pub type SetIds<'a> = &'a dyn Fn(&str) -> u32;

/// The set id of `set` when this batch creates it (a set created earlier goes by name).
fn set_id(a: &mut Attrs, ty: u16, set: &str, ids: SetIds<'_>) {
    let id = ids(set);
    if id != 0 {
        a.u32(ty, id);
    }
}

fn lookup_data(
    a: &mut Attrs,
    sreg: Reg,
    set: &str,
    dreg: Option<Reg>,
    flags: u32,
    ids: SetIds<'_>,
) {
    a.str(NFTA_LOOKUP_SET, set)
        .u32(NFTA_LOOKUP_SREG, sreg.to_wire());
    set_id(a, NFTA_LOOKUP_SET_ID, set, ids);
    if let Some(d) = dreg {
        a.u32(NFTA_LOOKUP_DREG, d.to_wire());
    }
    if flags != 0 {
        a.u32(NFTA_LOOKUP_FLAGS, flags);
    }
}

fn bitwise_data(a: &mut Attrs, sreg: Reg, dreg: Reg, len: u32, mask: &[u8], xor: &[u8]) {
    a.u32(NFTA_BITWISE_SREG, sreg.to_wire())
        .u32(NFTA_BITWISE_DREG, dreg.to_wire())
        .u32(NFTA_BITWISE_LEN, len);
    data_value(a, NFTA_BITWISE_MASK, mask);
    data_value(a, NFTA_BITWISE_XOR, xor);
}

fn nat_data(
    a: &mut Attrs,
    kind: u32,
    family: u32,
    addr: Option<(Reg, Reg)>,
    proto: Option<(Reg, Reg)>,
    flags: u32,
) {
    a.u32(NFTA_NAT_TYPE, kind).u32(NFTA_NAT_FAMILY, family);
    if let Some((min, max)) = addr {
        a.u32(NFTA_NAT_REG_ADDR_MIN, min.to_wire())
            .u32(NFTA_NAT_REG_ADDR_MAX, max.to_wire());
    }
    if let Some((min, max)) = proto {
        a.u32(NFTA_NAT_REG_PROTO_MIN, min.to_wire())
            .u32(NFTA_NAT_REG_PROTO_MAX, max.to_wire());
    }
    if flags != 0 {
        a.u32(NFTA_NAT_FLAGS, flags);
    }
}

// The same variants are destructured by `Display for Expr` (wire.rs), field for field: that
// one writes the kernel's text notation, this one its netlink attributes; both must name
// every field of every variant, so the two matches stay apart.
fn expr_data(a: &mut Attrs, e: &Expr, ids: SetIds<'_>) {
    let reg = |r: &Reg| r.to_wire();
    match e {
        Expr::Meta { key, dreg } => {
            a.u32(NFTA_META_KEY, *key).u32(NFTA_META_DREG, reg(dreg));
        }
        Expr::MetaSet { key, sreg } => {
            a.u32(NFTA_META_KEY, *key).u32(NFTA_META_SREG, reg(sreg));
        }
        Expr::Payload {
            base,
            offset,
            len,
            dreg,
        } => {
            a.u32(NFTA_PAYLOAD_DREG, reg(dreg))
                .u32(NFTA_PAYLOAD_BASE, *base)
                .u32(NFTA_PAYLOAD_OFFSET, *offset)
                .u32(NFTA_PAYLOAD_LEN, *len);
        }
        Expr::Cmp { sreg, op, data } => {
            a.u32(NFTA_CMP_SREG, reg(sreg)).u32(NFTA_CMP_OP, *op);
            data_value(a, NFTA_CMP_DATA, data);
        }
        Expr::Bitwise {
            sreg,
            dreg,
            len,
            mask,
            xor,
        } => bitwise_data(a, *sreg, *dreg, *len, mask, xor),
        Expr::Ct { key, dreg } => {
            a.u32(NFTA_CT_KEY, *key).u32(NFTA_CT_DREG, reg(dreg));
        }
        Expr::Verdict(v) => {
            a.u32(NFTA_IMMEDIATE_DREG, 0);
            verdict(a, NFTA_IMMEDIATE_DATA, v);
        }
        Expr::Lookup {
            sreg,
            set,
            dreg,
            flags,
        } => lookup_data(a, *sreg, set, *dreg, *flags, ids),
        Expr::Objref { sreg, set } => {
            a.u32(NFTA_OBJREF_SET_SREG, reg(sreg))
                .str(NFTA_OBJREF_SET_NAME, set);
            set_id(a, NFTA_OBJREF_SET_ID, set, ids);
        }
        Expr::Nat {
            kind,
            family,
            addr,
            proto,
            flags,
        } => nat_data(a, *kind, *family, *addr, *proto, *flags),
        Expr::Masq { flags } => {
            if *flags != 0 {
                a.u32(NFTA_MASQ_FLAGS, *flags);
            }
        }
        Expr::Immediate { dreg, data } => {
            a.u32(NFTA_IMMEDIATE_DREG, reg(dreg));
            data_value(a, NFTA_IMMEDIATE_DATA, data);
        }
        Expr::Exthdr {
            op,
            kind,
            offset,
            len,
            dreg,
            sreg,
            flags,
        } => {
            if let Some(d) = dreg {
                a.u32(NFTA_EXTHDR_DREG, reg(d));
            }
            a.put(NFTA_EXTHDR_TYPE, &[*kind])
                .u32(NFTA_EXTHDR_OFFSET, *offset)
                .u32(NFTA_EXTHDR_LEN, *len)
                .u32(NFTA_EXTHDR_OP, *op);
            // Flags only for a presence test (a write refuses them).
            if *flags != 0 {
                a.u32(NFTA_EXTHDR_FLAGS, *flags);
            }
            if let Some(s) = sreg {
                a.u32(NFTA_EXTHDR_SREG, reg(s));
            }
        }
        Expr::ObjrefNamed { kind, name } => {
            a.u32(NFTA_OBJREF_IMM_TYPE, *kind)
                .str(NFTA_OBJREF_IMM_NAME, name);
        }
        Expr::Other { .. } => {}
    }
}

/// The kernel's name of an expression.
pub fn expr_name(e: &Expr) -> &str {
    match e {
        Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
        Expr::Payload { .. } => "payload",
        Expr::Cmp { .. } => "cmp",
        Expr::Bitwise { .. } => "bitwise",
        Expr::Ct { .. } => "ct",
        Expr::Verdict(_) | Expr::Immediate { .. } => "immediate",
        Expr::Exthdr { .. } => "exthdr",
        Expr::ObjrefNamed { .. } => "objref",
        Expr::Lookup { .. } => "lookup",
        Expr::Objref { .. } => "objref",
        Expr::Nat { .. } => "nat",
        Expr::Masq { .. } => "masq",
        Expr::Other { name } => name,
    }
}

/// The rule's comment as libnftnl stores it in the rule's user data (which nft reads).
pub fn comment_udata(c: &str) -> Vec<u8> {
    let mut s: Vec<u8> = c.bytes().filter(|b| *b != 0).take(250).collect();
    s.push(0);
    let mut v = vec![UDATA_RULE_COMMENT, s.len() as u8];
    v.extend(s);
    v
}

/// Attributes of a table.
pub fn table_attrs(table: &str) -> Attrs {
    let mut a = Attrs::new();
    a.str(NFTA_TABLE_NAME, table);
    a
}

/// Attributes of a chain (declaration only; rules are messages of their own).
pub fn chain_attrs(table: &str, name: &str, base: Option<&BaseChain>) -> Attrs {
    let mut a = Attrs::new();
    a.str(NFTA_CHAIN_TABLE, table).str(NFTA_CHAIN_NAME, name);
    if let Some(b) = base {
        a.nest(NFTA_CHAIN_HOOK, |h| {
            h.u32(NFTA_HOOK_HOOKNUM, b.hook)
                .u32(NFTA_HOOK_PRIORITY, b.priority as u32);
        });
        a.u32(NFTA_CHAIN_POLICY, b.policy)
            .str(NFTA_CHAIN_TYPE, &b.kind);
    }
    a
}

/// Attributes of a rule appended to a chain.
pub fn rule_attrs(table: &str, chain: &str, r: &Rule, ids: SetIds<'_>) -> Attrs {
    let mut a = Attrs::new();
    a.str(NFTA_RULE_TABLE, table).str(NFTA_RULE_CHAIN, chain);
    a.nest(NFTA_RULE_EXPRESSIONS, |list| {
        for e in &r.exprs {
            list.nest(NFTA_LIST_ELEM, |x| {
                x.str(NFTA_EXPR_NAME, expr_name(e));
                x.nest(NFTA_EXPR_DATA, |d| expr_data(d, e, ids));
            });
        }
    });
    if let Some(c) = &r.comment {
        a.put(NFTA_RULE_USERDATA, &comment_udata(c));
    }
    a
}

/// Attributes that name a chain's rules without a handle (a DELRULE of them: a flush).
pub fn flush_chain_attrs(table: &str, chain: &str) -> Attrs {
    let mut a = Attrs::new();
    a.str(NFTA_RULE_TABLE, table).str(NFTA_RULE_CHAIN, chain);
    a
}

/// Attributes of a set's declaration, with its transaction id.
pub fn set_attrs(table: &str, s: &Set, id: u32) -> Attrs {
    let sp = &s.spec;
    let mut a = Attrs::new();
    a.str(NFTA_SET_TABLE, table)
        .str(NFTA_SET_NAME, &s.name)
        .u32(NFTA_SET_FLAGS, sp.flags)
        .u32(NFTA_SET_KEY_TYPE, sp.key_type)
        .u32(NFTA_SET_KEY_LEN, sp.key_len);
    if sp.flags & libc::NFT_SET_MAP as u32 != 0 {
        a.u32(NFTA_SET_DATA_TYPE, sp.data_type)
            .u32(NFTA_SET_DATA_LEN, sp.data_len);
    }
    if sp.flags & NFT_SET_OBJECT != 0 {
        a.u32(NFTA_SET_OBJ_TYPE, sp.obj_type);
    }
    if id != 0 {
        a.u32(NFTA_SET_ID, id);
    }
    if let Some(n) = sp.size {
        a.nest(NFTA_SET_DESC, |d| {
            d.u32(NFTA_SET_DESC_SIZE, n);
        });
    }
    a
}

/// Attributes naming a set only (DELSET).
pub fn set_name_attrs(table: &str, set: &str) -> Attrs {
    let mut a = Attrs::new();
    a.str(NFTA_SET_TABLE, table).str(NFTA_SET_NAME, set);
    a
}

/// Attributes of a set-element message: `elems` with their data (NEWSETELEM), or their
/// keys only (`keys_only`: DELSETELEM); no elements at all flushes the set.
pub fn elems_attrs(table: &str, set: &str, id: u32, elems: &[Elem], keys_only: bool) -> Attrs {
    let mut a = Attrs::new();
    a.str(NFTA_SET_ELEM_LIST_TABLE, table)
        .str(NFTA_SET_ELEM_LIST_SET, set);
    if id != 0 {
        a.u32(NFTA_SET_ELEM_LIST_SET_ID, id);
    }
    if !elems.is_empty() {
        a.nest(NFTA_SET_ELEM_LIST_ELEMENTS, |list| {
            for e in elems {
                list.nest(NFTA_LIST_ELEM, |x| {
                    data_value(x, NFTA_SET_ELEM_KEY, &e.key);
                    if e.flags != 0 {
                        x.u32(NFTA_SET_ELEM_FLAGS, e.flags);
                    }
                    if keys_only {
                        return;
                    }
                    match &e.data {
                        ElemData::None => {}
                        ElemData::Value(v) => data_value(x, NFTA_SET_ELEM_DATA, v),
                        ElemData::Verdict(v) => verdict(x, NFTA_SET_ELEM_DATA, v),
                        ElemData::Objref(o) => {
                            x.str(NFTA_SET_ELEM_OBJREF, o);
                        }
                    }
                });
            }
        });
    }
    a
}

/// Attributes of a counter object (NEWOBJ with its starting values; DELOBJ without).
pub fn counter_attrs(table: &str, name: &str, values: Option<Counter>) -> Attrs {
    let mut a = Attrs::new();
    a.str(NFTA_OBJ_TABLE, table)
        .str(NFTA_OBJ_NAME, name)
        .u32(NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER);
    if let Some(c) = values {
        a.nest(NFTA_OBJ_DATA, |d| {
            d.u64(NFTA_COUNTER_BYTES, c.bytes)
                .u64(NFTA_COUNTER_PACKETS, c.packets);
        });
    }
    a
}

mod decode;
pub use decode::*;

#[cfg(test)]
mod tests {
    use super::decode::{comment_of, expr};
    use super::*;

    fn one(ty: i32, a: &Attrs) -> Vec<u8> {
        let mut b = Vec::new();
        put_message(&mut b, msg_type(ty), 0, 7, NFPROTO_INET, 0x1234, a.bytes());
        b
    }

    #[test]
    fn a_chain_reads_back_as_written() {
        let base = BaseChain {
            kind: "nat".into(),
            hook: libc::NF_INET_PRE_ROUTING as u32,
            priority: -100,
            policy: libc::NF_ACCEPT as u32,
        };
        let b = one(
            libc::NFT_MSG_NEWCHAIN,
            &chain_attrs("edge", "prerouting", Some(&base)),
        );
        let m = messages(&b).next().expect("one message");
        assert_eq!(m.nft(), Some(libc::NFT_MSG_NEWCHAIN as u16));
        assert_eq!(m.res_id(), 0x1234);
        assert_eq!(m.seq, 7);
        let (t, c) = chain(&m).expect("chain");
        assert_eq!(t, "edge");
        assert_eq!(c.name, "prerouting");
        assert_eq!(c.base, Some(base));
    }

    #[test]
    fn elements_of_every_kind_read_back_as_written() {
        let elems = vec![
            Elem {
                key: vec![1; 28],
                data: ElemData::Value(vec![10, 17, 5, 30, 0, 80, 0, 0]),
                flags: 0,
            },
            Elem {
                key: vec![2; 28],
                data: ElemData::Verdict(Verdict {
                    code: libc::NFT_JUMP,
                    chain: Some("allow_k8s-api".into()),
                }),
                flags: 0,
            },
            Elem {
                key: vec![3; 28],
                data: ElemData::Objref("fwd_http".into()),
                flags: 0,
            },
            Elem {
                key: vec![4; 4],
                data: ElemData::None,
                flags: NFT_SET_ELEM_INTERVAL_END,
            },
        ];
        let b = one(
            libc::NFT_MSG_NEWSETELEM,
            &elems_attrs("edge", "fwd4", 3, &elems, false),
        );
        let m = messages(&b).next().expect("message");
        let (t, s, got) = super::elems(&m).expect("elements");
        assert_eq!((t.as_str(), s.as_str()), ("edge", "fwd4"));
        assert_eq!(got, elems);
    }

    #[test]
    fn comments_round_trip_through_user_data() {
        assert_eq!(
            comment_of(&comment_udata("in/ssh#0 edge.toml:207")),
            Some("in/ssh#0 edge.toml:207".into())
        );
        assert_eq!(comment_of(&[0, 200, b'x']), None, "a short TLV");
    }

    #[test]
    fn an_expression_with_attributes_edge_fw_never_writes_is_someone_elses() {
        let mut d = Attrs::new();
        d.u32(NFTA_CT_KEY, 0).u32(NFTA_CT_DREG, 1).u32(3, 1);
        assert_eq!(expr("ct", d.bytes()), Expr::Other { name: "ct".into() });
        assert_eq!(expr("log", &[]), Expr::Other { name: "log".into() });
    }

    #[test]
    fn an_error_message_names_the_request_and_the_reason() {
        // NLMSG_ERROR: errno, the request's header (CAP_ACK), then an ext-ack message.
        let mut body = Vec::new();
        body.extend((-libc::ENOENT).to_ne_bytes());
        body.extend(40u32.to_ne_bytes());
        body.extend(0u16.to_ne_bytes());
        body.extend(0u16.to_ne_bytes());
        body.extend(99u32.to_ne_bytes());
        body.extend(0u32.to_ne_bytes());
        let mut tlv = Attrs::new();
        tlv.str(NLMSGERR_ATTR_MSG, "no such chain");
        body.extend(tlv.bytes());
        let mut b = Vec::new();
        let len = (16 + body.len()) as u32;
        b.extend(len.to_ne_bytes());
        b.extend((libc::NLMSG_ERROR as u16).to_ne_bytes());
        b.extend(NLM_F_ACK_TLVS.to_ne_bytes());
        b.extend(1u32.to_ne_bytes());
        b.extend(0u32.to_ne_bytes());
        b.extend(body);
        let m = messages(&b).next().expect("message");
        assert_eq!(
            error(&m),
            Some((libc::ENOENT, 99, Some("no such chain".into())))
        );
    }

    proptest::proptest! {
        /// Any bytes, and any valid message with bytes appended or cut off, decode without
        /// panic (the daemon never panics on what a socket gives it).
        #[test]
        fn any_datagram_decodes_without_panic(
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..1024),
            cut in 0usize..96,
        ) {
            let elems = vec![Elem { key: vec![1; 28], data: ElemData::Objref("fwd_x".into()), flags: 0 }];
            let mut d = one(libc::NFT_MSG_NEWSETELEM, &elems_attrs("edge_state", "fwd4_ctr", 0, &elems, false));
            d.extend(&junk);
            let d = &d[..d.len().saturating_sub(cut)];
            for buf in [d, &junk[..]] {
                for m in messages(buf) {
                    let _ = (m.nft(), m.family(), m.res_id(), error(&m), table(&m), chain(&m));
                    let _ = (rule(&m), set(&m), super::elems(&m), counter(&m), gen_of(&m), table_of(&m));
                }
                for (_, v) in attrs(buf) {
                    let _ = (expr("nat", v), expr("meta", v), expr("immediate", v), comment_of(v));
                }
            }
        }
    }
}

#[cfg(test)]
mod round_trip {
    use super::*;
    use crate::txn::{Op, Transaction};

    /// Every message of the reference ruleset's transaction decodes back to the object it
    /// was encoded from.
    #[test]
    fn the_reference_transaction_decodes_to_what_it_encodes() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/edge.toml");
        let text = std::fs::read_to_string(&path).expect("config/edge.toml");
        let cfg = edge_config::parse(&path, &text).expect("config").config;
        let m = crate::model::Model::from_config(&cfg, Default::default()).expect("model");
        let want = crate::lower::ruleset(&crate::compile::compile(&m).expect("compile"));
        let tx = Transaction::replace(&want, &Default::default());
        let batch = tx.encode(100);
        let msgs: Vec<Msg<'_>> = messages(&batch.bytes).collect();
        // BEGIN, one message per operation, END.
        assert_eq!(msgs.len(), tx.ops.len() + 2);
        let (mut rules, mut elems_seen, mut chains) = (0, 0, 0);
        for (op, m) in tx.ops.iter().zip(&msgs[1..]) {
            match op {
                Op::AddRule(t, c, r) => {
                    assert_eq!(rule(m), Some((t.clone(), c.clone(), r.clone())));
                    rules += 1;
                }
                Op::AddElems(t, s, range) => {
                    let (tn, sn, got) = super::elems(m).expect("elements");
                    assert_eq!((&tn, &sn), (t, &s.name));
                    assert_eq!(got, s.elements[range.clone()].to_vec());
                    elems_seen += got.len();
                }
                Op::AddChain(t, c) => {
                    let (tn, got) = chain(m).expect("chain");
                    assert_eq!((&tn, &got), (t, c.as_ref()));
                    chains += 1;
                }
                Op::AddSet(t, s, _) => {
                    let (tn, got) = set(m).expect("set");
                    assert_eq!(tn, *t);
                    assert_eq!((got.name, got.spec), (s.name.clone(), s.spec.clone()));
                }
                _ => {}
            }
        }
        assert_eq!(rules, want.edge.rule_count() + want.state.rule_count());
        assert_eq!(
            elems_seen,
            want.edge.element_count() + want.state.element_count()
        );
        assert_eq!(chains, want.edge.chains.len() + want.state.chains.len());
    }
}
