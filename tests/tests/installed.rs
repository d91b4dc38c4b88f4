//! As installed: the release .deb in a minimal Debian 12 and a minimal Debian 13, booted by a
//! real systemd (`systemd-nspawn -b`) inside the lab's host namespace, whose veths carry the
//! reference host's NIC names. The world around it (ISP router, Internet client, the remote
//! admin's wireguard-go peer, the Cloudflare test server, the VIPs' echo services) is
//! `edgectl lab up --world-only`; the container gets the reference configuration pointed at
//! it (`installed.toml`) and the secrets as the docs say to write them.
//!
//! Each release is one test; they run in parallel, each in its own lab. The root filesystems
//! come from `tests/installed/make-root.sh` (mmdebstrap, cached); the package from
//! `scripts/package-deb.sh` (scripts/test.sh builds it first) or `EDGE_DEB`. The container,
//! its root and the lab's namespaces are removed by drop guards, also when a step fails.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_e2e::{CF_EDGE_IP, StreamStats, assert_flowing, stream_from};
use edge_testkit::{binary, require_root};

const ROLES: [&str; 4] = ["link", "fw", "wg", "ddns"];

/// `systemd-analyze security` exposure of each unit when this test was written: a change to a
/// unit may not make any of them worse.
const EXPOSURE: [(&str, f64); 4] = [("ddns", 1.1), ("link", 1.6), ("fw", 1.6), ("wg", 1.8)];

/// The uids the test's operator (a member of group `edge`) and a stranger run as.
const OPERATOR_UID: u32 = 1500;
const STRANGER_UID: u32 = 1501;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The release package: `EDGE_DEB`, else the newest `<target>/debian/edge_*.deb`.
fn release_deb() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGE_DEB") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let newest = fs::read_dir(target.join("debian"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("edge_") && n.ends_with(".deb")
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok());
    match newest {
        Some(e) => e.path(),
        None => panic!(
            "no release package in {}: build it with `bash scripts/package-deb.sh` (scripts/test.sh does), or set EDGE_DEB",
            target.join("debian").display()
        ),
    }
}

/// Polls `f` every 100 ms until it gives a value or `within` passes.
fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t.elapsed() > within {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The lab's world, without daemons; `edgectl lab down` on drop.
struct World {
    name: String,
    /// edge-wg's interface (the remote peer's is `<wg_if>r`, its UAPI socket in the root's
    /// /var/run/wireguard: unique per test).
    wg_if: String,
}

impl World {
    fn up(name: &str, wg_if: &str) -> World {
        let w = World {
            name: name.to_owned(),
            wg_if: wg_if.to_owned(),
        };
        let out = w.edgectl(&["up", "--world-only"]);
        assert!(out.status.success(), "lab up --world-only: {}", text(&out));
        w
    }
    fn edgectl(&self, args: &[&str]) -> Output {
        let mut all = vec!["lab", "--name", &self.name, "--wg-if", &self.wg_if];
        all.extend_from_slice(args);
        Command::new(binary("edgectl")).args(&all).output().unwrap()
    }
    fn dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/{}", self.name))
    }
    fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.name)
    }
    /// Runs a command in one of the lab's namespaces (from the outside of the container).
    fn in_ns(&self, node: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(node)])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let out = self.edgectl(&["down"]);
        if !out.status.success() {
            eprintln!("lab down: {}", text(&out));
        }
    }
}

/// A booted container; on drop it is halted (SIGTERM to systemd-nspawn: an orderly
/// shutdown), killed if it does not stop, and its root removed.
struct Container {
    root: PathBuf,
    nspawn: Option<Child>,
    /// The container's own cgroups (see [`own_cgroups`]), removed after it halts.
    cgroups: Vec<PathBuf>,
    /// The container's systemd (PID 1 inside).
    init: i32,
    log: PathBuf,
}

