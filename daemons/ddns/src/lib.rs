//! edge-ddns: the Cloudflare DDNS updater.

use edge_ipc::shell::{Shell, idle};

/// Runs the daemon until SIGTERM.
pub async fn run(shell: Shell) -> anyhow::Result<()> {
    if shell.config().ddns.is_none() {
        return idle(shell, "no [ddns] section in the configuration").await;
    }
    idle(shell, "the DDNS updater has nothing to do yet in this build").await
}
