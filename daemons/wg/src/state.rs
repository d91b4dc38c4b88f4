//! I/O: the daemon's endpoint memory, `<state_dir>/wg/endpoints.json` (config mode only;
//! the UAPI-only mode keeps no state). Read once at start; written atomically (temporary
//! file with mode 0600, fsync, rename, fsync of the directory) only when the set of
//! remembered endpoints changes, checked at most once a second, never per packet.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};

use crate::device::Device;
use crate::endpoints::{Endpoints, ParseError};

/// Errors of reading and writing the endpoints file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Creating the state directory failed.
    #[error("failed to create the state directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Handing the state directory to the service user failed.
    #[error("failed to give the state directory {path} to uid {uid}")]
    ChownDir {
        /// The directory.
        path: PathBuf,
        /// The new owner.
        uid: u32,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading the file failed.
    #[error("failed to read the endpoints file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file's content is not a valid endpoints file.
    #[error("failed to parse the endpoints file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: ParseError,
    },
    /// Writing the file failed; the previous file is left as it was.
    #[error("failed to write the endpoints file {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The directory of edge-wg's state inside `state_dir` (systemd's `StateDirectory=edge/wg`).
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("wg")
}

/// The endpoints file inside `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    dir(state_dir).join("endpoints.json")
}

/// Creates the state directory (mode 0700) and, when the daemon is about to switch to
/// another user, gives it to that user so that it can still write there.
/// Equivalent to: `install -d -m 0700 -o USER /var/lib/edge/wg`.
pub fn prepare_dir(dir: &Path, owner: Option<(Uid, Gid)>) -> Result<(), StateError> {
    let create = |source| StateError::CreateDir {
        path: dir.to_owned(),
        source,
    };
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(create)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(create)?;
    }
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(dir, Some(uid), Some(gid)).map_err(|e| StateError::ChownDir {
            path: dir.to_owned(),
            uid: uid.as_raw(),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// Reads the file; `Ok(None)` when it does not exist.
pub fn read(file: &Path) -> Result<Option<Endpoints>, StateError> {
    let text = match fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: file.to_owned(),
                source,
            });
        }
    };
    Endpoints::parse(&text)
        .map(Some)
        .map_err(|source| StateError::Parse {
            path: file.to_owned(),
            source,
        })
}

/// Writes the file atomically: a reader (or a crash) sees the old file or the new one,
/// never a partial one. Equivalent to: `cat > endpoints.json.tmp && mv endpoints.json.tmp
/// endpoints.json`, with the temporary file created 0600 and synced first.
pub fn save(file: &Path, endpoints: &Endpoints) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: file.to_owned(),
        source,
    };
    let text = endpoints
        .render()
        .map_err(|e| err(std::io::Error::other(e)))?;
    let tmp = file.with_extension("json.tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    // A temporary file left by a crash may carry other permissions: mode() only applies
    // to files it creates.
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    fs::rename(&tmp, file).map_err(err)?;
    // The rename itself is durable once the directory is synced.
    if let Some(d) = file.parent()
        && let Ok(dh) = fs::File::open(d)
    {
        let _ = dh.sync_all();
    }
    Ok(())
}

/// The daemon's endpoint memory: the file and what it holds.
#[derive(Debug)]
pub struct EndpointStore {
    path: PathBuf,
    saved: Endpoints,
    seen_epoch: u64,
    failing: bool,
}

