//! Pure: lowers the compiled IR to the kernel's own objects and attributes ([`crate::wire`]):
//! the expressions nft 1.0.6 generates for the same rules (the tests compare the two), the
//! sets' declarations and the element bytes.

use std::net::IpAddr;

use crate::ir::{self, ElemData, Element, Expr, Family, Hook, SetKind};
use crate::uapi::{self, concat_type};
use crate::wire::{self, Reg, Verdict};

/// The key datatype and length of a forward key (`ifname . addr . inet_proto . inet_service`).
fn key_type(f: Family) -> (u32, u32) {
    let (addr, len) = match f {
        Family::V4 => (uapi::TYPE_IPADDR, 28),
        Family::V6 => (uapi::TYPE_IP6ADDR, 40),
    };
    (
        concat_type(&[
            uapi::TYPE_IFNAME,
            addr,
            uapi::TYPE_INET_PROTOCOL,
            uapi::TYPE_INET_SERVICE,
        ]),
        len,
    )
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An interface name as the kernel compares it: 16 bytes, NUL-padded.
fn ifname_bytes(n: &str) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    let s = n.as_bytes();
    let l = s.len().min(15);
    b[..l].copy_from_slice(&s[..l]);
    b
}

/// Key bytes as nft lays out a concatenation: each field padded to 4 bytes.
pub fn key_bytes(k: &ir::FwdKey) -> Vec<u8> {
    let mut v = ifname_bytes(&k.iif);
    v.extend(ip_bytes(&k.daddr));
    v.extend([k.proto.number(), 0, 0, 0]);
    v.extend(k.dport.to_be_bytes());
    v.extend([0, 0]);
    v
}

/// A set declaration with a key and no data (a map's data is filled in by the caller).
fn plain_spec(flags: u32, key_type: u32, key_len: u32, size: u32) -> wire::SetSpec {
    wire::SetSpec {
        flags,
        key_type,
        key_len,
        data_type: 0,
        data_len: 0,
        obj_type: 0,
        size: Some(size),
    }
}

fn spec(s: &ir::Set) -> wire::SetSpec {
    let (key_type, key_len) = key_type(s.family);
    let mut spec = plain_spec(0, key_type, key_len, s.declared_size());
    match s.kind {
        SetKind::Set => {}
        SetKind::Target => {
            let (addr, len) = match s.family {
                Family::V4 => (uapi::TYPE_IPADDR, 8),
                Family::V6 => (uapi::TYPE_IP6ADDR, 20),
            };
            spec.flags = libc::NFT_SET_MAP as u32;
            spec.data_type = concat_type(&[addr, uapi::TYPE_INET_SERVICE]);
            spec.data_len = len;
        }
        SetKind::Verdict => {
            spec.flags = libc::NFT_SET_MAP as u32;
            spec.data_type = uapi::NFT_DATA_VERDICT;
            spec.data_len = uapi::NFT_VERDICT_LEN;
        }
        SetKind::Counter => {
            spec.flags = uapi::NFT_SET_OBJECT;
            spec.obj_type = uapi::NFT_OBJECT_COUNTER;
        }
    }
    spec
}

/// One element's key and data bytes.
pub fn elem(e: &Element) -> wire::Elem {
    let data = match &e.data {
        ElemData::None => wire::ElemData::None,
        ElemData::Target(ip, port) => {
            let mut d = ip_bytes(ip);
            d.extend(port.to_be_bytes());
            d.extend([0, 0]);
            wire::ElemData::Value(d)
        }
        ElemData::Jump(c) => wire::ElemData::Verdict(Verdict {
            code: libc::NFT_JUMP,
            chain: Some(c.clone()),
        }),
        ElemData::Counter(c) => wire::ElemData::Objref(c.clone()),
    };
    wire::Elem {
        key: key_bytes(&e.key),
        data,
        flags: 0,
    }
}

