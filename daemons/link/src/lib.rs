//! edge-link: the bridge/NIC manager of the edge suite.
//!
//! It converges the bridges, ports, addresses, routes and sysctls of the `[link]` section
//! over rtnetlink and keeps them converged: netlink events trigger a debounced full re-dump,
//! a pure plan and an idempotent apply. It tags what it creates (route protocol and
//! `IFA_PROTO` [`model::OWNER_PROTO`]) so that it only ever repairs or removes its own
//! objects, and it never touches a protected interface.
//!
//! Layers: [`model`], [`op`], [`plan`], [`sim`] and [`watch`] are pure;
//! [`netlink`], [`observe`], [`sysctl`], [`apply`] and [`daemon`] do the I/O.

pub mod apply;
pub mod daemon;
pub mod model;
pub mod netlink;
pub mod observe;
pub mod op;
pub mod plan;
pub mod sim;
pub mod sysctl;
pub mod watch;

pub use model::{Desired, Observed};
pub use op::Op;
pub use plan::{Plan, plan};
