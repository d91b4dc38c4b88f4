//! Pure: provisioning peers for `edgectl wg peer`: checking a new peer's name, allocating
//! the next free address of the WireGuard network, the client's defaults (endpoint,
//! routed networks), its `wg-quick` configuration, and the edits of edge.toml — made on the
//! text with `toml_edit`, so every comment and the layout stay as the user wrote them.
//!
//! Randomness (keys) and time come in from the caller.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use edge_config::Config;
use edge_config::wg::{Expiry, Wg};
use ipnet::IpNet;
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

use crate::model::Key;

/// Longest peer name `peer add` accepts (it becomes a file name and a metric label).
pub const MAX_NAME_LEN: usize = 32;

/// Errors of provisioning, each saying what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProvisionError {
    /// The name cannot be used.
    #[error(
        "peer name {name:?} is not usable: {why}; use 1 to {MAX_NAME_LEN} letters, digits, `.`, `_` or `-`, starting with a letter or digit (e.g. phone, alice-laptop)"
    )]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Another peer has this name.
    #[error(
        "a peer named {name:?} already exists; pick another name, or `edgectl wg peer remove {name}` first"
    )]
    NameTaken {
        /// The name.
        name: String,
    },
    /// No peer has this name.
    #[error("no peer named {name:?} in [wg]; `edgectl wg peer list` shows the peers")]
    UnknownPeer {
        /// The name.
        name: String,
    },
    /// The configuration has no `[wg]` section.
    #[error("the configuration has no [wg] section: add one first (see docs/wg.md)")]
    NoWg,
    /// `[wg] addresses` is empty: there is no network to allocate from.
    #[error(
        "[wg] has no addresses, so there is no WireGuard network to take an address from; add e.g. addresses = [\"10.17.9.1/24\"], or pass --allowed-ips"
    )]
    NoNetwork,
    /// Every address of the network is in use.
    #[error(
        "the WireGuard network {network} is full: every address is the host's or a peer's; remove a peer, widen [wg] addresses, or pass --allowed-ips"
    )]
    NetworkFull {
        /// The network.
        network: IpNet,
    },
    /// An address asked for overlaps one in use.
    #[error(
        "address {net} is taken: it overlaps {taken} of {owner}; pick a free one (`edgectl wg peer list` shows them) or leave --allowed-ips out to get the next free one"
    )]
    AddressTaken {
        /// The address asked for.
        net: IpNet,
        /// What it overlaps.
        taken: IpNet,
        /// Who holds it ("the host" or "peer NAME").
        owner: String,
    },
    /// None of the given allowed IPs lies inside the WireGuard network.
    #[error(
        "none of the allowed IPs is inside the WireGuard network ({networks}): the client needs an address there; add one (e.g. --allowed-ips {example})"
    )]
    NoClientAddress {
        /// The networks.
        networks: String,
        /// A suggestion.
        example: String,
    },
    /// No endpoint for the client could be chosen.
    #[error(
        "no endpoint for the client: there is no [[ddns.record]] to default to; pass --endpoint HOST:PORT (the host's public name or address and port {port})"
    )]
    NoEndpoint {
        /// The listen port.
        port: u16,
    },
    /// A command-line value that cannot be used.
    #[error("{message}")]
    Usage {
        /// What is wrong and what to do.
        message: String,
    },
    /// The file is not TOML that `toml_edit` can edit.
    #[error("the configuration cannot be edited: {0}")]
    Edit(String),
}

