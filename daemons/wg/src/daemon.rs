//! I/O: the edge-wg daemon loop on the edge shell: load `[wg]`, open the TUN, apply the
//! configuration, give peers without a configured endpoint the one remembered from the
//! last run, set addresses/MTU/routes, initiate a handshake to every peer with a known
//! endpoint, drop privileges, serve the UAPI, then follow reloads (SIGHUP or `edgectl wg
//! reload`) by applying only the peer difference, and persist roamed endpoints. Without a
//! reload it also drops peers when their `expires` comes (sessions and routes), and looks
//! a peer's endpoint name up again when its handshakes stop being answered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge_config::wg::Wg;
use parking_lot::Mutex;
use tokio::sync::mpsc;

use anyhow::Context as _;
use edge_config::Role;
use edge_ipc::ha::{Change, Standing};
use edge_notify::{Event as Notification, Notifier};

use crate::stale::{Seen, StaleWatch};
use edge_ipc::proto::{Request, Response};
use edge_ipc::shell::{Event, Shell, idle};

mod status;
mod uapi_link;

pub use status::ipc_status;
pub use uapi_link::uapi_link_command;

use status::{sample, status_with};
use uapi_link::{link_uapi, unlink_uapi};

use crate::bringup;
use crate::config::{self, Resolved};
use crate::device::{Device, Options};
use crate::diff::PeerDiff;
use crate::model::Key;
use crate::netlink::Netlink;
use crate::resolver::{EndpointResolver, ResolveError};
use crate::state::{self, EndpointStore};
use crate::uapi_server::UapiServer;
use edge_util::unix_now_i64;

/// Reads the secrets and resolves the endpoints a `[wg]` section names.
pub async fn resolve(wg: &Wg, resolver: &EndpointResolver) -> anyhow::Result<Resolved> {
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
            match resolver.resolve(&ep.host, ep.port.get()).await {
                Ok(a) => {
                    r.endpoints.insert(p.name.clone(), a);
                }
                // An unresolvable name is not fatal: the peer can still reach us and roam,
                // and the name is looked up again when handshakes go unanswered.
                Err(e) => {
                    tracing::warn!(peer = %p.name, endpoint = %ep, "endpoint not resolved: {:#}", anyhow::Error::new(e))
                }
            }
        }
    }
    Ok(r)
}

/// What the daemon knows beside the engine, shared with the metrics scrape.
#[derive(Debug, Default)]
struct Extra {
    /// The `[wg]` section in force.
    wg: Option<Wg>,
    /// Lookups of each peer's endpoint name.
    lookups: BTreeMap<String, u64>,
    /// The address each peer's endpoint name last resolved to, and when (Unix seconds).
    resolved: BTreeMap<String, (SocketAddr, u64)>,
}

/// A finished lookup of one peer's endpoint name.
struct Lookup {
    peer: String,
    host: String,
    result: Result<SocketAddr, ResolveError>,
}

/// The daemon's view of `[wg]`: the section in force, its resolved endpoints, and the
/// bookkeeping of lookups and expiries.
struct Live {
    name: String,
    wg: Wg,
    resolved: Resolved,
    resolver: EndpointResolver,
    reresolve: config::Reresolve,
    started: Instant,
    extra: Arc<Mutex<Extra>>,
    lookups: mpsc::Sender<Lookup>,
    /// Peers already reported as expired (logged once each).
    expired: Vec<String>,
    /// Unix time the daemon started: an expiry before it was reported by an earlier run
    /// (it is logged again, not notified again).
    started_unix: i64,
    /// `wg.*` notifications.
    notifier: Notifier,
    /// Peers meant to stay up that went silent.
    stale: StaleWatch,
}

