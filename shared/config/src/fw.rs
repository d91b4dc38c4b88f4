//! Pure: the `[fw]` section — zones, named networks, the input policy, masquerading and the
//! port-forwards that `edge-fw` compiles into the `inet edge` table.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use crate::decode::{At, Ctx, Decode, Node, Table};
use crate::source::Location;
use crate::types::{HttpUrl, InterfaceName, Ip, Network, PortRange, one_of};

/// Verdict of a chain policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Let packets through.
    Accept,
    /// Drop them silently.
    Drop,
}

/// Transport protocol of a port-forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
    /// TCP and UDP.
    Both,
}

impl Proto {
    /// True when the protocol includes TCP.
    pub fn has_tcp(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Both)
    }

    /// True when the protocol includes UDP.
    pub fn has_udp(self) -> bool {
        matches!(self, Proto::Udp | Proto::Both)
    }

    fn overlaps(self, other: Proto) -> bool {
        (self.has_tcp() && other.has_tcp()) || (self.has_udp() && other.has_udp())
    }
}

/// A set of source networks as written: a network name from `[fw.networks]` or a literal CIDR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceSet {
    /// The network name, or the CIDR as written.
    pub label: String,
    /// The networks it stands for.
    pub nets: Vec<IpNet>,
}

/// One rule admitting traffic to the host itself.
#[derive(Debug, Clone, Serialize)]
pub struct InputRule {
    /// Stable name (`ssh`, `wireguard`).
    pub name: String,
    /// `tcp` or `udp` (not both).
    pub proto: Proto,
    /// Destination port(s).
    pub port: PortRange,
    /// Allowed sources; `None` means from anywhere.
    pub from: Option<Vec<SourceSet>>,
    /// Limit to these input interfaces; empty means any.
    pub interfaces: Vec<InterfaceName>,
    /// Where it is declared.
    pub location: Location,
}

/// The input (to the host) policy.
#[derive(Debug, Clone, Serialize)]
pub struct Input {
    /// What happens to packets no rule accepts.
    pub policy: Policy,
    /// Accept essential ICMP/ICMPv6 (echo, errors). ICMPv6 neighbour discovery is accepted
    /// whatever this says: IPv6 cannot work without it.
    pub icmp: bool,
    /// Services the host offers.
    pub allow: Vec<InputRule>,
}

/// Policy for routed (forwarded) traffic that is not a port-forward.
#[derive(Debug, Clone, Serialize)]
pub struct Routed {
    /// Default verdict; `accept` keeps libvirt's bridged VM traffic working.
    pub policy: Policy,
}

/// Source NAT of traffic leaving through given interfaces.
#[derive(Debug, Clone, Serialize)]
pub struct Masquerade {
    /// Stable name.
    pub name: String,
    /// Outgoing interfaces.
    pub out: Vec<InterfaceName>,
    /// Source networks to masquerade; `None` means all.
    pub from: Option<Vec<SourceSet>>,
    /// Where it is declared.
    pub location: Location,
}

/// One port-forward (DNAT).
#[derive(Debug, Clone, Serialize)]
pub struct Forward {
    /// Stable name; also the named counter's name.
    pub name: String,
    /// Protocol(s).
    pub proto: Proto,
    /// External port or range.
    pub port: PortRange,
    /// Interfaces it arrives on (defaults to `fw.wan`).
    pub on: Vec<InterfaceName>,
    /// Destination address it arrives at (e.g. br-api's 192.198.0.30); `None`: any.
    pub address: Option<IpAddr>,
    /// Target address.
    pub to: IpAddr,
    /// Target port (start of the range); defaults to the external port.
    pub to_port: PortRange,
    /// Source allow-list; `None` means from anywhere.
    pub from: Option<Vec<SourceSet>>,
    /// Generate reflection so hosts on the inside can use the external address too.
    pub hairpin: bool,
    /// Admit only a proxy's published ranges (plus `from`) to this forward.
    pub origin_lock: Option<OriginLock>,
    /// Where `origin_lock` is written (for the cross-section checks).
    #[serde(skip)]
    pub origin_lock_span: Range<usize>,
    /// Where `port` is written (for the cross-section checks).
    #[serde(skip)]
    pub port_span: Range<usize>,
    /// Where it is declared.
    pub location: Location,
    /// Location of the `to` key (for the reachability warning).
    #[serde(skip)]
    pub to_span: Range<usize>,
}

