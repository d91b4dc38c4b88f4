//! I/O: what was published, persisted in `<state_dir>/ddns/state.json` so that a restart costs no
//! extra API call: zone ids, and per record its id, the address it holds and when that was
//! last confirmed by the API; the end of a Cloudflare rate-limit pause, so that a restart
//! within it keeps waiting; and the run of failed syncs, so that `ddns.sync_failing` and
//! `ddns.sync_recovered` are sent once each across restarts (and `--once` runs). Written
//! atomically (temporary file + rename).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use edge_notify::Streak;
use serde::{Deserialize, Serialize};

use crate::model::RecordKey;

/// Format version of the state file.
pub const STATE_VERSION: u32 = 1;

/// Why the state could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Writing the file failed.
    #[error("cannot write the state file {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A record as last published or confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Zone id.
    pub zone_id: String,
    /// Record id.
    pub record_id: String,
    /// The address it holds.
    pub content: String,
    /// Unix time the API last confirmed it.
    pub verified_at: u64,
    /// Unix time it was last written by edge, if ever.
    #[serde(default)]
    pub changed_at: Option<u64>,
}

/// The persisted state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Format version.
    pub version: u32,
    /// Zone name -> zone id.
    #[serde(default)]
    pub zones: BTreeMap<String, String>,
    /// Record -> what it holds.
    #[serde(default)]
    pub records: BTreeMap<RecordKey, Published>,
    /// Unix time (seconds, rounded up) before which no API request may be sent: the end of
    /// the last rate-limit pause (`Retry-After`, or a spent `Ratelimit` window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited_until: Option<u64>,
    /// Consecutive failed syncs, and whether they were reported as failing.
    #[serde(default, skip_serializing_if = "is_default")]
    pub failures: Streak,
}

fn is_default(s: &Streak) -> bool {
    *s == Streak::default()
}

impl Default for State {
    fn default() -> Self {
        Self {
            version: STATE_VERSION,
            zones: BTreeMap::new(),
            records: BTreeMap::new(),
            rate_limited_until: None,
            failures: Streak::default(),
        }
    }
}

/// The state file: `<state_dir>/ddns/state.json` (the unit's `StateDirectory=edge/ddns` is
/// the only place under `/var/lib` the hardened service may write).
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("ddns").join("state.json")
}

/// Loads the state; a missing, unreadable or foreign file yields an empty state (it is only
/// a cache of what the API says: the next sync re-reads what it needs).
pub fn load(file: &Path) -> State {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return State::default(),
        Err(e) => {
            tracing::warn!(path = %file.display(), "cannot read the state file, starting empty: {e}");
            return State::default();
        }
    };
    match serde_json::from_str::<State>(&text) {
        Ok(s) if s.version == STATE_VERSION => s,
        Ok(s) => {
            tracing::warn!(path = %file.display(), version = s.version, "state file of another version, starting empty");
            State::default()
        }
        Err(e) => {
            tracing::warn!(path = %file.display(), "state file is corrupt, starting empty: {e}");
            State::default()
        }
    }
}

/// Saves the state atomically. Equivalent to: `cat > state.json.tmp && mv state.json.tmp state.json`.
pub fn save(file: &Path, state: &State) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: file.to_owned(),
        source,
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = file.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(state).map_err(|e| err(std::io::Error::other(e)))?;
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(&text).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, file).map_err(err)
}

/// Writes the end of a rate-limit pause into the file, keeping everything else it holds (the
/// pause must survive a restart before the sync that met it saves the whole state).
pub fn save_pause(file: &Path, until: u64) -> Result<(), StateError> {
    let mut s = load(file);
    if s.rate_limited_until == Some(until) {
        return Ok(());
    }
    s.rate_limited_until = Some(until);
    save(file, &s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_config::ddns::RecordType;

    #[test]
    fn state_round_trips_and_bad_files_start_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        assert_eq!(load(&p), State::default());
        let mut s = State::default();
        s.zones.insert("example.com".into(), "z".repeat(32));
        s.records.insert(
            RecordKey::new(RecordType::A, "example.com"),
            Published {
                zone_id: "z".repeat(32),
                record_id: "r".repeat(32),
                content: "81.2.69.160".into(),
                verified_at: 1000,
                changed_at: Some(900),
            },
        );
        save(&p, &s).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"A example.com\""), "{text}");
        assert_eq!(load(&p), s);
        std::fs::write(&p, "{not json").unwrap();
        assert_eq!(load(&p), State::default());
    }

    #[test]
    fn the_pause_is_saved_beside_the_records_and_old_files_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        // A file written before the pause was persisted.
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            &p,
            r#"{"version":1,"zones":{"example.com":"zz"},"records":{}}"#,
        )
        .unwrap();
        let old = load(&p);
        assert_eq!(old.zones["example.com"], "zz");
        assert_eq!(old.rate_limited_until, None);
        assert_eq!(old.failures, Streak::default());
        save_pause(&p, 1_700_000_300).unwrap();
        let s = load(&p);
        assert_eq!(s.rate_limited_until, Some(1_700_000_300));
        assert_eq!(s.zones, old.zones, "the rest of the file is kept");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains("\"rate_limited_until\": 1700000300"),
            "{text}"
        );
        assert!(!text.contains("failures"), "no streak, no field: {text}");
    }

    #[test]
    fn the_failure_streak_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        let mut s = State::default();
        assert_eq!(s.failures.record(false, 3), None);
        assert_eq!(s.failures.record(false, 3), None);
        save(&p, &s).unwrap();
        let mut back = load(&p);
        assert_eq!(back, s);
        assert_eq!(
            back.failures.record(false, 3),
            Some(edge_notify::StreakChange::Failing { failed_runs: 3 })
        );
    }
}
