//! Pure: the `[ddns]` section — Cloudflare API access, the records to keep in sync, the
//! public-IP detection sources and their quorum, and when to run.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr as _;
use std::time::Duration;

use serde::Serialize;

use crate::decode::{At, Ctx, Node, Table, integer_in};
use crate::secret::SecretSource;
use crate::source::Location;
use crate::types::{DnsName, Dur, HttpUrl, InterfaceName, Ip, one_of};

/// DNS record type managed by the updater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
pub enum RecordType {
    /// IPv4 address record.
    A,
    /// IPv6 address record.
    #[allow(clippy::upper_case_acronyms)]
    AAAA,
}

impl RecordType {
    /// The record type as Cloudflare names it.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::AAAA => "AAAA",
        }
    }

    /// The address family the record holds.
    pub fn family(self) -> Family {
        match self {
            RecordType::A => Family::V4,
            RecordType::AAAA => Family::V6,
        }
    }
}

/// IP address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// True when `ip` belongs to this family.
    pub fn matches(self, ip: IpAddr) -> bool {
        matches!(
            (self, ip),
            (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_))
        )
    }
}

/// One DNS record kept in sync.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Fully qualified name (`example.com`).
    pub name: DnsName,
    /// A or AAAA.
    pub kind: RecordType,
    /// Proxied through Cloudflare.
    pub proxied: bool,
    /// TTL in seconds; 1 means automatic.
    pub ttl: u32,
    /// Take over an existing record that lacks our ownership comment.
    pub adopt: bool,
    /// Where it is declared.
    pub location: Location,
}

/// How a detection source finds the public address.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SourceKind {
    /// An HTTPS endpoint answering with the caller's address as plain text (ipify style).
    Http {
        /// The URL.
        url: HttpUrl,
    },
    /// Cloudflare's `/cdn-cgi/trace` (`ip=` line; `warp=on` is rejected).
    CloudflareTrace {
        /// The URL.
        url: HttpUrl,
    },
    /// A DNS query answered with the caller's address.
    Dns {
        /// DNS server address (`1.1.1.1:53`) or DoH URL.
        server: String,
        /// Name to query (`whoami.cloudflare`, `myip.opendns.com`).
        query: DnsName,
        /// Record type to ask for: `TXT`, `A` or `AAAA`.
        qtype: String,
        /// Query class: `IN` or `CH`.
        class: String,
        /// Transport: `udp`, `tls` or `https`.
        transport: String,
    },
    /// The address of a local interface (read over rtnetlink).
    Interface {
        /// The interface.
        interface: InterfaceName,
    },
    /// A fixed address.
    Static {
        /// The address.
        address: IpAddr,
    },
}

/// One detection source.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// Name used in logs and metrics.
    pub name: String,
    /// Families it is asked for; both when not restricted.
    pub families: Vec<Family>,
    /// How it detects.
    #[serde(flatten)]
    pub kind: SourceKind,
    /// Where it is declared.
    pub location: Location,
}

/// The `[ddns]` section.
#[derive(Debug, Clone, Serialize)]
pub struct Ddns {
    /// The Cloudflare API token.
    pub token: SecretSource,
    /// Cloudflare API base URL.
    pub api_url: HttpUrl,
    /// Extra CA certificate (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Zone id; discovered from the record names when absent.
    pub zone_id: Option<String>,
    /// Cron expression with seconds (`0 * * * * *`).
    pub schedule: String,
    /// Comment marking records as ours.
    pub owner_comment: String,
    /// Sources that must agree before an address is accepted.
    pub quorum: u8,
    /// WAN interface whose address events trigger a sync.
    pub wan_interface: Option<InterfaceName>,
    /// Quiet time after an interface event before syncing.
    pub debounce: Duration,
    /// How often a converged record is re-read from the API.
    pub verify_interval: Duration,
    /// Timeout of one detection or API request.
    pub timeout: Duration,
    /// Records kept in sync.
    pub records: Vec<Record>,
    /// Detection sources.
    pub sources: Vec<Source>,
}

impl Ddns {
    /// Families needed by the configured records.
    pub fn families(&self) -> Vec<Family> {
        let mut f: Vec<Family> = self.records.iter().map(|r| r.kind.family()).collect();
        f.sort();
        f.dedup();
        f
    }
}

/// Normalises a 5-field cron expression to the 6-field (with seconds) form.
pub fn normalise_cron(s: &str) -> String {
    let fields = s.split_whitespace().count();
    if fields == 5 && !s.trim_start().starts_with('@') {
        format!("0 {}", s.trim())
    } else {
        s.trim().to_owned()
    }
}

