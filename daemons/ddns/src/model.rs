//! Pure: the domain types of the updater — what a record should be, what Cloudflare holds,
//! and which public addresses are acceptable.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use edge_config::ddns::{Family, RecordType};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// A record the configuration asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Fully qualified name, lower case.
    pub name: String,
    /// A or AAAA.
    pub kind: RecordType,
    /// Proxied through Cloudflare (used when the record is created).
    pub proxied: bool,
    /// TTL (used when the record is created); 1 means automatic.
    pub ttl: u32,
    /// Take over a record that lacks the ownership comment.
    pub adopt: bool,
}

impl Desired {
    /// Builds the desired records from the `[ddns]` section.
    pub fn from_config(cfg: &edge_config::ddns::Ddns) -> Vec<Desired> {
        cfg.records
            .iter()
            .map(|r| Desired {
                name: r.name.as_str().to_ascii_lowercase(),
                kind: r.kind,
                proxied: r.proxied,
                // Cloudflare serves proxied records with an automatic TTL; the config loader
                // already warned about any other value.
                ttl: if r.proxied { 1 } else { r.ttl },
                adopt: r.adopt,
            })
            .collect()
    }

    /// The record's key, e.g. `A example.com`.
    pub fn key(&self) -> RecordKey {
        RecordKey::new(self.kind, &self.name)
    }
}

/// Identifies a managed record: its type and lower-case name (`A example.com`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct RecordKey {
    /// A or AAAA.
    pub kind: RecordType,
    /// Lower-case name.
    pub name: String,
}

impl RecordKey {
    /// Builds a key, lower-casing the name (Cloudflare lower-cases names).
    pub fn new(kind: RecordType, name: &str) -> Self {
        Self {
            kind,
            name: name.trim_end_matches('.').to_ascii_lowercase(),
        }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.as_str(), self.name)
    }
}

impl From<RecordKey> for String {
    fn from(k: RecordKey) -> String {
        k.to_string()
    }
}

impl TryFrom<String> for RecordKey {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (kind, name) = s
            .split_once(' ')
            .ok_or_else(|| format!("`{s}` is not a record key"))?;
        let kind = parse_record_type(kind).ok_or_else(|| format!("`{kind}` is not A or AAAA"))?;
        Ok(RecordKey::new(kind, name))
    }
}

/// Parses `A` or `AAAA`.
pub fn parse_record_type(s: &str) -> Option<RecordType> {
    match s {
        "A" => Some(RecordType::A),
        "AAAA" => Some(RecordType::AAAA),
        _ => None,
    }
}

/// A DNS record as Cloudflare returned it (only the fields the updater reads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Record id (32 hex characters).
    pub id: String,
    /// Name as Cloudflare stores it (lower case).
    pub name: String,
    /// Record type (`A`, `AAAA`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Content (the address).
    pub content: String,
    /// Proxied.
    #[serde(default)]
    pub proxied: bool,
    /// TTL; 1 is automatic.
    #[serde(default = "one")]
    pub ttl: u32,
    /// Free-text comment; ownership is marked here.
    #[serde(default)]
    pub comment: Option<String>,
}

fn one() -> u32 {
    1
}

impl Observed {
    /// True when the record carries exactly our ownership comment.
    pub fn is_owned(&self, owner_comment: &str) -> bool {
        self.comment.as_deref().map(str::trim) == Some(owner_comment.trim())
    }

    /// True when the content is `ip` (compared as addresses, so `::1` equals `0::1`).
    pub fn holds(&self, ip: IpAddr) -> bool {
        self.content.parse::<IpAddr>().is_ok_and(|c| c == ip)
    }
}

/// Why a detected address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// The source answered with an address of the other family.
    WrongFamily,
    /// Loopback, unspecified, link-local, multicast, broadcast, documentation, reserved...
    NotGlobal,
    /// RFC 1918 or IPv6 unique-local.
    Private,
    /// 100.64.0.0/10: the host is behind carrier-grade NAT.
    Cgnat,
    /// One of Cloudflare's own ranges (a proxy, WARP or anycast answer, not the host).
    Cloudflare,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rejection::WrongFamily => "it is of the wrong address family",
            Rejection::NotGlobal => "it is not a globally reachable address",
            Rejection::Private => "it is a private address",
            Rejection::Cgnat => {
                "it is a carrier-grade NAT address (100.64.0.0/10): this host is behind CGNAT, \
                 so no DNS record can make it reachable from the internet (ask the ISP for a \
                 public IPv4 address, or publish only AAAA)"
            }
            Rejection::Cloudflare => {
                "it belongs to Cloudflare (the answer came through a Cloudflare proxy or WARP), \
                 not to this host"
            }
        })
    }
}

