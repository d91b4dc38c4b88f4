//! `edgectl lab up --ha` / `check --ha`: two edge hosts behind the ISP router on a shared WAN
//! segment, keepalived and conntrackd (Debian's) on both, the four daemons on both.
//!
//! ```text
//!  inet ── router 81.0.0.2 (NAT: 80/443/51820 → 192.198.0.30, the VIP)
//!            │ bridge lan 192.198.0.1
//!     ┌──────┴───────┐
//!  a  enp3s0f0 br-api 192.198.0.31     b  enp3s0f0 br-api 192.198.0.32
//!     enp4s0f0 br1 10.17.5.2              enp4s0f0 br1 10.17.5.3
//!     VIPs (master only): 192.198.0.30/32 on br-api, 10.17.5.1/32 on br1 (the VMs' gateway)
//!     └──────┬───────┘
//!  lb  bridge sw: 10.17.5.30 (80, 443), 10.17.5.10 (6443), default via 10.17.5.1
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use edge_config::Role;
use edge_ipc::Client;
use edge_ipc::ha::{HaRole, RoleState};

use super::config::{self, LabValues, lab_secrets};
use super::net::{self, Topology};
use super::{Lab, which};

/// The two hosts' node names.
pub const HOSTS: [&str; 2] = ["a", "b"];
/// Each host's own address on br-api.
pub const OWN: [&str; 2] = ["192.198.0.31", "192.198.0.32"];
/// Each host's own address on br1.
pub const OWN_LAN: [&str; 2] = ["10.17.5.2", "10.17.5.3"];
/// The VMs' gateway, a second virtual address.
pub const LAN_VIP: &str = "10.17.5.1";

/// The other host.
pub fn other(h: &str) -> &'static str {
    if h == "a" { "b" } else { "a" }
}

fn idx(h: &str) -> usize {
    usize::from(h != "a")
}

impl Lab {
    /// The directory of host `h`.
    pub fn host_dir(&self, h: &str) -> PathBuf {
        self.dir.join(h)
    }

    /// The configuration file of host `h`.
    pub fn host_config(&self, h: &str) -> PathBuf {
        self.host_dir(h).join("edge.toml")
    }

    /// A control-socket client for `role` on host `h`.
    pub fn host_client(&self, h: &str, role: Role) -> Client {
        Client::new(
            role,
            edge_config::socket_path(&self.host_dir(h).join("run"), role),
        )
        .with_timeout(Duration::from_secs(5))
    }

    /// The role file of host `h`.
    pub fn host_role(&self, h: &str) -> Option<RoleState> {
        edge_ipc::follow::read_state(&self.host_dir(h).join("run/ha.json"))
            .ok()
            .flatten()
    }

