//! Metrics of the notifications (`edge_notify_*`), exported by every daemon that sends
//! events; defined once here and recorded by edge-notify's delivery tasks.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels naming one notification target.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    /// Target name from `[notify]`.
    pub target: String,
}

/// Labels of `edge_notify_events_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Target name from `[notify]`.
    pub target: String,
    /// `sent` (the target answered 2xx), `failed` (refused, or no success after every
    /// attempt) or `dropped` (the target's queue was full, or a newer heartbeat replaced it).
    pub result: String,
}

/// The metric families of the notifications.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    /// `edge_notify_events_total{target,result}`: events and heartbeats by outcome.
    pub events: Family<OutcomeLabels, Counter>,
    /// `edge_notify_retries_total{target}`: attempts repeated after a transient failure.
    pub retries: Family<TargetLabels, Counter>,
    /// `edge_notify_queue_length{target}`: events waiting or being delivered.
    pub queued: Family<TargetLabels, Gauge>,
    /// `edge_notify_last_sent_timestamp_seconds{target}`: Unix time of the last delivery.
    pub last_sent: Family<TargetLabels, Gauge>,
}

impl Metrics {
    /// Registers the families under the `notify` prefix (so names read `edge_notify_...`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("notify");
        r.register(
            "events",
            "Notification events and heartbeats, by target and result (sent, failed, dropped)",
            m.events.clone(),
        );
        r.register(
            "retries",
            "Delivery attempts repeated after a transient failure (timeout, 5xx, 429), by target",
            m.retries.clone(),
        );
        r.register(
            "queue_length",
            "Events waiting for delivery or being delivered, by target",
            m.queued.clone(),
        );
        r.register(
            "last_sent_timestamp_seconds",
            "Unix time of the last event or heartbeat a target accepted",
            m.last_sent.clone(),
        );
        m
    }

    /// Counts one outcome for `target`.
    pub fn outcome(&self, target: &str, result: &str) {
        self.events
            .get_or_create(&OutcomeLabels {
                target: target.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// The count of one outcome for `target` (tests, status).
    pub fn count(&self, target: &str, result: &str) -> u64 {
        self.events
            .get_or_create(&OutcomeLabels {
                target: target.to_owned(),
                result: result.to_owned(),
            })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_edge_notify_noun_unit() {
        let mut r = Registry::with_prefix("edge");
        let m = Metrics::register(&mut r);
        m.outcome("phone", "sent");
        m.retries
            .get_or_create(&TargetLabels {
                target: "phone".into(),
            })
            .inc();
        m.queued
            .get_or_create(&TargetLabels {
                target: "phone".into(),
            })
            .set(2);
        m.last_sent
            .get_or_create(&TargetLabels {
                target: "phone".into(),
            })
            .set(1_700_000_000);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        for name in [
            "edge_notify_events_total{target=\"phone\",result=\"sent\"} 1",
            "edge_notify_retries_total{target=\"phone\"} 1",
            "edge_notify_queue_length{target=\"phone\"} 2",
            "edge_notify_last_sent_timestamp_seconds{target=\"phone\"} 1700000000",
        ] {
            assert!(out.contains(name), "{name} missing in:\n{out}");
        }
        assert_eq!(m.count("phone", "sent"), 1);
    }
}
