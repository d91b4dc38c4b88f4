//! End-to-end tests live in `tests/tests/`: each starts the real binaries inside network
//! namespaces it creates (see `edge-testkit`). Build the binaries first:
//! `cargo build --workspace --bins`. This library holds what several of them share: a TCP
//! stream through a namespace that counts every reset.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use edge_testkit::wait_for;

/// Runs `f` on a thread inside network namespace `ns`.
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = fs::File::open(&path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
}

/// What a stream saw.
#[derive(Debug, Default, Clone)]
pub struct StreamStats {
    /// Echoes received intact.
    pub round_trips: u64,
    /// What broke the stream (it never reconnects).
    pub errors: Vec<String>,
    /// The longest wait between two echoes.
    pub max_gap: Duration,
    /// When the last echo came.
    pub last_ok: Option<Instant>,
}

/// The lab's address of Cloudflare's edge on `inet` (edgectl's `lab::net::CF_EDGE_IP`): the
/// forwards' origin lock admits visitors only from Cloudflare's ranges.
pub const CF_EDGE_IP: &str = "173.245.48.10";

/// A TCP stream through `ns` to `target` (an echo service): 512-byte messages every 20 ms,
/// each echo checked; never reconnects, so any reset is counted.
pub fn stream(
    ns: &str,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<StreamStats>>,
) -> thread::JoinHandle<()> {
    stream_from(ns, None, target, stop, stats)
}

fn connect(from: Option<IpAddr>, target: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if let Some(ip) = from {
        sock.bind(&SocketAddr::new(ip, 0).into())?;
    }
    sock.connect_timeout(&target.into(), Duration::from_secs(5))?;
    Ok(sock.into())
}

/// [`stream`] from source address `from` (one of `ns`'s own), when given.
pub fn stream_from(
    ns: &str,
    from: Option<IpAddr>,
    target: SocketAddr,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<StreamStats>>,
) -> thread::JoinHandle<()> {
    in_ns(ns, move || {
        let mut s = match connect(from, target) {
            Ok(s) => s,
            Err(e) => {
                stats
                    .lock()
                    .unwrap()
                    .errors
                    .push(format!("connect {target}: {e}"));
                return;
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut n: u64 = 0;
        let mut last = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let msg: Vec<u8> = (0..512).map(|i| (n as u8).wrapping_add(i as u8)).collect();
            let mut back = vec![0u8; msg.len()];
            let r = s.write_all(&msg).and_then(|_| s.read_exact(&mut back));
            let mut st = stats.lock().unwrap();
            match r {
                Ok(()) if back == msg => {
                    let gap = last.elapsed();
                    st.max_gap = st.max_gap.max(gap);
                    last = Instant::now();
                    st.last_ok = Some(last);
                    st.round_trips += 1;
                }
                Ok(()) => {
                    st.errors.push(format!("corrupted echo at message {n}"));
                    return;
                }
                Err(e) => {
                    st.errors.push(format!("message {n}: {e}"));
                    return;
                }
            }
            drop(st);
            thread::sleep(Duration::from_millis(20));
        }
    })
}

pub fn progress(stats: &Arc<Mutex<StreamStats>>) -> u64 {
    stats.lock().unwrap().round_trips
}

pub fn assert_flowing(name: &str, stats: &Arc<Mutex<StreamStats>>, within: Duration) -> Duration {
    let before = progress(stats);
    eprintln!("  {name}: {before} round trips so far");
    let t = Instant::now();
    let ok = wait_for(within, || progress(stats) > before + 5);
    let st = stats.lock().unwrap().clone();
    assert!(st.errors.is_empty(), "{name} stream broke: {:?}", st.errors);
    assert!(ok.is_some(), "{name} stream stalled for {:?}", t.elapsed());
    t.elapsed()
}
