//! The read-back's comparison: what differs between the wanted ruleset and the live
//! tables, as [`Change`]s an apply acts on and lines a person reads.

use super::{BaseChain, Elem, Live, Rule, Ruleset, SetSpec, Table};

/// How an object differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// Wanted, not live.
    Missing,
    /// Live, not wanted.
    Extra,
    /// Both, declared differently (what differs, live → wanted).
    Differs(String),
}

impl Presence {
    /// A chain's or set's difference as a line: `+` missing, `-` not ours, `~` differs.
    fn line(&self, what: &str, table: &str, name: &str) -> String {
        match self {
            Presence::Missing => format!("+ {what} inet {table} {name} (missing)"),
            Presence::Extra => format!("- {what} inet {table} {name} (not ours)"),
            Presence::Differs(d) => format!("~ {what} inet {table} {name}: {d}"),
        }
    }
}

/// One difference between the wanted ruleset and the live tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A whole table is missing.
    TableMissing {
        /// The table.
        table: String,
    },
    /// A chain's existence or declaration.
    Chain {
        /// The table.
        table: String,
        /// The chain.
        chain: String,
        /// How.
        how: Presence,
    },
    /// A chain's rules (both sides in full, so a reader sees where they part).
    Rules {
        /// The table.
        table: String,
        /// The chain.
        chain: String,
        /// Wanted rules.
        want: Vec<Rule>,
        /// Live rules.
        have: Vec<Rule>,
    },
    /// A set's existence or declaration.
    Set {
        /// The table.
        table: String,
        /// The set.
        set: String,
        /// How.
        how: Presence,
    },
    /// Elements of a set that exists on both sides with a fitting declaration.
    Elements {
        /// The table.
        table: String,
        /// The set.
        set: String,
        /// The set's declaration (to render the elements).
        spec: SetSpec,
        /// Wanted, not live.
        added: Vec<Elem>,
        /// Live, not wanted.
        removed: Vec<Elem>,
    },
    /// A counter object.
    Counter {
        /// The table.
        table: String,
        /// The counter.
        name: String,
        /// Missing or extra.
        how: Presence,
    },
}

impl Change {
    /// True for changes an element-only update can make (set elements, counter objects):
    /// no table, chain, rule or set declaration changes.
    pub fn element_only(&self) -> bool {
        matches!(self, Change::Elements { .. } | Change::Counter { .. })
    }

    /// The change as lines for a person: `-` live, `+` wanted.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Change::TableMissing { table } => vec![format!("+ table inet {table} (missing)")],
            Change::Chain { table, chain, how } => vec![how.line("chain", table, chain)],
            Change::Rules {
                table,
                chain,
                want,
                have,
            } => {
                let mut v = vec![format!("~ rules of chain inet {table} {chain}:")];
                let n = want.len().max(have.len());
                for i in 0..n {
                    match (have.get(i), want.get(i)) {
                        (Some(h), Some(w)) if h == w => {}
                        (h, w) => {
                            if let Some(h) = h {
                                v.push(format!("-   #{i} {h}"));
                            }
                            if let Some(w) = w {
                                v.push(format!("+   #{i} {w}"));
                            }
                        }
                    }
                }
                v
            }
            Change::Set { table, set, how } => vec![how.line("set", table, set)],
            Change::Elements {
                table,
                set,
                spec,
                added,
                removed,
            } => removed
                .iter()
                .map(|e| format!("- element of inet {table} {set}: {}", e.render(spec)))
                .chain(
                    added
                        .iter()
                        .map(|e| format!("+ element of inet {table} {set}: {}", e.render(spec))),
                )
                .collect(),
            Change::Counter { table, name, how } => vec![match how {
                Presence::Missing => format!("+ counter inet {table} {name}"),
                _ => format!("- counter inet {table} {name}"),
            }],
        }
    }
}