/// The address after `a`, if there is one.
fn next_addr(a: IpAddr) -> Option<IpAddr> {
    match a {
        IpAddr::V4(v) => u32::from(v).checked_add(1).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(v) => u128::from(v).checked_add(1).map(|n| IpAddr::V6(n.into())),
    }
}

/// A prefix set as nft lays it out for the kernel: each prefix is a start element and an
/// end element (the address after it, flagged `NFT_SET_ELEM_INTERVAL_END`), and the range
/// before the first prefix is closed by an end element at address zero.
fn addr_set(s: &ir::AddrSet) -> wire::Set {
    let (key_type, key_len, zero) = match s.family {
        Family::V4 => (uapi::TYPE_IPADDR, 4, IpAddr::V4(0.into())),
        Family::V6 => (uapi::TYPE_IP6ADDR, 16, IpAddr::V6(0.into())),
    };
    let elem = |a: IpAddr, flags| wire::Elem {
        key: ip_bytes(&a),
        data: wire::ElemData::None,
        flags,
    };
    let end = uapi::NFT_SET_ELEM_INTERVAL_END;
    let mut elements = Vec::with_capacity(2 * s.nets.len() + 1);
    if s.nets.first().is_some_and(|n| n.network() != zero) {
        elements.push(elem(zero, end));
    }
    for n in &s.nets {
        elements.push(elem(n.network(), 0));
        if let Some(after) = next_addr(n.broadcast()) {
            elements.push(elem(after, end));
        }
    }
    elements.sort();
    wire::Set {
        name: s.name.clone(),
        spec: plain_spec(uapi::NFT_SET_INTERVAL, key_type, key_len, s.declared_size()),
        elements,
    }
}

fn set(s: &ir::Set) -> wire::Set {
    let mut elements: Vec<wire::Elem> = s.elements.iter().map(elem).collect();
    elements.sort();
    wire::Set {
        name: s.name.clone(),
        spec: spec(s),
        elements,
    }
}

fn meta(key: i32, dreg: Reg) -> wire::Expr {
    wire::Expr::Meta {
        key: key as u32,
        dreg,
    }
}

fn payload(base: i32, offset: u32, len: u32, dreg: Reg) -> wire::Expr {
    wire::Expr::Payload {
        base: base as u32,
        offset,
        len,
        dreg,
    }
}

fn cmp(op: i32, data: &[u8]) -> wire::Expr {
    wire::Expr::Cmp {
        sreg: Reg::r(1),
        op: op as u32,
        data: data.to_vec(),
    }
}

fn mask(len: u32, mask: &[u8]) -> wire::Expr {
    wire::Expr::Bitwise {
        sreg: Reg::r(1),
        dreg: Reg::r(1),
        len,
        mask: mask.to_vec(),
        xor: vec![0u8; mask.len()],
    }
}

fn verdict(code: i32) -> wire::Expr {
    wire::Expr::Verdict(Verdict { code, chain: None })
}

fn nfproto(f: Family) -> Vec<wire::Expr> {
    let v = match f {
        Family::V4 => uapi::NFPROTO_IPV4,
        Family::V6 => uapi::NFPROTO_IPV6,
    };
    vec![
        meta(libc::NFT_META_NFPROTO, Reg::r(1)),
        cmp(libc::NFT_CMP_EQ, &[v]),
    ]
}

/// The family guard and the four-field key in registers, as nft emits them.
fn key_exprs(f: Family) -> Vec<wire::Expr> {
    let mut v = nfproto(f);
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER;
    let th = libc::NFT_PAYLOAD_TRANSPORT_HEADER;
    v.push(meta(libc::NFT_META_IIFNAME, Reg::r(1)));
    match f {
        Family::V4 => {
            v.push(payload(nh, 16, 4, Reg::r(2)));
            v.push(meta(libc::NFT_META_L4PROTO, Reg::r32(5)));
            v.push(payload(th, 2, 2, Reg::r32(6)));
        }
        Family::V6 => {
            v.push(payload(nh, 24, 16, Reg::r(2)));
            v.push(meta(libc::NFT_META_L4PROTO, Reg::r(3)));
            v.push(payload(th, 2, 2, Reg::r32(9)));
        }
    }
    v
}

