//! Every metric of the edge suite, defined once; the Prometheus exporter; logging init.
//!
//! Metric names are `edge_<role>_<noun>_<unit>`: the registry carries the `edge` prefix and
//! each role registers its own families under a sub-registry with the role's prefix. Pure
//! code returns reports; only the daemons' I/O shells record into these metrics.
//!
//! The `register` calls in each role's module look alike in shape only (a `duplicates` run
//! pairs them): each names one distinct family with its own help text and unit, and that list
//! is the one place a family is declared. Folding them into a table would trade the typed
//! field each call hands to the registry for a `Box<dyn Metric>` and gain nothing.

pub mod common;
pub mod ddns;
pub mod exporter;
pub mod fw;
pub mod link;
pub mod logging;
pub mod notify;
pub mod process;
pub mod wg;

use std::sync::Arc;

use parking_lot::RwLock;
pub use prometheus_client;
use prometheus_client::registry::Registry;

/// The registry shared by a daemon's metric families and its exporter.
pub type SharedRegistry = Arc<RwLock<Registry>>;

/// A new registry with the `edge` prefix and the process collector registered.
pub fn new_registry() -> SharedRegistry {
    let mut r = Registry::with_prefix("edge");
    r.register_collector(Box::new(process::ProcessCollector::new()));
    Arc::new(RwLock::new(r))
}

/// Renders the registry in the OpenMetrics text format.
pub fn encode(registry: &SharedRegistry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry.read())?;
    Ok(out)
}
