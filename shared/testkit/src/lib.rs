//! Test helpers for the edge suite (a dev-dependency; never linked into a daemon).
//!
//! - [`in_new_netns`]: run a closure on its own thread inside a fresh, anonymous network
//!   namespace (`unshare(CLONE_NEWNET)`), with `lo` up. The namespace disappears with the
//!   thread, whatever happens.
//! - [`Netns`]: a named namespace (`ip netns add`), deleted on drop, with helpers to run
//!   commands and spawn processes inside it. Processes spawned through it are killed by PID on
//!   drop, before the namespace is deleted.
//! - [`Topology`]: several named namespaces joined by veth pairs, e.g. the user's host with
//!   NICs named `enp3s0f0`, `enp4s0f0`, `enp4s0f1`.
//!
//! Every helper needs root. Without it, it panics with the reason: a test never passes by
//! skipping silently.

pub mod cloudflare;
pub mod receiver;
mod serve;

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns, unshare};

/// Panics with an explanation unless the process can create network namespaces.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "this test needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) to create network namespaces; \
             run it as root, e.g. `sudo -E cargo test`, as .ci/run does"
        );
    }
}

/// Runs a command to completion and panics with its output if it fails.
pub fn run_ok<I, S>(program: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let out = Command::new(program)
        .args(&args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    if !out.status.success() {
        panic!(
            "`{program} {}` failed ({}):\nstdout: {}\nstderr: {}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs `f` on a new thread inside a fresh anonymous network namespace with `lo` up and
/// returns its result; a panic in `f` is re-raised here. The namespace dies with the thread.
pub fn in_new_netns<T, F>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    require_root();
    let handle = thread::spawn(move || {
        unshare(CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("unshare(CLONE_NEWNET): {e}"));
        // Commands spawned from this thread inherit its namespace.
        run_ok("ip", ["link", "set", "lo", "up"]);
        f()
    });
    match handle.join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique namespace name: `<prefix>-<pid>-<n>-<label>`.
pub fn unique_name(prefix: &str, label: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}-{label}", std::process::id())
}

/// Deletes namespaces named `<prefix>-<pid>-...` whose creating process no longer exists
/// (left behind by a test run that was killed). Returns the names removed.
pub fn cleanup_stale(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&format!("{prefix}-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
            removed.push(name);
        }
    }
    removed
}

/// A process started inside a namespace; killed (SIGTERM, then SIGKILL) by PID on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
}

impl ChildGuard {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops the process now (SIGTERM, up to 5 s, then SIGKILL) and returns its output.
    pub fn stop(&mut self) -> Option<Output> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        child.wait_with_output().ok()
    }

    /// Waits for the process to exit by itself, up to `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Takes the captured stdout/stderr after the process ended (see [`ChildGuard::stop`]).
    pub fn output_after_stop(mut self) -> Option<Output> {
        self.stop()
    }

    /// The label given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A named network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `<prefix>-<pid>-<n>-<label>` with `lo` up.
    pub fn new(prefix: &str, label: &str) -> Netns {
        require_root();
        let name = unique_name(prefix, label);
        run_ok("ip", ["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name (for `ip netns exec NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a command inside the namespace; panics with its output on failure.
    pub fn exec<I, S>(&self, program: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<std::ffi::OsString> = vec![
            "netns".into(),
            "exec".into(),
            self.name.clone().into(),
            program.into(),
        ];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        run_ok("ip", all)
    }

    /// Runs a command inside the namespace and returns its output whatever the status.
    pub fn try_exec<I, S>(&self, program: &str, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(program);
        c.args(args);
        c.output()
            .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.name))
    }

    /// `ip ARGS` inside the namespace (panics on failure).
    pub fn ip<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.exec("ip", args)
    }

    /// `ip -j ARGS` inside the namespace, parsed.
    pub fn ip_json<I, S>(&self, args: I) -> serde_json::Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<std::ffi::OsString> = vec!["-j".into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        let out = self.exec("ip", all);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Starts a long-running process inside the namespace, capturing its output; it is
    /// killed when the guard drops. It is also killed (PR_SET_PDEATHSIG) when the *thread*
    /// that spawned it exits, so spawn daemons from the test's own thread.
    pub fn spawn(&self, label: &str, cmd: Command) -> ChildGuard {
        let program = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let envs: Vec<_> = cmd
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
            .collect();
        let mut c = self.command(&program.to_string_lossy());
        c.args(args);
        for (k, v) in envs {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            c.current_dir(dir);
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A test killed by a signal should not leave daemons behind.
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches only this child.
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {label} in {}: {e}", self.name));
        ChildGuard {
            child: Some(child),
            name: label.to_owned(),
        }
    }

    /// Runs `f` on a new thread that has entered this namespace.
    pub fn run<T, F>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        let handle = thread::spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns: {e}"));
            f()
        });
        match handle.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }

    /// PIDs of processes living in the namespace.
    pub fn pids(&self) -> Vec<i32> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes spawned inside are ours (started by this test); end them by PID so the
        // namespace really goes away.
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Several named namespaces joined by veth pairs; everything is removed on drop.
#[derive(Debug)]
pub struct Topology {
    prefix: String,
    nodes: Vec<(String, Netns)>,
}

