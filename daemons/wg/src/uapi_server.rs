//! I/O: serves the UAPI so that the stock `wg` tool (`show`, `showconf`, `set`, `syncconf`)
//! drives the device. The standalone mode binds `/var/run/wireguard/<ifname>.sock` itself,
//! like wireguard-go; the daemon binds in its own runtime directory
//! (`/run/edge/wg/<ifname>.sock`) and `/var/run/wireguard/<ifname>.sock` becomes a symlink
//! to it ([`link_public`]), so that the directory other implementations share is never
//! owned, emptied or removed by edge-wg.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::device::Device;
use crate::uapi::{self, Request};

/// Directory of the UAPI sockets, as `wg` expects it.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// Errors of UAPI socket setup.
#[derive(Debug, thiserror::Error)]
pub enum UapiServerError {
    /// Creating the socket directory failed.
    #[error("failed to create {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Another live process serves this socket.
    #[error("uapi socket {path} is in use by another process")]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Binding the socket failed.
    #[error("failed to bind uapi socket {path}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// What [`link_public`] found at the public path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicLink {
    /// The symlink was made (or a stale entry replaced by it).
    Linked,
    /// It already pointed at our socket.
    AlreadyLinked,
    /// Something alive is there (another implementation's socket, or not a socket at all):
    /// left alone.
    Occupied(String),
}

/// Errors of linking the public UAPI path.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The public directory could not be created.
    #[error("failed to create {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The symlink could not be made or removed.
    #[error("failed to link {path} to {target}")]
    Link {
        /// The public path.
        path: PathBuf,
        /// Our socket.
        target: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Makes `<public_dir>/<ifname>.sock` a symlink to `target` (our socket), so that `wg` finds
/// it. Replaces only what is ours or dead (a stale socket, a dangling symlink); a live
/// socket of another process stays. Equivalent to: `ln -sfn TARGET /run/wireguard/wg0.sock`.
pub fn link_public(
    public_dir: &Path,
    ifname: &str,
    target: &Path,
) -> Result<PublicLink, LinkError> {
    let path = public_dir.join(format!("{ifname}.sock"));
    let link_err = |source| LinkError::Link {
        path: path.clone(),
        target: target.to_owned(),
        source,
    };
    if !public_dir.is_dir() {
        std::fs::create_dir_all(public_dir).map_err(|source| LinkError::CreateDir {
            path: public_dir.to_owned(),
            source,
        })?;
        let _ = std::fs::set_permissions(public_dir, std::fs::Permissions::from_mode(0o755));
    }
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(link_err(e)),
        Ok(m) => {
            if m.file_type().is_symlink() && std::fs::read_link(&path).is_ok_and(|t| t == target) {
                return Ok(PublicLink::AlreadyLinked);
            }
            let is_socket_like = m.file_type().is_symlink()
                || std::os::unix::fs::FileTypeExt::is_socket(&m.file_type());
            if !is_socket_like {
                return Ok(PublicLink::Occupied(format!(
                    "{} is not a socket",
                    path.display()
                )));
            }
            if UnixStream::connect(&path).is_ok() {
                return Ok(PublicLink::Occupied(format!(
                    "{} is served by another process",
                    path.display()
                )));
            }
        }
    }
    // Made beside it and renamed over it: `wg` never sees a missing entry.
    let tmp = public_dir.join(format!(".{ifname}.sock.edge-wg"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(link_err)?;
    std::fs::rename(&tmp, &path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        link_err(e)
    })?;
    Ok(PublicLink::Linked)
}

/// Removes `<public_dir>/<ifname>.sock` if it is our symlink to `target`; true when removed.
/// Anything else there (another implementation's socket) stays.
pub fn unlink_public(public_dir: &Path, ifname: &str, target: &Path) -> Result<bool, LinkError> {
    let path = public_dir.join(format!("{ifname}.sock"));
    let ours = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink())
        && std::fs::read_link(&path).is_ok_and(|t| t == target);
    if !ours {
        return Ok(false);
    }
    std::fs::remove_file(&path).map_err(|source| LinkError::Link {
        path: path.clone(),
        target: target.to_owned(),
        source,
    })?;
    Ok(true)
}

