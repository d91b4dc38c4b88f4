//! I/O: bringing an interface up, one way for the daemon and the standalone mode: open the
//! TUN queues, start the engine ([`open`]); then — after the caller configured it — bind the
//! UAPI socket, drop privileges, and serve the UAPI ([`Opened::serve`]).
//!
//! The order matters: the TUN and the UAPI socket's directory need privileges, and the
//! serving thread is started after the drop so that it inherits only what was kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::device::{Device, DeviceError, Options};
use crate::privileges::{self, PrivilegeError};
use crate::tun::{self, TunError};
use crate::uapi_server::{UapiServer, UapiServerError};

/// Errors of bringing an interface up.
#[derive(Debug, thiserror::Error)]
pub enum BringupError {
    /// The TUN device could not be opened.
    #[error("failed to open tun {name}")]
    OpenTun {
        /// The interface.
        name: String,
        /// The cause.
        #[source]
        source: TunError,
    },
    /// The engine's threads could not be started.
    #[error("failed to start the wireguard device {name}")]
    StartDevice {
        /// The interface.
        name: String,
        /// The cause.
        #[source]
        source: DeviceError,
    },
    /// The UAPI socket could not be bound or served.
    #[error("failed to set up the uapi socket of {name}")]
    Uapi {
        /// The interface.
        name: String,
        /// The cause.
        #[source]
        source: UapiServerError,
    },
    /// Switching to the configured user failed.
    #[error("failed to drop privileges to {user}")]
    DropPrivileges {
        /// The user.
        user: String,
        /// The cause.
        #[source]
        source: PrivilegeError,
    },
}

/// TUN queues (one TX thread each) when not told: one per CPU, at most 4.
pub fn default_queues() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4)
}

/// An interface whose TUN is open and whose engine runs, not yet served over the UAPI.
#[derive(Debug)]
pub struct Opened {
    /// The engine.
    pub dev: Arc<Device>,
    name: String,
    /// The TUN existed before start (created beforehand and owned by the service user):
    /// then no capability needs to be kept after the privilege drop.
    preexisting: bool,
}

/// The served interface: the engine and its UAPI listener.
#[derive(Debug)]
pub struct Running {
    /// The engine.
    pub dev: Arc<Device>,
    /// The UAPI listener (removes its socket when dropped).
    pub uapi: UapiServer,
    /// The UAPI socket's path.
    pub uapi_path: PathBuf,
}

/// Opens `queues` queues of the TUN `name` and starts the engine on them (no key, no peers,
/// no port: configure it with [`Device::apply`]).
pub fn open(name: &str, queues: usize, opts: &Options) -> Result<Opened, BringupError> {
    let preexisting = Path::new("/sys/class/net").join(name).exists();
    let tun = tun::open(name, queues).map_err(|source| BringupError::OpenTun {
        name: name.to_owned(),
        source,
    })?;
    let dev = Device::start(name, tun, opts).map_err(|source| BringupError::StartDevice {
        name: name.to_owned(),
        source,
    })?;
    Ok(Opened {
        dev,
        name: name.to_owned(),
        preexisting,
    })
}

impl Opened {
    /// Binds `<uapi_dir>/<name>.sock`, calls `on_bound` with its path while still
    /// privileged (the daemon links it where `wg` looks), switches to `user` if given
    /// (keeping `CAP_NET_ADMIN` unless the TUN pre-existed), then serves the UAPI.
    pub fn serve(
        self,
        uapi_dir: &Path,
        user: Option<&str>,
        on_bound: impl FnOnce(&Path),
    ) -> Result<Running, BringupError> {
        let uapi_err = |source| BringupError::Uapi {
            name: self.name.clone(),
            source,
        };
        let bound = UapiServer::bind(uapi_dir, &self.name).map_err(uapi_err)?;
        let uapi_path = bound.path().to_owned();
        on_bound(&uapi_path);
        if let Some(user) = user {
            privileges::drop_to(user, !self.preexisting).map_err(|source| {
                BringupError::DropPrivileges {
                    user: user.to_owned(),
                    source,
                }
            })?;
        }
        let uapi = bound.serve(self.dev.clone()).map_err(uapi_err)?;
        Ok(Running {
            dev: self.dev,
            uapi,
            uapi_path,
        })
    }
}
