//! The origin lock's ranges: Cloudflare's published proxy prefixes, as this release ships
//! them, as last fetched (kept in `<state_dir>/fw/origin-ranges.json`), and the rules that
//! decide whether a fetched list may replace the current one. Pure, except
//! [`load_cache`], [`save_cache`] and [`fetch`].

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Where the ranges in force come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Shipped with this release.
    Shipped,
    /// Fetched from Cloudflare's list.
    Fetched,
}

/// A list of proxy ranges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranges {
    /// IPv4 prefixes.
    pub v4: Vec<IpNet>,
    /// IPv6 prefixes.
    pub v6: Vec<IpNet>,
    /// Where they come from.
    pub origin: Origin,
    /// When they were fetched (unix seconds; 0 for the shipped list).
    pub fetched_at: u64,
    /// The list's etag, when the server gave one.
    #[serde(default)]
    pub etag: Option<String>,
}

fn parse_all(v: &[&str]) -> Vec<IpNet> {
    v.iter().filter_map(|n| n.parse().ok()).collect()
}

impl Ranges {
    /// The list this release ships (works offline at boot).
    pub fn shipped() -> Self {
        Self {
            v4: parse_all(edge_config::fw::CLOUDFLARE_V4),
            v6: parse_all(edge_config::fw::CLOUDFLARE_V6),
            origin: Origin::Shipped,
            fetched_at: 0,
            etag: None,
        }
    }

    /// Every prefix, both families.
    pub fn all(&self) -> impl Iterator<Item = &IpNet> {
        self.v4.iter().chain(&self.v6)
    }

    /// The prefixes as a sorted set (for comparing lists).
    fn set(&self) -> std::collections::BTreeSet<IpNet> {
        self.all().map(IpNet::trunc).collect()
    }

    /// True when both lists hold the same prefixes.
    pub fn same_prefixes(&self, other: &Ranges) -> bool {
        self.set() == other.set()
    }
}

/// Why a fetched list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The answer could not be read as Cloudflare's list.
    #[error("the answer is not Cloudflare's list of ranges: {0}")]
    Unreadable(String),
    /// A family is missing.
    #[error("the list has no {0} prefix")]
    MissingFamily(&'static str),
    /// A prefix is not a globally routed one (private, loopback, documentation, ...).
    #[error("{0} is not a global prefix")]
    NotGlobal(IpNet),
    /// A prefix is in the wrong family's list.
    #[error("{0} is listed as the other family's")]
    WrongFamily(IpNet),
}

/// The body of Cloudflare's `GET /ips`.
#[derive(Debug, Deserialize)]
struct IpsAnswer {
    success: bool,
    result: Option<IpsResult>,
}

#[derive(Debug, Deserialize)]
struct IpsResult {
    ipv4_cidrs: Vec<String>,
    ipv6_cidrs: Vec<String>,
    #[serde(default)]
    etag: Option<String>,
}

fn global(n: &IpNet) -> bool {
    let a = n.network();
    match a {
        IpAddr::V4(v) => {
            const NOT: &[&str] = &[
                "0.0.0.0/8",
                "10.0.0.0/8",
                "100.64.0.0/10",
                "127.0.0.0/8",
                "169.254.0.0/16",
                "172.16.0.0/12",
                "192.0.0.0/24",
                "192.0.2.0/24",
                "192.168.0.0/16",
                "198.18.0.0/15",
                "198.51.100.0/24",
                "203.0.113.0/24",
                "224.0.0.0/3",
            ];
            n.prefix_len() >= 8
                && !NOT
                    .iter()
                    .filter_map(|p| p.parse::<IpNet>().ok())
                    .any(|p| p.contains(&IpAddr::V4(v)) || p.contains(n))
        }
        IpAddr::V6(v) => {
            // Global unicast is 2000::/3; inside it, documentation space (2001:db8::/32) is
            // not global.
            let s = v.segments();
            let documentation = s[0] == 0x2001 && s[1] == 0x0db8;
            n.prefix_len() >= 16 && (s[0] & 0xe000) == 0x2000 && !documentation
        }
    }
}

/// Reads Cloudflare's answer into a list, refusing what cannot be the proxy's ranges: not
/// the list, a family missing, a prefix that is not global.
pub fn parse(body: &[u8], now: u64) -> Result<Ranges, Refusal> {
    let a: IpsAnswer =
        serde_json::from_slice(body).map_err(|e| Refusal::Unreadable(e.to_string()))?;
    let r = match a.result {
        Some(r) if a.success => r,
        _ => {
            return Err(Refusal::Unreadable(
                "success is false or result is missing".into(),
            ));
        }
    };
    let nets = |v: &[String]| -> Result<Vec<IpNet>, Refusal> {
        v.iter()
            .map(|s| {
                s.parse::<IpNet>()
                    .map_err(|e| Refusal::Unreadable(format!("`{s}`: {e}")))
            })
            .collect()
    };
    let (v4, v6) = (nets(&r.ipv4_cidrs)?, nets(&r.ipv6_cidrs)?);
    if v4.is_empty() {
        return Err(Refusal::MissingFamily("IPv4"));
    }
    if v6.is_empty() {
        return Err(Refusal::MissingFamily("IPv6"));
    }
    for n in &v4 {
        if !n.addr().is_ipv4() {
            return Err(Refusal::WrongFamily(*n));
        }
    }
    for n in &v6 {
        if !n.addr().is_ipv6() {
            return Err(Refusal::WrongFamily(*n));
        }
    }
    if let Some(n) = v4.iter().chain(&v6).find(|n| !global(n)) {
        return Err(Refusal::NotGlobal(*n));
    }
    Ok(Ranges {
        v4,
        v6,
        origin: Origin::Fetched,
        fetched_at: now,
        etag: r.etag,
    })
}