/// The public resolver's anycast prefixes (1.1.1.1, 1.0.0.1): like Cloudflare's proxy
/// ranges ([`edge_config::fw::CLOUDFLARE_V4`], [`edge_config::fw::CLOUDFLARE_V6`]), never this
/// host's address.
pub const CLOUDFLARE_RESOLVER: &[&str] = &["1.1.1.0/24", "1.0.0.0/24"];

fn in_any(ip: IpAddr, nets: &[&str]) -> bool {
    nets.iter()
        .filter_map(|n| n.parse::<IpNet>().ok())
        .any(|n| n.contains(&ip))
}

fn v4_not_global(a: Ipv4Addr) -> bool {
    // IANA special-purpose registry entries that are not globally reachable.
    const NOT_GLOBAL: &[&str] = &[
        "0.0.0.0/8",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    ];
    NOT_GLOBAL
        .iter()
        .filter_map(|n| n.parse::<Ipv4Net>().ok())
        .any(|n| n.contains(&a))
}

fn v6_not_global(a: Ipv6Addr) -> bool {
    // Only 2000::/3 is global unicast; inside it, documentation, Teredo/ORCHID/benchmarking
    // (2001::/23 special block) and 6to4-of-private are not host addresses to publish.
    let global_unicast: Ipv6Net =
        Ipv6Net::new(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3).unwrap_or_default();
    if !global_unicast.contains(&a) {
        return true;
    }
    const NOT_GLOBAL: &[&str] = &["2001::/23", "2001:db8::/32", "3fff::/20"];
    NOT_GLOBAL
        .iter()
        .filter_map(|n| n.parse::<Ipv6Net>().ok())
        .any(|n| n.contains(&a))
}

/// Checks that `ip` can be published for `family`: global, not private, not CGNAT, not
/// Cloudflare's.
pub fn classify(ip: IpAddr, family: Family) -> Result<IpAddr, Rejection> {
    if !family.matches(ip) {
        return Err(Rejection::WrongFamily);
    }
    match ip {
        IpAddr::V4(a) => {
            if a.is_private() {
                return Err(Rejection::Private);
            }
            if "100.64.0.0/10"
                .parse::<Ipv4Net>()
                .is_ok_and(|n| n.contains(&a))
            {
                return Err(Rejection::Cgnat);
            }
            if v4_not_global(a) {
                return Err(Rejection::NotGlobal);
            }
        }
        IpAddr::V6(a) => {
            if a.to_ipv4_mapped().is_some() {
                return Err(Rejection::NotGlobal);
            }
            if (a.segments()[0] & 0xfe00) == 0xfc00 {
                return Err(Rejection::Private);
            }
            if v6_not_global(a) {
                return Err(Rejection::NotGlobal);
            }
        }
    }
    if in_any(ip, edge_config::fw::CLOUDFLARE_V4)
        || in_any(ip, edge_config::fw::CLOUDFLARE_V6)
        || in_any(ip, CLOUDFLARE_RESOLVER)
    {
        return Err(Rejection::Cloudflare);
    }
    Ok(ip)
}

/// One address of an interface with its kernel flags (`IFA_F_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfaceAddr {
    /// The address.
    pub ip: IpAddr,
    /// `IFA_F_*` flags (`IFA_F_SECONDARY` doubles as `IFA_F_TEMPORARY` for IPv6).
    pub flags: u32,
}

/// `IFA_F_SECONDARY`, which is `IFA_F_TEMPORARY` for IPv6.
pub const IFA_F_TEMPORARY: u32 = 0x01;
/// Duplicate address detection failed.
pub const IFA_F_DADFAILED: u32 = 0x08;
/// The preferred lifetime ran out.
pub const IFA_F_DEPRECATED: u32 = 0x20;
/// Duplicate address detection is still running.
pub const IFA_F_TENTATIVE: u32 = 0x40;