/// Checks a new peer's name: it becomes a file name and a metric label.
pub fn check_name(name: &str) -> Result<(), ProvisionError> {
    let bad = |why| {
        Err(ProvisionError::BadName {
            name: name.to_owned(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is too long");
    }
    if !name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
    {
        return bad("it must start with a letter or a digit");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return bad("it has characters other than letters, digits, `.`, `_` and `-`");
    }
    Ok(())
}

/// The WireGuard networks: `[wg] addresses` without their host part.
pub fn networks(wg: &Wg) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = wg.addresses.iter().map(IpNet::trunc).collect();
    v.dedup();
    v
}

/// Everything in use in the WireGuard network: the host's addresses and the peers'
/// allowed IPs, with their owners.
fn in_use(wg: &Wg) -> Vec<(IpNet, String)> {
    let host = wg.addresses.iter().map(|a| {
        let single = IpNet::new(a.addr(), a.max_prefix_len()).unwrap_or(*a);
        (single, "the host".to_owned())
    });
    let peers = wg.peers.iter().flat_map(|p| {
        p.allowed_ips
            .iter()
            .map(move |n| (*n, format!("peer {:?}", p.name)))
    });
    host.chain(peers).collect()
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

/// The first address of `network` that no one uses (for IPv4 never the network or the
/// broadcast address), as a /32 or /128.
pub fn next_free(wg: &Wg, network: IpNet) -> Result<IpNet, ProvisionError> {
    let used = in_use(wg);
    let free = |ip: IpAddr| {
        let single = IpNet::new(ip, network.max_prefix_len()).ok()?;
        (!used.iter().any(|(u, _)| overlaps(u, &single))).then_some(single)
    };
    // At most 2^16 candidates are looked at: enough for any network a host hands out by
    // hand, and a bound on the time a huge IPv6 network could take.
    let found = match network {
        IpNet::V4(n) => n.hosts().take(1 << 16).find_map(|a| free(IpAddr::V4(a))),
        IpNet::V6(n) => n
            .hosts()
            .skip(1)
            .take(1 << 16)
            .find_map(|a| free(IpAddr::V6(a))),
    };
    found.ok_or(ProvisionError::NetworkFull { network })
}

/// The addresses a new peer gets: the ones asked for (checked to be free, at least one in
/// the WireGuard network), or the next free one of each WireGuard network.
pub fn allocate(wg: &Wg, asked: &[IpNet]) -> Result<Vec<IpNet>, ProvisionError> {
    let nets = networks(wg);
    if asked.is_empty() {
        if nets.is_empty() {
            return Err(ProvisionError::NoNetwork);
        }
        return nets.iter().map(|n| next_free(wg, *n)).collect();
    }
    let used = in_use(wg);
    for a in asked {
        let a = a.trunc();
        if let Some((taken, owner)) = used.iter().find(|(u, _)| overlaps(u, &a)) {
            return Err(ProvisionError::AddressTaken {
                net: a,
                taken: *taken,
                owner: owner.clone(),
            });
        }
    }
    if !nets.is_empty() && !asked.iter().any(|a| nets.iter().any(|n| n.contains(a))) {
        let example = nets
            .first()
            .and_then(|n| next_free(wg, *n).ok())
            .map_or_else(|| "ADDRESS/32".to_owned(), |n| n.to_string());
        return Err(ProvisionError::NoClientAddress {
            networks: nets
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            example,
        });
    }
    Ok(asked.iter().map(IpNet::trunc).collect())
}

/// The client's `Address` lines: the peer's allowed IPs inside the WireGuard networks.
pub fn client_addresses(wg: &Wg, allowed: &[IpNet]) -> Vec<IpNet> {
    let nets = networks(wg);
    allowed
        .iter()
        .filter(|a| nets.is_empty() || nets.iter().any(|n| n.contains(*a)))
        .copied()
        .collect()
}

/// What the client routes through the tunnel by default: the WireGuard networks and the
/// subnets of the managed bridges that do not face the internet (`[fw] wan`), e.g. the
/// VM networks of the reference deployment.
pub fn default_client_routes(cfg: &Config) -> Vec<IpNet> {
    let mut out: BTreeSet<IpNet> = BTreeSet::new();
    if let Some(wg) = &cfg.wg {
        out.extend(networks(wg));
    }
    let wan: Vec<&str> = cfg
        .fw
        .as_ref()
        .map(|f| f.wan.iter().map(|w| w.as_str()).collect())
        .unwrap_or_default();
    if let Some(link) = &cfg.link {
        for b in &link.bridges {
            if wan.contains(&b.name.as_str()) {
                continue;
            }
            out.extend(b.addresses.iter().map(IpNet::trunc));
        }
    }
    out.into_iter().collect()
}

/// The endpoint the client dials by default, and a warning when it is doubtful.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientEndpoint {
    /// `host:port`.
    pub endpoint: String,
    /// Something the user should know about it.
    pub warning: Option<String>,
}

/// The first `[[ddns.record]]` (preferring one that Cloudflare does not proxy) and the
/// listen port.
pub fn default_endpoint(cfg: &Config) -> Result<ClientEndpoint, ProvisionError> {
    let port = cfg.wg.as_ref().map_or(51820, |w| w.listen_port.get());
    let records = cfg
        .ddns
        .as_ref()
        .map(|d| d.records.as_slice())
        .unwrap_or(&[]);
    let Some(first) = records.first() else {
        return Err(ProvisionError::NoEndpoint { port });
    };
    let host = |r: &edge_config::ddns::Record| {
        if r.name.as_str().contains(':') {
            format!("[{}]:{port}", r.name.as_str())
        } else {
            format!("{}:{port}", r.name.as_str())
        }
    };
    if let Some(r) = records.iter().find(|r| !r.proxied) {
        return Ok(ClientEndpoint {
            endpoint: host(r),
            warning: None,
        });
    }
    Ok(ClientEndpoint {
        endpoint: host(first),
        warning: Some(format!(
            "{} is proxied by Cloudflare: it resolves to Cloudflare, which does not carry WireGuard's UDP; add an unproxied record (e.g. vpn.{} with proxied = false) or pass --endpoint HOST:{port}",
            first.name.as_str(),
            first.name.as_str()
        )),
    })
}

/// Everything the client's configuration holds.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The client's private key (never stored on the host).
    pub private_key: Key,
    /// Its addresses inside the tunnel.
    pub addresses: Vec<IpNet>,
    /// The host's public key.
    pub server_public_key: Key,
    /// The preshared key.
    pub preshared_key: Key,
    /// Networks the client routes through the tunnel.
    pub routes: Vec<IpNet>,
    /// `host:port` of the host.
    pub endpoint: String,
}

fn join(nets: &[IpNet]) -> String {
    nets.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl ClientConfig {
    /// The configuration in `wg-quick` format (what the WireGuard apps import).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "[Interface]");
        let _ = writeln!(s, "PrivateKey = {}", self.private_key.to_base64());
        let _ = writeln!(s, "Address = {}", join(&self.addresses));
        let _ = writeln!(s);
        let _ = writeln!(s, "[Peer]");
        let _ = writeln!(s, "PublicKey = {}", self.server_public_key.to_base64());
        let _ = writeln!(s, "PresharedKey = {}", self.preshared_key.to_base64());
        let _ = writeln!(s, "AllowedIPs = {}", join(&self.routes));
        let _ = writeln!(s, "Endpoint = {}", self.endpoint);
        s
    }
}

/// A private key from 32 random bytes, clamped as `wg genkey` does.
pub fn private_key_from(mut bytes: [u8; 32]) -> Key {
    bytes[0] &= 248;
    bytes[31] = (bytes[31] & 127) | 64;
    Key(bytes)
}

/// Where `peer add` keeps a peer's preshared key: `<state_dir>/wg/psk/<name>.psk`, in
/// edge-wg's state directory, which the daemon can read under its unit (it runs as a
/// dynamic user that cannot read root's private files in /etc/edge).
pub fn psk_path(state_dir: &Path, name: &str) -> PathBuf {
    psk_dir(state_dir).join(format!("{name}.psk"))
}

/// The directory of the preshared keys `peer add` writes.
pub fn psk_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("wg").join("psk")
}

