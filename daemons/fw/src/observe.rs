//! I/O: reads the live state — our two tables as `nft list` prints them, their counters, the
//! interfaces' addresses and the other tables' base chains (for `edgectl fw doctor`).
//!
//! Listing goes through the `nft` binary (`nft list table inet edge`): its text is exactly
//! what [`crate::ir::Table`]'s `Display` renders, which makes the read-back a text compare.
//! Only our own tables are ever listed in full.

use std::collections::BTreeMap;
use std::io;
use std::net::IpAddr;
use std::process::Command;

/// Errors reading live state.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// A command could not be run.
    #[error("cannot run `{cmd}` (edge-fw needs the packages nftables and iproute2)")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A command failed.
    #[error("`{cmd}` failed: {stderr}")]
    Failed {
        /// The command line.
        cmd: String,
        /// Its standard error.
        stderr: String,
    },
    /// JSON output could not be parsed.
    #[error("cannot parse the output of `{cmd}`")]
    Parse {
        /// The command line.
        cmd: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

fn run(args: &[&str]) -> Result<std::process::Output, ObserveError> {
    let cmd = args.join(" ");
    let (prog, rest) = args.split_first().unwrap_or((&"true", &[]));
    Command::new(prog)
        .args(rest)
        .output()
        .map_err(|source| ObserveError::Spawn { cmd, source })
}

/// `nft list table inet NAME`; `None` when the table does not exist.
///
/// Equivalent to: `nft list table inet edge`.
pub fn list_table(name: &str) -> Result<Option<String>, ObserveError> {
    let out = run(&["nft", "list", "table", "inet", name])?;
    if out.status.success() {
        return Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()));
    }
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.contains("No such file or directory") {
        return Ok(None);
    }
    Err(ObserveError::Failed {
        cmd: format!("nft list table inet {name}"),
        stderr: stderr.trim().to_owned(),
    })
}

/// A named counter's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterValue {
    /// Counter name (`fwd_http`).
    pub name: String,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Named counters in a table listing (pure parse of `nft list table` text).
pub fn counters_in(listing: &str) -> Vec<CounterValue> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in listing.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("counter ")
            && let Some(name) = rest.strip_suffix(" {")
        {
            cur = Some(name.to_owned());
            continue;
        }
        if let Some(name) = cur.take() {
            let mut it = t.split_whitespace();
            let (mut packets, mut bytes) = (0, 0);
            while let Some(k) = it.next() {
                let v = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                match k {
                    "packets" => packets = v,
                    "bytes" => bytes = v,
                    _ => {}
                }
            }
            out.push(CounterValue {
                name,
                packets,
                bytes,
            });
        }
    }
    out
}

/// Addresses of every interface, from `ip -j addr`.
///
/// Equivalent to: `ip -j addr show`.
pub fn interface_addresses() -> Result<BTreeMap<String, Vec<IpAddr>>, ObserveError> {
    let out = run(&["ip", "-j", "addr", "show"])?;
    if !out.status.success() {
        return Err(ObserveError::Failed {
            cmd: "ip -j addr show".to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|source| ObserveError::Parse {
            cmd: "ip -j addr show".to_owned(),
            source,
        })?;
    let mut map = BTreeMap::new();
    for link in v.as_array().into_iter().flatten() {
        let Some(name) = link.get("ifname").and_then(|n| n.as_str()) else {
            continue;
        };
        let addrs: Vec<IpAddr> = link
            .get("addr_info")
            .and_then(|a| a.as_array())
            .into_iter()
            .flatten()
            .filter(|a| a.get("scope").and_then(|s| s.as_str()) != Some("link"))
            .filter_map(|a| a.get("local").and_then(|l| l.as_str())?.parse().ok())
            .collect();
        map.insert(name.to_owned(), addrs);
    }
    Ok(map)
}

/// Where the kernel sends packets for an address: `ip route get ADDR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTo {
    /// Output interface.
    pub dev: String,
    /// The source address the host would use.
    pub prefsrc: Option<IpAddr>,
    /// The address is the host's own (local or anycast).
    pub local: bool,
}

/// The route the kernel picks for `addr`; `None` when it has none (unreachable).
///
/// Equivalent to: `ip -j route get ADDR`.
pub fn route_get(addr: IpAddr) -> Result<Option<RouteTo>, ObserveError> {
    let a = addr.to_string();
    let out = run(&["ip", "-j", "route", "get", &a])?;
    if !out.status.success() {
        return Ok(None);
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|source| ObserveError::Parse {
            cmd: format!("ip -j route get {a}"),
            source,
        })?;
    Ok(parse_route_get(&v))
}

/// Pure part of [`route_get`].
pub fn parse_route_get(v: &serde_json::Value) -> Option<RouteTo> {
    let r = v.as_array()?.first()?;
    Some(RouteTo {
        dev: r.get("dev")?.as_str()?.to_owned(),
        prefsrc: r
            .get("prefsrc")
            .and_then(|p| p.as_str())
            .and_then(|p| p.parse().ok()),
        // `anycast`: IPv6 subnet-router anycast addresses are local on a router.
        local: matches!(
            r.get("type").and_then(|t| t.as_str()),
            Some("local" | "anycast")
        ),
    })
}

/// A base chain of any table, as `nft -j list chains` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChain {
    /// Family (`ip`, `ip6`, `inet`, `bridge`, `netdev`).
    pub family: String,
    /// Table name.
    pub table: String,
    /// Chain name.
    pub name: String,
    /// Chain type (`filter`, `nat`, `route`).
    pub kind: String,
    /// Hook.
    pub hook: String,
    /// Priority.
    pub prio: i64,
    /// Policy (`accept`/`drop`).
    pub policy: String,
}

