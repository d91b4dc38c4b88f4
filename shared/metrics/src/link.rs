//! Metrics of edge-link (`edge_link_*`), defined once here and recorded by the daemon's I/O
//! shell. The owner of edge-link adds its families to this struct.

use prometheus_client::registry::Registry;

/// The metric families of edge-link.
#[derive(Debug, Clone, Default)]
pub struct Metrics {}

impl Metrics {
    /// Registers the families under the `link` prefix (so names read `edge_link_...`).
    pub fn register(registry: &mut Registry) -> Self {
        let _sub = registry.sub_registry_with_prefix("link");
        Self::default()
    }
}