/// Elements of `want` not in `have` and of `have` not in `want` (both sorted).
pub(super) fn element_diff(want: &[Elem], have: &[Elem]) -> (Vec<Elem>, Vec<Elem>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < want.len() || j < have.len() {
        match (want.get(i), have.get(j)) {
            (Some(w), Some(h)) if w == h => {
                i += 1;
                j += 1;
            }
            (Some(w), Some(h)) if w < h => {
                added.push(w.clone());
                i += 1;
            }
            (Some(_), Some(h)) => {
                removed.push(h.clone());
                j += 1;
            }
            (Some(w), None) => {
                added.push(w.clone());
                i += 1;
            }
            (None, Some(h)) => {
                removed.push(h.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    (added, removed)
}

/// Differences between a wanted table and its live copy (`None`: missing). Counter values
/// are not compared; a set whose declared size holds the wanted elements fits.
pub fn diff_table(want: &Table, have: Option<&Table>) -> Vec<Change> {
    let Some(have) = have else {
        return vec![Change::TableMissing {
            table: want.name.clone(),
        }];
    };
    let t = &want.name;
    let mut out = Vec::new();
    for w in &want.chains {
        match have.chain(&w.name) {
            None => out.push(Change::Chain {
                table: t.clone(),
                chain: w.name.clone(),
                how: Presence::Missing,
            }),
            Some(h) => {
                if h.base != w.base {
                    let show = |b: &Option<BaseChain>| {
                        b.as_ref()
                            .map(|b| b.to_string())
                            .unwrap_or_else(|| "regular".to_owned())
                    };
                    out.push(Change::Chain {
                        table: t.clone(),
                        chain: w.name.clone(),
                        how: Presence::Differs(format!("{} → {}", show(&h.base), show(&w.base))),
                    });
                }
                if h.rules != w.rules {
                    out.push(Change::Rules {
                        table: t.clone(),
                        chain: w.name.clone(),
                        want: w.rules.clone(),
                        have: h.rules.clone(),
                    });
                }
            }
        }
    }
    for h in have.chains.iter().filter(|h| want.chain(&h.name).is_none()) {
        out.push(Change::Chain {
            table: t.clone(),
            chain: h.name.clone(),
            how: Presence::Extra,
        });
    }
    for w in &want.sets {
        match have.set(&w.name) {
            None => out.push(Change::Set {
                table: t.clone(),
                set: w.name.clone(),
                how: Presence::Missing,
            }),
            Some(h) if !w.spec.fits(&h.spec, w.elements.len()) => out.push(Change::Set {
                table: t.clone(),
                set: w.name.clone(),
                how: Presence::Differs(format!("{} → {}", h.spec, w.spec)),
            }),
            Some(h) => {
                let (added, removed) = element_diff(&w.elements, &h.elements);
                if !added.is_empty() || !removed.is_empty() {
                    out.push(Change::Elements {
                        table: t.clone(),
                        set: w.name.clone(),
                        spec: w.spec.clone(),
                        added,
                        removed,
                    });
                }
            }
        }
    }
    for h in have.sets.iter().filter(|h| want.set(&h.name).is_none()) {
        out.push(Change::Set {
            table: t.clone(),
            set: h.name.clone(),
            how: Presence::Extra,
        });
    }
    // Counters wanted and not live, then live and not wanted.
    for (from, other, how) in [
        (&want.counters, &have.counters, Presence::Missing),
        (&have.counters, &want.counters, Presence::Extra),
    ] {
        for name in from.keys().filter(|n| !other.contains_key(*n)) {
            out.push(Change::Counter {
                table: t.clone(),
                name: name.clone(),
                how: how.clone(),
            });
        }
    }
    out
}

/// Differences between the wanted ruleset and the live tables; empty when converged.
pub fn diff(want: &Ruleset, live: &Live) -> Vec<Change> {
    let mut v = diff_table(&want.edge, live.edge.as_ref());
    v.extend(diff_table(&want.state, live.state.as_ref()));
    v
}

/// The changes as lines for a person.
pub fn lines(changes: &[Change]) -> Vec<String> {
    changes.iter().flat_map(Change::lines).collect()
}
