//! Namespace helpers for the edge-wg integration tests: named network namespaces joined
//! by veth pairs, daemons started inside them, all removed by Drop guards (also when a
//! test panics). Names carry the `ewg-` prefix and the test process id.

#![allow(dead_code)]

use std::io::Write as _;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Fails loudly when not root: these tests need CAP_NET_ADMIN and CAP_SYS_ADMIN.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "edge-wg namespace tests need root (CAP_NET_ADMIN + CAP_SYS_ADMIN for netns); run them as root"
    );
    for tool in ["ip", "wg", "wireguard-go", "ping", "socat", "sha256sum"] {
        let ok = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "missing tool {tool} (apt-get install wireguard-go wireguard-tools iputils-ping socat)"
        );
    }
}

/// Runs a command, panicking with its stderr if it fails.
pub fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command and returns success and stdout.
pub fn try_run(args: &[&str]) -> (bool, String) {
    match Command::new(args[0]).args(&args[1..]).output() {
        Ok(o) => (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        ),
        Err(_) => (false, String::new()),
    }
}

/// A unique short tag for names (interface names must stay under 16 bytes).
pub fn tag(t: &str) -> String {
    format!("{t}{}", std::process::id() % 100_000)
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    /// Its name.
    pub name: String,
}

impl Netns {
    /// Creates `ewg-<name>`.
    pub fn new(name: &str) -> Netns {
        Netns::with_prefix("ewg", name)
    }

    /// Creates `<prefix>-<name>`.
    pub fn with_prefix(prefix: &str, name: &str) -> Netns {
        let name = format!("{prefix}-{name}");
        let _ = try_run(&["ip", "netns", "del", &name]);
        run(&["ip", "netns", "add", &name]);
        run(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Netns { name }
    }

    /// Runs a command inside the namespace, panicking on failure.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        run(&v)
    }

    /// Runs a command inside the namespace and returns its output, whatever its status.
    pub fn run_status(&self, args: &[&str]) -> Output {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        Command::new(v[0])
            .args(&v[1..])
            .output()
            .unwrap_or_else(|e| panic!("spawn {v:?}: {e}"))
    }

    /// Runs a command inside the namespace and returns (success, stdout).
    pub fn try_run(&self, args: &[&str]) -> (bool, String) {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        try_run(&v)
    }

    /// Spawns a long-running process inside the namespace.
    pub fn spawn(&self, args: &[&str], envs: &[(&str, &str)], log: &str) -> Proc {
        let logf = std::fs::File::create(log).unwrap_or_else(|e| panic!("create {log}: {e}"));
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        for (k, v) in envs {
            c.env(k, v);
        }
        let child = c
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        Proc {
            child,
            log: log.into(),
            cleanup: None,
        }
    }

    /// Runs `f` on a thread that has entered this namespace.
    pub fn enter<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = try_run(&["ip", "netns", "del", &self.name]);
    }
}

/// A child process killed (TERM, then KILL) and reaped on drop.
#[derive(Debug)]
pub struct Proc {
    /// The child.
    pub child: Child,
    /// Its log file.
    pub log: PathBuf,
    /// A file to remove after the process stopped (a UAPI socket it may not delete).
    pub cleanup: Option<PathBuf>,
}

