//! Pure: the validated firewall model — the `[fw]` section plus what the host told us before
//! compiling (interface addresses), so the compiler itself never does I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;

use edge_config::Config;
use edge_config::fw::Fw;
use ipnet::IpNet;

/// Facts from outside the `[fw]` section, gathered before compiling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env {
    /// Config file name written into rule comments (`edge.toml`).
    pub file: String,
    /// The WireGuard listen port (from `[wg]`), which must never be dropped.
    pub wg_port: Option<u16>,
    /// WireGuard networks (from `[wg].addresses`), which must always reach SSH.
    pub wg_nets: Vec<IpNet>,
    /// Addresses of interfaces, resolved by the caller (`observe::interface_addresses`);
    /// used for forwards without `address` and by the anti-lockout check.
    pub addresses: BTreeMap<String, Vec<IpAddr>>,
    /// The WireGuard interface and its MTU (from `[wg]`): TCP through it gets its maximum
    /// segment size clamped.
    pub wg_mtu: Option<(String, u32)>,
    /// The origin lock's ranges in force (shipped, or as last fetched).
    pub origin_ranges: crate::origin::Ranges,
    /// One of two hosts under keepalived (`[ha]`), and its role.
    pub pair: Option<Pair>,
}

/// A host of a pair under keepalived (`[ha]`): what the firewall does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The interface VRRP and conntrackd's sync use.
    pub interface: String,
    /// The other host's own address there: its VRRP adverts and conntrackd's sync are
    /// admitted.
    pub peer: IpAddr,
    /// conntrackd syncs the connection table (udp 3780 from the peer).
    pub conntrackd: bool,
    /// The virtual IPv4 address the ISP router forwards to (the first on `interface`):
    /// while active, egress through `interface` is translated to it.
    pub vip: Option<IpAddr>,
    /// This host is the master (keepalived's MASTER): it translates egress to the virtual
    /// address and admits new forwarded flows; otherwise it drops them (never rejects).
    pub active: bool,
}

impl Pair {
    /// The pair of a configuration, BACKUP until told otherwise (keepalived starts so).
    pub fn from_config(config: &Config) -> Option<Pair> {
        let ha = config.ha.as_ref()?;
        Some(Pair {
            interface: ha.interface.as_str().to_owned(),
            peer: IpAddr::V4(ha.peer.address),
            conntrackd: ha.conntrackd,
            vip: ha
                .vips
                .iter()
                .filter(|v| v.interface == ha.interface)
                .map(|v| v.address.addr())
                .find(IpAddr::is_ipv4),
            active: false,
        })
    }
}

impl Default for Env {
    fn default() -> Self {
        Self {
            file: "edge.toml".to_owned(),
            wg_port: None,
            wg_nets: Vec::new(),
            addresses: BTreeMap::new(),
            wg_mtu: None,
            origin_ranges: crate::origin::Ranges::shipped(),
            pair: None,
        }
    }
}

impl Env {
    /// The facts a whole configuration provides (no interface addresses yet).
    pub fn from_config(config: &Config) -> Self {
        let file = config
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "edge.toml".to_owned());
        let (wg_port, wg_nets, wg_mtu) = match &config.wg {
            Some(wg) => (
                Some(wg.listen_port.get()),
                wg.addresses.iter().map(IpNet::trunc).collect(),
                Some((wg.interface.as_str().to_owned(), wg.mtu)),
            ),
            None => (None, Vec::new(), None),
        };
        Self {
            file,
            wg_port,
            wg_nets,
            addresses: BTreeMap::new(),
            wg_mtu,
            origin_ranges: crate::origin::Ranges::shipped(),
            pair: Pair::from_config(config),
        }
    }
}

/// Errors building the model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// The config has no `[fw]` section.
    #[error("the configuration has no [fw] section")]
    MissingSection,
    /// A forward without `address` arrives on interfaces whose addresses are unknown.
    #[error(
        "forward `{name}` ({at}) has no `address` and interfaces {ifaces} have no {family} address to take it from"
    )]
    ResolveForwardAddress {
        /// Forward name.
        name: String,
        /// `FILE:LINE`.
        at: String,
        /// The interfaces looked at.
        ifaces: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
}

/// The `[fw]` section with everything the compiler needs resolved.
#[derive(Debug, Clone)]
pub struct Model {
    /// The section as validated by edge-config.
    pub fw: Fw,
    /// Outside facts.
    pub env: Env,
    /// For each forward (same order as `fw.forwards`): the addresses it arrives at.
    pub forward_addresses: Vec<Vec<IpAddr>>,
}

impl Model {
    /// Builds the model, resolving forwards without `address` to their interfaces' addresses.
    pub fn new(fw: &Fw, env: Env) -> Result<Self, ModelError> {
        let mut forward_addresses = Vec::with_capacity(fw.forwards.len());
        for f in &fw.forwards {
            let addrs = match f.address {
                Some(a) => vec![a],
                None => {
                    let mut v: Vec<IpAddr> =
                        f.on.iter()
                            .filter_map(|i| env.addresses.get(i.as_str()))
                            .flatten()
                            .copied()
                            .filter(|a| a.is_ipv4() == f.to.is_ipv4())
                            .collect();
                    v.sort();
                    v.dedup();
                    if v.is_empty() {
                        return Err(ModelError::ResolveForwardAddress {
                            name: f.name.clone(),
                            at: format!("{}:{}", env.file, f.location.line),
                            ifaces: f
                                .on
                                .iter()
                                .map(|i| i.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            family: if f.to.is_ipv4() { "IPv4" } else { "IPv6" },
                        });
                    }
                    v
                }
            };
            forward_addresses.push(addrs);
        }
        Ok(Self {
            fw: fw.clone(),
            env,
            forward_addresses,
        })
    }

    /// Builds the model of a whole configuration.
    pub fn from_config(
        config: &Config,
        addresses: BTreeMap<String, Vec<IpAddr>>,
    ) -> Result<Self, ModelError> {
        let fw = config.fw.as_ref().ok_or(ModelError::MissingSection)?;
        let mut env = Env::from_config(config);
        env.addresses = addresses;
        Self::new(fw, env)
    }

    /// `FILE:LINE` of a config line.
    pub fn at(&self, line: u32) -> String {
        format!("{}:{line}", self.env.file)
    }

    /// Networks whose SSH access must survive any ruleset: `[fw.networks]` `admin` and
    /// `wireguard`, and the WireGuard interface networks.
    pub fn admin_networks(&self) -> Vec<IpNet> {
        let mut v: Vec<IpNet> = ["admin", "wireguard"]
            .iter()
            .filter_map(|n| self.fw.networks.get(*n))
            .flatten()
            .copied()
            .collect();
        v.extend(self.env.wg_nets.iter().copied());
        v.sort();
        v.dedup();
        v
    }

    /// The SSH port: the port of the input rule named `ssh`, else 22.
    pub fn ssh_port(&self) -> u16 {
        self.fw
            .input
            .allow
            .iter()
            .find(|r| r.name == "ssh")
            .map(|r| r.port.start.get())
            .unwrap_or(22)
    }

    /// The WireGuard port: `[wg].listen_port`, else the input rule named `wireguard`.
    pub fn wg_port(&self) -> Option<u16> {
        self.env.wg_port.or_else(|| {
            self.fw
                .input
                .allow
                .iter()
                .find(|r| r.name == "wireguard")
                .map(|r| r.port.start.get())
        })
    }
}