/// A DoH source needs an https URL; UDP and TLS sources an IP address with an optional port;
/// the CHAOS class (Cloudflare's whoami) is only available over UDP and DoH.
fn check_dns_server(ctx: &mut Ctx<'_>, server: &At<String>, transport: &str, class: &str) {
    let key = "ddns.source.server";
    let s = server.value.as_str();
    if transport == "https" {
        if !s.starts_with("https://") || HttpUrl::parse(s).is_err() {
            ctx.error(
                server.span.clone(),
                key,
                format!("`{s}` is not an https URL, which DNS-over-HTTPS needs"),
            )
            .hint("e.g. server = \"https://cloudflare-dns.com/dns-query\"");
        }
        return;
    }
    let ip_ok = s.parse::<std::net::SocketAddr>().is_ok()
        || s.trim_matches(['[', ']']).parse::<IpAddr>().is_ok();
    if !ip_ok {
        ctx.error(
            server.span.clone(),
            key,
            format!("`{s}` is not an IP address (with an optional port), which transport \"{transport}\" needs"),
        )
        .hint("e.g. server = \"1.1.1.1:53\", or transport = \"https\" with a DoH URL");
    }
    if transport == "tls" && class == "CH" {
        ctx.error(
            server.span.clone(),
            key,
            "class CH queries are not supported over DNS-over-TLS",
        )
        .hint("use transport = \"https\" (DoH) for whoami.cloudflare");
    }
}

fn source_kind(ctx: &mut Ctx<'_>, t: &mut Table<'_, '_>, kind: &str) -> Option<SourceKind> {
    match kind {
        "http" => Some(SourceKind::Http {
            url: t.req(ctx, "url")?,
        }),
        "cloudflare-trace" => Some(SourceKind::CloudflareTrace {
            url: t.req(ctx, "url")?,
        }),
        "dns" => {
            let server: Option<At<String>> = t.req(ctx, "server");
            let query: Option<DnsName> = t.req(ctx, "query");
            let qtype = t
                .with(ctx, "type", |c, n| {
                    one_of(c, n, &[("TXT", "TXT"), ("A", "A"), ("AAAA", "AAAA")])
                })
                .unwrap_or("A");
            let class = t
                .with(ctx, "class", |c, n| {
                    one_of(c, n, &[("IN", "IN"), ("CH", "CH")])
                })
                .unwrap_or("IN");
            let transport = t
                .with(ctx, "transport", |c, n| {
                    one_of(c, n, &[("udp", "udp"), ("tls", "tls"), ("https", "https")])
                })
                .unwrap_or("udp");
            let server = server?;
            check_dns_server(ctx, &server, transport, class);
            Some(SourceKind::Dns {
                server: server.value,
                query: query?,
                qtype: qtype.to_owned(),
                class: class.to_owned(),
                transport: transport.to_owned(),
            })
        }
        "interface" => Some(SourceKind::Interface {
            interface: t.req(ctx, "interface")?,
        }),
        "static" => {
            let a: Ip = t.req(ctx, "address")?;
            Some(SourceKind::Static { address: a.0 })
        }
        _ => None,
    }
}

