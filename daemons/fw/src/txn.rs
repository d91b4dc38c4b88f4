//! Pure: the nf_tables transactions edge-fw sends, as lists of operations, and their
//! encoding into one netlink batch. Three shapes, one writer:
//!
//! - [`Transaction::replace`]: `inet edge` replaced whole (add, delete, add + contents) and
//!   `inet edge_state` converged in place from what is live (its counters keep their values);
//! - [`Transaction::elements`]: only set elements and counter objects change (an address
//!   that moved, a forward added): no table, chain or rule is touched, established flows and
//!   every other element stay as they are;
//! - [`Transaction::restore`]: saved tables put back (the rollback of a confirm-apply).

use std::sync::Arc;

use crate::codec::{self, Attrs};
use crate::ir::{STATE_TABLE, TABLE};
use crate::uapi;
use crate::wire::{self, Change, Counter, Elem, Live, Presence, Rule, Set, Table};

/// Set elements per message (each message stays well under 64 KiB).
pub const ELEMS_PER_MSG: usize = 256;

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// NEWTABLE (create if missing).
    AddTable(String),
    /// DELTABLE.
    DelTable(String),
    /// NEWCHAIN (declaration: hook, type, priority, policy; create if missing).
    AddChain(String, Arc<wire::Chain>),
    /// DELCHAIN.
    DelChain(String, String),
    /// DELRULE without a handle: every rule of a chain.
    FlushChain(String, String),
    /// NEWSET with its transaction id.
    AddSet(String, Arc<Set>, u32),
    /// DELSET.
    DelSet(String, String),
    /// DELSETELEM without elements: every element of a set.
    FlushSet(String, String),
    /// NEWSETELEM of a range of a set's elements (the chunks of one set share it).
    AddElems(String, Arc<Set>, std::ops::Range<usize>),
    /// NEWSETELEM of some elements.
    PutElems(String, String, Vec<Elem>),
    /// DELSETELEM of some elements (by key).
    DelElems(String, String, Vec<Elem>),
    /// NEWOBJ counter with its starting values (an existing counter keeps its own).
    AddCounter(String, String, Counter),
    /// DELOBJ counter.
    DelCounter(String, String),
    /// NEWRULE appended to a chain.
    AddRule(String, String, Rule),
}

impl Op {
    /// What the operation is, for an error message.
    pub fn describe(&self) -> String {
        match self {
            Op::AddTable(t) => format!("add table inet {t}"),
            Op::DelTable(t) => format!("delete table inet {t}"),
            Op::AddChain(t, c) => format!("add chain inet {t} {}", c.name),
            Op::DelChain(t, c) => format!("delete chain inet {t} {c}"),
            Op::FlushChain(t, c) => format!("flush chain inet {t} {c}"),
            Op::AddSet(t, s, _) => format!("add {} in table {t}", kind_name(s)),
            Op::DelSet(t, s) => format!("delete set inet {t} {s}"),
            Op::FlushSet(t, s) => format!("flush set inet {t} {s}"),
            Op::AddElems(t, s, r) => {
                let first = s
                    .elements
                    .get(r.start)
                    .map(|e| e.render(&s.spec))
                    .unwrap_or_default();
                format!(
                    "elements {}..{} of {} in table {t} (first: {first})",
                    r.start,
                    r.end,
                    kind_name(s)
                )
            }
            Op::PutElems(t, s, e) => format!("add {} element(s) to set inet {t} {s}", e.len()),
            Op::DelElems(t, s, e) => {
                format!("delete {} element(s) from set inet {t} {s}", e.len())
            }
            Op::AddCounter(t, c, _) => format!("add counter inet {t} {c}"),
            Op::DelCounter(t, c) => format!("delete counter inet {t} {c}"),
            Op::AddRule(t, c, r) => format!(
                "rule `{}` in chain inet {t} {c}",
                r.comment.as_deref().unwrap_or("(no comment)")
            ),
        }
    }

    /// True for operations that write set elements or counters only.
    pub fn element_only(&self) -> bool {
        matches!(
            self,
            Op::PutElems(..) | Op::DelElems(..) | Op::AddCounter(..) | Op::DelCounter(..)
        )
    }
}

