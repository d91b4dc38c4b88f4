//! Pure: the events the daemons send and the versioned JSON document that carries one
//! (docs/notify.md describes it field by field; `docs/notify-event.schema.json` is its JSON
//! Schema).
//!
//! ```json
//! {"version": 1, "id": "3f1c…", "kind": "ddns.record_changed", "severity": "info",
//!  "time": "2026-05-04T10:11:12Z", "host": "proliant", "source": "edge-ddns",
//!  "summary": "A example.com changed from 81.0.0.2 to 81.0.0.3",
//!  "data": {"record": "example.com", "type": "A", "old": "81.0.0.2", "new": "81.0.0.3"}}
//! ```
//!
//! Within one `version`, fields are only ever added; a field is never removed or given
//! another meaning without a new version.

use std::fmt;

use serde::ser::SerializeStruct as _;
use serde::{Deserialize, Serialize, Serializer};

/// Version of the JSON document; bumped on an incompatible change.
pub const FORMAT_VERSION: u32 = 1;

/// Longest free-text field (errors, reasons) carried in an event, in characters: an event
/// stays small whatever a daemon's error says.
pub const MAX_TEXT: usize = 1000;

/// How bad an event is (ntfy maps it to a priority).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing is wrong (an address changed, something recovered).
    Info,
    /// Something needs a look (a rollback, a stale WireGuard peer).
    Warning,
    /// Something is broken (updates failing, a NIC down).
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// Why DDNS syncs fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureCause {
    /// The detection sources did not agree on an address (nothing was written).
    Quorum,
    /// An address was agreed on, but the Cloudflare update failed.
    Update,
}

/// Times inside `data` are RFC 3339 strings in UTC, like the document's `time`.
mod rfc3339 {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn format(unix: u64) -> String {
        i64::try_from(unix)
            .ok()
            .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    }

    pub fn parse(s: &str) -> Option<u64> {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .and_then(|t| u64::try_from(t.timestamp()).ok())
    }

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not an RFC 3339 time")))
    }

    pub mod opt {
        use serde::{Deserialize as _, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(t) => s.serialize_str(&super::format(*t)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            match Option::<String>::deserialize(d)? {
                None => Ok(None),
                Some(s) => super::parse(&s).map(Some).ok_or_else(|| {
                    serde::de::Error::custom(format!("`{s}` is not an RFC 3339 time"))
                }),
            }
        }
    }
}

