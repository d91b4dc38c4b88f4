//! Pure: control messages only edge-fw understands, and the shape of its status detail.
//! The owner of edge-fw extends these types.

use serde::{Deserialize, Serialize};

/// Requests specific to edge-fw.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// `edgectl fw doctor` for a member of group `edge`: how other tables' base chains on
    /// our hooks interact with ours (reading them needs the daemon's CAP_NET_ADMIN).
    Doctor,
    /// `edgectl fw origin-lock refresh`: fetch the origin lock's ranges now (root).
    RefreshRanges,
}

/// The role-specific part of edge-fw's status (`DaemonStatus::detail`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// Port-forwards in the running configuration.
    pub forwards: usize,
    /// Rules in table `inet edge`.
    pub rules: usize,
    /// True while an `apply --confirm` waits for its probes or a `confirm`.
    pub pending_confirm: bool,
    /// Each port-forward with its counters (added in shape v1 without a version bump:
    /// absent from older daemons).
    #[serde(default)]
    pub forward_list: Vec<ForwardStatus>,
    /// When the counters were last read from the kernel (unix seconds; 0: not yet): every
    /// 15 s, and on each status request up to 1,000 forwards.
    #[serde(default)]
    pub counters_at: u64,
    /// Foreign changes of our tables repaired since the daemon started.
    #[serde(default)]
    pub drift_repairs: u64,
    /// The origin lock's ranges, when a forward is locked.
    #[serde(default)]
    pub origin_lock: Option<OriginLockStatus>,
}

/// The origin lock's ranges in force and how fresh they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OriginLockStatus {
    /// IPv4 prefixes in force.
    pub v4: usize,
    /// IPv6 prefixes in force.
    pub v6: usize,
    /// `shipped` (with this release) or `fetched`.
    pub origin: String,
    /// When the list in force was fetched (unix seconds; 0: shipped).
    pub fetched_at: u64,
    /// When the list was last checked (unix seconds; 0: not yet).
    pub checked_at: u64,
    /// A fetched list that changes more than half of the ranges, waiting for the next
    /// fetch to give the same answer.
    pub pending: bool,
    /// Why the last fetch failed or was refused.
    pub last_error: Option<String>,
}

/// One port-forward in the status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ForwardStatus {
    /// The forward's name in the configuration.
    pub name: String,
    /// What it does, e.g. `tcp 192.198.0.30:443 -> 10.17.5.30:443 from wireguard`.
    pub rule: String,
    /// Packets arriving for it (client to server, before DNAT) since its counter exists;
    /// counters live in `inet edge_state` and survive reloads.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// True when only the origin lock's ranges (and `from`) may reach it.
    #[serde(default)]
    pub locked: bool,
    /// Direct hits dropped by the origin lock (new connections from elsewhere).
    #[serde(default)]
    pub lock_drops: u64,
}
