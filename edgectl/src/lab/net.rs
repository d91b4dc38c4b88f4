//! The lab's topology: named network namespaces joined by veth pairs, modelled on the user's
//! host (the reference deployment of config/edge.toml). Everything is created inside namespaces named `<lab>-<node>`; nothing is
//! ever configured in the root namespace.

use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, bail};

/// The nodes of the lab.
pub const NODES: [&str; 6] = ["inet", "router", "host", "lb", "remote", "admin"];
/// The nodes of the two-host lab (`up --ha`): hosts `a` and `b` instead of `host`.
pub const HA_NODES: [&str; 6] = ["inet", "router", "a", "b", "lb", "remote"];

/// "The internet" side of the ISP router.
pub const INET_GW: &str = "81.0.0.1";
/// The ISP router's public address at the start of the lab.
pub const PUBLIC_IP: &str = "81.0.0.2";
/// The public address the router is moved to by `check`.
pub const PUBLIC_IP_NEXT: &str = "81.0.0.3";
/// The Cloudflare API test server.
pub const API_IP: &str = "82.0.0.10";
/// Public-IP echo services (plain text, cdn-cgi/trace, plain text).
pub const ECHO_IPS: [&str; 3] = ["82.0.0.11", "82.0.0.12", "82.0.0.13"];
/// The webhook receiver the daemons notify (HTTPS, its own test CA).
pub const HOOK_IP: &str = "82.0.0.20";
/// An address of Cloudflare's edge (inside its published 173.245.48.0/20): the visitors'
/// requests to the ingress come from it, as they do through Cloudflare's proxy.
pub const CF_EDGE_IP: &str = "173.245.48.10";
/// The remote admin's address on the internet.
pub const REMOTE_IP: &str = "83.0.0.50";
/// The host's address on br-api (the ISP router forwards to it).
pub const HOST_IP: &str = "192.198.0.30";
/// The ISP router's LAN address, the host's default gateway.
pub const ROUTER_LAN_IP: &str = "192.198.0.1";
/// The ingress VIP (HAProxy + Keepalived).
pub const INGRESS_VIP: &str = "10.17.5.30";
/// The Kubernetes API VIP.
pub const API_VIP: &str = "10.17.5.10";
/// The remote peer's tunnel address.
pub const REMOTE_TUNNEL_IP: &str = "10.17.9.2";

/// Runs a command, failing with its output.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("failed to run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// A lab namespace by node name.
#[derive(Debug, Clone)]
pub struct Ns {
    /// Full namespace name (`edge-lab-host`).
    pub name: String,
}

impl Ns {
    /// Runs `program args` inside the namespace, failing with its output.
    pub fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        let mut all = vec!["netns", "exec", &self.name, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Runs a command inside the namespace and returns its output whatever the status.
    pub fn output(&self, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("failed to run {program} in {}", self.name))
    }

    /// `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<Output> {
        self.run("ip", args)
    }

    /// A command prefix for spawning inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

