//! `edgectl ha ...`: two edge hosts under keepalived. `fifo` is keepalived's
//! `vrrp_notify_fifo_script`: it reads the events in order, runs conntrackd's failover
//! commands, publishes the role in `<runtime_dir>/ha.json` and tells every daemon; beside it,
//! it writes keepalived's track file from real facts (edge-fw's status, the WAN carrier).
//! `status` shows the role and what each daemon follows; `keepalived-conf` prints the
//! keepalived.conf (or conntrackd.conf) of either host.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Subcommand;
use edge_config::ha::Ha;
use edge_config::{Config, Role};
use edge_ipc::follow::{read_state, state_path, write_atomic, write_state};
use edge_ipc::ha::{
    ConntrackSync, FifoLine, HEALTH_FILE, HEALTH_REPORT_FILE, HaRole, Health, RoleState,
    STATE_VERSION, parse_fifo_line,
};
use edge_ipc::proto::{ErrorCode, Response};
use edge_ipc::{Client, Request};

use crate::Global;
use crate::ha_conf::{self, Fact, Paths};
use edge_util::unix_now;

/// Arguments of `edgectl ha`.
pub type Args = super::Sub<Cmd>;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Follow keepalived's notify FIFO (run by keepalived as its `vrrp_notify_fifo_script`,
    /// which passes the FIFO as the last argument).
    Fifo {
        /// Append the log here instead of standard error (keepalived discards a script's
        /// output).
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
        /// How often the health written to keepalived's track file is checked.
        #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
        health_interval: Duration,
        /// keepalived's notify FIFO.
        fifo: PathBuf,
    },
    /// This host's role, its health and the role each daemon follows.
    Status,
    /// Print the keepalived.conf (or with --conntrackd the conntrackd.conf) of this host or
    /// of its peer, from [ha].
    KeepalivedConf {
        /// The host: this one (default) or the peer, by name.
        #[arg(long, value_name = "NAME")]
        host: Option<String>,
        /// Print conntrackd.conf instead.
        #[arg(long)]
        conntrackd: bool,
        /// Write keepalived.conf and conntrackd.conf into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        write: Option<PathBuf>,
        /// The edgectl keepalived runs [default: this one].
        #[arg(long, value_name = "PATH")]
        edgectl: Option<PathBuf>,
        /// Where `edgectl ha fifo` logs (default: standard error, discarded by keepalived).
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
        /// conntrackd's control socket.
        #[arg(long, value_name = "PATH", default_value = "/var/run/conntrackd.ctl")]
        conntrackd_socket: PathBuf,
        /// conntrackd's lock file.
        #[arg(long, value_name = "PATH", default_value = "/var/lock/conntrack.lock")]
        conntrackd_lock: PathBuf,
    },
}