impl Live {
    /// Resolves the endpoints of `wg` and starts the bookkeeping beside the engine: the
    /// lookups' channel (its receiver is returned), the notifier, the watch for silent peers.
    async fn start(
        shell: &Shell,
        name: &str,
        wg: &Wg,
    ) -> anyhow::Result<(Live, mpsc::Receiver<Lookup>)> {
        let resolver = EndpointResolver::new(&wg.resolvers);
        let resolved = resolve(wg, &resolver).await?;
        let (lookup_tx, lookup_rx) = mpsc::channel(16);
        let notify_metrics = edge_metrics::notify::Metrics::register(&mut shell.registry().write());
        let mut live = Live {
            name: name.to_string(),
            wg: wg.clone(),
            resolved,
            resolver,
            reresolve: config::Reresolve::default(),
            started: Instant::now(),
            extra: Arc::new(Mutex::new(Extra::default())),
            lookups: lookup_tx,
            expired: Vec::new(),
            started_unix: unix_now_i64(),
            notifier: Notifier::start(shell.config(), "edge-wg", notify_metrics),
            stale: StaleWatch::new(stale_after(shell.config()), unix_now_i64().max(0) as u64),
        };
        live.note_resolved();
        Ok((live, lookup_rx))
    }

    /// Applies the section at the current time (peers that expired are left out) and
    /// brings the routes along. Equivalent to: `wg syncconf` + `ip route replace/del`.
    async fn converge(&mut self, dev: &Arc<Device>, nl: &Netlink) -> anyhow::Result<PeerDiff> {
        let now = unix_now_i64();
        let desired = config::device_config(&self.wg, &self.resolved, now);
        let old = dev.config();
        let diff = dev
            .apply(&desired, &[])
            .context("failed to apply the [wg] configuration")?;
        let (add, del) = config::route_diff(&old, &desired);
        nl.sync_routes(&self.name, &add, &del)
            .await
            .with_context(|| format!("failed to update the allowed-ips routes of {}", self.name))?;
        self.report_expired(now, !dev.standby());
        Ok(diff)
    }

    /// Logs each peer that expired, once; the master (or a single host) also notifies
    /// `wg.peer_expired` for an expiry that passed while it ran.
    fn report_expired(&mut self, now: i64, active: bool) {
        let expired: Vec<String> = self
            .wg
            .peers
            .iter()
            .filter(|p| config::is_expired(p, now))
            .map(|p| p.name.clone())
            .collect();
        for p in self.wg.peers.iter().filter(|p| config::is_expired(p, now)) {
            if !self.expired.contains(&p.name) {
                tracing::warn!(
                    peer = %p.name,
                    expires = %p.expires.map(|e| e.to_rfc3339()).unwrap_or_default(),
                    "peer expired: its sessions and routes are removed; `edgectl wg peer renew {} --expires WHEN` brings it back",
                    p.name
                );
                if let Some(at) = p.expires.map(|e| e.unix())
                    && active
                    && at >= self.started_unix
                {
                    self.notifier.send(Notification::WgPeerExpired {
                        peer: p.name.clone(),
                        expired_at: at.max(0) as u64,
                    });
                }
            }
        }
        self.expired = expired;
    }

    /// Reports each peer meant to stay up (an endpoint or a persistent keepalive) that
    /// has gone `notify.wg_handshake_stale_after` without a handshake. Not on standby:
    /// the sessions are the other host's.
    fn check_stale(&mut self, dev: &Device) {
        if dev.standby() {
            return;
        }
        let now = unix_now_i64();
        let last: BTreeMap<String, u64> = dev
            .status()
            .peers
            .iter()
            .map(|p| (p.public_key.clone(), p.last_handshake.0))
            .collect();
        let seen: Vec<Seen<'_>> = self
            .wg
            .peers
            .iter()
            .map(|p| Seen {
                name: &p.name,
                last_handshake: last.get(&p.public_key.to_base64()).copied().unwrap_or(0),
                watched: (p.endpoint.is_some() || p.persistent_keepalive.is_some_and(|k| k > 0))
                    && !config::is_expired(p, now),
            })
            .collect();
        for e in self.stale.check(now.max(0) as u64, &seen) {
            tracing::warn!(kind = e.kind(), "{}", e.summary());
            self.notifier.send(e);
        }
    }

