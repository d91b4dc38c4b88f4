//! I/O: serves the UAPI on `/var/run/wireguard/<ifname>.sock` so that the stock `wg`
//! tool (`show`, `showconf`, `set`, `syncconf`) drives the device.

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