impl Proc {
    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Peak RSS in KiB (VmHWM) of the process.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child we started and have not reaped yet.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(p) = &self.cleanup {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Joins two namespaces with a veth pair and gives each end an address.
pub fn veth(a: &Netns, a_if: &str, a_addr: &str, b: &Netns, b_if: &str, b_addr: &str) {
    run(&[
        "ip", "-n", &a.name, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    run(&["ip", "-n", &a.name, "addr", "add", a_addr, "dev", a_if]);
    run(&["ip", "-n", &b.name, "addr", "add", b_addr, "dev", b_if]);
    run(&["ip", "-n", &a.name, "link", "set", a_if, "up"]);
    run(&["ip", "-n", &b.name, "link", "set", b_if, "up"]);
}

/// A key pair written to files (mode 0600) for `wg set ... private-key FILE`.
#[derive(Debug)]
pub struct KeyPair {
    /// Private key file.
    pub private_file: PathBuf,
    /// Base64 public key.
    pub public: String,
    /// Base64 private key.
    pub private: String,
    _dir: tempfile::TempDir,
}

/// Generates a key pair with `wg genkey`.
pub fn keypair() -> KeyPair {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let private = String::from_utf8_lossy(&run(&["wg", "genkey"]).stdout)
        .trim()
        .to_string();
    let mut c = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("wg pubkey: {e}"));
    if let Some(mut i) = c.stdin.take() {
        let _ = i.write_all(private.as_bytes());
    }
    let out = c
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wg pubkey: {e}"));
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let private_file = dir.path().join("key");
    std::fs::write(&private_file, &private).unwrap_or_else(|e| panic!("write key: {e}"));
    KeyPair {
        private_file,
        public,
        private,
        _dir: dir,
    }
}

/// Which implementation runs a WireGuard interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// Our daemon.
    EdgeWg,
    /// Debian's wireguard-go.
    WireguardGo,
}

/// Starts a WireGuard daemon for `ifname` in `ns` and waits for its UAPI socket.
pub fn start_daemon(ns: &Netns, imp: Impl, ifname: &str, envs: &[(&str, &str)]) -> Proc {
    start_daemon_args(ns, imp, ifname, envs, &[])
}

/// Like [`start_daemon`], with extra arguments for edge-wg.
pub fn start_daemon_args(
    ns: &Netns,
    imp: Impl,
    ifname: &str,
    envs: &[(&str, &str)],
    args: &[&str],
) -> Proc {
    let sock = format!("/var/run/wireguard/{ifname}.sock");
    let _ = std::fs::remove_file(&sock);
    let log = format!("/tmp/{ifname}.log");
    let mut p = match imp {
        Impl::EdgeWg => {
            let mut a = vec![env!("CARGO_BIN_EXE_edge-wg"), "-f"];
            a.extend_from_slice(args);
            a.push(ifname);
            ns.spawn(&a, envs, &log)
        }
        Impl::WireguardGo => {
            let mut e = vec![("WG_PROCESS_FOREGROUND", "1")];
            e.extend_from_slice(envs);
            ns.spawn(&["wireguard-go", "-f", ifname], &e, &log)
        }
    };
    p.cleanup = Some(sock.clone().into());
    wait_for(
        &format!("uapi socket of {ifname}"),
        Duration::from_secs(10),
        || {
            assert!(p.alive(), "daemon for {ifname} exited: {}", p.log());
            std::path::Path::new(&sock).exists()
        },
    );
    p
}

/// Polls `cond` every 50 ms until it holds, panicking after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(
            t.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Brings up an interface with an overlay address and MTU.
pub fn iface_up(ns: &Netns, ifname: &str, addr: &str) {
    ns.run(&["ip", "link", "set", ifname, "mtu", "1420"]);
    ns.run(&["ip", "addr", "add", addr, "dev", ifname]);
    ns.run(&["ip", "link", "set", ifname, "up"]);
}

/// One `wg show IF dump` peer line.
#[derive(Debug, Clone)]
pub struct DumpPeer {
    /// Public key.
    pub public_key: String,
    /// Preshared key or "(none)".
    pub preshared_key: String,
    /// Endpoint or "(none)".
    pub endpoint: String,
    /// Allowed IPs, comma separated.
    pub allowed_ips: String,
    /// Latest handshake, Unix seconds.
    pub latest_handshake: u64,
    /// Bytes received.
    pub rx: u64,
    /// Bytes sent.
    pub tx: u64,
    /// Keepalive or "off".
    pub keepalive: String,
}

/// The parsed `wg show IF dump`.
#[derive(Debug, Clone)]
pub struct Dump {
    /// Interface private key.
    pub private_key: String,
    /// Interface public key.
    pub public_key: String,
    /// Listen port.
    pub listen_port: u16,
    /// fwmark or "off".
    pub fwmark: String,
    /// Peers.
    pub peers: Vec<DumpPeer>,
}

/// Runs and parses `wg show IF dump` in `ns`.
pub fn wg_dump(ns: &Netns, ifname: &str) -> Dump {
    let out = ns.run(&["wg", "show", ifname, "dump"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let first: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    assert_eq!(first.len(), 4, "interface line of wg dump: {text}");
    let peers = lines
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 8, "peer line of wg dump: {l}");
            DumpPeer {
                public_key: f[0].into(),
                preshared_key: f[1].into(),
                endpoint: f[2].into(),
                allowed_ips: f[3].into(),
                latest_handshake: f[4].parse().unwrap_or(0),
                rx: f[5].parse().unwrap_or(0),
                tx: f[6].parse().unwrap_or(0),
                keepalive: f[7].into(),
            }
        })
        .collect();
    Dump {
        private_key: first[0].into(),
        public_key: first[1].into(),
        listen_port: first[2].parse().unwrap_or(0),
        fwmark: first[3].into(),
        peers,
    }
}

/// Unix time now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sends one ping; true on reply.
pub fn ping_once(ns: &Netns, dst: &str) -> bool {
    ns.try_run(&["ping", "-c", "1", "-W", "1", dst]).0
}

/// Pings `count` times at `interval_s`; returns (sent, received).
pub fn ping_stats(ns: &Netns, dst: &str, count: u32, interval: &str) -> (u32, u32) {
    let (_, out) = ns.try_run(&[
        "ping",
        "-q",
        "-c",
        &count.to_string(),
        "-i",
        interval,
        "-W",
        "1",
        dst,
    ]);
    // "N packets transmitted, M received"
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default();
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    (
        nums.first().copied().unwrap_or(0),
        nums.get(1).copied().unwrap_or(0),
    )
}

/// A UDP socket bound inside a namespace (on a thread that entered it).
pub fn udp_in(ns: &Netns) -> UdpSocket {
    ns.enter(|| UdpSocket::bind("0.0.0.0:0").unwrap_or_else(|e| panic!("bind: {e}")))
        .join()
        .unwrap_or_else(|_| panic!("udp_in thread panicked"))
}

/// Starts edge-wg in configuration mode (`-c cfg`) in `ns`, its log in
/// `/tmp/<ifname>.<n>.log`; a control socket `ctl` left by an earlier run is removed first
/// so that [`wait_control`] sees the new one.
pub fn start_config_daemon(
    ns: &Netns,
    cfg: &std::path::Path,
    ctl: &std::path::Path,
    ifname: &str,
    n: u32,
) -> Proc {
    let _ = std::fs::remove_file(ctl);
    let mut p = ns.spawn(
        &[env!("CARGO_BIN_EXE_edge-wg"), "-c", &cfg.to_string_lossy()],
        &[],
        &format!("/tmp/{ifname}.{n}.log"),
    );
    p.cleanup = Some(format!("/var/run/wireguard/{ifname}.sock").into());
    p
}

/// Waits until the daemon's control socket exists (it is bound once the daemon is up).
pub fn wait_control(p: &mut Proc, ctl: &std::path::Path) {
    wait_for("control socket", Duration::from_secs(10), || {
        assert!(p.alive(), "edge-wg exited: {}", p.log());
        ctl.exists()
    });
}

/// SIGTERM and wait for the exit (the restart a service manager does).
pub fn stop_daemon(p: &mut Proc) {
    // SAFETY: kill(2) on the pid of a child we started and have not reaped.
    unsafe { libc::kill(p.child.id() as libc::pid_t, libc::SIGTERM) };
    wait_for("edge-wg to exit", Duration::from_secs(10), || !p.alive());
}

/// wireguard-go with debug logging (it logs to stdout) into `/tmp/<ifname>.log`; waits for
/// its UAPI socket.
pub fn start_wireguard_go_debug(ns: &Netns, ifname: &str) -> Proc {
    let sock = format!("/var/run/wireguard/{ifname}.sock");
    let _ = std::fs::remove_file(&sock);
    let log = format!("/tmp/{ifname}.log");
    let f = std::fs::File::create(&log).unwrap_or_else(|e| panic!("create {log}: {e}"));
    let out = f.try_clone().unwrap_or_else(|e| panic!("{log}: {e}"));
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "wireguard-go", "-f", ifname])
        .env("WG_PROCESS_FOREGROUND", "1")
        .env("LOG_LEVEL", "debug")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(f)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn wireguard-go: {e}"));
    let mut p = Proc {
        child,
        log: log.into(),
        cleanup: Some(sock.clone().into()),
    };
    wait_for("wireguard-go uapi socket", Duration::from_secs(10), || {
        assert!(p.alive(), "wireguard-go exited: {}", p.log());
        std::path::Path::new(&sock).exists()
    });
    p
}

/// edge-wg's status from its control socket.
pub fn wg_status(ctl: &std::path::Path) -> edge_ipc::wg::Status {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let resp = rt
        .block_on(
            edge_ipc::Client::new(edge_config::Role::Wg, ctl.to_owned())
                .request(edge_ipc::Request::Status),
        )
        .unwrap_or_else(|e| panic!("status: {e}"));
    let edge_ipc::Response::Status(st) = resp else {
        panic!("not a status: {resp:?}")
    };
    st.detail
        .wg()
        .unwrap_or_else(|| panic!("not edge-wg's status: {:?}", st.detail))
        .clone()
}