/// The UAPI listener; removes its socket file when dropped.
#[derive(Debug)]
pub struct UapiServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A bound UAPI socket not yet served: bind before dropping privileges (the directory is
/// root's), serve after (so the serving thread inherits only the kept capabilities).
#[derive(Debug)]
pub struct BoundUapi {
    path: PathBuf,
    listener: UnixListener,
}

impl BoundUapi {
    /// Serves the socket on a thread.
    pub fn serve(self, dev: Arc<Device>) -> Result<UapiServer, UapiServerError> {
        let BoundUapi { path, listener } = self;
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wg-uapi".into())
            .spawn(move || serve(listener, dev, s2))
            .map_err(|source| UapiServerError::Bind {
                path: path.clone(),
                source,
            })?;
        info!(path = %path.display(), "uapi listening");
        Ok(UapiServer {
            path,
            stop,
            thread: Some(thread),
        })
    }
}

impl BoundUapi {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl UapiServer {
    /// Binds `<dir>/<ifname>.sock` and serves it on a thread.
    pub fn start(dir: &Path, dev: Arc<Device>) -> Result<UapiServer, UapiServerError> {
        Self::bind(dir, dev.name())?.serve(dev)
    }

    /// Binds `<dir>/<ifname>.sock` without serving it yet.
    pub fn bind(dir: &Path, ifname: &str) -> Result<BoundUapi, UapiServerError> {
        std::fs::create_dir_all(dir).map_err(|source| UapiServerError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
        let path = dir.join(format!("{ifname}.sock"));
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                return Err(UapiServerError::SocketInUse { path });
            }
            // stale socket of a dead process
            let _ = std::fs::remove_file(&path);
        }
        let listener = UnixListener::bind(&path).map_err(|source| UapiServerError::Bind {
            path: path.clone(),
            source,
        })?;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        listener
            .set_nonblocking(true)
            .map_err(|source| UapiServerError::Bind {
                path: path.clone(),
                source,
            })?;
        Ok(BoundUapi { path, listener })
    }

    /// True while the socket file still exists (wg-quick deletes it to stop a daemon).
    pub fn socket_exists(&self) -> bool {
        self.path.exists()
    }
}

impl Drop for UapiServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn serve(listener: UnixListener, dev: Arc<Device>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => {
                if let Err(e) = handle(s, &dev) {
                    debug!(error = %e, "uapi connection ended");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                warn!(error = %e, "uapi accept failed");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Serves requests on one connection until EOF.
fn handle(s: UnixStream, dev: &Arc<Device>) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    loop {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = r.read_line(&mut line)?;
            if n == 0 {
                return Ok(());
            }
            if line == "\n" {
                break;
            }
            text.push_str(&line);
            if text.len() > 1 << 20 {
                w.write_all(format!("errno={}\n\n", libc::ENOMEM).as_bytes())?;
                return Ok(());
            }
        }
        let reply = respond(&text, dev);
        w.write_all(reply.as_bytes())?;
    }
}

/// Handles one request text (without the final empty line) and returns the reply.
pub fn respond(text: &str, dev: &Arc<Device>) -> String {
    match uapi::parse_request(text) {
        Ok(Request::Get) => uapi::format_get(&dev.status()),
        Ok(Request::Set(req)) => match dev.apply_set(&req) {
            Ok(diff) => {
                debug!(?diff, "uapi set applied");
                "errno=0\n\n".to_string()
            }
            Err(e) => {
                warn!(error = %e, "uapi set refused");
                format!("errno={}\n\n", e.errno())
            }
        },
        Err(e) => {
            warn!(error = %e, "uapi request refused");
            format!("errno={}\n\n", e.errno())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_link_points_at_our_socket_and_is_removed_only_when_ours() {
        let d = tempfile::tempdir().unwrap();
        let public = d.path().join("wireguard");
        let ours = d.path().join("edge-wg0.sock");
        let _l = UnixListener::bind(&ours).unwrap();
        assert_eq!(
            link_public(&public, "wg0", &ours).unwrap(),
            PublicLink::Linked
        );
        assert_eq!(
            link_public(&public, "wg0", &ours).unwrap(),
            PublicLink::AlreadyLinked
        );
        // `wg` connects through the link.
        UnixStream::connect(public.join("wg0.sock")).unwrap();
        assert!(unlink_public(&public, "wg0", &ours).unwrap());
        assert!(!unlink_public(&public, "wg0", &ours).unwrap());
        assert!(public.is_dir(), "the shared directory stays");
    }

    #[test]
    fn another_implementations_live_socket_is_never_replaced_or_removed() {
        let d = tempfile::tempdir().unwrap();
        let public = d.path().to_path_buf();
        let theirs = public.join("wg0.sock");
        let _go = UnixListener::bind(&theirs).unwrap();
        let ours = d.path().join("ours.sock");
        let r = link_public(&public, "wg0", &ours).unwrap();
        assert!(matches!(r, PublicLink::Occupied(_)), "{r:?}");
        assert!(!unlink_public(&public, "wg0", &ours).unwrap());
        let m = std::fs::symlink_metadata(&theirs).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
        // A socket nobody serves any more (its process died) is replaced.
        drop(_go);
        assert_eq!(
            link_public(&public, "wg0", &ours).unwrap(),
            PublicLink::Linked
        );
    }
}
