//! Pure: control messages only edge-ddns understands, and the shape of its status detail.
//! The owner of edge-ddns extends these types.

use serde::{Deserialize, Serialize};

/// Requests specific to edge-ddns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {}

/// The role-specific part of edge-ddns's status (`DaemonStatus::detail`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {}
