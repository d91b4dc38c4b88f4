//! Pure: reads nf_tables notifications (`NFNLGRP_NFTABLES` datagrams) and tells, per
//! transaction, whether someone else changed our tables.
//!
//! The kernel sends one notification per object a transaction created or deleted, then
//! `NFT_MSG_NEWGEN` carrying the new generation and the id and name of the thread that
//! committed it (`NFTA_GEN_PROC_PID` is the committing *thread's* id). So a transaction is
//! judged at its NEWGEN: did it touch `inet edge` or `inet edge_state`, was one of them
//! deleted (what `nft flush ruleset` does), and was it ours? Our own commits are ignored
//! without reading anything; a foreign one is drift.
//!
//! "Ours" is told two ways, because the thread id is the kernel's *global* one: inside a
//! PID namespace (a container) it matches no thread this process can see. The NEWGEN also
//! carries, as its netlink port id, the port of the socket that committed: edge-fw
//! commits through one socket whose port it knows.

use crate::codec;
use crate::ir::{STATE_TABLE, TABLE};
use crate::uapi::{NFPROTO_INET, NFT_MSG_DESTROYTABLE};

/// One nf_tables notification, reduced to what drift detection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// An object was created or deleted in a table.
    Object {
        /// `NFT_MSG_*` type (NEWTABLE, DELRULE, ...).
        msg: u16,
        /// nfgenmsg family (`NFPROTO_INET` = 1).
        family: u8,
        /// The table it belongs to.
        table: String,
    },
    /// The end of a transaction.
    NewGen {
        /// The new generation.
        id: u32,
        /// Netlink port id of the committing socket (`nlmsg_pid`).
        portid: u32,
        /// The committing thread's id.
        tid: u32,
        /// The committing thread's name (`nft`, `tokio-runtime-w`).
        comm: String,
    },
}

/// The nf_tables notifications in one datagram, in order; other messages are skipped.
pub fn parse(datagram: &[u8]) -> Vec<Notification> {
    let mut out = Vec::new();
    for m in codec::messages(datagram) {
        let Some(msg) = m.nft() else { continue };
        if m.body.len() < 4 {
            continue;
        }
        if msg == libc::NFT_MSG_NEWGEN as u16 {
            let g = codec::gen_of(&m);
            out.push(Notification::NewGen {
                id: g.id,
                portid: m.portid,
                tid: g.tid,
                comm: g.comm,
            });
        } else if let Some(table) = codec::table_of(&m) {
            out.push(Notification::Object {
                msg,
                family: m.family(),
                table,
            });
        }
    }
    out
}

/// A finished transaction of someone else that changed our tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignChange {
    /// `inet edge` or `inet edge_state` was deleted (`nft flush ruleset`, `delete table`):
    /// the repair needs no read to know what to write.
    pub deleted: bool,
    /// Who committed it (`nft[4242]`).
    pub by: String,
}

/// Follows notifications transaction by transaction.
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    touched: bool,
    deleted: bool,
}

fn is_delete(msg: u16) -> bool {
    msg == libc::NFT_MSG_DELTABLE as u16 || msg == NFT_MSG_DESTROYTABLE
}

