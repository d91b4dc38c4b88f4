//! Pure: control messages only edge-wg understands, and the shape of its status detail.
//! The owner of edge-wg extends these types.

use serde::{Deserialize, Serialize};

/// Requests specific to edge-wg.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {}

/// The role-specific part of edge-wg's status (`DaemonStatus::detail`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {}