/// The new peer's entry in edge.toml.
#[derive(Debug, Clone)]
pub struct PeerEntry {
    /// Its name.
    pub name: String,
    /// Its public key.
    pub public_key: Key,
    /// The file holding its preshared key.
    pub psk_file: PathBuf,
    /// Its allowed IPs.
    pub allowed_ips: Vec<IpNet>,
    /// When it expires.
    pub expires: Option<Expiry>,
    /// A comment line written above it.
    pub comment: String,
}

fn parse_doc(text: &str) -> Result<DocumentMut, ProvisionError> {
    text.parse::<DocumentMut>()
        .map_err(|e| ProvisionError::Edit(e.to_string()))
}

fn expiry_value(e: Expiry) -> Result<Value, ProvisionError> {
    e.to_rfc3339()
        .parse::<toml_edit::Datetime>()
        .map(Value::from)
        .map_err(|err| ProvisionError::Edit(err.to_string()))
}

/// Appends a `[[wg.peer]]` after the last one (or after `[wg]`), leaving the rest of the
/// text as it was.
pub fn add_peer(text: &str, e: &PeerEntry) -> Result<String, ProvisionError> {
    let mut doc = parse_doc(text)?;
    let wg = doc
        .get_mut("wg")
        .and_then(Item::as_table_mut)
        .ok_or(ProvisionError::NoWg)?;
    let wg_pos = wg.position();
    let mut t = Table::new();
    t.insert("name", toml_edit::value(e.name.as_str()));
    t.insert("public_key", toml_edit::value(e.public_key.to_base64()));
    let mut psk = InlineTable::new();
    psk.insert("file", Value::from(e.psk_file.display().to_string()));
    t.insert("preshared_key", toml_edit::value(psk));
    let mut ips = Array::new();
    for n in &e.allowed_ips {
        ips.push(n.to_string());
    }
    t.insert("allowed_ips", toml_edit::value(ips));
    if let Some(x) = e.expires {
        t.insert("expires", Item::Value(expiry_value(x)?));
    }
    t.decor_mut()
        .set_prefix(format!("\n# {}\n", e.comment.replace('\n', " ")));
    let peers = wg
        .entry("peer")
        .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
    let Some(peers) = peers.as_array_of_tables_mut() else {
        return Err(ProvisionError::Edit(
            "[wg] peer is not an array of tables ([[wg.peer]])".into(),
        ));
    };
    // Rendered in position order: the same position as the last peer (or [wg]) keeps it
    // right after that one, before the next section.
    let pos = peers.iter().filter_map(Table::position).max().or(wg_pos);
    t.set_position(pos);
    peers.push(t);
    Ok(doc.to_string())
}

