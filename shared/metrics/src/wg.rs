//! Metrics of edge-wg (`edge_wg_*`), defined once here and recorded by the daemon's I/O
//! shell. The engine keeps its counters in atomics on the packet path; this collector
//! reads a [`Sample`] of them on each scrape, so the hot path never touches the registry.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Counters of one peer at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerSample {
    /// The peer's name (from the config), else its public key.
    pub peer: String,
    /// Its counters.
    pub counts: PeerCounts,
}

/// One peer's counters, as the engine copies them from its atomics (also the engine's own
/// snapshot type, so that the two cannot drift apart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCounts {
    /// Plaintext bytes received from the peer.
    pub rx_bytes: u64,
    /// Plaintext bytes sent to the peer.
    pub tx_bytes: u64,
    /// Handshake initiations sent.
    pub handshake_attempts: u64,
    /// Failed handshakes (invalid messages, attempts given up).
    pub handshake_failures: u64,
    /// Endpoint changes learned from authenticated packets (roaming).
    pub endpoint_changes: u64,
    /// Last completed handshake, Unix seconds (0 = never).
    pub last_handshake_seconds: u64,
}

/// A peer's expiry at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PeerExpiry {
    /// The peer's name.
    pub peer: String,
    /// When it expires, Unix seconds.
    pub expires_seconds: i64,
    /// True once it expired (its sessions and routes are gone).
    pub expired: bool,
}

/// Every edge-wg counter at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Per-peer counters.
    pub peers: Vec<PeerSample>,
    /// Cookie replies sent because the device was under load.
    pub cookie_replies: u64,
    /// Dropped packets by reason label.
    pub drops: Vec<(String, u64)>,
    /// Peers that have an expiry (expired ones included).
    pub expiries: Vec<PeerExpiry>,
    /// Lookups of each peer's endpoint name (start, reloads, unanswered handshakes).
    pub endpoint_lookups: Vec<(String, u64)>,
}

type Source = Arc<dyn Fn() -> Sample + Send + Sync>;

/// The metric families of edge-wg.
#[derive(Clone)]
pub struct Metrics {
    source: Source,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wg::Metrics")
    }
}

impl Metrics {
    /// Registers the families under the `wg` prefix (so names read `edge_wg_...`); `source`
    /// is called on every scrape.
    pub fn register(
        registry: &mut Registry,
        source: impl Fn() -> Sample + Send + Sync + 'static,
    ) -> Self {
        let m = Metrics {
            source: Arc::new(source),
        };
        registry
            .sub_registry_with_prefix("wg")
            .register_collector(Box::new(m.clone()));
        m
    }
}

const PEER_COUNTERS: [(&str, &str); 5] = [
    ("peer_rx_bytes", "Plaintext bytes received from a peer"),
    ("peer_tx_bytes", "Plaintext bytes sent to a peer"),
    (
        "peer_handshake_attempts",
        "Handshake initiations sent to a peer",
    ),
    ("peer_handshake_failures", "Failed handshakes with a peer"),
    (
        "peer_endpoint_changes",
        "Endpoint changes of a peer learned from authenticated packets",
    ),
];

impl Collector for Metrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = (self.source)();
        for (i, (name, help)) in PEER_COUNTERS.iter().enumerate() {
            let mut fam = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for p in &s.peers {
                let c = &p.counts;
                let v = [
                    c.rx_bytes,
                    c.tx_bytes,
                    c.handshake_attempts,
                    c.handshake_failures,
                    c.endpoint_changes,
                ][i];
                let labels = vec![("peer", p.peer.clone())];
                ConstCounter::new(v).encode(fam.encode_family(&labels)?)?;
            }
        }
        let mut fam = encoder.encode_descriptor(
            "peer_last_handshake_timestamp_seconds",
            "Unix time of the last completed handshake with a peer (0 = never)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for p in &s.peers {
            let labels = vec![("peer", p.peer.clone())];
            ConstGauge::new(p.counts.last_handshake_seconds as i64)
                .encode(fam.encode_family(&labels)?)?;
        }
        let mut fam = encoder.encode_descriptor(
            "peer_expiry_timestamp_seconds",
            "Unix time at which a peer expires (only peers with an expiry)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for e in &s.expiries {
            let labels = vec![("peer", e.peer.clone())];
            ConstGauge::new(e.expires_seconds).encode(fam.encode_family(&labels)?)?;
        }
        let mut fam = encoder.encode_descriptor(
            "peer_expired",
            "1 when a peer expired: its sessions and routes are removed until it is renewed",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for e in &s.expiries {
            let labels = vec![("peer", e.peer.clone())];
            ConstGauge::new(i64::from(e.expired)).encode(fam.encode_family(&labels)?)?;
        }
        let mut fam = encoder.encode_descriptor(
            "peer_endpoint_lookups",
            "Lookups of a peer's endpoint name (at start, on reload, when handshakes go unanswered)",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (peer, n) in &s.endpoint_lookups {
            let labels = vec![("peer", peer.clone())];
            ConstCounter::new(*n).encode(fam.encode_family(&labels)?)?;
        }
        let c = ConstCounter::new(s.cookie_replies);
        c.encode(encoder.encode_descriptor(
            "cookie_replies",
            "Cookie replies sent because the device was under load",
            None,
            c.metric_type(),
        )?)?;
        let mut fam = encoder.encode_descriptor(
            "packets_dropped",
            "Packets dropped, by reason",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (reason, v) in &s.drops {
            let labels = vec![("reason", reason.clone())];
            ConstCounter::new(*v).encode(fam.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_renders_the_sample() {
        let r = crate::new_registry();
        Metrics::register(&mut r.write(), || Sample {
            peers: vec![PeerSample {
                peer: "laptop".into(),
                counts: PeerCounts {
                    rx_bytes: 10,
                    tx_bytes: 20,
                    handshake_attempts: 3,
                    handshake_failures: 1,
                    endpoint_changes: 2,
                    last_handshake_seconds: 1_700_000_000,
                },
            }],
            cookie_replies: 7,
            drops: vec![("no_route".into(), 5)],
            expiries: vec![PeerExpiry {
                peer: "phone".into(),
                expires_seconds: 1_801_418_400,
                expired: true,
            }],
            endpoint_lookups: vec![("site".into(), 3)],
        });
        let text = crate::encode(&r).unwrap();
        for want in [
            "edge_wg_peer_rx_bytes_total{peer=\"laptop\"} 10",
            "edge_wg_peer_tx_bytes_total{peer=\"laptop\"} 20",
            "edge_wg_peer_handshake_attempts_total{peer=\"laptop\"} 3",
            "edge_wg_peer_handshake_failures_total{peer=\"laptop\"} 1",
            "edge_wg_peer_endpoint_changes_total{peer=\"laptop\"} 2",
            "edge_wg_peer_last_handshake_timestamp_seconds{peer=\"laptop\"} 1700000000",
            "edge_wg_cookie_replies_total 7",
            "edge_wg_packets_dropped_total{reason=\"no_route\"} 5",
            "edge_wg_peer_expiry_timestamp_seconds{peer=\"phone\"} 1801418400",
            "edge_wg_peer_expired{peer=\"phone\"} 1",
            "edge_wg_peer_endpoint_lookups_total{peer=\"site\"} 3",
        ] {
            assert!(text.contains(want), "missing {want} in:\n{text}");
        }
    }
}