/// Decodes `[ddns]`.
pub(crate) fn decode(ctx: &mut Ctx<'_>, mut t: Table<'_, '_>) -> Option<Ddns> {
    let section_span = t.span();
    let token: Option<SecretSource> = t.req(ctx, "token");
    let api_url: HttpUrl = t
        .with(ctx, "api_url", decode_api_url)
        .or_else(|| HttpUrl::parse(DEFAULT_API_URL).ok())?;
    let ca_file: Option<String> = t.opt(ctx, "ca_file");
    let zone_id: Option<At<String>> = t.opt(ctx, "zone_id");
    if let Some(z) = &zone_id
        && (z.value.len() != 32 || !z.value.chars().all(|c| c.is_ascii_hexdigit()))
    {
        ctx.error(z.span.clone(), "ddns.zone_id", format!("`{}` is not a Cloudflare zone id", z.value))
            .hint("a zone id is 32 hex characters (dashboard → zone → Overview → API), or leave it out to discover it");
    }
    let schedule = t
        .with(ctx, "schedule", decode_schedule)
        .unwrap_or_else(|| DEFAULT_SCHEDULE.to_owned());
    let owner_comment: At<String> = t.opt(ctx, "owner_comment").unwrap_or(At {
        value: DEFAULT_OWNER_COMMENT.to_owned(),
        span: t.span(),
        location: Location::default(),
    });
    if owner_comment.value.trim().is_empty() || owner_comment.value.contains(['\n', '\r']) {
        ctx.error(
            owner_comment.span.clone(),
            "ddns.owner_comment",
            "the ownership comment must be non-empty and on one line",
        );
    }
    let quorum_node = t.raw("quorum").map(|(v, k)| (v.span(), k));
    let quorum = t
        .with(ctx, "quorum", |ctx, n| {
            integer_in(ctx, &n, 1, 16).map(|v| v as u8)
        })
        .unwrap_or(DEFAULT_QUORUM);
    let wan_interface = t.opt(ctx, "wan_interface");
    let debounce = t.or(ctx, "debounce", Dur(DEFAULT_DEBOUNCE)).0;
    let verify_node = t.raw("verify_interval").map(|(v, k)| (v.span(), k));
    let verify_interval = t.or(ctx, "verify_interval", Dur(DEFAULT_VERIFY_INTERVAL)).0;
    if let Some((span, key)) = verify_node
        && verify_interval < Duration::from_secs(60)
    {
        ctx.error(
            span,
            &key,
            format!(
                "verify_interval = {}s is too short: it must be at least 1 minute",
                verify_interval.as_secs()
            ),
        )
        .hint("each verification is one API read per record; the default \"1h\" keeps a converged record at 24 reads a day");
    }
    let timeout = t.or(ctx, "timeout", Dur(DEFAULT_TIMEOUT)).0;
    let raw_records = t.list(ctx, "record", decode_record);
    let sources = t.list(ctx, "source", decode_source);
    t.finish(ctx);

    check_unique(ctx, &raw_records, &sources);
    let sources: Vec<Source> = sources.into_iter().map(|(s, _)| s).collect();
    let records: Vec<Record> = raw_records.into_iter().map(|r| r.rec).collect();
    let quorum_at = quorum_node.unwrap_or((section_span, "ddns.quorum".to_owned()));
    check_quorum(ctx, quorum, &quorum_at, &records, &sources);

    Some(Ddns {
        token: token?,
        api_url,
        ca_file: ca_file.map(PathBuf::from),
        zone_id: zone_id.map(|z| z.value),
        schedule,
        owner_comment: owner_comment.value,
        quorum,
        wan_interface,
        debounce,
        verify_interval,
        timeout,
        records,
        sources,
    })
}

/// `api_url`: Cloudflare's API.
pub const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";
/// `schedule`: every minute, at second 0.
pub const DEFAULT_SCHEDULE: &str = "0 * * * * *";
/// `owner_comment`: the comment that marks a record as edge's.
pub const DEFAULT_OWNER_COMMENT: &str = "managed by edge";
/// `quorum`: sources that must agree before a record changes.
pub const DEFAULT_QUORUM: u8 = 2;
/// `debounce`: quiet time after a WAN address event.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(2);
/// `verify_interval`: how long a record the API confirmed is not read again.
pub const DEFAULT_VERIFY_INTERVAL: Duration = Duration::from_secs(3600);
/// `timeout`: one API request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// `ddns.record.ttl`: 1, Cloudflare's "automatic".
pub const DEFAULT_TTL: u32 = 1;
/// The source kinds `[[ddns.source]] kind` takes.
const SOURCE_KINDS: [&str; 5] = ["http", "cloudflare-trace", "dns", "interface", "static"];

/// `api_url`: HTTPS (plain HTTP only to a loopback address, for tests).
fn decode_api_url(ctx: &mut Ctx<'_>, n: Node<'_, '_>) -> Option<HttpUrl> {
    let u: HttpUrl = crate::decode::Decode::decode(ctx, n.clone())?;
    if !u.is_secure_or_loopback() {
        n.error(
            ctx,
            format!("`{u}` would send the API token over plain HTTP"),
        )
        .hint("use https:// (plain http is accepted only to a loopback address, for tests)");
        return None;
    }
    Some(u)
}

/// `schedule`: a cron expression (5 fields, or 6 with seconds).
fn decode_schedule(ctx: &mut Ctx<'_>, n: Node<'_, '_>) -> Option<String> {
    let s = n.str(ctx, "a cron expression")?;
    let norm = normalise_cron(s);
    match cron::Schedule::from_str(&norm) {
        Ok(_) => Some(norm),
        Err(e) => {
            n.error(ctx, format!("`{s}` is not a valid cron expression: {e}"))
                .hint("e.g. \"* * * * *\" (every minute) or \"0 */5 * * * *\" (with seconds)");
            None
        }
    }
}

/// A record as decoded, with the span of its name for the duplicate check.
struct RawRecord {
    rec: Record,
    name_span: std::ops::Range<usize>,
}