/// Runs `edgectl ha`.
pub async fn run(args: Args, g: &Global) -> anyhow::Result<ExitCode> {
    let path = g.config_path();
    let Some(loaded) = super::load_or_report(&path) else {
        return Ok(ExitCode::from(2));
    };
    let cfg = Arc::new(loaded.config);
    let Some(ha) = cfg.ha.clone() else {
        eprintln!(
            "edgectl ha: {} has no [ha] section: this is a single host (see docs/ha.md to add a second one)",
            path.display()
        );
        return Ok(ExitCode::from(2));
    };
    match args.cmd {
        Cmd::Fifo {
            log,
            health_interval,
            fifo,
        } => fifo_main(cfg, ha, fifo, log, health_interval).await,
        Cmd::Status => status(&cfg, &ha, g).await,
        Cmd::KeepalivedConf {
            host,
            conntrackd,
            write,
            edgectl,
            log,
            conntrackd_socket,
            conntrackd_lock,
        } => {
            let ha = match host.as_deref() {
                None => ha,
                Some(h) if h == ha.this.name => ha,
                Some(h) if h == ha.peer.name => ha.swapped(),
                Some(h) => {
                    eprintln!(
                        "edgectl ha keepalived-conf: no host `{h}` in [ha]: the hosts are `{}` (this one) and `{}` (the peer)",
                        ha.this.name, ha.peer.name
                    );
                    return Ok(ExitCode::from(2));
                }
            };
            let config = std::path::absolute(&path).unwrap_or(path);
            let edgectl = match edgectl {
                Some(p) => p,
                None => std::env::current_exe().context("cannot find this edgectl")?,
            };
            let mut paths = Paths::installed(&config, &edgectl, &cfg.global.runtime_dir);
            paths.log = log;
            paths.conntrackd_socket = conntrackd_socket;
            paths.conntrackd_lock = conntrackd_lock;
            let k = ha_conf::keepalived_conf(&ha, &paths);
            let c = ha_conf::conntrackd_conf(&ha, &paths);
            match write {
                Some(dir) => {
                    for (name, text) in [("keepalived.conf", &k), ("conntrackd.conf", &c)] {
                        let p = dir.join(name);
                        std::fs::write(&p, text)
                            .with_context(|| format!("cannot write {}", p.display()))?;
                        println!("wrote {}", p.display());
                    }
                }
                None if conntrackd => print!("{c}"),
                None => print!("{k}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A line of the FIFO reader's log, with a UTC timestamp.
fn log(out: &std::sync::Mutex<Box<dyn std::io::Write + Send>>, msg: &str) {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    if let Ok(mut o) = out.lock() {
        let _ = writeln!(o, "{}.{:03} {msg}", t.as_secs(), t.subsec_millis());
        let _ = o.flush();
    }
}

type Log = Arc<std::sync::Mutex<Box<dyn std::io::Write + Send>>>;

async fn fifo_main(
    cfg: Arc<Config>,
    ha: Ha,
    fifo: PathBuf,
    log_path: Option<PathBuf>,
    health_interval: Duration,
) -> anyhow::Result<ExitCode> {
    let out: Box<dyn std::io::Write + Send> = match &log_path {
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("cannot open the log {}", p.display()))?,
        ),
        None => Box::new(std::io::stderr()),
    };
    let out: Log = Arc::new(std::sync::Mutex::new(out));
    let runtime = cfg.global.runtime_dir.clone();
    let state_file = state_path(&runtime);
    let mut generation = match read_state(&state_file) {
        Ok(s) => s.map_or(0, |s| s.generation),
        Err(e) => {
            log(
                &out,
                &format!(
                    "{}; starting again at generation 1",
                    edge_util::error_chain(&e)
                ),
            );
            0
        }
    };
    log(
        &out,
        &format!(
            "edgectl ha fifo: following instance `{}` on {} (generation {generation})",
            ha.instance,
            fifo.display()
        ),
    );

    let health = tokio::spawn(health_loop(
        cfg.clone(),
        ha.clone(),
        health_interval,
        out.clone(),
    ));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    {
        let (fifo, out) = (fifo.clone(), out.clone());
        std::thread::spawn(move || read_fifo(fifo, tx, out));
    }
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            line = rx.recv() => {
                let Some(line) = line else { break };
                match parse_fifo_line(&line) {
                    Ok(FifoLine::Instance { name, state, role, priority }) if name == ha.instance => {
                        generation += 1;
                        let conntrack = conntrackd_for(&ha, role, &out).await;
                        let doc = RoleState {
                            version: STATE_VERSION,
                            instance: name,
                            role,
                            generation,
                            since: unix_now(),
                            event: state.clone(),
                            priority,
                            conntrack: Some(conntrack),
                        };
                        if let Err(e) = write_state(&state_file, &doc) {
                            log(&out, &format!("error: {}", edge_util::error_chain(&e)));
                        }
                        log(&out, &format!("{state}: role {role}, generation {generation}"));
                        tell_daemons(&cfg, &doc, &out).await;
                    }
                    Ok(FifoLine::Instance { name, state, .. }) => log(
                        &out,
                        &format!("ignored: instance `{name}` {state} (this host follows `{}`)", ha.instance),
                    ),
                    Ok(FifoLine::Other(l)) => log(&out, &format!("ignored: {l}")),
                    Err(e) => log(&out, &format!("error: {e}")),
                }
            }
        }
    }
    log(&out, "edgectl ha fifo: stopping");
    health.abort();
    Ok(ExitCode::SUCCESS)
}

/// Reads lines from the FIFO forever, on a thread of its own (a read blocks until keepalived
/// writes; the process exits without waiting for it). When keepalived closes its end, the
/// FIFO is opened again (blocking until keepalived opens it again).
fn read_fifo(path: PathBuf, tx: tokio::sync::mpsc::UnboundedSender<String>, out: Log) {
    use std::io::BufRead as _;
    loop {
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                log(
                    &out,
                    &format!(
                        "error: cannot open the FIFO {}: {e} (retrying)",
                        path.display()
                    ),
                );
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        for line in std::io::BufReader::new(file).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    log(&out, &format!("error: reading the FIFO: {e}"));
                    break;
                }
            }
        }
    }
}