/// The `[fw]` section.
#[derive(Debug, Clone, Serialize)]
pub struct Fw {
    /// Interfaces facing the internet (through the ISP router).
    pub wan: Vec<InterfaceName>,
    /// Interfaces of the VM networks.
    pub lan: Vec<InterfaceName>,
    /// WireGuard interfaces.
    pub vpn: Vec<InterfaceName>,
    /// Named networks referenced by `from` lists.
    pub networks: BTreeMap<String, Vec<IpNet>>,
    /// Input policy.
    pub input: Input,
    /// Routed-traffic policy.
    pub routed: Routed,
    /// Source NAT rules.
    pub masquerade: Vec<Masquerade>,
    /// Port-forwards.
    pub forwards: Vec<Forward>,
    /// Where the origin lock's ranges come from (`[fw.origin_lock]`).
    pub origin_lock: OriginLockSource,
}

/// Whose published ranges an origin lock admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OriginLock {
    /// Cloudflare's proxy ranges (`https://api.cloudflare.com/client/v4/ips`).
    Cloudflare,
}

/// Cloudflare's published IPv4 proxy ranges as this release ships them (`GET /ips`,
/// `ipv4_cidrs`): an origin lock starts from them, offline, until the first refresh.
pub const CLOUDFLARE_V4: &[&str] = &[
    "173.245.48.0/20",
    "103.21.244.0/22",
    "103.22.200.0/22",
    "103.31.4.0/22",
    "141.101.64.0/18",
    "108.162.192.0/18",
    "190.93.240.0/20",
    "188.114.96.0/20",
    "197.234.240.0/22",
    "198.41.128.0/17",
    "162.158.0.0/15",
    "104.16.0.0/13",
    "104.24.0.0/14",
    "172.64.0.0/13",
    "131.0.72.0/22",
];

/// Cloudflare's published IPv6 proxy ranges as this release ships them (`ipv6_cidrs`).
pub const CLOUDFLARE_V6: &[&str] = &[
    "2400:cb00::/32",
    "2606:4700::/32",
    "2803:f800::/32",
    "2405:b500::/32",
    "2405:8100::/32",
    "2a06:98c0::/29",
    "2c0f:f248::/32",
];

/// The default of `[fw.origin_lock] url`: Cloudflare's list of its ranges (no token).
pub const CLOUDFLARE_IPS_URL: &str = "https://api.cloudflare.com/client/v4/ips";
/// The default of `[fw.origin_lock] refresh`.
pub const ORIGIN_LOCK_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// The shortest `[fw.origin_lock] refresh` accepted (Cloudflare changes its ranges rarely).
pub const ORIGIN_LOCK_REFRESH_MIN: Duration = Duration::from_secs(3600);

/// `[fw.origin_lock]`: where edge-fw refreshes the ranges it ships with.
#[derive(Debug, Clone, Serialize)]
pub struct OriginLockSource {
    /// The list's URL (Cloudflare's `GET /ips`).
    pub url: HttpUrl,
    /// How often the list is fetched (at most daily by default).
    pub refresh: Duration,
    /// A CA file to trust besides the system's (tests with a local server).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Fw {
    /// True when an input rule accepts `proto`/`port` from anywhere on a WAN interface, or
    /// the input policy accepts everything.
    pub fn input_admits_from_anywhere(&self, udp: bool, port: u16) -> bool {
        if self.input.policy == Policy::Accept {
            return true;
        }
        self.input.allow.iter().any(|r| {
            let proto_ok = if udp {
                r.proto.has_udp()
            } else {
                r.proto.has_tcp()
            };
            let Some(p) = crate::types::Port::new(port) else {
                return false;
            };
            let iface_ok =
                r.interfaces.is_empty() || self.wan.iter().all(|w| r.interfaces.contains(w));
            proto_ok && r.port.contains(p) && r.from.is_none() && iface_ok
        })
    }
}

fn policy(ctx: &mut Ctx<'_>, n: Node<'_, '_>) -> Option<Policy> {
    one_of(
        ctx,
        n,
        &[("accept", Policy::Accept), ("drop", Policy::Drop)],
    )
}

fn proto(ctx: &mut Ctx<'_>, n: Node<'_, '_>, allow_both: bool) -> Option<Proto> {
    if allow_both {
        one_of(
            ctx,
            n,
            &[
                ("tcp", Proto::Tcp),
                ("udp", Proto::Udp),
                ("both", Proto::Both),
            ],
        )
    } else {
        one_of(ctx, n, &[("tcp", Proto::Tcp), ("udp", Proto::Udp)])
    }
}

