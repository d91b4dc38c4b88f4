//! I/O: looking up the peers' endpoint names. With `[wg] resolvers` a small DNS client asks
//! those servers (UDP, A then AAAA); without, the system's resolver does (`getaddrinfo`:
//! `/etc/hosts`, `/etc/resolv.conf`, as every other program on the host). Nothing is cached
//! here: a name is looked up on start, on reload, and when the peer's handshakes stop being
//! answered ([`crate::config::Reresolve`]), and each of those wants the answer of now.
//!
//! Why not a resolver crate: hickory-resolver (used by edge-ddns for DNS-over-TLS/HTTPS)
//! added 1.3 MB of code to edge-wg and 0.8 MiB to its resident memory, for what is one UDP
//! question and answer; the message format below is RFC 1035 §4, and it is unit-tested.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs as _};
use std::time::Duration;

/// How long one server gets to answer one question.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Questions per server and record type.
const ATTEMPTS: usize = 2;
/// Record types asked for, in this order.
const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// Errors of looking up an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The system's resolver failed.
    #[error("failed to look up {host} with the system's resolver")]
    System {
        /// The name.
        host: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No configured server gave an address.
    #[error("failed to look up {host} at {servers}: {reason}")]
    Servers {
        /// The name.
        host: String,
        /// The servers asked.
        servers: String,
        /// What the last answer (or silence) was.
        reason: String,
    },
}

/// Errors of reading a DNS answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DnsError {
    /// The message is shorter than it says.
    #[error("truncated or malformed answer")]
    Malformed,
    /// Not the answer to our question (another id, not a response).
    #[error("answer to another question")]
    Mismatch,
    /// The server says the name does not exist.
    #[error("no such name (NXDOMAIN)")]
    NoSuchName,
    /// Another error code.
    #[error("server error (rcode {0})")]
    Rcode(u8),
    /// The name cannot be put into a question.
    #[error("not a valid DNS name")]
    BadName,
}

/// Encodes a recursive question for `name` and `qtype` (RFC 1035 §4.1).
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, DnsError> {
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.len() > 253 {
        return Err(DnsError::BadName);
    }
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // recursion desired
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(DnsError::BadName);
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// Skips a (possibly compressed) name starting at `at`; returns where it ends.
fn skip_name(m: &[u8], mut at: usize) -> Result<usize, DnsError> {
    loop {
        let len = *m.get(at).ok_or(DnsError::Malformed)?;
        match len {
            0 => return Ok(at + 1),
            l if l & 0xc0 == 0xc0 => {
                m.get(at + 1).ok_or(DnsError::Malformed)?;
                return Ok(at + 2);
            }
            l if l & 0xc0 == 0 => at += 1 + usize::from(l),
            _ => return Err(DnsError::Malformed),
        }
    }
}

fn u16_at(m: &[u8], at: usize) -> Result<u16, DnsError> {
    m.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or(DnsError::Malformed)
}

/// The first address of type `qtype` in the answer to question `id` (None: the name has
/// no such record; CNAMEs are followed by the server and skipped here).
pub fn parse_answer(id: u16, qtype: u16, m: &[u8]) -> Result<Option<IpAddr>, DnsError> {
    if m.len() < 12 {
        return Err(DnsError::Malformed);
    }
    if u16_at(m, 0)? != id || m[2] & 0x80 == 0 {
        return Err(DnsError::Mismatch);
    }
    match m[3] & 0x0f {
        0 => {}
        3 => return Err(DnsError::NoSuchName),
        rc => return Err(DnsError::Rcode(rc)),
    }
    let questions = u16_at(m, 4)?;
    let answers = u16_at(m, 6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(m, at)? + 4;
    }
    for _ in 0..answers {
        at = skip_name(m, at)?;
        let ty = u16_at(m, at)?;
        let class = u16_at(m, at + 2)?;
        let len = usize::from(u16_at(m, at + 8)?);
        let data = m.get(at + 10..at + 10 + len).ok_or(DnsError::Malformed)?;
        at += 10 + len;
        if ty != qtype || class != CLASS_IN {
            continue;
        }
        match (ty, data.len()) {
            (TYPE_A, 4) => {
                return Ok(Some(IpAddr::V4(Ipv4Addr::new(
                    data[0], data[1], data[2], data[3],
                ))));
            }
            (TYPE_AAAA, 16) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(data);
                return Ok(Some(IpAddr::V6(Ipv6Addr::from(o))));
            }
            _ => return Err(DnsError::Malformed),
        }
    }
    Ok(None)
}

/// Looks up endpoint names (A, then AAAA).
#[derive(Debug, Clone)]
pub struct EndpointResolver {
    /// The servers of `[wg] resolvers`; empty: the system's resolver.
    servers: Vec<SocketAddr>,
}

impl EndpointResolver {
    /// A resolver asking `servers` (UDP) or, when empty, the system's resolver.
    pub fn new(servers: &[SocketAddr]) -> EndpointResolver {
        EndpointResolver {
            servers: servers.to_vec(),
        }
    }

    /// The address of `host:port` (an IP address is returned as it is).
    pub async fn resolve(&self, host: &str, port: u16) -> Result<SocketAddr, ResolveError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        if self.servers.is_empty() {
            return system(host, port).await;
        }
        let mut reason = String::from("no answer");
        for qtype in [TYPE_A, TYPE_AAAA] {
            for server in &self.servers {
                match ask(*server, host, qtype).await {
                    Ok(Some(ip)) => return Ok(SocketAddr::new(ip, port)),
                    Ok(None) => reason = format!("{server} has no A or AAAA record for it"),
                    Err(e) => reason = format!("{server}: {e}"),
                }
            }
        }
        Err(ResolveError::Servers {
            host: host.to_owned(),
            servers: self
                .servers
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            reason,
        })
    }
}

