//! `edgectl lab`: the user's whole host in network namespaces with every daemon running for
//! real — real nftables, a real TUN, a real wireguard-go peer, and the Cloudflare API test
//! server — on a lab copy of the reference configuration.
//!
//! ```text
//!  remote (wireguard-go) ─┐            ┌─ 82.0.0.10 Cloudflare API (HTTPS, test CA)
//!  83.0.0.50              ├─ inet ─────┤  82.0.0.11-13 public-IP echo services
//!                         │            ├─ 82.0.0.20 webhook receiver (notifications)
//!                         │  81.0.0.1  └─ (routes 192.198.0.0/24 to the router: hostile side)
//!                         │
//!                  router 81.0.0.2 (public, changes to 81.0.0.3) NAT; forwards 80/443/51820
//!                         │ 192.198.0.1
//!                   host  enp3s0f0 ─ br-api 192.198.0.30      edge-link, edge-fw,
//!                         enp4s0f0 ─ br1 10.17.5.1 ─ lb        edge-wg (wg0), edge-ddns
//!                         enp4s0f1 ─ admin 192.168.1.10 (protected, never touched)
//!                   lb    10.17.5.30 (80, 443), 10.17.5.10 (6443)
//! ```

pub mod check;
pub mod config;
pub mod ha;
pub mod ha_check;
pub mod net;
pub mod serve;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use edge_config::Role;
use edge_ipc::{Client, Request, Response};

use net::Topology;

/// One lab instance.
#[derive(Debug, Clone)]
pub struct Lab {
    /// Namespace prefix (`edge-lab`).
    pub name: String,
    /// Files of the lab: `/run/<name>`.
    pub dir: PathBuf,
    /// Where the edge binaries are (next to this edgectl).
    pub bin: PathBuf,
    /// WireGuard interface name on the host.
    pub wg_if: String,
}

fn write_secret(path: &Path, content: &str) -> anyhow::Result<()> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(content.as_bytes())?;
    Ok(())
}

fn wg_keypair() -> anyhow::Result<(String, String)> {
    let private = String::from_utf8(net::run("wg", &["genkey"])?.stdout)?
        .trim()
        .to_owned();
    let mut c = std::process::Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run `wg pubkey` (install wireguard-tools)")?;
    if let Some(mut i) = c.stdin.take() {
        i.write_all(private.as_bytes())?;
    }
    let out = c.wait_with_output()?;
    Ok((private, String::from_utf8(out.stdout)?.trim().to_owned()))
}

