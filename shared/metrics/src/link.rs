//! Metrics of edge-link (`edge_link_*`), defined once here and recorded by the daemon's I/O
//! shell (never by its pure core).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels naming one managed interface.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LinkLabels {
    /// Interface name.
    pub link: String,
}

/// Labels naming one managed bridge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BridgeLabels {
    /// Bridge name.
    pub bridge: String,
}

/// Labels carrying only an outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `converged` (nothing to do), `repaired` (changes applied), `deferred` (backing off
    /// after a failure), `failed` (apply rolled back) or `error` (could not read the state).
    pub result: String,
}

/// Labels carrying a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// What was repaired or noticed (`port`, `mtu`, `address`, `route`, `foreign_route`, ...).
    pub kind: String,
}

/// The metric families of edge-link.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// `edge_link_link_admin_up{link}`: 1 when a managed interface is administratively up.
    pub link_admin_up: Family<LinkLabels, Gauge>,
    /// `edge_link_link_oper_up{link}`: 1 when it has carrier (lower layer up).
    pub link_oper_up: Family<LinkLabels, Gauge>,
    /// `edge_link_link_present{link}`: 1 when the interface exists (0: waited for).
    pub link_present: Family<LinkLabels, Gauge>,
    /// `edge_link_bridge_ports{bridge}`: ports enslaved to a managed bridge (ours and
    /// foreign, e.g. VM taps).
    pub bridge_ports: Family<BridgeLabels, Gauge>,
    /// `edge_link_reconcile_runs_total{result}`.
    pub reconcile_runs: Family<ResultLabels, Counter>,
    /// `edge_link_drift_repairs_total{kind}`: operations applied after the first
    /// convergence, by kind.
    pub drift_repairs: Family<KindLabels, Counter>,
    /// `edge_link_last_reconcile_duration_seconds`: dump + plan + apply of the last run.
    pub last_reconcile_duration: Gauge<f64, AtomicU64>,
    /// `edge_link_repair_latency_seconds`: from the first netlink event of a drift to the
    /// end of its repair.
    pub repair_latency: Histogram,
    /// `edge_link_foreign_changes_total{kind}`: new observations about objects we do not
    /// own (foreign addresses or routes on managed bridges, route key conflicts, ...).
    pub foreign_changes: Family<KindLabels, Counter>,
    /// `edge_link_netlink_writes_total`: change requests sent (netlink and sysctl writes).
    pub netlink_writes: Counter,
    /// `edge_link_netlink_events_total{kind}`: multicast events received.
    pub netlink_events: Family<KindLabels, Counter>,
    /// `edge_link_waiting_interfaces`: configured interfaces not present yet.
    pub waiting_interfaces: Gauge,
    /// `edge_link_plan_errors`: parts of the configuration that cannot be carried out
    /// (a bridge name held by another kind of link, an unreachable gateway, ...).
    pub plan_errors: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            link_admin_up: Family::default(),
            link_oper_up: Family::default(),
            link_present: Family::default(),
            bridge_ports: Family::default(),
            reconcile_runs: Family::default(),
            drift_repairs: Family::default(),
            last_reconcile_duration: Gauge::default(),
            // 1 ms .. ~4 s: repairs take milliseconds; a slow one shows in the top buckets.
            repair_latency: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 13),
            ),
            foreign_changes: Family::default(),
            netlink_writes: Counter::default(),
            netlink_events: Family::default(),
            waiting_interfaces: Gauge::default(),
            plan_errors: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Registers the families under the `link` prefix (so names read `edge_link_...`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("link");
        r.register(
            "link_admin_up",
            "1 when a managed interface is administratively up (IFF_UP)",
            m.link_admin_up.clone(),
        );
        r.register(
            "link_oper_up",
            "1 when a managed interface has carrier (IFF_LOWER_UP)",
            m.link_oper_up.clone(),
        );
        r.register(
            "link_present",
            "1 when a managed interface exists, 0 while it is waited for",
            m.link_present.clone(),
        );
        r.register(
            "bridge_ports",
            "Ports enslaved to a managed bridge (configured NICs and foreign ones such as VM taps)",
            m.bridge_ports.clone(),
        );
        r.register(
            "reconcile_runs",
            "Reconcile runs (dump, plan, apply), by result",
            m.reconcile_runs.clone(),
        );
        r.register(
            "drift_repairs",
            "Operations applied to repair drift after the first convergence, by kind",
            m.drift_repairs.clone(),
        );
        r.register(
            "last_reconcile_duration_seconds",
            "Duration of the last reconcile run (dump, plan and apply)",
            m.last_reconcile_duration.clone(),
        );
        r.register(
            "repair_latency_seconds",
            "Time from the first netlink event of a drift to the end of its repair",
            m.repair_latency.clone(),
        );
        r.register(
            "foreign_changes",
            "New observations about objects edge-link does not own on managed interfaces, by kind",
            m.foreign_changes.clone(),
        );
        r.register(
            "netlink_writes",
            "Change requests sent to the kernel (netlink messages and sysctl writes)",
            m.netlink_writes.clone(),
        );
        r.register(
            "netlink_events",
            "Netlink multicast events received, by kind",
            m.netlink_events.clone(),
        );
        r.register(
            "waiting_interfaces",
            "Configured interfaces that are not present yet",
            m.waiting_interfaces.clone(),
        );
        r.register(
            "plan_errors",
            "Parts of the configuration that cannot be carried out",
            m.plan_errors.clone(),
        );
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_edge_link_noun_unit() {
        let mut r = Registry::with_prefix("edge");
        let m = Metrics::register(&mut r);
        m.reconcile_runs
            .get_or_create(&ResultLabels {
                result: "converged".into(),
            })
            .inc();
        m.drift_repairs
            .get_or_create(&KindLabels {
                kind: "port".into(),
            })
            .inc();
        m.repair_latency.observe(0.02);
        m.last_reconcile_duration.set(0.004);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        for name in [
            "edge_link_reconcile_runs_total{result=\"converged\"} 1",
            "edge_link_repair_latency_seconds_bucket",
            "edge_link_last_reconcile_duration_seconds 0.004",
            "edge_link_drift_repairs_total{kind=\"port\"} 1",
            "# TYPE edge_link_netlink_writes counter",
        ] {
            assert!(out.contains(name), "{name} missing in:\n{out}");
        }
    }
}
