//! I/O: the daemon side of the control socket: accept, check who is asking, parse, hand the
//! request to the daemon's event loop with a reply channel, write the answer.
//!
//! Who may ask what is decided by the peer's credentials (`SO_PEERCRED`, `SO_PEERGROUPS`),
//! never by the path alone: root and the daemon's own user may send anything; members of the
//! operator group `edge` may only read (status, plans); anyone else is refused. The socket
//! file says the same (mode 0660, group `edge`; 0600 where there is no such group), so
//! others cannot even connect.

use std::io;
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};

use crate::proto::{
    ErrorCode, PROTOCOL_VERSION, Request, RequestEnvelope, Response, ResponseEnvelope,
};

/// Largest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;

/// How long a client may take to send its request line.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The group whose members may read status and plans.
pub const OPERATOR_GROUP: &str = "edge";

/// A request waiting for the daemon's answer.
#[derive(Debug)]
pub struct Incoming {
    /// The request.
    pub request: Request,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Response>,
}

/// What a peer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anything (root, or the daemon's own user).
    Full,
    /// Read-only requests (a member of the operator group).
    ReadOnly,
    /// Nothing.
    Refused,
}

/// The credentials of a connected peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its process id (0 when unknown).
    pub pid: i32,
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
    /// Its supplementary groups.
    pub groups: Vec<u32>,
}

/// Who may use a daemon's control socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// The daemon's own user id (a client running as it, such as the unit's `ExecReload=`,
    /// has full access).
    pub own_uid: u32,
    /// The operator group's id, when the group exists and the daemon is in it (or is root,
    /// and can give the socket to it).
    pub operators: Option<u32>,
}

impl Policy {
    /// The policy of this process: its effective user, and the group `edge` if it exists
    /// and this process may hand the socket to it.
    pub fn current() -> Policy {
        let own_uid = nix::unistd::geteuid().as_raw();
        let operators = nix::unistd::Group::from_name(OPERATOR_GROUP)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
            .filter(|&g| {
                own_uid == 0
                    || nix::unistd::getegid().as_raw() == g
                    || nix::unistd::getgroups().is_ok_and(|v| v.iter().any(|x| x.as_raw() == g))
            });
        Policy { own_uid, operators }
    }

    /// What `peer` may do.
    pub fn access(&self, peer: &Peer) -> Access {
        if peer.uid == 0 || peer.uid == self.own_uid {
            return Access::Full;
        }
        match self.operators {
            Some(g) if peer.gid == g || peer.groups.contains(&g) => Access::ReadOnly,
            _ => Access::Refused,
        }
    }
}

/// The answer to a request the peer may not send, or `None` when it may.
pub fn refusal(access: Access, peer: &Peer, request: &Request) -> Option<Response> {
    let message = match access {
        Access::Full => return None,
        Access::ReadOnly if request.is_read_only() => return None,
        Access::ReadOnly => format!(
            "`{}` changes the running system: only root may ask for it (you are uid {}, a member of group `{OPERATOR_GROUP}`, which may only read status and plans); run it with sudo",
            request.kind(),
            peer.uid
        ),
        Access::Refused => format!(
            "uid {} may not use this control socket: only root and members of group `{OPERATOR_GROUP}` (read-only) may; ask an administrator to run `adduser <you> {OPERATOR_GROUP}`, or use sudo",
            peer.uid
        ),
    };
    Some(Response::Error {
        code: ErrorCode::PermissionDenied,
        message,
    })
}

/// The supplementary groups of the peer of a Unix socket (`SO_PEERGROUPS`, Linux 4.13).
fn peer_groups(fd: std::os::fd::RawFd) -> Vec<u32> {
    // SO_PEERGROUPS is 59 on every architecture edge is built for (asm-generic); the libc
    // crate does not name it.
    const SO_PEERGROUPS: libc::c_int = 59;
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut len =
        libc::socklen_t::try_from(groups.len() * std::mem::size_of::<libc::gid_t>()).unwrap_or(0);
    // SAFETY: getsockopt writes at most `len` bytes into `groups`, which owns that many bytes,
    // and stores the length it wrote in `len`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_PEERGROUPS,
            groups.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Vec::new();
    }
    groups.truncate(len as usize / std::mem::size_of::<libc::gid_t>());
    groups
}

/// The credentials of the peer of `stream`.
pub fn peer_of(stream: &tokio::net::UnixStream) -> io::Result<Peer> {
    let cred = stream.peer_cred()?;
    Ok(Peer {
        pid: cred.pid().unwrap_or(0),
        uid: cred.uid(),
        gid: cred.gid(),
        groups: peer_groups(stream.as_raw_fd()),
    })
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
    /// The socket's group or mode could not be set.
    #[error("cannot give the control socket {path} to group `{OPERATOR_GROUP}`")]
    Permissions {
        /// Socket path.
        path: PathBuf,
        /// OS error.
        #[source]
        source: io::Error,
    },
}

/// Binds `path` (removing a stale socket) for the policy of this process and forwards the
/// requests each peer may send to `tx`.
pub async fn bind(
    path: &Path,
    tx: mpsc::Sender<Incoming>,
) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    bind_with(path, tx, Policy::current()).await
}

