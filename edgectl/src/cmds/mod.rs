//! One module per subcommand.

pub mod config;
pub mod ddns;
pub mod fw;
pub mod link;
pub mod wg;
