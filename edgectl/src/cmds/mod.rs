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

/// The arguments of a command with subcommands (`edgectl fw …`, `edgectl link …`): each
/// module names its own `Cmd`.
#[derive(Debug, clap::Args)]
pub struct Sub<C: clap::Subcommand> {
    /// The subcommand.
    #[command(subcommand)]
    pub cmd: C,
}