    /// How long until the next peer expires.
    fn until_next_expiry(&self) -> Option<Duration> {
        let next = config::next_expiry(&self.wg, unix_now_i64())?;
        let at = UNIX_EPOCH + Duration::from_secs(next.max(0) as u64);
        Some(at.duration_since(SystemTime::now()).unwrap_or_default())
    }

    /// Starts a lookup of every peer's endpoint name whose handshakes have gone unanswered
    /// long enough ([`config::Reresolve`]).
    fn check_reresolve(&mut self, dev: &Device) {
        let unanswered: BTreeMap<Key, Duration> = dev.unanswered_handshakes().into_iter().collect();
        let now = self.started.elapsed();
        let names = config::dns_endpoints(&self.wg);
        self.reresolve
            .retain(&names.iter().map(|(n, _, _)| n.clone()).collect::<Vec<_>>());
        for (peer, host, port) in names {
            let Some(p) = self.wg.peers.iter().find(|p| p.name == peer) else {
                continue;
            };
            let silent = unanswered.get(&Key(p.public_key.0)).copied();
            if !self.reresolve.due(&peer, silent, now) {
                continue;
            }
            tracing::info!(peer = %peer, endpoint = %host, unanswered_s = silent.map(|d| d.as_secs()).unwrap_or(0), "handshakes unanswered: looking the endpoint name up again");
            let resolver = self.resolver.clone();
            let tx = self.lookups.clone();
            tokio::spawn(async move {
                let result = resolver.resolve(&host, port).await;
                let _ = tx.send(Lookup { peer, host, result }).await;
            });
        }
    }

    /// Takes a finished lookup: a new address becomes the peer's endpoint at once, with a
    /// handshake initiation to it.
    async fn on_lookup(&mut self, l: Lookup, dev: &Arc<Device>, nl: &Netlink) {
        *self.extra.lock().lookups.entry(l.peer.clone()).or_default() += 1;
        let addr = match l.result {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(peer = %l.peer, endpoint = %l.host, "endpoint name lookup failed, the peer keeps its last address: {:#}", anyhow::Error::new(e));
                return;
            }
        };
        self.extra
            .lock()
            .resolved
            .insert(l.peer.clone(), (addr, unix_now_i64() as u64));
        let old = self.resolved.endpoints.get(&l.peer).copied();
        if old == Some(addr) {
            tracing::info!(peer = %l.peer, endpoint = %l.host, address = %addr, "endpoint name still resolves to the same address");
            return;
        }
        self.resolved.endpoints.insert(l.peer.clone(), addr);
        tracing::info!(peer = %l.peer, endpoint = %l.host, from = ?old, to = %addr, "endpoint name resolves to a new address: the peer's endpoint moves there");
        if let Err(e) = self.converge(dev, nl).await {
            tracing::error!("endpoint change not applied: {e:#}");
            return;
        }
        if let Some(p) = self.wg.peers.iter().find(|p| p.name == l.peer) {
            dev.initiate_handshakes(&[Key(p.public_key.0)]);
        }
    }

    /// Notes the addresses the start or a reload resolved.
    fn note_resolved(&mut self) {
        let now = unix_now_i64() as u64;
        let mut x = self.extra.lock();
        x.wg = Some(self.wg.clone());
        for (peer, _, _) in config::dns_endpoints(&self.wg) {
            if let Some(a) = self.resolved.endpoints.get(&peer) {
                x.resolved.insert(peer.clone(), (*a, now));
                *x.lookups.entry(peer).or_default() += 1;
            }
        }
    }
}