/// Binds `path` with mode 0660 and group `policy.operators` (0600 without one) and forwards
/// the requests each peer may send to `tx`. The directory is created (0755) if missing;
/// under systemd it is the unit's `RuntimeDirectory=`, which only the daemon may write.
pub async fn bind_with(
    path: &Path,
    tx: mpsc::Sender<Incoming>,
    policy: Policy,
) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    if let Some(dir) = path.parent()
        && !dir.is_dir()
    {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
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
    let perm = |source| ServerError::Permissions {
        path: path.to_owned(),
        source,
    };
    if let Some(g) = policy.operators {
        // Under the shipped units `edge` is the primary group, so the socket already has it;
        // chown is then not called at all (their seccomp filter denies it: @privileged).
        let has = std::fs::symlink_metadata(path).map_err(perm)?.gid();
        if has != g {
            std::os::unix::fs::chown(path, None, Some(g)).map_err(perm)?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(perm)?;
    } else {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(perm)?;
    }
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve_one(stream, tx, policy).await {
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

async fn serve_one(
    stream: tokio::net::UnixStream,
    tx: mpsc::Sender<Incoming>,
    policy: Policy,
) -> io::Result<()> {
    let peer = peer_of(&stream)?;
    let access = policy.access(&peer);
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(rd.take(MAX_REQUEST as u64));
    tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request line within 5 s"))??;
    let response = answer(&line, access, &peer, &tx).await;
    let mut out = serde_json::to_string(&ResponseEnvelope {
        version: PROTOCOL_VERSION,
        response,
    })
    .map_err(io::Error::other)?;
    out.push('\n');
    wr.write_all(out.as_bytes()).await?;
    wr.shutdown().await
}

/// The answer to one request line from `peer`.
async fn answer(line: &str, access: Access, peer: &Peer, tx: &mpsc::Sender<Incoming>) -> Response {
    let env = match serde_json::from_str::<RequestEnvelope>(line) {
        Ok(env) => env,
        Err(e) => {
            return Response::Error {
                code: ErrorCode::BadRequest,
                message: format!("cannot parse the request: {e}"),
            };
        }
    };
    if env.version != PROTOCOL_VERSION {
        return Response::Error {
            code: ErrorCode::UnsupportedVersion,
            message: format!(
                "this daemon speaks control protocol version {PROTOCOL_VERSION}, the request uses {}: use the edgectl of the same release",
                env.version
            ),
        };
    }
    if let Some(no) = refusal(access, peer, &env.request) {
        tracing::warn!(
            uid = peer.uid,
            pid = peer.pid,
            request = env.request.kind(),
            "control request refused"
        );
        return no;
    }
    let (reply, rx) = oneshot::channel();
    if tx
        .send(Incoming {
            request: env.request,
            reply,
        })
        .await
        .is_err()
    {
        return Response::Error {
            code: ErrorCode::Failed,
            message: "the daemon is shutting down".into(),
        };
    }
    rx.await.unwrap_or(Response::Error {
        code: ErrorCode::Failed,
        message: "the daemon dropped the request".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            pid: 1,
            uid,
            gid,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn root_and_the_daemon_itself_may_do_anything_operators_only_read() {
        let p = Policy {
            own_uid: 61780,
            operators: Some(996),
        };
        assert_eq!(p.access(&peer(0, 0, &[])), Access::Full);
        assert_eq!(p.access(&peer(61780, 61780, &[])), Access::Full);
        assert_eq!(p.access(&peer(1000, 1000, &[27, 996])), Access::ReadOnly);
        assert_eq!(p.access(&peer(1000, 996, &[])), Access::ReadOnly);
        assert_eq!(p.access(&peer(1001, 1001, &[27])), Access::Refused);
        let no_group = Policy {
            own_uid: 0,
            operators: None,
        };
        assert_eq!(no_group.access(&peer(1000, 996, &[996])), Access::Refused);
    }

    #[test]
    fn an_operator_reads_but_may_not_change_and_is_told_why() {
        let op = peer(1000, 1000, &[996]);
        for r in [Request::Ping, Request::Status, Request::Plan] {
            assert!(refusal(Access::ReadOnly, &op, &r).is_none(), "{r:?}");
        }
        for r in [
            Request::Reload,
            Request::Apply { confirm_secs: None },
            Request::Apply {
                confirm_secs: Some(60),
            },
            Request::Confirm,
        ] {
            let Some(Response::Error { code, message }) = refusal(Access::ReadOnly, &op, &r) else {
                panic!("{r:?} allowed for an operator");
            };
            assert_eq!(code, ErrorCode::PermissionDenied);
            assert!(
                message.contains("only root") && message.contains("sudo"),
                "{message}"
            );
            assert!(message.contains(r.kind()), "{message}");
        }
        let Some(Response::Error { message, .. }) =
            refusal(Access::Refused, &peer(1001, 1001, &[]), &Request::Status)
        else {
            panic!("status allowed for a stranger");
        };
        assert!(message.contains("adduser"), "{message}");
        assert!(refusal(Access::Full, &op, &Request::Confirm).is_none());
    }
}