    /// True when host `h` holds the VIP on br-api.
    pub fn holds_vip(&self, h: &str) -> bool {
        self.topo()
            .ns(h)
            .output("ip", &["-j", "-4", "addr", "show", "dev", "br-api"])
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .is_some_and(|v| {
                v[0]["addr_info"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["local"] == net::HOST_IP))
            })
    }

    /// The host holding the VIP, when exactly one does.
    pub fn master(&self) -> Option<&'static str> {
        match (self.holds_vip("a"), self.holds_vip("b")) {
            (true, false) => Some("a"),
            (false, true) => Some("b"),
            _ => None,
        }
    }

    /// Starts the four daemons on host `h` and waits until each is ready.
    pub fn start_daemons(&self, h: &str) -> anyhow::Result<()> {
        let cfg = self.host_config(h).to_string_lossy().into_owned();
        for role in Role::ALL {
            let bin = self.bin.join(role.binary());
            let label = format!("{h}-{}", role.binary());
            let pid = self.spawn(h, &label, &bin, &["--config", &cfg])?;
            let client = self.host_client(h, role);
            let took = self.wait_ready_at(&label, &client, pid, Duration::from_secs(60))?;
            // stderr: `check --ha --json` restarts daemons and keeps stdout for its report.
            eprintln!("   {h}: {} ready in {} ms", role.binary(), took.as_millis());
        }
        Ok(())
    }

    /// Starts keepalived on host `h` with the keepalived.conf edgectl generated for it.
    pub fn start_keepalived(&self, h: &str) -> anyhow::Result<u32> {
        let d = self.host_dir(h);
        let ka = which("keepalived")
            .or_else(|| Some(PathBuf::from("/usr/sbin/keepalived")).filter(|p| p.exists()))
            .context("keepalived is not installed (apt install keepalived)")?;
        let p = |n: &str| d.join(n).to_string_lossy().into_owned();
        self.spawn(
            h,
            &format!("{h}-keepalived"),
            &ka,
            &[
                "-n",
                "-l",
                "-D",
                "-P",
                "-f",
                &p("keepalived.conf"),
                "-p",
                &p("keepalived.pid"),
                "-r",
                &p("vrrp.pid"),
            ],
        )
    }

    /// Builds the two-host lab: topology, the world, both hosts' daemons, conntrackd and
    /// keepalived, the remote peer; waits until one host is master.
    pub fn up_ha(&self, edgectl: &Path) -> anyhow::Result<()> {
        self.clear_leftovers()?;
        fs::create_dir_all(self.dir.join("logs"))?;
        for h in HOSTS {
            fs::create_dir_all(self.host_dir(h).join("run"))?;
        }
        fs::set_permissions(
            &self.dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        fs::write(self.dir.join("ha"), "two hosts\n")?;
        println!("== building the two-host topology ({}-*)", self.name);
        self.topo().build_ha()?;
        let (host_pub, remote_pub) = self.secrets()?;
        self.start_world(edgectl)?;

        let sources = self.sources();
        for h in HOSTS {
            self.write_host_config(h, &remote_pub, &sources)?;
            self.write_keepalived_conf(h, edgectl)?;
        }
        for h in HOSTS {
            println!("== host {h}: the four daemons");
            self.start_daemons(h)?;
        }
        self.start_conntrackd()?;
        println!("== keepalived on both hosts");
        for h in HOSTS {
            self.start_keepalived(h)?;
        }
        let start = Instant::now();
        let master = self.wait_master(start)?;
        println!(
            "   host {master} is MASTER after {} ms",
            start.elapsed().as_millis()
        );
        println!("== starting the remote admin's WireGuard peer (wireguard-go)");
        self.start_remote(&host_pub)?;
        Ok(())
    }

    /// Writes host `h`'s configuration and checks that it loads.
    fn write_host_config(
        &self,
        h: &str,
        remote_pub: &str,
        sources: &[(&str, &str, String)],
    ) -> anyhow::Result<()> {
        let values = LabValues {
            dir: &self.host_dir(h),
            wg_if: &self.wg_if,
            remote_public_key: remote_pub,
            api_url: &format!("https://{}/client/v4", net::API_IP),
            sources,
            hook_ip: net::HOOK_IP,
        };
        let text = host_config(&config::lab_config(&values)?, h, &self.dir)?;
        fs::write(self.host_config(h), &text)?;
        if let Err(d) = edge_config::load(&self.host_config(h), edge_config::LoadOptions::default())
        {
            bail!("the configuration of host {h} is invalid:\n{d}");
        }
        Ok(())
    }

    /// Has `edgectl ha keepalived-conf` write host `h`'s keepalived.conf and conntrackd.conf
    /// into its directory.
    fn write_keepalived_conf(&self, h: &str, edgectl: &Path) -> anyhow::Result<()> {
        let d = self.host_dir(h);
        let s = |n: &str| d.join(n).to_string_lossy().into_owned();
        let out = self.topo().ns(h).output(
            &edgectl.to_string_lossy(),
            &[
                "--config",
                &s("edge.toml"),
                "ha",
                "keepalived-conf",
                "--write",
                &s(""),
                "--log",
                &self
                    .dir
                    .join(format!("logs/{h}-ha-fifo.log"))
                    .to_string_lossy(),
                "--conntrackd-socket",
                &s("conntrackd.ctl"),
                "--conntrackd-lock",
                &s("conntrackd.lock"),
            ],
        )?;
        if !out.status.success() {
            bail!(
                "edgectl ha keepalived-conf failed for host {h}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Starts conntrackd on both hosts.
    fn start_conntrackd(&self) -> anyhow::Result<()> {
        let ctd = which("conntrackd")
            .or_else(|| Some(PathBuf::from("/usr/sbin/conntrackd")).filter(|p| p.exists()))
            .context("conntrackd is not installed (apt install conntrackd)")?;
        for h in HOSTS {
            let conf = self.host_dir(h).join("conntrackd.conf");
            self.spawn(
                h,
                &format!("{h}-conntrackd"),
                &ctd,
                &["-C", &conf.to_string_lossy()],
            )?;
        }
        Ok(())
    }

    /// Waits (30 s from `start`) until one host holds the VIP as MASTER and the other is
    /// BACKUP; that host.
    fn wait_master(&self, start: Instant) -> anyhow::Result<&'static str> {
        loop {
            if let Some(m) = self.master()
                && self.host_role(m).is_some_and(|r| r.role == HaRole::Master)
                && self
                    .host_role(other(m))
                    .is_some_and(|r| r.role == HaRole::Backup)
            {
                return Ok(m);
            }
            if start.elapsed() > Duration::from_secs(30) {
                bail!(
                    "no single master within 30 s (VIP on a: {}, on b: {}; roles {:?} / {:?}); keepalived:\n{}\n{}",
                    self.holds_vip("a"),
                    self.holds_vip("b"),
                    self.host_role("a").map(|r| r.role),
                    self.host_role("b").map(|r| r.role),
                    self.log_tail("a-keepalived"),
                    self.log_tail("b-keepalived")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Host `h`'s configuration: the lab's copy of the reference with its own addresses on the
/// bridges, its own directories, and `[ha]` (edge-fw admits the peer's VRRP and conntrackd itself).
pub fn host_config(lab_text: &str, h: &str, lab_dir: &Path) -> anyhow::Result<String> {
    let i = idx(h);
    let peer = other(h);
    let mut t = lab_text.replace(
        "addresses = [\"192.198.0.30/24\"]",
        &format!("addresses = [\"{}/24\"]", OWN[i]),
    );
    t = t.replace(
        "addresses = [\"10.17.5.1/24\"]",
        &format!("addresses = [\"{}/24\"]", OWN_LAN[i]),
    );
    // One key for both hosts: the secrets of the lab's directory.
    t = lab_secrets(&t, lab_dir)?;
    let d = lab_dir.display();
    t = t.replace("host = \"lab-host\"", &format!("host = \"lab-{h}\""));
    // The world's CAs are the lab's, not the host's.
    for ca in ["notify-ca.pem", "ca.pem"] {
        t = t.replace(
            &format!("ca_file = \"{d}/{h}/{ca}\""),
            &format!("ca_file = \"{d}/{ca}\""),
        );
    }
    // ha_conf.rs's tests hold host a's [ha] written out as their fixture; this is the
    // template for either host, so the two stay apart.
    t.push_str(&format!(
        r#"
[ha]
name = "edge-{h}"
address = "{own}"
instance = "edge"
virtual_router_id = 30
interface = "br-api"
advert_int = "500ms"
conntrackd = true
conntrackd_config = "{d}/{h}/conntrackd.conf"
ddns_hold_off = "3s"

[ha.peer]
name = "edge-{peer}"
address = "{peer_addr}"

[[ha.vip]]
address = "{vip}/32"

[[ha.vip]]
address = "{LAN_VIP}/32"
interface = "br1"
"#,
        own = OWN[i],
        peer_addr = OWN[idx(peer)],
        vip = net::HOST_IP,
    ));
    Ok(t)
}

impl Topology {
    /// Builds the two-host topology: the router's LAN and the VMs' network are bridges
    /// (switches) inside the router and lb namespaces, each host a port on both.
    pub fn build_ha(&self) -> anyhow::Result<()> {
        for n in net::HA_NODES {
            net::run("ip", &["netns", "add", &self.ns(n).name])?;
            self.ns(n).ip(&["link", "set", "lo", "up"])?;
        }
        self.veth("router", "wan", "inet", "eth0")?;
        self.veth("remote", "eth0", "inet", "eth1")?;
        let router = self.ns("router");
        let lb = self.ns("lb");
        for sw in [(&router, "lan"), (&lb, "sw")] {
            sw.0.ip(&["link", "add", sw.1, "type", "bridge"])?;
            sw.0.ip(&["link", "set", sw.1, "up"])?;
        }
        for h in HOSTS {
            self.veth("router", &format!("lan{h}"), h, "enp3s0f0")?;
            router.ip(&["link", "set", &format!("lan{h}"), "master", "lan"])?;
            self.veth("lb", &format!("eth{h}"), h, "enp4s0f0")?;
            lb.ip(&["link", "set", &format!("eth{h}"), "master", "sw"])?;
        }
        self.inet_side()?;
        router.ip(&[
            "addr",
            "add",
            &format!("{}/24", net::PUBLIC_IP),
            "dev",
            "wan",
        ])?;
        router.ip(&[
            "addr",
            "add",
            &format!("{}/24", net::ROUTER_LAN_IP),
            "dev",
            "lan",
        ])?;
        router.ip(&["route", "add", "default", "via", net::INET_GW])?;
        router.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        self.router_nat(&router)?;
        lb.ip(&[
            "addr",
            "add",
            &format!("{}/24", net::INGRESS_VIP),
            "dev",
            "sw",
        ])?;
        lb.ip(&["addr", "add", &format!("{}/24", net::API_VIP), "dev", "sw"])?;
        lb.ip(&["route", "add", "default", "via", LAN_VIP])?;
        let remote = self.ns("remote");
        remote.ip(&[
            "addr",
            "add",
            &format!("{}/24", net::REMOTE_IP),
            "dev",
            "eth0",
        ])?;
        remote.ip(&["route", "add", "default", "via", "83.0.0.1"])?;
        Ok(())
    }
}
