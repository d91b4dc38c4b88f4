//! Benchmark of issue 3 (point 8): prints figures, asserts nothing.
//!
//! - reaction: from the start of the detection run that first sees a new address to the
//!   PATCH arriving at the API (in-process, n runs), and end to end through the daemon from
//!   a WAN address change (netlink event, debounce 200 ms) to the PATCH;
//! - API calls per simulated day in steady state (1,440 runs on the default 60 s schedule,
//!   default verify_interval 1 h), writes included;
//! - the seed script (bash + curl + jq, the user's cron job) run against the same test
//!   server as the anchor: its calls per run, its wall time, what its PUT does to the record;
//! - the daemon's resident memory when idle.
//!
//! Everything runs inside a fresh network namespace on its loopback (root needed).
//! Run: `cargo bench -p edge-ddns --bench ddns`.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use edge_ddns::sync::Syncer;
use edge_testkit::{in_new_netns, run_ok, wait_for};
use hyper::Method;

const T0: u64 = 1_800_000_000;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ip(n: u32) -> String {
    format!("81.2.69.{}", 100 + (n % 100))
}

/// The user's cron script, as described in issue 3 (GET the record, PUT when it differs).
const SEED_SCRIPT: &str = r#"set -eu
ip=$(curl -fsS "$ECHO")
rec=$(curl -fsS -H "Authorization: Bearer $CF_TOKEN" "$API/zones/$ZONE/dns_records?type=A&name=example.com")
cur=$(printf '%s' "$rec" | jq -r '.result[0].content')
id=$(printf '%s' "$rec" | jq -r '.result[0].id')
if [ "$ip" != "$cur" ]; then
  curl -fsS -X PUT -H "Authorization: Bearer $CF_TOKEN" -H "Content-Type: application/json" \
    "$API/zones/$ZONE/dns_records/$id" \
    -d "{\"type\":\"A\",\"name\":\"example.com\",\"content\":\"$ip\",\"proxied\":true,\"ttl\":120}" >/dev/null
fi
"#;

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    in_new_netns(run);
}

fn run() {
    println!("edge-ddns benchmark (figures only; targets from issue 3)\n");

    // ---- reaction, in process -----------------------------------------------------------
    let lab = Lab::new();
    let cfg = lab.config("", "");
    let mut s = lab.syncer(&cfg);
    let first = sync(&mut s, T0);
    assert!(first.ok, "{first:?}");
    reaction_in_process(&lab, &mut s);

    // ---- API calls per simulated day ----------------------------------------------------
    steady_day(&lab, &mut s);

    // ---- the seed script against the same server -----------------------------------------
    seed_script(&lab);

    // ---- daemon: event path and idle RSS -------------------------------------------------
    drop(s);
    let lab = Lab::new();
    let mut child = start_daemon(&lab);
    let pid = child.id();
    event_path(&lab);
    idle_memory(pid);
    stop_daemon(&mut child);
}

/// Reaction, in process: a detection run that first sees a new address -> the PATCH.
fn reaction_in_process(lab: &Lab, s: &mut Syncer) {
    let n = 30u32;
    let mut reaction = Vec::new();
    let mut detection = Vec::new();
    for i in 1..=n {
        let addr = ip(i);
        lab.set_all(Some(&addr));
        lab.cf.clear_log();
        let start = Instant::now();
        let r = sync(s, T0 + u64::from(i) * 60);
        assert!(r.ok, "{r:?}");
        let log = lab.log();
        let patch = log
            .iter()
            .find(|l| l.method == Method::PATCH)
            .expect("a PATCH per change");
        let first_api = log.first().map_or(patch.at, |l| l.at);
        reaction.push(ms(patch.at.duration_since(start)));
        detection.push(ms(first_api.duration_since(start)));
    }
    reaction.sort_by(f64::total_cmp);
    detection.sort_by(f64::total_cmp);
    let max = reaction[reaction.len() - 1];
    println!("reaction: detection run sees a new address -> PATCH received (n={n}, loopback)");
    println!(
        "  edge-ddns        median {:7.1} ms   p95 {:7.1} ms   max {:7.1} ms   (detection part: median {:.1} ms)",
        pct(&reaction, 0.5),
        pct(&reaction, 0.95),
        max,
        pct(&detection, 0.5)
    );
    println!(
        "  target           within 2000 ms                                  -> {}",
        if max <= 2000.0 { "met" } else { "MISSED" }
    );
    println!(
        "  seed script      up to 300000 ms (cron every 5 min), 150000 ms on average -> edge-ddns is {:.0}x faster at worst",
        300_000.0 / max.max(0.001)
    );
}

