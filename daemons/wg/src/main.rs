//! I/O: the `edge-wg` binary: argument parsing, logging, then the device until SIGTERM.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

use edge_wg::device::Device;
use edge_wg::uapi_server::{SOCKET_DIR, UapiServer};

/// Userspace WireGuard endpoint of the edge suite.
#[derive(Debug, Parser)]
#[command(name = "edge-wg", version)]
struct Args {
    /// Stay in the foreground (the only mode; accepted for wireguard-go compatibility).
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Configure the device only over the UAPI socket, like wireguard-go.
    #[arg(long)]
    uapi_only: bool,
    /// Number of TUN queues (TX threads); default: number of CPUs, at most 4.
    #[arg(long)]
    queues: Option<usize>,
    /// Directory of the UAPI socket.
    #[arg(long, default_value = SOCKET_DIR)]
    uapi_dir: PathBuf,
    /// Interface name.
    interface: String,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EDGE_WG_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(args) {
        eprintln!("edge-wg: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    // Block the signals we wait for before any thread starts, so every thread inherits it.
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().context("failed to block signals")?;

    let queues = args.queues.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(4)
    });
    let tun = edge_wg::tun::open(&args.interface, queues)
        .with_context(|| format!("failed to open tun {}", args.interface))?;
    let dev = Device::start(&args.interface, tun).context("failed to start device")?;
    let uapi = UapiServer::start(&args.uapi_dir, dev.clone()).context("failed to start uapi")?;
    tracing::info!(interface = %args.interface, queues, uapi_only = args.uapi_only, "edge-wg running");
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
    drop(uapi);
    dev.shutdown();
    Ok(())
}
