//! Pure: validated value types shared by every section (interface names, ports, networks,
//! durations, keys, endpoints).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use ipnet::IpNet;
use serde::{Serialize, Serializer};

use crate::decode::{Ctx, Decode, Invalid, Node, integer_in};
use toml::de::DeValue;

/// A Linux network interface name, checked with the kernel's rules (`dev_valid_name`):
/// 1–15 bytes, not `.` or `..`, no `/`, `:` or whitespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InterfaceName(String);

/// The kernel's IFNAMSIZ minus the terminating NUL.
pub const IFNAME_MAX: usize = 15;

impl InterfaceName {
    /// Validates `s` as an interface name.
    pub fn new(s: &str) -> Result<Self, Invalid> {
        if s.is_empty() {
            return Err(Invalid::new("interface name is empty"));
        }
        if s.len() > IFNAME_MAX {
            return Err(Invalid::new(format!(
                "interface name `{s}` is {} bytes long; Linux allows at most {IFNAME_MAX}",
                s.len()
            ))
            .hint("shorten the name (the kernel's IFNAMSIZ is 16 including the NUL)"));
        }
        if s == "." || s == ".." {
            return Err(Invalid::new(format!("`{s}` is not a valid interface name")));
        }
        if let Some(c) = s
            .chars()
            .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
        {
            return Err(Invalid::new(format!(
                "interface name `{s}` contains {:?}, which Linux does not allow",
                c
            ))
            .hint("use letters, digits, `-`, `_` and `.` only"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for InterfaceName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl Decode for InterfaceName {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        node.parse_str(ctx, "an interface name (string)", InterfaceName::new)
    }
}

/// A TCP/UDP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Port(u16);

impl Port {
    /// Validates a port number.
    pub fn new(p: u16) -> Option<Self> {
        (p != 0).then_some(Self(p))
    }

    /// The port number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Decode for Port {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        let v = integer(ctx, &node)?;
        port_from(ctx, &node, v)
    }
}

fn integer(ctx: &mut Ctx<'_>, node: &Node<'_, '_>) -> Option<i128> {
    integer_in(ctx, node, i128::MIN, i128::MAX)
}

fn port_from(ctx: &mut Ctx<'_>, node: &Node<'_, '_>, v: i128) -> Option<Port> {
    match u16::try_from(v).ok().and_then(Port::new) {
        Some(p) => Some(p),
        None => {
            node.error(
                ctx,
                format!("port {v} is out of range: a port is between 1 and 65535"),
            );
            None
        }
    }
}

/// An inclusive port range; a single port is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PortRange {
    /// First port.
    pub start: Port,
    /// Last port (equal to `start` for a single port).
    pub end: Port,
}

impl PortRange {
    /// A range holding one port.
    pub fn single(p: Port) -> Self {
        Self { start: p, end: p }
    }

    /// Number of ports in the range.
    pub fn len(&self) -> u32 {
        u32::from(self.end.get()) - u32::from(self.start.get()) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// True when `p` is inside the range.
    pub fn contains(&self, p: Port) -> bool {
        self.start <= p && p <= self.end
    }

    /// True when the two ranges share a port.
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    fn parse(s: &str) -> Result<Self, Invalid> {
        let bad = || {
            Invalid::new(format!("`{s}` is not a port or a port range"))
                .hint("write a port as 443 or a range as \"30000-30010\"")
        };
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let a: u32 = a.trim().parse().map_err(|_| bad())?;
        let b: u32 = b.trim().parse().map_err(|_| bad())?;
        let p = |v: u32| {
            u16::try_from(v).ok().and_then(Port::new).ok_or_else(|| {
                Invalid::new(format!(
                    "port {v} is out of range: a port is between 1 and 65535"
                ))
            })
        };
        let (start, end) = (p(a)?, p(b)?);
        if start > end {
            return Err(
                Invalid::new(format!("port range `{s}` ends before it starts"))
                    .hint(format!("write it as \"{b}-{a}\"")),
            );
        }
        Ok(Self { start, end })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl Decode for PortRange {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        match node.value() {
            DeValue::Integer(_) => {
                let v = integer(ctx, &node)?;
                port_from(ctx, &node, v).map(PortRange::single)
            }
            DeValue::String(_) => node.parse_str(ctx, "a port or range", PortRange::parse),
            _ => node.type_error(ctx, "a port (integer) or a range (\"START-END\")"),
        }
    }
}

/// An IP address (v4 or v6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Ip(pub IpAddr);

impl Decode for Ip {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        node.parse_str(ctx, "an IP address (string)", |s| {
            s.parse::<IpAddr>().map(Ip).map_err(|_| {
                let mut inv = Invalid::new(format!("`{s}` is not a valid IP address"));
                if s.contains('/') {
                    inv = inv.hint("give a single address here, without a /prefix");
                }
                inv
            })
        })
    }
}

/// An address with its prefix length as assigned to an interface (`192.198.0.30/24`):
/// host bits may be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct IfAddr(pub IpNet);

impl Decode for IfAddr {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        node.parse_str(ctx, "an address with prefix (\"ADDR/LEN\")", |s| {
            parse_cidr(s).map(IfAddr)
        })
    }
}

/// A network in CIDR notation (`10.17.5.0/24`): host bits must be zero. A bare address is
/// taken as a host network (/32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Network(pub IpNet);

impl Network {
    /// Parses and checks a network.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let net = if s.contains('/') {
            parse_cidr(s)?
        } else {
            let ip: IpAddr = s.parse().map_err(|_| {
                Invalid::new(format!("`{s}` is not a valid network or address"))
                    .hint("write a network as 10.17.5.0/24")
            })?;
            IpNet::from(ip)
        };
        if net.trunc() != net {
            return Err(
                Invalid::new(format!("`{s}` has host bits set, so it is not a network"))
                    .hint(format!("did you mean {}?", net.trunc())),
            );
        }
        Ok(Self(net))
    }
}