/// API calls (and echo requests) in one simulated day of runs every 60 s.
fn steady_day(lab: &Lab, s: &mut Syncer) {
    lab.cf.clear_log();
    let echo_hits_before: u64 = lab.echoes.iter().map(|e| e.hits()).sum();
    let day_start = T0 + 3600 * 24;
    let started = Instant::now();
    let runs: u32 = 24 * 60;
    for k in 0..runs {
        let r = sync(s, day_start + u64::from(k) * 60);
        assert!(r.ok);
    }
    let sim = started.elapsed();
    let calls = lab.log().len();
    let writes = lab.writes().len();
    let echo_hits: u64 = lab.echoes.iter().map(|e| e.hits()).sum::<u64>() - echo_hits_before;
    println!(
        "\nsteady state: one simulated day = {runs} runs every 60 s, verify_interval 1 h (simulated in {:.1} s)",
        sim.as_secs_f64()
    );
    println!(
        "  edge-ddns        {calls:4} Cloudflare API calls/day, {writes} writes   (target <= 24 and 0)"
    );
    println!(
        "  seed script       288 Cloudflare API calls/day (a GET every 5 min)   -> ratio {:.1}x fewer",
        288.0 / (calls.max(1) as f64)
    );
    println!(
        "  detection        {echo_hits} echo requests/day ({} sources x {runs} runs, one cheap request each); seed script: 288 to ipify",
        lab.echoes.len()
    );
}

