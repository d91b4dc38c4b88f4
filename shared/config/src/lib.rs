//! One strict loader for `/etc/edge/edge.toml`, shared by every daemon and `edgectl`.
//!
//! The file has a `version`, a `[global]` section, one section per daemon (`[ddns]`,
//! `[wg]`, `[fw]`, `[link]`), `[notify]`, read by every daemon, and `[ha]` for two hosts
//! under keepalived. Loading reports **all**
//! problems of a file at once, each with `FILE:LINE:COL`, the offending line, a caret and a
//! hint; unknown keys are errors.
//! Decoding and checking are pure; only [`load`] touches the file system (the file itself and
//! the modes of the secret files it names).
//!
//! The section structs (`Ddns`, `Forward`, `Bridge`, …) are alike in shape only — documented
//! public fields — and `duplicates` pairs them; each is the typed form of its own TOML table
//! and they share nothing but the pattern.

pub mod check;
pub mod ddns;
pub mod decode;
pub mod fw;
pub mod global;
pub mod ha;
pub mod link;
pub mod notify;
pub mod secret;
pub mod source;
pub mod types;
pub mod wg;

use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::de::DeTable;

pub use global::{Global, LogFormat, Role};
pub use secret::{SecretError, SecretSource, SecretString};
pub use source::{Diagnostic, Diagnostics, Location, Severity, SourceFile};

use decode::{Ctx, Decode, Node, Table};

/// Where the configuration lives unless `--config` or `EDGE_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/edge/edge.toml";
/// Environment variable naming the configuration file.
pub const ENV_VAR: &str = "EDGE_CONFIG";
/// The configuration format version this build reads.
pub const VERSION: u32 = 1;

/// A validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Format version (1).
    pub version: u32,
    /// Global settings.
    pub global: Global,
    /// `[ddns]`, if present.
    pub ddns: Option<ddns::Ddns>,
    /// `[wg]`, if present.
    pub wg: Option<wg::Wg>,
    /// `[fw]`, if present.
    pub fw: Option<fw::Fw>,
    /// `[link]`, if present.
    pub link: Option<link::Link>,
    /// `[notify]`, if present: where every daemon sends its events.
    pub notify: Option<notify::Notify>,
    /// `[ha]`, if present: this host is one of two under keepalived's VRRP.
    pub ha: Option<ha::Ha>,
}

impl Config {
    /// The control socket of a role: `<runtime_dir>/<role>/control.sock`.
    pub fn socket_path(&self, role: Role) -> PathBuf {
        socket_path(&self.global.runtime_dir, role)
    }

    /// The directory of a role's sockets: `<runtime_dir>/<role>` (the unit's
    /// `RuntimeDirectory=edge/<role>`, which only that daemon may write).
    pub fn role_runtime_dir(&self, role: Role) -> PathBuf {
        self.global.runtime_dir.join(role.as_str())
    }

    /// True when the file has a section for `role`.
    pub fn has_section(&self, role: Role) -> bool {
        match role {
            Role::Ddns => self.ddns.is_some(),
            Role::Wg => self.wg.is_some(),
            Role::Fw => self.fw.is_some(),
            Role::Link => self.link.is_some(),
        }
    }
}

/// A configuration that loaded, with the warnings it produced.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Warnings (never errors), rendered like errors.
    pub warnings: Diagnostics,
}

/// How strictly secret files are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoadOptions {
    /// The daemon loading the file: a missing secret of its own section is an error, the
    /// secrets of other sections are not looked at (their credentials live in the other
    /// daemons' credential directories). With `None` (`edgectl config check`, also before
    /// installation) every secret is checked and a missing one is a warning. A secret
    /// readable by others is always an error.
    pub role: Option<Role>,
}

/// Picks the config path: `--config` first, then `$EDGE_CONFIG`, then `/etc/edge/edge.toml`.
pub fn resolve_path(cli: Option<&Path>) -> PathBuf {
    if let Some(p) = cli {
        return p.to_owned();
    }
    match std::env::var_os(ENV_VAR) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_PATH),
    }
}