impl Decode for Network {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        node.parse_str(ctx, "a network (\"ADDR/LEN\")", Network::parse)
    }
}

fn parse_cidr(s: &str) -> Result<IpNet, Invalid> {
    let Some((addr, len)) = s.split_once('/') else {
        return Err(Invalid::new(format!("`{s}` has no prefix length"))
            .hint(format!("write it as {s}/24 (IPv4) or {s}/64 (IPv6)")));
    };
    let ip: IpAddr = addr.parse().map_err(|_| {
        Invalid::new(format!(
            "`{s}` is not a valid CIDR: `{addr}` is not an IP address"
        ))
    })?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u8 = len.parse().ok().filter(|l| *l <= max).ok_or_else(|| {
        Invalid::new(format!(
            "`{s}` is not a valid CIDR: the prefix length must be 0 to {max}"
        ))
    })?;
    IpNet::new(ip, len).map_err(|_| Invalid::new(format!("`{s}` is not a valid CIDR")))
}

/// A duration written like `60s`, `5m` or `250ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

impl Decode for Dur {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        node.parse_str(ctx, "a duration such as \"60s\"", |s| {
            humantime::parse_duration(s).map(Dur).map_err(|e| {
                Invalid::new(format!("`{s}` is not a duration: {e}"))
                    .hint("write durations like \"250ms\", \"60s\", \"5m\" or \"1h\"")
            })
        })
    }
}

/// A socket address to listen on (`127.0.0.1:9851`, `[::1]:9851`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct ListenAddr(pub SocketAddr);

impl Decode for ListenAddr {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        node.parse_str(ctx, "an address:port (string)", |s| {
            s.parse::<SocketAddr>().map(ListenAddr).map_err(|_| {
                Invalid::new(format!("`{s}` is not an address:port"))
                    .hint("write it as 127.0.0.1:9851 or [::1]:9851")
            })
        })
    }
}