/// The lab's namespaces.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    /// The topology of lab `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The namespace of `node`.
    pub fn ns(&self, node: &str) -> Ns {
        Ns {
            name: format!("{}-{node}", self.prefix),
        }
    }

    /// Names of the lab's namespaces that exist now.
    pub fn existing(&self) -> Vec<String> {
        let out = Command::new("ip").args(["netns", "list"]).output();
        let list = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let wanted: Vec<String> = NODES
            .iter()
            .chain(HA_NODES.iter())
            .map(|n| self.ns(n).name)
            .collect();
        list.lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| wanted.iter().any(|w| w == n))
            .map(str::to_owned)
            .collect()
    }

    /// Joins `a:dev_a` and `b:dev_b` with a veth pair, both ends up.
    pub fn veth(&self, a: &str, dev_a: &str, b: &str, dev_b: &str) -> anyhow::Result<()> {
        let nb = self.ns(b).name;
        // Created inside `a`, its peer moved straight into `b`: never in the root namespace.
        self.ns(a).ip(&[
            "link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", &nb,
        ])?;
        self.ns(a).ip(&["link", "set", dev_a, "up"])?;
        self.ns(b).ip(&["link", "set", dev_b, "up"])?;
        Ok(())
    }

    /// Builds the namespaces, links, addresses, routes and the ISP router's NAT. The host
    /// gets only its NICs: bridges, addresses, routes and the firewall are edge's job.
    pub fn build(&self) -> anyhow::Result<()> {
        for n in NODES {
            run("ip", &["netns", "add", &self.ns(n).name])?;
            self.ns(n).ip(&["link", "set", "lo", "up"])?;
        }
        self.veth("router", "wan", "inet", "eth0")?;
        self.veth("router", "lan0", "host", "enp3s0f0")?;
        self.veth("lb", "eth0", "host", "enp4s0f0")?;
        self.veth("admin", "eth0", "host", "enp4s0f1")?;
        self.veth("remote", "eth0", "inet", "eth1")?;
        self.inet_side()?;

        let router = self.ns("router");
        router.ip(&["addr", "add", &format!("{PUBLIC_IP}/24"), "dev", "wan"])?;
        router.ip(&["addr", "add", &format!("{ROUTER_LAN_IP}/24"), "dev", "lan0"])?;
        router.ip(&["route", "add", "default", "via", INET_GW])?;
        router.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        self.router_nat(&router)?;

        let lb = self.ns("lb");
        lb.ip(&["addr", "add", &format!("{INGRESS_VIP}/24"), "dev", "eth0"])?;
        lb.ip(&["addr", "add", &format!("{API_VIP}/24"), "dev", "eth0"])?;
        lb.ip(&["route", "add", "default", "via", "10.17.5.1"])?;

        let admin = self.ns("admin");
        admin.ip(&["addr", "add", "192.168.1.10/24", "dev", "eth0"])?;

        let remote = self.ns("remote");
        remote.ip(&["addr", "add", &format!("{REMOTE_IP}/24"), "dev", "eth0"])?;
        remote.ip(&["route", "add", "default", "via", "83.0.0.1"])?;
        Ok(())
    }

    /// "The internet": its addresses, services' addresses and the hostile route.
    pub fn inet_side(&self) -> anyhow::Result<()> {
        let inet = self.ns("inet");
        inet.ip(&["addr", "add", &format!("{INET_GW}/24"), "dev", "eth0"])?;
        inet.ip(&["addr", "add", "83.0.0.1/24", "dev", "eth1"])?;
        for ip in [API_IP, HOOK_IP, CF_EDGE_IP].into_iter().chain(ECHO_IPS) {
            inet.ip(&["addr", "add", &format!("{ip}/32"), "dev", "lo"])?;
        }
        // A hostile host on the ISP side can route to the host's address directly: the
        // firewall, not the router, has to keep it away from 6443.
        inet.ip(&["route", "add", "192.198.0.0/24", "via", PUBLIC_IP])?;
        inet.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        Ok(())
    }

    /// The ISP router's NAT: 80/443 and WireGuard forwarded to the host's address (the
    /// VIP with two hosts), masquerade out of `wan`.
    pub fn router_nat(&self, router: &Ns) -> anyhow::Result<()> {
        let nat = format!(
            "table ip isp {{
  chain prerouting {{
    type nat hook prerouting priority dstnat;
    iifname \"wan\" tcp dport {{ 80, 443 }} dnat to {HOST_IP}
    iifname \"wan\" udp dport 51820 dnat to {HOST_IP}
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat;
    oifname \"wan\" masquerade
  }}
}}
"
        );
        let mut c = router.command("nft");
        c.args(["-f", "-"]).stdin(Stdio::piped());
        let mut child = c.spawn().context("failed to run nft in the router")?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write as _;
            stdin.write_all(nat.as_bytes())?;
        }
        let st = child.wait()?;
        if !st.success() {
            bail!("the ISP router's NAT rules were refused by nft");
        }
        Ok(())
    }

    /// Moves the router's public address from `from` to `to` (as an ISP reconnect would).
    pub fn change_public_ip(&self, from: &str, to: &str) -> anyhow::Result<()> {
        let router = self.ns("router");
        // Like a PPPoE/DHCP reconnect: the old address goes (deleting a primary address would
        // also take a secondary of the same subnet with it), then the new one comes, and the
        // default route, which left with the old address, is put back.
        router.ip(&["addr", "del", &format!("{from}/24"), "dev", "wan"])?;
        router.ip(&["addr", "add", &format!("{to}/24"), "dev", "wan"])?;
        router.ip(&["route", "replace", "default", "via", INET_GW])?;
        // The internet side now reaches the host through the new address.
        let _ = self
            .ns("inet")
            .ip(&["route", "replace", "192.198.0.0/24", "via", to]);
        Ok(())
    }

    /// Deletes every namespace of the lab (and with them their veths); returns their names.
    pub fn destroy(&self) -> Vec<String> {
        let names = self.existing();
        for n in &names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
        names
    }
}
