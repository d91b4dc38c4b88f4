//! I/O: the edge-wg daemon loop on the edge shell: load `[wg]`, open the TUN, apply the
//! configuration, give peers without a configured endpoint the one remembered from the
//! last run, set addresses/MTU/routes, initiate a handshake to every peer with a known
//! endpoint, drop privileges, serve the UAPI, then follow reloads (SIGHUP or `edgectl wg
//! reload`) by applying only the peer difference, and persist roamed endpoints.

use std::collections::BTreeMap;
use std::net::ToSocketAddrs as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use edge_config::Role;
use edge_ipc::proto::{Request, Response};
use edge_ipc::shell::{Event, Shell, idle};

use crate::bringup;
use crate::config::{self, Resolved};
use crate::device::{Device, Options};
use crate::diff::PeerDiff;
use crate::model::Key;
use crate::netlink::Netlink;
use crate::state::{self, EndpointStore};
use crate::uapi_server::{PublicLink, SOCKET_DIR, link_public, unlink_public};

/// Reads the secrets and resolves the endpoints a `[wg]` section names.
pub fn resolve(wg: &edge_config::wg::Wg) -> anyhow::Result<Resolved> {
    let pk = wg
        .private_key
        .load()
        .context("failed to read the wg private key")?;
    let private_key = config::parse_secret_key(pk.expose())
        .context("the wg private key is not a base64 WireGuard key")?;
    let mut r = Resolved {
        private_key: Some(private_key),
        ..Resolved::default()
    };
    for p in &wg.peers {
        if let Some(src) = &p.preshared_key {
            let s = src
                .load()
                .with_context(|| format!("failed to read the preshared key of peer {}", p.name))?;
            let k = config::parse_secret_key(s.expose()).with_context(|| {
                format!("the preshared key of peer {} is not a base64 key", p.name)
            })?;
            r.preshared.insert(p.name.clone(), k);
        }
        if let Some(ep) = &p.endpoint {
            match (ep.host.as_str(), ep.port.get()).to_socket_addrs() {
                Ok(mut addrs) => {
                    if let Some(a) = addrs.next() {
                        r.endpoints.insert(p.name.clone(), a);
                    }
                }
                // An unresolvable name is not fatal: the peer can still reach us and roam.
                Err(e) => {
                    tracing::warn!(peer = %p.name, endpoint = %ep, error = %e, "endpoint not resolved")
                }
            }
        }
    }
    Ok(r)
}

/// The status detail `edgectl wg show` renders.
pub fn ipc_status(dev: &Device) -> edge_ipc::wg::Status {
    let st = dev.status();
    let m = dev.metrics();
    let by_key: BTreeMap<&str, &crate::stats::PeerMetrics> =
        m.peers.iter().map(|p| (p.public_key.as_str(), p)).collect();
    edge_ipc::wg::Status {
        interface: st.interface.clone(),
        public_key: st.public_key.clone(),
        listen_port: st.listen_port,
        fwmark: st.fwmark,
        peers: st
            .peers
            .iter()
            .map(|p| {
                let pm = by_key.get(p.public_key.as_str());
                edge_ipc::wg::PeerStatus {
                    name: p.name.clone(),
                    public_key: p.public_key.clone(),
                    preshared_key: p.preshared_key.is_some(),
                    endpoint: p.endpoint.map(|e| e.to_string()),
                    allowed_ips: p.allowed_ips.iter().map(|n| n.to_string()).collect(),
                    latest_handshake: p.last_handshake.0,
                    rx_bytes: p.rx_bytes,
                    tx_bytes: p.tx_bytes,
                    persistent_keepalive: p.persistent_keepalive,
                    handshake_attempts: pm.map_or(0, |m| m.handshake_attempts),
                    endpoint_changes: pm.map_or(0, |m| m.endpoint_changes),
                }
            })
            .collect(),
        cookie_replies: m.cookie_replies,
    }
}

fn sample(dev: &Device) -> edge_metrics::wg::Sample {
    let m = dev.metrics();
    edge_metrics::wg::Sample {
        peers: m
            .peers
            .into_iter()
            .map(|p| edge_metrics::wg::PeerSample {
                peer: p.name.unwrap_or(p.public_key),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                handshake_attempts: p.handshake_attempts,
                handshake_failures: p.handshake_failures,
                endpoint_changes: p.endpoint_changes,
                last_handshake_seconds: p.last_handshake_seconds,
            })
            .collect(),
        cookie_replies: m.cookie_replies,
        drops: m.drops,
    }
}