/// A WireGuard public key: 32 bytes in standard base64 (44 characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WgKey(pub [u8; 32]);

impl WgKey {
    /// Parses a base64 key.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| {
                Invalid::new("not a WireGuard key: it is not valid base64")
                    .hint("a key is 44 base64 characters, as printed by `wg pubkey`")
            })?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            Invalid::new("not a WireGuard key: it does not decode to 32 bytes")
                .hint("a key is 44 base64 characters, as printed by `wg pubkey`")
        })?;
        Ok(Self(arr))
    }

    /// The key in base64, as `wg` prints it.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

impl fmt::Debug for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WgKey({})", self.to_base64())
    }
}

impl fmt::Display for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl Serialize for WgKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl Decode for WgKey {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        node.parse_str(ctx, "a base64 WireGuard key", WgKey::parse)
    }
}

/// A `host:port` endpoint where host is an IP address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Endpoint {
    /// Address or name.
    pub host: String,
    /// UDP port.
    pub port: Port,
}

impl Endpoint {
    /// Parses `host:port`, `[v6]:port` or `v4:port`.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            let port = Port::new(sa.port())
                .ok_or_else(|| Invalid::new(format!("endpoint `{s}` has port 0")))?;
            return Ok(Self {
                host: sa.ip().to_string(),
                port,
            });
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(|| {
            Invalid::new(format!("endpoint `{s}` has no port"))
                .hint("write it as host.example.org:51820 or 203.0.113.7:51820")
        })?;
        let port = port
            .parse::<u16>()
            .ok()
            .and_then(Port::new)
            .ok_or_else(|| Invalid::new(format!("endpoint `{s}` has an invalid port")))?;
        DnsName::parse(host)?;
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl Decode for Endpoint {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        node.parse_str(ctx, "an endpoint \"HOST:PORT\"", Endpoint::parse)
    }
}

/// A DNS name (e.g. `example.com`), lowercased, without the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DnsName(String);

impl DnsName {
    /// Checks label lengths (1–63), total length (≤ 253) and characters (LDH, `_`, `*` first).
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        let bad = |why: &str| {
            Invalid::new(format!("`{s}` is not a valid DNS name: {why}"))
                .hint("use an ASCII (punycode) name such as www.example.com")
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() > 253 {
            return Err(bad("it is longer than 253 characters"));
        }
        for (i, label) in name.split('.').enumerate() {
            if label.is_empty() || label.len() > 63 {
                return Err(bad("each label must be 1 to 63 characters"));
            }
            if label == "*" && i == 0 {
                continue;
            }
            if !label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                || label.starts_with('-')
                || label.ends_with('-')
            {
                return Err(bad(&format!("label `{label}` has invalid characters")));
            }
        }
        Ok(Self(name))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Decode for DnsName {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        node.parse_str(ctx, "a DNS name", DnsName::parse)
    }
}

/// An http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl(pub url::Url);

impl HttpUrl {
    /// Parses an http or https URL.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let u = url::Url::parse(s)
            .map_err(|e| Invalid::new(format!("`{s}` is not a valid URL: {e}")))?;
        if u.scheme() != "https" && u.scheme() != "http" {
            return Err(Invalid::new(format!(
                "`{s}` must be an http or https URL, not {}",
                u.scheme()
            )));
        }
        if u.host().is_none() {
            return Err(Invalid::new(format!("`{s}` has no host")));
        }
        Ok(Self(u))
    }

