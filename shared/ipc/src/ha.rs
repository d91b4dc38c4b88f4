//! Pure: the role of this host under keepalived (two edge hosts, `[ha]`), as the notify FIFO
//! reader (`edgectl ha fifo`) publishes it in `<runtime_dir>/ha.json` and sends it to every
//! daemon ([`crate::Request::SetRole`]), and the model each daemon keeps of it.
//!
//! Level-triggered: a daemon reads the file at start and takes every newer generation it is
//! sent, so a lost or late message, a restart, or keepalived starting in BACKUP and going
//! MASTER at once all end in the same state. A generation never goes back: an older message
//! (a late delivery) is stale and ignored.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Version of the `ha.json` document and of [`RoleState`].
pub const STATE_VERSION: u32 = 1;
/// The file name of the role document inside `global.runtime_dir`.
pub const STATE_FILE: &str = "ha.json";
/// The file keepalived tracks (`track_file`) inside `global.runtime_dir`: `0` when this
/// host is healthy, `1` when it is not (keepalived then lowers its priority).
pub const HEALTH_FILE: &str = "ha-health";
/// Why the health is what it is ([`Health`] as JSON), beside [`HEALTH_FILE`].
pub const HEALTH_REPORT_FILE: &str = "ha-health.json";

/// keepalived's state of the VRRP instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HaRole {
    /// This host holds the virtual addresses.
    Master,
    /// The other host does (or nobody: keepalived starts here).
    Backup,
    /// keepalived found this host unfit (a tracked interface down): behaves as BACKUP.
    Fault,
}

impl HaRole {
    /// keepalived's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            HaRole::Master => "MASTER",
            HaRole::Backup => "BACKUP",
            HaRole::Fault => "FAULT",
        }
    }
}

impl fmt::Display for HaRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a daemon does: everything (a single host, or the master), or stand by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    /// No `[ha]`: a single host, exactly as before.
    Single,
    /// `[ha]`, keepalived's MASTER.
    Master,
    /// `[ha]`, BACKUP (also before any role is known: keepalived starts in BACKUP).
    Backup,
    /// `[ha]`, FAULT: behaves as BACKUP and never flushes anything.
    Fault,
}

impl Standing {
    /// True when this host does the public work: writes DNS, initiates WireGuard
    /// handshakes, masquerades to the virtual address (a single host or the master).
    pub fn is_active(self) -> bool {
        matches!(self, Standing::Single | Standing::Master)
    }

    /// The standing a role gives.
    pub fn of(role: HaRole) -> Standing {
        match role {
            HaRole::Master => Standing::Master,
            HaRole::Backup => Standing::Backup,
            HaRole::Fault => Standing::Fault,
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Single => "single",
            Standing::Master => "master",
            Standing::Backup => "backup",
            Standing::Fault => "fault",
        }
    }
}

impl fmt::Display for Standing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to conntrackd's tables when the role was taken (MASTER: the peer's
/// connections committed into the kernel before any daemon was told).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ConntrackSync {
    /// `[ha] conntrackd = false`.
    Disabled,
    /// The conntrackd commands for this role succeeded.
    Done,
    /// A conntrackd command failed (the role was published anyway).
    Failed {
        /// What failed.
        error: String,
    },
}

/// This host's health as the FIFO reader last wrote it to keepalived's track file.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Health {
    /// True when every check passed.
    pub ok: bool,
    /// The failed checks (`edge-fw: table not applied`, `br-api: no carrier`).
    #[serde(default)]
    pub problems: Vec<String>,
    /// Unix time of the check.
    pub at: u64,
}

/// The role document: the content of `ha.json` and of a `SetRole` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleState {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// The VRRP instance (`[ha] instance`).
    pub instance: String,
    /// The role.
    pub role: HaRole,
    /// Increases by one with every event; never goes back.
    pub generation: u64,
    /// Unix time the role was taken.
    pub since: u64,
    /// The keepalived line's state word (`MASTER`, `BACKUP`, `FAULT`, `STOP`).
    pub event: String,
    /// The priority keepalived reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u16>,
    /// What conntrackd did for this role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack: Option<ConntrackSync>,
}

/// One line keepalived writes to its notify FIFO, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FifoLine {
    /// `INSTANCE "<name>" MASTER|BACKUP|FAULT|STOP <priority>`.
    Instance {
        /// The instance name.
        name: String,
        /// The state word as written.
        state: String,
        /// The role it means (`STOP`: keepalived is stopping, the addresses go: BACKUP).
        role: HaRole,
        /// The priority.
        priority: Option<u16>,
    },
    /// Any other line (`GROUP ...`, checker events): not ours to act on.
    Other(String),
}