/// A raw `from` entry: a network name or a CIDR, with its span.
struct RawSource(At<String>);

impl Decode for RawSource {
    fn decode(ctx: &mut Ctx<'_>, node: Node<'_, '_>) -> Option<Self> {
        At::<String>::decode(ctx, node).map(RawSource)
    }
}

fn resolve_sources(
    ctx: &mut Ctx<'_>,
    raw: Option<Vec<RawSource>>,
    networks: &BTreeMap<String, Vec<IpNet>>,
    key: &str,
) -> Option<Vec<SourceSet>> {
    let raw = raw?;
    let mut out = Vec::new();
    for RawSource(s) in raw {
        let v = s.value.as_str();
        if v == "any" {
            return None;
        }
        if let Some(nets) = networks.get(v) {
            out.push(SourceSet {
                label: v.to_owned(),
                nets: nets.clone(),
            });
        } else if v.contains('/') || v.parse::<IpAddr>().is_ok() {
            match Network::parse(v) {
                Ok(n) => out.push(SourceSet {
                    label: v.to_owned(),
                    nets: vec![n.0],
                }),
                Err(inv) => {
                    let d = ctx.error(s.span.clone(), key, inv.message);
                    if let Some(h) = inv.hint {
                        d.hint(h);
                    }
                }
            }
        } else {
            let names: Vec<&str> = networks.keys().map(String::as_str).collect();
            let d = ctx.error(
                s.span.clone(),
                key,
                format!("`{v}` is neither a network name from [fw.networks] nor a CIDR"),
            );
            match crate::decode::closest(v, &names) {
                Some(b) => d.hint(format!("did you mean \"{b}\"?")),
                None => d.hint(format!(
                    "define it under [fw.networks] (known: {}), or write a CIDR such as 10.17.9.0/24, or \"any\"",
                    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                )),
            };
        }
    }
    Some(out)
}

fn name_of(ctx: &mut Ctx<'_>, t: &mut Table<'_, '_>) -> Option<At<String>> {
    let n: Option<At<String>> = t.req(ctx, "name");
    if let Some(n) = &n
        && (n.value.is_empty()
            || !n
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        ctx.error(
            n.span.clone(),
            &format!("{}.name", t.path()),
            format!(
                "name `{}` must be non-empty and use only letters, digits, `-` and `_`",
                n.value
            ),
        )
        .hint("names become nftables counter names and metric labels");
        return None;
    }
    n
}

/// Decodes `[fw]`; `protected` are `link.protected` (no zone may name them).
pub(crate) fn decode(
    ctx: &mut Ctx<'_>,
    mut t: Table<'_, '_>,
    protected: &[InterfaceName],
) -> Option<Fw> {
    let wan = decode_zone(ctx, &mut t, "wan", protected);
    let lan = decode_zone(ctx, &mut t, "lan", protected);
    let vpn = decode_zone(ctx, &mut t, "vpn", protected);
    let networks = t
        .sub(ctx, "networks", decode_networks)
        .flatten()
        .unwrap_or_default();
    let input = t
        .sub(ctx, "input", |ctx, i| decode_input(ctx, i, &networks))
        .flatten()
        .unwrap_or(Input {
            policy: Policy::Drop,
            icmp: true,
            allow: Vec::new(),
        });
    let routed = t
        .sub(ctx, "routed", |ctx, mut r| {
            let policy = r.with(ctx, "policy", policy).unwrap_or(Policy::Accept);
            r.finish(ctx);
            Some(Routed { policy })
        })
        .flatten()
        .unwrap_or(Routed {
            policy: Policy::Accept,
        });
    let masquerade = t.list(ctx, "masquerade", |ctx, m| {
        decode_masquerade(ctx, m, &networks)
    });
    let raw_forwards = t.list(ctx, "forward", |ctx, f| {
        decode_forward(ctx, f, &networks, &wan)
    });
    let origin_lock = t
        .sub(ctx, "origin_lock", decode_origin_lock_source)
        .flatten()
        .or_else(|| {
            Some(OriginLockSource {
                url: HttpUrl::parse(CLOUDFLARE_IPS_URL).ok()?,
                refresh: ORIGIN_LOCK_REFRESH,
                ca_file: None,
            })
        })?;
    t.finish(ctx);
    check_forwards(ctx, &raw_forwards);
    Some(Fw {
        wan,
        lan,
        vpn,
        networks,
        input,
        routed,
        masquerade,
        forwards: raw_forwards.into_iter().map(|r| r.fwd).collect(),
        origin_lock,
    })
}

