//! edge-fw: compiles the `[fw]` section of `/etc/edge/edge.toml` into one nftables table,
//! `inet edge` (and the long-lived `inet edge_state`), and keeps it applied over netlink
//! alone: atomic batches with an in-kernel dry run, a read-back of the kernel's own
//! objects, drift repair, element-only updates when an address moves, and a confirm-apply
//! that rolls back. It runs no program.
//!
//! Layers: [`model`], [`compile`], [`ir`], [`lower`], [`wire`], [`codec`], [`txn`],
//! [`plan`], [`safety`], [`events`] and [`uapi`] are pure; [`nfnl`], [`rt`], [`observe`],
//! [`apply`], [`replica`], [`confirm`] and [`daemon`] do the I/O; [`origin`] is pure but for
//! fetching and keeping the origin lock's ranges.

pub mod apply;
pub mod codec;
pub mod compile;
pub mod confirm;
pub mod daemon;
pub mod events;
pub mod ir;
pub mod lower;
pub mod model;
pub mod nfnl;
pub mod observe;
pub mod origin;
pub mod plan;
pub mod replica;
pub mod rt;
pub mod safety;
pub mod txn;
pub mod uapi;
pub mod wire;
