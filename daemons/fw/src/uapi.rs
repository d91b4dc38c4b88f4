//! Pure: the numbers of the kernel's nf_tables netlink interface that edge-fw speaks
//! (`linux/netfilter/nf_tables.h` and `nfnetlink.h`, a stable user-space ABI). Message
//! types and enum values that `libc` already carries (`NFT_MSG_*`, `NFT_META_*`, ...) are
//! taken from there; attribute numbers, which it does not carry, are named here.

#![allow(missing_docs)] // the names are the kernel's own; each group says what it numbers

/// nfnetlink: the nf_tables subsystem id (high byte of every message type).
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// nfnetlink: the first message of a batch.
pub const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
/// nfnetlink: the last message of a batch (without it the kernel aborts: a dry run).
pub const NFNL_MSG_BATCH_END: u16 = 0x11;
/// nfnetlink: the multicast group of nf_tables notifications.
pub const NFNLGRP_NFTABLES: u32 = 7;
/// Protocol families of `struct nfgenmsg`.
pub const NFPROTO_UNSPEC: u8 = 0;
pub const NFPROTO_INET: u8 = 1;
pub const NFPROTO_IPV4: u8 = 2;
pub const NFPROTO_ARP: u8 = 3;
pub const NFPROTO_NETDEV: u8 = 5;
pub const NFPROTO_BRIDGE: u8 = 7;
pub const NFPROTO_IPV6: u8 = 10;
/// Netlink attribute flag of nested attributes.
pub const NLA_F_NESTED: u16 = 1 << 15;
/// Netlink header flag: the dump was interrupted by a change (the generation moved).
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// Netlink header flag of an error message carrying extended-ack attributes.
pub const NLM_F_ACK_TLVS: u16 = 0x200;
/// Extended ack: the kernel's message text.
pub const NLMSGERR_ATTR_MSG: u16 = 1;

// enum nft_table_attributes
pub const NFTA_TABLE_NAME: u16 = 1;
// enum nft_chain_attributes
pub const NFTA_CHAIN_TABLE: u16 = 1;
pub const NFTA_CHAIN_NAME: u16 = 3;
pub const NFTA_CHAIN_HOOK: u16 = 4;
pub const NFTA_CHAIN_POLICY: u16 = 5;
pub const NFTA_CHAIN_TYPE: u16 = 7;
// enum nft_hook_attributes
pub const NFTA_HOOK_HOOKNUM: u16 = 1;
pub const NFTA_HOOK_PRIORITY: u16 = 2;
// enum nft_rule_attributes
pub const NFTA_RULE_TABLE: u16 = 1;
pub const NFTA_RULE_CHAIN: u16 = 2;
pub const NFTA_RULE_EXPRESSIONS: u16 = 4;
pub const NFTA_RULE_USERDATA: u16 = 7;
// enum nft_list_attributes
pub const NFTA_LIST_ELEM: u16 = 1;
// enum nft_expr_attributes
pub const NFTA_EXPR_NAME: u16 = 1;
pub const NFTA_EXPR_DATA: u16 = 2;
// enum nft_set_attributes
pub const NFTA_SET_TABLE: u16 = 1;
pub const NFTA_SET_NAME: u16 = 2;
pub const NFTA_SET_FLAGS: u16 = 3;
pub const NFTA_SET_KEY_TYPE: u16 = 4;
pub const NFTA_SET_KEY_LEN: u16 = 5;
pub const NFTA_SET_DATA_TYPE: u16 = 6;
pub const NFTA_SET_DATA_LEN: u16 = 7;
pub const NFTA_SET_DESC: u16 = 9;
pub const NFTA_SET_ID: u16 = 10;
pub const NFTA_SET_OBJ_TYPE: u16 = 15;
// enum nft_set_desc_attributes
pub const NFTA_SET_DESC_SIZE: u16 = 1;
// enum nft_set_elem_list_attributes
pub const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
pub const NFTA_SET_ELEM_LIST_SET: u16 = 2;
pub const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
pub const NFTA_SET_ELEM_LIST_SET_ID: u16 = 4;
// enum nft_set_elem_attributes
pub const NFTA_SET_ELEM_KEY: u16 = 1;
pub const NFTA_SET_ELEM_DATA: u16 = 2;
pub const NFTA_SET_ELEM_FLAGS: u16 = 3;
pub const NFTA_SET_ELEM_OBJREF: u16 = 9;
// enum nft_data_attributes
pub const NFTA_DATA_VALUE: u16 = 1;
pub const NFTA_DATA_VERDICT: u16 = 2;
// enum nft_verdict_attributes
pub const NFTA_VERDICT_CODE: u16 = 1;
pub const NFTA_VERDICT_CHAIN: u16 = 2;
// enum nft_immediate_attributes
pub const NFTA_IMMEDIATE_DREG: u16 = 1;
pub const NFTA_IMMEDIATE_DATA: u16 = 2;
// enum nft_bitwise_attributes
pub const NFTA_BITWISE_SREG: u16 = 1;
pub const NFTA_BITWISE_DREG: u16 = 2;
pub const NFTA_BITWISE_LEN: u16 = 3;
pub const NFTA_BITWISE_MASK: u16 = 4;
pub const NFTA_BITWISE_XOR: u16 = 5;
pub const NFTA_BITWISE_OP: u16 = 6;
// enum nft_cmp_attributes
pub const NFTA_CMP_SREG: u16 = 1;
pub const NFTA_CMP_OP: u16 = 2;
pub const NFTA_CMP_DATA: u16 = 3;
// enum nft_lookup_attributes
pub const NFTA_LOOKUP_SET: u16 = 1;
pub const NFTA_LOOKUP_SREG: u16 = 2;
pub const NFTA_LOOKUP_DREG: u16 = 3;
pub const NFTA_LOOKUP_SET_ID: u16 = 4;
pub const NFTA_LOOKUP_FLAGS: u16 = 5;
// enum nft_payload_attributes
pub const NFTA_PAYLOAD_DREG: u16 = 1;
pub const NFTA_PAYLOAD_BASE: u16 = 2;
pub const NFTA_PAYLOAD_OFFSET: u16 = 3;
pub const NFTA_PAYLOAD_LEN: u16 = 4;
pub const NFTA_PAYLOAD_SREG: u16 = 5;
// enum nft_exthdr_attributes
pub const NFTA_EXTHDR_DREG: u16 = 1;
pub const NFTA_EXTHDR_TYPE: u16 = 2;
pub const NFTA_EXTHDR_OFFSET: u16 = 3;
pub const NFTA_EXTHDR_LEN: u16 = 4;
pub const NFTA_EXTHDR_FLAGS: u16 = 5;
pub const NFTA_EXTHDR_OP: u16 = 6;
pub const NFTA_EXTHDR_SREG: u16 = 7;
/// `NFT_EXTHDR_OP_TCPOPT`: the extension header is a TCP option.
pub const NFT_EXTHDR_OP_TCPOPT: u32 = 1;
/// TCP option kind 2: maximum segment size.
pub const TCPOPT_MAXSEG: u8 = 2;
// enum nft_meta_attributes
pub const NFTA_META_DREG: u16 = 1;
pub const NFTA_META_KEY: u16 = 2;
pub const NFTA_META_SREG: u16 = 3;
// enum nft_ct_attributes
pub const NFTA_CT_DREG: u16 = 1;
pub const NFTA_CT_KEY: u16 = 2;
pub const NFTA_CT_DIRECTION: u16 = 3;
// enum nft_counter_attributes
pub const NFTA_COUNTER_BYTES: u16 = 1;
pub const NFTA_COUNTER_PACKETS: u16 = 2;
// enum nft_nat_attributes
pub const NFTA_NAT_TYPE: u16 = 1;
pub const NFTA_NAT_FAMILY: u16 = 2;
pub const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
pub const NFTA_NAT_REG_ADDR_MAX: u16 = 4;
pub const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
pub const NFTA_NAT_REG_PROTO_MAX: u16 = 6;
pub const NFTA_NAT_FLAGS: u16 = 7;
// enum nft_masq_attributes
pub const NFTA_MASQ_FLAGS: u16 = 1;
pub const NFTA_MASQ_REG_PROTO_MIN: u16 = 2;
// enum nft_objref_attributes
pub const NFTA_OBJREF_IMM_TYPE: u16 = 1;
pub const NFTA_OBJREF_IMM_NAME: u16 = 2;
pub const NFTA_OBJREF_SET_SREG: u16 = 3;
pub const NFTA_OBJREF_SET_NAME: u16 = 4;
pub const NFTA_OBJREF_SET_ID: u16 = 5;
// enum nft_object_attributes
pub const NFTA_OBJ_TABLE: u16 = 1;
pub const NFTA_OBJ_NAME: u16 = 2;
pub const NFTA_OBJ_TYPE: u16 = 3;
pub const NFTA_OBJ_DATA: u16 = 4;
// enum nft_gen_attributes
pub const NFTA_GEN_ID: u16 = 1;
pub const NFTA_GEN_PROC_PID: u16 = 2;
pub const NFTA_GEN_PROC_NAME: u16 = 3;

