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

use std::path::Path;

use edge_config::{LoadOptions, Loaded};

/// The arguments of a command with subcommands (`edgectl fw …`, `edgectl link …`): each
/// module names its own `Cmd`.
#[derive(Debug, clap::Args)]
pub struct Sub<C: clap::Subcommand> {
    /// The subcommand.
    #[command(subcommand)]
    pub cmd: C,
}

/// Loads the configuration at `path` as `edgectl config check` does (every secret checked, a
/// missing one only a warning). `None` when it has errors: they were printed, and the
/// command exits 2.
pub fn load_or_report(path: &Path) -> Option<Loaded> {
    match edge_config::load(path, LoadOptions { role: None }) {
        Ok(l) => Some(l),
        Err(d) => {
            eprint!("{}", d.render());
            None
        }
    }
}
