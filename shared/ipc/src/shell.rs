//! I/O: the shell every daemon runs in — common arguments, config loading, logging, the
//! metrics exporter, the control socket, signals and systemd notifications. The daemon's own
//! event loop pulls [`Event`]s from [`Shell::next`] and does its job between them.
//!
//! Reload discipline: SIGHUP (or `edgectl <role> reload`) re-reads the file; the new
//! configuration replaces the running one only if it is valid. A refused reload keeps the
//! old configuration, logs the located errors and increments
//! `edge_config_reload_failures_total`.

use std::collections::VecDeque;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use edge_config::{Config, Diagnostics, LoadOptions, LogFormat, Role};
use edge_metrics::SharedRegistry;
use edge_metrics::common::{CommonMetrics, RequestLabels};
use sd_notify::NotifyState;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use crate::proto::{
    DaemonStatus, ErrorCode, ErrorEntry, ReloadSummary, Request, Response, RunSummary,
};
use crate::server::{self, Incoming};
use edge_util::unix_now;

/// How many recent errors `status` keeps.
const RECENT_ERRORS: usize = 10;

/// Arguments every daemon accepts.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// Configuration file [default: $EDGE_CONFIG, else /etc/edge/edge.toml].
    #[arg(long, short = 'c', value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format, overriding `global.log_format`.
    #[arg(long, value_name = "FORMAT", value_parser = ["auto", "text", "json"])]
    pub log_format: Option<String>,
    /// Log filter (level or tracing directives), overriding `global.log_level`.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid (exit code 2).
    #[error("the configuration is invalid")]
    Config(Diagnostics),
    /// Something else failed (exit code 1).
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Something the daemon's loop must handle.
#[derive(Debug)]
pub enum Event {
    /// A valid new configuration replaced the old one (already counted and logged).
    Reloaded(Arc<Config>),
    /// A control request for the daemon; answer it through the responder.
    Request(Request, Responder),
    /// SIGTERM or SIGINT: stop gracefully.
    Shutdown,
}

/// The reply channel of one control request.
#[derive(Debug)]
pub struct Responder {
    tx: oneshot::Sender<Response>,
    kind: &'static str,
    metrics: CommonMetrics,
}

