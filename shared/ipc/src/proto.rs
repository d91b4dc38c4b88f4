//! Pure: the versioned control messages, defined once for both ends.

use edge_config::Role;
use serde::{Deserialize, Serialize};

/// Version of the control protocol; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// What the client sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// Protocol version of the sender.
    pub version: u32,
    /// The request.
    pub request: Request,
}

/// What the daemon answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    /// Protocol version of the daemon.
    pub version: u32,
    /// The response.
    pub response: Response,
}

/// A request to a daemon.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Is the daemon alive? Answered by the shell itself.
    Ping,
    /// Full status of the daemon.
    Status,
    /// Reload the configuration file (like SIGHUP), answering with the result.
    Reload,
    /// What would the daemon change now? Nothing is changed.
    Plan,
    /// Converge now (apply / sync), optionally asking for a self-confirming apply.
    Apply {
        /// Keep the previous state and restore it unless confirmed within this many seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        confirm_secs: Option<u64>,
    },
    /// Confirm a pending self-confirming apply.
    Confirm,
    /// A request only one role understands.
    Role(RoleRequest),
    /// This host's role under keepalived changed (sent by `edgectl ha fifo`; a daemon that
    /// follows it answers `Done`, one that does not answers `Unsupported`).
    SetRole(Box<crate::ha::RoleState>),
}

impl Request {
    /// True when the request only reads (status, plans): members of group `edge` may send
    /// it; everything else changes the system and needs root.
    pub fn is_read_only(&self) -> bool {
        match self {
            Request::Ping | Request::Status | Request::Plan => true,
            Request::Reload | Request::Apply { .. } | Request::Confirm | Request::SetRole(_) => {
                false
            }
            Request::Role(r) => r.is_read_only(),
        }
    }

    /// Short kind name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Ping => "ping",
            Request::Status => "status",
            Request::Reload => "reload",
            Request::Plan => "plan",
            Request::Apply { .. } => "apply",
            Request::Confirm => "confirm",
            Request::Role(_) => "role",
            Request::SetRole(_) => "set_role",
        }
    }
}

/// Role-specific requests (today only edge-fw has any).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "role", content = "request", rename_all = "snake_case")]
pub enum RoleRequest {
    /// edge-fw.
    Fw(crate::fw::Request),
}

impl RoleRequest {
    /// True when the request only reads.
    pub fn is_read_only(&self) -> bool {
        match self {
            RoleRequest::Fw(crate::fw::Request::Doctor) => true,
            RoleRequest::Fw(crate::fw::Request::RefreshRanges) => false,
        }
    }
}

/// Machine-readable error kinds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request's protocol version is not spoken by this daemon.
    UnsupportedVersion,
    /// The request could not be parsed.
    BadRequest,
    /// This daemon does not handle this request.
    Unsupported,
    /// The request was understood but failed.
    Failed,
    /// The new configuration is invalid; the running one stays.
    InvalidConfig,
    /// The client may not send this request (read-only access, or none).
    PermissionDenied,
}

/// A daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::Ping`].
    Pong {
        /// Who answered.
        role: Role,
        /// Its version.
        version: String,
        /// Its process id.
        pid: u32,
    },
    /// Answer to [`Request::Status`].
    Status(Box<DaemonStatus>),
    /// A request that completed, with a human summary and optional structured detail.
    Done {
        /// What happened.
        message: String,
        /// Role-specific detail (plans, apply reports).
        #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
        detail: serde_json::Value,
    },
    /// A request that failed.
    Error {
        /// Kind of failure.
        code: ErrorCode,
        /// What went wrong, for humans.
        message: String,
    },
}

/// Outcome of the last run (apply, sync, reconcile).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunSummary {
    /// Unix time the run finished.
    pub finished_at: u64,
    /// True when it succeeded.
    pub ok: bool,
    /// One-line summary (`3 changes applied`, `converged`, the error).
    pub summary: String,
    /// Duration in milliseconds.
    pub duration_ms: u64,
}

/// One recent error kept for `edgectl status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorEntry {
    /// Unix time.
    pub at: u64,
    /// The error, rendered with its causes.
    pub message: String,
}

/// Outcome of the last configuration reload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReloadSummary {
    /// Unix time.
    pub at: u64,
    /// True when the new configuration was taken.
    pub ok: bool,
    /// Errors (located) when refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub errors: String,
}

/// What every daemon reports about itself, plus its role-specific detail.
#[derive(Debug, Clone, Serialize)]
pub struct DaemonStatus {
    /// Role.
    pub role: Role,
    /// Daemon version.
    pub version: String,
    /// Process id.
    pub pid: u32,
    /// True after the first successful apply/sync.
    pub ready: bool,
    /// Unix time the daemon started.
    pub started_at: u64,
    /// The configuration file.
    pub config_path: String,
    /// Generation of the running configuration (1 at start, +1 per reload).
    pub config_generation: u64,
    /// True when the file has a section for this role (otherwise it idles).
    pub configured: bool,
    /// Last reload, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reload: Option<ReloadSummary>,
    /// Last run, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
    /// Most recent errors, newest last.
    #[serde(default)]
    pub recent_errors: Vec<ErrorEntry>,
    /// Role-specific status (`edge_ipc::<role>::Status`), decoded by `role`.
    pub detail: crate::detail::Detail,
    /// This host's role under keepalived as the daemon follows it (absent: the daemon does
    /// not follow roles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<crate::ha::RoleStatus>,
}

/// The wire form: `detail` is decoded once the role is known.
#[derive(Deserialize)]
struct RawDaemonStatus {
    role: Role,
    version: String,
    pid: u32,
    ready: bool,
    started_at: u64,
    config_path: String,
    config_generation: u64,
    configured: bool,
    #[serde(default)]
    last_reload: Option<ReloadSummary>,
    #[serde(default)]
    last_run: Option<RunSummary>,
    #[serde(default)]
    recent_errors: Vec<ErrorEntry>,
    #[serde(default)]
    detail: serde_json::Value,
    #[serde(default)]
    ha: Option<crate::ha::RoleStatus>,
}

impl<'de> Deserialize<'de> for DaemonStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = RawDaemonStatus::deserialize(d)?;
        Ok(DaemonStatus {
            detail: crate::detail::Detail::decode(r.role, r.detail),
            role: r.role,
            version: r.version,
            pid: r.pid,
            ready: r.ready,
            started_at: r.started_at,
            config_path: r.config_path,
            config_generation: r.config_generation,
            configured: r.configured,
            last_reload: r.last_reload,
            last_run: r.last_run,
            recent_errors: r.recent_errors,
            ha: r.ha,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_tagged_json() {
        let r = RequestEnvelope {
            version: PROTOCOL_VERSION,
            request: Request::Apply {
                confirm_secs: Some(60),
            },
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"version":1,"request":{"type":"apply","confirm_secs":60}}"#
        );
        let back: RequestEnvelope = serde_json::from_str(&s).unwrap();
        assert_eq!(back.request, r.request);
        let p: RequestEnvelope =
            serde_json::from_str(r#"{"version":1,"request":{"type":"ping"}}"#).unwrap();
        assert_eq!(p.request, Request::Ping);
    }
}