fn lookup(set: &str, dreg: Option<Reg>) -> wire::Expr {
    wire::Expr::Lookup {
        sreg: Reg::r(1),
        set: set.to_owned(),
        dreg,
        flags: 0,
    }
}

fn ct_bits(key: i32, bits: u32) -> Vec<wire::Expr> {
    vec![
        wire::Expr::Ct {
            key: key as u32,
            dreg: Reg::r(1),
        },
        mask(4, &bits.to_ne_bytes()),
        cmp(libc::NFT_CMP_NEQ, &0u32.to_ne_bytes()),
    ]
}

/// The maximum-segment-size field of a TCP option: a load into `dreg` or a write from
/// `sreg`.
fn mss_option(dreg: Option<Reg>, sreg: Option<Reg>) -> wire::Expr {
    wire::Expr::Exthdr {
        op: uapi::NFT_EXTHDR_OP_TCPOPT,
        kind: uapi::TCPOPT_MAXSEG,
        offset: 2,
        len: 2,
        dreg,
        sreg,
        flags: 0,
    }
}

/// `ip saddr 10.0.0.0/8`: a whole-byte prefix compares its bytes, another is masked first.
fn saddr_exprs(net: &ipnet::IpNet) -> Vec<wire::Expr> {
    let nh = libc::NFT_PAYLOAD_NETWORK_HEADER;
    let eq = libc::NFT_CMP_EQ;
    let fam = Family::of(net.addr());
    let mut v = nfproto(fam);
    let off = if fam == Family::V4 { 12 } else { 8 };
    let addr = ip_bytes(&net.network());
    let plen = u32::from(net.prefix_len());
    if plen % 8 == 0 {
        let n = (plen / 8) as usize;
        v.push(payload(nh, off, n as u32, Reg::r(1)));
        v.push(cmp(eq, &addr[..n]));
    } else {
        v.push(payload(nh, off, addr.len() as u32, Reg::r(1)));
        v.push(mask(addr.len() as u32, &ip_bytes(&net.netmask())));
        v.push(cmp(eq, &addr));
    }
    v
}

/// `tcp dport 80` or `tcp dport 8000-8080`.
fn dport_exprs(p: &ir::L4, a: u16, b: u16) -> Vec<wire::Expr> {
    let eq = libc::NFT_CMP_EQ;
    let mut v = vec![
        meta(libc::NFT_META_L4PROTO, Reg::r(1)),
        cmp(eq, &[p.number()]),
        payload(libc::NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, Reg::r(1)),
    ];
    if a == b {
        v.push(cmp(eq, &a.to_be_bytes()));
    } else {
        v.push(cmp(libc::NFT_CMP_GTE, &a.to_be_bytes()));
        v.push(cmp(libc::NFT_CMP_LTE, &b.to_be_bytes()));
    }
    v
}

/// `icmp type 8` (protocol 1) or `icmpv6 type 128` (protocol 58).
fn icmp_type_exprs(fam: Family, proto: u8, t: u8) -> Vec<wire::Expr> {
    let eq = libc::NFT_CMP_EQ;
    let mut v = nfproto(fam);
    v.push(meta(libc::NFT_META_L4PROTO, Reg::r(1)));
    v.push(cmp(eq, &[proto]));
    v.push(payload(libc::NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1, Reg::r(1)));
    v.push(cmp(eq, &[t]));
    v
}

/// The four-field key in registers, then `last` on it (a lookup, a map, a counter map).
fn keyed(f: Family, last: wire::Expr) -> Vec<wire::Expr> {
    let mut v = key_exprs(f);
    v.push(last);
    v
}