/// Decodes and validates configuration text as [`load`] does, checking the secrets' files
/// it names: the check of a file's next version before it is written (`edgectl wg peer`).
pub fn load_text(path: &Path, text: String, opts: LoadOptions) -> Result<Loaded, Diagnostics> {
    let src = SourceFile::new(path, text);
    let (config, mut ctx, secrets) = decode_source(&src);
    for s in secrets {
        check_secret(&mut ctx, &s, opts);
    }
    finish(&src, config, ctx)
}

/// Reads, decodes and validates a configuration file, checking its secrets' files.
pub fn load(path: &Path, opts: LoadOptions) -> Result<Loaded, Diagnostics> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let src = SourceFile::new(path, String::new());
            let mut ctx = Ctx::new(&src);
            ctx.error_unlocated("", format!("cannot read the configuration: {e}"))
                .hint(format!(
                    "pass --config PATH or set {ENV_VAR}; the default is {DEFAULT_PATH}"
                ));
            let diags = ctx.into_diagnostics();
            return Err(Diagnostics::new(src, diags));
        }
    };
    load_text(path, text, opts)
}

/// Decodes and validates configuration text without touching the file system (secret files
/// are not looked at).
pub fn parse(path: &Path, text: &str) -> Result<Loaded, Diagnostics> {
    let src = SourceFile::new(path, text);
    let (config, ctx, _) = decode_source(&src);
    finish(&src, config, ctx)
}

fn finish(src: &SourceFile, config: Option<Config>, ctx: Ctx<'_>) -> Result<Loaded, Diagnostics> {
    let failed = ctx.has_errors();
    let diags = Diagnostics::new(src.clone(), ctx.into_diagnostics());
    match config {
        Some(config) if !failed => Ok(Loaded {
            config,
            warnings: diags,
        }),
        _ => Err(diags),
    }
}

fn role_of_key(key: &str) -> Option<Role> {
    Role::parse(key.split(['.', '[']).next().unwrap_or_default())
}

fn check_secret(ctx: &mut Ctx<'_>, s: &decode::SecretRef, opts: LoadOptions) {
    let own = opts.role.is_some() && opts.role == role_of_key(&s.key);
    // `[notify]` belongs to every daemon: each sends its own events with these secrets.
    let shared = s.key.starts_with("notify.");
    // A daemon checks only its own secrets: another daemon's credential would be looked up
    // in this daemon's credentials directory, where it never is.
    if opts.role.is_some() && !own && !shared {
        return;
    }
    let Err(e) = s.source.check() else {
        return;
    };
    match &e {
        SecretError::Permissions { .. } | SecretError::CredentialPermissions { .. } => {
            ctx.error(s.span.clone(), &s.key, e.to_string());
        }
        _ if own => {
            let d = ctx.error(s.span.clone(), &s.key, e.to_string());
            if let SecretError::Missing { path } = &e {
                d.hint(format!(
                    "create it: `install -m 600 /dev/null {}` then write the secret into it",
                    path.display()
                ));
            }
        }
        _ => {
            let d = ctx.warn(s.span.clone(), &s.key, format!("{e} (not checked further)"));
            match (shared, opts.role) {
                // A missing notification secret must not keep a daemon from its job: it
                // starts, and sends nothing to that target.
                (true, Some(role)) => {
                    d.hint(format!(
                        "{} sends nothing to this target until it can read the secret: with a credential, add `LoadCredential=` for it to the unit (`systemctl edit {}`)",
                        role.binary(),
                        role.binary()
                    ));
                }
                _ if e.is_absent() => {
                    d.hint("create the secret before starting the daemon that uses it");
                }
                _ => {}
            }
        }
    }
}

