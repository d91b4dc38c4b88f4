//! Metrics of edge-wg (`edge_wg_*`), defined once here and recorded by the daemon's I/O
//! shell. The owner of edge-wg adds its families to this struct.

use prometheus_client::registry::Registry;

/// The metric families of edge-wg.
#[derive(Debug, Clone, Default)]
pub struct Metrics {}

impl Metrics {
    /// Registers the families under the `wg` prefix (so names read `edge_wg_...`).
    pub fn register(registry: &mut Registry) -> Self {
        let _sub = registry.sub_registry_with_prefix("wg");
        Self::default()
    }
}
