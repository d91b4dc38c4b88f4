//! I/O: reads the live state over netlink — our two tables with everything in them, in one
//! consistent ruleset generation; their counters; the other tables' base chains (for
//! `edgectl fw doctor`); the interfaces' addresses (rtnetlink). Only our own tables are ever
//! read in full.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::codec::{self, Attrs};
use crate::ir::{STATE_TABLE, TABLE};
use crate::nfnl::{DumpInfo, NetlinkError, Socket};
use crate::rt::{Rt, RtError};
use crate::uapi;
use crate::wire::{Counter, Live, Table};

/// Attempts at a consistent read before giving up (each restarts at once when the ruleset
/// changed under it: no sleeping).
const READ_ATTEMPTS: usize = 8;

/// Errors reading live state.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// Talking to nf_tables failed.
    #[error("cannot dump the nf_tables ruleset")]
    Netlink(#[from] NetlinkError),
    /// The ruleset changed during every attempt to read it.
    #[error(
        "the ruleset changed during each of {0} reads of our tables (something is committing \
         without pause: `nft monitor` shows what)"
    )]
    Unsettled(usize),
    /// Reading the interfaces' addresses failed.
    #[error("cannot read the interfaces' addresses")]
    Addresses(#[from] RtError),
}

/// Tracks whether every dump of one read saw the generation it started in.
struct Consistency {
    res_id: u16,
    ok: bool,
}

impl Consistency {
    fn see(&mut self, info: Option<DumpInfo>) -> bool {
        match info {
            Some(i) => {
                if i.changed || i.res_id.is_some_and(|r| r != self.res_id) {
                    self.ok = false;
                }
                true
            }
            // A table or set we just saw is gone: it changed.
            None => {
                self.ok = false;
                false
            }
        }
    }
}

fn table_filter(attr: u16, table: &str) -> Attrs {
    let mut a = Attrs::new();
    a.str(attr, table);
    a
}

/// Reads one table of ours in full (chains, rules, sets, elements, counters).
fn read_table(sock: &Socket, name: &str, c: &mut Consistency) -> Result<Table, NetlinkError> {
    let mut t = Table {
        name: name.to_owned(),
        ..Table::default()
    };
    let inet = uapi::NFPROTO_INET;
    let info = sock.dump(
        libc::NFT_MSG_GETCHAIN,
        inet,
        &table_filter(uapi::NFTA_CHAIN_TABLE, name),
        |m| {
            if let Some((tn, chain)) = codec::chain(m)
                && tn == name
            {
                t.chains.push(chain);
            }
        },
    )?;
    c.see(info);
    let info = sock.dump(
        libc::NFT_MSG_GETRULE,
        inet,
        &table_filter(uapi::NFTA_RULE_TABLE, name),
        |m| {
            if let Some((tn, chain, rule)) = codec::rule(m)
                && tn == name
                && let Some(ch) = t.chains.iter_mut().find(|x| x.name == chain)
            {
                ch.rules.push(rule);
            }
        },
    )?;
    c.see(info);
    let info = sock.dump(
        libc::NFT_MSG_GETSET,
        inet,
        &table_filter(uapi::NFTA_SET_TABLE, name),
        |m| {
            if let Some((tn, set)) = codec::set(m)
                && tn == name
            {
                t.sets.push(set);
            }
        },
    )?;
    c.see(info);
    for set in &mut t.sets {
        let mut a = Attrs::new();
        a.str(uapi::NFTA_SET_ELEM_LIST_TABLE, name)
            .str(uapi::NFTA_SET_ELEM_LIST_SET, &set.name);
        let info = sock.dump(libc::NFT_MSG_GETSETELEM, inet, &a, |m| {
            if let Some((_, _, elems)) = codec::elems(m) {
                set.elements.extend(elems);
            }
        })?;
        c.see(info);
        set.elements.sort();
    }
    t.counters = read_counters_of(sock, name, c)?;
    Ok(t)
}

fn read_counters_of(
    sock: &Socket,
    table: &str,
    c: &mut Consistency,
) -> Result<BTreeMap<String, Counter>, NetlinkError> {
    let mut a = Attrs::new();
    a.str(uapi::NFTA_OBJ_TABLE, table)
        .u32(uapi::NFTA_OBJ_TYPE, uapi::NFT_OBJECT_COUNTER);
    let mut out = BTreeMap::new();
    let info = sock.dump(libc::NFT_MSG_GETOBJ, uapi::NFPROTO_INET, &a, |m| {
        if let Some((tn, name, v)) = codec::counter(m)
            && tn == table
        {
            out.insert(name, v);
        }
    })?;
    c.see(info);
    Ok(out)
}

/// The names of the inet tables that exist.
fn inet_tables(sock: &Socket, c: &mut Consistency) -> Result<Vec<String>, NetlinkError> {
    let mut names = Vec::new();
    let info = sock.dump(
        libc::NFT_MSG_GETTABLE,
        uapi::NFPROTO_INET,
        &Attrs::new(),
        |m| {
            if let Some(n) = codec::table(m) {
                names.push(n);
            }
        },
    )?;
    c.see(info);
    Ok(names)
}

