//! Pure: control messages only edge-fw understands, and the shape of its status detail.
//! The owner of edge-fw extends these types.

use serde::{Deserialize, Serialize};

/// Requests specific to edge-fw.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {}

/// The role-specific part of edge-fw's status (`DaemonStatus::detail`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// Port-forwards in the running configuration.
    pub forwards: usize,
    /// Rules in table `inet edge`.
    pub rules: usize,
    /// True while an `apply --confirm` waits for its probes or a `confirm`.
    pub pending_confirm: bool,
}