/// A zone (`wan`, `lan`, `vpn`): interfaces, none of them protected.
fn decode_zone(
    ctx: &mut Ctx<'_>,
    t: &mut Table<'_, '_>,
    key: &'static str,
    protected: &[InterfaceName],
) -> Vec<InterfaceName> {
    let v: Vec<At<InterfaceName>> = t.or(ctx, key, Vec::new());
    for i in &v {
        if protected.contains(&i.value) {
            ctx.error(
                i.span.clone(),
                &format!("fw.{key}"),
                format!(
                    "`fw.{key}` names protected interface `{}`; the suite never touches it",
                    i.value
                ),
            )
            .hint("remove it from the zone, or from `link.protected`");
        }
    }
    v.into_iter().map(|i| i.value).collect()
}

/// `[fw.networks]`: named lists of networks.
fn decode_networks(ctx: &mut Ctx<'_>, n: Table<'_, '_>) -> Option<BTreeMap<String, Vec<IpNet>>> {
    let mut out = BTreeMap::new();
    for (name, key_span, v) in n.entries() {
        let path = format!("fw.networks.{name}");
        if name == "any" {
            ctx.error(key_span, &path, "`any` is reserved: it means every source");
            continue;
        }
        // Keep the name even when an element is invalid (the error is recorded), so
        // that references to it do not cascade into more errors.
        let nets = match v.get_ref() {
            toml::de::DeValue::Array(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    Network::decode(ctx, Node::new(item, &format!("{path}[{i}]")))
                })
                .map(|n| n.0)
                .collect(),
            _ => {
                let _: Option<()> = Node::new(v, &path).type_error(ctx, "an array of networks");
                Vec::new()
            }
        };
        out.insert(name, nets);
    }
    n.finish_open();
    Some(out)
}

/// `[fw.input]`: the policy, ICMP, and the allow rules (a drop policy needs at least one).
fn decode_input(
    ctx: &mut Ctx<'_>,
    mut i: Table<'_, '_>,
    networks: &BTreeMap<String, Vec<IpNet>>,
) -> Option<Input> {
    let input_span = i.span();
    let policy = i.with(ctx, "policy", policy).unwrap_or(Policy::Drop);
    let icmp = i.or(ctx, "icmp", true);
    let allow = i.list(ctx, "allow", |ctx, mut r| {
        let name = name_of(ctx, &mut r);
        let proto = r.with(ctx, "proto", |c, n| proto(c, n, true));
        let port: Option<PortRange> = r.req(ctx, "port");
        let from_raw: Option<Vec<RawSource>> = r.opt(ctx, "from");
        let interfaces = r.or(ctx, "interfaces", Vec::new());
        let location = ctx.location(&r.span());
        let key = format!("{}.from", r.path());
        let from = resolve_sources(ctx, from_raw, networks, &key);
        r.finish(ctx);
        Some(InputRule {
            name: name?.value,
            proto: proto.unwrap_or(Proto::Tcp),
            port: port?,
            from,
            interfaces,
            location,
        })
    });
    i.finish(ctx);
    if policy == Policy::Drop && allow.is_empty() {
        ctx.error(
            input_span,
            "fw.input",
            "[fw.input] drops everything and allows nothing: this would lock you out of the host",
        )
        .hint("add [[fw.input.allow]] rules for SSH (from the admin network) and WireGuard");
    }
    Some(Input {
        policy,
        icmp,
        allow,
    })
}

/// One `[[fw.masquerade]]`.
fn decode_masquerade(
    ctx: &mut Ctx<'_>,
    mut m: Table<'_, '_>,
    networks: &BTreeMap<String, Vec<IpNet>>,
) -> Option<Masquerade> {
    let name = name_of(ctx, &mut m);
    let out: Option<Vec<InterfaceName>> = m.req(ctx, "out");
    let from_raw: Option<Vec<RawSource>> = m.opt(ctx, "from");
    let key = format!("{}.from", m.path());
    let from = resolve_sources(ctx, from_raw, networks, &key);
    let location = ctx.location(&m.span());
    m.finish(ctx);
    Some(Masquerade {
        name: name?.value,
        out: out?,
        from,
        location,
    })
}

/// A forward as decoded, with the spans the checks across forwards point at.
struct RawFwd {
    fwd: Forward,
    name_span: Range<usize>,
    port_span: Range<usize>,
}

