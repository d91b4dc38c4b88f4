//! Metrics of edge-ddns (`edge_ddns_*`), defined once here and recorded by the daemon's I/O
//! shell (never by its pure core).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of `edge_ddns_detected_address_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AddressLabels {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// The accepted public address.
    pub address: String,
}

/// Labels of `edge_ddns_detections_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DetectionLabels {
    /// Source name from the configuration.
    pub source: String,
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// `ok`, `rejected` or `failed`.
    pub result: String,
}

/// Labels carrying only the address family.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FamilyLabels {
    /// `ipv4` or `ipv6`.
    pub family: String,
}

/// Labels of `edge_ddns_api_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    /// HTTP method.
    pub method: String,
    /// HTTP status code, or `error` when no answer arrived.
    pub status: String,
}

/// Labels of `edge_ddns_updates_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpdateLabels {
    /// The record, e.g. `A example.com`.
    pub record: String,
    /// `created`, `patched` or `failed`.
    pub result: String,
}

/// Labels naming one record.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordLabels {
    /// The record, e.g. `A example.com`.
    pub record: String,
}

/// The metric families of edge-ddns.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// `edge_ddns_detected_address_info{family,address}`: 1 for the accepted address.
    pub detected_address: Family<AddressLabels, Gauge>,
    /// `edge_ddns_detections_total{source,family,result}`.
    pub detections: Family<DetectionLabels, Counter>,
    /// `edge_ddns_quorum_failures_total{family}`: detections that decided no address.
    pub quorum_failures: Family<FamilyLabels, Counter>,
    /// `edge_ddns_api_requests_total{method,status}`: Cloudflare API requests.
    pub api_requests: Family<ApiLabels, Counter>,
    /// `edge_ddns_api_ratelimit_remaining`: the last `Ratelimit` header's `r`.
    pub ratelimit_remaining: Gauge,
    /// `edge_ddns_updates_total{record,result}`: record writes.
    pub updates: Family<UpdateLabels, Counter>,
    /// `edge_ddns_last_success_timestamp_seconds`: end of the last fully successful sync.
    pub last_success: Gauge,
    /// `edge_ddns_record_in_sync{record}`: 1 when the record holds the detected address.
    pub record_in_sync: Family<RecordLabels, Gauge>,
    /// `edge_ddns_syncs_total{result}`: sync runs by outcome (`ok`, `failed`).
    pub syncs: Family<ResultLabels, Counter>,
}

/// Labels carrying only an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `failed`.
    pub result: String,
}

impl Metrics {
    /// Registers the families under the `ddns` prefix (so names read `edge_ddns_...`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("ddns");
        r.register(
            "detected_address_info",
            "The public address accepted by the detection quorum, per family (always 1)",
            m.detected_address.clone(),
        );
        r.register(
            "detections",
            "Answers of detection sources, by source, family and result (ok, rejected, failed)",
            m.detections.clone(),
        );
        r.register(
            "quorum_failures",
            "Detection runs in which the sources did not agree on an address (nothing was changed)",
            m.quorum_failures.clone(),
        );
        r.register(
            "api_requests",
            "Cloudflare API requests, by method and HTTP status",
            m.api_requests.clone(),
        );
        r.register(
            "api_ratelimit_remaining",
            "Requests left in Cloudflare's current rate-limit window, from the last Ratelimit header",
            m.ratelimit_remaining.clone(),
        );
        r.register(
            "updates",
            "Record writes, by record and result (created, patched, failed)",
            m.updates.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "Unix time of the end of the last sync in which every record converged",
            m.last_success.clone(),
        );
        r.register(
            "record_in_sync",
            "1 when the record holds the detected address, 0 otherwise",
            m.record_in_sync.clone(),
        );
        r.register("syncs", "Sync runs, by result", m.syncs.clone());
        m
    }
}