/// `map fwd4` / `set hairpin4`.
fn kind_name(s: &Set) -> String {
    let flags = s.spec.flags;
    let is_map = flags & (libc::NFT_SET_MAP as u32 | uapi::NFT_SET_OBJECT) != 0;
    format!("{} {}", if is_map { "map" } else { "set" }, s.name)
}

/// A batch of operations, in order.
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    /// The operations.
    pub ops: Vec<Op>,
}

/// A transaction encoded as one netlink batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// BEGIN, the messages, END.
    pub bytes: Vec<u8>,
    /// The sequence number of each operation's message(s): `(seq, op index)`.
    pub seqs: Vec<(u32, usize)>,
    /// Where the END message starts: sending `bytes[..end_at]` is a dry run.
    pub end_at: usize,
}

impl Batch {
    /// The operation a sequence number belongs to.
    pub fn op_of(&self, seq: u32) -> Option<usize> {
        self.seqs.iter().find(|(s, _)| *s == seq).map(|(_, i)| *i)
    }
}

impl Transaction {
    fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// Adds a table's sets (with elements), chains and rules to a table created empty.
    fn fill(&mut self, t: &Table) {
        for s in &t.sets {
            self.add_set(&t.name, s);
        }
        for c in &t.chains {
            self.push(Op::AddChain(t.name.clone(), Arc::new(decl(c))));
        }
        for s in &t.sets {
            self.add_elems(&t.name, s);
        }
        for c in &t.chains {
            for r in &c.rules {
                self.push(Op::AddRule(t.name.clone(), c.name.clone(), r.clone()));
            }
        }
    }

    fn add_set(&mut self, table: &str, s: &Set) {
        let id = self.ops.len() as u32 + 1;
        self.push(Op::AddSet(table.to_owned(), Arc::new(s.clone()), id));
    }

    fn add_elems(&mut self, table: &str, s: &Set) {
        // The chunks share the one copy the AddSet holds.
        let shared = self
            .ops
            .iter()
            .rev()
            .find_map(|op| match op {
                Op::AddSet(t, x, _) if t == table && x.name == s.name => Some(x.clone()),
                _ => None,
            })
            .unwrap_or_else(|| Arc::new(s.clone()));
        let mut i = 0;
        while i < s.elements.len() {
            let end = (i + ELEMS_PER_MSG).min(s.elements.len());
            self.push(Op::AddElems(table.to_owned(), shared.clone(), i..end));
            i = end;
        }
    }

    /// `inet edge` replaced by `want` (deleted when `None`): add, delete, add in one
    /// transaction, so it works whether the table exists or not and never leaves a moment
    /// without it.
    fn replace_edge(&mut self, want: Option<&Table>) {
        self.push(Op::AddTable(TABLE.to_owned()));
        self.push(Op::DelTable(TABLE.to_owned()));
        if let Some(t) = want {
            self.push(Op::AddTable(TABLE.to_owned()));
            self.fill(t);
        }
    }

    /// `inet edge_state` converged from `live` to `want` in place: chains flushed, sets kept
    /// (flushed) where their declaration still fits and re-declared where not, counters
    /// that exist untouched (they keep counting), missing ones created with `values`,
    /// stale ones deleted.
    fn converge_state(
        &mut self,
        want: &Table,
        live: Option<&Table>,
        values: &dyn Fn(&str) -> Counter,
    ) {
        let t = want.name.clone();
        self.push(Op::AddTable(t.clone()));
        let Some(live) = live else {
            for name in want.counters.keys() {
                self.push(Op::AddCounter(t.clone(), name.clone(), values(name)));
            }
            self.fill(want);
            return;
        };
        for c in &live.chains {
            self.push(Op::FlushChain(t.clone(), c.name.clone()));
        }
        let mut kept: Vec<&str> = Vec::new();
        for s in &live.sets {
            match want.set(&s.name) {
                Some(w) if w.spec.fits(&s.spec, w.elements.len()) => {
                    self.push(Op::FlushSet(t.clone(), s.name.clone()));
                    kept.push(&s.name);
                }
                _ => self.push(Op::DelSet(t.clone(), s.name.clone())),
            }
        }
        for c in &live.chains {
            if want.chain(&c.name).is_none_or(|w| w.base != c.base) {
                self.push(Op::DelChain(t.clone(), c.name.clone()));
            }
        }
        for name in want.counters.keys() {
            if !live.counters.contains_key(name) {
                self.push(Op::AddCounter(t.clone(), name.clone(), values(name)));
            }
        }
        for s in want
            .sets
            .iter()
            .filter(|s| !kept.contains(&s.name.as_str()))
        {
            self.add_set(&t, s);
        }
        for c in &want.chains {
            self.push(Op::AddChain(t.clone(), Arc::new(decl(c))));
        }
        // Kept sets are refilled by name, new ones by their transaction id.
        for s in &want.sets {
            self.add_elems(&t, s);
        }
        for c in &want.chains {
            for r in &c.rules {
                self.push(Op::AddRule(t.clone(), c.name.clone(), r.clone()));
            }
        }
        for name in live.counters.keys() {
            if !want.counters.contains_key(name) {
                self.push(Op::DelCounter(t.clone(), name.clone()));
            }
        }
    }