/// Why a FIFO line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FifoLineError {
    /// An `INSTANCE` line with a state this reader does not know.
    #[error("unknown state `{state}` in keepalived line `{line}`")]
    UnknownState {
        /// The state word.
        state: String,
        /// The line.
        line: String,
    },
    /// An `INSTANCE` line that does not have the documented shape.
    #[error("malformed keepalived line `{line}`: expected INSTANCE \"NAME\" STATE PRIORITY")]
    Malformed {
        /// The line.
        line: String,
    },
}

/// Parses one line of keepalived's notify FIFO.
pub fn parse_fifo_line(line: &str) -> Result<FifoLine, FifoLineError> {
    let line = line.trim_end_matches(['\n', '\r']);
    let Some(rest) = line.strip_prefix("INSTANCE ") else {
        return Ok(FifoLine::Other(line.to_owned()));
    };
    let malformed = || FifoLineError::Malformed {
        line: line.to_owned(),
    };
    let rest = rest.strip_prefix('"').ok_or_else(malformed)?;
    let (name, rest) = rest.split_once('"').ok_or_else(malformed)?;
    let mut words = rest.split_whitespace();
    let state = words.next().ok_or_else(malformed)?;
    let priority = match words.next() {
        Some(p) => Some(p.parse::<u16>().map_err(|_| malformed())?),
        None => None,
    };
    if words.next().is_some() || name.is_empty() {
        return Err(malformed());
    }
    let role = match state {
        "MASTER" => HaRole::Master,
        "BACKUP" | "STOP" => HaRole::Backup,
        "FAULT" => HaRole::Fault,
        _ => {
            return Err(FifoLineError::UnknownState {
                state: state.to_owned(),
                line: line.to_owned(),
            });
        }
    };
    Ok(FifoLine::Instance {
        name: name.to_owned(),
        state: state.to_owned(),
        role,
        priority,
    })
}

/// What an offered role did to a daemon's model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The standing changed: act on it.
    Changed {
        /// Before.
        from: Standing,
        /// Now.
        to: Standing,
    },
    /// A newer generation with the same standing: nothing to do.
    Same,
    /// Not newer than what the daemon holds (a late delivery): ignored.
    Stale {
        /// The generation the daemon holds.
        held: u64,
    },
    /// Another VRRP instance, or this host has no `[ha]`: ignored.
    NotOurs,
}

/// The role as a daemon reports it in its status (`DaemonStatus::ha`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleStatus {
    /// What the daemon does now.
    pub standing: Standing,
    /// The generation it holds (0: none yet).
    pub generation: u64,
    /// Unix time the role was taken, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
}

/// A daemon's view of the role: pure, fed by the file and by `SetRole` requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleModel {
    /// `[ha] instance`, or `None` without `[ha]`.
    instance: Option<String>,
    /// The newest role taken.
    held: Option<RoleState>,
}

impl RoleModel {
    /// A model for the VRRP `instance` (`None`: no `[ha]`, a single host).
    pub fn new(instance: Option<String>) -> RoleModel {
        RoleModel {
            instance,
            held: None,
        }
    }

    /// What the daemon does now. With `[ha]` and no role yet: BACKUP, as keepalived starts.
    pub fn standing(&self) -> Standing {
        match (&self.instance, &self.held) {
            (None, _) => Standing::Single,
            (Some(_), None) => Standing::Backup,
            (Some(_), Some(s)) => Standing::of(s.role),
        }
    }

    /// The newest role taken.
    pub fn held(&self) -> Option<&RoleState> {
        self.held.as_ref()
    }

    /// The VRRP instance followed, if any.
    pub fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// Offers a role (from the file or a request): taken when it is for our instance and
    /// newer than what is held.
    pub fn offer(&mut self, state: RoleState) -> Change {
        let Some(instance) = &self.instance else {
            return Change::NotOurs;
        };
        if &state.instance != instance {
            return Change::NotOurs;
        }
        if let Some(h) = &self.held
            && h.generation >= state.generation
        {
            return Change::Stale { held: h.generation };
        }
        let from = self.standing();
        self.held = Some(state);
        let to = self.standing();
        if from == to {
            Change::Same
        } else {
            Change::Changed { from, to }
        }
    }

    /// Follows a new configuration: `[ha]` added, removed, or another instance. The role
    /// held is dropped when the instance changes.
    pub fn reconfigure(&mut self, instance: Option<String>) -> Change {
        if instance == self.instance {
            return Change::Same;
        }
        let from = self.standing();
        self.instance = instance;
        self.held = None;
        let to = self.standing();
        if from == to {
            Change::Same
        } else {
            Change::Changed { from, to }
        }
    }

