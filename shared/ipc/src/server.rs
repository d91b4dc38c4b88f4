//! I/O: the daemon side of the control socket: accept, parse, hand the request to the
//! daemon's event loop with a reply channel, write the answer.

use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::proto::{
    ErrorCode, PROTOCOL_VERSION, Request, RequestEnvelope, Response, ResponseEnvelope,
};

/// Largest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

/// A request waiting for the daemon's answer.
#[derive(Debug)]
pub struct Incoming {
    /// The request.
    pub request: Request,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Response>,
}

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The runtime directory could not be created.
    #[error("cannot create the runtime directory {path}")]
    CreateDir {
        /// Directory.
        path: PathBuf,
        /// OS error.
        #[source]
        source: io::Error,
    },
    /// Another instance is already listening on the socket.
    #[error("another instance is already running: {path} answers connections")]
    AlreadyRunning {
        /// Socket path.
        path: PathBuf,
    },
    /// Binding failed.
    #[error("cannot bind the control socket {path}")]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// OS error.
        #[source]
        source: io::Error,
    },
}

/// Binds `path` with mode 0600 (removing a stale socket) and forwards requests to `tx`.
pub async fn bind(
    path: &Path,
    tx: mpsc::Sender<Incoming>,
) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(ServerError::AlreadyRunning {
                path: path.to_owned(),
            });
        }
        let _ = std::fs::remove_file(path);
    }
    // Create the socket inaccessible to others from the first moment.
    // SAFETY: umask only changes the process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let res = UnixListener::bind(path);
    // SAFETY: restores the previous mask.
    unsafe { libc::umask(old) };
    let listener = res.map_err(|source| ServerError::Bind {
        path: path.to_owned(),
        source,
    })?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_one(stream, tx).await {
                            tracing::debug!(error = %e, "control connection failed");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }))
}

async fn serve_one(stream: tokio::net::UnixStream, tx: mpsc::Sender<Incoming>) -> io::Result<()> {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(rd.take(MAX_REQUEST as u64));
    reader.read_line(&mut line).await?;
    let response = match serde_json::from_str::<RequestEnvelope>(&line) {
        Ok(env) if env.version != PROTOCOL_VERSION => Response::Error {
            code: ErrorCode::UnsupportedVersion,
            message: format!(
                "this daemon speaks control protocol version {PROTOCOL_VERSION}, the request uses {}: use the edgectl of the same release",
                env.version
            ),
        },
        Ok(env) => {
            let (reply, rx) = oneshot::channel();
            if tx
                .send(Incoming {
                    request: env.request,
                    reply,
                })
                .await
                .is_err()
            {
                Response::Error {
                    code: ErrorCode::Failed,
                    message: "the daemon is shutting down".into(),
                }
            } else {
                rx.await.unwrap_or(Response::Error {
                    code: ErrorCode::Failed,
                    message: "the daemon dropped the request".into(),
                })
            }
        }
        Err(e) => Response::Error {
            code: ErrorCode::BadRequest,
            message: format!("cannot parse the request: {e}"),
        },
    };
    let mut out = serde_json::to_string(&ResponseEnvelope {
        version: PROTOCOL_VERSION,
        response,
    })
    .map_err(io::Error::other)?;
    out.push('\n');
    wr.write_all(out.as_bytes()).await?;
    wr.shutdown().await
}
