//! Pure: `(desired record, accepted address, records Cloudflare holds) -> change`.
//!
//! The rules, in order:
//! - no accepted address for the family: change nothing;
//! - an owned record (exact ownership comment) holding the address: nothing;
//! - an owned record holding another address: PATCH `content` only (PUT would wipe comments
//!   and tags, and proxied/TTL set by hand are the user's to keep);
//! - several owned records: duplicates are reported, never multiplied; one is patched only
//!   when none holds the address;
//! - only unowned records: untouched, unless `adopt`, then PATCH `comment` (and `content` when
//!   it differs) to take ownership;
//! - nothing at all: POST a new record with the configured proxied/TTL and our comment.
//!
//! Before any of that, [`read_decision`] says whether the record must be read from the API
//! at all: a record the API confirmed recently to hold the address is not read again, and a
//! record whose creation Cloudflare refused as a duplicate is left alone for an hour.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::model::{Desired, Observed, RecordKey};

/// How long a record whose creation Cloudflare refused as a duplicate (81053/81057/81058) is
/// left alone (the conflict is the user's to resolve; retrying sooner would only repeat the
/// refusal).
pub const CONFLICT_BACKOFF_SECS: u64 = 3600;

/// Whether a run must read a record from the API before planning it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadDecision {
    /// Read it and plan.
    Read,
    /// The API confirmed it holds the address within `verify_interval`: no API call.
    Fresh,
    /// Its creation was refused as a duplicate; not retried before this Unix time.
    BackingOff {
        /// End of the pause.
        until: u64,
    },
}

/// What the state knows of a record: the address the API last confirmed and when.
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// The address it held.
    pub content: &'a str,
    /// Unix time of the confirmation.
    pub verified_at: u64,
}

/// Decides whether to read a record for address `ip` at `now`. `force_read` (a plan, or a
/// sync right after this host became the master) reads whatever the state says.
pub fn read_decision(
    known: Option<Known<'_>>,
    ip: IpAddr,
    now: u64,
    verify_interval_secs: u64,
    conflict_until: Option<u64>,
    force_read: bool,
) -> ReadDecision {
    if force_read {
        return ReadDecision::Read;
    }
    let fresh = known.is_some_and(|k| {
        k.content.parse::<IpAddr>().is_ok_and(|c| c == ip)
            && now.saturating_sub(k.verified_at) < verify_interval_secs
    });
    if fresh {
        return ReadDecision::Fresh;
    }
    match conflict_until {
        Some(until) if until > now => ReadDecision::BackingOff { until },
        _ => ReadDecision::Read,
    }
}

/// The body of a record creation (`POST /zones/{zone}/dns_records`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewRecord {
    /// `A` or `AAAA`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Fully qualified name.
    pub name: String,
    /// The address.
    pub content: String,
    /// TTL (1 = automatic).
    pub ttl: u32,
    /// Proxied through Cloudflare.
    pub proxied: bool,
    /// The ownership comment.
    pub comment: String,
}

/// The body of a partial update (`PATCH /zones/{zone}/dns_records/{id}`): only the fields
/// that change are serialised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct RecordPatch {
    /// New content, when it changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// New comment, when adopting a record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// What a sync does to one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create the record.
    Create {
        /// The body.
        record: NewRecord,
    },
    /// Change some fields of an existing record.
    Patch {
        /// Record id.
        id: String,
        /// Content before the change.
        from: String,
        /// The fields sent.
        patch: RecordPatch,
    },
    /// Leave it alone.
    Keep {
        /// Why.
        reason: KeepReason,
    },
}

/// Why a record is left alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum KeepReason {
    /// It already holds the address.
    InSync {
        /// Record id.
        id: String,
    },
    /// Detection gave no address for the family.
    NoAddress,
    /// Records with this name and type exist but carry no ownership comment.
    Unowned {
        /// Their ids.
        ids: Vec<String>,
    },
}

/// Something the operator should know about a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "note", rename_all = "snake_case")]
pub enum Note {
    /// Several owned records share the name and type.
    Duplicates {
        /// Their ids.
        ids: Vec<String>,
    },
    /// The owned record's proxied/TTL differ from the configuration (kept: edge only writes
    /// content after creation).
    AttributesDiffer {
        /// Proxied on Cloudflare.
        proxied: bool,
        /// TTL on Cloudflare.
        ttl: u32,
    },
}

/// The plan of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordPlan {
    /// Which record.
    pub key: RecordKey,
    /// What to do.
    #[serde(flatten)]
    pub action: Action,
    /// Things worth telling.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