    /// True for https, or for plain http to a loopback address (tests).
    pub fn is_secure_or_loopback(&self) -> bool {
        if self.0.scheme() == "https" {
            return true;
        }
        match self.0.host() {
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl Serialize for HttpUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl Decode for HttpUrl {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        node.parse_str(ctx, "a URL", HttpUrl::parse)
    }
}

/// A value from a fixed set of words, decoded case-sensitively with a hint listing them.
pub fn one_of<T: Copy>(
    ctx: &mut Ctx<'_>,
    node: Node<'_, '_>,
    choices: &[(&'static str, T)],
) -> Option<T> {
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    let expected = format!("one of {}", quoted(&names));
    let s = node.str(ctx, &expected)?;
    if let Some((_, v)) = choices.iter().find(|(n, _)| *n == s) {
        return Some(*v);
    }
    let d = node.error(ctx, format!("`{s}` is not valid for `{}`", node.key()));
    match crate::decode::closest(s, &names) {
        Some(b) => d.hint(format!("did you mean \"{b}\"? (valid: {})", quoted(&names))),
        None => d.hint(format!("valid values: {}", quoted(&names))),
    };
    None
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for InterfaceName {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        Self::new(s)
    }
}

/// True for addresses in a private (RFC 1918 / unique local) range.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_private(),
        IpAddr::V6(a) => (a.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// True for 100.64.0.0/10, the carrier-grade NAT range.
pub fn is_cgnat(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64,
        IpAddr::V6(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_kernel_rules() {
        assert!(InterfaceName::new("enp3s0f0").is_ok());
        assert!(InterfaceName::new("br-api").is_ok());
        assert!(InterfaceName::new("a23456789012345").is_ok());
        let e = InterfaceName::new("a234567890123456").unwrap_err();
        assert!(e.message.contains("16 bytes"), "{}", e.message);
        assert!(InterfaceName::new("").is_err());
        assert!(InterfaceName::new("..").is_err());
        assert!(InterfaceName::new("eth0:1").is_err());
        assert!(InterfaceName::new("br 0").is_err());
        assert!(InterfaceName::new("a/b").is_err());
    }

    #[test]
    fn port_ranges_parse_and_reject_reversed() {
        let r = PortRange::parse("30000-30010").unwrap();
        assert_eq!(r.len(), 11);
        assert!(
            PortRange::parse("10-5")
                .unwrap_err()
                .hint
                .unwrap()
                .contains("5-10")
        );
        assert!(PortRange::parse("0").is_err());
        assert!(PortRange::parse("70000").is_err());
        assert!(PortRange::parse("http").is_err());
    }

    #[test]
    fn networks_must_not_have_host_bits() {
        assert!(Network::parse("10.17.5.0/24").is_ok());
        let e = Network::parse("10.17.5.1/24").unwrap_err();
        assert_eq!(e.hint.as_deref(), Some("did you mean 10.17.5.0/24?"));
        assert_eq!(Network::parse("10.0.0.1").unwrap().0.prefix_len(), 32);
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(parse_cidr("300.1.1.1/24").is_err());
    }

    #[test]
    fn keys_and_endpoints() {
        let k = "YNqHbfBQKaGvzefSSJ4GA9w3Ye7ea5IYeEh8KQPxDnE=";
        assert_eq!(WgKey::parse(k).unwrap().to_base64(), k);
        assert!(WgKey::parse("abc").is_err());
        assert_eq!(
            Endpoint::parse("[::1]:51820").unwrap().to_string(),
            "[::1]:51820"
        );
        assert_eq!(
            Endpoint::parse("vpn.example.org:51820").unwrap().host,
            "vpn.example.org"
        );
        assert!(Endpoint::parse("vpn.example.org").is_err());
    }

    #[test]
    fn dns_names() {
        assert_eq!(
            DnsName::parse("Example.COM.").unwrap().as_str(),
            "example.com"
        );
        assert!(DnsName::parse("*.example.com").is_ok());
        assert!(DnsName::parse("-a.example.com").is_err());
        assert!(DnsName::parse("a..b").is_err());
    }

    #[test]
    fn address_classes() {
        assert!(is_private("192.168.1.1".parse().unwrap()));
        assert!(!is_private("192.198.0.30".parse().unwrap()));
        assert!(is_cgnat("100.100.1.1".parse().unwrap()));
        assert!(!is_cgnat("100.128.0.1".parse().unwrap()));
    }
}
