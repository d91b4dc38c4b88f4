//! Metrics of edge-ddns (`edge_ddns_*`), defined once here and recorded by the daemon's I/O
//! shell. The owner of edge-ddns adds its families to this struct.

use prometheus_client::registry::Registry;

/// The metric families of edge-ddns.
#[derive(Debug, Clone, Default)]
pub struct Metrics {}

impl Metrics {
    /// Registers the families under the `ddns` prefix (so names read `edge_ddns_...`).
    pub fn register(registry: &mut Registry) -> Self {
        let _sub = registry.sub_registry_with_prefix("ddns");
        Self::default()
    }
}