/// `getaddrinfo` on a blocking thread; an IPv4 address first when there is one.
async fn system(host: &str, port: u16) -> Result<SocketAddr, ResolveError> {
    let h = host.to_owned();
    let res = tokio::task::spawn_blocking(move || {
        (h.as_str(), port)
            .to_socket_addrs()
            .map(|a| a.collect::<Vec<_>>())
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r);
    let addrs = res.map_err(|source| ResolveError::System {
        host: host.to_owned(),
        source,
    })?;
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| ResolveError::System {
            host: host.to_owned(),
            source: std::io::Error::other("no address"),
        })
}

/// Asks one server one question, [`ATTEMPTS`] times at most; a random id and source port
/// each time, and only its answer to that question counts.
async fn ask(server: SocketAddr, host: &str, qtype: u16) -> Result<Option<IpAddr>, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut last = String::from("no answer");
    for _ in 0..ATTEMPTS {
        let id: u16 = rand::random();
        let q = encode_query(id, host, qtype).map_err(|e| e.to_string())?;
        let sock = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(|e| e.to_string())?;
        sock.connect(server).await.map_err(|e| e.to_string())?;
        sock.send(&q).await.map_err(|e| e.to_string())?;
        let mut buf = [0u8; 1232];
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => {
                    last = format!("no answer within {}s", TIMEOUT.as_secs());
                    break;
                }
                Ok(Err(e)) => {
                    last = e.to_string();
                    break;
                }
                Ok(Ok(n)) => match parse_answer(id, qtype, &buf[..n]) {
                    Ok(a) => return Ok(a),
                    Err(DnsError::NoSuchName) => return Ok(None),
                    Err(DnsError::Mismatch) => continue,
                    Err(e) => return Err(e.to_string()),
                },
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as a server sends it: the question, then `records` of (type, data), the
    /// first name a pointer to the question's.
    fn answer(id: u16, rcode: u8, q: &[u8], records: &[(u16, &[u8])]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&[0x81, 0x80 | rcode]);
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&(records.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&q[12..]);
        for (ty, data) in records {
            m.extend_from_slice(&[0xc0, 12]);
            m.extend_from_slice(&ty.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
        }
        m
    }

    #[test]
    fn a_question_is_rfc1035() {
        let q = encode_query(0xabcd, "site.example.org.", TYPE_A).unwrap();
        let want: &[u8] = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\
                            \x04site\x07example\x03org\x00\x00\x01\x00\x01";
        assert_eq!(q, want);
        assert_eq!(encode_query(1, "", TYPE_A), Err(DnsError::BadName));
        assert_eq!(
            encode_query(1, &format!("{}.org", "x".repeat(64)), TYPE_A),
            Err(DnsError::BadName)
        );
    }

    #[test]
    fn the_first_address_of_the_asked_type_is_taken_past_a_cname() {
        let q = encode_query(7, "site.example.org", TYPE_A).unwrap();
        let cname: &[u8] = b"\x03www\xc0\x0c";
        let m = answer(7, 0, &q, &[(5, cname), (TYPE_A, &[198, 51, 100, 9])]);
        assert_eq!(
            parse_answer(7, TYPE_A, &m),
            Ok(Some("198.51.100.9".parse().unwrap()))
        );
        let v6 = "2001:db8::9".parse::<Ipv6Addr>().unwrap().octets();
        let q6 = encode_query(8, "site.example.org", TYPE_AAAA).unwrap();
        let m = answer(8, 0, &q6, &[(TYPE_AAAA, &v6)]);
        assert_eq!(
            parse_answer(8, TYPE_AAAA, &m),
            Ok(Some("2001:db8::9".parse().unwrap()))
        );
        assert_eq!(parse_answer(7, TYPE_A, &answer(7, 0, &q, &[])), Ok(None));
    }

    #[test]
    fn wrong_answers_are_told_apart() {
        let q = encode_query(7, "site.example.org", TYPE_A).unwrap();
        let good = answer(7, 0, &q, &[(TYPE_A, &[1, 2, 3, 4])]);
        assert_eq!(parse_answer(8, TYPE_A, &good), Err(DnsError::Mismatch));
        assert_eq!(
            parse_answer(7, TYPE_A, &q),
            Err(DnsError::Mismatch),
            "a question"
        );
        assert_eq!(
            parse_answer(7, TYPE_A, &answer(7, 3, &q, &[])),
            Err(DnsError::NoSuchName)
        );
        assert_eq!(
            parse_answer(7, TYPE_A, &answer(7, 2, &q, &[])),
            Err(DnsError::Rcode(2))
        );
        for cut in 0..good.len() {
            assert!(
                parse_answer(7, TYPE_A, &good[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let bad_len = answer(7, 0, &q, &[(TYPE_A, &[1, 2, 3])]);
        assert_eq!(parse_answer(7, TYPE_A, &bad_len), Err(DnsError::Malformed));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_an_answer_or_an_error_never_a_panic(
            m in proptest::collection::vec(proptest::num::u8::ANY, 0..300)
        ) {
            let _ = parse_answer(u16::from_be_bytes([m.first().copied().unwrap_or(0), m.get(1).copied().unwrap_or(0)]), TYPE_A, &m);
        }
    }
}