impl Topology {
    /// An empty topology whose namespaces are named `<prefix>-<pid>-<n>-<node>`.
    pub fn new(prefix: &str) -> Topology {
        require_root();
        cleanup_stale(prefix);
        Topology {
            prefix: prefix.to_owned(),
            nodes: Vec::new(),
        }
    }

    /// Adds a node (namespace) called `node`.
    pub fn add(&mut self, node: &str) -> &Netns {
        let ns = Netns::new(&self.prefix, node);
        self.nodes.push((node.to_owned(), ns));
        &self.nodes[self.nodes.len() - 1].1
    }

    /// The namespace of `node`.
    pub fn ns(&self, node: &str) -> &Netns {
        self.nodes
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, ns)| ns)
            .unwrap_or_else(|| panic!("no node `{node}` in the topology"))
    }

    /// Joins `a:dev_a` and `b:dev_b` with a veth pair (both up).
    pub fn link(&self, a: &str, dev_a: &str, b: &str, dev_b: &str) {
        let (na, nb) = (self.ns(a).name().to_owned(), self.ns(b).name().to_owned());
        // Created in `a`'s namespace so no interface ever appears in the root namespace.
        self.ns(a).ip([
            "link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", &nb,
        ]);
        let _ = na;
        self.ns(a).ip(["link", "set", dev_a, "up"]);
        self.ns(b).ip(["link", "set", dev_b, "up"]);
    }

    /// Adds `cidr` to `node:dev`.
    pub fn addr(&self, node: &str, dev: &str, cidr: &str) {
        self.ns(node).ip(["addr", "add", cidr, "dev", dev]);
    }

    /// Adds a route in `node`: `ip route add ARGS`.
    pub fn route(&self, node: &str, args: &[&str]) {
        let mut a = vec!["route", "add"];
        a.extend_from_slice(args);
        self.ns(node).ip(a);
    }

    /// Turns on IPv4 forwarding in `node`.
    pub fn forward(&self, node: &str) {
        self.ns(node)
            .exec("sysctl", ["-qw", "net.ipv4.ip_forward=1"]);
    }

    /// The user's host and its neighbours, without anything edge manages (no bridges, no
    /// addresses on the host's NICs): nodes `inet`, `router`, `host`, `lb`, `admin`, `remote`.
    ///
    /// - `inet` 198.18.0.1/24 (eth0) — "the internet" (198.18.0.0/15, benchmarking range);
    /// - `router` wan 198.18.0.2/24, lan0 192.198.0.1/24 (the ISP router, NAT not set up);
    /// - `host` enp3s0f0 ↔ router lan0; enp4s0f0 ↔ lb eth0; enp4s0f1 ↔ admin eth0;
    /// - `lb` eth0 10.17.5.30/24 and 10.17.5.10/24, default via 10.17.5.1;
    /// - `admin` eth0 192.168.1.10/24 (the administration LAN);
    /// - `remote` eth0 198.18.0.50/24 (a WireGuard peer on the internet), default via inet.
    pub fn reference_host(prefix: &str) -> Topology {
        let mut t = Topology::new(prefix);
        for n in ["inet", "router", "host", "lb", "admin", "remote"] {
            t.add(n);
        }
        t.link("router", "wan", "inet", "eth0");
        t.link("router", "lan0", "host", "enp3s0f0");
        t.link("lb", "eth0", "host", "enp4s0f0");
        t.link("admin", "eth0", "host", "enp4s0f1");
        t.link("remote", "eth0", "inet", "eth1");
        t.addr("inet", "eth0", "198.18.0.1/24");
        t.addr("inet", "eth1", "198.19.0.1/24");
        t.addr("router", "wan", "198.18.0.2/24");
        t.addr("router", "lan0", "192.198.0.1/24");
        t.addr("remote", "eth0", "198.19.0.50/24");
        t.addr("lb", "eth0", "10.17.5.30/24");
        t.addr("lb", "eth0", "10.17.5.10/24");
        t.addr("admin", "eth0", "192.168.1.10/24");
        t.route("router", &["default", "via", "198.18.0.1"]);
        t.route("remote", &["default", "via", "198.19.0.1"]);
        t.route("lb", &["default", "via", "10.17.5.1"]);
        t.forward("router");
        t.forward("inet");
        t
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        // Netns::drop removes each namespace (and the veths with them).
        self.nodes.clear();
    }
}

