//! The daemon end to end, inside namespaces the tests create: startup sync, the netlink
//! trigger on the WAN interface (the `interface` source read over rtnetlink), the control
//! socket (`status`, `plan`, `sync`), the metrics exporter, and HTTPS with a test CA to an
//! API server in another namespace.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod common;

use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use edge_config::Role;
use edge_ipc::{Client, Request, Response};
use edge_testkit::cloudflare::{CfOptions, CfServer, EchoKind, EchoServer, Fault, Logged};
use edge_testkit::{Netns, in_new_netns, run_ok, wait_for};
use hyper::Method;

/// A daemon process killed (by PID) when dropped.
struct Daemon(Option<Child>);

impl Daemon {
    fn spawn(cmd: &mut Command) -> Daemon {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and affects only the child.
        unsafe {
            cmd.pre_exec(|| {
                libc_prctl();
                Ok(())
            });
        }
        Daemon(Some(cmd.spawn().expect("spawn edge-ddns")))
    }

    fn pid(&self) -> i32 {
        self.0.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// SIGTERM, then waits up to `within` for the exit; `None` if it is still running.
    fn terminate_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let c = self.0.as_mut()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        poll(within, || c.try_wait().ok().flatten())
    }

    /// SIGTERM, wait, and return everything it printed.
    fn stop(&mut self) -> String {
        let Some(mut c) = self.0.take() else {
            return String::new();
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if wait_for(Duration::from_secs(5), || {
            matches!(c.try_wait(), Ok(Some(_)))
        })
        .is_none()
        {
            let _ = c.kill();
        }
        let mut out = String::new();
        if let Some(mut s) = c.stdout.take() {
            let _ = s.read_to_string(&mut out);
        }
        if let Some(mut s) = c.stderr.take() {
            let _ = s.read_to_string(&mut out);
        }
        let _ = c.wait();
        out
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

fn libc_prctl() {
    // PR_SET_PDEATHSIG = 1, SIGKILL = 9: the daemon dies with the test thread.
    // SAFETY: a plain prctl call with constant arguments.
    unsafe {
        nix::libc::prctl(1, 9);
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the exporter");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
// One daemon's life read top to bottom: startup sync, address event, edgectl, metrics,
// SIGHUP; every step shares the veth, the daemon, its client and the API log of the last.
#[allow(clippy::too_many_lines)]
fn the_daemon_reacts_to_wan_address_events_and_answers_edgectl() {
    in_new_netns(|| {
        let lab = Lab::new();
        // The WAN interface: one end of a veth pair in this namespace, holding IP1.
        run_ok(
            "ip",
            [
                "link", "add", "edd0", "type", "veth", "peer", "name", "edd1",
            ],
        );
        run_ok("ip", ["link", "set", "edd0", "up"]);
        run_ok("ip", ["addr", "add", &format!("{IP1}/32"), "dev", "edd0"]);
        // Sources: the interface itself and one echo; both must agree.
        let text = lab
            .config_text("wan_interface = \"edd0\"\ndebounce = \"200ms\"", "")
            .replace(
                &format!(
                    "[[ddns.source]]\nname = \"trace-b\"\nkind = \"cloudflare-trace\"\nurl = \"{}\"\nfamily = \"ipv4\"\n",
                    lab.echoes[1].url()
                ),
                "[[ddns.source]]\nname = \"wan\"\nkind = \"interface\"\ninterface = \"edd0\"\nfamily = \"ipv4\"\n",
            );
        assert!(text.contains("kind = \"interface\""), "{text}");
        let cfg = lab.dir.path().join("edge.toml");
        std::fs::write(&cfg, &text).unwrap();
        lab.echoes[2].set_answer(None); // quorum 2 of {echo-a, wan, echo-c (down)}

        let mut d = Daemon::spawn(
            Command::new(env!("CARGO_BIN_EXE_edge-ddns"))
                .args(["--log-format", "text", "--log-level", "debug", "--config"])
                .arg(&cfg),
        );
        assert!(d.pid() > 0);
        // Startup sync creates the record.
        assert!(
            wait_for(Duration::from_secs(10), || lab.a_records().len() == 1).is_some(),
            "no record after startup: {}",
            d.stop()
        );
        assert_eq!(lab.a_records()[0]["content"], IP1);

        let client = Client::new(
            Role::Ddns,
            edge_config::socket_path(&lab.dir.path().join("run"), Role::Ddns),
        );
        block_on(async {
            // `status` answers at once, also during a sync: the record reached the API a
            // moment before the startup sync finished, so wait for it to be done.
            let mut ready = None;
            for _ in 0..100 {
                let Response::Status(st) = client.request(Request::Status).await.unwrap() else {
                    panic!("status expected")
                };
                if st.ready {
                    ready = Some(st);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let st = ready.expect("ready after the startup sync");
            let detail = st.detail.ddns().unwrap().clone();
            assert_eq!(detail.records[0].record, "A example.com");
            assert!(detail.records[0].in_sync, "{detail:?}");
            assert_eq!(detail.wan_interface.as_deref(), Some("edd0"));
            assert_eq!(detail.families[0].address.as_deref(), Some(IP1));
        });

        // The ISP hands out a new address: the interface changes and the echo follows.
        lab.cf.clear_log();
        lab.echoes[0].set_answer(Some(IP2));
        run_ok("ip", ["addr", "del", &format!("{IP1}/32"), "dev", "edd0"]);
        run_ok("ip", ["addr", "add", &format!("{IP2}/32"), "dev", "edd0"]);
        let reacted = wait_for(Duration::from_secs(10), || {
            lab.a_records().first().is_some_and(|r| r["content"] == IP2)
        });
        assert!(
            reacted.is_some(),
            "no reaction to the address event: {}",
            d.stop()
        );
        let w = lab.writes();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].method, Method::PATCH);
        assert_eq!(w[0].body, Some(serde_json::json!({ "content": IP2 })));

        block_on(async {
            // `edgectl ddns plan`: reads only.
            lab.cf.clear_log();
            let Response::Done { message, .. } = client.request(Request::Plan).await.unwrap()
            else {
                panic!("plan answers Done")
            };
            assert!(message.contains("in sync"), "{message}");
            assert!(message.contains("plan (nothing changed)"), "{message}");
            assert!(lab.writes().is_empty());
            // `edgectl ddns sync`: converged, so no write (and no read: state is fresh).
            lab.cf.clear_log();
            let r = client
                .request(Request::Apply { confirm_secs: None })
                .await
                .unwrap();
            assert!(matches!(r, Response::Done { .. }), "{r:?}");
            assert!(lab.log().is_empty(), "{:?}", methods(&lab.log()));
        });

        // Metrics: per-record in-sync gauge, API requests by method/status, detections.
        let m = http_get("127.0.0.1:9851", "/metrics");
        for want in [
            "edge_ddns_record_in_sync{record=\"A example.com\"} 1",
            "edge_ddns_api_requests_total{method=\"PATCH\",status=\"200\"} 1",
            "edge_ddns_api_requests_total{method=\"POST\",status=\"200\"} 1",
            &format!("edge_ddns_detected_address_info{{family=\"ipv4\",address=\"{IP2}\"}} 1"),
            "edge_ddns_detections_total{source=\"echo-c\",family=\"ipv4\",result=\"failed\"}",
            "edge_ddns_last_success_timestamp_seconds",
            "edge_ddns_updates_total{record=\"A example.com\",result=\"patched\"} 1",
        ] {
            assert!(m.contains(want), "metrics lack {want}:\n{m}");
        }
        assert!(
            !m.contains(&format!("address=\"{IP1}\"")),
            "the old address is gone"
        );
        assert!(!m.contains(TOKEN));

        // SIGHUP reloads and syncs; nothing to change.
        lab.cf.clear_log();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(d.pid()),
            nix::sys::signal::Signal::SIGHUP,
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(lab.writes().is_empty());
        let out = d.stop();
        assert!(out.contains("configuration reloaded"), "{out}");
        assert!(out.contains("WAN interface changed"), "{out}");
        assert!(!out.contains(TOKEN), "the daemon logged the token:\n{out}");
    });
}

#[test]
// One scenario read top to bottom: the two namespaces, the servers in `inet` and the config
// closure serve both runs (without and with the CA); split, each part would take them all.
#[allow(clippy::too_many_lines)]
fn https_with_a_test_ca_to_an_api_server_in_another_namespace() {
    edge_testkit::cleanup_stale("edd");
    let inet = Netns::new("edd", "inet");
    let host = Netns::new("edd", "host");
    inet.ip([
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        "wan0",
        "netns",
        host.name(),
    ]);
    inet.ip(["addr", "add", "198.18.0.1/24", "dev", "eth0"]);
    inet.ip(["link", "set", "eth0", "up"]);
    host.ip(["addr", "add", "198.18.0.2/24", "dev", "wan0"]);
    host.ip(["link", "set", "wan0", "up"]);

    // The servers run on threads that entered `inet`.
    let (cf, echoes) = inet.run(|| {
        let cf = CfServer::start(CfOptions {
            bind: "198.18.0.1:443".parse().unwrap(),
            token: TOKEN.to_owned(),
            tls_names: Some(vec!["198.18.0.1".to_owned()]),
        });
        let echoes: Vec<EchoServer> = [
            ("198.18.0.1:8001", EchoKind::Plain),
            ("198.18.0.1:8002", EchoKind::Trace),
        ]
        .into_iter()
        .map(|(a, k)| EchoServer::start(a.parse().unwrap(), k, IP1))
        .collect();
        (cf, echoes)
    });
    let zone = cf.add_zone("example.com");
    assert!(cf.url().starts_with("https://198.18.0.1"));

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    std::fs::write(dir.path().join("ca.pem"), cf.ca_pem().unwrap()).unwrap();
    std::fs::write(dir.path().join("token"), TOKEN).unwrap();
    run_ok("chmod", ["600", &format!("{d}/token")]);
    let config = |ca: bool| {
        format!(
            r#"version = 1
[global]
state_dir = "{d}/state"
runtime_dir = "{d}/run"
[ddns]
token = {{ file = "{d}/token" }}
api_url = "{api}"
{ca_line}
quorum = 2
timeout = "3s"
[[ddns.record]]
name = "example.com"
type = "A"
[[ddns.source]]
name = "echo"
kind = "http"
url = "{e0}"
family = "ipv4"
[[ddns.source]]
name = "trace"
kind = "cloudflare-trace"
url = "{e1}"
family = "ipv4"
"#,
            api = cf.url(),
            ca_line = if ca {
                format!("ca_file = \"{d}/ca.pem\"")
            } else {
                String::new()
            },
            e0 = echoes[0].url(),
            e1 = echoes[1].url(),
        )
    };
    let run = |ca: bool| {
        let p = dir.path().join("edge.toml");
        std::fs::write(&p, config(ca)).unwrap();
        let mut c = host.command(env!("CARGO_BIN_EXE_edge-ddns"));
        c.args(["--once", "--config"]).arg(&p);
        c.output().expect("run edge-ddns in the host namespace")
    };
    // Without the CA the certificate is not trusted: nothing is sent in clear, the run fails.
    let out = run(false);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        cf.log().is_empty(),
        "no request reached the API without TLS trust"
    );
    // With ca_file the run creates the record over HTTPS.
    let out = run(true);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let recs = cf.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["content"], IP1);
    assert_eq!(recs[0]["zone_id"], zone.as_str());
    let v = cf.violations();
    assert!(v.is_empty(), "{v:?}");
    assert!(!text.contains(TOKEN));
    drop(echoes);
    drop(cf);
}

/// The datagrams a daemon sends to `NOTIFY_SOCKET`, with their arrival times, collected on
/// a thread until `stop` is set.
struct NotifyListener {
    got: std::sync::Arc<std::sync::Mutex<Vec<(Instant, String)>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NotifyListener {
    fn bind(path: &std::path::Path) -> NotifyListener {
        let sock = std::os::unix::net::UnixDatagram::bind(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, st) = (got.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !st.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    g.lock().unwrap().push((Instant::now(), text));
                }
            }
        });
        NotifyListener {
            got,
            stop,
            thread: Some(thread),
        }
    }

    /// Arrival times of `WATCHDOG=1` datagrams.
    fn watchdog_pings(&self) -> Vec<Instant> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, t)| t.lines().any(|l| l == "WATCHDOG=1"))
            .map(|(at, _)| *at)
            .collect()
    }
}

