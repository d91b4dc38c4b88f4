//! I/O: asks every detection source of a family for the public address (one cheap request
//! each, concurrently, each under the timeout), validates the answers and hands them to the
//! pure quorum. Sources: plain-text HTTP echo, Cloudflare trace, DNS (UDP, DoH, DoT),
//! the WAN interface over rtnetlink, and static addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use edge_config::ddns::{Ddns, Family, Source, SourceKind};
use edge_metrics::ddns::{DetectionLabels, FamilyLabels, Metrics};
use hickory_resolver::proto::op::{Message, MessageType, OpCode, Query};
use hickory_resolver::proto::rr::rdata::TXT;
use hickory_resolver::proto::rr::{DNSClass, Name, RData, RecordType};

use crate::model::pick_interface_address;
use crate::parse;
use crate::quorum::{Answer, Verdict, decide};
use edge_util::error_chain;

/// Largest echo/trace/DNS answer read.
const MAX_ANSWER: usize = 4096;

/// Why one source gave no address.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The HTTP request failed.
    #[error("GET {url} failed")]
    Http {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP answer was not 200.
    #[error("GET {url} answered HTTP {status}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The answer could not be read.
    #[error("the answer of {what} is unusable")]
    Parse {
        /// The endpoint.
        what: String,
        /// The cause.
        #[source]
        source: parse::ParseError,
    },
    /// A DNS exchange failed.
    #[error("DNS query {query} to {server} failed: {reason}")]
    Dns {
        /// The name asked.
        query: String,
        /// The server.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// Reading the interface failed.
    #[error("cannot read the interface")]
    Interface(#[source] crate::netlink::NetlinkError),
    /// The interface has no publishable address of the family.
    #[error("interface {name} has no stable global {family} address{}", .first.map(|(ip, r)| format!(" ({ip} is refused: {r})")).unwrap_or_default())]
    NoInterfaceAddress {
        /// The interface.
        name: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The first refused candidate and why.
        first: Option<(IpAddr, crate::model::Rejection)>,
    },
    /// The source took longer than the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The source cannot serve this family.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Why the detector cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// An HTTP client cannot be built.
    #[error("cannot build the detection HTTP client")]
    BuildClient(#[source] reqwest::Error),
    /// The CA file cannot be used.
    #[error("cannot use the CA file {path}")]
    CaFile {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The CA file cannot be used for DNS-over-TLS.
    #[error("cannot use the CA file {path} for DNS-over-TLS")]
    DotCa {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: rustls::Error,
    },
}

/// Asks the configured sources.
#[derive(Debug, Clone)]
pub struct Detector {
    sources: Arc<Vec<Source>>,
    // Built only for the families the records need: each client holds its own TLS root
    // store, which is most of the daemon's idle memory.
    v4: Option<reqwest::Client>,
    v6: Option<reqwest::Client>,
    // DoT with `ca_file`: hickory's public roots plus the extra CA (None: hickory's own).
    dot_tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    quorum: u8,
    metrics: Metrics,
}

fn family_name(f: Family) -> &'static str {
    match f {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

impl Detector {
    /// Builds HTTP clients bound to each family (so an echo answers for the right one).
    pub fn new(cfg: &Ddns, metrics: Metrics) -> Result<Detector, DetectorError> {
        crate::tls::install_crypto_provider();
        let ca = match &cfg.ca_file {
            Some(p) => {
                let pem = std::fs::read(p).map_err(|source| DetectorError::CaFile {
                    path: p.display().to_string(),
                    source,
                })?;
                Some(reqwest::Certificate::from_pem(&pem).map_err(DetectorError::BuildClient)?)
            }
            None => None,
        };
        let client = |local: IpAddr| {
            let mut b = reqwest::Client::builder()
                .timeout(cfg.timeout)
                .connect_timeout(cfg.timeout)
                .local_address(local)
                .user_agent(concat!("edge-ddns/", env!("CARGO_PKG_VERSION")))
                .no_proxy()
                .redirect(reqwest::redirect::Policy::limited(2));
            if let Some(c) = &ca {
                b = b.add_root_certificate(c.clone());
            }
            b.build().map_err(DetectorError::BuildClient)
        };
        let families = cfg.families();
        let dot = cfg
            .sources
            .iter()
            .any(|s| matches!(&s.kind, SourceKind::Dns { transport, .. } if transport == "tls"));
        let dot_tls = match (&cfg.ca_file, dot) {
            (Some(p), true) => Some(Arc::new(dot_client_config(p)?)),
            _ => None,
        };
        Ok(Detector {
            sources: Arc::new(cfg.sources.clone()),
            v4: if families.contains(&Family::V4) {
                Some(client(IpAddr::V4(Ipv4Addr::UNSPECIFIED))?)
            } else {
                None
            },
            v6: if families.contains(&Family::V6) {
                Some(client(IpAddr::V6(Ipv6Addr::UNSPECIFIED))?)
            } else {
                None
            },
            dot_tls,
            timeout: cfg.timeout,
            quorum: cfg.quorum,
            metrics,
        })
    }

    /// Asks every source of `family` at once and decides by quorum. Records metrics.
    pub async fn detect(&self, family: Family) -> Verdict {
        let asked: Vec<&Source> = self
            .sources
            .iter()
            .filter(|s| s.families.contains(&family))
            .collect();
        let futs = asked.iter().map(|s| async move {
            let res = tokio::time::timeout(self.timeout, self.ask(s, family))
                .await
                .unwrap_or(Err(SourceError::Timeout(self.timeout)));
            let answer = match res {
                Ok(ip) => Answer::from_ip(ip, family),
                Err(e) => Answer::Failed {
                    error: error_chain(&e),
                },
            };
            (s.name.clone(), answer)
        });
        let answers = futures::future::join_all(futs).await;
        for (name, a) in &answers {
            self.metrics
                .detections
                .get_or_create(&DetectionLabels {
                    source: name.clone(),
                    family: family_name(family).to_owned(),
                    result: a.label().to_owned(),
                })
                .inc();
            match a {
                Answer::Address { address } => {
                    tracing::debug!(source = %name, family = family_name(family), %address, "source answered");
                }
                Answer::Rejected { address, reason } => {
                    tracing::warn!(source = %name, family = family_name(family), %address, "address refused: {reason}");
                }
                Answer::Failed { error } => {
                    tracing::warn!(source = %name, family = family_name(family), "detection failed: {error}");
                }
            }
        }
        let v = decide(family, self.quorum, answers);
        if let Some(f) = &v.failure {
            self.metrics
                .quorum_failures
                .get_or_create(&FamilyLabels {
                    family: family_name(family).to_owned(),
                })
                .inc();
            tracing::warn!(
                family = family_name(family),
                "no address accepted, records are left as they are: {f}"
            );
        }
        v
    }

    fn http(&self, family: Family) -> Result<&reqwest::Client, SourceError> {
        match family {
            Family::V4 => self.v4.as_ref(),
            Family::V6 => self.v6.as_ref(),
        }
        .ok_or(SourceError::Unsupported(
            "no record of this address family is configured",
        ))
    }

    async fn get(&self, url: &url::Url, family: Family) -> Result<Vec<u8>, SourceError> {
        let shown = url.to_string();
        let mut resp = self
            .http(family)?
            .get(url.clone())
            .send()
            .await
            .map_err(|source| SourceError::Http {
                url: shown.clone(),
                source,
            })?;
        if !resp.status().is_success() {
            return Err(SourceError::HttpStatus {
                url: shown,
                status: resp.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|source| SourceError::Http {
            url: shown.clone(),
            source,
        })? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER {
                break;
            }
        }
        Ok(body)
    }

    async fn ask(&self, s: &Source, family: Family) -> Result<IpAddr, SourceError> {
        match &s.kind {
            SourceKind::Static { address } => Ok(*address),
            SourceKind::Http { url } => {
                let body = self.get(&url.0, family).await?;
                parse::echo(&body).map_err(|source| SourceError::Parse {
                    what: url.to_string(),
                    source,
                })
            }
            SourceKind::CloudflareTrace { url } => {
                let body = self.get(&url.0, family).await?;
                let host = url.0.host_str().filter(|h| h.parse::<IpAddr>().is_err());
                parse::trace(&body, host).map_err(|source| SourceError::Parse {
                    what: url.to_string(),
                    source,
                })
            }
            SourceKind::Interface { interface } => {
                let addrs = crate::netlink::interface_addresses(interface.as_str())
                    .await
                    .map_err(SourceError::Interface)?;
                pick_interface_address(&addrs, family).map_err(|first| {
                    SourceError::NoInterfaceAddress {
                        name: interface.to_string(),
                        family: if family == Family::V4 { "IPv4" } else { "IPv6" },
                        first,
                    }
                })
            }
            SourceKind::Dns {
                server,
                query,
                qtype,
                class,
                transport,
            } => {
                let q = DnsQuery {
                    server: server.clone(),
                    name: query.to_string(),
                    qtype: qtype.clone(),
                    class: class.clone(),
                };
                match transport.as_str() {
                    "https" => self.dns_https(&q, family).await,
                    "tls" => dns_tls(&q, self.dot_tls.as_deref()).await,
                    _ => dns_udp(&q).await,
                }
            }
        }
    }

    async fn dns_https(&self, q: &DnsQuery, family: Family) -> Result<IpAddr, SourceError> {
        let err = |reason: String| q.error(reason);
        let url = url::Url::parse(&q.server).map_err(|e| err(format!("bad DoH URL: {e}")))?;
        let (id, wire) = q.message()?;
        let resp = self
            .http(family)?
            .post(url)
            .header("content-type", "application/dns-message")
            .header("accept", "application/dns-message")
            .body(wire)
            .send()
            .await
            .map_err(|e| err(error_chain(&e)))?;
        if !resp.status().is_success() {
            return Err(err(format!("DoH answered HTTP {}", resp.status().as_u16())));
        }
        let body = resp.bytes().await.map_err(|e| err(error_chain(&e)))?;
        q.answer(id, &body)
    }
}

/// One DNS question.
#[derive(Debug, Clone)]
struct DnsQuery {
    server: String,
    name: String,
    qtype: String,
    class: String,
}

impl DnsQuery {
    fn error(&self, reason: String) -> SourceError {
        SourceError::Dns {
            query: format!("{} {} {}", self.name, self.class, self.qtype),
            server: self.server.clone(),
            reason,
        }
    }

    fn record_type(&self) -> RecordType {
        match self.qtype.as_str() {
            "TXT" => RecordType::TXT,
            "AAAA" => RecordType::AAAA,
            _ => RecordType::A,
        }
    }

    fn message(&self) -> Result<(u16, Vec<u8>), SourceError> {
        let name = Name::from_str(&format!("{}.", self.name.trim_end_matches('.')))
            .map_err(|e| self.error(format!("bad name: {e}")))?;
        let mut q = Query::query(name, self.record_type());
        q.set_query_class(if self.class == "CH" {
            DNSClass::CH
        } else {
            DNSClass::IN
        });
        let id: u16 = rand::random();
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(q);
        let wire = m
            .to_vec()
            .map_err(|e| self.error(format!("cannot encode: {e}")))?;
        Ok((id, wire))
    }

    /// Reads the address out of an answer: an A/AAAA record, or a TXT holding an address.
    fn answer(&self, id: u16, wire: &[u8]) -> Result<IpAddr, SourceError> {
        let m = Message::from_vec(wire).map_err(|e| self.error(format!("bad answer: {e}")))?;
        if m.metadata.id != id {
            return Err(self.error("answer id does not match the query".into()));
        }
        let want = self.record_type();
        for r in &m.answers {
            match (&r.data, want) {
                (RData::A(a), RecordType::A) => return Ok(IpAddr::V4(a.0)),
                (RData::AAAA(a), RecordType::AAAA) => return Ok(IpAddr::V6(a.0)),
                (RData::TXT(t), RecordType::TXT) => {
                    return txt_address(t, format!("{} {}", self.name, self.qtype));
                }
                _ => {}
            }
        }
        Err(self.error(format!(
            "no {} record in the answer ({:?})",
            self.qtype, m.metadata.response_code
        )))
    }

    fn socket_addr(&self, default_port: u16) -> Result<SocketAddr, SourceError> {
        if let Ok(sa) = self.server.parse::<SocketAddr>() {
            return Ok(sa);
        }
        self.server
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .map(|ip| SocketAddr::new(ip, default_port))
            .map_err(|_| self.error("server must be an IP address with an optional port".into()))
    }
}

/// Plain DNS over UDP (spoofable off-path: prefer `https`; kept for tests and LAN resolvers).
async fn dns_udp(q: &DnsQuery) -> Result<IpAddr, SourceError> {
    let server = q.socket_addr(53)?;
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| q.error(format!("cannot bind: {e}")))?;
    sock.connect(server)
        .await
        .map_err(|e| q.error(format!("cannot connect: {e}")))?;
    let (id, wire) = q.message()?;
    sock.send(&wire)
        .await
        .map_err(|e| q.error(format!("cannot send: {e}")))?;
    let mut buf = vec![0u8; MAX_ANSWER];
    loop {
        let n = sock
            .recv(&mut buf)
            .await
            .map_err(|e| q.error(format!("cannot receive: {e}")))?;
        // Ignore stray datagrams with another id (a spoofing attempt or a late answer).
        match q.answer(id, &buf[..n]) {
            Err(SourceError::Dns { reason, .. }) if reason.contains("id does not match") => {}
            other => return other,
        }
    }
}

/// The TLS client configuration of DoT when `ca_file` is set: the public roots hickory uses
/// (webpki-roots) plus every certificate of the file, like the HTTP clients.
fn dot_client_config(path: &std::path::Path) -> Result<rustls::ClientConfig, DetectorError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let shown = path.display().to_string();
    let bad = |source: rustls::Error| DetectorError::DotCa {
        path: shown.clone(),
        source,
    };
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| DetectorError::CaFile {
            path: shown.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    if certs.is_empty() {
        return Err(bad(rustls::Error::General(
            "no certificate in the file".into(),
        )));
    }
    for c in certs {
        roots.add(c).map_err(bad)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(bad)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// DNS over TLS through hickory-resolver (class IN only: whoami.cloudflare needs CH, so use
/// DoH for it). `tls` replaces hickory's default client configuration (to trust `ca_file`).
async fn dns_tls(q: &DnsQuery, tls: Option<&rustls::ClientConfig>) -> Result<IpAddr, SourceError> {
    use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
    if q.class == "CH" {
        return Err(SourceError::Unsupported(
            "class CH queries are not supported over DNS-over-TLS; use transport = \"https\"",
        ));
    }
    let sa = q.socket_addr(853)?;
    let mut conn = ConnectionConfig::tls(Arc::from(sa.ip().to_string()));
    conn.port = sa.port();
    let ns = NameServerConfig::new(sa.ip(), true, vec![conn]);
    let cfg = ResolverConfig::from_name_servers(vec![ns]);
    let mut builder = hickory_resolver::Resolver::builder_with_config(
        cfg,
        hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
    );
    if let Some(t) = tls {
        builder = builder.with_tls_config(t.clone());
    }
    let resolver = builder.build().map_err(|e| q.error(e.to_string()))?;
    let name = format!("{}.", q.name.trim_end_matches('.'));
    let lookup = resolver
        .lookup(name.as_str(), q.record_type())
        .await
        .map_err(|e| q.error(dot_failure(&e.to_string(), sa)))?;
    for r in lookup.answers() {
        match &r.data {
            RData::A(a) => return Ok(IpAddr::V4(a.0)),
            RData::AAAA(a) => return Ok(IpAddr::V6(a.0)),
            RData::TXT(t) => return txt_address(t, q.name.clone()),
            _ => {}
        }
    }
    Err(q.error("no usable record in the answer".into()))
}

/// hickory reports a refused connection and a refused certificate alike, as "no connections
/// available" (the cause is only in its debug log): say what to check.
fn dot_failure(reason: &str, server: std::net::SocketAddr) -> String {
    if reason.contains("no connections available") {
        format!(
            "{reason}: no TCP connection or TLS session could be set up with {server}; check the \
             address and port, that the server's certificate names the IP address {}, and \
             `ca_file` when a private CA signed it",
            server.ip()
        )
    } else {
        reason.to_owned()
    }
}

/// The address a TXT answer holds (its strings joined, quotes trimmed, as an echo service
/// writes it); `what` names the query in the error.
fn txt_address(t: &TXT, what: String) -> Result<IpAddr, SourceError> {
    let text: String = t
        .txt_data
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    parse::echo(text.trim_matches('"').as_bytes())
        .map_err(|source| SourceError::Parse { what, source })
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_opaque_dot_failure_says_what_to_check() {
        let sa: std::net::SocketAddr = "192.0.2.1:853".parse().expect("addr");
        let m = dot_failure("proto error: no connections available", sa);
        assert!(m.contains("192.0.2.1:853") && m.contains("ca_file"), "{m}");
        assert_eq!(dot_failure("timed out", sa), "timed out");
    }

    #[test]
    fn dns_messages_round_trip_with_ch_class_and_txt() {
        use hickory_resolver::proto::rr::Record;
        use hickory_resolver::proto::rr::rdata::TXT;
        let q = DnsQuery {
            server: "127.0.0.1:5353".into(),
            name: "whoami.cloudflare".into(),
            qtype: "TXT".into(),
            class: "CH".into(),
        };
        let (id, wire) = q.message().unwrap();
        let m = Message::from_vec(&wire).unwrap();
        assert_eq!(m.queries[0].query_class(), DNSClass::CH);
        let mut resp = Message::response(id, OpCode::Query);
        resp.add_query(m.queries[0].clone());
        let mut rec = Record::from_rdata(
            m.queries[0].name().clone(),
            0,
            RData::TXT(TXT::new(vec!["81.2.69.160".into()])),
        );
        rec.dns_class = DNSClass::CH;
        resp.add_answer(rec);
        let ip = q.answer(id, &resp.to_vec().unwrap()).unwrap();
        assert_eq!(ip.to_string(), "81.2.69.160");
        assert!(
            q.answer(id.wrapping_add(1), &resp.to_vec().unwrap())
                .is_err()
        );
    }
}