/// Runs edge-wg until SIGTERM.
pub async fn run(mut shell: Shell, opts: Options) -> anyhow::Result<()> {
    let Some(wg) = shell.config().wg.clone() else {
        return idle(shell, "no [wg] section in the configuration").await;
    };
    let mut daemon = Daemon::start(&mut shell, &wg, &opts).await?;
    daemon.serve(&mut shell).await;
    daemon.stop(shell).await;
    Ok(())
}

/// The running daemon: the engine, its interface and what follows the configuration, the
/// role and the endpoints, from [`Daemon::start`] to [`Daemon::stop`].
struct Daemon {
    dev: Arc<Device>,
    nl: Netlink,
    live: Live,
    ha: edge_ipc::follow::Follower,
    store: EndpointStore,
    lookup_rx: mpsc::Receiver<Lookup>,
    uapi: UapiServer,
    uapi_path: PathBuf,
}

impl Daemon {
    /// Opens the TUN, applies `[wg]`, remembers endpoints, sets addresses and routes,
    /// initiates handshakes, registers the metrics, drops privileges and serves the UAPI.
    async fn start(shell: &mut Shell, wg: &Wg, opts: &Options) -> anyhow::Result<Daemon> {
        let name = wg.interface.as_str().to_string();
        let opened = bringup::open(&name, bringup::default_queues(), opts)?;
        let dev = opened.dev.clone();
        let (mut live, lookup_rx) = Live::start(shell, &name, wg).await?;
        let ha = join_pair(shell.config(), &dev);
        let desired = config::device_config(wg, &live.resolved, unix_now_i64());
        dev.apply(&desired, &[])
            .context("failed to apply the [wg] configuration")?;
        live.report_expired(unix_now_i64(), !dev.standby());
        let state_dir = shell.config().global.state_dir.clone();
        let mut store = open_store(&state_dir, wg.user.as_deref());
        let remembered = dev.seed_endpoints(&store.remembered().hints(desired.peers.values()));
        let nl = bring_up_interface(&name, wg, &desired).await?;
        greet_peers(&dev, &desired, remembered);
        let (d2, x2) = (dev.clone(), live.extra.clone());
        edge_metrics::wg::Metrics::register(&mut shell.registry().write(), move || {
            sample(&d2, &x2)
        });
        // Our own directory (under systemd the unit's RuntimeDirectory=), linked from the
        // one the stock `wg` looks in. A TUN created beforehand (and owned by the user)
        // needs no capability after the drop; otherwise CAP_NET_ADMIN stays for fwmark,
        // forced buffers and route changes on reload.
        let uapi_dir = shell.config().role_runtime_dir(Role::Wg);
        let running = opened.serve(&uapi_dir, wg.user.as_deref(), |p| link_uapi(&name, p))?;
        shell.mark_ready(&format!("{name}: {} peers", desired.peers.len()));
        store.sync_if_moved(&dev);
        Ok(Daemon {
            dev,
            nl,
            live,
            ha,
            store,
            lookup_rx,
            uapi: running.uapi,
            uapi_path: running.uapi_path,
        })
    }

    /// Follows reloads, role changes, status requests, expiries and lookups until shutdown.
    async fn serve(&mut self, shell: &mut Shell) {
        // Roaming is noticed here at most once a second: the file is written when an
        // endpoint moved, never per packet, and a peer flapping between two paths costs at
        // most one write a second.
        let mut persist = tokio::time::interval(PERSIST_CHECK);
        persist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            // Rebuilt on every turn: a reload or a renew moves the next expiry.
            let next_expiry = self.live.until_next_expiry();
            let expiry = async move {
                match next_expiry {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = shell.next() => match ev {
                    Event::Shutdown => break,
                    Event::Reloaded(cfg) => self.on_reload(shell, &cfg).await,
                    Event::Request(Request::SetRole(state), r) => {
                        let change = self.ha.set_role(*state);
                        r.send(self.ha.answer(&change));
                        if let Change::Changed { to, .. } = change {
                            follow_role(&self.dev, to, &mut self.live);
                        }
                    }
                    Event::Request(Request::Status, r) => {
                        let mut st = shell.base_status();
                        let detail = status_with(&self.dev, Some(&self.live.extra.lock()));
                        st.detail = edge_ipc::Detail::Wg(Box::new(detail));
                        st.ha = Some(self.ha.status());
                        r.send(Response::Status(Box::new(st)));
                    }
                    Event::Request(_, r) => r.unsupported(Role::Wg),
                },
                () = expiry => {
                    if let Err(e) = self.live.converge(&self.dev, &self.nl).await {
                        tracing::error!("expiry not applied: {e:#}");
                        shell.push_error(format!("expiry not applied: {e:#}"));
                    }
                }
                Some(l) = self.lookup_rx.recv() => self.live.on_lookup(l, &self.dev, &self.nl).await,
                _ = persist.tick() => self.on_tick().await,
            }
        }
    }