impl Drop for NotifyListener {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The longest time in `[from, to]` without a ping.
fn longest_silence(pings: &[Instant], from: Instant, to: Instant) -> Duration {
    let mut last = from;
    let mut worst = Duration::ZERO;
    for &p in pings.iter().filter(|p| **p > from && **p < to) {
        worst = worst.max(p - last);
        last = p;
    }
    worst.max(to - last)
}

/// The edge-ddns command of these tests: systemd's watchdog (2 s) and notify socket.
fn ddns_command(cfg: &std::path::Path, notify: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edge-ddns"));
    c.args(["--log-format", "text", "--log-level", "debug", "--config"])
        .arg(cfg)
        .env("NOTIFY_SOCKET", notify)
        .env("WATCHDOG_USEC", "2000000")
        // sd-notify honours WATCHDOG_USEC only for the process WATCHDOG_PID names, if set.
        .env_remove("WATCHDOG_PID");
    c
}

/// The first logged API request that `f` accepts, waiting up to `within` for it.
fn wait_for_request(lab: &Lab, within: Duration, f: impl Fn(&Logged) -> bool) -> Option<Logged> {
    poll(within, || lab.log().into_iter().find(|l| f(l)))
}

/// Calls `f` every 10 ms until it gives a value, for up to `within`.
fn poll<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < within {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn status_detail(r: Response) -> edge_ipc::ddns::Status {
    let Response::Status(st) = r else {
        panic!("status expected, got {r:?}")
    };
    st.detail.ddns().unwrap().clone()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// M3: a sync waiting 10 s for Cloudflare's `Retry-After` no longer starves the event loop:
/// the watchdog is fed every second (systemd would SIGABRT a starved daemon), `status`
/// answers at once and says a sync runs, `sync`/`plan` requests made meanwhile wait for it
/// (two syncs fold into one follow-up; the plan sees the record the first sync created), and
/// SIGTERM during a long pause stops the daemon at once.
#[test]
// One daemon's life read top to bottom: the 429 wait, the requests made during it, the
// watchdog, then SIGTERM in a pause; the steps share the daemon, its client and the API log.
#[allow(clippy::too_many_lines)]
fn a_sync_waiting_for_a_rate_limit_keeps_the_watchdog_fed_and_the_daemon_responsive() {
    in_new_netns(|| {
        let lab = Lab::new();
        let cfg = lab.write_config("", "");
        let socket = lab.config("", "").socket_path(Role::Ddns);
        let notify_path = lab.dir.path().join("notify.sock");
        let notify = NotifyListener::bind(&notify_path);
        // The first API request (the zone lookup) is refused: 429, Retry-After: 10.
        lab.cf
            .inject(Fault::RateLimited { retry_after: 10 }, 1, None);
        let mut d = Daemon::spawn(&mut ddns_command(&cfg, &notify_path));
        let limited = wait_for_request(&lab, Duration::from_secs(15), |l| l.status == 429);
        let Some(limited) = limited else {
            panic!("the startup sync never met the 429: {}", d.stop())
        };
        // The daemon now waits 10 s (from `limited.at`) before its next API request.
        let client = Client::new(Role::Ddns, &socket);
        let mut problems = Vec::new();
        block_on(async {
            // `status` during the wait: at once, saying what runs.
            tokio::time::sleep(Duration::from_millis(300)).await;
            match tokio::time::timeout(Duration::from_secs(1), client.request(Request::Status))
                .await
            {
                Ok(Ok(r)) => {
                    let st = status_detail(r);
                    let p = st.in_progress.as_ref();
                    if p.map(|p| p.trigger.as_str()) != Some("startup") {
                        problems.push(format!("status does not show the startup sync: {st:?}"));
                    }
                    if st.rate_limited_until.is_none() {
                        problems.push(format!("status does not show the pause: {st:?}"));
                    }
                }
                Ok(Err(e)) => problems.push(format!("status failed during the sync: {e}")),
                Err(_) => problems.push("status did not answer within 1 s during the sync".into()),
            }
            // Two `sync`s and a `plan` during the wait; status shows them queued.
            let queued = async {
                for _ in 0..40 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let Ok(Ok(r)) = tokio::time::timeout(
                        Duration::from_secs(1),
                        client.request(Request::Status),
                    )
                    .await
                        && let Some(p) = status_detail(r).in_progress
                        && p.sync_queued
                        && p.plans_queued == 1
                    {
                        return true;
                    }
                }
                false
            };
            let (a1, a2, plan, seen_queued) = tokio::join!(
                client.request(Request::Apply { confirm_secs: None }),
                client.request(Request::Apply { confirm_secs: None }),
                client.request(Request::Plan),
                queued
            );
            if !seen_queued {
                problems.push("status never showed the queued sync and plan".into());
            }
            for a in [a1, a2] {
                if !matches!(a, Ok(Response::Done { .. })) {
                    problems.push(format!("a sync requested during the sync: {a:?}"));
                }
            }
            match plan {
                // Planned after the startup sync created the record, not beside it.
                Ok(Response::Done { message, .. }) if message.contains("in sync") => {}
                other => problems.push(format!("the plan requested during the sync: {other:?}")),
            }
        });
        // The watchdog was fed while the sync waited (2 s of margin for a 1 s interval).
        let waited_until = limited.at + Duration::from_secs(9);
        let silence = longest_silence(&notify.watchdog_pings(), limited.at, waited_until);
        if silence > Duration::from_secs(2) {
            problems.insert(
                0,
                format!("no WATCHDOG=1 for {silence:?} while the sync waited for Retry-After"),
            );
        }
        assert!(problems.is_empty(), "{problems:#?}\n{}", d.stop());
        // One record, one POST: the queued syncs ran after the first, not beside it; the two
        // folded into one follow-up (startup + 1 successful syncs).
        assert_eq!(lab.a_records().len(), 1);
        assert_eq!(lab.writes().len(), 1, "{:?}", methods(&lab.log()));
        let m = http_get("127.0.0.1:9851", "/metrics");
        assert!(
            m.contains("edge_ddns_syncs_total{result=\"ok\"} 2\n"),
            "{m}"
        );

        // SIGTERM during a long pause: the address changes, the listing's answer says the
        // window is spent for 60 s, the PATCH waits; the daemon must stop at once anyway.
        lab.cf.clear_log();
        lab.set_all(Some(IP2));
        lab.cf.inject(
            Fault::RatelimitHeader {
                remaining: 0,
                reset: 60,
            },
            1,
            None,
        );
        let waiter = {
            let client = client.clone();
            std::thread::spawn(move || {
                block_on(client.request(Request::Apply { confirm_secs: None }))
            })
        };
        let paused = wait_for_request(&lab, Duration::from_secs(10), |l| {
            matches!(l.fault, Some(Fault::RatelimitHeader { .. }))
        });
        assert!(
            paused.is_some(),
            "the sync never read the record: {}",
            d.stop()
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(lab.writes().is_empty(), "the PATCH waits for the window");
        let exited = d.terminate_within(Duration::from_secs(3));
        assert!(
            exited.is_some_and(|s| s.success()),
            "SIGTERM during a rate-limit pause did not stop the daemon within 3 s ({exited:?})"
        );
        let r = waiter.join().unwrap();
        assert!(
            matches!(&r, Ok(Response::Error { message, .. }) if message.contains("stopping")),
            "the waiting sync is told the daemon stops: {r:?}"
        );
        let out = d.stop();
        assert!(out.contains("edge-ddns stopped"), "{out}");
        assert!(!out.contains(TOKEN));
    });
}

/// A rate-limit pause survives a restart: the state file keeps its end, and the new process
/// sends no API request before it.
#[test]
fn a_restart_within_a_rate_limit_pause_keeps_waiting() {
    use std::time::{SystemTime, UNIX_EPOCH};
    in_new_netns(|| {
        let lab = Lab::new();
        let cfg = lab.write_config("", "");
        let notify_path = lab.dir.path().join("notify.sock");
        let _notify = NotifyListener::bind(&notify_path);
        let state_file = lab.dir.path().join("state/ddns/state.json");
        let persisted = || -> Option<u64> {
            let text = std::fs::read_to_string(&state_file).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v["rate_limited_until"].as_u64()
        };
        // The zone lookup is answered, saying the window is spent for 10 s.
        lab.cf.inject(
            Fault::RatelimitHeader {
                remaining: 0,
                reset: 10,
            },
            1,
            None,
        );
        let mut first = Daemon::spawn(&mut ddns_command(&cfg, &notify_path));
        let met = wait_for_request(&lab, Duration::from_secs(15), |l| l.fault.is_some());
        let Some(met) = met else {
            panic!("no API request: {}", first.stop())
        };
        // The daemon read that answer after the server logged it: its pause ends later than
        // this, 10 s after the log entry.
        let pause_ends_after = SystemTime::now() - met.at.elapsed() + Duration::from_secs(10);
        let in_file = poll(Duration::from_secs(2), persisted);
        let out = first.stop();
        assert_eq!(lab.log().len(), 1, "{:?}", methods(&lab.log()));

        lab.cf.clear_log();
        let mut second = Daemon::spawn(&mut ddns_command(&cfg, &notify_path));
        // Nothing reaches the API before the pause ends.
        while SystemTime::now() < pause_ends_after {
            let log = lab.log();
            assert!(
                log.is_empty(),
                "the restarted daemon sent {:?} {:?} before the pause ends:\n{}",
                methods(&log),
                pause_ends_after.duration_since(SystemTime::now()),
                second.stop()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Where it knew that from: the state file, written when the pause began.
        let Some(until) = in_file else {
            panic!("the pause is not in the state file: {out}")
        };
        let ends = pause_ends_after
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!((ends..=ends + 2).contains(&until), "{until} vs {ends}");
        // Then the startup sync goes on and creates the record.
        let created = wait_for(Duration::from_secs(20), || lab.a_records().len() == 1);
        assert!(
            created.is_some(),
            "no record after the pause: {}",
            second.stop()
        );
        let out = second.stop();
        assert!(out.contains("persisted pause"), "{out}");
        lab.assert_schema_clean();
    });
}

/// While the restarted daemon waits for a persisted pause, `status` says until when.
#[test]
fn status_shows_a_persisted_rate_limit_pause() {
    in_new_netns(|| {
        let lab = Lab::new();
        let cfg = lab.write_config("", "");
        let socket = lab.config("", "").socket_path(Role::Ddns);
        let notify_path = lab.dir.path().join("notify.sock");
        let _notify = NotifyListener::bind(&notify_path);
        let until = unix_now() + 30;
        std::fs::create_dir_all(lab.dir.path().join("state/ddns")).unwrap();
        std::fs::write(
            lab.dir.path().join("state/ddns/state.json"),
            format!(r#"{{"version":1,"rate_limited_until":{until}}}"#),
        )
        .unwrap();
        let mut d = Daemon::spawn(&mut ddns_command(&cfg, &notify_path));
        let client = Client::new(Role::Ddns, &socket);
        let st = poll(Duration::from_secs(5), || {
            block_on(async {
                tokio::time::timeout(Duration::from_secs(1), client.request(Request::Status))
                    .await
                    .ok()?
                    .ok()
            })
        });
        let Some(st) = st else {
            panic!("the daemon does not answer: {}", d.stop())
        };
        let st = status_detail(st);
        assert_eq!(st.rate_limited_until, Some(until), "{st:?}");
        assert_eq!(
            st.in_progress.map(|p| p.trigger),
            Some("startup".to_owned()),
            "the startup sync waits for the pause"
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(lab.log().is_empty(), "{:?}", methods(&lab.log()));
        let exited = d.terminate_within(Duration::from_secs(3));
        assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
    });
}
