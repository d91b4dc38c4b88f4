//! Pure: the `[global]` section — directories, logging and the metrics listen addresses.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::decode::{Ctx, Node, Table};
use crate::types::{ListenAddr, one_of};

/// The four daemons of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `edge-ddns`, the Cloudflare DDNS updater.
    Ddns,
    /// `edge-wg`, the userspace WireGuard endpoint.
    Wg,
    /// `edge-fw`, the nftables compiler.
    Fw,
    /// `edge-link`, the bridge/NIC manager.
    Link,
}

impl Role {
    /// Every role, in start order.
    pub const ALL: [Role; 4] = [Role::Link, Role::Fw, Role::Wg, Role::Ddns];

    /// Short name: `ddns`, `wg`, `fw`, `link`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ddns => "ddns",
            Role::Wg => "wg",
            Role::Fw => "fw",
            Role::Link => "link",
        }
    }

    /// Binary and unit name: `edge-ddns`, ...
    pub fn binary(self) -> &'static str {
        match self {
            Role::Ddns => "edge-ddns",
            Role::Wg => "edge-wg",
            Role::Fw => "edge-fw",
            Role::Link => "edge-link",
        }
    }

    /// Parses a short name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Plain text without timestamps under systemd (journald adds them), with them elsewhere.
    Auto,
    /// Plain text with timestamps.
    Text,
    /// One JSON object per line.
    Json,
}

/// Global settings shared by every daemon.
#[derive(Debug, Clone, Serialize)]
pub struct Global {
    /// Where daemons persist state (`/var/lib/edge`).
    pub state_dir: PathBuf,
    /// Where control sockets live (`/run/edge`); `<runtime_dir>/<role>/control.sock`.
    pub runtime_dir: PathBuf,
    /// Log format.
    pub log_format: LogFormat,
    /// Default log filter (`info`, `debug`, or a tracing directive list).
    pub log_level: String,
    /// Prometheus exporter listen address of each daemon.
    pub metrics: Metrics,
}

/// The metrics listen address of each daemon.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    /// edge-ddns.
    pub ddns: ListenAddr,
    /// edge-wg.
    pub wg: ListenAddr,
    /// edge-fw.
    pub fw: ListenAddr,
    /// edge-link.
    pub link: ListenAddr,
}

impl Metrics {
    /// The address of one role.
    pub fn for_role(&self, role: Role) -> ListenAddr {
        match role {
            Role::Ddns => self.ddns,
            Role::Wg => self.wg,
            Role::Fw => self.fw,
            Role::Link => self.link,
        }
    }
}

/// `global.state_dir`: where daemons persist state.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/edge";
/// `global.runtime_dir`: where the control sockets live.
pub const DEFAULT_RUNTIME_DIR: &str = "/run/edge";
/// `global.log_level`.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Default metrics port of each role: 9851 ddns, 9852 wg, 9853 fw, 9854 link.
pub fn default_metrics_port(role: Role) -> u16 {
    match role {
        Role::Ddns => 9851,
        Role::Wg => 9852,
        Role::Fw => 9853,
        Role::Link => 9854,
    }
}

fn default_listen(role: Role) -> ListenAddr {
    ListenAddr(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        default_metrics_port(role),
    )))
}

impl Default for Global {
    fn default() -> Self {
        Global {
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            runtime_dir: PathBuf::from(DEFAULT_RUNTIME_DIR),
            log_format: LogFormat::Auto,
            log_level: DEFAULT_LOG_LEVEL.to_owned(),
            metrics: Metrics {
                ddns: default_listen(Role::Ddns),
                wg: default_listen(Role::Wg),
                fw: default_listen(Role::Fw),
                link: default_listen(Role::Link),
            },
        }
    }
}

fn abs_path(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<PathBuf> {
    let s = node.str(ctx, "an absolute path")?;
    if !s.starts_with('/') {
        node.error(
            ctx,
            format!("`{}` must be an absolute path, not `{s}`", node.key()),
        );
        return None;
    }
    Some(PathBuf::from(s))
}

/// Decodes `[global]`.
pub(crate) fn decode(ctx: &mut Ctx<'_>, mut t: Table<'_, '_>) -> Option<Global> {
    let d = Global::default();
    let state_dir = t.with(ctx, "state_dir", abs_path).unwrap_or(d.state_dir);
    let runtime_dir = t
        .with(ctx, "runtime_dir", abs_path)
        .unwrap_or(d.runtime_dir);
    let log_format = t
        .with(ctx, "log_format", |ctx, n| {
            one_of(
                ctx,
                n,
                &[
                    ("auto", LogFormat::Auto),
                    ("text", LogFormat::Text),
                    ("json", LogFormat::Json),
                ],
            )
        })
        .unwrap_or(d.log_format);
    let log_level = t.or(ctx, "log_level", d.log_level);
    let metrics = t
        .sub(ctx, "metrics", |ctx, mut m| {
            let dm = &d.metrics;
            let out = Metrics {
                ddns: m.or(ctx, "ddns", dm.ddns),
                wg: m.or(ctx, "wg", dm.wg),
                fw: m.or(ctx, "fw", dm.fw),
                link: m.or(ctx, "link", dm.link),
            };
            m.finish(ctx);
            Some(out)
        })
        .flatten()
        .unwrap_or(d.metrics);
    t.finish(ctx);
    Some(Global {
        state_dir,
        runtime_dir,
        log_format,
        log_level,
        metrics,
    })
}