/// `NFT_MSG_DESTROYTABLE` (kernel 6.3+; libc does not carry it): delete if it exists.
pub const NFT_MSG_DESTROYTABLE: u16 = 26;
/// `NFT_SET_INTERVAL`: the set holds ranges (start and end elements).
pub const NFT_SET_INTERVAL: u32 = 0x4;
/// `NFT_SET_ELEM_INTERVAL_END`: the element ends the previous range.
pub const NFT_SET_ELEM_INTERVAL_END: u32 = 0x1;
/// `NFT_SET_OBJECT`: the set maps to stateful objects.
pub const NFT_SET_OBJECT: u32 = 0x40;
/// `NFT_OBJECT_COUNTER`.
pub const NFT_OBJECT_COUNTER: u32 = 1;
/// `NFT_DATA_VERDICT`: the data type of a verdict map.
pub const NFT_DATA_VERDICT: u32 = 0xffff_ff00;
/// `sizeof(struct nft_verdict)`: the data length the kernel reports for a verdict map.
pub const NFT_VERDICT_LEN: u32 = 16;
/// `NFTNL_UDATA_RULE_COMMENT`: the comment's type in a rule's user data (libnftnl's TLV
/// format, which nft reads).
pub const UDATA_RULE_COMMENT: u8 = 0;
/// `NF_NAT_RANGE_MAP_IPS`.
pub const NAT_MAP_IPS: u32 = 1;
/// `NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED`.
pub const NAT_MAP_IPS_PROTO: u32 = 3;

// nft's datatype ids, combined for concatenations 6 bits per field.
pub const TYPE_IPADDR: u32 = 7;
pub const TYPE_IP6ADDR: u32 = 8;
pub const TYPE_INET_PROTOCOL: u32 = 12;
pub const TYPE_INET_SERVICE: u32 = 13;
pub const TYPE_IFNAME: u32 = 41;

/// The datatype id of a concatenation, as nft computes it.
pub fn concat_type(fields: &[u32]) -> u32 {
    fields.iter().fold(0, |acc, f| (acc << 6) | f)
}

/// The full netlink message type of an nf_tables message (`NFT_MSG_*`).
pub fn msg_type(msg: i32) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | (msg as u16 & 0xff)
}