/// One `[[ddns.record]]`.
fn decode_record(ctx: &mut Ctx<'_>, mut r: Table<'_, '_>) -> Option<RawRecord> {
    let name: Option<At<DnsName>> = r.req(ctx, "name");
    let kind = r
        .with(ctx, "type", |c, n| {
            one_of(c, n, &[("A", RecordType::A), ("AAAA", RecordType::AAAA)])
        })
        .unwrap_or(RecordType::A);
    let proxied = r.or(ctx, "proxied", false);
    let ttl_node = r.raw("ttl").map(|(v, k)| (v.span(), k));
    let ttl = r
        .with(ctx, "ttl", |ctx, n| {
            integer_in(ctx, &n, 1, 86400).map(|v| v as u32)
        })
        .unwrap_or(DEFAULT_TTL);
    if let Some((span, key)) = &ttl_node {
        if ttl != DEFAULT_TTL && ttl < 30 {
            ctx.error(span.clone(), key, format!("ttl = {ttl} is invalid: Cloudflare accepts 1 (automatic) or 60 to 86400 (30 on Enterprise)"));
        } else if proxied && ttl != 1 {
            ctx.warn(span.clone(), key, format!("ttl = {ttl} is ignored: Cloudflare serves proxied records with an automatic TTL"))
                .hint("remove `ttl` or set it to 1 (automatic) for proxied records");
        }
    }
    let adopt = r.or(ctx, "adopt", false);
    let location = ctx.location(&r.span());
    r.finish(ctx);
    let name = name?;
    Some(RawRecord {
        name_span: name.span.clone(),
        rec: Record {
            name: name.value,
            kind,
            proxied,
            ttl,
            adopt,
            location,
        },
    })
}

/// One `[[ddns.source]]`, with the span of its name.
fn decode_source(
    ctx: &mut Ctx<'_>,
    mut s: Table<'_, '_>,
) -> Option<(Source, std::ops::Range<usize>)> {
    let name: Option<At<String>> = s.req(ctx, "name");
    let kind_at: Option<At<String>> = s.req(ctx, "kind");
    let families = match s.with(ctx, "family", |c, n| {
        one_of(c, n, &[("ipv4", 4u8), ("ipv6", 6u8), ("both", 0u8)])
    }) {
        Some(4) => vec![Family::V4],
        Some(6) => vec![Family::V6],
        _ => vec![Family::V4, Family::V6],
    };
    let location = ctx.location(&s.span());
    let kind = match &kind_at {
        Some(k) if SOURCE_KINDS.contains(&k.value.as_str()) => source_kind(ctx, &mut s, &k.value),
        Some(k) => {
            let d = ctx.error(
                k.span.clone(),
                "ddns.source.kind",
                format!("unknown source kind `{}`", k.value),
            );
            match crate::decode::closest(&k.value, &SOURCE_KINDS) {
                Some(b) => d.hint(format!("did you mean \"{b}\"?")),
                None => d.hint(format!("valid kinds: {}", SOURCE_KINDS.join(", "))),
            };
            None
        }
        None => None,
    };
    s.finish(ctx);
    let kind = kind?;
    let families = match &kind {
        SourceKind::Static { address } => vec![if address.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }],
        _ => families,
    };
    let name = name?;
    Some((
        Source {
            name: name.value,
            families,
            kind,
            location,
        },
        name.span,
    ))
}

/// A record (name and type) and a source name each appear once.
fn check_unique(
    ctx: &mut Ctx<'_>,
    raw_records: &[RawRecord],
    sources: &[(Source, std::ops::Range<usize>)],
) {
    let mut seen: HashSet<(String, RecordType)> = HashSet::new();
    for r in raw_records {
        if !seen.insert((r.rec.name.to_string(), r.rec.kind)) {
            ctx.error(
                r.name_span.clone(),
                "ddns.record.name",
                format!(
                    "record {} {} is declared twice",
                    r.rec.name,
                    r.rec.kind.as_str()
                ),
            );
        }
    }
    let mut seen_src: HashSet<&str> = HashSet::new();
    for (s, span) in sources {
        if !seen_src.insert(&s.name) {
            ctx.error(
                span.clone(),
                "ddns.source.name",
                format!("source name `{}` is used twice", s.name),
            )
            .hint("source names label metrics: make them unique");
        }
    }
}

/// Enough sources for `quorum` in each family a record needs.
fn check_quorum(
    ctx: &mut Ctx<'_>,
    quorum: u8,
    at: &(std::ops::Range<usize>, String),
    records: &[Record],
    sources: &[Source],
) {
    for fam in [Family::V4, Family::V6] {
        if !records.iter().any(|r| r.kind.family() == fam) {
            continue;
        }
        let n = sources.iter().filter(|s| s.families.contains(&fam)).count();
        if n < usize::from(quorum) {
            let (span, key) = at.clone();
            ctx.error(
                span,
                &key,
                format!(
                    "quorum = {quorum} but only {n} source{} can detect {} addresses",
                    if n == 1 { "" } else { "s" },
                    if fam == Family::V4 { "IPv4" } else { "IPv6" }
                ),
            )
            .hint("add [[ddns.source]] tables or lower `quorum`; a record is changed only when `quorum` sources agree");
        }
    }
}