/// `dnat to ... map @set`: the map gives address and port in registers 1 and after.
fn dnat_map_exprs(f: Family, s: &str) -> Vec<wire::Expr> {
    let mut v = keyed(f, lookup(s, Some(Reg::r(1))));
    let (family, port) = match f {
        Family::V4 => (uapi::NFPROTO_IPV4, Reg::r32(1)),
        Family::V6 => (uapi::NFPROTO_IPV6, Reg::r(2)),
    };
    v.push(wire::Expr::Nat {
        kind: libc::NFT_NAT_DNAT as u32,
        family: u32::from(family),
        addr: Some((Reg::r(1), Reg::r(1))),
        proto: Some((port, port)),
        flags: uapi::NAT_MAP_IPS_PROTO,
    });
    v
}

/// `meta mark set meta mark | bit`.
fn set_mark_exprs(bit: u32) -> Vec<wire::Expr> {
    vec![
        meta(libc::NFT_META_MARK, Reg::r(1)),
        wire::Expr::Bitwise {
            sreg: Reg::r(1),
            dreg: Reg::r(1),
            len: 4,
            mask: (!bit).to_ne_bytes().to_vec(),
            xor: bit.to_ne_bytes().to_vec(),
        },
        wire::Expr::MetaSet {
            key: libc::NFT_META_MARK as u32,
            sreg: Reg::r(1),
        },
    ]
}

/// `ip saddr @set` (the origin lock's ranges).
fn saddr_in_exprs(f: Family, set: &str) -> Vec<wire::Expr> {
    let mut v = nfproto(f);
    let (off, len) = match f {
        Family::V4 => (12, 4),
        Family::V6 => (8, 16),
    };
    v.push(payload(
        libc::NFT_PAYLOAD_NETWORK_HEADER,
        off,
        len,
        Reg::r(1),
    ));
    v.push(lookup(set, None));
    v
}

/// `snat to <address>`.
fn snat_exprs(a: &IpAddr) -> Vec<wire::Expr> {
    let fam = Family::of(*a);
    let mut v = nfproto(fam);
    v.push(wire::Expr::Immediate {
        dreg: Reg::r(1),
        data: ip_bytes(a).to_vec(),
    });
    v.push(wire::Expr::Nat {
        kind: libc::NFT_NAT_SNAT as u32,
        family: u32::from(match fam {
            Family::V4 => uapi::NFPROTO_IPV4,
            Family::V6 => uapi::NFPROTO_IPV6,
        }),
        addr: Some((Reg::r(1), Reg::r(1))),
        proto: None,
        flags: uapi::NAT_MAP_IPS,
    });
    v
}