/// Every base chain of every table (metadata only, no rules).
///
/// Equivalent to: `nft -j list chains`.
pub fn base_chains() -> Result<Vec<BaseChain>, ObserveError> {
    let out = run(&["nft", "-j", "list", "chains"])?;
    if !out.status.success() {
        return Err(ObserveError::Failed {
            cmd: "nft -j list chains".to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|source| ObserveError::Parse {
            cmd: "nft -j list chains".to_owned(),
            source,
        })?;
    Ok(parse_base_chains(&v))
}

/// Pure part of [`base_chains`].
pub fn parse_base_chains(v: &serde_json::Value) -> Vec<BaseChain> {
    let s =
        |c: &serde_json::Value, k: &str| c.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
    v.get("nftables")
        .and_then(|n| n.as_array())
        .into_iter()
        .flatten()
        .filter_map(|o| o.get("chain"))
        .filter(|c| c.get("hook").is_some())
        .map(|c| BaseChain {
            family: s(c, "family"),
            table: s(c, "table"),
            name: s(c, "name"),
            kind: s(c, "type"),
            hook: s(c, "hook"),
            prio: c.get("prio").and_then(|p| p.as_i64()).unwrap_or(0),
            policy: s(c, "policy"),
        })
        .collect()
}

/// True when the `br_netfilter` module is loaded (bridged frames then cross the inet hooks).
pub fn br_netfilter_loaded() -> bool {
    std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists()
}

/// Reads a sysctl file, if present.
pub fn sysctl(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_a_listing() {
        let t = "table inet edge_state {\n\tcounter fwd_http {\n\t\tpackets 12 bytes 3456\n\t}\n\n\tcounter fwd_x {\n\t\tpackets 0 bytes 0\n\t}\n}\n";
        let c = counters_in(t);
        assert_eq!(
            c,
            vec![
                CounterValue {
                    name: "fwd_http".into(),
                    packets: 12,
                    bytes: 3456
                },
                CounterValue {
                    name: "fwd_x".into(),
                    packets: 0,
                    bytes: 0
                },
            ]
        );
    }

    #[test]
    fn routes_are_parsed_from_ip_json() {
        let v: serde_json::Value = serde_json::from_str(
            r#"[{"dst":"192.168.1.2","dev":"enp4s0f1","prefsrc":"192.168.1.1","flags":[],"uid":0,"cache":[]}]"#,
        )
        .unwrap();
        assert_eq!(
            parse_route_get(&v),
            Some(RouteTo {
                dev: "enp4s0f1".into(),
                prefsrc: Some("192.168.1.1".parse().unwrap()),
                local: false
            })
        );
        let v: serde_json::Value = serde_json::from_str(
            r#"[{"type":"local","dst":"fd00:1::1","dev":"lo","prefsrc":"fd00:1::1","flags":[],"uid":0,"cache":[]}]"#,
        )
        .unwrap();
        assert!(parse_route_get(&v).unwrap().local);
        assert_eq!(parse_route_get(&serde_json::json!([])), None);
    }

    #[test]
    fn base_chains_are_parsed_from_nft_json() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"nftables":[{"metainfo":{}},{"chain":{"family":"ip","table":"libvirt_network","name":"forward","handle":1,"type":"filter","hook":"forward","prio":0,"policy":"accept"}},{"chain":{"family":"ip","table":"libvirt_network","name":"guest_output","handle":2}}]}"#,
        )
        .unwrap();
        let c = parse_base_chains(&v);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].table, "libvirt_network");
        assert_eq!(c[0].hook, "forward");
    }
}
