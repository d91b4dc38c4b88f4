//! Pure: control messages only edge-ddns understands, and the shape of its status detail.
//!
//! edge-ddns answers the generic requests: `Plan` (what a sync would change: detection and
//! API reads only, no write) and `Apply` (sync now); both reply `Done` with a
//! [`SyncReport`] as detail. `Status` carries a [`Status`] as detail.

use serde::{Deserialize, Serialize};

/// What one detection source said.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SourceAnswer {
    /// Source name.
    pub source: String,
    /// `ok`, `rejected` or `failed`.
    pub result: String,
    /// The address, or why it failed / was refused.
    pub detail: String,
}

/// The detection verdict of one family.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FamilyStatus {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// The accepted address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Why no address was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Every source's answer.
    #[serde(default)]
    pub answers: Vec<SourceAnswer>,
}

/// One managed record.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RecordStatus {
    /// `A example.com`.
    pub record: String,
    /// The address last published or confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Cloudflare record id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    /// True when it holds the detected address.
    pub in_sync: bool,
    /// Unix time the API last confirmed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<u64>,
    /// Unix time edge last wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<u64>,
}

/// The role-specific part of edge-ddns's status (`DaemonStatus::detail`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// Last detection, per family.
    #[serde(default)]
    pub families: Vec<FamilyStatus>,
    /// Managed records.
    #[serde(default)]
    pub records: Vec<RecordStatus>,
    /// Unix time of the next scheduled run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<u64>,
    /// Unix time of the last sync in which every record converged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<u64>,
    /// WAN interface watched for address events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wan_interface: Option<String>,
    /// The sync (or plan) running now; the rest of the status is what the last one left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<InProgress>,
    /// Unix time before which no API request is sent (a Cloudflare rate-limit pause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited_until: Option<u64>,
    /// Why writes are held now (`[ha]`: this host is not the master, or the hold-off after
    /// becoming it); detection and reads go on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writes_held: Option<String>,
}

/// A sync or plan in progress (`Status::in_progress`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InProgress {
    /// Why it runs: `startup`, `schedule`, `reload`, `manual`, `netlink`, or `plan`.
    pub trigger: String,
    /// Unix time it started.
    pub started_at: u64,
    /// True when a further sync was requested meanwhile (it runs once, right after).
    #[serde(default)]
    pub sync_queued: bool,
    /// Plan requests waiting for it to finish.
    #[serde(default)]
    pub plans_queued: u32,
    /// True when a reload arrived meanwhile (applied when it finishes).
    #[serde(default)]
    pub reload_pending: bool,
}

/// What a sync or plan did with one record (in JSON the snake_case name).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It already held the address.
    #[default]
    Unchanged,
    /// It was created.
    Created,
    /// Its address was changed.
    Patched,
    /// A plan: it would be created.
    WouldCreate,
    /// A plan: its address would change.
    WouldPatch,
    /// A write not made: this host is not the master of its pair.
    Held,
    /// Left alone (no address of its family, or not ours to change).
    Skipped,
    /// The API refused or did not answer.
    Failed,
}

impl Outcome {
    /// The name in JSON and in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Unchanged => "unchanged",
            Outcome::Created => "created",
            Outcome::Patched => "patched",
            Outcome::WouldCreate => "would_create",
            Outcome::WouldPatch => "would_patch",
            Outcome::Held => "held",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
        }
    }

    /// The record holds the address now.
    pub fn is_in_sync(self) -> bool {
        matches!(
            self,
            Outcome::Unchanged | Outcome::Created | Outcome::Patched
        )
    }

    /// Nothing went wrong: in sync, a plan of a change, or a write held by the role.
    pub fn is_ok(self) -> bool {
        self.is_in_sync()
            || matches!(
                self,
                Outcome::WouldCreate | Outcome::WouldPatch | Outcome::Held
            )
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<&str> for Outcome {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// The outcome of one record in a sync or plan.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RecordOutcome {
    /// `A example.com`.
    pub record: String,
    /// What happened.
    pub outcome: Outcome,
    /// Human explanation (the plan line, or the error).
    pub detail: String,
}

/// A sync (or plan) report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SyncReport {
    /// True when every record converged (or, for a plan, could be planned).
    pub ok: bool,
    /// True when nothing was written (plan).
    pub dry_run: bool,
    /// Detection per family.
    pub families: Vec<FamilyStatus>,
    /// Per record.
    pub records: Vec<RecordOutcome>,
    /// API requests made by this run.
    pub api_requests: u64,
    /// Writes made by this run.
    pub writes: u64,
}
