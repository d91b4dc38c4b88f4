//! Pure: control messages only edge-link understands, and the shape of its status detail.
//!
//! edge-link answers the generic requests: `Plan` (dump the kernel's state and show what a
//! reconcile would change; nothing is changed) and `Apply` (reconcile now); both reply
//! `Done` with a [`PlanReport`] as detail. `Status` carries a [`Status`] as detail.

use serde::{Deserialize, Serialize};

/// One managed interface as last observed.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LinkState {
    /// Interface name.
    pub name: String,
    /// `bridge` or `port`.
    pub role: String,
    /// The interface exists (a port may be waited for).
    pub present: bool,
    /// Administratively up.
    pub admin_up: bool,
    /// Carrier present.
    pub oper_up: bool,
    /// MTU.
    pub mtu: u32,
    /// Its bridge, for a port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// Ports of a bridge (configured and foreign).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
}

/// A plan or the outcome of an apply.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PlanReport {
    /// Operations, each as its `ip`/`sysctl` equivalent.
    pub ops: Vec<String>,
    /// Configured things waiting for an interface to appear.
    #[serde(default)]
    pub waiting: Vec<String>,
    /// Observations (`warning: ...`, `info: ...`).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Requests sent to the kernel (0 for a plan, and for an apply on a converged host).
    #[serde(default)]
    pub writes: u64,
}

/// The role-specific part of edge-link's status (`DaemonStatus::detail`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// True when the last reconcile found nothing to do.
    pub converged: bool,
    /// Operations still to do (after a failed apply, while backing off).
    #[serde(default)]
    pub pending: Vec<String>,
    /// Configured things waiting for an interface to appear.
    #[serde(default)]
    pub waiting: Vec<String>,
    /// Observations of the last plan.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Managed interfaces.
    #[serde(default)]
    pub links: Vec<LinkState>,
    /// Reconcile runs since start.
    pub reconciles: u64,
    /// Requests sent to the kernel since start.
    pub writes: u64,
    /// Duration of the last reconcile, in milliseconds.
    pub last_reconcile_ms: f64,
    /// Event-to-repaired time of the last repair, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_repair_ms: Option<f64>,
    /// Seconds until the next apply attempt after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_secs: Option<u64>,
    /// `[ha]`: the virtual addresses keepalived moves between the hosts, and whether this
    /// host holds each now (it should exactly when it is the master).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_addresses: Vec<VirtualAddress>,
}

/// A virtual address of `[ha]` as edge-link last observed it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct VirtualAddress {
    /// The address with its prefix.
    pub address: String,
    /// Its interface.
    pub interface: String,
    /// Held by this host now.
    pub present: bool,
}