impl RecordPlan {
    /// True when the plan writes to Cloudflare.
    pub fn is_write(&self) -> bool {
        !matches!(self.action, Action::Keep { .. })
    }
}

/// Plans one record. `observed` is the listing for its name and type; other names and types
/// in it are ignored.
pub fn plan(
    desired: &Desired,
    address: Option<IpAddr>,
    observed: &[Observed],
    owner_comment: &str,
) -> RecordPlan {
    let key = desired.key();
    let mut notes = Vec::new();
    let keep = |reason| Action::Keep { reason };
    let Some(ip) = address else {
        return RecordPlan {
            key,
            action: keep(KeepReason::NoAddress),
            notes,
        };
    };
    let mut same: Vec<&Observed> = observed
        .iter()
        .filter(|o| {
            o.name
                .trim_end_matches('.')
                .eq_ignore_ascii_case(&desired.name)
                && o.kind == desired.kind.as_str()
        })
        .collect();
    // A stable choice among duplicates, whatever order the API listed them in.
    same.sort_by(|a, b| a.id.cmp(&b.id));
    let (owned, unowned): (Vec<&Observed>, Vec<&Observed>) =
        same.into_iter().partition(|o| o.is_owned(owner_comment));
    if owned.len() > 1 {
        notes.push(Note::Duplicates {
            ids: owned.iter().map(|o| o.id.clone()).collect(),
        });
    }
    let action = if let Some(holder) = owned.iter().find(|o| o.holds(ip)) {
        note_attributes(desired, holder, &mut notes);
        keep(KeepReason::InSync {
            id: holder.id.clone(),
        })
    } else if let Some(first) = owned.first() {
        note_attributes(desired, first, &mut notes);
        Action::Patch {
            id: first.id.clone(),
            from: first.content.clone(),
            patch: RecordPatch {
                content: Some(ip.to_string()),
                comment: None,
            },
        }
    } else if let Some(first) = unowned.first() {
        if desired.adopt {
            Action::Patch {
                id: first.id.clone(),
                from: first.content.clone(),
                patch: RecordPatch {
                    content: (!first.holds(ip)).then(|| ip.to_string()),
                    comment: Some(owner_comment.to_owned()),
                },
            }
        } else {
            keep(KeepReason::Unowned {
                ids: unowned.iter().map(|o| o.id.clone()).collect(),
            })
        }
    } else {
        Action::Create {
            record: NewRecord {
                kind: desired.kind.as_str().to_owned(),
                name: desired.name.clone(),
                content: ip.to_string(),
                ttl: desired.ttl,
                proxied: desired.proxied,
                comment: owner_comment.to_owned(),
            },
        }
    };
    RecordPlan { key, action, notes }
}

fn note_attributes(desired: &Desired, o: &Observed, notes: &mut Vec<Note>) {
    let ttl_differs = !o.proxied && !desired.proxied && o.ttl != desired.ttl;
    if o.proxied != desired.proxied || ttl_differs {
        notes.push(Note::AttributesDiffer {
            proxied: o.proxied,
            ttl: o.ttl,
        });
    }
}