/// Removes the `[[wg.peer]]` named `name` (with the comment lines above it); returns the
/// new text and the removed peer's preshared-key file, if it named one.
pub fn remove_peer(text: &str, name: &str) -> Result<(String, Option<PathBuf>), ProvisionError> {
    let mut doc = parse_doc(text)?;
    let peers = doc
        .get_mut("wg")
        .and_then(Item::as_table_mut)
        .ok_or(ProvisionError::NoWg)?
        .get_mut("peer")
        .and_then(Item::as_array_of_tables_mut);
    let unknown = || ProvisionError::UnknownPeer {
        name: name.to_owned(),
    };
    let peers = peers.ok_or_else(unknown)?;
    let idx = peers
        .iter()
        .position(|t| t.get("name").and_then(Item::as_str) == Some(name))
        .ok_or_else(unknown)?;
    let psk = peers
        .get(idx)
        .and_then(|t| t.get("preshared_key"))
        .and_then(|p| p.as_inline_table().and_then(|t| t.get("file")))
        .and_then(Value::as_str)
        .map(PathBuf::from);
    peers.remove(idx);
    if peers.is_empty()
        && let Some(wg) = doc.get_mut("wg").and_then(Item::as_table_mut)
    {
        wg.remove("peer");
    }
    Ok((doc.to_string(), psk))
}