/// The user's seed script run against the same test server, as the anchor.
fn seed_script(lab: &Lab) {
    let rec_before = lab.a_records()[0].clone();
    let token_file = lab.dir.path().join("token");
    let script = |echo: &str| {
        let start = Instant::now();
        let out = Command::new("bash")
            .args(["-c", SEED_SCRIPT])
            .env("ECHO", echo)
            .env("API", lab.cf.url())
            .env("ZONE", &lab.zone)
            .env(
                "CF_TOKEN",
                std::fs::read_to_string(&token_file).unwrap().trim(),
            )
            .output()
            .expect("bash");
        (
            out.status.success(),
            start.elapsed(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    lab.cf.clear_log();
    let (ok1, t_same, e1) = script(&lab.echoes[0].url());
    let calls_same = lab.log().len();
    lab.echoes[0].set_answer(Some("81.2.69.250"));
    lab.cf.clear_log();
    let (ok2, t_change, e2) = script(&lab.echoes[0].url());
    let calls_change = lab.log().len();
    let after = lab.a_records()[0].clone();
    println!("\nseed script (bash+curl+jq) run against the same test server, as the anchor");
    if ok1 && ok2 {
        println!(
            "  no change: {calls_same} API call(s) in {:.1} ms; change: {calls_change} API call(s) (PUT) in {:.1} ms",
            ms(t_same),
            ms(t_change)
        );
        println!(
            "  its PUT left comment={} ttl={} (before: comment={} ttl={}): PUT wipes what it does not send",
            after
                .get("comment")
                .map_or("none".to_owned(), |c| c.to_string()),
            after["ttl"],
            rec_before
                .get("comment")
                .map_or("none".to_owned(), |c| c.to_string()),
            rec_before["ttl"]
        );
    } else {
        println!("  the script failed (curl or jq missing?): {e1} {e2}");
    }
}

/// The daemon on a veth WAN interface (holding IP1) whose events it follows, with a 200 ms
/// debounce.
fn start_daemon(lab: &Lab) -> Child {
    run_ok(
        "ip",
        [
            "link", "add", "edd0", "type", "veth", "peer", "name", "edd1",
        ],
    );
    run_ok("ip", ["link", "set", "edd0", "up"]);
    run_ok("ip", ["addr", "add", &format!("{IP1}/32"), "dev", "edd0"]);
    let text = lab
        .config_text("wan_interface = \"edd0\"\ndebounce = \"200ms\"", "")
        .replace(
            &format!(
                "[[ddns.source]]\nname = \"trace-b\"\nkind = \"cloudflare-trace\"\nurl = \"{}\"\nfamily = \"ipv4\"\n",
                lab.echoes[1].url()
            ),
            "[[ddns.source]]\nname = \"wan\"\nkind = \"interface\"\ninterface = \"edd0\"\nfamily = \"ipv4\"\n",
        );
    let cfg = lab.dir.path().join("edge.toml");
    std::fs::write(&cfg, &text).unwrap();
    lab.echoes[2].set_answer(None);
    Command::new(env!("CARGO_BIN_EXE_edge-ddns"))
        .args(["--log-level", "warn", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edge-ddns")
}

/// The daemon's event path: WAN address change (netlink) -> PATCH received.
fn event_path(lab: &Lab) {
    let created = wait_for(Duration::from_secs(10), || lab.a_records().len() == 1).is_some();
    let mut events = Vec::new();
    if created {
        for i in 0..5u32 {
            let (old, new) = (
                if i == 0 {
                    IP1.to_owned()
                } else {
                    ip(200 + i - 1)
                },
                ip(200 + i),
            );
            lab.echoes[0].set_answer(Some(&new));
            lab.cf.clear_log();
            let start = Instant::now();
            run_ok("ip", ["addr", "del", &format!("{old}/32"), "dev", "edd0"]);
            run_ok("ip", ["addr", "add", &format!("{new}/32"), "dev", "edd0"]);
            let seen = wait_for(Duration::from_secs(10), || {
                lab.log()
                    .iter()
                    .any(|l| l.method == Method::PATCH && l.status == 200)
            });
            if seen.is_some() {
                let at = lab
                    .log()
                    .into_iter()
                    .find(|l| l.method == Method::PATCH)
                    .map(|l| l.at);
                if let Some(at) = at {
                    events.push(ms(at.duration_since(start)));
                }
            }
        }
    }
    println!(
        "\ndaemon, event path: WAN address change (netlink) -> PATCH received, debounce 200 ms"
    );
    if events.is_empty() {
        println!("  no reaction measured (daemon did not start or react)");
    } else {
        events.sort_by(f64::total_cmp);
        println!(
            "  n={}  median {:.1} ms  max {:.1} ms  (of which debounce 200 ms; the default debounce is 2 s)",
            events.len(),
            pct(&events, 0.5),
            events[events.len() - 1]
        );
    }
}

/// The daemon's resident memory when idle.
fn idle_memory(pid: u32) {
    // Idle: let it settle after the last sync, then read VmRSS.
    std::thread::sleep(Duration::from_secs(3));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let hwm_kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    println!(
        "\ndaemon memory when idle: VmRSS {:.1} MiB (peak {:.1} MiB); target <= 12 MiB -> {} ({:.0}% of target)",
        rss_kib / 1024.0,
        hwm_kib / 1024.0,
        if rss_kib / 1024.0 <= 12.0 {
            "met"
        } else {
            "MISSED"
        },
        rss_kib / 1024.0 / 12.0 * 100.0
    );
    println!("  {}", memory_breakdown(pid));
}

/// SIGTERM, then what the daemon warned about.
fn stop_daemon(child: &mut Child) {
    let pid = child.id();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = wait_for(Duration::from_secs(5), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    let _ = child.kill();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let _ = child.wait();
    if !err.trim().is_empty() {
        println!("\ndaemon warnings:\n{}", err.trim_end());
    }
}

/// Resident memory of `pid` split into anonymous pages and the file-backed pages of each
/// mapped file (the daemon's own binary first), from `/proc/PID/smaps`. With
/// `DDNS_BENCH_SMAPS=FILE` the raw smaps is kept for a closer look.
fn memory_breakdown(pid: u32) -> String {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    if let Ok(keep) = std::env::var("DDNS_BENCH_SMAPS") {
        let _ = std::fs::write(keep, &smaps);
    }
    let mut anon_kib = 0u64;
    let mut files: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut current: Option<String> = None;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            // A mapping header: `start-end perms offset dev inode [path]`.
            current = line.split_whitespace().nth(5).map(str::to_owned);
            continue;
        }
        let kib: u64 = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let file = current.as_ref().filter(|p| p.starts_with('/'));
        match (first, file) {
            // Copy-on-write pages of a file mapping (.data, relocations) are anonymous.
            ("Anonymous:", Some(path)) => {
                anon_kib += kib;
                let e = files.entry(path.clone()).or_default();
                *e = e.saturating_sub(kib);
            }
            ("Anonymous:", None) => anon_kib += kib,
            ("Rss:", Some(path)) => *files.entry(path.clone()).or_default() += kib,
            _ => {}
        }
    }
    let mut files: Vec<(String, u64)> = files.into_iter().collect();
    files.sort_by_key(|(_, k)| std::cmp::Reverse(*k));
    let file_kib: u64 = files.iter().map(|(_, k)| k).sum();
    let shown: Vec<String> = files
        .iter()
        .take(4)
        .map(|(p, k)| {
            let name = p.rsplit('/').next().unwrap_or(p);
            format!("{name} {:.1}", *k as f64 / 1024.0)
        })
        .collect();
    format!(
        "anonymous {:.1} MiB, file-backed {:.1} MiB ({})",
        anon_kib as f64 / 1024.0,
        file_kib as f64 / 1024.0,
        shown.join(", ")
    )
}
