//! The daemon end to end, inside namespaces the tests create: startup sync, the netlink
//! trigger on the WAN interface (the `interface` source read over rtnetlink), the control
//! socket (`status`, `plan`, `sync`), the metrics exporter, and HTTPS with a test CA to an
//! API server in another namespace.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod common;

use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use edge_config::Role;
use edge_ipc::{Client, Request, Response};
use edge_testkit::cloudflare::{CfOptions, CfServer, EchoKind, EchoServer};
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

        let client = Client::new(Role::Ddns, lab.dir.path().join("run/ddns.sock"));
        block_on(async {
            let Response::Status(st) = client.request(Request::Status).await.unwrap() else {
                panic!("status expected")
            };
            assert!(st.ready);
            let detail: edge_ipc::ddns::Status = serde_json::from_value(st.detail).unwrap();
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
