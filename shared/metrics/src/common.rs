//! Metrics every daemon exports: build info, config reloads, readiness, control requests.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of `edge_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// Daemon role (`fw`).
    pub role: String,
    /// Crate version.
    pub version: String,
}

/// Labels of `edge_control_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Request kind (`status`, `reload`, ...).
    pub request: String,
    /// `ok` or `error`.
    pub result: String,
}

/// The metrics of the daemon shell.
#[derive(Debug, Clone, Default)]
pub struct CommonMetrics {
    /// `edge_build_info{role,version}`: always 1.
    pub build_info: Family<BuildLabels, Gauge>,
    /// `edge_config_reloads_total`: successful reloads.
    pub config_reloads: Counter,
    /// `edge_config_reload_failures_total`: refused reloads (the old config stays).
    pub config_reload_failures: Counter,
    /// `edge_config_generation`: 1 at start, +1 per successful reload.
    pub config_generation: Gauge,
    /// `edge_config_last_reload_success_timestamp_seconds`.
    pub config_last_reload_success: Gauge,
    /// `edge_config_last_reload_failed`: 1 while the last reload attempt was refused.
    pub config_last_reload_failed: Gauge,
    /// `edge_ready`: 1 once the first apply/sync succeeded.
    pub ready: Gauge,
    /// `edge_control_requests_total{request,result}`.
    pub control_requests: Family<RequestLabels, Counter>,
}

impl CommonMetrics {
    /// Registers the families (into the `edge`-prefixed registry) and sets build info.
    pub fn register(registry: &mut Registry, role: &str) -> Self {
        let m = Self::default();
        registry.register(
            "build_info",
            "Build information: role and version of the running daemon (always 1)",
            m.build_info.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads that were validated and applied",
            m.config_reloads.clone(),
        );
        registry.register(
            "config_reload_failures",
            "Configuration reloads refused because the new file is invalid; the running configuration stays",
            m.config_reload_failures.clone(),
        );
        registry.register(
            "config_generation",
            "Generation of the running configuration: 1 at start, +1 per successful reload",
            m.config_generation.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load",
            m.config_last_reload_success.clone(),
        );
        registry.register(
            "config_last_reload_failed",
            "1 while the last configuration reload was refused (the previous configuration runs), 0 otherwise",
            m.config_last_reload_failed.clone(),
        );
        registry.register(
            "ready",
            "1 once the daemon completed its first successful apply or sync",
            m.ready.clone(),
        );
        registry.register(
            "control_requests",
            "Requests received on the control socket, by kind and result",
            m.control_requests.clone(),
        );
        m.build_info
            .get_or_create(&BuildLabels {
                role: role.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        m.config_generation.set(1);
        m
    }
}