impl Tracker {
    /// Takes one notification; at the end of a transaction (NEWGEN) that touched our tables
    /// and was not committed by us (`own(tid, portid)`), returns the change.
    pub fn feed(
        &mut self,
        n: &Notification,
        own: impl Fn(u32, u32) -> bool,
    ) -> Option<ForeignChange> {
        match n {
            Notification::Object { msg, family, table } => {
                if *family == NFPROTO_INET && (table == TABLE || table == STATE_TABLE) {
                    self.touched = true;
                    self.deleted |= is_delete(*msg);
                }
                None
            }
            Notification::NewGen {
                tid, portid, comm, ..
            } => {
                let t = std::mem::take(self);
                (t.touched && !own(*tid, *portid)).then(|| ForeignChange {
                    deleted: t.deleted,
                    by: format!("{comm}[{tid}]"),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notification as the kernel lays it out.
    fn msg(ty: u16, family: u8, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (a, v) in attrs {
            let len = 4 + v.len();
            body.extend((len as u16).to_ne_bytes());
            body.extend(a.to_ne_bytes());
            body.extend(v);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let len = 20 + body.len();
        let mut m = Vec::new();
        m.extend((len as u32).to_ne_bytes());
        m.extend(((crate::uapi::NFNL_SUBSYS_NFTABLES << 8) | ty).to_ne_bytes());
        m.extend(0u16.to_ne_bytes());
        m.extend(7u32.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        m.extend([family, 0, 0, 0]);
        m.extend(body);
        m
    }

    fn name(s: &str) -> Vec<u8> {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    }

    fn newgen(tid: u32, comm: &str) -> Vec<u8> {
        msg(
            libc::NFT_MSG_NEWGEN as u16,
            0,
            &[
                (crate::uapi::NFTA_GEN_ID, 42u32.to_be_bytes().to_vec()),
                (crate::uapi::NFTA_GEN_PROC_PID, tid.to_be_bytes().to_vec()),
                (crate::uapi::NFTA_GEN_PROC_NAME, name(comm)),
            ],
        )
    }

    fn run(datagram: &[u8], own: u32) -> Vec<ForeignChange> {
        let mut t = Tracker::default();
        parse(datagram)
            .iter()
            .filter_map(|n| t.feed(n, |tid, _| tid == own))
            .collect()
    }

    #[test]
    fn a_flush_ruleset_by_nft_is_a_foreign_deletion() {
        let mut d = msg(libc::NFT_MSG_DELRULE as u16, 1, &[(1, name("edge"))]);
        d.extend(msg(libc::NFT_MSG_DELTABLE as u16, 1, &[(1, name("edge"))]));
        d.extend(msg(
            libc::NFT_MSG_DELTABLE as u16,
            2,
            &[(1, name("libvirt_network"))],
        ));
        d.extend(newgen(4242, "nft"));
        assert_eq!(
            run(&d, 1),
            vec![ForeignChange {
                deleted: true,
                by: "nft[4242]".into()
            }]
        );
    }

    #[test]
    fn our_own_commit_and_other_tables_are_not_drift() {
        // Our replace: add, delete, add of inet edge, committed by one of our threads.
        let mut d = msg(libc::NFT_MSG_DELTABLE as u16, 1, &[(1, name("edge"))]);
        d.extend(msg(libc::NFT_MSG_NEWTABLE as u16, 1, &[(1, name("edge"))]));
        d.extend(newgen(77, "tokio-runtime-w"));
        // Someone else changes another table, or a table named edge in family ip.
        d.extend(msg(libc::NFT_MSG_NEWRULE as u16, 2, &[(1, name("filter"))]));
        d.extend(msg(libc::NFT_MSG_NEWRULE as u16, 2, &[(1, name("edge"))]));
        d.extend(newgen(4242, "nft"));
        assert_eq!(run(&d, 77), vec![]);
    }

    #[test]
    fn a_foreign_rule_in_our_table_is_drift_without_deletion() {
        let mut d = msg(libc::NFT_MSG_NEWRULE as u16, 1, &[(1, name("edge"))]);
        d.extend(newgen(4242, "nft"));
        assert_eq!(
            run(&d, 1),
            vec![ForeignChange {
                deleted: false,
                by: "nft[4242]".into()
            }]
        );
        let mut d = msg(libc::NFT_MSG_DELOBJ as u16, 1, &[(1, name("edge_state"))]);
        d.extend(newgen(4242, "nft"));
        assert_eq!(run(&d, 1).len(), 1);
    }

    #[test]
    fn truncated_datagrams_are_ignored() {
        let d = newgen(4242, "nft");
        assert!(parse(&d[..d.len() - 5]).is_empty());
        assert!(parse(&[1, 2, 3]).is_empty());
    }

    proptest::proptest! {
        /// Any bytes, and any valid notification with bytes appended or cut off: no panic,
        /// and the tracker reports at most one change per NEWGEN.
        #[test]
        fn any_datagram_parses_without_panic(
            junk in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            cut in 0usize..64,
        ) {
            let mut d = msg(libc::NFT_MSG_DELTABLE as u16, NFPROTO_INET, &[(1, name(TABLE))]);
            d.extend(newgen(4242, "nft"));
            d.extend(&junk);
            let d = &d[..d.len().saturating_sub(cut)];
            let notes = parse(d);
            let gens = notes.iter().filter(|n| matches!(n, Notification::NewGen { .. })).count();
            let mut t = Tracker::default();
            let changes = notes.iter().filter_map(|n| t.feed(n, |_, _| false)).count();
            proptest::prop_assert!(changes <= gens);
            let _ = parse(&junk);
        }
    }
}