/// The kernel expressions of one IR expression (the ones nft 1.0.6 generates for it).
pub fn exprs(e: &Expr) -> Vec<wire::Expr> {
    let th = libc::NFT_PAYLOAD_TRANSPORT_HEADER;
    let eq = libc::NFT_CMP_EQ;
    match e {
        Expr::Iifname(n) => vec![
            meta(libc::NFT_META_IIFNAME, Reg::r(1)),
            cmp(eq, &ifname_bytes(n)),
        ],
        Expr::Oifname(n) => vec![
            meta(libc::NFT_META_OIFNAME, Reg::r(1)),
            cmp(eq, &ifname_bytes(n)),
        ],
        Expr::NfProto(f) => nfproto(*f),
        Expr::Saddr(net) => saddr_exprs(net),
        Expr::Dport(p, a, b) => dport_exprs(p, *a, *b),
        Expr::IcmpType(t) => icmp_type_exprs(Family::V4, 1, *t),
        Expr::Icmpv6Type(t) => icmp_type_exprs(Family::V6, 58, *t),
        Expr::CtState(bits) => ct_bits(libc::NFT_CT_STATE, *bits),
        // IPS_DST_NAT = 1 << 5.
        Expr::CtStatusDnat => ct_bits(libc::NFT_CT_STATUS, 0x20),
        Expr::InSet(f, s) => keyed(*f, lookup(s, None)),
        Expr::Vmap(f, s) => keyed(*f, lookup(s, Some(Reg::VERDICT))),
        Expr::CounterMap(f, s) => keyed(
            *f,
            wire::Expr::Objref {
                sreg: Reg::r(1),
                set: s.clone(),
            },
        ),
        Expr::DnatMap(f, s) => dnat_map_exprs(*f, s),
        Expr::SetMark(bit) => set_mark_exprs(*bit),
        Expr::MarkBit(bit) => vec![
            meta(libc::NFT_META_MARK, Reg::r(1)),
            mask(4, &bit.to_ne_bytes()),
            cmp(eq, &bit.to_ne_bytes()),
        ],
        Expr::SaddrIn(f, set) => saddr_in_exprs(*f, set),
        Expr::CounterNamed(n) => vec![wire::Expr::ObjrefNamed {
            kind: uapi::NFT_OBJECT_COUNTER,
            name: n.clone(),
        }],
        Expr::TcpSyn => vec![
            meta(libc::NFT_META_L4PROTO, Reg::r(1)),
            cmp(eq, &[6]),
            payload(th, 13, 1, Reg::r(1)),
            mask(1, &[0x06]),
            cmp(eq, &[0x02]),
        ],
        Expr::MssAbove(n) => vec![
            mss_option(Some(Reg::r(1)), None),
            cmp(libc::NFT_CMP_GT, &n.to_be_bytes()),
        ],
        Expr::SetMss(n) => vec![
            wire::Expr::Immediate {
                dreg: Reg::r(1),
                data: n.to_be_bytes().to_vec(),
            },
            mss_option(None, Some(Reg::r(1))),
        ],
        Expr::Masquerade => vec![wire::Expr::Masq { flags: 0 }],
        Expr::L4Proto(n) => vec![meta(libc::NFT_META_L4PROTO, Reg::r(1)), cmp(eq, &[*n])],
        Expr::Snat(a) => snat_exprs(a),
        Expr::Accept => vec![verdict(libc::NF_ACCEPT)],
        Expr::Drop => vec![verdict(libc::NF_DROP)],
        Expr::Return => vec![verdict(libc::NFT_RETURN)],
    }
}

/// One rule: its expressions and its comment.
pub fn rule(r: &ir::Rule) -> wire::Rule {
    wire::Rule {
        exprs: r.exprs.iter().flat_map(exprs).collect(),
        comment: Some(r.origin.comment()),
    }
}

fn hook_num(h: Hook) -> u32 {
    (match h {
        Hook::Prerouting => libc::NF_INET_PRE_ROUTING,
        Hook::Input => libc::NF_INET_LOCAL_IN,
        Hook::Forward => libc::NF_INET_FORWARD,
        Hook::Postrouting => libc::NF_INET_POST_ROUTING,
    }) as u32
}

fn chain(c: &ir::Chain) -> wire::Chain {
    wire::Chain {
        name: c.name.clone(),
        base: c.base.map(|b| wire::BaseChain {
            kind: match b.kind {
                ir::ChainKind::Filter => "filter",
                ir::ChainKind::Nat => "nat",
            }
            .to_owned(),
            hook: hook_num(b.hook),
            priority: b.priority,
            policy: if b.accept {
                libc::NF_ACCEPT as u32
            } else {
                libc::NF_DROP as u32
            },
        }),
        rules: c.rules.iter().map(rule).collect(),
    }
}

/// One table.
pub fn table(t: &ir::Table) -> wire::Table {
    wire::Table {
        name: t.name.clone(),
        chains: t.chains.iter().map(chain).collect(),
        sets: t
            .sets
            .iter()
            .map(set)
            .chain(t.addr_sets.iter().map(addr_set))
            .collect(),
        counters: t
            .counters
            .iter()
            .map(|c| (c.clone(), wire::Counter::default()))
            .collect(),
    }
}

/// The ruleset as the kernel will hold it.
pub fn ruleset(rs: &ir::Ruleset) -> wire::Ruleset {
    wire::Ruleset {
        edge: table(&rs.edge),
        state: table(&rs.state),
    }
}