impl Container {
    fn boot(name: &str, tarball: &Path, netns: &str, setup: impl FnOnce(&Path)) -> Container {
        let root = PathBuf::from(format!("/var/tmp/edge-installed/{name}"));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let mut c = Container {
            root: root.clone(),
            nspawn: None,
            cgroups: Vec::new(),
            init: 0,
            log: root.with_extension("log"),
        };
        let out = Command::new("tar")
            .args(["-xf"])
            .arg(tarball)
            .arg("-C")
            .arg(&root)
            .arg("--numeric-owner")
            .output()
            .unwrap();
        assert!(out.status.success(), "unpacking the root: {}", text(&out));
        setup(&root);
        // The container's own /dev/net/tun node, mode 0666 as udev makes it on a real host
        // (this machine's is 0600, which no dynamic user could open).
        let tun = root.with_extension("tun");
        let _ = fs::remove_file(&tun);
        nix::sys::stat::mknod(
            &tun,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(10, 200),
        )
        .unwrap();
        fs::set_permissions(&tun, fs::Permissions::from_mode(0o666)).unwrap();
        let log = fs::File::create(&c.log).unwrap();
        c.cgroups = own_cgroups(name);
        let procs: Vec<fs::File> = c
            .cgroups
            .iter()
            .map(|g| {
                fs::OpenOptions::new()
                    .write(true)
                    .open(g.join("cgroup.procs"))
                    .unwrap()
            })
            .collect();
        let mut cmd = Command::new("systemd-nspawn");
        // SAFETY: between fork and exec only write(2) on descriptors opened before the fork
        // (async-signal-safe; nothing allocates): systemd-nspawn starts in the container's own
        // cgroups, so its `payload` and `supervisor` are not shared with another container.
        unsafe {
            cmd.pre_exec(move || {
                for f in &procs {
                    nix::unistd::write(f, b"0").map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
        let child = cmd
            // As on a Debian 12 or 13 host: the unified cgroup hierarchy (cgroup v2) only.
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "network")
            .args(["--quiet", "--boot", "--keep-unit", "--register=no"])
            .arg("--capability=CAP_NET_ADMIN")
            .arg(format!("--bind={}:/dev/net/tun", tun.display()))
            .arg(format!("--network-namespace-path=/run/netns/{netns}"))
            .arg(format!("--machine={name}"))
            .arg("--directory")
            .arg(&root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let nspawn = child.id();
        c.nspawn = Some(child);
        // The container's init is systemd-nspawn's child.
        let init = poll(Duration::from_secs(30), || {
            let kids = fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children")).ok()?;
            let pid: i32 = kids.split_whitespace().next()?.parse().ok()?;
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "systemd").then_some(pid)
        });
        match init {
            Some(pid) => c.init = pid,
            None => panic!("no systemd in the container: {}", c.log_text()),
        }
        // Booted: `running`, or `degraded` when a unit that has nothing to do with edge failed
        // (listed, so a reader sees which).
        // (Right after the fork the bus is not up yet: `systemctl` fails until it is.)
        let state = poll(Duration::from_secs(90), || {
            let o = c.sh("systemctl is-system-running");
            let s = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            matches!(
                s.as_str(),
                "running" | "degraded" | "maintenance" | "stopping"
            )
            .then_some(s)
        })
        .unwrap_or_else(|| panic!("the container did not finish booting: {}", c.log_text()));
        if state != "running" {
            let failed = c.sh("systemctl --failed --no-legend --plain");
            eprintln!(
                "the container booted {state}: {}",
                String::from_utf8_lossy(&failed.stdout)
            );
            assert_eq!(state, "degraded", "boot: {}", c.log_text());
        }
        c
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a shell script inside the container, as root, with a clean environment.
    fn sh(&self, script: &str) -> Output {
        Command::new("nsenter")
            .args([
                "-t",
                &self.init.to_string(),
                "-a",
                "--",
                "/bin/sh",
                "-c",
                script,
            ])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Like [`Container::sh`]; fails the test unless the script succeeds; its stdout.
    fn ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in the container: `{script}`: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `systemctl show -p NAME --value` of a unit.
    fn prop(&self, unit: &str, name: &str) -> String {
        self.ok(&format!("systemctl show -p {name} --value {unit}"))
            .trim()
            .to_owned()
    }

    /// The status of one daemon as `edgectl --json <role> status` prints it.
    fn status(&self, role: &str) -> serde_json::Value {
        let out = self.sh(&format!("edgectl --json {role} status"));
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    fn generation(&self, role: &str) -> u64 {
        let st = self.status(role);
        st["config_generation"]
            .as_u64()
            .unwrap_or_else(|| panic!("no config_generation in edge-{role}'s status: {st}"))
    }

    /// Waits until every daemon's unit is active (READY=1 sent: they are Type=notify).
    fn wait_active(&self, within: Duration) -> Option<Duration> {
        let t = Instant::now();
        poll(within, || {
            ROLES
                .iter()
                .all(|r| self.prop(&format!("edge-{r}.service"), "ActiveState") == "active")
                .then(|| t.elapsed())
        })
    }

    fn write(&self, path: &str, contents: &str, mode: u32) {
        let p = self.root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, contents).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() && self.init > 0 {
            let j = self.sh("journalctl --no-pager -n 150 -u 'edge-*'");
            eprintln!(
                "== the container's journal of edge-*:\n{}",
                String::from_utf8_lossy(&j.stdout)
            );
        }
        if let Some(mut child) = self.nspawn.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let halted = poll(Duration::from_secs(20), || {
                child.try_wait().ok().flatten().map(|_| ())
            });
            if halted.is_none() {
                eprintln!("the container did not halt within 20 s; killing it");
                if self.init > 0 {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(self.init),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for g in &self.cgroups {
            remove_cgroup(g);
        }
        let _ = fs::remove_dir_all(&self.root);
        let _ = fs::remove_file(&self.log);
        let _ = fs::remove_file(self.root.with_extension("tun"));
    }
}

/// Creates the container's own cgroup, `edge-<name>`, in each hierarchy systemd-nspawn uses
/// (the unified one, and the named `systemd` one on a hybrid host).
///
/// Without a systemd on the host (PID 1 here is not), `--keep-unit` makes systemd-nspawn
/// create `payload` and `supervisor` under the cgroup it was started in — the root one for
/// every container started by this test. Two containers at once then share one
/// `/payload/system.slice`, and each one's systemd removes or kills the other's units'
/// cgroups (`status=219/CGROUP`, "Failed to spawn executor: No such file or directory").
fn own_cgroups(name: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let roots: Vec<PathBuf> = if base.join("cgroup.procs").exists() {
        vec![base.to_path_buf()]
    } else {
        ["unified", "systemd"]
            .iter()
            .map(|h| base.join(h))
            .filter(|p| p.join("cgroup.procs").exists())
            .collect()
    };
    roots
        .into_iter()
        .map(|r| {
            let g = r.join(format!("edge-{name}"));
            remove_cgroup(&g);
            fs::create_dir_all(&g).unwrap_or_else(|e| panic!("creating {}: {e}", g.display()));
            g
        })
        .collect()
}

/// Removes a cgroup and its children (leaves first); its processes are gone by then.
fn remove_cgroup(g: &Path) {
    if let Ok(entries) = fs::read_dir(g) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(g);
}

/// Makes (or takes from the cache) the root filesystem of `suite` with `deb`'s dependencies
/// downloaded into its apt cache.
fn root_tarball(suite: &str, deb: &Path) -> PathBuf {
    let out = Command::new("bash")
        .arg(workspace().join("tests/installed/make-root.sh"))
        .arg(suite)
        .arg(deb)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "make-root.sh {suite}: {}", text(&out));
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .trim(),
    )
}

/// The same package with a higher version: what an upgrade installs.
fn newer_deb(deb: &Path, dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    let run = |c: &mut Command| {
        let o = c.output().unwrap();
        assert!(o.status.success(), "{c:?}: {}", text(&o));
        o
    };
    run(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let c = fs::read_to_string(&control).unwrap();
    let version = c
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap()
        .to_owned();
    fs::write(
        &control,
        c.replace(
            &format!("Version: {version}"),
            &format!("Version: {version}+upgrade1"),
        ),
    )
    .unwrap();
    let out = dir.join("edge-newer.deb");
    run(Command::new("dpkg-deb")
        .args(["-Zgzip", "-z1", "--root-owner-group", "-b"])
        .arg(&tree)
        .arg(&out));
    out
}

/// The reference configuration with a change every daemon takes on reload.
fn changed(cfg: &str) -> String {
    let c = cfg
        .replacen(
            "reconcile_interval = \"60s\"",
            "reconcile_interval = \"45s\"",
            1,
        )
        .replacen("verify_interval = \"1h\"", "verify_interval = \"2h\"", 1)
        + "\n[[wg.peer]]\nname = \"phone\"\npublic_key = \"Ec/rMvGHRVI/+BJqbmET/fg+8vmgnl3z32BhCosLO08=\"\nallowed_ips = [\"10.17.9.3/32\"]\n";
    assert_ne!(c, cfg);
    c
}

// One installation read top to bottom in docs/install.md's order (install, start, edgectl,
// the world, reloads, restarts and the upgrade, purge): each numbered step acts on the same
// booted container in the state the steps before left it; split, each would take the
// container, the world, the package and the flow through a forward as parameters.
#[allow(clippy::too_many_lines)]
fn installed(suite: &str, short: &str) {
    require_root();
    let deb = release_deb();
    let tarball = root_tarball(suite, &deb);
    let name = format!("ei{short}{}", std::process::id() % 100_000);
    let wg_if = format!("wgi{short}");
    let world = World::up(&name, &wg_if);
    let lab = world.dir();
    let cfg = fs::read_to_string(lab.join("installed.toml")).unwrap();
    let token = fs::read_to_string(lab.join("token")).unwrap();
    let wg_key = fs::read_to_string(lab.join("wg-host.key")).unwrap();
    let ca = fs::read_to_string(lab.join("ca.pem")).unwrap();
    let notify_ca = fs::read_to_string(lab.join("notify-ca.pem")).unwrap();
    let deb_bytes = fs::read(&deb).unwrap();
    let c = Container::boot(&name, &tarball, &world.ns("host"), |root| {
        fs::create_dir_all(root.join("etc/edge")).unwrap();
        fs::write(root.join("root/edge.deb"), &deb_bytes).unwrap();
    });
    // What docs/install.md tells the admin to write (secrets 0600 root).
    c.write("/etc/edge/edge.toml", &cfg, 0o644);
    c.write("/etc/edge/cloudflare.token", &token, 0o600);
    c.write("/etc/edge/wg0.key", &wg_key, 0o600);
    c.write("/etc/edge/lab-ca.pem", &ca, 0o644);
    c.write("/etc/edge/lab-notify-ca.pem", &notify_ca, 0o644);
    eprintln!(
        "{suite}: systemd {}",
        c.ok("systemctl --version | head -1").trim()
    );

    // 1. Install offline with --no-install-recommends: a dependency the package does not
    //    declare is not there (the root has no nftables, iproute2, netbase or procps).
    for tool in ["nft", "ip"] {
        let o = c.sh(&format!("command -v {tool}"));
        assert!(!o.status.success(), "the root already has {tool}");
    }
    assert!(!c.root.join("bin/kill").exists() && !c.root.join("usr/bin/kill").exists());
    assert!(
        !c.root.join("etc/protocols").exists(),
        "the root already has netbase"
    );
    let t = Instant::now();
    c.ok("apt-get install -y -q --no-install-recommends /root/edge.deb");
    eprintln!(
        "figure: {suite}: apt-get install of the .deb (offline) {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(
        c.ok("systemctl is-enabled edge.target || true").trim(),
        "disabled",
        "nothing is enabled by the installation"
    );
    assert_eq!(c.ok("getent group edge | cut -d: -f1").trim(), "edge");
    // edge-fw runs no program: the package pulls in neither nftables nor iproute2, and
    // everything below works without them.
    for tool in ["nft", "ip"] {
        let o = c.sh(&format!("command -v {tool}"));
        assert!(!o.status.success(), "the package pulled in {tool}");
    }

    // 2. Start: every unit active (READY=1) under its shipped hardening.
    let t = Instant::now();
    let start = c.sh("systemctl enable --now edge.target");
    let ready = c.wait_active(Duration::from_secs(30));
    if ready.is_none() || !start.status.success() {
        let j = c.sh("journalctl --no-pager -n 80 -u 'edge-*'");
        panic!(
            "{suite}: not every unit became active within 30 s: {}\n{}",
            text(&start),
            String::from_utf8_lossy(&j.stdout)
        );
    }
    eprintln!(
        "figure: {suite}: systemctl enable --now edge.target -> all four READY in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    // edge-ddns talks to the API only once the firewall is in place: a connection opened
    // before edge-fw's first apply is seen mid-stream by conntrack and its replies dropped
    // (measured: the first sync then hung 10 s on Debian 12).
    let ts = |unit: &str, p: &str| -> u64 {
        c.prop(unit, p)
            .parse()
            .unwrap_or_else(|_| panic!("{unit} {p}"))
    };
    let fw_ready = ts("edge-fw.service", "ActiveEnterTimestampMonotonic");
    let ddns_start = ts("edge-ddns.service", "ExecMainStartTimestampMonotonic");
    assert!(
        ddns_start >= fw_ready,
        "edge-ddns started {} ms before edge-fw was ready",
        (fw_ready - ddns_start) / 1000
    );
    for r in ROLES {
        let unit = format!("edge-{r}.service");
        assert_eq!(c.prop(&unit, "NRestarts"), "0", "{unit} restarted");
        assert_eq!(c.prop(&unit, "LimitCORE"), "0", "{unit}");
        assert_eq!(c.prop(&unit, "LimitNOFILE"), "65536", "{unit}");
    }
    for (r, worst) in EXPOSURE {
        let out = c.ok(&format!(
            "systemd-analyze security --no-pager edge-{r}.service | tail -1"
        ));
        let level: f64 = out
            .split(": ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level in {out:?}"));
        eprintln!("figure: {suite}: edge-{r}.service exposure {level} (at most {worst})");
        assert!(level <= worst + 1e-9, "edge-{r}.service: {out}");
    }

    // 3. edgectl as root, as a member of group `edge`, as anyone else.
    let out = c.sh("edgectl --json status");
    assert!(
        out.status.success(),
        "edgectl status as root: {}",
        text(&out)
    );
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for d in st["daemons"].as_array().unwrap() {
        assert_eq!(d["status"]["ready"], true, "{d}");
    }
    let gid = c.ok("getent group edge | cut -d: -f3").trim().to_owned();
    let as_operator = |cmd: &str| {
        c.sh(&format!(
            "setpriv --reuid={OPERATOR_UID} --regid={OPERATOR_UID} --groups={gid} {cmd}"
        ))
    };
    let as_stranger = |cmd: &str| {
        c.sh(&format!(
            "setpriv --reuid={STRANGER_UID} --regid={STRANGER_UID} --clear-groups {cmd}"
        ))
    };
    for cmd in [
        "edgectl status",
        "edgectl fw status",
        "edgectl fw plan",
        "edgectl fw doctor",
        "edgectl wg show",
        "edgectl ddns plan",
        "edgectl link status",
    ] {
        let out = as_operator(cmd);
        assert!(out.status.success(), "operator: `{cmd}`: {}", text(&out));
    }
    for cmd in [
        "edgectl fw apply",
        "edgectl fw confirm",
        "edgectl ddns sync",
        "edgectl wg reload",
        "edgectl link reload",
    ] {
        let out = as_operator(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "operator: `{cmd}` was not refused");
        assert!(
            err.contains("only root may ask for it") && err.contains("sudo"),
            "operator: `{cmd}`: {}",
            text(&out)
        );
    }
    let out = as_stranger("edgectl status");
    assert!(!out.status.success(), "a stranger read the status");
    let out = as_stranger("edgectl fw status");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("group `edge`"),
        "stranger: {}",
        text(&out)
    );
    // No one but the daemon can remove or replace its socket.
    let out = as_operator("rm -f /run/edge/fw/control.sock");
    assert!(
        !out.status.success(),
        "the operator removed edge-fw's socket"
    );
    assert!(c.sh("test -S /run/edge/fw/control.sock").status.success());

    // 4. The world sees the suite do its job: forwards, the DDNS record, the WireGuard
    //    handshake, the record following a new public address (all from other namespaces).
    let check = world.edgectl(&["check"]);
    let report = String::from_utf8_lossy(&check.stdout).into_owned();
    eprintln!("{suite}:\n{report}");
    assert!(
        check.status.success(),
        "{suite}: lab check: {}",
        text(&check)
    );
    let show = c.ok(&format!("wg show {wg_if}"));
    assert!(show.contains("latest handshake"), "stock wg show: {show}");

    // 5. Reload each unit: a changed file applies (generation + 1), a broken one is refused
    //    (`systemctl reload` fails, the old configuration stays).
    let good = changed(&cfg);
    c.write("/etc/edge/edge.toml", &good, 0o644);
    for r in ROLES {
        let unit = format!("edge-{r}.service");
        let before = c.generation(r);
        let t = Instant::now();
        c.ok(&format!("systemctl reload {unit}"));
        let took = t.elapsed();
        assert_eq!(c.generation(r), before + 1, "{unit} took the changed file");
        eprintln!(
            "figure: {suite}: systemctl reload {unit}: {} ms",
            took.as_millis()
        );
    }
    c.write(
        "/etc/edge/edge.toml",
        &good.replacen("[fw]", "[fw]\nnot_a_key = 1", 1),
        0o644,
    );
    for r in ROLES {
        let unit = format!("edge-{r}.service");
        let before = c.generation(r);
        let out = c.sh(&format!("systemctl reload {unit}"));
        assert!(!out.status.success(), "{unit} reloaded a broken file");
        assert_eq!(
            c.generation(r),
            before,
            "{unit} kept the running configuration"
        );
        assert_eq!(c.prop(&unit, "ActiveState"), "active", "{unit}");
    }
    c.write("/etc/edge/edge.toml", &good, 0o644);

    // 6. A flow through a forward survives restarts of edge-fw and edge-link, edge-target's
    //    stop (the forwards stay) and an upgrade.
    let public = report
        .lines()
        .find_map(|l| l.split("follows the record to ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or("81.0.0.3")
        .to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let fwd = Arc::new(Mutex::new(StreamStats::default()));
    let flow = stream_from(
        &world.ns("inet"),
        Some(CF_EDGE_IP.parse().unwrap()),
        format!("{public}:80").parse().unwrap(),
        stop.clone(),
        fwd.clone(),
    );
    assert_flowing("forward", &fwd, Duration::from_secs(10));
    for r in ["fw", "link"] {
        let unit = format!("edge-{r}.service");
        let pid = c.prop(&unit, "MainPID");
        c.ok(&format!("systemctl restart {unit}"));
        assert_ne!(c.prop(&unit, "MainPID"), pid, "{unit} was not restarted");
        assert_flowing(
            &format!("forward ({unit} restarted)"),
            &fwd,
            Duration::from_secs(10),
        );
    }

    // Another userspace WireGuard's UAPI socket survives edge-wg's restart.
    c.ok("wireguard-go wg9 && test -S /run/wireguard/wg9.sock");
    c.ok("systemctl restart edge-wg.service");
    c.ok("test -S /run/wireguard/wg9.sock && wg show wg9 >/dev/null");
    assert!(c.wait_active(Duration::from_secs(30)).is_some());
    c.ok(&format!("wg show {wg_if} >/dev/null"));

    // `systemctl stop edge.target` returns when the target is stopped; its services (ordered
    // before it, so stopped after it) follow within moments.
    c.ok("systemctl stop edge.target");
    for r in ROLES {
        let unit = format!("edge-{r}.service");
        let state = poll(Duration::from_secs(15), || {
            let s = c.prop(&unit, "ActiveState");
            (s == "inactive").then_some(s)
        });
        assert!(
            state.is_some(),
            "{unit} is still {} 15 s after edge.target stopped",
            c.prop(&unit, "ActiveState")
        );
    }
    let live = world.in_ns("host", &["nft", "list", "table", "inet", "edge"]);
    assert!(
        live.status.success(),
        "the forwards went with edge-fw: {}",
        text(&live)
    );
    assert_flowing(
        "forward (edge.target stopped)",
        &fwd,
        Duration::from_secs(10),
    );
    let fresh = world.in_ns(
        "inet",
        &[
            "curl",
            "-sS",
            "--max-time",
            "3",
            "--interface",
            CF_EDGE_IP,
            &format!("http://{public}:443/"),
        ],
    );
    assert!(
        String::from_utf8_lossy(&fresh.stdout).contains("answered"),
        "a new connection through the forward with edge.target stopped: {}",
        text(&fresh)
    );
    c.ok("systemctl start edge.target");
    assert!(c.wait_active(Duration::from_secs(30)).is_some());

    // The upgrade: the same package with a higher version, installed over the running one.
    let tmp = tempfile::tempdir().unwrap();
    let newer = newer_deb(&deb, tmp.path());
    fs::copy(&newer, c.root.join("root/edge-newer.deb")).unwrap();
    let pids: Vec<String> = ROLES
        .iter()
        .map(|r| c.prop(&format!("edge-{r}.service"), "MainPID"))
        .collect();
    let cfg_before =
        c.ok("sha256sum /etc/edge/edge.toml /etc/edge/cloudflare.token /etc/edge/wg0.key");
    let t = Instant::now();
    c.ok("apt-get install -y -q --no-install-recommends /root/edge-newer.deb");
    eprintln!(
        "figure: {suite}: upgrade over the running suite {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(c.wait_active(Duration::from_secs(30)).is_some());
    for (r, old) in ROLES.iter().zip(&pids) {
        let unit = format!("edge-{r}.service");
        assert_ne!(
            &c.prop(&unit, "MainPID"),
            old,
            "{unit} still runs the old binary"
        );
    }
    assert_eq!(
        c.ok("sha256sum /etc/edge/edge.toml /etc/edge/cloudflare.token /etc/edge/wg0.key"),
        cfg_before,
        "the upgrade changed the admin's files"
    );
    assert!(
        c.ok("dpkg-query -W -f='${Version}' edge")
            .ends_with("+upgrade1"),
        "the newer package is installed"
    );
    assert_flowing("forward (upgraded)", &fwd, Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    flow.join().unwrap();
    let f = fwd.lock().unwrap().clone();
    assert!(f.errors.is_empty(), "{f:?}");
    eprintln!(
        "figure: {suite}: flow through the forward across restarts of edge-fw and edge-link, a stop of edge.target and the upgrade: {} round trips, 0 resets, longest pause {:.2} s",
        f.round_trips,
        f.max_gap.as_secs_f64()
    );

    // 7. Purge: no unit, no process of the daemons, no state.
    c.ok("apt-get purge -y -q edge");
    let units = c.ok("systemctl list-unit-files --no-legend 'edge*' || true");
    assert!(units.trim().is_empty(), "units left: {units}");
    let units = c.ok("systemctl list-units --all --no-legend --plain 'edge*' || true");
    assert!(
        units
            .lines()
            .all(|l| !l.contains("loaded") || l.contains("not-found")),
        "units left: {units}"
    );
    let procs = c.ok(
        "for p in /proc/[0-9]*; do cat $p/comm 2>/dev/null; done | grep -E '^(edge-|edgectl)' || true",
    );
    assert!(procs.trim().is_empty(), "processes left: {procs}");
    c.ok(
        "test ! -e /var/lib/edge && test ! -e /var/lib/private/edge && test ! -e /usr/bin/edge-fw",
    );
    // No user: the daemons' dynamic users exist only while their units run.
    let users = c.ok("getent passwd | cut -d: -f1 | grep -E '^edge' || true");
    assert!(users.trim().is_empty(), "users left: {users}");
    for r in ROLES {
        let o = c.sh(&format!("getent passwd edge-{r}"));
        assert!(
            !o.status.success(),
            "the user edge-{r} is left: {}",
            text(&o)
        );
    }
    drop(c);
    drop(world);
    assert!(
        !Path::new(&format!("/run/netns/{name}-host")).exists(),
        "the lab's namespaces are gone"
    );
}

#[test]
fn installed_on_debian_12_bookworm() {
    installed("bookworm", "b");
}

#[test]
fn installed_on_debian_13_trixie() {
    installed("trixie", "t");
}