/// Reads `inet edge` and `inet edge_state` in full, all in the same ruleset generation: the
/// generation is asked first, and every reply of every dump must carry it (and none be
/// flagged interrupted); otherwise the read starts over.
///
/// Equivalent to: `nft list table inet edge; nft list table inet edge_state`.
pub fn read_live(sock: &Socket) -> Result<Live, ObserveError> {
    for _ in 0..READ_ATTEMPTS {
        let generation = sock.generation()?;
        let mut c = Consistency {
            res_id: (generation & 0xffff) as u16,
            ok: true,
        };
        let names = inet_tables(sock, &mut c)?;
        let has = |t: &str| names.iter().any(|n| n == t);
        // The two tables are read at the same time, on two sockets: the kernel walks one
        // while this process decodes the other (the state table's counters are the slow part
        // of a large ruleset). Both must carry the generation asked above.
        let mut cs = Consistency {
            res_id: c.res_id,
            ok: true,
        };
        let (edge, state) = std::thread::scope(|scope| {
            let state = has(STATE_TABLE).then(|| {
                scope.spawn(|| -> Result<Table, NetlinkError> {
                    let other = Socket::open()?;
                    read_table(&other, STATE_TABLE, &mut cs)
                })
            });
            let edge = has(TABLE)
                .then(|| read_table(sock, TABLE, &mut c))
                .transpose();
            let state = state
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(NetlinkError::Io {
                            what: "reading inet edge_state",
                            source: std::io::Error::other("the reading thread panicked"),
                        })
                    })
                })
                .transpose();
            (edge, state)
        });
        let live = Live {
            generation,
            edge: edge?,
            state: state?,
        };
        if c.ok && cs.ok {
            return Ok(live);
        }
    }
    Err(ObserveError::Unsettled(READ_ATTEMPTS))
}

/// The counters of `inet edge_state` (empty when it does not exist): one dump.
///
/// Equivalent to: `nft list counters table inet edge_state`.
pub fn read_counters(sock: &Socket) -> Result<BTreeMap<String, Counter>, ObserveError> {
    let mut c = Consistency {
        res_id: 0,
        ok: true,
    };
    Ok(read_counters_of(sock, STATE_TABLE, &mut c)?)
}

/// A base chain of any table, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    /// Family (`ip`, `ip6`, `inet`, `bridge`, `netdev`, `arp`).
    pub family: String,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub name: String,
    /// Chain type (`filter`, `nat`, `route`).
    pub kind: String,
    /// Hook.
    pub hook: String,
    /// Priority.
    pub prio: i64,
    /// Policy (`accept`/`drop`).
    pub policy: String,
}

fn family_name(f: u8) -> &'static str {
    match f {
        uapi::NFPROTO_INET => "inet",
        uapi::NFPROTO_IPV4 => "ip",
        uapi::NFPROTO_IPV6 => "ip6",
        uapi::NFPROTO_ARP => "arp",
        uapi::NFPROTO_BRIDGE => "bridge",
        uapi::NFPROTO_NETDEV => "netdev",
        _ => "unknown",
    }
}

/// Every base chain of every table (declarations only, no rules).
///
/// Equivalent to: `nft list chains`.
pub fn base_chains(sock: &Socket) -> Result<Vec<BaseChain>, ObserveError> {
    let mut out = Vec::new();
    sock.dump(
        libc::NFT_MSG_GETCHAIN,
        uapi::NFPROTO_UNSPEC,
        &Attrs::new(),
        |m| {
            if let Some((table, chain)) = codec::chain(m)
                && let Some(b) = &chain.base
            {
                let hook = if m.family() == uapi::NFPROTO_NETDEV {
                    if b.hook == 0 { "ingress" } else { "egress" }
                } else {
                    b.hook_name()
                };
                out.push(BaseChain {
                    family: family_name(m.family()).to_owned(),
                    table,
                    name: chain.name.clone(),
                    kind: b.kind.clone(),
                    hook: hook.to_owned(),
                    prio: i64::from(b.priority),
                    policy: b.policy_name().to_owned(),
                });
            }
        },
    )?;
    Ok(out)
}

/// The other tables' base chains and the bridge-netfilter setting, explained
/// ([`crate::plan::doctor`]).
pub fn doctor(sock: &Socket) -> Result<Vec<String>, ObserveError> {
    let chains = base_chains(sock)?;
    let brnf = br_netfilter_loaded()
        .then(|| sysctl("/proc/sys/net/bridge/bridge-nf-call-iptables").as_deref() == Some("1"));
    Ok(crate::plan::doctor(&chains, brnf))
}

/// Addresses of every interface (link-local ones left out), read once per build.
///
/// Equivalent to: `ip addr show`.
pub fn interface_addresses() -> Result<BTreeMap<String, Vec<IpAddr>>, ObserveError> {
    Ok(Rt::open()?.addresses()?)
}

/// True when the `br_netfilter` module is loaded (bridged frames then cross the inet hooks).
pub fn br_netfilter_loaded() -> bool {
    std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists()
}

/// Reads a sysctl file, if present.
pub fn sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}