impl EndpointStore {
    /// Loads `<state_dir>/wg/endpoints.json`; a missing file is an empty memory, an
    /// unreadable or corrupt one is ignored with a warning (it is replaced at the next
    /// write).
    pub fn open(state_dir: &Path) -> EndpointStore {
        let path = path(state_dir);
        let saved = match read(&path) {
            Ok(Some(e)) => {
                tracing::info!(path = %path.display(), peers = e.0.len(), "remembered endpoints loaded");
                e
            }
            Ok(None) => Endpoints::default(),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring the endpoints file: {}", chain(&e));
                Endpoints::default()
            }
        };
        EndpointStore {
            path,
            saved,
            seen_epoch: u64::MAX,
            failing: false,
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the file holds (as loaded or last written).
    pub fn remembered(&self) -> &Endpoints {
        &self.saved
    }

    /// Writes the file if the device's endpoints moved since the last check and what is
    /// worth remembering changed; cheap when nothing moved (one atomic load).
    pub fn sync_if_moved(&mut self, dev: &Device) {
        let epoch = dev.endpoint_epoch();
        if epoch != self.seen_epoch {
            self.sync(dev, epoch);
        }
    }

    /// Writes the file now if what is worth remembering changed (at shutdown).
    pub fn sync_now(&mut self, dev: &Device) {
        let epoch = dev.endpoint_epoch();
        self.sync(dev, epoch);
    }

    fn sync(&mut self, dev: &Device, epoch: u64) {
        let want = Endpoints::from_live(&dev.live_endpoints());
        if want == self.saved {
            self.seen_epoch = epoch;
            return;
        }
        match save(&self.path, &want) {
            Ok(()) => {
                tracing::info!(path = %self.path.display(), peers = want.0.len(), "remembered endpoints written");
                self.saved = want;
                self.seen_epoch = epoch;
                self.failing = false;
            }
            // Not fatal: the tunnel works; only the next restart is slower. Retried at the
            // next check; warned once per failing streak.
            Err(e) => {
                if !self.failing {
                    tracing::warn!("{}", chain(&e));
                }
                self.failing = true;
            }
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::os::unix::fs::MetadataExt as _;
    use std::sync::{Arc, Mutex};

    use super::*;

    fn sample() -> Endpoints {
        crate::endpoints::two_peers("[2001:db8::2]:40000")
    }

    /// Collects what a tracing subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn open_capturing(state_dir: &Path) -> (EndpointStore, String) {
        let cap = Captured::default();
        let c2 = cap.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || c2.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let store = tracing::subscriber::with_default(sub, || EndpointStore::open(state_dir));
        let log = String::from_utf8_lossy(&cap.0.lock().unwrap()).into_owned();
        (store, log)
    }

    #[test]
    fn round_trip_through_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = path(d.path());
        assert!(read(&p).unwrap().is_none(), "no file yet");
        prepare_dir(&dir(d.path()), None).unwrap();
        assert_eq!(
            fs::metadata(dir(d.path())).unwrap().mode() & 0o777,
            0o700,
            "state directory is private"
        );
        save(&p, &sample()).unwrap();
        assert_eq!(read(&p).unwrap(), Some(sample()));
        let (store, log) = open_capturing(d.path());
        assert_eq!(store.remembered(), &sample());
        assert!(!log.contains("WARN"), "{log}");
    }

    #[test]
    fn save_is_atomic_and_private() {
        let d = tempfile::tempdir().unwrap();
        prepare_dir(&dir(d.path()), None).unwrap();
        let p = path(d.path());
        let tmp = p.with_extension("json.tmp");
        // A stale, world-readable temporary file from a crash is replaced, not trusted.
        fs::write(&tmp, "garbage").unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).unwrap();
        save(&p, &Endpoints::default()).unwrap();
        let ino_before = fs::metadata(&p).unwrap().ino();
        save(&p, &sample()).unwrap();
        let meta = fs::metadata(&p).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600, "file mode");
        assert_ne!(
            meta.ino(),
            ino_before,
            "the file is replaced by a rename, not rewritten in place"
        );
        assert!(!tmp.exists(), "no temporary file left behind");
        // A write that fails half way (here: the temporary file cannot be created) leaves
        // the previous file whole.
        fs::create_dir(&tmp).unwrap();
        let err = save(&p, &Endpoints::default()).unwrap_err();
        assert!(matches!(err, StateError::Write { .. }), "{err:?}");
        assert!(err.to_string().contains("endpoints.json"), "{err}");
        assert_eq!(read(&p).unwrap(), Some(sample()));
    }

    #[test]
    fn a_corrupt_file_is_ignored_with_a_warning() {
        let d = tempfile::tempdir().unwrap();
        prepare_dir(&dir(d.path()), None).unwrap();
        let p = path(d.path());
        // Truncated, as a non-atomic writer could have left it.
        let text = sample().render().unwrap();
        fs::write(&p, &text[..text.len() / 2]).unwrap();
        assert!(matches!(read(&p), Err(StateError::Parse { .. })));
        let (store, log) = open_capturing(d.path());
        assert_eq!(store.remembered(), &Endpoints::default());
        assert!(
            log.contains("WARN") && log.contains("ignoring the endpoints file"),
            "{log}"
        );
        assert!(
            log.contains(&p.display().to_string()),
            "names the file: {log}"
        );
        // Another version is not guessed at either.
        fs::write(&p, r#"{"version": 2, "peers": {}}"#).unwrap();
        let (store, log) = open_capturing(d.path());
        assert!(store.remembered().0.is_empty());
        assert!(log.contains("version 2"), "{log}");
    }
}
