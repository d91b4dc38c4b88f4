//! `edgectl wg peer add|list|remove|renew`: provision WireGuard peers. The file is edited
//! in place (comments and layout kept), the whole next version is validated with the
//! daemons' loader before it is written, and a running edge-wg is asked to reload; a
//! refused reload puts the old file back. The client's private key is printed once and
//! never stored on the host.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

use clap::Subcommand;
use edge_config::wg::{Expiry, Wg};
use edge_config::{Config, LoadOptions, Role, SecretError};
use edge_ipc::{ClientError, Request, Response};
use edge_wg::model::Key;
use edge_wg::provision::{self, ClientConfig, PeerEntry};
use ipnet::IpNet;
use rand::TryRngCore as _;

mod list;

use crate::{Global, daemon};
use edge_util::unix_now_i64;
use list::list;

/// Arguments of `edgectl wg peer`.
pub type Args = super::Sub<Cmd>;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Add a peer: generate its keys and a preshared key, give it the next free address,
    /// write it into the configuration, reload edge-wg, and print the client's wg-quick
    /// configuration (once: its private key is not kept).
    Add(AddArgs),
    /// List the peers: name, address, last handshake, transfer, expiry.
    List,
    /// Remove a peer (and the preshared key `add` made for it).
    Remove {
        /// The peer's name.
        name: String,
    },
    /// Set a new expiry for a peer (an expired peer comes back).
    Renew {
        /// The peer's name.
        name: String,
        /// An RFC 3339 time, a duration from now (30d) or `never`.
        #[arg(long, value_name = "WHEN")]
        expires: String,
    },
}

/// Runs `edgectl wg peer`. A refused request (bad name, taken address, full network,
/// unknown peer) exits 2 and leaves every file as it was.
pub async fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    match run_cmd(args, g).await {
        Err(e) if e.downcast_ref::<provision::ProvisionError>().is_some() => {
            eprintln!("edgectl: {e:#}; nothing was changed");
            Ok(ExitCode::from(2))
        }
        other => other,
    }
}

async fn run_cmd(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    match args.cmd {
        Cmd::Add(a) => add(g, a).await,
        Cmd::List => list(g).await,
        Cmd::Remove { name } => remove(g, &name).await,
        Cmd::Renew { name, expires } => renew(g, &name, &expires).await,
    }
}

// The variant's doc comment is the subcommand's help: this struct has none of its own.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The peer's name (letters, digits, `.`, `_`, `-`), e.g. phone.
    pub name: String,
    /// Addresses of the peer instead of the next free one of the WireGuard network.
    #[arg(long, value_name = "CIDR", num_args = 1..)]
    pub allowed_ips: Vec<IpNet>,
    /// When the peer stops working: an RFC 3339 time (2027-01-31T18:00:00Z), a duration
    /// from now (30d, 12h) or `never`.
    #[arg(long, value_name = "WHEN")]
    pub expires: Option<String>,
    /// Where the client reaches this host [default: the first DDNS record and the
    /// listen port].
    #[arg(long, value_name = "HOST:PORT")]
    pub endpoint: Option<String>,
    /// Also print the client's configuration as a QR code (for the WireGuard apps).
    #[arg(long)]
    pub qr: bool,
    /// Write the client's configuration to FILE (mode 0600) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Reads `--expires WHEN`: `never`, an RFC 3339 time, or a duration from now.
fn parse_when(when: &str, now: i64) -> anyhow::Result<Option<Expiry>> {
    let w = when.trim();
    if w.eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    if let Ok(e) = Expiry::parse(w) {
        return Ok(Some(e));
    }
    match humantime::parse_duration(w) {
        Ok(d) => Ok(Some(Expiry(now.saturating_add(d.as_secs() as i64)))),
        Err(_) => Err(provision::ProvisionError::Usage {
            message: format!(
                "--expires {when:?} is not a time: give an RFC 3339 time (2027-01-31T18:00:00Z), a duration from now (30d, 12h) or `never`"
            ),
        }
        .into()),
    }
}

