//! Metrics of edge-fw (`edge_fw_*`), defined once here and recorded by the daemon's I/O
//! shell.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// Label of per-forward families.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ForwardLabels {
    /// Forward name from `[[fw.forward]]`.
    pub forward: String,
}

/// Label of the applies family.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `changed`, `unchanged`, `lockout`, `rejected`, `verify_failed`, `error`.
    pub result: String,
}

/// The metric families of edge-fw.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// Packets that arrived for each forward (its named counter in `inet edge_state`).
    pub forward_packets: Family<ForwardLabels, Counter>,
    /// Bytes that arrived for each forward.
    pub forward_bytes: Family<ForwardLabels, Counter>,
    /// Applies by result.
    pub applies: Family<ResultLabels, Counter>,
    /// Batches the kernel rejected in the dry run.
    pub dry_run_rejections: Counter,
    /// Foreign changes to our table that were repaired.
    pub drift_repairs: Counter,
    /// Read-backs that did not match what was applied (drift found or apply not verified).
    pub verify_failures: Counter,
    /// Duration of the last apply (dry run + commit + read-back).
    pub last_apply_duration: Gauge<f64, AtomicU64>,
    /// New connections to a locked forward from outside the proxy's ranges, dropped.
    pub origin_lock_drops: Family<ForwardLabels, Counter>,
    /// Prefixes of the origin lock's ranges in force.
    pub origin_lock_ranges: Gauge,
    /// When the ranges in force were fetched (unix seconds; 0: the list shipped with the
    /// release).
    pub origin_lock_fetched: Gauge,
    /// Fetches of the ranges that failed or were refused.
    pub origin_lock_fetch_failures: Counter,
}

impl Metrics {
    /// Registers the families under the `fw` prefix (so names read `edge_fw_...`).
    pub fn register(registry: &mut Registry) -> Self {
        let sub = registry.sub_registry_with_prefix("fw");
        let m = Self::default();
        sub.register(
            "forward_packets",
            "Packets that arrived for each port-forward (named counter in inet edge_state)",
            m.forward_packets.clone(),
        );
        sub.register_with_unit(
            "forward",
            "Bytes that arrived for each port-forward",
            Unit::Bytes,
            m.forward_bytes.clone(),
        );
        sub.register("applies", "Ruleset applies by result", m.applies.clone());
        sub.register(
            "dry_run_rejections",
            "Batches the kernel rejected in the dry run (nothing changed)",
            m.dry_run_rejections.clone(),
        );
        sub.register(
            "drift_repairs",
            "Foreign changes to table inet edge that were detected and repaired",
            m.drift_repairs.clone(),
        );
        sub.register(
            "verify_failures",
            "Read-backs of table inet edge that differed from the compiled ruleset",
            m.verify_failures.clone(),
        );
        sub.register_with_unit(
            "last_apply_duration",
            "Duration of the last apply (dry run, commit, read-back)",
            Unit::Seconds,
            m.last_apply_duration.clone(),
        );
        sub.register(
            "origin_lock_drops",
            "New connections to a locked forward from outside Cloudflare's ranges, dropped",
            m.origin_lock_drops.clone(),
        );
        sub.register(
            "origin_lock_ranges",
            "Prefixes of Cloudflare's ranges the origin lock admits",
            m.origin_lock_ranges.clone(),
        );
        sub.register_with_unit(
            "origin_lock_fetched_timestamp",
            "When the ranges in force were fetched (0: shipped with the release)",
            Unit::Seconds,
            m.origin_lock_fetched.clone(),
        );
        sub.register(
            "origin_lock_fetch_failures",
            "Fetches of Cloudflare's ranges that failed or were refused",
            m.origin_lock_fetch_failures.clone(),
        );
        m
    }

    /// Counts one apply with `result`.
    pub fn applied(&self, result: &str) {
        self.applies
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }
}
