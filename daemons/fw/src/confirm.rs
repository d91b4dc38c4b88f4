//! I/O: the self-confirming apply. The previous tables are saved, the new ruleset applied,
//! then probes run until they all pass (confirmed by itself), a human confirms
//! (`edgectl fw confirm`), or the window ends — then the saved tables are restored.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::apply::{self, ApplyError, Live, Options};
use crate::ir::Ruleset;
use crate::model::Model;
use crate::safety;

/// One check that the host is still reachable after an apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TCP connect to a forward's target succeeds.
    Tcp {
        /// What it checks (`forward http -> 10.17.5.30:80`).
        what: String,
        /// Where to connect.
        addr: SocketAddr,
    },
    /// A UDP socket is bound on the WireGuard port (the WireGuard endpoint answers there).
    UdpBound {
        /// The port.
        port: u16,
    },
    /// The applied ruleset still admits SSH from the admin/WireGuard networks and the
    /// WireGuard port (the anti-lockout proof, re-run on the applied IR).
    Admission,
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Tcp { what, .. } => f.write_str(what),
            Probe::UdpBound { port } => write!(f, "WireGuard udp/{port} bound"),
            Probe::Admission => f.write_str("SSH and WireGuard admitted by the ruleset"),
        }
    }
}

/// The default probes: each forward target accepts a TCP connect (TCP forwards), the
/// WireGuard port is bound, SSH/WireGuard are admitted.
pub fn default_probes(m: &Model) -> Vec<Probe> {
    let mut v: Vec<Probe> =
        m.fw.forwards
            .iter()
            .filter(|f| f.proto.has_tcp())
            .map(|f| Probe::Tcp {
                what: format!("forward {} -> {}:{}", f.name, f.to, f.to_port.start),
                addr: SocketAddr::new(f.to, f.to_port.start.get()),
            })
            .collect();
    if let Some(port) = m.wg_port() {
        v.push(Probe::UdpBound { port });
    }
    v.push(Probe::Admission);
    v
}

fn udp_bound(port: u16) -> bool {
    // /proc/net/udp{,6}: "sl local_address rem_address st ..." with local as HEX_IP:HEX_PORT.
    let hex = format!(":{port:04X}");
    // thread-self: this thread may have entered another network namespace (setns).
    ["/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"]
        .iter()
        .any(|p| {
            std::fs::read_to_string(p)
                .map(|t| {
                    t.lines().skip(1).any(|l| {
                        l.split_whitespace()
                            .nth(1)
                            .is_some_and(|a| a.ends_with(&hex))
                    })
                })
                .unwrap_or(false)
        })
}

/// Runs one probe; `Err` says why it failed.
pub fn run_probe(p: &Probe, m: &Model, rs: &Ruleset, timeout: Duration) -> Result<(), String> {
    match p {
        Probe::Tcp { addr, .. } => TcpStream::connect_timeout(addr, timeout)
            .map(|_| ())
            .map_err(|e| format!("connect to {addr}: {e}")),
        Probe::UdpBound { port } => {
            if udp_bound(*port) {
                Ok(())
            } else {
                Err(format!("nothing is bound on udp/{port}"))
            }
        }
        Probe::Admission => safety::check(m, rs).map_err(|v| {
            v.iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        }),
    }
}

/// How a self-confirming apply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every probe passed: confirmed by itself.
    ConfirmedByProbes,
    /// Confirmed by hand before the probes passed.
    ConfirmedByHand,
    /// The window ended with probes failing: the previous tables were restored.
    RolledBack {
        /// The failures seen last, one per failing probe.
        failures: Vec<String>,
    },
    /// The tables already matched: nothing to confirm.
    Unchanged,
}

/// Applies `rs`, then confirms it by probes or by hand within `window`, else restores the
/// tables saved before the apply (byte for byte, counters keeping their values).
pub fn apply_with_confirm(
    m: &Model,
    rs: &Ruleset,
    window: Duration,
    probes: &[Probe],
    confirmed: &Arc<AtomicBool>,
) -> Result<Outcome, ApplyError> {
    let prev = Live::read()?;
    let report = apply::apply(m, rs, Options::default())?;
    if !report.changed {
        return Ok(Outcome::Unchanged);
    }
    let deadline = Instant::now() + window;
    let probe_timeout = Duration::from_millis(800);
    let mut failures;
    loop {
        if confirmed.load(Ordering::SeqCst) {
            return Ok(Outcome::ConfirmedByHand);
        }
        failures = probes
            .iter()
            .filter_map(|p| {
                run_probe(p, m, rs, probe_timeout)
                    .err()
                    .map(|e| format!("{p}: {e}"))
            })
            .collect::<Vec<_>>();
        if failures.is_empty() {
            return Ok(Outcome::ConfirmedByProbes);
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200).min(deadline - Instant::now()));
    }
    tracing::warn!(failures = ?failures, "confirm window ended with failing probes: restoring the previous ruleset");
    apply::restore(&prev)?;
    Ok(Outcome::RolledBack { failures })
}