    /// Applies a reloaded configuration: `[wg]`, reaching out, notifications, the role.
    async fn on_reload(&mut self, shell: &mut Shell, cfg: &edge_config::Config) {
        let dev = &self.dev;
        if let Err(e) = reload(dev, &self.nl, &mut self.live, cfg.wg.as_ref(), &self.store).await {
            tracing::error!("reload not applied: {e:#}");
            shell.push_error(format!("reload not applied: {e:#}"));
        }
        if listen_address(cfg) != dev.listen_address() {
            tracing::warn!("[ha] changed the address to listen on; restart edge-wg to bind it");
        }
        dev.set_reach_out(cfg.ha.is_some());
        self.live.notifier.reload(cfg);
        self.live.stale.set_threshold(stale_after(cfg));
        if let Change::Changed { to, .. } = self.ha.reload(cfg) {
            follow_role(dev, to, &mut self.live);
        }
        self.store.sync_if_moved(dev);
    }

    /// The once-a-second checks: role file, moved endpoints, names to look up again,
    /// silent peers, expiries a clock jump passed.
    async fn on_tick(&mut self) {
        let (dev, live) = (&self.dev, &mut self.live);
        // The role file is the safety net for a SetRole that did not arrive.
        if let Change::Changed { to, .. } = self.ha.refresh() {
            follow_role(dev, to, live);
        }
        self.store.sync_if_moved(dev);
        live.check_reresolve(dev);
        live.check_stale(dev);
        // A clock that jumped past an expiry is caught here.
        if live
            .wg
            .peers
            .iter()
            .any(|p| config::is_expired(p, unix_now_i64()) && !live.expired.contains(&p.name))
            && let Err(e) = live.converge(dev, &self.nl).await
        {
            tracing::error!("expiry not applied: {e:#}");
        }
    }

    /// Unlinks and closes the UAPI socket, saves the endpoints, stops the engine and sends
    /// what notifications are still queued.
    async fn stop(mut self, shell: Shell) {
        unlink_uapi(&self.live.name, &self.uapi_path);
        drop(self.uapi);
        self.store.sync_now(&self.dev);
        self.dev.shutdown();
        if !self.live.notifier.flush(Duration::from_secs(2)).await {
            tracing::warn!("notifications still queued at exit were dropped");
        }
        shell.stop();
    }
}

/// Two hosts under keepalived: listen on the virtual address the ISP router forwards to,
/// and stay on standby unless this host is the master.
fn join_pair(cfg: &edge_config::Config, dev: &Device) -> edge_ipc::follow::Follower {
    let ha = edge_ipc::follow::Follower::start(cfg);
    dev.set_reach_out(cfg.ha.is_some());
    dev.set_listen_address(listen_address(cfg));
    dev.set_standby(!ha.standing().is_active());
    ha
}