    /// Installs `want` over what is `live`: `inet edge` replaced, `inet edge_state`
    /// converged (new counters start at zero).
    pub fn replace(want: &wire::Ruleset, live: &Live) -> Self {
        let mut tx = Transaction::default();
        tx.replace_edge(Some(&want.edge));
        tx.converge_state(&want.state, live.state.as_ref(), &|_| Counter::default());
        tx
    }

    /// The element-only update that turns `live` into the wanted ruleset, when every
    /// change is one ([`Change::element_only`]); `None` otherwise.
    pub fn elements(changes: &[Change]) -> Option<Self> {
        if changes.is_empty() || !changes.iter().all(Change::element_only) {
            return None;
        }
        let mut tx = Transaction::default();
        for c in changes {
            if let Change::Counter {
                table,
                name,
                how: Presence::Missing,
            } = c
            {
                tx.push(Op::AddCounter(
                    table.clone(),
                    name.clone(),
                    Counter::default(),
                ));
            }
        }
        for c in changes {
            if let Change::Elements {
                table,
                set,
                added,
                removed,
                ..
            } = c
            {
                for chunk in removed.chunks(ELEMS_PER_MSG) {
                    tx.push(Op::DelElems(table.clone(), set.clone(), chunk.to_vec()));
                }
                for chunk in added.chunks(ELEMS_PER_MSG) {
                    tx.push(Op::PutElems(table.clone(), set.clone(), chunk.to_vec()));
                }
            }
        }
        for c in changes {
            if let Change::Counter {
                table,
                name,
                how: Presence::Extra,
            } = c
            {
                tx.push(Op::DelCounter(table.clone(), name.clone()));
            }
        }
        Some(tx)
    }

    /// Puts back the tables `saved` read earlier over what is `live` now: `inet edge`
    /// exactly as saved (or gone, if it did not exist), `inet edge_state` converged to the
    /// saved one (or gone); counters that still exist keep their values, deleted ones come
    /// back with their saved values.
    pub fn restore(saved: &Live, live: &Live) -> Self {
        let mut tx = Transaction::default();
        tx.replace_edge(saved.edge.as_ref());
        match &saved.state {
            Some(st) => {
                let values = |n: &str| st.counters.get(n).copied().unwrap_or_default();
                tx.converge_state(st, live.state.as_ref(), &values);
            }
            None => {
                tx.push(Op::AddTable(STATE_TABLE.to_owned()));
                tx.push(Op::DelTable(STATE_TABLE.to_owned()));
            }
        }
        tx
    }