/// One event. The variant is the document's `kind`, its fields are `data`.
///
/// Each daemon sends its own: edge-ddns the `ddns.*` kinds, edge-fw `fw.*`, edge-wg `wg.*`,
/// edge-link `link.*`; `edgectl notify test` sends `test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data")]
pub enum Event {
    /// A DNS record now holds another address (or was created).
    #[serde(rename = "ddns.record_changed")]
    DdnsRecordChanged {
        /// Record name (`example.com`).
        record: String,
        /// `A` or `AAAA`.
        #[serde(rename = "type")]
        record_type: String,
        /// The address before the change; `null` when the record was created.
        old: Option<String>,
        /// The address it holds now.
        new: String,
    },
    /// DDNS syncs failed `failed_runs` times in a row (`notify.ddns_failing_after`).
    #[serde(rename = "ddns.sync_failing")]
    DdnsSyncFailing {
        /// Consecutive failed syncs so far.
        failed_runs: u32,
        /// What failed in the last one.
        cause: FailureCause,
        /// What the last failed sync said.
        error: String,
    },
    /// A sync succeeded after a `ddns.sync_failing`.
    #[serde(rename = "ddns.sync_recovered")]
    DdnsSyncRecovered {
        /// How many syncs had failed in a row.
        failed_runs: u32,
    },
    /// A ruleset could not be applied; the previous one stays in force.
    #[serde(rename = "fw.apply_failed")]
    FwApplyFailed {
        /// Why.
        error: String,
    },
    /// A self-confirming apply was rolled back to the previous ruleset.
    #[serde(rename = "fw.rolled_back")]
    FwRolledBack {
        /// Why (a probe failed, nobody confirmed in time).
        reason: String,
    },
    /// Someone else changed the firewall's table and edge-fw put it back.
    #[serde(rename = "fw.drift_repaired")]
    FwDriftRepaired {
        /// Who changed it (`nft[1234]`), when known.
        by: Option<String>,
        /// What was repaired.
        detail: String,
    },
    /// A WireGuard peer has had no handshake for longer than `threshold_secs`.
    #[serde(rename = "wg.handshake_stale")]
    WgHandshakeStale {
        /// Peer name from `[[wg.peer]]`.
        peer: String,
        /// The last handshake (Unix seconds; RFC 3339 in JSON), `null` if never.
        #[serde(with = "rfc3339::opt")]
        last_handshake: Option<u64>,
        /// The threshold it crossed, in seconds.
        threshold_secs: u64,
    },
    /// A WireGuard peer's access expired and it was removed.
    #[serde(rename = "wg.peer_expired")]
    WgPeerExpired {
        /// Peer name from `[[wg.peer]]`.
        peer: String,
        /// When it expired (Unix seconds; RFC 3339 in JSON).
        #[serde(with = "rfc3339")]
        expired_at: u64,
    },
    /// A bridge port (NIC) has had no carrier for `notify.link_down_after`.
    #[serde(rename = "link.down")]
    LinkDown {
        /// The NIC.
        interface: String,
        /// Its bridge.
        bridge: Option<String>,
    },
    /// A NIC reported by `link.down` has carrier again.
    #[serde(rename = "link.up")]
    LinkUp {
        /// The NIC.
        interface: String,
        /// Its bridge.
        bridge: Option<String>,
    },
    /// A configured bridge port (NIC) has not existed for `notify.link_down_after`.
    #[serde(rename = "link.nic_missing")]
    LinkNicMissing {
        /// The NIC.
        interface: String,
        /// Its bridge.
        bridge: Option<String>,
    },
    /// A NIC reported by `link.nic_missing` exists again.
    #[serde(rename = "link.nic_present")]
    LinkNicPresent {
        /// The NIC.
        interface: String,
        /// Its bridge.
        bridge: Option<String>,
    },
    /// `edgectl notify test`: reaches every target whatever its `events`.
    #[serde(rename = "test")]
    Test {
        /// A line for humans.
        message: String,
    },
}

fn bounded(s: &mut String) {
    if let Some((i, _)) = s.char_indices().nth(MAX_TEXT) {
        s.truncate(i);
        s.push('…');
    }
}

fn bridge_suffix(bridge: &Option<String>) -> String {
    bridge
        .as_deref()
        .map(|b| format!(" (port of {b})"))
        .unwrap_or_default()
}