/// Picks the address of `family` to publish from an interface's addresses: IPv6 only stable
/// ones (not temporary, deprecated, tentative or DAD-failed), and only addresses that
/// [`classify`] accepts. Returns the first eligible address, or the reason the first
/// candidate of the family was refused.
pub fn pick_interface_address(
    addrs: &[IfaceAddr],
    family: Family,
) -> Result<IpAddr, Option<(IpAddr, Rejection)>> {
    let mut first_rejection = None;
    for a in addrs.iter().filter(|a| family.matches(a.ip)) {
        if a.ip.is_ipv6()
            && a.flags & (IFA_F_TEMPORARY | IFA_F_DEPRECATED | IFA_F_TENTATIVE | IFA_F_DADFAILED)
                != 0
        {
            continue;
        }
        match classify(a.ip, family) {
            Ok(ip) => return Ok(ip),
            Err(r) => {
                first_rejection.get_or_insert((a.ip, r));
            }
        }
    }
    Err(first_rejection)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classification_table() {
        let cases: &[(&str, Family, Result<(), Rejection>)] = &[
            ("81.2.69.160", Family::V4, Ok(())),
            ("2a01:4f8:1:2::10", Family::V6, Ok(())),
            ("10.1.2.3", Family::V4, Err(Rejection::Private)),
            ("192.168.1.10", Family::V4, Err(Rejection::Private)),
            ("172.16.0.1", Family::V4, Err(Rejection::Private)),
            ("100.64.0.1", Family::V4, Err(Rejection::Cgnat)),
            ("100.127.255.254", Family::V4, Err(Rejection::Cgnat)),
            ("127.0.0.1", Family::V4, Err(Rejection::NotGlobal)),
            ("169.254.3.4", Family::V4, Err(Rejection::NotGlobal)),
            ("192.0.2.1", Family::V4, Err(Rejection::NotGlobal)),
            ("198.18.0.2", Family::V4, Err(Rejection::NotGlobal)),
            ("224.0.0.1", Family::V4, Err(Rejection::NotGlobal)),
            ("255.255.255.255", Family::V4, Err(Rejection::NotGlobal)),
            ("104.18.3.4", Family::V4, Err(Rejection::Cloudflare)),
            ("1.1.1.1", Family::V4, Err(Rejection::Cloudflare)),
            ("2606:4700::1111", Family::V6, Err(Rejection::Cloudflare)),
            ("fd00::1", Family::V6, Err(Rejection::Private)),
            ("fe80::1", Family::V6, Err(Rejection::NotGlobal)),
            ("::1", Family::V6, Err(Rejection::NotGlobal)),
            ("2001:db8::1", Family::V6, Err(Rejection::NotGlobal)),
            ("::ffff:81.2.69.160", Family::V6, Err(Rejection::NotGlobal)),
            ("81.2.69.160", Family::V6, Err(Rejection::WrongFamily)),
            ("2a01:4f8::1", Family::V4, Err(Rejection::WrongFamily)),
            // 192.198.0.0/24 (the user's LAN) is public space, so it is accepted here.
            ("192.198.0.30", Family::V4, Ok(())),
        ];
        for (addr, fam, want) in cases {
            let got = classify(ip(addr), *fam).map(|_| ());
            assert_eq!(&got, want, "{addr} as {fam:?}");
        }
    }

    #[test]
    fn interface_addresses_skip_temporary_and_deprecated_v6() {
        let a = |s: &str, flags| IfaceAddr { ip: ip(s), flags };
        let addrs = [
            a("fe80::1", 0x80),
            a("2a01:4f8:1::aaaa", IFA_F_TEMPORARY),
            a("2a01:4f8:1::bbbb", IFA_F_DEPRECATED),
            a("2a01:4f8:1::cccc", IFA_F_TENTATIVE),
            a("2a01:4f8:1::10", 0x80),
            a("192.168.1.2", 0x80),
            a("81.2.69.160", 0x80),
        ];
        assert_eq!(
            pick_interface_address(&addrs, Family::V6),
            Ok(ip("2a01:4f8:1::10"))
        );
        assert_eq!(
            pick_interface_address(&addrs, Family::V4),
            Ok(ip("81.2.69.160"))
        );
        let lan = [a("192.168.1.2", 0x80)];
        assert_eq!(
            pick_interface_address(&lan, Family::V4),
            Err(Some((ip("192.168.1.2"), Rejection::Private)))
        );
        assert_eq!(pick_interface_address(&[], Family::V4), Err(None));
    }

    #[test]
    fn cgnat_message_says_ddns_cannot_work() {
        let m = Rejection::Cgnat.to_string();
        assert!(m.contains("behind CGNAT"), "{m}");
        assert!(m.contains("100.64.0.0/10"), "{m}");
    }

    #[test]
    fn record_keys_round_trip_and_ignore_case() {
        let k = RecordKey::new(RecordType::AAAA, "WWW.Example.com.");
        assert_eq!(k.to_string(), "AAAA www.example.com");
        let back = RecordKey::try_from(k.to_string()).unwrap();
        assert_eq!(back, k);
        assert!(RecordKey::try_from("MX example.com".to_owned()).is_err());
    }

    #[test]
    fn ownership_is_the_exact_comment() {
        let mut o = Observed {
            id: "a".into(),
            name: "example.com".into(),
            kind: "A".into(),
            content: "81.2.69.160".into(),
            proxied: true,
            ttl: 1,
            comment: Some("managed by edge".into()),
        };
        assert!(o.is_owned("managed by edge"));
        o.comment = Some("managed by edge, do not touch".into());
        assert!(!o.is_owned("managed by edge"));
        o.comment = None;
        assert!(!o.is_owned("managed by edge"));
        assert!(o.holds(ip("81.2.69.160")));
    }
}