/// Runs edge-wg until SIGTERM.
pub async fn run(mut shell: Shell, opts: Options) -> anyhow::Result<()> {
    let Some(wg) = shell.config().wg.clone() else {
        return idle(shell, "no [wg] section in the configuration").await;
    };
    let name = wg.interface.as_str().to_string();
    let opened = bringup::open(&name, bringup::default_queues(), &opts)?;
    let dev = opened.dev.clone();
    let desired = config::device_config(&wg, &resolve(&wg)?);
    dev.apply(&desired, &[])
        .context("failed to apply the [wg] configuration")?;
    let state_dir = shell.config().global.state_dir.clone();
    let mut store = open_store(&state_dir, wg.user.as_deref());
    let remembered = dev.seed_endpoints(&store.remembered().hints(desired.peers.values()));
    let nl = Netlink::open().context("failed to open rtnetlink")?;
    nl.configure(&name, wg.mtu, &wg.addresses)
        .await
        .with_context(|| format!("failed to configure interface {name}"))?;
    let (routes, _) = config::route_diff(&Default::default(), &desired);
    nl.sync_routes(&name, &routes, &[])
        .await
        .with_context(|| format!("failed to add the allowed-ips routes of {name}"))?;
    // The interface is up and routed: a peer answering now gets its traffic delivered.
    // Peers still holding a session from before a restart would otherwise keep sending
    // into it until their own timers give up (15 s and more).
    let keys: Vec<Key> = desired.peers.keys().copied().collect();
    let initiated = dev.initiate_handshakes(&keys);
    tracing::info!(
        peers = keys.len(),
        remembered_endpoints = remembered,
        handshakes_initiated = initiated,
        "handshakes initiated to every peer with a known endpoint"
    );
    let d2 = dev.clone();
    edge_metrics::wg::Metrics::register(&mut shell.registry().write(), move || sample(&d2));
    // Our own directory (under systemd the unit's RuntimeDirectory=), linked from the one the
    // stock `wg` looks in. A TUN created beforehand (and owned by the user) needs no
    // capability after the drop; otherwise CAP_NET_ADMIN stays for fwmark, forced buffers
    // and route changes on reload.
    let uapi_dir = shell.config().role_runtime_dir(Role::Wg);
    let running = opened.serve(&uapi_dir, wg.user.as_deref(), |p| link_uapi(&name, p))?;
    let (uapi, uapi_path) = (running.uapi, running.uapi_path);
    shell.mark_ready(&format!("{name}: {} peers", desired.peers.len()));
    store.sync_if_moved(&dev);
    // Roaming is noticed here at most once a second: the file is written when an
    // endpoint moved, never per packet, and a peer flapping between two paths costs at
    // most one write a second.
    let mut persist = tokio::time::interval(PERSIST_CHECK);
    persist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            ev = shell.next() => match ev {
                Event::Shutdown => break,
                Event::Reloaded(cfg) => {
                    if let Err(e) = reload(&dev, &nl, &name, cfg.wg.as_ref(), &store).await {
                        tracing::error!("reload not applied: {e:#}");
                        shell.push_error(format!("reload not applied: {e:#}"));
                    }
                    store.sync_if_moved(&dev);
                }
                Event::Request(Request::Status, r) => {
                    let mut st = shell.base_status();
                    st.detail = serde_json::to_value(ipc_status(&dev)).unwrap_or_default();
                    r.send(Response::Status(Box::new(st)));
                }
                Event::Request(_, r) => r.unsupported(Role::Wg),
            },
            _ = persist.tick() => store.sync_if_moved(&dev),
        }
    }
    unlink_uapi(&name, &uapi_path);
    drop(uapi);
    store.sync_now(&dev);
    dev.shutdown();
    shell.stop();
    Ok(())
}

/// Links `/var/run/wireguard/<name>.sock` to our socket where this process may (as root
/// outside systemd); under the shipped unit the privileged `ExecStartPost=` does it.
fn link_uapi(name: &str, socket: &Path) {
    match link_public(Path::new(SOCKET_DIR), name, socket) {
        Ok(PublicLink::Linked | PublicLink::AlreadyLinked) => {
            tracing::info!(link = %Path::new(SOCKET_DIR).join(format!("{name}.sock")).display(), socket = %socket.display(), "uapi socket linked for `wg`");
        }
        Ok(PublicLink::Occupied(why)) => {
            tracing::warn!("`wg {name}` will not reach edge-wg: {why}");
        }
        Err(e) => tracing::debug!(
            "cannot link the uapi socket here ({e}); the unit's ExecStartPost=+edge-wg --uapi-link does it"
        ),
    }
}

