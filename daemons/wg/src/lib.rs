//! edge-wg: a userspace WireGuard endpoint built on `boringtun::noise::Tunn`, with its own
//! device engine (multi-queue TUN with TCP offloads, batched UDP with GSO/GRO), the
//! cross-platform UAPI for the stock `wg` tool, and a pure core (allowed-IPs table, peer
//! diff, UAPI text, offload math) that is tested without root.
//!
//! Layers: pure — [`model`], [`proto`], [`allowed_ips`], [`diff`], [`uapi`], [`offload`],
//! [`stats`], [`config`], [`endpoints`], [`provision`]; I/O — [`tun`], [`udp`], [`device`], [`bringup`],
//! [`uapi_server`], [`netlink`], [`privileges`], [`state`], [`daemon`].

pub mod allowed_ips;
pub mod bringup;
pub mod config;
pub mod daemon;
pub mod device;
pub mod diff;
pub mod endpoints;
pub mod model;
pub mod netlink;
pub mod offload;
pub mod privileges;
pub mod proto;
pub mod provision;
pub mod resolver;
pub mod stale;
pub mod state;
pub mod stats;
pub mod tun;
pub mod uapi;
pub mod uapi_server;
pub mod udp;
