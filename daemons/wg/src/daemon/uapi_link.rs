//! I/O: the link from `/var/run/wireguard/<interface>.sock`, where the stock `wg` looks, to
//! the daemon's UAPI socket: made by the daemon where it may, else by the unit
//! (`edge-wg --uapi-link` / `--uapi-unlink`).

use std::path::Path;

use edge_config::Role;

use crate::uapi_server::{PublicLink, SOCKET_DIR, link_public, unlink_public};

/// Links `/var/run/wireguard/<name>.sock` to our socket where this process may (as root
/// outside systemd); under the shipped unit the privileged `ExecStartPost=` does it.
pub(super) fn link_uapi(name: &str, socket: &Path) {
    match link_public(Path::new(SOCKET_DIR), name, socket) {
        Ok(PublicLink::Linked | PublicLink::AlreadyLinked) => {
            tracing::info!(link = %Path::new(SOCKET_DIR).join(format!("{name}.sock")).display(), socket = %socket.display(), "uapi socket linked for `wg`");
        }
        Ok(PublicLink::Occupied(why)) => {
            tracing::warn!("`wg {name}` will not reach edge-wg: {why}");
        }
        Err(e) => tracing::debug!(
            "cannot link the uapi socket here ({e}); the unit's ExecStartPost=+edge-wg --uapi-link does it"
        ),
    }
}

/// Removes our link in `/var/run/wireguard` (nothing else there).
pub(super) fn unlink_uapi(name: &str, socket: &Path) {
    if let Err(e) = unlink_public(Path::new(SOCKET_DIR), name, socket) {
        tracing::debug!(
            "cannot unlink the uapi socket here ({e}); the unit's ExecStopPost= does it"
        );
    }
}

/// `edge-wg --uapi-link` / `--uapi-unlink`, run by the unit with privileges (`+`) after start
/// and after stop: links (or unlinks) `/var/run/wireguard/<interface>.sock` to the daemon's
/// socket in `<runtime_dir>/wg/`. Never fails the unit: a problem is printed and exit is 0.
pub fn uapi_link_command(args: &edge_ipc::shell::CommonArgs, link: bool) -> std::process::ExitCode {
    let path = edge_config::resolve_path(args.config.as_deref());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("edge-wg: cannot read {}: {e}", path.display());
            return std::process::ExitCode::SUCCESS;
        }
    };
    let cfg = match edge_config::parse(&path, &text) {
        Ok(l) => l.config,
        Err(d) => {
            eprint!("{}", d.render());
            return std::process::ExitCode::SUCCESS;
        }
    };
    let Some(wg) = &cfg.wg else {
        return std::process::ExitCode::SUCCESS;
    };
    let name = wg.interface.as_str();
    let socket = cfg.role_runtime_dir(Role::Wg).join(format!("{name}.sock"));
    let public = Path::new(SOCKET_DIR);
    if link {
        match link_public(public, name, &socket) {
            Ok(PublicLink::Occupied(why)) => {
                eprintln!(
                    "edge-wg: `wg {name}` will not reach edge-wg: {why}; stop the other WireGuard implementation using {name} or rename [wg].interface"
                );
            }
            Ok(_) => {}
            Err(e) => eprintln!("edge-wg: {:#}", anyhow::Error::new(e)),
        }
    } else if let Err(e) = unlink_public(public, name, &socket) {
        eprintln!("edge-wg: {:#}", anyhow::Error::new(e));
    }
    std::process::ExitCode::SUCCESS
}