/// conntrackd's commands for a role (those of conntrackd's primary-backup.sh): MASTER
/// commits the peer's connections into the kernel, flushes and resyncs its caches and sends
/// a bulk update; BACKUP shortens the kernel's timers and asks the master for a resync;
/// FAULT only shortens the timers. Nothing is ever flushed from the kernel's table.
async fn conntrackd_for(ha: &Ha, role: HaRole, out: &Log) -> ConntrackSync {
    if !ha.conntrackd {
        return ConntrackSync::Disabled;
    }
    let steps: &[(&str, &str)] = match role {
        HaRole::Master => &[
            ("-c", "commit the peer's connections"),
            ("-f", "flush the caches"),
            ("-R", "resync with the kernel"),
            ("-B", "send a bulk update"),
        ],
        HaRole::Backup => &[("-t", "shorten the timers"), ("-n", "ask for a resync")],
        HaRole::Fault => &[("-t", "shorten the timers")],
    };
    let conf = ha.conntrackd_config.to_string_lossy().into_owned();
    let mut errors = Vec::new();
    for (flag, what) in steps {
        let t = std::time::Instant::now();
        let run = tokio::process::Command::new("conntrackd")
            .args(["-C", &conf, flag])
            .stdin(std::process::Stdio::null())
            .output();
        let res = match tokio::time::timeout(Duration::from_secs(5), run).await {
            Ok(Ok(o)) if o.status.success() => Ok(()),
            Ok(Ok(o)) => Err(format!(
                "`conntrackd -C {conf} {flag}` failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Ok(Err(e)) => Err(format!(
                "cannot run conntrackd: {e} (install the conntrackd package)"
            )),
            Err(_) => Err(format!("`conntrackd -C {conf} {flag}` took over 5 s")),
        };
        match res {
            Ok(()) => log(
                out,
                &format!("conntrackd {flag}: {what} ({} ms)", t.elapsed().as_millis()),
            ),
            Err(e) => {
                log(out, &format!("error: {e}"));
                errors.push(e);
            }
        }
    }
    if errors.is_empty() {
        ConntrackSync::Done
    } else {
        ConntrackSync::Failed {
            error: errors.join("; "),
        }
    }
}

/// Sends the role to every daemon with a section, all at once; a daemon that is down reads
/// the file when it starts.
async fn tell_daemons(cfg: &Config, doc: &RoleState, out: &Log) {
    let mut set = tokio::task::JoinSet::new();
    for role in Role::ALL {
        if !cfg.has_section(role) {
            continue;
        }
        let client = Client::new(role, cfg.socket_path(role)).with_timeout(Duration::from_secs(2));
        let req = Request::SetRole(Box::new(doc.clone()));
        set.spawn(async move { (role, client.request(req).await) });
    }
    while let Some(Ok((role, res))) = set.join_next().await {
        let unit = role.binary();
        let line = match res {
            Ok(Response::Done { message, .. }) => format!("{unit}: {message}"),
            Ok(Response::Error {
                code: ErrorCode::Unsupported,
                ..
            }) => format!("{unit}: does not follow the role"),
            Ok(Response::Error { message, .. }) => format!("{unit}: refused: {message}"),
            Ok(other) => format!("{unit}: unexpected answer {other:?}"),
            Err(e) => format!(
                "{unit}: {} (it reads {} when it starts)",
                edge_util::error_chain(&e),
                edge_ipc::ha::STATE_FILE
            ),
        };
        log(out, &line);
    }
}

/// The carrier of `interface` in this network namespace (`None`: missing or down).
fn carrier(interface: &str) -> Option<bool> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{interface}/carrier")).ok()?;
    Some(text.trim() == "1")
}

/// Gathers the facts the health is made of: edge-fw's table applied (from its status),
/// edge-wg answering (when configured), the carrier of the VRRP interface (the kernel).
async fn facts(cfg: &Config, ha: &Ha) -> Vec<Fact> {
    let mut facts = Vec::new();
    for role in [Role::Fw, Role::Wg] {
        if !cfg.has_section(role) {
            continue;
        }
        let client = Client::new(role, cfg.socket_path(role)).with_timeout(Duration::from_secs(1));
        match client.request(Request::Status).await {
            Ok(Response::Status(st)) if role == Role::Fw => {
                let last_ok = st.last_run.as_ref().is_none_or(|r| r.ok);
                facts.push(Fact::Firewall {
                    applied: st.ready && last_ok,
                    detail: st.last_run.map_or_else(
                        || "no apply yet".to_owned(),
                        |r| r.summary.lines().next().unwrap_or_default().to_owned(),
                    ),
                });
            }
            Ok(Response::Status(_)) => {}
            Ok(other) => facts.push(Fact::NotAnswering {
                unit: role.binary().to_owned(),
                error: format!("unexpected answer {other:?}"),
            }),
            Err(e) => facts.push(Fact::NotAnswering {
                unit: role.binary().to_owned(),
                error: e.to_string(),
            }),
        }
    }
    facts.push(Fact::Carrier {
        interface: ha.interface.to_string(),
        up: carrier(ha.interface.as_str()),
    });
    facts
}