/// Path of a workspace binary (`edge-fw`, `edgectl`, ...) next to the running test's
/// `target/<profile>/` directory. Panics with the fix when it has not been built.
pub fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()));
    let path = dir.join(name);
    if !path.exists() {
        panic!(
            "{} is not built: run `cargo build --workspace --bins` before the tests (the README's test command does)",
            path.display()
        );
    }
    path
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("cannot find a free port: {e}"))
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns the time it took.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return Some(start.elapsed());
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Reads a whole file (for /proc and /sys checks in tests).
pub fn read_file(path: &str) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_netns_is_isolated_and_has_lo() {
        let links = in_new_netns(|| {
            let out = run_ok("ip", ["-j", "link", "show"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            v.as_array().unwrap().len()
        });
        assert_eq!(links, 1, "a fresh namespace holds only lo");
    }

    #[test]
    fn reference_topology_routes_and_is_removed_on_drop() {
        let names: Vec<String>;
        {
            let t = Topology::reference_host("etk");
            names = ["inet", "host", "lb"]
                .iter()
                .map(|n| t.ns(n).name().to_owned())
                .collect();
            // The router reaches the internet side; the host's NICs exist with the user's names.
            t.ns("router").exec("ping", ["-c1", "-W2", "198.18.0.1"]);
            let link = t.ns("host").ip_json(["link", "show", "enp3s0f0"]);
            assert_eq!(link[0]["ifname"], "enp3s0f0");
            let _sleeper = t.ns("lb").spawn("sleep", {
                let mut c = Command::new("sleep");
                c.arg("60");
                c
            });
        }
        for n in names {
            assert!(
                !Path::new(&format!("/run/netns/{n}")).exists(),
                "{n} was not removed"
            );
        }
    }

    #[test]
    fn a_panicking_test_still_removes_its_namespace() {
        let name = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let n2 = name.clone();
        let r = std::panic::catch_unwind(move || {
            let ns = Netns::new("etk", "panic");
            *n2.lock().unwrap() = ns.name().to_owned();
            panic!("boom");
        });
        assert!(r.is_err());
        let n = name.lock().unwrap().clone();
        assert!(!n.is_empty());
        assert!(!Path::new(&format!("/run/netns/{n}")).exists());
    }
}