fn decode_source<'s>(src: &'s SourceFile) -> (Option<Config>, Ctx<'s>, Vec<decode::SecretRef>) {
    let mut ctx = Ctx::new(src);
    let (doc, syntax) = DeTable::parse_recoverable(src.text());
    for e in &syntax {
        let span = e.span().unwrap_or(0..0);
        let msg = e.message().trim().to_owned();
        let msg = msg.lines().next().unwrap_or("invalid TOML").to_owned();
        ctx.error(span, "", format!("TOML syntax error: {msg}"));
    }
    if !syntax.is_empty() && doc.get_ref().is_empty() {
        return (None, ctx, Vec::new());
    }
    let mut top = Table::new(doc.get_ref(), doc.span(), "");
    let version = top.with(&mut ctx, "version", |ctx, n| {
        let v = u32::decode(ctx, n.clone())?;
        if v != VERSION {
            n.error(
                ctx,
                format!("configuration version {v} is not supported by this build (it reads version {VERSION})"),
            )
            .hint("check the release notes of the version that wrote this file");
            return None;
        }
        Some(v)
    });
    if top.raw("version").is_none() {
        ctx.error(
            0..0,
            "version",
            "missing `version = 1` at the top of the file",
        )
        .hint("add `version = 1` as the first line");
    }
    let global = top
        .sub(&mut ctx, "global", global::decode)
        .flatten()
        .unwrap_or_default();
    let link = top.sub(&mut ctx, "link", link::decode).flatten();
    let wg = top.sub(&mut ctx, "wg", wg::decode).flatten();
    let protected: Vec<types::InterfaceName> = link
        .as_ref()
        .map(|l| l.protected.clone())
        .unwrap_or_default();
    let fw = top
        .sub(&mut ctx, "fw", |c, t| fw::decode(c, t, &protected))
        .flatten();
    let ddns = top.sub(&mut ctx, "ddns", ddns::decode).flatten();
    let notify = top.sub(&mut ctx, "notify", notify::decode).flatten();
    let ha = top.sub(&mut ctx, "ha", ha::decode).flatten();
    top.finish(&mut ctx);
    let secrets = ctx.take_secrets();
    let Some(version) = version else {
        return (None, ctx, secrets);
    };
    let config = Config {
        path: src.path().to_owned(),
        version,
        global,
        ddns,
        wg,
        fw,
        link,
        notify,
        ha,
    };
    check::cross_check(&mut ctx, &config);
    (Some(config), ctx, secrets)
}

/// The control socket of `role` under `runtime_dir`: `<runtime_dir>/<role>/control.sock`.
/// Each daemon has a directory of its own, so that no daemon can replace another's socket.
pub fn socket_path(runtime_dir: &Path, role: Role) -> PathBuf {
    runtime_dir.join(role.as_str()).join("control.sock")
}

/// `global.runtime_dir` of a file even when the rest of it is invalid (so that `edgectl` can
/// reach a daemon whose file was broken after it started); the default when absent.
pub fn peek_runtime_dir(text: &str) -> PathBuf {
    let (doc, _) = DeTable::parse_recoverable(text);
    doc.get_ref()
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == "global")
        .and_then(|(_, v)| match v.get_ref() {
            toml::de::DeValue::Table(t) => t
                .iter()
                .find(|(k, _)| k.get_ref().as_ref() == "runtime_dir")
                .and_then(|(_, v)| v.get_ref().as_str().map(PathBuf::from)),
            _ => None,
        })
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| Global::default().runtime_dir)
}

/// Reads the node at `key` of a parsed document (used by tests and tools).
pub fn node_location(src: &SourceFile, key: &str) -> Option<Location> {
    let (doc, _) = DeTable::parse_recoverable(src.text());
    let mut cur = doc.get_ref();
    let mut parts = key.split('.').peekable();
    while let Some(p) = parts.next() {
        let (_, v) = cur.iter().find(|(k, _)| k.get_ref().as_ref() == p)?;
        if parts.peek().is_none() {
            return Some(src.location(v.span().start));
        }
        match v.get_ref() {
            toml::de::DeValue::Table(t) => cur = t,
            _ => return None,
        }
    }
    let _ = Node::new;
    None
}
