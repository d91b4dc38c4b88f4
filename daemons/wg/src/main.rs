//! I/O: the `edge-wg` binary. Two modes:
//! * `edge-wg [-c edge.toml]`: the daemon of the edge suite, configured from `[wg]`;
//! * `edge-wg -f IFACE` (`--uapi-only`): a standalone device configured only over the UAPI
//!   socket, exactly like `wireguard-go -f IFACE` (benchmarks, wg-quick).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use edge_config::Role;
use edge_ipc::shell::{CommonArgs, main_with};
use nix::sys::signal::{SigSet, Signal};

use edge_wg::bringup;
use edge_wg::device::Options;
use edge_wg::uapi_server::SOCKET_DIR;

/// Userspace WireGuard endpoint of the edge suite.
#[derive(Debug, Parser)]
#[command(name = "edge-wg", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Stay in the foreground (always true; accepted for wireguard-go compatibility).
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Standalone mode: configure only over the UAPI socket (implied by IFACE).
    #[arg(long, requires = "interface")]
    uapi_only: bool,
    /// Standalone mode: user to switch to after setup (keeps CAP_NET_ADMIN).
    #[arg(long, requires = "interface")]
    user: Option<String>,
    /// Standalone mode: number of TUN queues (TX threads); default: CPUs, at most 4.
    #[arg(long)]
    queues: Option<usize>,
    /// Standalone mode: directory of the UAPI socket.
    #[arg(long, default_value = SOCKET_DIR)]
    uapi_dir: PathBuf,
    /// Link `/var/run/wireguard/<interface>.sock` to the daemon's UAPI socket and exit (the
    /// unit's privileged `ExecStartPost=`).
    #[arg(long, conflicts_with_all = ["interface", "uapi_unlink"])]
    uapi_link: bool,
    /// Remove that link if it is ours and exit (the unit's `ExecStopPost=`).
    #[arg(long, conflicts_with = "interface")]
    uapi_unlink: bool,
    /// Test only: force a new handshake with every peer every N seconds.
    #[arg(long, value_name = "N", hide = true)]
    test_rekey_secs: Option<u64>,
    /// Standalone mode: the interface to create and serve.
    interface: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.uapi_link || args.uapi_unlink {
        return edge_wg::daemon::uapi_link_command(&args.common, args.uapi_link);
    }
    let opts = Options {
        forced_rekey: args
            .test_rekey_secs
            .filter(|s| *s > 0)
            .map(std::time::Duration::from_secs),
    };
    match args.interface.clone() {
        Some(ifname) => standalone(&args, &ifname, &opts),
        None => main_with(Role::Wg, args.common, move |shell| {
            edge_wg::daemon::run(shell, opts)
        }),
    }
}

fn standalone(args: &Args, ifname: &str, opts: &Options) -> ExitCode {
    let filter = args
        .common
        .log_level
        .clone()
        .or_else(|| std::env::var("EDGE_WG_LOG").ok())
        .unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    match run_standalone(args, ifname, opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edge-wg: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run_standalone(args: &Args, ifname: &str, opts: &Options) -> anyhow::Result<()> {
    // Block the signals we wait for before any thread starts, so every thread inherits it.
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().context("failed to block signals")?;
    let queues = args.queues.unwrap_or_else(bringup::default_queues);
    let running =
        bringup::open(ifname, queues, opts)?.serve(&args.uapi_dir, args.user.as_deref(), |_| {})?;
    tracing::info!(interface = %ifname, queues, "edge-wg running (uapi only)");
    loop {
        match set.wait() {
            Ok(Signal::SIGHUP) => tracing::info!("SIGHUP: nothing to reload in uapi-only mode"),
            Ok(sig) => {
                tracing::info!(signal = ?sig, "shutting down");
                break;
            }
            Err(e) => tracing::warn!(error = %e, "sigwait failed"),
        }
    }
    let bringup::Running { dev, uapi, .. } = running;
    drop(uapi);
    dev.shutdown();
    Ok(())
}
