//! Metrics of edge-fw (`edge_fw_*`), defined once here and recorded by the daemon's I/O
//! shell. The owner of edge-fw adds its families to this struct.

use prometheus_client::registry::Registry;

/// The metric families of edge-fw.
#[derive(Debug, Clone, Default)]
pub struct Metrics {}

impl Metrics {
    /// Registers the families under the `fw` prefix (so names read `edge_fw_...`).
    pub fn register(registry: &mut Registry) -> Self {
        let _sub = registry.sub_registry_with_prefix("fw");
        Self::default()
    }
}
