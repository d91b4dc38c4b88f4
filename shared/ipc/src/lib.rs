//! edgectl ↔ daemon messages over Unix sockets, and the shell every daemon runs in.
//!
//! Wire format: one JSON object per line. The client sends a [`proto::RequestEnvelope`]
//! and reads one [`proto::ResponseEnvelope`]; then the connection closes. Both carry
//! [`proto::PROTOCOL_VERSION`]; a daemon answers a request of another version with
//! [`proto::ErrorCode::UnsupportedVersion`].

pub mod client;
pub mod ddns;
pub mod detail;
pub mod follow;
pub mod fw;
pub mod ha;
pub mod link;
pub mod proto;
pub mod server;
pub mod shell;
pub mod wg;

pub use client::{Client, ClientError};
pub use detail::Detail;
pub use proto::{DaemonStatus, Request, Response};
