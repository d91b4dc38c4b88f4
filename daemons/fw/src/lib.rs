//! edge-fw: compiles the `[fw]` section of `/etc/edge/edge.toml` into one nftables table,
//! `inet edge`, and applies it atomically over netlink (nftnl), with an in-kernel dry run,
//! read-back verification, drift repair and a self-confirming rollback.
//!
//! Layers (STYLE.md §2): [`model`], [`compile`], [`ir`], [`safety`], [`normalize`] and
//! [`events`] are pure; [`netlink`], [`observe`], [`apply`], [`replica`], [`confirm`] and
//! [`daemon`] do the I/O.

pub mod apply;
pub mod compile;
pub mod confirm;
pub mod daemon;
pub mod events;
pub mod ir;
pub mod model;
pub mod netlink;
pub mod normalize;
pub mod observe;
pub mod plan;
pub mod replica;
pub mod safety;
