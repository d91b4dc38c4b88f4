//! Pure: the lab's copy of the reference configuration (config/edge.toml, embedded), pointed
//! at the lab's test endpoints and files.

use std::path::Path;

/// The reference deployment, embedded at build time.
pub const REFERENCE: &str = include_str!("../../../config/edge.toml");

/// Sets `key = value` in `[section]` (or the first `[[section]]`), replacing the existing line or adding one right after
/// the header. Fails when the section is missing.
pub fn set_key(text: &str, section: &str, key: &str, value: &str) -> anyhow::Result<String> {
    let header = format!("[{section}]");
    let array_header = format!("[[{section}]]");
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == header || l.trim() == array_header)
        .ok_or_else(|| anyhow::anyhow!("the reference config has no {header} section"))?;
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .map_or(lines.len(), |p| start + 1 + p);
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let new = format!("{key} = {value}");
    match (start + 1..end).find(|&i| {
        let l = lines[i].trim_start();
        l.starts_with(key) && l[key.len()..].trim_start().starts_with('=')
    }) {
        Some(i) => out[i] = new,
        None => out.insert(start + 1, new),
    }
    Ok(out.join("\n") + "\n")
}

/// Removes every `[[header]]` table (up to the next table header).
pub fn drop_tables(text: &str, header: &str) -> String {
    let target = format!("[[{header}]]");
    let mut out = Vec::new();
    let mut skipping = false;
    for l in text.lines() {
        let t = l.trim_start();
        if t.starts_with('[') {
            skipping = t.trim_end() == target;
        }
        if !skipping {
            out.push(l);
        }
    }
    out.join("\n") + "\n"
}

/// What the lab substitutes into the reference configuration.
#[derive(Debug, Clone)]
pub struct LabValues<'a> {
    /// The lab's directory (secrets, sockets, state).
    pub dir: &'a Path,
    /// The WireGuard interface name on the host.
    pub wg_if: &'a str,
    /// The remote peer's public key.
    pub remote_public_key: &'a str,
    /// The Cloudflare API base URL.
    pub api_url: &'a str,
    /// Echo services: (name, kind, url).
    pub sources: &'a [(&'a str, &'a str, String)],
    /// The webhook receiver's address.
    pub hook_ip: &'a str,
}

fn q(s: impl AsRef<str>) -> String {
    format!("\"{}\"", s.as_ref())
}

/// The lab copy of the reference configuration: the daemons run as processes of the lab,
/// with state, sockets and secrets in the lab's directory.
pub fn lab_config(v: &LabValues<'_>) -> anyhow::Result<String> {
    let d = v.dir.display();
    let mut t = REFERENCE.to_owned();
    t = set_key(&t, "global", "state_dir", &q(format!("{d}/state")))?;
    t = set_key(&t, "global", "runtime_dir", &q(format!("{d}/run")))?;
    t = set_key(&t, "global", "log_format", &q("text"))?;
    t = lab_secrets(&t, v.dir)?;
    t = world(t, v, &format!("{d}/ca.pem"))?;
    Ok(notify(t, v, "lab-host", &format!("{d}/notify-ca.pem")))
}

/// Points the interface's key, the Cloudflare token and the Cloudflare test CA at the files
/// in the lab's directory `dir` (for the two-host lab, one set shared by both hosts).
pub fn lab_secrets(text: &str, dir: &Path) -> anyhow::Result<String> {
    let d = dir.display();
    let t = set_key(
        text,
        "wg",
        "private_key",
        &format!("{{ file = \"{d}/wg-host.key\" }}"),
    )?;
    let t = set_key(&t, "ddns", "token", &format!("{{ file = \"{d}/token\" }}"))?;
    set_key(&t, "ddns", "ca_file", &q(format!("{d}/ca.pem")))
}

