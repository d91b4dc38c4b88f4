//! I/O: the client side of the control socket, used by `edgectl`.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use edge_config::Role;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::proto::{PROTOCOL_VERSION, Request, RequestEnvelope, Response, ResponseEnvelope};

/// Why a daemon could not be asked; each message says which unit and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No socket: the daemon is not running (or uses another runtime dir).
    #[error(
        "{unit} is not running: no control socket at {path} (start it with `systemctl start {unit}`, or check `global.runtime_dir`)"
    )]
    NotRunning {
        /// Unit name.
        unit: String,
        /// Socket path.
        path: PathBuf,
    },
    /// The socket exists but nobody listens (the daemon died).
    #[error(
        "{unit} is not answering: {path} exists but refuses connections (the daemon died; see `journalctl -u {unit}`)"
    )]
    Refused {
        /// Unit name.
        unit: String,
        /// Socket path.
        path: PathBuf,
    },
    /// The socket is not accessible to this user.
    #[error(
        "permission denied on {path}: only root and members of group `edge` (read-only) may talk to {unit}; run edgectl with sudo, or ask an administrator for `adduser <you> edge` (then log in again)"
    )]
    PermissionDenied {
        /// Unit name.
        unit: String,
        /// Socket path.
        path: PathBuf,
    },
    /// The process answering is not the daemon: neither root nor the owner of the socket's
    /// directory (under systemd, the unit's own `RuntimeDirectory=`).
    #[error(
        "the process answering on {path} (pid {pid}, uid {uid}) is not {unit}: the directory {dir} belongs to uid {owner}; refusing to talk to it (restart {unit} with `systemctl restart {unit}` and find who created the socket)"
    )]
    Impostor {
        /// Unit name.
        unit: String,
        /// Socket path.
        path: PathBuf,
        /// The socket's directory.
        dir: PathBuf,
        /// The owner of the directory.
        owner: u32,
        /// The peer's process id (0 when unknown).
        pid: i32,
        /// The peer's user id.
        uid: u32,
    },
    /// Connecting failed otherwise.
    #[error("cannot connect to {unit} at {path}")]
    Connect {
        /// Unit name.
        unit: String,
        /// Socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The exchange failed mid-way.
    #[error("talking to {unit} at {path} failed")]
    Io {
        /// Unit name.
        unit: String,
        /// Socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The daemon took too long.
    #[error("{unit} did not answer within {secs} s")]
    Timeout {
        /// Unit name.
        unit: String,
        /// Seconds waited.
        secs: u64,
    },
    /// The answer was not understood.
    #[error("{unit} sent an answer this edgectl does not understand (version mismatch?)")]
    BadResponse {
        /// Unit name.
        unit: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
}

/// Why a peer check failed.
enum PeerCheck {
    Io(io::Error),
    Impostor(ClientError),
}

/// A client for one daemon's control socket.
#[derive(Debug, Clone)]
pub struct Client {
    role: Role,
    path: PathBuf,
    timeout: Duration,
}

impl Client {
    /// A client for `role` at `socket`.
    pub fn new(role: Role, socket: impl Into<PathBuf>) -> Self {
        Self {
            role,
            path: socket.into(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Changes the answer timeout (default 30 s; confirm-applies take longer).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn unit(&self) -> String {
        self.role.binary().to_owned()
    }

    /// The daemon is root or the owner of the socket's directory: a process that replaced
    /// the socket from elsewhere (another daemon's user) is not talked to.
    fn check_peer(&self, stream: &UnixStream) -> Result<(), PeerCheck> {
        let cred = stream.peer_cred().map_err(PeerCheck::Io)?;
        let dir = self.path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let owner = std::fs::metadata(&dir).map_err(PeerCheck::Io)?.uid();
        if cred.uid() == 0 || cred.uid() == owner {
            return Ok(());
        }
        Err(PeerCheck::Impostor(ClientError::Impostor {
            unit: self.unit(),
            path: self.path.clone(),
            dir,
            owner,
            pid: cred.pid().unwrap_or(0),
            uid: cred.uid(),
        }))
    }

    /// Sends one request and waits for the answer.
    pub async fn request(&self, request: Request) -> Result<Response, ClientError> {
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout {
                unit: self.unit(),
                secs: self.timeout.as_secs(),
            }),
        }
    }

    async fn exchange(&self, request: Request) -> Result<Response, ClientError> {
        let stream = UnixStream::connect(&self.path).await.map_err(|e| {
            let (unit, path) = (self.unit(), self.path.clone());
            match e.kind() {
                io::ErrorKind::NotFound => ClientError::NotRunning { unit, path },
                io::ErrorKind::ConnectionRefused => ClientError::Refused { unit, path },
                io::ErrorKind::PermissionDenied => ClientError::PermissionDenied { unit, path },
                _ => ClientError::Connect {
                    unit,
                    path,
                    source: e,
                },
            }
        })?;
        let io_err = |source| ClientError::Io {
            unit: self.unit(),
            path: self.path.clone(),
            source,
        };
        self.check_peer(&stream).map_err(|e| match e {
            PeerCheck::Io(source) => io_err(source),
            PeerCheck::Impostor(e) => e,
        })?;
        let (rd, mut wr) = stream.into_split();
        let mut line = serde_json::to_string(&RequestEnvelope {
            version: PROTOCOL_VERSION,
            request,
        })
        .map_err(|e| io_err(io::Error::other(e)))?;
        line.push('\n');
        wr.write_all(line.as_bytes()).await.map_err(io_err)?;
        wr.shutdown().await.map_err(io_err)?;
        let mut answer = String::new();
        BufReader::new(rd)
            .read_line(&mut answer)
            .await
            .map_err(io_err)?;
        let env: ResponseEnvelope =
            serde_json::from_str(&answer).map_err(|source| ClientError::BadResponse {
                unit: self.unit(),
                source,
            })?;
        Ok(env.response)
    }
}
