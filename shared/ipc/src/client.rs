//! I/O: the client side of the control socket, used by `edgectl`.

use std::io;
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
        "permission denied on {path}: the {unit} control socket is readable by root only (mode 0600); run edgectl as root (sudo edgectl ...)"
    )]
    PermissionDenied {
        /// Unit name.
        unit: String,
        /// Socket path.
        path: PathBuf,
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