impl fmt::Display for RecordPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.action {
            Action::Create { record } => write!(
                f,
                "+ {}: create -> {} (proxied={}, ttl={})",
                self.key,
                record.content,
                record.proxied,
                if record.ttl == 1 {
                    "auto".to_owned()
                } else {
                    record.ttl.to_string()
                }
            )?,
            Action::Patch { id, from, patch } => {
                write!(f, "~ {} [{id}]:", self.key)?;
                if let Some(c) = &patch.content {
                    write!(f, " content {from} -> {c}")?;
                }
                if patch.comment.is_some() {
                    write!(f, " adopt (set ownership comment)")?;
                }
            }
            Action::Keep { reason } => match reason {
                KeepReason::InSync { id } => write!(f, "= {} [{id}]: in sync", self.key)?,
                KeepReason::NoAddress => {
                    write!(
                        f,
                        "! {}: unchanged, no agreed address for its family",
                        self.key
                    )?;
                }
                KeepReason::Unowned { ids } => write!(
                    f,
                    "! {}: unchanged, {} existing record(s) without the ownership comment ({}); set adopt = true to take over",
                    self.key,
                    ids.len(),
                    ids.join(", ")
                )?,
            },
        }
        for n in &self.notes {
            match n {
                Note::Duplicates { ids } => write!(
                    f,
                    "\n    warning: {} owned duplicates ({}): delete all but one in the dashboard",
                    ids.len(),
                    ids.join(", ")
                )?,
                Note::AttributesDiffer { proxied, ttl } => write!(
                    f,
                    "\n    note: Cloudflare has proxied={proxied} ttl={ttl}, unlike the configuration; edge keeps them (only content is updated)"
                )?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_config::ddns::RecordType;
    use proptest::prelude::*;

    const OWNER: &str = "managed by edge";

    fn desired(adopt: bool) -> Desired {
        Desired {
            name: "example.com".into(),
            kind: RecordType::A,
            proxied: true,
            ttl: 1,
            adopt,
        }
    }

    fn rec(id: &str, content: &str, comment: Option<&str>) -> Observed {
        Observed {
            id: id.into(),
            name: "Example.COM".into(),
            kind: "A".into(),
            content: content.into(),
            proxied: true,
            ttl: 1,
            comment: comment.map(Into::into),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn nothing_observed_creates_with_comment_and_auto_ttl() {
        let p = plan(&desired(false), ip("81.2.69.160"), &[], OWNER);
        let Action::Create { record } = &p.action else {
            panic!("{p:?}")
        };
        assert_eq!(
            serde_json::to_value(record).unwrap(),
            serde_json::json!({"type":"A","name":"example.com","content":"81.2.69.160","ttl":1,"proxied":true,"comment":OWNER})
        );
    }

    #[test]
    fn owned_with_other_content_is_patched_with_content_only() {
        let p = plan(
            &desired(false),
            ip("81.2.69.161"),
            &[rec("r1", "81.2.69.160", Some(OWNER))],
            OWNER,
        );
        let Action::Patch { id, patch, .. } = &p.action else {
            panic!("{p:?}")
        };
        assert_eq!(id, "r1");
        assert_eq!(
            serde_json::to_string(patch).unwrap(),
            r#"{"content":"81.2.69.161"}"#
        );
    }

    #[test]
    fn owned_in_sync_is_kept_and_names_compare_without_case() {
        let p = plan(
            &desired(false),
            ip("81.2.69.160"),
            &[rec("r1", "81.2.69.160", Some(OWNER))],
            OWNER,
        );
        assert!(!p.is_write(), "{p}");
    }

    #[test]
    fn unowned_is_untouched_unless_adopt() {
        let obs = [rec("u1", "81.2.69.160", None)];
        let p = plan(&desired(false), ip("81.2.69.161"), &obs, OWNER);
        assert_eq!(
            p.action,
            Action::Keep {
                reason: KeepReason::Unowned {
                    ids: vec!["u1".into()]
                }
            }
        );
        assert!(p.to_string().contains("adopt = true"), "{p}");
        let p = plan(&desired(true), ip("81.2.69.161"), &obs, OWNER);
        let Action::Patch { patch, .. } = &p.action else {
            panic!("{p:?}")
        };
        assert_eq!(
            serde_json::to_string(patch).unwrap(),
            r#"{"content":"81.2.69.161","comment":"managed by edge"}"#
        );
        // Adopting a record that already holds the address sets only the comment.
        let p = plan(&desired(true), ip("81.2.69.160"), &obs, OWNER);
        let Action::Patch { patch, .. } = &p.action else {
            panic!("{p:?}")
        };
        assert_eq!(
            serde_json::to_string(patch).unwrap(),
            r#"{"comment":"managed by edge"}"#
        );
    }

    #[test]
    fn no_address_changes_nothing_even_when_records_are_stale() {
        let p = plan(
            &desired(true),
            None,
            &[rec("r1", "81.2.69.160", Some(OWNER))],
            OWNER,
        );
        assert_eq!(
            p.action,
            Action::Keep {
                reason: KeepReason::NoAddress
            }
        );
    }

    #[test]
    fn duplicates_are_reported_and_not_multiplied() {
        let obs = [
            rec("r2", "81.2.69.160", Some(OWNER)),
            rec("r1", "81.2.69.150", Some(OWNER)),
        ];
        let p = plan(&desired(false), ip("81.2.69.160"), &obs, OWNER);
        assert!(!p.is_write());
        assert!(p.to_string().contains("2 owned duplicates (r1, r2)"), "{p}");
        let p = plan(&desired(false), ip("81.2.69.170"), &obs, OWNER);
        let Action::Patch { id, .. } = &p.action else {
            panic!("{p:?}")
        };
        assert_eq!(id, "r1", "the lowest id is patched, deterministically");
    }

    #[test]
    fn other_types_and_names_are_ignored() {
        let mut aaaa = rec("x", "2a01:4f8::1", Some(OWNER));
        aaaa.kind = "AAAA".into();
        let mut www = rec("y", "81.2.69.160", Some(OWNER));
        www.name = "www.example.com".into();
        let p = plan(&desired(false), ip("81.2.69.160"), &[aaaa, www], OWNER);
        assert!(matches!(p.action, Action::Create { .. }), "{p:?}");
    }

    /// Applies a plan the way Cloudflare would.
    fn apply(obs: &mut Vec<Observed>, p: &RecordPlan) {
        match &p.action {
            Action::Create { record } => obs.push(Observed {
                id: format!("new{}", obs.len()),
                name: record.name.clone(),
                kind: record.kind.clone(),
                content: record.content.clone(),
                proxied: record.proxied,
                ttl: record.ttl,
                comment: Some(record.comment.clone()),
            }),
            Action::Patch { id, patch, .. } => {
                let o = obs.iter_mut().find(|o| &o.id == id).unwrap();
                if let Some(c) = &patch.content {
                    o.content = c.clone();
                }
                if let Some(c) = &patch.comment {
                    o.comment = Some(c.clone());
                }
            }
            Action::Keep { .. } => {}
        }
    }

    fn arb_observed() -> impl Strategy<Value = Observed> {
        (
            0u8..4,
            prop_oneof![Just("81.2.69.160"), Just("81.2.69.161"), Just("bogus")],
            prop_oneof![Just(None), Just(Some(OWNER)), Just(Some("other"))],
            prop_oneof![Just("A"), Just("AAAA")],
        )
            .prop_map(|(id, content, comment, kind)| Observed {
                id: format!("id{id}"),
                name: "example.com".into(),
                kind: kind.into(),
                content: content.into(),
                proxied: false,
                ttl: 300,
                comment: comment.map(Into::into),
            })
    }

    proptest! {
        /// plan(apply(plan(observed))) writes nothing: one sync converges.
        #[test]
        fn one_sync_converges(
            mut obs in proptest::collection::vec(arb_observed(), 0..4),
            adopt in any::<bool>(),
            addr in prop_oneof![Just("81.2.69.160"), Just("81.2.69.161")],
        ) {
            // Ids are unique in a zone.
            obs.sort_by(|a, b| a.id.cmp(&b.id));
            obs.dedup_by(|a, b| a.id == b.id);
            let d = desired(adopt);
            let first = plan(&d, ip(addr), &obs, OWNER);
            apply(&mut obs, &first);
            let second = plan(&d, ip(addr), &obs, OWNER);
            prop_assert!(!second.is_write(), "first {first:?} then {second:?}");
            // Unowned records are never changed unless adopting.
            if !adopt && let Action::Patch { id, .. } = &first.action {
                let o = obs.iter().find(|o| &o.id == id).unwrap();
                prop_assert!(o.is_owned(OWNER));
            }
        }
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;

    const IP: &str = "81.0.0.2";

    fn ip() -> IpAddr {
        IP.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn known(content: &str, verified_at: u64) -> Option<Known<'_>> {
        Some(Known {
            content,
            verified_at,
        })
    }

    #[test]
    fn a_record_confirmed_within_the_interval_is_not_read() {
        assert_eq!(
            read_decision(known(IP, 1_000), ip(), 1_500, 3_600, None, false),
            ReadDecision::Fresh
        );
        // At the interval's end, or for another address, or never confirmed: read.
        assert_eq!(
            read_decision(known(IP, 1_000), ip(), 4_600, 3_600, None, false),
            ReadDecision::Read
        );
        assert_eq!(
            read_decision(known("81.0.0.3", 1_000), ip(), 1_500, 3_600, None, false),
            ReadDecision::Read
        );
        assert_eq!(
            read_decision(None, ip(), 1_500, 3_600, None, false),
            ReadDecision::Read
        );
    }

    #[test]
    fn a_refused_creation_backs_off_until_its_pause_ends() {
        assert_eq!(
            read_decision(
                None,
                ip(),
                1_000,
                3_600,
                Some(1_000 + CONFLICT_BACKOFF_SECS),
                false
            ),
            ReadDecision::BackingOff {
                until: 1_000 + CONFLICT_BACKOFF_SECS
            }
        );
        assert_eq!(
            read_decision(None, ip(), 4_600, 3_600, Some(4_600), false),
            ReadDecision::Read
        );
    }

    #[test]
    fn forcing_reads_whatever_the_state_says() {
        assert_eq!(
            read_decision(known(IP, 1_000), ip(), 1_001, 3_600, Some(9_999), true),
            ReadDecision::Read
        );
    }
}