/// Writes keepalived's track file (`0` healthy, `1` not) whenever the verdict changes, and
/// the reasons beside it.
async fn health_loop(cfg: Arc<Config>, ha: Ha, every: Duration, out: Log) {
    let dir = cfg.global.runtime_dir.clone();
    let track = dir.join(HEALTH_FILE);
    let report = dir.join(HEALTH_REPORT_FILE);
    let mut last: Option<(bool, Vec<String>)> = None;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let verdict = ha_conf::health(&facts(&cfg, &ha).await);
        let value = if verdict.0 { "0\n" } else { "1\n" };
        let on_disk = std::fs::read_to_string(&track).unwrap_or_default();
        if last.as_ref() == Some(&verdict) && on_disk == value {
            continue;
        }
        let h = Health {
            ok: verdict.0,
            problems: verdict.1.clone(),
            at: unix_now(),
        };
        if let Ok(json) = serde_json::to_vec_pretty(&h)
            && let Err(e) = write_atomic(&report, &json)
        {
            log(
                &out,
                &format!("error: cannot write {}: {e}", report.display()),
            );
        }
        if on_disk != value
            && let Err(e) = write_atomic(&track, value.as_bytes())
        {
            log(
                &out,
                &format!("error: cannot write {}: {e}", track.display()),
            );
            continue;
        }
        if verdict.0 {
            log(&out, "health: ok (track file 0)");
        } else {
            log(
                &out,
                &format!(
                    "health: NOT ok (track file 1, priority lowered): {}",
                    verdict.1.join("; ")
                ),
            );
        }
        last = Some(verdict);
    }
}

async fn status(cfg: &Config, ha: &Ha, g: &Global) -> anyhow::Result<ExitCode> {
    let dir = &cfg.global.runtime_dir;
    let state = read_state(&state_path(dir));
    let health: Option<Health> = std::fs::read(dir.join(HEALTH_REPORT_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut daemons = Vec::new();
    for role in Role::ALL {
        if !cfg.has_section(role) {
            continue;
        }
        let client = Client::new(role, cfg.socket_path(role)).with_timeout(Duration::from_secs(3));
        let v = match client.request(Request::Status).await {
            Ok(Response::Status(st)) => match st.ha {
                Some(h) => serde_json::json!({"role": role, "running": true, "follows": true,
                    "standing": h.standing, "generation": h.generation}),
                None => serde_json::json!({"role": role, "running": true, "follows": false}),
            },
            Ok(_) => serde_json::json!({"role": role, "running": true, "follows": false}),
            Err(e) => serde_json::json!({"role": role, "running": false, "error": e.to_string()}),
        };
        daemons.push(v);
    }
    let (role, err) = match &state {
        Ok(s) => (s.clone(), None),
        Err(e) => (None, Some(edge_util::error_chain(e))),
    };
    if g.json {
        let v = serde_json::json!({
            "version": 1,
            "host": ha.this.name,
            "peer": ha.peer.name,
            "instance": ha.instance,
            "role": role,
            "error": err,
            "health": health,
            "daemons": daemons,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} (peer {}), VRRP instance `{}` on {}",
        ha.this.name, ha.peer.name, ha.instance, ha.interface
    );
    match (&role, &err) {
        (Some(s), _) => {
            println!(
                "  role      {} since {} (generation {}, keepalived said {})",
                s.role, s.since, s.generation, s.event
            );
            if let Some(c) = &s.conntrack {
                println!("  conntrack {}", serde_json::to_string(c)?);
            }
        }
        (None, Some(e)) => println!("  role      unknown: {e}"),
        (None, None) => println!(
            "  role      none yet: keepalived has sent no event (is it running with edge's keepalived.conf?); the daemons act as BACKUP"
        ),
    }
    match &health {
        Some(h) if h.ok => println!("  health    ok"),
        Some(h) => println!("  health    NOT ok: {}", h.problems.join("; ")),
        None => println!("  health    not written yet (edgectl ha fifo is not running)"),
    }
    for d in &daemons {
        let unit = format!("edge-{}", d["role"].as_str().unwrap_or_default());
        if d["running"] == false {
            println!(
                "  {unit:<10} not running ({})",
                d["error"].as_str().unwrap_or_default()
            );
        } else if d["follows"] == true {
            println!(
                "  {unit:<10} {} (generation {})",
                d["standing"].as_str().unwrap_or_default(),
                d["generation"]
            );
        } else {
            println!("  {unit:<10} does not follow the role");
        }
    }
    Ok(ExitCode::SUCCESS)
}
