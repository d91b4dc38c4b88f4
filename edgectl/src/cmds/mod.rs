//! One module per subcommand.

pub mod config;
pub mod ddns;
pub mod fw;
pub mod ha;
#[cfg(feature = "lab")]
pub mod lab;
pub mod link;
pub mod notify;
pub mod status;
pub mod wg;
pub mod wg_peer;