/// Where an installed host keeps the lab's Cloudflare test CA (`/etc/edge/lab-ca.pem`).
pub const INSTALLED_CA: &str = "/etc/edge/lab-ca.pem";
/// Where an installed host keeps the lab's webhook receiver's test CA.
pub const INSTALLED_NOTIFY_CA: &str = "/etc/edge/lab-notify-ca.pem";

/// The reference configuration as an installed host runs it in the lab's host namespace:
/// the packaged paths (`/var/lib/edge`, `/run/edge`), the secrets as systemd credentials,
/// the lab's Cloudflare test server (its CA at [`INSTALLED_CA`]), echo services and webhook
/// receiver (its CA at [`INSTALLED_NOTIFY_CA`]).
pub fn installed_config(v: &LabValues<'_>) -> anyhow::Result<String> {
    let t = set_key(REFERENCE, "ddns", "ca_file", &q(INSTALLED_CA))?;
    let t = world(t, v, INSTALLED_CA)?;
    Ok(notify(t, v, "installed-host", INSTALLED_NOTIFY_CA))
}

/// Every daemon notifies the webhook receiver in `inet` (HTTPS, its own test CA).
fn notify(mut t: String, v: &LabValues<'_>, host: &str, ca: &str) -> String {
    t.push_str(&format!(
        "\n[notify]\nhost = {}\nca_file = {}\n\n[[notify.webhook]]\nname = \"lab\"\nurl = \"https://{}/hook\"\n",
        q(host),
        q(ca),
        v.hook_ip
    ));
    t
}

