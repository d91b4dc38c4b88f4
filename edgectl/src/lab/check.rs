//! `edgectl lab check`: the suite doing its job, step by step, each step pass or fail.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Lab;
use super::net;
use super::serve::NOTIFY_EVENTS;

/// The outcome of one step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// What was checked.
    pub name: String,
    /// Pass or fail.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
    /// How long it took, in milliseconds.
    pub millis: u64,
}

/// All steps of a check run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Seconds the DNS record took to follow the public address, when that step passed.
    pub record_follow_seconds: Option<f64>,
    /// Measured figures, one line each (two-host lab: failover times, pauses, writes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub figures: Vec<String>,
}

impl Report {
    /// True when every step passed.
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.ok)
    }

    /// Human rendering.
    pub fn render(&self) -> String {
        let mut o = String::new();
        for (i, s) in self.steps.iter().enumerate() {
            let _ = writeln!(
                o,
                "[{}] {}. {} ({} ms)\n       {}",
                if s.ok { "PASS" } else { "FAIL" },
                i + 1,
                s.name,
                s.millis,
                s.detail
            );
        }
        for f in &self.figures {
            let _ = writeln!(o, "figure: {f}");
        }
        let passed = self.steps.iter().filter(|s| s.ok).count();
        let _ = writeln!(o, "{passed}/{} checks passed", self.steps.len());
        o
    }
}

fn curl(lab: &Lab, node: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["-sS", "--max-time", "3"];
    all.extend_from_slice(args);
    match lab.topo().ns(node).output("curl", &all) {
        Ok(o) => (
            o.status.success(),
            if o.status.success() {
                String::from_utf8_lossy(&o.stdout).trim().to_owned()
            } else {
                String::from_utf8_lossy(&o.stderr).trim().to_owned()
            },
        ),
        Err(e) => (false, format!("{e:#}")),
    }
}

/// The A record of example.com as the Cloudflare test server holds it.
pub fn record_of(lab: &Lab) -> Option<String> {
    record(lab)
}

fn record(lab: &Lab) -> Option<String> {
    let token = std::fs::read_to_string(lab.dir.join("token")).ok()?;
    let zone = std::fs::read_to_string(lab.dir.join("zone-id")).ok()?;
    let ca = lab.dir.join("ca.pem");
    let url = format!(
        "https://{}/client/v4/zones/{}/dns_records?name=example.com&type=A",
        net::API_IP,
        zone.trim()
    );
    let auth = format!("Authorization: Bearer {}", token.trim());
    let (ok, body) = curl(
        lab,
        "inet",
        &["--cacert", &ca.to_string_lossy(), "-H", &auth, &url],
    );
    if !ok {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["result"]
        .as_array()?
        .iter()
        .find_map(|r| r["content"].as_str().map(str::to_owned))
}

/// The router's current public address.
fn public_ip(lab: &Lab) -> String {
    let out = lab
        .topo()
        .ns("router")
        .output("ip", &["-j", "-4", "addr", "show", "dev", "wan"]);
    out.ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .and_then(|v| v[0]["addr_info"][0]["local"].as_str().map(str::to_owned))
        .unwrap_or_else(|| net::PUBLIC_IP.to_owned())
}

fn latest_handshake(lab: &Lab) -> u64 {
    let out = lab
        .topo()
        .ns("remote")
        .output("wg", &["show", &lab.remote_if(), "latest-handshakes"]);
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .nth(1)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0)
    })
    .unwrap_or(0)
}

/// The documents the webhook receiver got, from line `from` of its file on.
fn notifications(lab: &Lab, from: usize) -> Vec<serde_json::Value> {
    std::fs::read_to_string(lab.dir.join(NOTIFY_EVENTS))
        .unwrap_or_default()
        .lines()
        .skip(from)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["body"].clone())
        .collect()
}