/// Removes our link in `/var/run/wireguard` (nothing else there).
fn unlink_uapi(name: &str, socket: &Path) {
    if let Err(e) = unlink_public(Path::new(SOCKET_DIR), name, socket) {
        tracing::debug!(
            "cannot unlink the uapi socket here ({e}); the unit's ExecStopPost= does it"
        );
    }
}

/// `edge-wg --uapi-link` / `--uapi-unlink`, run by the unit with privileges (`+`) after start
/// and after stop: links (or unlinks) `/var/run/wireguard/<interface>.sock` to the daemon's
/// socket in `<runtime_dir>/wg/`. Never fails the unit: a problem is printed and exit is 0.
pub fn uapi_link_command(args: &edge_ipc::shell::CommonArgs, link: bool) -> std::process::ExitCode {
    let path = edge_config::resolve_path(args.config.as_deref());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("edge-wg: cannot read {}: {e}", path.display());
            return std::process::ExitCode::SUCCESS;
        }
    };
    let cfg = match edge_config::parse(&path, &text) {
        Ok(l) => l.config,
        Err(d) => {
            eprint!("{}", d.render());
            return std::process::ExitCode::SUCCESS;
        }
    };
    let Some(wg) = &cfg.wg else {
        return std::process::ExitCode::SUCCESS;
    };
    let name = wg.interface.as_str();
    let socket = cfg.role_runtime_dir(Role::Wg).join(format!("{name}.sock"));
    let public = Path::new(SOCKET_DIR);
    if link {
        match link_public(public, name, &socket) {
            Ok(PublicLink::Occupied(why)) => {
                eprintln!(
                    "edge-wg: `wg {name}` will not reach edge-wg: {why}; stop the other WireGuard implementation using {name} or rename [wg].interface"
                );
            }
            Ok(_) => {}
            Err(e) => eprintln!("edge-wg: {:#}", anyhow::Error::new(e)),
        }
    } else if let Err(e) = unlink_public(public, name, &socket) {
        eprintln!("edge-wg: {:#}", anyhow::Error::new(e));
    }
    std::process::ExitCode::SUCCESS
}

/// How often the daemon checks whether an endpoint moved.
const PERSIST_CHECK: Duration = Duration::from_secs(1);

/// Opens the endpoint memory, creating its directory first (and handing it to `user` when
/// the daemon will switch to one); a directory that cannot be prepared is not fatal.
fn open_store(state_dir: &Path, user: Option<&str>) -> EndpointStore {
    let owner = user.and_then(|u| match nix::unistd::User::from_name(u) {
        Ok(Some(u)) => Some((u.uid, u.gid)),
        // The privilege drop reports a missing user; here it only means no chown.
        _ => None,
    });
    let dir = state::dir(state_dir);
    if let Err(e) = state::prepare_dir(&dir, owner) {
        tracing::warn!(
            "endpoints will not be remembered across restarts: {:#}",
            anyhow::Error::new(e)
        );
    }
    EndpointStore::open(state_dir)
}

/// Peers whose noise state a reload created anew: added ones, and those whose preshared
/// key changed (boringtun fixes the PSK at creation, so their session ended).
fn recreated(diff: &PeerDiff) -> Vec<Key> {
    diff.added
        .iter()
        .map(|p| p.public_key)
        .chain(
            diff.changed
                .iter()
                .filter(|c| c.preshared_key.is_some())
                .map(|c| c.public_key),
        )
        .collect()
}

async fn reload(
    dev: &Arc<Device>,
    nl: &Netlink,
    name: &str,
    wg: Option<&edge_config::wg::Wg>,
    store: &EndpointStore,
) -> anyhow::Result<()> {
    let wg = wg.context("the [wg] section was removed; restart edge-wg to stop it")?;
    if wg.interface.as_str() != name {
        anyhow::bail!(
            "the interface name changed ({name} -> {}); restart edge-wg",
            wg.interface.as_str()
        );
    }
    let desired = config::device_config(wg, &resolve(wg)?);
    let old = dev.config();
    let diff = dev
        .apply(&desired, &[])
        .context("failed to apply the new [wg] configuration")?;
    dev.seed_endpoints(&store.remembered().hints(diff.added.iter()));
    let (add, del) = config::route_diff(&old, &desired);
    nl.configure(name, wg.mtu, &wg.addresses).await?;
    nl.sync_routes(name, &add, &del).await?;
    let initiated = dev.initiate_handshakes(&recreated(&diff));
    tracing::info!(
        added = diff.added.len(),
        removed = diff.removed.len(),
        changed = diff.changed.len(),
        routes_added = add.len(),
        routes_removed = del.len(),
        handshakes_initiated = initiated,
        "configuration applied"
    );
    Ok(())
}