/// Points a configuration at the lab's world: the remote peer, the Cloudflare test server
/// (the DNS API and the origin lock's list of ranges, trusted through `ca`), the echo
/// services, a 5-second schedule.
fn world(mut t: String, v: &LabValues<'_>, ca: &str) -> anyhow::Result<String> {
    t = set_key(&t, "wg.peer", "public_key", &q(v.remote_public_key))?;
    t = set_key(&t, "ddns", "api_url", &q(v.api_url))?;
    // Every 5 seconds, so the lab shows the record following the address quickly.
    t = set_key(&t, "ddns", "schedule", &q("*/5 * * * * *"))?;
    t = t.replace("\"wg0\"", &q(v.wg_if));
    // The origin lock's ranges come from the test server, never from Cloudflare.
    t.push_str(&format!(
        "\n[fw.origin_lock]\nurl = {}\nca_file = {}\n",
        q(format!("{}/ips", v.api_url)),
        q(ca)
    ));
    t = drop_tables(&t, "ddns.source");
    for (name, kind, url) in v.sources {
        t.push_str(&format!(
            "\n[[ddns.source]]\nname = {}\nkind = {}\nurl = {}\nfamily = \"ipv4\"\n",
            q(name),
            q(kind),
            q(url)
        ));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lab's values in `/run/edge-lab` with these detection sources.
    fn values<'a>(sources: &'a [(&'a str, &'a str, String)]) -> LabValues<'a> {
        LabValues {
            dir: Path::new("/run/edge-lab"),
            wg_if: "wg0",
            remote_public_key: "Ec/rMvGHRVI/+BJqbmET/fg+8vmgnl3z32BhCosLO08=",
            api_url: "https://82.0.0.10/client/v4",
            sources,
            hook_ip: "82.0.0.20",
        }
    }

    /// The origin lock's ranges come from the test server, trusted through `ca`.
    fn assert_origin_lock_from_the_test_server(fw: &edge_config::fw::Fw, ca: &Path) {
        assert_eq!(
            fw.origin_lock.url.to_string(),
            "https://82.0.0.10/client/v4/ips"
        );
        assert_eq!(fw.origin_lock.ca_file.as_deref(), Some(ca));
    }

    #[test]
    fn the_lab_config_is_valid_and_points_at_the_lab() {
        let sources = [
            ("echo", "http", "http://82.0.0.11/".to_owned()),
            (
                "trace",
                "cloudflare-trace",
                "http://82.0.0.12/cdn-cgi/trace".to_owned(),
            ),
        ];
        let text = lab_config(&values(&sources)).unwrap();
        let loaded = edge_config::parse(Path::new("lab.toml"), &text)
            .unwrap_or_else(|d| panic!("{d}\n{text}"));
        let c = loaded.config;
        assert_eq!(c.global.runtime_dir, Path::new("/run/edge-lab/run"));
        let n = c.notify.as_ref().unwrap();
        assert_eq!(n.webhooks[0].url.to_string(), "https://82.0.0.20/hook");
        assert_eq!(
            n.ca_file.as_deref(),
            Some(Path::new("/run/edge-lab/notify-ca.pem"))
        );
        let ddns = c.ddns.unwrap();
        assert_eq!(ddns.api_url.to_string(), "https://82.0.0.10/client/v4");
        assert_eq!(ddns.sources.len(), 2);
        assert_eq!(ddns.ca_file.unwrap(), Path::new("/run/edge-lab/ca.pem"));
        let wg = c.wg.unwrap();
        assert_eq!(
            wg.peers[0].public_key.to_base64(),
            "Ec/rMvGHRVI/+BJqbmET/fg+8vmgnl3z32BhCosLO08="
        );
        assert_origin_lock_from_the_test_server(
            c.fw.as_ref().unwrap(),
            Path::new("/run/edge-lab/ca.pem"),
        );
        // Everything else is the reference deployment.
        assert_eq!(c.fw.unwrap().forwards.len(), 3);
        assert_eq!(c.link.unwrap().bridges.len(), 3);
    }

    #[test]
    fn the_installed_config_keeps_the_packaged_paths_and_credentials() {
        let sources = [
            ("echo", "http", "http://82.0.0.11/".to_owned()),
            ("echo-b", "http", "http://82.0.0.12/".to_owned()),
        ];
        let text = installed_config(&values(&sources)).unwrap();
        assert!(!text.contains("/run/edge-lab"), "{text}");
        let c = edge_config::parse(Path::new("/etc/edge/edge.toml"), &text)
            .unwrap_or_else(|d| panic!("{d}\n{text}"))
            .config;
        assert_eq!(c.global.runtime_dir, Path::new("/run/edge"));
        assert_eq!(c.global.state_dir, Path::new("/var/lib/edge"));
        let n = c.notify.as_ref().unwrap();
        assert_eq!(n.webhooks[0].url.to_string(), "https://82.0.0.20/hook");
        assert_eq!(n.ca_file.as_deref(), Some(Path::new(INSTALLED_NOTIFY_CA)));
        assert_origin_lock_from_the_test_server(c.fw.as_ref().unwrap(), Path::new(INSTALLED_CA));
        let ddns = c.ddns.unwrap();
        assert_eq!(ddns.ca_file.unwrap(), Path::new(INSTALLED_CA));
        assert_eq!(ddns.token.credential.as_deref(), Some("cloudflare-token"));
        assert_eq!(ddns.sources.len(), 2);
        let wg = c.wg.unwrap();
        assert_eq!(wg.private_key.credential.as_deref(), Some("wg-private-key"));
    }

    #[test]
    fn set_key_replaces_or_inserts_inside_the_section_only() {
        let t = "[a]\nx = 1\n[b]\nx = 2\n";
        assert_eq!(
            set_key(t, "b", "x", "3").unwrap(),
            "[a]\nx = 1\n[b]\nx = 3\n"
        );
        assert_eq!(
            set_key(t, "a", "y", "4").unwrap(),
            "[a]\ny = 4\nx = 1\n[b]\nx = 2\n"
        );
        assert!(set_key(t, "c", "x", "1").is_err());
        assert_eq!(
            drop_tables("[[s]]\na = 1\n[t]\nb = 2\n", "s"),
            "[t]\nb = 2\n"
        );
    }
}