/// What to do with a valid fetched list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The same prefixes as in force: nothing changes (only the check time).
    Unchanged,
    /// Put it in force.
    Accept,
    /// It changes more than half of the list: keep it pending until the next fetch gives
    /// the same answer (a partial or poisoned answer would otherwise lock visitors out).
    Hold,
}

/// Whether `fetched` may replace `current`; `pending` is a list held by the previous
/// fetch.
pub fn decide(current: &Ranges, fetched: &Ranges, pending: Option<&Ranges>) -> Decision {
    if fetched.same_prefixes(current) {
        return Decision::Unchanged;
    }
    let (a, b) = (current.set(), fetched.set());
    let changed = a.symmetric_difference(&b).count();
    if changed * 2 <= a.len().max(1) {
        return Decision::Accept;
    }
    match pending {
        Some(p) if p.same_prefixes(fetched) => Decision::Accept,
        _ => Decision::Hold,
    }
}

/// Where the last accepted list is kept.
pub fn cache_path(state_dir: &Path) -> PathBuf {
    state_dir.join("fw").join("origin-ranges.json")
}

/// The list kept by an earlier run, if it is readable.
pub fn load_cache(path: &Path) -> Option<Ranges> {
    let text = std::fs::read(path).ok()?;
    let r: Ranges = serde_json::from_slice(&text).ok()?;
    (!r.v4.is_empty() && !r.v6.is_empty()).then_some(r)
}

/// Keeps the list for the next start (written to a temporary file, synced, renamed).
pub fn save_cache(path: &Path, r: &Ranges) -> io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(r).map_err(io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Errors fetching the list.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No HTTP client could be built (a bad `ca_file`).
    #[error("cannot build the HTTP client")]
    Client(#[source] edge_notify::NotifyError),
    /// The request failed.
    #[error("cannot fetch {url}")]
    Request {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{url} answered {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The answer was refused.
    #[error("refused the list from {url}")]
    Refused {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        why: Refusal,
    },
}

/// Fetches and validates the list (`GET /ips`, no token).
pub async fn fetch(
    src: &edge_config::fw::OriginLockSource,
    now: u64,
) -> Result<Ranges, FetchError> {
    let url = src.url.0.to_string();
    let http = edge_notify::https_client(
        std::time::Duration::from_secs(15),
        src.ca_file.as_deref(),
        concat!("edge-fw/", env!("CARGO_PKG_VERSION")),
    )
    .map_err(FetchError::Client)?;
    let resp = http
        .get(src.url.0.clone())
        .send()
        .await
        .map_err(|source| FetchError::Request {
            url: url.clone(),
            source,
        })?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(FetchError::Status { url, status });
    }
    let body = resp.bytes().await.map_err(|source| FetchError::Request {
        url: url.clone(),
        source,
    })?;
    // The list is a few hundred bytes; anything much larger is not it.
    if body.len() > 1 << 20 {
        return Err(FetchError::Refused {
            url,
            why: Refusal::Unreadable(format!("{} bytes", body.len())),
        });
    }
    parse(&body, now).map_err(|why| FetchError::Refused { url, why })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(v4: &[&str], v6: &[&str]) -> Vec<u8> {
        serde_json::json!({
            "success": true, "errors": [], "messages": [],
            "result": {"ipv4_cidrs": v4, "ipv6_cidrs": v6, "etag": "e1"}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn the_shipped_list_parses_and_is_global() {
        let s = Ranges::shipped();
        assert_eq!(s.v4.len(), edge_config::fw::CLOUDFLARE_V4.len());
        assert_eq!(s.v6.len(), edge_config::fw::CLOUDFLARE_V6.len());
        assert!(s.all().all(global));
    }

    #[test]
    fn answers_missing_a_family_or_holding_private_prefixes_are_refused() {
        assert_eq!(
            parse(&answer(&["173.245.48.0/20"], &[]), 1),
            Err(Refusal::MissingFamily("IPv6"))
        );
        assert!(matches!(
            parse(&answer(&["10.0.0.0/8"], &["2400:cb00::/32"]), 1),
            Err(Refusal::NotGlobal(_))
        ));
        assert!(matches!(
            parse(&answer(&["173.245.48.0/20"], &["fd00::/8"]), 1),
            Err(Refusal::NotGlobal(_))
        ));
        assert!(matches!(
            parse(&answer(&["0.0.0.0/0"], &["2400:cb00::/32"]), 1),
            Err(Refusal::NotGlobal(_))
        ));
        assert!(matches!(parse(b"<html>", 1), Err(Refusal::Unreadable(_))));
        let ok = parse(&answer(&["173.245.48.0/20"], &["2400:cb00::/32"]), 7).expect("valid");
        assert_eq!((ok.fetched_at, ok.etag.as_deref()), (7, Some("e1")));
    }

    #[test]
    fn a_change_of_more_than_half_the_list_waits_for_a_second_identical_answer() {
        let current = Ranges::shipped();
        assert_eq!(
            decide(&current, &current.clone(), None),
            Decision::Unchanged
        );
        // One prefix more: accepted at once.
        let mut small = current.clone();
        small.v4.push("45.64.64.0/22".parse().expect("net"));
        assert_eq!(decide(&current, &small, None), Decision::Accept);
        // A list that replaces everything: held, then accepted when it comes again.
        let big = parse(&answer(&["45.64.64.0/22"], &["2a09:bac0::/29"]), 1).expect("valid");
        assert_eq!(decide(&current, &big, None), Decision::Hold);
        assert_eq!(decide(&current, &big, Some(&small)), Decision::Hold);
        assert_eq!(decide(&current, &big, Some(&big)), Decision::Accept);
    }
}