/// The file as it is now: its path, its text and what it configures; exits 2 when it is
/// invalid.
fn load_current(g: &Global) -> Result<(PathBuf, String, Config), ExitCode> {
    let path = g.config_path();
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "edgectl: cannot read the configuration {}: {e} (pass --config PATH)",
                path.display()
            );
            return Err(ExitCode::from(2));
        }
    };
    match edge_config::load_text(&path, text.clone(), LoadOptions { role: None }) {
        Ok(l) => Ok((path, text, l.config)),
        Err(d) => {
            eprint!("{}", d.render());
            eprintln!(
                "edgectl: {} has errors; fix them first (`edgectl config check`), nothing was changed",
                path.display()
            );
            Err(ExitCode::from(2))
        }
    }
}

/// The `[wg]` section, which `add` and `list` need.
fn wg_section(cfg: &Config) -> anyhow::Result<&Wg> {
    match cfg.wg.as_ref() {
        Some(wg) => Ok(wg),
        None => bail!(provision::ProvisionError::NoWg),
    }
}

/// Validates the next version of the file with the daemons' loader; on success writes it
/// in place of the old one (same mode and owner; temporary file, fsync, rename).
fn validate_and_write(path: &Path, next: &str) -> Result<(), ExitCode> {
    if let Err(d) = edge_config::load_text(path, next.to_owned(), LoadOptions { role: None }) {
        eprint!("{}", d.render());
        eprintln!(
            "edgectl: the change would make {} invalid; nothing was changed",
            path.display()
        );
        return Err(ExitCode::from(2));
    }
    write_atomic(path, next).map_err(|e| {
        eprintln!("edgectl: {e:#}; {} was not changed", path.display());
        ExitCode::from(1)
    })
}

fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "edge.toml".into());
    let tmp = dir.join(format!(".{file_name}.edgectl-tmp"));
    let _ = fs::remove_file(&tmp);
    let res = (|| -> anyhow::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(meta.mode() & 0o7777)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        // Keep the owner (root:edge or whatever the user chose); not fatal for a copy.
        let _ = std::os::unix::fs::chown(&tmp, Some(meta.uid()), Some(meta.gid()));
        fs::set_permissions(&tmp, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .with_context(|| format!("cannot set the mode of {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// What asking edge-wg to reload gave.
enum Reload {
    Done,
    NotRunning(String),
    Refused(String),
}

async fn reload(g: &Global) -> Reload {
    match daemon::client(Role::Wg, g).request(Request::Reload).await {
        Ok(Response::Error { message, .. }) => Reload::Refused(message),
        Ok(_) => Reload::Done,
        Err(e @ (ClientError::NotRunning { .. } | ClientError::Refused { .. })) => {
            Reload::NotRunning(e.to_string())
        }
        Err(e) => Reload::Refused(e.to_string()),
    }
}

/// Asks a running edge-wg to reload; when it refuses, puts `old` back. Returns the exit
/// code to use when the change could not take effect.
async fn reload_or_restore(g: &Global, path: &Path, old: &str) -> Result<(), ExitCode> {
    match reload(g).await {
        Reload::Done => {
            eprintln!("edgectl: edge-wg reloaded the configuration");
            Ok(())
        }
        Reload::NotRunning(why) => {
            eprintln!("edgectl: {why}; the change takes effect when edge-wg starts");
            Ok(())
        }
        Reload::Refused(why) => {
            eprintln!(
                "edgectl: edge-wg refused the new configuration: {}",
                why.trim_end()
            );
            match write_atomic(path, old) {
                Ok(()) => eprintln!(
                    "edgectl: the previous {} was put back; edge-wg keeps running it",
                    path.display()
                ),
                Err(e) => eprintln!(
                    "edgectl: could not put the previous file back: {e:#}; fix {} by hand",
                    path.display()
                ),
            }
            Err(ExitCode::from(1))
        }
    }
}

/// edge-wg's status detail, when it runs.
async fn live_status(g: &Global) -> Option<edge_ipc::wg::Status> {
    match daemon::client(Role::Wg, g).request(Request::Status).await {
        Ok(Response::Status(st)) => st.detail.wg().cloned(),
        _ => None,
    }
}

fn random_key() -> anyhow::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut b)
        .context("cannot read random bytes from the operating system")?;
    Ok(b)
}

/// The host's public key: the running daemon's, else derived from the private key file;
/// when that file does not exist yet, it is created (like `wg genkey`), so that the
/// client's configuration can name the host.
async fn host_public_key(g: &Global, wg: &Wg) -> anyhow::Result<Key> {
    if let Some(k) = live_status(g)
        .await
        .and_then(|s| s.public_key)
        .and_then(|k| Key::from_base64(&k).ok())
    {
        return Ok(k);
    }
    match wg.private_key.load() {
        Ok(secret) => {
            let k = Key::from_base64(secret.expose()).with_context(|| {
                format!(
                    "the interface key ({}) is not a base64 WireGuard key",
                    wg.private_key
                )
            })?;
            Ok(k.public_from_private())
        }
        Err(SecretError::Missing { path }) => {
            let private = provision::private_key_from(random_key()?);
            if let Some(dir) = path.parent().filter(|d| !d.exists()) {
                fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
            }
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create the interface key {}", path.display()))?;
            f.write_all(format!("{}\n", private.to_base64()).as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "edgectl: created the interface's private key {} (mode 0600): it did not exist; edge-wg uses it when it starts",
                path.display()
            );
            Ok(private.public_from_private())
        }
        Err(e) => Err(anyhow::Error::new(e).context(
            "cannot read the interface's private key to put its public key in the client's configuration",
        )),
    }
}

/// Writes the preshared key file `add` keeps for a peer: mode 0600, owned like the
/// directory edge-wg keeps its state in (the daemon's user under the shipped unit).
fn write_psk(state_dir: &Path, path: &Path, psk: &Key) -> anyhow::Result<()> {
    let wg_dir = state_dir.join("wg");
    if !wg_dir.exists() {
        fs::create_dir_all(&wg_dir).with_context(|| {
            format!(
                "cannot create edge-wg's state directory {} (run as root, or set [global] state_dir)",
                wg_dir.display()
            )
        })?;
        fs::set_permissions(&wg_dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot set the mode of {}", wg_dir.display()))?;
    }
    let owner =
        fs::metadata(&wg_dir).with_context(|| format!("cannot read {}", wg_dir.display()))?;
    let dir = provision::psk_dir(state_dir);
    if !dir.exists() {
        fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
    let _ = std::os::unix::fs::chown(&dir, Some(owner.uid()), Some(owner.gid()));
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(format!("{}\n", psk.to_base64()).as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::os::unix::fs::chown(path, Some(owner.uid()), Some(owner.gid()))
        .with_context(|| format!("cannot give {} to edge-wg's user", path.display()))?;
    Ok(())
}

fn render_qr(text: &str) -> anyhow::Result<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(text.as_bytes())
        .context("the client's configuration does not fit a QR code")?;
    // Light modules drawn, dark ones left blank: reads on the usual dark terminal.
    Ok(code
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

/// What `add` settled before changing anything: the peer's addresses and expiry, and the
/// endpoint the client is given (with a warning about the default one, if any).
struct AddPlan {
    allowed: Vec<IpNet>,
    expires: Option<Expiry>,
    endpoint: String,
    warning: Option<String>,
}

async fn add(g: &Global, a: AddArgs) -> anyhow::Result<ExitCode> {
    let (path, text, cfg) = match load_current(g) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let wg = wg_section(&cfg)?;
    let plan = plan_add(&cfg, wg, &a)?;
    // Opened before anything changes, so that an unwritable FILE refuses the whole add.
    let mut out_file = open_output(a.output.as_deref())?;
    let cleanup_output = || {
        if let Some(out) = &a.output {
            let _ = fs::remove_file(out);
        }
    };
    let server = match host_public_key(g, wg).await {
        Ok(k) => k,
        Err(e) => {
            cleanup_output();
            return Err(e);
        }
    };
    let client_private = provision::private_key_from(random_key()?);
    let psk = Key(random_key()?);
    let peer = NewPeer {
        name: &a.name,
        public_key: client_private.public_from_private(),
        psk: &psk,
    };
    match write_peer(g, &path, &text, &cfg, &peer, &plan).await {
        Ok(Ok(())) => {}
        Ok(Err(code)) => {
            cleanup_output();
            return Ok(code);
        }
        Err(e) => {
            cleanup_output();
            return Err(e);
        }
    }
    let client = ClientConfig {
        private_key: client_private,
        addresses: provision::client_addresses(wg, &plan.allowed),
        server_public_key: server,
        preshared_key: psk,
        routes: provision::default_client_routes(&cfg),
        endpoint: plan.endpoint.clone(),
    };
    let conf = client.render();
    report_added(&a.name, &path, &plan);
    hand_over(&conf, a.output.as_deref(), out_file.as_mut())?;
    if a.qr {
        println!();
        println!("{}", render_qr(&conf)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The checks of `add` that need no change yet: the name, the addresses, `--expires`,
/// `--endpoint` (or the default one) and that `--output` names a new file.
fn plan_add(cfg: &Config, wg: &Wg, a: &AddArgs) -> anyhow::Result<AddPlan> {
    provision::check_name(&a.name)?;
    if wg.peers.iter().any(|p| p.name == a.name) {
        bail!(provision::ProvisionError::NameTaken {
            name: a.name.clone()
        });
    }
    let allowed = provision::allocate(wg, &a.allowed_ips)?;
    let expires = match &a.expires {
        Some(w) => parse_when(w, unix_now_i64())?,
        None => None,
    };
    let (endpoint, warning) = client_endpoint(cfg, a.endpoint.as_deref())?;
    if let Some(out) = &a.output
        && out.exists()
    {
        return Err(provision::ProvisionError::Usage {
            message: format!(
                "--output {}: the file exists; pick a new file (the client's private key is written only once)",
                out.display()
            ),
        }
        .into());
    }
    Ok(AddPlan {
        allowed,
        expires,
        endpoint,
        warning,
    })
}

/// Where the client reaches this host: `--endpoint` when given (checked), else the default
/// one of the configuration with its warning.
fn client_endpoint(
    cfg: &Config,
    endpoint: Option<&str>,
) -> anyhow::Result<(String, Option<String>)> {
    match endpoint {
        Some(e) => {
            edge_config::types::Endpoint::parse(e).map_err(|inv| {
                provision::ProvisionError::Usage {
                    message: format!(
                        "--endpoint {e:?}: {}{}",
                        inv.message,
                        inv.hint.map(|h| format!(" ({h})")).unwrap_or_default()
                    ),
                }
            })?;
            Ok((e.to_owned(), None))
        }
        None => {
            let d = provision::default_endpoint(cfg)?;
            Ok((d.endpoint, d.warning))
        }
    }
}

/// Creates `--output FILE` (mode 0600, never an existing file).
fn open_output(output: Option<&Path>) -> anyhow::Result<Option<fs::File>> {
    output
        .map(|out| {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(out)
                .with_context(|| format!("cannot create {}", out.display()))
        })
        .transpose()
}

/// The new peer's keys as `add` made them.
struct NewPeer<'a> {
    name: &'a str,
    public_key: Key,
    psk: &'a Key,
}

/// Writes the peer's preshared key and the next version of the file, then has edge-wg
/// reload it; when the file is refused (invalid, or by edge-wg) the key is removed again
/// and the exit code returned.
async fn write_peer(
    g: &Global,
    path: &Path,
    text: &str,
    cfg: &Config,
    peer: &NewPeer<'_>,
    plan: &AddPlan,
) -> anyhow::Result<Result<(), ExitCode>> {
    let psk_file = provision::psk_path(&cfg.global.state_dir, peer.name);
    let entry = PeerEntry {
        name: peer.name.to_owned(),
        public_key: peer.public_key,
        psk_file: psk_file.clone(),
        allowed_ips: plan.allowed.clone(),
        expires: plan.expires,
        comment: format!(
            "{}: added by `edgectl wg peer add`{}",
            peer.name,
            plan.expires
                .map(|e| format!(", expires {e}"))
                .unwrap_or_default()
        ),
    };
    let next = provision::add_peer(text, &entry)?;
    write_psk(&cfg.global.state_dir, &psk_file, peer.psk)?;
    if let Err(code) = validate_and_write(path, &next) {
        let _ = fs::remove_file(&psk_file);
        return Ok(Err(code));
    }
    if let Err(code) = reload_or_restore(g, path, text).await {
        let _ = fs::remove_file(&psk_file);
        return Ok(Err(code));
    }
    Ok(Ok(()))
}

/// Says on stderr which peer was added where, and the endpoint's warning.
fn report_added(name: &str, path: &Path, plan: &AddPlan) {
    eprintln!(
        "edgectl: peer {} added to {}: {}{}",
        name,
        path.display(),
        plan.allowed
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        plan.expires
            .map(|e| format!(", expires {e}"))
            .unwrap_or_default()
    );
    if let Some(w) = &plan.warning {
        eprintln!("edgectl: warning: {w}");
    }
}

/// Gives the client's configuration: into `--output FILE`, else on stdout.
fn hand_over(conf: &str, output: Option<&Path>, file: Option<&mut fs::File>) -> anyhow::Result<()> {
    match (output, file) {
        (Some(out), Some(f)) => {
            f.write_all(conf.as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "edgectl: the client's configuration is in {} (mode 0600); its private key is not kept anywhere else",
                out.display()
            );
        }
        _ => {
            eprintln!(
                "edgectl: the client's configuration follows; its private key is shown only now"
            );
            print!("{conf}");
        }
    }
    Ok(())
}

async fn remove(g: &Global, name: &str) -> anyhow::Result<ExitCode> {
    let (path, text, cfg) = match load_current(g) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let (next, psk) = provision::remove_peer(&text, name)?;
    if let Err(code) = validate_and_write(&path, &next) {
        return Ok(code);
    }
    if let Err(code) = reload_or_restore(g, &path, &text).await {
        return Ok(code);
    }
    // Only the key `add` made: a file the user named elsewhere stays.
    if let Some(p) = psk.filter(|p| *p == provision::psk_path(&cfg.global.state_dir, name)) {
        match fs::remove_file(&p) {
            Ok(()) => eprintln!("edgectl: removed its preshared key {}", p.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!("edgectl: warning: cannot remove {}: {e}", p.display()),
        }
    }
    eprintln!("edgectl: peer {name} removed from {}", path.display());
    Ok(ExitCode::SUCCESS)
}

async fn renew(g: &Global, name: &str, when: &str) -> anyhow::Result<ExitCode> {
    let (path, text, _) = match load_current(g) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let expires = parse_when(when, unix_now_i64())?;
    let next = provision::set_expires(&text, name, expires)?;
    if let Err(code) = validate_and_write(&path, &next) {
        return Ok(code);
    }
    if let Err(code) = reload_or_restore(g, &path, &text).await {
        return Ok(code);
    }
    match expires {
        Some(e) => eprintln!("edgectl: peer {name} now expires {e}"),
        None => eprintln!("edgectl: peer {name} no longer expires"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_is_a_time_a_duration_or_never() {
        assert_eq!(parse_when("never", 0).unwrap(), None);
        assert_eq!(
            parse_when("2027-01-31T18:00:00Z", 0).unwrap(),
            Some(Expiry(1_801_418_400))
        );
        assert_eq!(
            parse_when("30d", 1000).unwrap(),
            Some(Expiry(1000 + 30 * 86_400))
        );
        assert_eq!(parse_when("12h", 0).unwrap(), Some(Expiry(12 * 3600)));
        let e = parse_when("tomorrow-ish", 0).unwrap_err().to_string();
        assert!(e.contains("RFC 3339") && e.contains("never"), "{e}");
    }
}