/// Sets (or, with `None`, removes) the `expires` of the peer named `name`.
pub fn set_expires(
    text: &str,
    name: &str,
    expires: Option<Expiry>,
) -> Result<String, ProvisionError> {
    let mut doc = parse_doc(text)?;
    let unknown = || ProvisionError::UnknownPeer {
        name: name.to_owned(),
    };
    let peer = doc
        .get_mut("wg")
        .and_then(Item::as_table_mut)
        .ok_or(ProvisionError::NoWg)?
        .get_mut("peer")
        .and_then(Item::as_array_of_tables_mut)
        .and_then(|a| {
            a.iter_mut()
                .find(|t| t.get("name").and_then(Item::as_str) == Some(name))
        })
        .ok_or_else(unknown)?;
    match expires {
        Some(x) => {
            let v = expiry_value(x)?;
            match peer.get_mut("expires").and_then(Item::as_value_mut) {
                // Keep the key's place and its comment; only the value changes.
                Some(old) => {
                    let decor = old.decor().clone();
                    *old = v;
                    *old.decor_mut() = decor;
                }
                None => {
                    peer.insert("expires", Item::Value(v));
                }
            }
        }
        None => {
            peer.remove("expires");
        }
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = include_str!("../../../config/edge.toml");

    fn cfg(text: &str) -> Config {
        edge_config::parse(Path::new("edge.toml"), text)
            .unwrap_or_else(|d| panic!("{}", d.render()))
            .config
    }

    fn entry(name: &str, ips: &[&str]) -> PeerEntry {
        PeerEntry {
            name: name.into(),
            public_key: Key([7; 32]),
            psk_file: psk_path(Path::new("/var/lib/edge"), name),
            allowed_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            expires: None,
            comment: format!("{name}: added by edgectl wg peer add"),
        }
    }

    fn comments(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .collect()
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name("phone"), Ok(()));
        assert_eq!(check_name("alice-laptop.2"), Ok(()));
        for bad in ["", "-x", ".x", "a b", "a/b", "ä", &"x".repeat(33)] {
            assert!(
                matches!(check_name(bad), Err(ProvisionError::BadName { .. })),
                "{bad:?}"
            );
        }
        assert!(
            check_name("a/b")
                .unwrap_err()
                .to_string()
                .contains("e.g. phone")
        );
    }

    #[test]
    fn the_next_free_address_skips_the_host_and_the_peers() {
        let c = cfg(REFERENCE);
        let wg = c.wg.as_ref().unwrap();
        assert_eq!(
            allocate(wg, &[]).unwrap(),
            vec!["10.17.9.3/32".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn a_taken_address_and_a_full_network_are_errors() {
        let c = cfg(REFERENCE);
        let wg = c.wg.as_ref().unwrap();
        let e = allocate(wg, &["10.17.9.2/32".parse().unwrap()]).unwrap_err();
        assert!(
            matches!(&e, ProvisionError::AddressTaken { owner, .. } if owner == "peer \"admin-laptop\""),
            "{e}"
        );
        let e = allocate(wg, &["10.17.9.1/32".parse().unwrap()]).unwrap_err();
        assert!(e.to_string().contains("the host"), "{e}");
        let e = allocate(wg, &["192.168.7.0/24".parse().unwrap()]).unwrap_err();
        assert!(matches!(e, ProvisionError::NoClientAddress { .. }), "{e}");
        // A /30 holds two hosts: the host and admin-laptop take both.
        let small = REFERENCE.replace(
            "addresses = [\"10.17.9.1/24\"]",
            "addresses = [\"10.17.9.1/30\"]",
        );
        let c = cfg(&small);
        let e = allocate(c.wg.as_ref().unwrap(), &[]).unwrap_err();
        assert_eq!(
            e,
            ProvisionError::NetworkFull {
                network: "10.17.9.0/30".parse().unwrap()
            }
        );
    }

    #[test]
    fn the_client_defaults_follow_the_reference_deployment() {
        let c = cfg(REFERENCE);
        let routes: Vec<String> = default_client_routes(&c)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            routes,
            vec![
                "10.17.3.0/24",
                "10.17.4.0/24",
                "10.17.5.0/24",
                "10.17.9.0/24"
            ]
        );
        let ep = default_endpoint(&c).unwrap();
        assert_eq!(ep.endpoint, "example.com:51820");
        assert!(
            ep.warning.unwrap().contains("proxied"),
            "the only record is proxied"
        );
        // Unproxied, the forwards cannot be locked to Cloudflare either.
        let unproxied = REFERENCE
            .replace("proxied = true", "proxied = false")
            .replace("origin_lock = \"cloudflare\"", "");
        assert_eq!(default_endpoint(&cfg(&unproxied)).unwrap().warning, None);
    }

    #[test]
    fn adding_keeps_every_comment_and_removing_restores_the_text() {
        let added = add_peer(REFERENCE, &entry("phone", &["10.17.9.3/32"])).unwrap();
        for c in comments(REFERENCE) {
            assert!(added.contains(c), "comment lost: {c}");
        }
        let c = cfg(&added);
        let wg = c.wg.as_ref().unwrap();
        let names: Vec<&str> = wg.peers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["admin-laptop", "phone"]);
        assert_eq!(
            wg.peers[1].allowed_ips,
            vec!["10.17.9.3/32".parse::<IpNet>().unwrap()]
        );
        // Right after the last peer, before the firewall's section.
        let at = added.find("name = \"phone\"").unwrap();
        assert!(at > added.find("name = \"admin-laptop\"").unwrap());
        assert!(at < added.find("[fw]").unwrap(), "{added}");
        let (back, psk) = remove_peer(&added, "phone").unwrap();
        assert_eq!(back, REFERENCE);
        assert_eq!(psk, Some(PathBuf::from("/var/lib/edge/wg/psk/phone.psk")));
    }

    #[test]
    fn renewing_sets_and_clears_the_expiry_in_place() {
        let mut e = entry("phone", &["10.17.9.3/32"]);
        e.expires = Some(Expiry(1_801_418_400));
        let added = add_peer(REFERENCE, &e).unwrap();
        assert!(added.contains("expires = 2027-01-31T18:00:00Z"), "{added}");
        let renewed = set_expires(&added, "phone", Some(Expiry(1_801_418_400 + 86_400))).unwrap();
        assert_eq!(
            cfg(&renewed).wg.unwrap().peers[1].expires,
            Some(Expiry(1_801_418_400 + 86_400))
        );
        let never = set_expires(&renewed, "phone", None).unwrap();
        assert_eq!(cfg(&never).wg.unwrap().peers[1].expires, None);
        assert_eq!(
            set_expires(REFERENCE, "nobody", None),
            Err(ProvisionError::UnknownPeer {
                name: "nobody".into()
            })
        );
    }

    #[test]
    fn the_first_peer_goes_after_wg() {
        let (none, _) = remove_peer(REFERENCE, "admin-laptop").unwrap();
        assert!(!none.contains("[[wg.peer]]"));
        let added = add_peer(&none, &entry("phone", &["10.17.9.2/32"])).unwrap();
        let at = added.find("[[wg.peer]]").unwrap();
        assert!(at > added.find("[wg]").unwrap() && at < added.find("[fw]").unwrap());
        assert_eq!(cfg(&added).wg.unwrap().peers.len(), 1);
    }

    #[test]
    fn the_client_config_is_wg_quick() {
        let cc = ClientConfig {
            private_key: private_key_from([1; 32]),
            addresses: vec!["10.17.9.3/32".parse().unwrap()],
            server_public_key: Key([2; 32]),
            preshared_key: Key([3; 32]),
            routes: vec![
                "10.17.9.0/24".parse().unwrap(),
                "10.17.3.0/24".parse().unwrap(),
            ],
            endpoint: "vpn.example.com:51820".into(),
        };
        let text = cc.render();
        assert!(text.starts_with("[Interface]\nPrivateKey = "), "{text}");
        assert!(text.contains("Address = 10.17.9.3/32\n"));
        assert!(text.contains(&format!(
            "[Peer]\nPublicKey = {}\n",
            Key([2; 32]).to_base64()
        )));
        assert!(text.contains("AllowedIPs = 10.17.9.0/24, 10.17.3.0/24\n"));
        assert!(text.contains("Endpoint = vpn.example.com:51820\n"));
        let k = private_key_from([0xff; 32]);
        assert_eq!((k.0[0] & 7, k.0[31] & 0xc0), (0, 0x40), "clamped");
    }
}