/// Sets the interface's MTU and addresses and adds the routes of every allowed IP.
async fn bring_up_interface(
    name: &str,
    wg: &Wg,
    desired: &crate::model::DeviceConfig,
) -> anyhow::Result<Netlink> {
    let nl = Netlink::open().context("failed to open rtnetlink")?;
    nl.configure(name, wg.mtu, &wg.addresses)
        .await
        .with_context(|| format!("failed to configure interface {name}"))?;
    let (routes, _) = config::route_diff(&Default::default(), desired);
    nl.sync_routes(name, &routes, &[])
        .await
        .with_context(|| format!("failed to add the allowed-ips routes of {name}"))?;
    Ok(nl)
}

/// The interface is up and routed: a peer answering now gets its traffic delivered.
/// Peers still holding a session from before a restart would otherwise keep sending into
/// it until their own timers give up (15 s and more).
fn greet_peers(dev: &Device, desired: &crate::model::DeviceConfig, remembered: usize) {
    let keys: Vec<Key> = desired.peers.keys().copied().collect();
    let initiated = dev.initiate_handshakes(&keys);
    tracing::info!(
        peers = keys.len(),
        remembered_endpoints = remembered,
        handshakes_initiated = initiated,
        "handshakes initiated to every peer with a known endpoint"
    );
}

/// `notify.wg_handshake_stale_after` (its default without `[notify]`).
fn stale_after(cfg: &edge_config::Config) -> Duration {
    cfg.notify.as_ref().map_or_else(
        || edge_config::notify::Notify::default().wg_handshake_stale_after,
        |n| n.wg_handshake_stale_after,
    )
}

/// The address to listen on: the first IPv4 virtual address of `[ha]` on its interface
/// (the one the ISP router forwards to); every address without `[ha]`.
fn listen_address(cfg: &edge_config::Config) -> Option<std::net::Ipv4Addr> {
    let ha = cfg.ha.as_ref()?;
    ha.vips
        .iter()
        .filter(|v| v.interface == ha.interface)
        .find_map(|v| match v.address.addr() {
            std::net::IpAddr::V4(a) => Some(a),
            std::net::IpAddr::V6(_) => None,
        })
}

/// Follows a new role: standby as BACKUP or FAULT; becoming active, a handshake
/// initiation to every peer with a known endpoint at once (the peers' sessions are with
/// the other host).
fn follow_role(dev: &Device, to: Standing, live: &mut Live) {
    let changed = dev.set_standby(!to.is_active());
    if changed && to.is_active() {
        live.stale.restart(unix_now_i64().max(0) as u64);
        let keys: Vec<Key> = live.wg.peers.iter().map(|p| Key(p.public_key.0)).collect();
        let initiated = dev.initiate_handshakes(&keys);
        tracing::info!(
            role = %to,
            handshakes_initiated = initiated,
            "active: handshakes initiated to every peer with a known endpoint"
        );
    }
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
    live: &mut Live,
    wg: Option<&Wg>,
    store: &EndpointStore,
) -> anyhow::Result<()> {
    let wg = wg.context("the [wg] section was removed; restart edge-wg to stop it")?;
    let name = live.name.clone();
    if wg.interface.as_str() != name {
        anyhow::bail!(
            "the interface name changed ({name} -> {}); restart edge-wg",
            wg.interface.as_str()
        );
    }
    if wg.resolvers != live.wg.resolvers {
        live.resolver = EndpointResolver::new(&wg.resolvers);
    }
    // Every endpoint name is looked up again: a reload is when the user expects it.
    let resolved = resolve(wg, &live.resolver).await?;
    let (old_wg, old_resolved) = (
        std::mem::replace(&mut live.wg, wg.clone()),
        std::mem::replace(&mut live.resolved, resolved),
    );
    let old = dev.config();
    let diff = match live.converge(dev, nl).await {
        Ok(d) => d,
        Err(e) => {
            live.wg = old_wg;
            live.resolved = old_resolved;
            return Err(e);
        }
    };
    live.note_resolved();
    dev.seed_endpoints(&store.remembered().hints(diff.added.iter()));
    nl.configure(&name, wg.mtu, &wg.addresses).await?;
    let (add, del) = config::route_diff(&old, &dev.config());
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