impl Event {
    /// The document's `kind` (`ddns.record_changed`, ...); the names `events` filters use.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::DdnsRecordChanged { .. } => "ddns.record_changed",
            Event::DdnsSyncFailing { .. } => "ddns.sync_failing",
            Event::DdnsSyncRecovered { .. } => "ddns.sync_recovered",
            Event::FwApplyFailed { .. } => "fw.apply_failed",
            Event::FwRolledBack { .. } => "fw.rolled_back",
            Event::FwDriftRepaired { .. } => "fw.drift_repaired",
            Event::WgHandshakeStale { .. } => "wg.handshake_stale",
            Event::WgPeerExpired { .. } => "wg.peer_expired",
            Event::LinkDown { .. } => "link.down",
            Event::LinkUp { .. } => "link.up",
            Event::LinkNicMissing { .. } => "link.nic_missing",
            Event::LinkNicPresent { .. } => "link.nic_present",
            Event::Test { .. } => "test",
        }
    }

    /// How bad it is.
    pub fn severity(&self) -> Severity {
        match self {
            Event::DdnsRecordChanged { .. }
            | Event::DdnsSyncRecovered { .. }
            | Event::WgPeerExpired { .. }
            | Event::LinkUp { .. }
            | Event::LinkNicPresent { .. }
            | Event::Test { .. } => Severity::Info,
            Event::FwRolledBack { .. }
            | Event::FwDriftRepaired { .. }
            | Event::WgHandshakeStale { .. } => Severity::Warning,
            Event::DdnsSyncFailing { .. }
            | Event::FwApplyFailed { .. }
            | Event::LinkDown { .. }
            | Event::LinkNicMissing { .. } => Severity::Error,
        }
    }

    /// A short title (ntfy's title line).
    pub fn title(&self) -> &'static str {
        match self {
            Event::DdnsRecordChanged { .. } => "DNS record changed",
            Event::DdnsSyncFailing { .. } => "DDNS updates failing",
            Event::DdnsSyncRecovered { .. } => "DDNS updates recovered",
            Event::FwApplyFailed { .. } => "Firewall apply failed",
            Event::FwRolledBack { .. } => "Firewall rolled back",
            Event::FwDriftRepaired { .. } => "Firewall drift repaired",
            Event::WgHandshakeStale { .. } => "WireGuard peer silent",
            Event::WgPeerExpired { .. } => "WireGuard peer expired",
            Event::LinkDown { .. } => "Link down",
            Event::LinkUp { .. } => "Link up",
            Event::LinkNicMissing { .. } => "NIC missing",
            Event::LinkNicPresent { .. } => "NIC present",
            Event::Test { .. } => "Test notification",
        }
    }

    /// One sentence for humans (the document's `summary`, ntfy's message).
    pub fn summary(&self) -> String {
        match self {
            Event::DdnsRecordChanged {
                record,
                record_type,
                old: Some(old),
                new,
            } => format!("{record_type} {record} changed from {old} to {new}"),
            Event::DdnsRecordChanged {
                record,
                record_type,
                old: None,
                new,
            } => format!("{record_type} {record} created with {new}"),
            Event::DdnsSyncFailing {
                failed_runs,
                cause,
                error,
            } => {
                let what = match cause {
                    FailureCause::Quorum => "no public address agreed on",
                    FailureCause::Update => "Cloudflare update failed",
                };
                format!("DDNS sync failed {failed_runs} times in a row ({what}): {error}")
            }
            Event::DdnsSyncRecovered { failed_runs } => {
                format!("DDNS sync succeeded again after {failed_runs} failed run(s)")
            }
            Event::FwApplyFailed { error } => {
                format!("firewall apply failed, the previous ruleset stays: {error}")
            }
            Event::FwRolledBack { reason } => {
                format!("firewall rolled back to the previous ruleset: {reason}")
            }
            Event::FwDriftRepaired { by, detail } => match by {
                Some(by) => format!("firewall table changed by {by} was repaired: {detail}"),
                None => format!("firewall table changed by someone else was repaired: {detail}"),
            },
            Event::WgHandshakeStale {
                peer,
                last_handshake,
                threshold_secs,
            } => match last_handshake {
                Some(t) => format!(
                    "WireGuard peer {peer}: no handshake for over {threshold_secs} s (last {})",
                    rfc3339::format(*t)
                ),
                None => format!(
                    "WireGuard peer {peer}: no handshake in {threshold_secs} s (never had one)"
                ),
            },
            Event::WgPeerExpired { peer, expired_at } => format!(
                "WireGuard peer {peer} expired at {} and was removed",
                rfc3339::format(*expired_at)
            ),
            Event::LinkDown { interface, bridge } => {
                format!("{interface}{} has no carrier", bridge_suffix(bridge))
            }
            Event::LinkUp { interface, bridge } => {
                format!("{interface}{} has carrier again", bridge_suffix(bridge))
            }
            Event::LinkNicMissing { interface, bridge } => {
                format!("{interface}{} does not exist", bridge_suffix(bridge))
            }
            Event::LinkNicPresent { interface, bridge } => {
                format!("{interface}{} exists again", bridge_suffix(bridge))
            }
            Event::Test { message } => message.clone(),
        }
    }

    /// The event with every free-text field cut to [`MAX_TEXT`] characters.
    pub fn bounded(mut self) -> Event {
        match &mut self {
            Event::DdnsSyncFailing { error: s, .. }
            | Event::FwApplyFailed { error: s }
            | Event::FwRolledBack { reason: s }
            | Event::FwDriftRepaired { detail: s, .. }
            | Event::Test { message: s } => bounded(s),
            _ => {}
        }
        self
    }

    /// The document's `data`: the event's fields.
    pub fn data(&self) -> serde_json::Value {
        serde_json::to_value(self)
            .ok()
            .and_then(|mut v| v.get_mut("data").map(serde_json::Value::take))
            .unwrap_or(serde_json::Value::Null)
    }
}