/// One `[[fw.forward]]` with the checks of its own fields (target port range, address
/// family, an allow-list that could admit nobody); `wan` is the default of `on`.
fn decode_forward(
    ctx: &mut Ctx<'_>,
    mut f: Table<'_, '_>,
    networks: &BTreeMap<String, Vec<IpNet>>,
    wan: &[InterfaceName],
) -> Option<RawFwd> {
    let name = name_of(ctx, &mut f);
    let proto = f.with(ctx, "proto", |c, n| proto(c, n, true));
    let port: Option<At<PortRange>> = f.req(ctx, "port");
    let on: Option<Vec<InterfaceName>> = f.opt(ctx, "on");
    let address: Option<Ip> = f.opt(ctx, "address");
    let to: Option<At<Ip>> = f.req(ctx, "to");
    let to_port: Option<At<PortRange>> = f.opt(ctx, "to_port");
    let from_raw: Option<At<Vec<RawSource>>> = f.opt(ctx, "from");
    let hairpin = f.or(ctx, "hairpin", false);
    let lock_path = format!("{}.origin_lock", f.path());
    let lock: Option<At<String>> = f.opt(ctx, "origin_lock");
    let (origin_lock, origin_lock_span) = match lock {
        None => (None, 0..0),
        Some(l) if l.value == "cloudflare" => (Some(OriginLock::Cloudflare), l.span),
        Some(l) => {
            ctx.error(
                l.span.clone(),
                &lock_path,
                format!("unknown origin_lock `{}`", l.value),
            )
            .hint("the one known lock is \"cloudflare\" (Cloudflare's proxy ranges)");
            (None, l.span)
        }
    };
    let key = format!("{}.from", f.path());
    let from_at = from_raw.as_ref().map(|r| (r.span.clone(), r.value.len()));
    let from = resolve_sources(ctx, from_raw.map(|r| r.value), networks, &key);
    let location = ctx.location(&f.span());
    let path = f.path().to_owned();
    f.finish(ctx);
    let (name, port, to) = (name?, port?, to?);
    let to_port_v = target_ports(ctx, &path, &port, to_port.as_ref())?;
    if let Some(a) = address
        && a.0.is_ipv4() != to.value.0.is_ipv4()
    {
        ctx.error(
            to.span.clone(),
            &format!("{path}.to"),
            format!(
                "target {} is not of the same IP family as address {}",
                to.value.0, a.0
            ),
        );
        return None;
    }
    if let (Some(sets), Some((span, written))) = (&from, from_at) {
        check_from_family(ctx, &path, &name.value, to.value.0, sets, span, written)?;
    }
    Some(RawFwd {
        name_span: name.span.clone(),
        port_span: port.span.clone(),
        fwd: Forward {
            name: name.value,
            proto: proto.unwrap_or(Proto::Tcp),
            port: port.value,
            on: on.unwrap_or_else(|| wan.to_vec()),
            address: address.map(|a| a.0),
            to: to.value.0,
            to_port: to_port_v,
            from,
            hairpin,
            origin_lock,
            origin_lock_span,
            port_span: port.span.clone(),
            location,
            to_span: to.span,
        },
    })
}

/// The target ports of a forward: `to_port` as written, one port shifted into a range as
/// long as `port`, or `port` itself; within 65535.
fn target_ports(
    ctx: &mut Ctx<'_>,
    path: &str,
    port: &At<PortRange>,
    to_port: Option<&At<PortRange>>,
) -> Option<PortRange> {
    let to_port_v = match to_port {
        None => port.value,
        Some(tp) if tp.value.len() == 1 => PortRange {
            start: tp.value.start,
            end: crate::types::Port::new(
                u16::try_from(u32::from(tp.value.start.get()) + port.value.len() - 1)
                    .unwrap_or(u16::MAX),
            )?,
        },
        Some(tp) if tp.value.len() == port.value.len() => tp.value,
        Some(tp) => {
            ctx.error(
                tp.span.clone(),
                &format!("{path}.to_port"),
                format!(
                    "to_port {} has {} ports but port {} has {}",
                    tp.value,
                    tp.value.len(),
                    port.value,
                    port.value.len()
                ),
            )
            .hint("give one target port (the range is shifted) or a range of the same length");
            return None;
        }
    };
    if u32::from(to_port_v.start.get()) + port.value.len() - 1 > 65535 {
        ctx.error(
            port.span.clone(),
            &format!("{path}.to_port"),
            "the target port range runs past 65535",
        );
        return None;
    }
    Some(to_port_v)
}

