//! I/O: the role file `<runtime_dir>/ha.json` (read by every daemon, written atomically by
//! the FIFO reader) and [`Follower`], the helper each daemon calls at start, on a
//! `SetRole` request, on reload and whenever it wants to be sure (level-triggered).
//!
//! ```text
//! start:      let mut ha = Follower::start(shell.config());        // reads the file
//! SetRole:    let change = ha.set_role(state); r.send(ha.answer(&change)); act on change
//! reload:     let change = ha.reload(&cfg);                         // [ha] added/removed
//! any time:   ha.refresh();  ha.standing().is_active()
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};

use edge_config::Config;

use crate::ha::{Change, RoleModel, RoleState, RoleStatus, STATE_FILE, Standing};
use crate::proto::{ErrorCode, Response};

/// Why the role file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading failed.
    #[error("cannot read the role file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a role document.
    #[error("the role file {path} is not a valid role document")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Writing failed.
    #[error("cannot write the role file {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The role file under `runtime_dir`.
pub fn state_path(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(STATE_FILE)
}

/// Reads the role file; `None` when it does not exist (no event yet).
pub fn read_state(path: &Path) -> Result<Option<RoleState>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| StateError::Parse {
            path: path.to_owned(),
            source,
        })
}

/// Writes `content` to `path` atomically (a temporary file in the same directory, renamed
/// over it), mode 0644: readers see the old or the new file, never a part.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<(), std::io::Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Writes the role file atomically.
pub fn write_state(path: &Path, state: &RoleState) -> Result<(), StateError> {
    let mut text = serde_json::to_vec_pretty(state).map_err(|source| StateError::Parse {
        path: path.to_owned(),
        source,
    })?;
    text.push(b'\n');
    write_atomic(path, &text).map_err(|source| StateError::Write {
        path: path.to_owned(),
        source,
    })
}

/// A daemon's role, kept in step with the file and the `SetRole` requests.
#[derive(Debug, Clone)]
pub struct Follower {
    model: RoleModel,
    path: PathBuf,
}

fn instance_of(cfg: &Config) -> Option<String> {
    cfg.ha.as_ref().map(|h| h.instance.clone())
}

impl Follower {
    /// The role at start: a single host without `[ha]`; otherwise what the file says, or
    /// BACKUP before any event (keepalived starts in BACKUP).
    pub fn start(cfg: &Config) -> Follower {
        let mut f = Follower {
            model: RoleModel::new(instance_of(cfg)),
            path: state_path(&cfg.global.runtime_dir),
        };
        f.refresh();
        if cfg.ha.is_some() {
            tracing::info!(
                role = %f.standing(),
                generation = f.model.status().generation,
                file = %f.path.display(),
                "following keepalived's role"
            );
        }
        f
    }

    /// What the daemon does now.
    pub fn standing(&self) -> Standing {
        self.model.standing()
    }

    /// The newest role taken.
    pub fn held(&self) -> Option<&RoleState> {
        self.model.held()
    }

    /// Re-reads the file and takes it when newer. An unreadable file is logged and leaves
    /// the role as it was.
    pub fn refresh(&mut self) -> Change {
        if self.model.instance().is_none() {
            return Change::NotOurs;
        }
        match read_state(&self.path) {
            Ok(Some(s)) => self.take(s),
            Ok(None) => Change::Same,
            Err(e) => {
                tracing::warn!(
                    "{}; keeping role {}",
                    edge_util::error_chain(&e),
                    self.standing()
                );
                Change::Same
            }
        }
    }

    /// Takes a role sent with `SetRole`.
    pub fn set_role(&mut self, state: RoleState) -> Change {
        self.take(state)
    }

    fn take(&mut self, state: RoleState) -> Change {
        let generation = state.generation;
        let event = state.event.clone();
        let change = self.model.offer(state);
        if let Change::Changed { from, to } = &change {
            tracing::info!(%from, %to, generation, event = %event, "role changed");
        }
        change
    }

    /// Follows a new configuration (`[ha]` added, removed, another instance) and re-reads
    /// the file.
    pub fn reload(&mut self, cfg: &Config) -> Change {
        self.path = state_path(&cfg.global.runtime_dir);
        let first = self.model.reconfigure(instance_of(cfg));
        let from = match &first {
            Change::Changed { from, .. } => *from,
            _ => self.standing(),
        };
        self.refresh();
        let to = self.standing();
        if from == to {
            Change::Same
        } else {
            tracing::info!(%from, %to, "role changed with the configuration");
            Change::Changed { from, to }
        }
    }

    /// The answer to a `SetRole` request.
    pub fn answer(&self, change: &Change) -> Response {
        let st = self.model.status();
        let detail = serde_json::json!({
            "standing": st.standing,
            "generation": st.generation,
            "changed": matches!(change, Change::Changed { .. }),
        });
        match change {
            Change::NotOurs if self.model.instance().is_none() => Response::Error {
                code: ErrorCode::Failed,
                message: "this host has no [ha] section: it is a single host and ignores roles"
                    .to_owned(),
            },
            Change::NotOurs => Response::Error {
                code: ErrorCode::Failed,
                message: format!(
                    "the role is for another VRRP instance; this host follows `{}`",
                    self.model.instance().unwrap_or_default()
                ),
            },
            Change::Stale { held } => Response::Done {
                message: format!("stale: generation {held} is already held"),
                detail,
            },
            Change::Same | Change::Changed { .. } => Response::Done {
                message: format!("{} (generation {})", st.standing, st.generation),
                detail,
            },
        }
    }

    /// The status part.
    pub fn status(&self) -> RoleStatus {
        self.model.status()
    }
}