/// The JSON document of one event: what a webhook receives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Envelope {
    /// [`FORMAT_VERSION`].
    pub version: u32,
    /// Unique per event; the same across retries of one event (receivers may deduplicate).
    pub id: String,
    /// How bad it is.
    pub severity: Severity,
    /// When the daemon sent it: RFC 3339, UTC, whole seconds.
    pub time: String,
    /// The host (`notify.host`, else the system's host name).
    pub host: String,
    /// The program that sent it (`edge-ddns`, ..., `edgectl`).
    pub source: String,
    /// One sentence for humans.
    pub summary: String,
    /// `kind` and `data`.
    #[serde(flatten)]
    pub event: Event,
}

impl Envelope {
    /// Wraps `event` (cut to size) with the fields every document has.
    pub fn new(event: Event, id: String, time: String, host: String, source: String) -> Self {
        let event = event.bounded();
        Envelope {
            version: FORMAT_VERSION,
            id,
            severity: event.severity(),
            summary: event.summary(),
            time,
            host,
            source,
            event,
        }
    }

    /// The document as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The `data` of an event as serde writes it: its fields in declaration order (a
/// `serde_json::Value` would sort them).
#[derive(Deserialize)]
struct DataOnly<'a> {
    #[serde(borrow)]
    data: &'a serde_json::value::RawValue,
}

/// Fields in the documented order: version, id, kind, severity, time, host, source, summary,
/// data.
impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let tagged = serde_json::to_string(&self.event).map_err(serde::ser::Error::custom)?;
        let data: DataOnly<'_> =
            serde_json::from_str(&tagged).map_err(serde::ser::Error::custom)?;
        let mut st = s.serialize_struct("Envelope", 9)?;
        st.serialize_field("version", &self.version)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("kind", self.event.kind())?;
        st.serialize_field("severity", &self.severity)?;
        st.serialize_field("time", &self.time)?;
        st.serialize_field("host", &self.host)?;
        st.serialize_field("source", &self.source)?;
        st.serialize_field("summary", &self.summary)?;
        st.serialize_field("data", data.data)?;
        st.end()
    }
}