    /// The transaction id of a set created earlier in this transaction (0: refer by name).
    fn set_id(&self, upto: usize, table: &str, set: &str) -> u32 {
        self.ops[..upto]
            .iter()
            .rev()
            .find_map(|op| match op {
                Op::AddSet(t, s, id) if t == table && s.name == set => Some(*id),
                Op::DelTable(t) if t == table => Some(0),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// Encodes the transaction as one batch, numbering messages from `seq0`.
    pub fn encode(&self, seq0: u32) -> Batch {
        let mut bytes = Vec::with_capacity(self.ops.len() * 256);
        let mut seqs = Vec::with_capacity(self.ops.len());
        let mut seq = seq0;
        batch_marker(&mut bytes, uapi::NFNL_MSG_BATCH_BEGIN, seq);
        for (i, op) in self.ops.iter().enumerate() {
            seq = seq.wrapping_add(1);
            let (msg, flags, attrs) = self.message(i, op);
            codec::put_message(
                &mut bytes,
                uapi::msg_type(msg),
                flags,
                seq,
                uapi::NFPROTO_INET,
                0,
                attrs.bytes(),
            );
            seqs.push((seq, i));
        }
        let end_at = bytes.len();
        batch_marker(&mut bytes, uapi::NFNL_MSG_BATCH_END, seq.wrapping_add(1));
        Batch {
            bytes,
            seqs,
            end_at,
        }
    }

    /// The message type, flags and attributes of operation `i`, `op`.
    fn message(&self, i: usize, op: &Op) -> (i32, u16, Attrs) {
        let create = (libc::NLM_F_REQUEST | libc::NLM_F_CREATE) as u16;
        let plain = libc::NLM_F_REQUEST as u16;
        let ids = |set: &str| -> u32 {
            let table = match op {
                Op::AddRule(t, ..) => t.as_str(),
                _ => "",
            };
            self.set_id(i, table, set)
        };
        match op {
            Op::AddTable(t) => (libc::NFT_MSG_NEWTABLE, create, codec::table_attrs(t)),
            Op::DelTable(t) => (libc::NFT_MSG_DELTABLE, plain, codec::table_attrs(t)),
            Op::AddChain(t, c) => (
                libc::NFT_MSG_NEWCHAIN,
                create,
                codec::chain_attrs(t, &c.name, c.base.as_ref()),
            ),
            Op::DelChain(t, c) => (
                libc::NFT_MSG_DELCHAIN,
                plain,
                codec::chain_attrs(t, c, None),
            ),
            Op::FlushChain(t, c) => (libc::NFT_MSG_DELRULE, plain, codec::flush_chain_attrs(t, c)),
            Op::AddSet(t, s, id) => (libc::NFT_MSG_NEWSET, create, codec::set_attrs(t, s, *id)),
            Op::DelSet(t, s) => (libc::NFT_MSG_DELSET, plain, codec::set_name_attrs(t, s)),
            Op::FlushSet(t, s) => (
                libc::NFT_MSG_DELSETELEM,
                plain,
                codec::elems_attrs(t, s, 0, &[], false),
            ),
            Op::AddElems(t, s, r) => (
                libc::NFT_MSG_NEWSETELEM,
                create,
                codec::elems_attrs(
                    t,
                    &s.name,
                    self.set_id(i, t, &s.name),
                    s.elements.get(r.clone()).unwrap_or_default(),
                    false,
                ),
            ),
            Op::PutElems(t, s, e) => (
                libc::NFT_MSG_NEWSETELEM,
                create,
                codec::elems_attrs(t, s, 0, e, false),
            ),
            Op::DelElems(t, s, e) => (
                libc::NFT_MSG_DELSETELEM,
                plain,
                codec::elems_attrs(t, s, 0, e, true),
            ),
            Op::AddCounter(t, c, v) => (
                libc::NFT_MSG_NEWOBJ,
                create,
                codec::counter_attrs(t, c, Some(*v)),
            ),
            Op::DelCounter(t, c) => (
                libc::NFT_MSG_DELOBJ,
                plain,
                codec::counter_attrs(t, c, None),
            ),
            Op::AddRule(t, c, r) => (
                libc::NFT_MSG_NEWRULE,
                create | libc::NLM_F_APPEND as u16,
                codec::rule_attrs(t, c, r, &ids),
            ),
        }
    }

    /// True when every operation writes set elements or counters only.
    pub fn is_element_only(&self) -> bool {
        self.ops.iter().all(Op::element_only)
    }
}

/// The message that begins or ends a batch (`NFNL_MSG_BATCH_BEGIN`/`_END`).
fn batch_marker(bytes: &mut Vec<u8>, ty: u16, seq: u32) {
    codec::put_message(
        bytes,
        ty,
        libc::NLM_F_REQUEST as u16,
        seq,
        uapi::NFPROTO_UNSPEC,
        uapi::NFNL_SUBSYS_NFTABLES,
        &[],
    );
}

/// A chain's declaration without its rules.
fn decl(c: &wire::Chain) -> wire::Chain {
    wire::Chain {
        name: c.name.clone(),
        base: c.base.clone(),
        rules: Vec::new(),
    }
}