fn random_token() -> String {
    let mut buf = [0u8; 24];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        use std::io::Read as _;
        let _ = f.read_exact(&mut buf);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl Lab {
    /// A lab named `name` using the binaries in `bin`.
    pub fn new(name: &str, bin: PathBuf, wg_if: &str) -> Self {
        Self {
            name: name.to_owned(),
            dir: PathBuf::from(format!("/run/{name}")),
            bin,
            wg_if: wg_if.to_owned(),
        }
    }

    /// The lab's namespaces.
    pub fn topo(&self) -> Topology {
        Topology::new(&self.name)
    }

    /// The lab's configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("edge.toml")
    }

    /// The remote peer's WireGuard interface.
    pub fn remote_if(&self) -> String {
        format!("{}r", self.wg_if)
    }

    fn record_pid(&self, label: &str, pid: u32) -> anyhow::Result<()> {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("pids"))?;
        writeln!(f, "{label} {pid}")?;
        Ok(())
    }

    /// Starts `program args` inside `node`'s namespace in the background, logging to
    /// `logs/<label>.log`; the PID is recorded for `down`.
    pub fn spawn(
        &self,
        node: &str,
        label: &str,
        program: &Path,
        args: &[&str],
    ) -> anyhow::Result<u32> {
        let log = fs::File::create(self.dir.join("logs").join(format!("{label}.log")))?;
        let mut c = self.topo().ns(node).command(&program.to_string_lossy());
        c.args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C on edgectl does not take the lab down.
            .process_group(0);
        let child = c
            .spawn()
            .with_context(|| format!("cannot start {label} in {}", self.topo().ns(node).name))?;
        let pid = child.id();
        self.record_pid(label, pid)?;
        Ok(pid)
    }

    /// PIDs the lab started, with their labels.
    pub fn pids(&self) -> Vec<(String, i32)> {
        fs::read_to_string(self.dir.join("pids"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (label, pid) = l.split_once(' ')?;
                Some((label.to_owned(), pid.trim().parse().ok()?))
            })
            .collect()
    }

    /// A control-socket client for `role` of this lab.
    pub fn client(&self, role: Role) -> Client {
        Client::new(role, edge_config::socket_path(&self.dir.join("run"), role))
    }

    fn wait_ready(&self, role: Role, pid: u32, timeout: Duration) -> anyhow::Result<Duration> {
        self.wait_ready_at(role.binary(), &self.client(role), pid, timeout)
    }

    /// Waits until the daemon `label` (PID `pid`, logging to `logs/<label>.log`) says through
    /// `client` that it is ready; fails when it exits first or `timeout` passes.
    fn wait_ready_at(
        &self,
        label: &str,
        client: &Client,
        pid: u32,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        while start.elapsed() < timeout {
            if !alive(pid as i32) {
                bail!(
                    "{label} exited during start-up; its log:\n{}",
                    self.log_tail(label)
                );
            }
            if let Ok(Response::Status(st)) = rt.block_on(client.request(Request::Status))
                && st.ready
            {
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "{label} did not become ready within {} s; its log:\n{}",
            timeout.as_secs(),
            self.log_tail(label)
        )
    }

    /// The last lines of a log.
    pub fn log_tail(&self, label: &str) -> String {
        let text = fs::read_to_string(self.dir.join("logs").join(format!("{label}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn wait_file(&self, name: &str, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.dir.join(name).exists() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{name} did not appear within {} s", timeout.as_secs())
    }

    /// The configuration an installed host runs in the lab (`up --world-only` writes it).
    pub fn installed_config_path(&self) -> PathBuf {
        self.dir.join("installed.toml")
    }

    /// Builds the topology, starts the world around the host and, with `daemons`, the four
    /// daemons, waiting until each is ready. Without them the host namespace is left to edge
    /// as installed (a container booted in it): `installed.toml` is its configuration.
    /// Removes what a crashed run left behind first.
    pub fn up(&self, edgectl: &Path, daemons: bool) -> anyhow::Result<()> {
        self.clear_leftovers()?;
        fs::create_dir_all(self.dir.join("logs"))?;
        fs::create_dir_all(self.dir.join("run"))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))?;
        println!("== building the topology ({}-*)", self.name);
        self.topo().build()?;

        let (host_pub, remote_pub) = self.secrets()?;
        self.start_world(edgectl)?;
        let sources = self.sources();
        let values = config::LabValues {
            dir: &self.dir,
            wg_if: &self.wg_if,
            remote_public_key: &remote_pub,
            api_url: &format!("https://{}/client/v4", net::API_IP),
            sources: &sources,
            hook_ip: net::HOOK_IP,
        };
        fs::write(self.config_path(), config::lab_config(&values)?)?;
        if let Err(d) = edge_config::load(&self.config_path(), edge_config::LoadOptions::default())
        {
            bail!("the lab configuration is invalid:\n{d}");
        }
        let installed = config::installed_config(&values)?;
        if let Err(d) = edge_config::parse(Path::new("/etc/edge/edge.toml"), &installed) {
            bail!("the installed lab configuration is invalid:\n{d}");
        }
        fs::write(self.installed_config_path(), installed)?;

        if daemons {
            let cfg = self.config_path().to_string_lossy().into_owned();
            for role in [Role::Link, Role::Fw, Role::Wg, Role::Ddns] {
                let bin = self.bin.join(role.binary());
                let pid = self.spawn("host", role.binary(), &bin, &["--config", &cfg])?;
                let took = self.wait_ready(role, pid, Duration::from_secs(60))?;
                println!("   {} ready in {} ms", role.binary(), took.as_millis());
            }
        } else {
            println!(
                "== no daemons: the host namespace {} is left to edge as installed ({})",
                self.topo().ns("host").name,
                self.installed_config_path().display()
            );
        }

        println!("== starting the remote admin's WireGuard peer (wireguard-go)");
        self.start_remote(&host_pub)?;
        Ok(())
    }

    /// Removes what a crashed run left behind, saying what that was.
    fn clear_leftovers(&self) -> anyhow::Result<()> {
        let leftovers = self.down()?;
        if !leftovers.is_empty() {
            println!(
                "removed leftovers of an earlier run: {}",
                leftovers.join(", ")
            );
        }
        Ok(())
    }

    /// Writes the lab's secrets (Cloudflare token, WireGuard keys); returns the host's and
    /// the remote peer's public keys.
    fn secrets(&self) -> anyhow::Result<(String, String)> {
        let token = random_token();
        write_secret(&self.dir.join("token"), &token)?;
        let (host_key, host_pub) = wg_keypair()?;
        let (remote_key, remote_pub) = wg_keypair()?;
        write_secret(&self.dir.join("wg-host.key"), &host_key)?;
        write_secret(&self.dir.join("wg-remote.key"), &remote_key)?;
        fs::write(self.dir.join("wg-host.pub"), &host_pub)?;
        Ok((host_pub, remote_pub))
    }

    /// Starts the world around the host(s): the internet's services and the VIP listeners.
    fn start_world(&self, edgectl: &Path) -> anyhow::Result<()> {
        println!("== starting the internet side: Cloudflare API test server, echo services");
        let dir = self.dir.to_string_lossy().into_owned();
        self.spawn(
            "inet",
            "inet-services",
            edgectl,
            &["lab", "serve", "inet", "--dir", &dir],
        )?;
        self.spawn(
            "lb",
            "lb-services",
            edgectl,
            &["lab", "serve", "lb", "--dir", &dir],
        )?;
        self.wait_file("inet.ready", Duration::from_secs(20))?;
        self.wait_file("lb.ready", Duration::from_secs(20))?;
        Ok(())
    }

    /// The public-IP echo services as detection sources.
    fn sources(&self) -> Vec<(&'static str, &'static str, String)> {
        vec![
            ("echo-a", "http", format!("http://{}/", net::ECHO_IPS[0])),
            (
                "trace",
                "cloudflare-trace",
                format!("http://{}/cdn-cgi/trace", net::ECHO_IPS[1]),
            ),
            ("echo-b", "http", format!("http://{}/", net::ECHO_IPS[2])),
        ]
    }

    fn start_remote(&self, host_pub: &str) -> anyhow::Result<()> {
        let rif = self.remote_if();
        let remote = self.topo().ns("remote");
        let wggo = which("wireguard-go")
            .context("wireguard-go is not installed (apt install wireguard-go)")?;
        self.spawn("remote", "wireguard-go", &wggo, &["-f", &rif])?;
        let sock = PathBuf::from(format!("/var/run/wireguard/{rif}.sock"));
        let start = Instant::now();
        while !sock.exists() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let key = self.dir.join("wg-remote.key");
        remote.run(
            "wg",
            &[
                "set",
                &rif,
                "private-key",
                &key.to_string_lossy(),
                "peer",
                host_pub,
                "endpoint",
                &format!("{}:51820", net::PUBLIC_IP),
                "allowed-ips",
                "10.17.9.0/24,10.17.5.0/24,192.198.0.30/32",
                "persistent-keepalive",
                "5",
            ],
        )?;
        remote.ip(&[
            "addr",
            "add",
            &format!("{}/24", net::REMOTE_TUNNEL_IP),
            "dev",
            &rif,
        ])?;
        remote.ip(&["link", "set", &rif, "mtu", "1420", "up"])?;
        remote.ip(&["route", "add", "10.17.5.0/24", "dev", &rif])?;
        remote.ip(&["route", "add", "192.198.0.30/32", "dev", &rif])?;
        Ok(())
    }

    /// Stops every process the lab started (by PID) and deletes its namespaces and files.
    /// Returns what it found to remove.
    pub fn down(&self) -> anyhow::Result<Vec<String>> {
        let mut removed = Vec::new();
        for (label, pid) in self.pids() {
            if stop_pid(pid) {
                removed.push(format!("{label} (pid {pid})"));
            }
        }
        removed.extend(self.topo().destroy());
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("cannot remove {}", self.dir.display()))?;
        }
        let rsock = PathBuf::from(format!("/var/run/wireguard/{}.sock", self.remote_if()));
        let _ = fs::remove_file(rsock);
        Ok(removed)
    }
}

/// True when `pid` runs (exists and is not a zombie).
pub fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// SIGTERM, then SIGKILL after 5 s; true when the process was running.
pub fn stop_pid(pid: i32) -> bool {
    if pid <= 1 || !alive(pid) {
        return false;
    }
    // SAFETY: kill(2) on a PID the lab recorded for a process it started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let start = Instant::now();
    while alive(pid) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if alive(pid) {
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    true
}

/// The path of an executable on $PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}