impl Responder {
    /// Sends the answer (a client that went away is not an error).
    pub fn send(self, response: Response) {
        let result = if matches!(response, Response::Error { .. }) {
            "error"
        } else {
            "ok"
        };
        self.metrics
            .control_requests
            .get_or_create(&RequestLabels {
                request: self.kind.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        let _ = self.tx.send(response);
    }

    /// Answers that this daemon does not handle the request.
    pub fn unsupported(self, role: Role) {
        let message = format!("edge-{role} does not handle `{}` requests", self.kind);
        self.send(Response::Error {
            code: ErrorCode::Unsupported,
            message,
        });
    }
}

/// The running shell of one daemon.
#[derive(Debug)]
pub struct Shell {
    role: Role,
    path: PathBuf,
    config: Arc<Config>,
    generation: u64,
    registry: SharedRegistry,
    metrics: CommonMetrics,
    requests: mpsc::Receiver<Incoming>,
    hup: Signal,
    term: Signal,
    int: Signal,
    watchdog: Option<tokio::time::Interval>,
    ready: bool,
    started_at: u64,
    last_reload: Option<ReloadSummary>,
    last_run: Option<RunSummary>,
    errors: VecDeque<ErrorEntry>,
    socket_path: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn notify(states: &[NotifyState<'_>]) {
    // Outside systemd (no NOTIFY_SOCKET) this is a no-op.
    let _ = sd_notify::notify(states);
}

fn log_format(args: &CommonArgs, cfg: Option<&Config>) -> LogFormat {
    match args.log_format.as_deref() {
        Some("json") => LogFormat::Json,
        Some("text") => LogFormat::Text,
        Some(_) => LogFormat::Auto,
        None => cfg.map_or(LogFormat::Auto, |c| c.global.log_format),
    }
}

impl Shell {
    /// Loads the configuration, starts logging, the exporter and the control socket.
    pub async fn start(role: Role, args: &CommonArgs) -> Result<Shell, StartError> {
        let path = edge_config::resolve_path(args.config.as_deref());
        let loaded = match edge_config::load(&path, LoadOptions { role: Some(role) }) {
            Ok(l) => l,
            Err(d) => {
                edge_metrics::logging::init(log_format(args, None), "info");
                return Err(StartError::Config(d));
            }
        };
        let config = Arc::new(loaded.config);
        let filter = args
            .log_level
            .clone()
            .unwrap_or_else(|| config.global.log_level.clone());
        edge_metrics::logging::init(log_format(args, Some(&config)), &filter);
        for w in loaded.warnings.warnings() {
            tracing::warn!("{}", loaded.warnings.render_one(w).trim_end());
        }

        let registry = edge_metrics::new_registry();
        let metrics = CommonMetrics::register(&mut registry.write(), role.as_str());
        metrics.config_last_reload_success.set(unix_now() as i64);
        let addr = config.global.metrics.for_role(role).0;
        let (metrics_addr, exporter) = edge_metrics::exporter::serve(addr, registry.clone())
            .await
            .map_err(|e| anyhow::Error::new(e).context("failed to start the metrics exporter"))?;

        let socket_path = config.socket_path(role);
        let (tx, requests) = mpsc::channel(16);
        let control = server::bind(&socket_path, tx)
            .await
            .map_err(|e| anyhow::Error::new(e).context("failed to open the control socket"))?;

        let sig = |k: SignalKind, name: &str| {
            signal(k).map_err(|e| anyhow::anyhow!("failed to install the {name} handler: {e}"))
        };
        let (hup, term, int) = (
            sig(SignalKind::hangup(), "SIGHUP")?,
            sig(SignalKind::terminate(), "SIGTERM")?,
            sig(SignalKind::interrupt(), "SIGINT")?,
        );
        let watchdog = sd_notify::watchdog_enabled().map(|d| tokio::time::interval(d / 2));

        tracing::info!(
            config = %path.display(),
            metrics = %metrics_addr,
            socket = %socket_path.display(),
            "edge-{role} {} started",
            env!("CARGO_PKG_VERSION")
        );
        Ok(Shell {
            role,
            path,
            config,
            generation: 1,
            registry,
            metrics,
            requests,
            hup,
            term,
            int,
            watchdog,
            ready: false,
            started_at: unix_now(),
            last_reload: None,
            last_run: None,
            errors: VecDeque::new(),
            socket_path,
            tasks: vec![exporter, control],
        })
    }

    /// The role of this daemon.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The running configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The registry to register the daemon's own metric families in.
    pub fn registry(&self) -> &SharedRegistry {
        &self.registry
    }

    /// Waits for the next event, answering pings and reloads on the way and keeping the
    /// systemd watchdog fed while the loop is alive.
    pub async fn next(&mut self) -> Event {
        loop {
            let tick = async {
                match &mut self.watchdog {
                    Some(i) => {
                        i.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = self.hup.recv() => {
                    if let Ok(cfg) = self.reload() {
                        return Event::Reloaded(cfg);
                    }
                }
                _ = self.term.recv() => return Event::Shutdown,
                _ = self.int.recv() => return Event::Shutdown,
                _ = tick => notify(&[NotifyState::Watchdog]),
                inc = self.requests.recv() => {
                    let Some(Incoming { request, reply }) = inc else {
                        return Event::Shutdown;
                    };
                    // A client that gave up (edgectl's timeout) is not served late: an apply
                    // it believes failed must not start behind its back.
                    if reply.is_closed() {
                        tracing::debug!(request = request.kind(), "client went away before its turn; request dropped");
                        continue;
                    }
                    let responder = Responder {
                        tx: reply,
                        kind: request.kind(),
                        metrics: self.metrics.clone(),
                    };
                    match request {
                        Request::Ping => responder.send(Response::Pong {
                            role: self.role,
                            version: env!("CARGO_PKG_VERSION").to_owned(),
                            pid: std::process::id(),
                        }),
                        Request::Reload => match self.reload() {
                            Ok(cfg) => {
                                responder.send(Response::Done {
                                    message: format!(
                                        "configuration reloaded (generation {})",
                                        self.generation
                                    ),
                                    detail: serde_json::Value::Null,
                                });
                                return Event::Reloaded(cfg);
                            }
                            Err(d) => responder.send(Response::Error {
                                code: ErrorCode::InvalidConfig,
                                message: d.render(),
                            }),
                        },
                        other => return Event::Request(other, responder),
                    }
                }
            }
        }
    }

    /// Re-reads the configuration file; swaps it in only when valid.
    pub fn reload(&mut self) -> Result<Arc<Config>, Diagnostics> {
        notify(&[NotifyState::Reloading]);
        let res = edge_config::load(
            &self.path,
            LoadOptions {
                role: Some(self.role),
            },
        );
        let out = match res {
            Ok(loaded) => {
                for w in loaded.warnings.warnings() {
                    tracing::warn!("{}", loaded.warnings.render_one(w).trim_end());
                }
                self.config = Arc::new(loaded.config);
                self.generation += 1;
                self.metrics.config_reloads.inc();
                self.metrics.config_last_reload_failed.set(0);
                self.metrics.config_generation.set(self.generation as i64);
                self.metrics
                    .config_last_reload_success
                    .set(unix_now() as i64);
                self.last_reload = Some(ReloadSummary {
                    at: unix_now(),
                    ok: true,
                    errors: String::new(),
                });
                tracing::info!(generation = self.generation, "configuration reloaded");
                Ok(self.config.clone())
            }
            Err(d) => {
                self.metrics.config_reload_failures.inc();
                self.metrics.config_last_reload_failed.set(1);
                let rendered = d.render();
                tracing::error!(
                    errors = d.error_count(),
                    "configuration reload refused; keeping generation {}:\n{}",
                    self.generation,
                    rendered.trim_end()
                );
                self.last_reload = Some(ReloadSummary {
                    at: unix_now(),
                    ok: false,
                    errors: rendered.clone(),
                });
                self.push_error(format!("configuration reload refused:\n{rendered}"));
                Err(d)
            }
        };
        notify(&[NotifyState::Ready]);
        out
    }

    /// Marks the daemon ready (after its first successful apply or sync): READY=1 once.
    pub fn mark_ready(&mut self, status: &str) {
        if !self.ready {
            self.ready = true;
            self.metrics.ready.set(1);
            notify(&[NotifyState::Ready, NotifyState::Status(status)]);
            tracing::info!("ready: {status}");
        } else {
            notify(&[NotifyState::Status(status)]);
        }
    }

    /// Records the outcome of a run for `status`.
    pub fn record_run(&mut self, ok: bool, summary: impl Into<String>, duration: Duration) {
        let summary = summary.into();
        if !ok {
            self.push_error(summary.clone());
        }
        self.last_run = Some(RunSummary {
            finished_at: unix_now(),
            ok,
            summary,
            duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        });
    }

    /// Remembers an error for `status` (the caller logs it).
    pub fn push_error(&mut self, message: impl Into<String>) {
        if self.errors.len() == RECENT_ERRORS {
            self.errors.pop_front();
        }
        self.errors.push_back(ErrorEntry {
            at: unix_now(),
            message: message.into(),
        });
    }

    /// The common part of the status; the daemon fills `detail`.
    pub fn base_status(&self) -> DaemonStatus {
        DaemonStatus {
            role: self.role,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            ready: self.ready,
            started_at: self.started_at,
            config_path: self.path.display().to_string(),
            config_generation: self.generation,
            configured: self.config.has_section(self.role),
            last_reload: self.last_reload.clone(),
            last_run: self.last_run.clone(),
            recent_errors: self.errors.iter().cloned().collect(),
            detail: crate::Detail::default(),
            ha: None,
        }
    }

    /// Says STOPPING=1, closes the control socket and the exporter.
    pub fn stop(self) {
        notify(&[NotifyState::Stopping]);
        for t in &self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.socket_path);
        tracing::info!("edge-{} stopped", self.role);
    }
}

/// The loop of a daemon that has nothing to do (no section, or not implemented yet): it stays
/// up, serves metrics and status, follows reloads and stops on SIGTERM.
pub async fn idle(mut shell: Shell, reason: &str) -> anyhow::Result<()> {
    tracing::info!("{reason}: nothing to do");
    shell.mark_ready(&format!("idle: {reason}"));
    loop {
        match shell.next().await {
            Event::Shutdown => break,
            Event::Reloaded(_) => {}
            Event::Request(Request::Status, r) => {
                let mut st = shell.base_status();
                st.detail = crate::Detail::Other(serde_json::json!({ "idle": reason }));
                r.send(Response::Status(Box::new(st)));
            }
            Event::Request(_, r) => r.send(Response::Error {
                code: ErrorCode::Unsupported,
                message: format!("edge-{} is idle: {reason}", shell.role()),
            }),
        }
    }
    shell.stop();
    Ok(())
}

/// A daemon's `--once` mode, started as the daemon is (the same configuration, log format
/// and level, warnings): `f` runs with the configuration on a current-thread runtime. Exit 2
/// for a configuration that does not load or has no section for `role`, 1 when the runtime
/// cannot start, otherwise what `f` returns.
pub fn once_with<F, Fut>(role: Role, args: &CommonArgs, f: F) -> ExitCode
where
    F: FnOnce(Config) -> Fut,
    Fut: Future<Output = ExitCode>,
{
    let path = edge_config::resolve_path(args.config.as_deref());
    let loaded = match edge_config::load(&path, LoadOptions { role: Some(role) }) {
        Ok(l) => l,
        Err(d) => {
            eprint!("{}", d.render());
            return ExitCode::from(2);
        }
    };
    let level = args
        .log_level
        .clone()
        .unwrap_or_else(|| loaded.config.global.log_level.clone());
    edge_metrics::logging::init(log_format(args, Some(&loaded.config)), &level);
    for w in loaded.warnings.warnings() {
        tracing::warn!("{}", loaded.warnings.render_one(w).trim_end());
    }
    if !loaded.config.has_section(role) {
        eprintln!("edge-{role}: {} has no [{role}] section", path.display());
        return ExitCode::from(2);
    }
    let rt = match runtime(role) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(f(loaded.config))
}

/// The current-thread runtime a daemon and its `--once` run on; exit 1 (after saying why on
/// stderr) when it cannot start.
fn runtime(role: Role) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("edge-{role}: failed to start the async runtime: {e}");
            ExitCode::from(1)
        })
}

/// Sleeps until `at`; forever without one (a `select!` arm with no deadline).
pub async fn sleep_until(at: Option<std::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Runs a daemon: builds a single-threaded tokio runtime, starts the shell and calls `run`.
/// Exit codes: 0 after a graceful stop, 2 for an invalid configuration, 1 for other failures.
pub fn main_with<F, Fut>(role: Role, args: CommonArgs, run: F) -> ExitCode
where
    F: FnOnce(Shell) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let rt = match runtime(role) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let shell = match Shell::start(role, &args).await {
            Ok(s) => s,
            Err(StartError::Config(d)) => {
                eprint!("{}", d.render());
                return ExitCode::from(2);
            }
            Err(StartError::Other(e)) => {
                tracing::error!("{e:#}");
                eprintln!("edge-{role}: {e:#}");
                return ExitCode::from(1);
            }
        };
        match run(shell).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e:#}");
                eprintln!("edge-{role}: {e:#}");
                ExitCode::from(1)
            }
        }
    })
}