/// None (with the error) when a forward's allow-list holds no network of its target's
/// family.
fn check_from_family(
    ctx: &mut Ctx<'_>,
    path: &str,
    name: &str,
    to: IpAddr,
    sets: &[SourceSet],
    span: Range<usize>,
    written: usize,
) -> Option<()> {
    // A forward DNATs packets of its target's family only: an allow-list without a
    // network of that family lets nobody through (its other entries would be dead rules).
    if sets.len() == written
        && !sets.is_empty()
        && !sets
            .iter()
            .flat_map(|s| &s.nets)
            .any(|n| n.addr().is_ipv4() == to.is_ipv4())
    {
        let (fam, other) = if to.is_ipv4() {
            ("IPv4", "IPv6")
        } else {
            ("IPv6", "IPv4")
        };
        ctx.error(
            span,
            &format!("{path}.from"),
            format!(
                "forward `{}` targets {fam} address {} but `from` holds only {other} networks: nobody could reach it",
                name, to
            ),
        )
        .hint(format!(
            "add an {fam} network to the list (or to the [fw.networks] entry it names), or write one forward per family"
        ));
        return None;
    }
    Some(())
}

/// `[fw.origin_lock]`: where the ranges come from and how often.
fn decode_origin_lock_source(ctx: &mut Ctx<'_>, mut o: Table<'_, '_>) -> Option<OriginLockSource> {
    let url: Option<HttpUrl> = o.opt(ctx, "url");
    let refresh_node = o.raw("refresh").map(|(v, k)| (v.span(), k));
    let refresh = o
        .or(ctx, "refresh", crate::types::Dur(ORIGIN_LOCK_REFRESH))
        .0;
    if let Some((span, key)) = refresh_node
        && refresh < ORIGIN_LOCK_REFRESH_MIN
    {
        ctx.error(
            span,
            &key,
            format!(
                "refresh = {}s is too short: Cloudflare changes its ranges rarely",
                refresh.as_secs()
            ),
        )
        .hint("use at least \"1h\" (the default is \"24h\"); `edgectl fw origin-lock refresh` fetches at once");
    }
    let ca_file: Option<String> = o.opt(ctx, "ca_file");
    o.finish(ctx);
    Some(OriginLockSource {
        url: url.or_else(|| HttpUrl::parse(CLOUDFLARE_IPS_URL).ok())?,
        refresh,
        ca_file: ca_file.map(std::path::PathBuf::from),
    })
}

/// The checks across forwards: unique names, no two claiming the same packets, an interface
/// for each.
fn check_forwards(ctx: &mut Ctx<'_>, raw_forwards: &[RawFwd]) {
    let mut names: HashSet<String> = HashSet::new();
    for r in raw_forwards {
        if !names.insert(r.fwd.name.clone()) {
            ctx.error(
                r.name_span.clone(),
                "fw.forward.name",
                format!("forward name `{}` is used twice", r.fwd.name),
            )
            .hint("names identify counters and metrics: make them unique");
        }
    }
    for (i, a) in raw_forwards.iter().enumerate() {
        for b in &raw_forwards[..i] {
            // Without an address a forward takes every address of its target's family on
            // its interfaces, so forwards of different families never claim the same packet.
            let same_dest = match (a.fwd.address, b.fwd.address) {
                (Some(x), Some(y)) => x == y,
                _ => a.fwd.to.is_ipv4() == b.fwd.to.is_ipv4(),
            };
            let same_iface = a.fwd.on.iter().any(|x| b.fwd.on.contains(x));
            if same_dest
                && same_iface
                && a.fwd.proto.overlaps(b.fwd.proto)
                && a.fwd.port.overlaps(&b.fwd.port)
            {
                ctx.error(
                    a.port_span.clone(),
                    "fw.forward.port",
                    format!(
                        "forward `{}` ({}) overlaps forward `{}` ({}) on the same protocol and address",
                        a.fwd.name, a.fwd.port, b.fwd.name, b.fwd.port
                    ),
                )
                .hint("a packet can be forwarded to one target only: change the port or the address");
            }
        }
        if a.fwd.on.is_empty() {
            ctx.error(
                a.name_span.clone(),
                "fw.forward.on",
                format!(
                    "forward `{}` arrives on no interface: set `on` or `fw.wan`",
                    a.fwd.name
                ),
            );
        }
    }
}