/// Lines in the webhook receiver's file so far.
fn notification_count(lab: &Lab) -> usize {
    std::fs::read_to_string(lab.dir.join(NOTIFY_EVENTS))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// The sum of the series of edge-ddns's exporter whose line starts with `prefix` (read in
/// the host namespace).
fn ddns_metric(lab: &Lab, prefix: &str) -> Option<f64> {
    let (ok, text) = curl(lab, "host", &["http://127.0.0.1:9851/metrics"]);
    if !ok {
        return None;
    }
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Calls `f` every 100 ms until it gives a value or `timeout` has passed.
fn poll<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    poll_every(timeout, Duration::from_millis(100), f)
}

/// Calls `f` every `every` until it gives a value or `timeout` has passed.
pub(super) fn poll_every<T>(
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// The steps of a run as they are taken.
#[derive(Debug, Default)]
pub(super) struct Steps(pub(super) Vec<Step>);

impl Steps {
    /// Takes one step: `f` says whether it passed and what it saw; it is timed.
    pub(super) fn take(&mut self, name: String, f: impl FnOnce() -> (bool, String)) {
        let t = Instant::now();
        let (ok, detail) = f();
        self.0.push(Step {
            name,
            ok,
            detail,
            millis: t.elapsed().as_millis() as u64,
        });
    }
}

/// A request from inet that must not get through: passes when curl gets no answer.
/// `expected` says how it failed (`refused`).
fn blocked(lab: &Lab, url: &str, expected: &str) -> (bool, String) {
    let (ok, body) = curl(lab, "inet", &["--max-time", "2", url]);
    (
        !ok,
        if ok {
            format!("reached it: {body}")
        } else {
            format!("{expected} as it should be: {body}")
        },
    )
}

/// Runs every step.
pub fn run(lab: &Lab) -> Report {
    let mut steps = Steps::default();
    let public = public_ip(lab);
    ingress(lab, &mut steps, &public);
    origin_lock(lab, &mut steps, &public);
    record_holds_public(lab, &mut steps, &public);
    handshake(lab, &mut steps);
    ping_api_vip(lab, &mut steps);
    remote_reaches_api(lab, &mut steps);
    inet_kept_out(lab, &mut steps, &public);
    notify_test(lab, &mut steps);
    let next = if public == net::PUBLIC_IP {
        net::PUBLIC_IP_NEXT
    } else {
        net::PUBLIC_IP
    };
    let seen_before_change = notification_count(lab);
    let follow = record_follows(lab, &mut steps, &public, next);
    record_changed_notified(lab, &mut steps, &public, next, seen_before_change);
    remote_follows(lab, &mut steps, next);
    Report {
        steps: steps.0,
        record_follow_seconds: follow,
        figures: Vec::new(),
    }
}

/// Steps 1-2: Cloudflare's edge reaches the ingress VIP on 80 and 443.
fn ingress(lab: &Lab, steps: &mut Steps, public: &str) {
    for port in [80, 443] {
        steps.take(
            format!(
                "Cloudflare's edge ({}) reaches the ingress VIP: {public}:{port} → router → br-api {} → DNAT → {}:{port}",
                net::CF_EDGE_IP,
                net::HOST_IP,
                net::INGRESS_VIP
            ),
            || {
                let (ok, body) = curl(
                    lab,
                    "inet",
                    &[
                        "--interface",
                        net::CF_EDGE_IP,
                        &format!("http://{public}:{port}/"),
                    ],
                );
                let want = format!("{}:{port} answered", net::INGRESS_VIP);
                (ok && body.contains(&want), body)
            },
        );
    }
}

/// Step 3: the origin lock drops a direct hit from outside Cloudflare's ranges.
fn origin_lock(lab: &Lab, steps: &mut Steps, public: &str) {
    steps.take(
        format!(
            "a direct hit on {public}:443 from outside Cloudflare's ranges ({}) is dropped by the origin lock",
            net::INET_GW
        ),
        || blocked(lab, &format!("http://{public}:443/"), "no answer,"),
    );
}

/// Step 4: the DDNS record holds the public address.
fn record_holds_public(lab: &Lab, steps: &mut Steps, public: &str) {
    steps.take(
        format!("the DDNS record example.com A holds the router's public address {public}"),
        || match poll(Duration::from_secs(30), || {
            record(lab).filter(|r| *r == public)
        }) {
            Some(r) => (true, format!("Cloudflare test server: example.com A {r}")),
            None => (false, format!("record is {:?}", record(lab))),
        },
    );
}

/// Step 5: the remote peer's WireGuard handshake with edge-wg.
fn handshake(lab: &Lab, steps: &mut Steps) {
    steps.take(
        "the remote peer (wireguard-go) completes a WireGuard handshake with edge-wg".to_owned(),
        || {
            let _ = lab
                .topo()
                .ns("remote")
                .output("ping", &["-c1", "-W1", "10.17.9.1"]);
            match poll(Duration::from_secs(20), || {
                Some(latest_handshake(lab)).filter(|t| *t > 0)
            }) {
                Some(t) => (true, format!("latest handshake at unix time {t}")),
                None => (false, "no handshake within 20 s".to_owned()),
            }
        },
    );
}

/// Step 6: the remote peer pings the API VIP through the tunnel.
fn ping_api_vip(lab: &Lab, steps: &mut Steps) {
    steps.take(
        format!(
            "the remote peer pings the API VIP {} over WireGuard",
            net::API_VIP
        ),
        || match lab
            .topo()
            .ns("remote")
            .output("ping", &["-c3", "-i0.2", "-W2", net::API_VIP])
        {
            Ok(o) => {
                let text = String::from_utf8_lossy(&o.stdout);
                let summary = text
                    .lines()
                    .find(|l| l.contains("packets transmitted"))
                    .unwrap_or_default()
                    .to_owned();
                (o.status.success(), summary)
            }
            Err(e) => (false, format!("{e:#}")),
        },
    );
}

/// Steps 7-8: the remote peer reaches the API directly and through the k8s-api forward.
fn remote_reaches_api(lab: &Lab, steps: &mut Steps) {
    for (target, how) in [
        (
            format!("{}:6443", net::API_VIP),
            "directly through the tunnel",
        ),
        (
            format!("{}:6443", net::HOST_IP),
            "through the k8s-api forward (from the WireGuard network only)",
        ),
    ] {
        steps.take(format!("the remote peer reaches {target} {how}"), || {
            let (ok, body) = curl(lab, "remote", &[&format!("http://{target}/")]);
            let want = format!("{}:6443 answered", net::API_VIP);
            (ok && body.contains(&want), body)
        });
    }
}

/// Steps 9-10: inet cannot reach the API, neither on the host nor on the public address.
fn inet_kept_out(lab: &Lab, steps: &mut Steps, public: &str) {
    for target in [format!("{}:6443", net::HOST_IP), format!("{public}:6443")] {
        steps.take(format!("inet cannot reach {target}"), || {
            blocked(lab, &format!("http://{target}/"), "refused")
        });
    }
}

/// Step 11: `edgectl notify test` reaches the webhook receiver, once.
fn notify_test(lab: &Lab, steps: &mut Steps) {
    steps.take(
        format!(
            "`edgectl notify test` on the host reaches the webhook receiver in inet ({})",
            net::HOOK_IP
        ),
        || {
            let before = notification_count(lab);
            let edgectl = lab.bin.join("edgectl");
            let cfg = lab.config_path();
            let out = lab.topo().ns("host").output(
                &edgectl.to_string_lossy(),
                &["--config", &cfg.to_string_lossy(), "notify", "test"],
            );
            let said = match out {
                Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                Ok(o) => {
                    return (
                        false,
                        format!(
                            "{}{}",
                            String::from_utf8_lossy(&o.stdout),
                            String::from_utf8_lossy(&o.stderr)
                        ),
                    );
                }
                Err(e) => return (false, format!("{e:#}")),
            };
            let tests: Vec<_> = notifications(lab, before)
                .into_iter()
                .filter(|d| d["kind"] == "test" && d["source"] == "edgectl")
                .collect();
            (
                tests.len() == 1,
                format!("{said}; the receiver got {} test event(s)", tests.len()),
            )
        },
    );
}

/// Step 12: the ISP changes the public address and the record follows; returns how many
/// seconds that took.
fn record_follows(lab: &Lab, steps: &mut Steps, public: &str, next: &str) -> Option<f64> {
    let mut follow = None;
    steps.take(
        format!("the ISP changes the public address {public} → {next}; the DDNS record follows"),
        || {
            if let Err(e) = lab.topo().change_public_ip(public, next) {
                return (false, format!("{e:#}"));
            }
            let t = Instant::now();
            match poll(Duration::from_secs(60), || {
                record(lab).filter(|r| r == next)
            }) {
                Some(_) => {
                    let s = t.elapsed().as_secs_f64();
                    follow = Some(s);
                    (true, format!("example.com A {next} after {s:.1} s"))
                }
                None => (false, format!("record still {:?} after 60 s", record(lab))),
            }
        },
    );
    follow
}

/// Step 13: exactly one ddns.record_changed reached the webhook receiver for the change;
/// `seen` is how many documents it had before.
fn record_changed_notified(lab: &Lab, steps: &mut Steps, public: &str, next: &str, seen: usize) {
    steps.take(
        format!(
            "the webhook receiver got exactly one ddns.record_changed naming {public} and {next}"
        ),
        || {
            let changed = |d: &serde_json::Value| d["kind"] == "ddns.record_changed";
            let names_both =
                |d: &serde_json::Value| d["data"]["old"] == public && d["data"]["new"] == next;
            let syncs = || ddns_metric(lab, "edge_ddns_syncs_total{");
            let Some(syncs_then) = poll(Duration::from_secs(20), || {
                notifications(lab, seen)
                    .iter()
                    .any(|d| changed(d) && names_both(d))
                    .then(syncs)
                    .flatten()
            }) else {
                return (
                    false,
                    format!(
                        "no such event within 20 s; received since the change: {:?}",
                        notifications(lab, seen)
                    ),
                );
            };
            // A duplicate could only come from a later sync (or a retry): wait until a whole
            // sync ran after the one that sent it, and edge-ddns has nothing left to deliver.
            let settled = poll(Duration::from_secs(30), || {
                (syncs().is_some_and(|n| n >= syncs_then + 2.0)
                    && ddns_metric(lab, "edge_notify_queue_length{target=\"lab\"}") == Some(0.0))
                .then_some(())
            });
            if settled.is_none() {
                return (
                    false,
                    "edge-ddns did not finish two more syncs within 30 s".to_owned(),
                );
            }
            let events: Vec<_> = notifications(lab, seen)
                .into_iter()
                .filter(changed)
                .collect();
            match events.as_slice() {
                [e] if names_both(e) => (
                    true,
                    format!(
                        "{}: {}",
                        e["kind"].as_str().unwrap_or_default(),
                        e["summary"].as_str().unwrap_or_default()
                    ),
                ),
                _ => (
                    false,
                    format!(
                        "{} ddns.record_changed event(s) since the change: {events:?}",
                        events.len()
                    ),
                ),
            }
        },
    );
}

/// Step 14: the remote peer is pointed at the new address and the tunnel works again.
fn remote_follows(lab: &Lab, steps: &mut Steps, next: &str) {
    steps.take(
        format!("the remote peer follows the record to {next} and the tunnel works again"),
        || {
            let host_pub = std::fs::read_to_string(lab.dir.join("wg-host.pub")).unwrap_or_default();
            let endpoint = format!("{next}:51820");
            let set = lab.topo().ns("remote").output(
                "wg",
                &[
                    "set",
                    &lab.remote_if(),
                    "peer",
                    host_pub.trim(),
                    "endpoint",
                    &endpoint,
                ],
            );
            if let Err(e) = set {
                return (false, format!("{e:#}"));
            }
            match poll(Duration::from_secs(20), || {
                let (ok, body) = curl(
                    lab,
                    "remote",
                    &["--max-time", "2", &format!("http://{}:6443/", net::API_VIP)],
                );
                (ok && body.contains("answered")).then_some(body)
            }) {
                Some(b) => (true, b),
                None => (
                    false,
                    "the API VIP is not reachable through the tunnel".to_owned(),
                ),
            }
        },
    );
}