    /// The status part.
    pub fn status(&self) -> RoleStatus {
        RoleStatus {
            standing: self.standing(),
            generation: self.held.as_ref().map_or(0, |h| h.generation),
            since: self.held.as_ref().map(|h| h.since),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(role: HaRole, generation: u64) -> RoleState {
        RoleState {
            version: STATE_VERSION,
            instance: "edge".into(),
            role,
            generation,
            since: 1_700_000_000 + generation,
            event: role.as_str().into(),
            priority: Some(100),
            conntrack: None,
        }
    }

    #[test]
    fn keepalived_lines_parse_as_documented() {
        assert_eq!(
            parse_fifo_line("INSTANCE \"VI\" BACKUP 150\n"),
            Ok(FifoLine::Instance {
                name: "VI".into(),
                state: "BACKUP".into(),
                role: HaRole::Backup,
                priority: Some(150)
            })
        );
        let FifoLine::Instance { role, state, .. } =
            parse_fifo_line("INSTANCE \"VI\" STOP 150").unwrap()
        else {
            panic!()
        };
        assert_eq!((role, state.as_str()), (HaRole::Backup, "STOP"));
        assert!(matches!(
            parse_fifo_line("INSTANCE \"my vi\" FAULT 0"),
            Ok(FifoLine::Instance { ref name, role: HaRole::Fault, .. }) if name == "my vi"
        ));
        assert_eq!(
            parse_fifo_line("GROUP \"G\" MASTER"),
            Ok(FifoLine::Other("GROUP \"G\" MASTER".into()))
        );
        assert!(matches!(
            parse_fifo_line("INSTANCE \"VI\" DELETED 100"),
            Err(FifoLineError::UnknownState { .. })
        ));
        for bad in [
            "INSTANCE VI MASTER 1",
            "INSTANCE \"VI MASTER 1",
            "INSTANCE \"VI\" MASTER x",
            "INSTANCE \"\" MASTER 1",
            "INSTANCE \"VI\" MASTER 1 2",
        ] {
            assert!(
                matches!(parse_fifo_line(bad), Err(FifoLineError::Malformed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_single_host_is_active_and_ignores_roles() {
        let mut m = RoleModel::new(None);
        assert_eq!(m.standing(), Standing::Single);
        assert!(m.standing().is_active());
        assert_eq!(m.offer(state(HaRole::Backup, 1)), Change::NotOurs);
        assert_eq!(m.standing(), Standing::Single);
    }

    #[test]
    fn with_ha_a_daemon_starts_as_backup_and_follows_newer_generations_only() {
        let mut m = RoleModel::new(Some("edge".into()));
        assert_eq!(m.standing(), Standing::Backup);
        assert!(!m.standing().is_active());
        assert_eq!(m.offer(state(HaRole::Backup, 1)), Change::Same);
        assert_eq!(
            m.offer(state(HaRole::Master, 2)),
            Change::Changed {
                from: Standing::Backup,
                to: Standing::Master
            }
        );
        // The same message twice (keepalived scripts were seen running twice at start).
        assert_eq!(m.offer(state(HaRole::Master, 2)), Change::Stale { held: 2 });
        // A late delivery of an older event changes nothing.
        assert_eq!(m.offer(state(HaRole::Backup, 1)), Change::Stale { held: 2 });
        assert_eq!(m.standing(), Standing::Master);
        let mut other = state(HaRole::Backup, 9);
        other.instance = "other".into();
        assert_eq!(m.offer(other), Change::NotOurs);
        assert_eq!(
            m.offer(state(HaRole::Fault, 3)),
            Change::Changed {
                from: Standing::Master,
                to: Standing::Fault
            }
        );
        assert!(!m.standing().is_active());
        assert_eq!(
            m.status(),
            RoleStatus {
                standing: Standing::Fault,
                generation: 3,
                since: Some(1_700_000_003)
            }
        );
    }

    #[test]
    fn removing_ha_makes_a_single_host_again() {
        let mut m = RoleModel::new(Some("edge".into()));
        m.offer(state(HaRole::Master, 4));
        assert_eq!(m.reconfigure(Some("edge".into())), Change::Same);
        assert_eq!(m.standing(), Standing::Master);
        assert_eq!(
            m.reconfigure(None),
            Change::Changed {
                from: Standing::Master,
                to: Standing::Single
            }
        );
        assert_eq!(
            m.reconfigure(Some("edge".into())),
            Change::Changed {
                from: Standing::Single,
                to: Standing::Backup
            }
        );
    }

    #[test]
    fn the_document_round_trips_as_json() {
        let mut s = state(HaRole::Master, 7);
        s.conntrack = Some(ConntrackSync::Done);
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains("\"role\":\"MASTER\""), "{text}");
        assert!(
            text.contains("\"conntrack\":{\"result\":\"done\"}"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<RoleState>(&text).unwrap(), s);
    }
}
