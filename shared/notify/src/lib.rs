//! edge-notify: the notifications every daemon of the suite sends — to webhooks (one
//! versioned JSON document per event), ntfy topics and Healthchecks-style heartbeats —
//! configured once in `[notify]`.
//!
//! A daemon builds a [`Notifier`] once (on its tokio runtime) and calls
//! [`Notifier::send`] with an [`Event`] where something happens; the call only queues and
//! returns, so a slow or broken receiver never delays the daemon's own work. Delivery runs
//! in the background: retried with backoff, rate-limited and bounded per target, counted in
//! `edge_notify_*`.
//!
//! ```no_run
//! # async fn f(config: &edge_config::Config, registry: &mut edge_metrics::prometheus_client::registry::Registry) {
//! use edge_notify::{Event, Notifier};
//! let n = Notifier::start(config, "edge-fw", edge_metrics::notify::Metrics::register(registry));
//! n.send(Event::FwApplyFailed { error: "the kernel refused the batch".into() });
//! # }
//! ```
//!
//! Layers: [`event`], [`streak`], [`pace`] and [`target`] are pure; [`deliver`] does the
//! I/O.

pub mod deliver;
pub mod event;
pub mod pace;
pub mod streak;
pub mod target;

pub use deliver::{Notifier, NotifyError, ProbeResult, Tuning, https_client, probe};
pub use event::{Envelope, Event, FORMAT_VERSION, FailureCause, Severity};
pub use streak::{Streak, StreakChange};