/// One of every event kind, with plausible values (documentation, tests).
pub fn examples() -> Vec<Event> {
    vec![
        Event::DdnsRecordChanged {
            record: "example.com".into(),
            record_type: "A".into(),
            old: Some("81.0.0.2".into()),
            new: "81.0.0.3".into(),
        },
        Event::DdnsSyncFailing {
            failed_runs: 3,
            cause: FailureCause::Quorum,
            error: "ipv4: only 1 of 3 sources answered (quorum 2)".into(),
        },
        Event::DdnsSyncRecovered { failed_runs: 4 },
        Event::FwApplyFailed {
            error: "the kernel refused the batch: No such file or directory".into(),
        },
        Event::FwRolledBack {
            reason: "probe of the WireGuard port failed".into(),
        },
        Event::FwDriftRepaired {
            by: Some("nft[1234]".into()),
            detail: "table inet edge was deleted".into(),
        },
        Event::WgHandshakeStale {
            peer: "admin-laptop".into(),
            last_handshake: Some(1_777_000_000),
            threshold_secs: 900,
        },
        Event::WgPeerExpired {
            peer: "guest".into(),
            expired_at: 1_777_000_000,
        },
        Event::LinkDown {
            interface: "enp3s0f0".into(),
            bridge: Some("br-api".into()),
        },
        Event::LinkUp {
            interface: "enp3s0f0".into(),
            bridge: Some("br-api".into()),
        },
        Event::LinkNicMissing {
            interface: "enp4s0f0".into(),
            bridge: Some("br1".into()),
        },
        Event::LinkNicPresent {
            interface: "enp4s0f0".into(),
            bridge: Some("br1".into()),
        },
        Event::Test {
            message: "test notification from edgectl".into(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(e: Event) -> Envelope {
        Envelope::new(
            e,
            "0123456789abcdef0123456789abcdef".into(),
            "2026-05-04T10:11:12Z".into(),
            "proliant".into(),
            "edge-ddns".into(),
        )
    }

    #[test]
    fn every_kind_is_known_to_the_config_loader_and_back() {
        let kinds: Vec<&str> = examples().iter().map(Event::kind).collect();
        for k in edge_config::notify::EVENT_KINDS {
            assert!(kinds.contains(&k), "{k} has no Event variant");
        }
        for k in &kinds {
            assert!(
                *k == "test" || edge_config::notify::EVENT_KINDS.contains(k),
                "{k} is not in EVENT_KINDS: an `events` filter could not name it"
            );
        }
        assert_eq!(kinds.len(), edge_config::notify::EVENT_KINDS.len() + 1);
    }

    #[test]
    fn the_document_has_the_documented_fields_in_order() {
        let e = envelope(Event::DdnsRecordChanged {
            record: "example.com".into(),
            record_type: "A".into(),
            old: Some("81.0.0.2".into()),
            new: "81.0.0.3".into(),
        });
        let text = String::from_utf8(e.to_json()).unwrap();
        assert_eq!(
            text,
            r#"{"version":1,"id":"0123456789abcdef0123456789abcdef","kind":"ddns.record_changed","severity":"info","time":"2026-05-04T10:11:12Z","host":"proliant","source":"edge-ddns","summary":"A example.com changed from 81.0.0.2 to 81.0.0.3","data":{"record":"example.com","type":"A","old":"81.0.0.2","new":"81.0.0.3"}}"#
        );
    }

    #[test]
    fn every_example_round_trips_through_json() {
        for ev in examples() {
            let e = envelope(ev.clone());
            let back: Envelope = serde_json::from_slice(&e.to_json())
                .unwrap_or_else(|err| panic!("{}: {err}", ev.kind()));
            assert_eq!(back, e);
        }
    }

    #[test]
    fn times_in_data_are_rfc3339() {
        let e = envelope(Event::WgHandshakeStale {
            peer: "p".into(),
            last_handshake: Some(0),
            threshold_secs: 60,
        });
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["data"]["last_handshake"], "1970-01-01T00:00:00Z");
        let never = envelope(Event::WgHandshakeStale {
            peer: "p".into(),
            last_handshake: None,
            threshold_secs: 60,
        });
        let v: serde_json::Value = serde_json::from_slice(&never.to_json()).unwrap();
        assert!(v["data"]["last_handshake"].is_null());
    }

    #[test]
    fn long_errors_are_cut_and_created_records_have_no_old_address() {
        let e = envelope(Event::FwApplyFailed {
            error: "x".repeat(5000),
        });
        let Event::FwApplyFailed { error } = &e.event else {
            panic!("{e:?}");
        };
        assert_eq!(error.chars().count(), MAX_TEXT + 1);
        let c = Event::DdnsRecordChanged {
            record: "example.com".into(),
            record_type: "AAAA".into(),
            old: None,
            new: "2001:db8::1".into(),
        };
        assert_eq!(c.summary(), "AAAA example.com created with 2001:db8::1");
        assert!(c.data()["old"].is_null());
    }
}
