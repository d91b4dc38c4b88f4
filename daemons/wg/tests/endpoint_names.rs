//! Namespace test of endpoint names in config mode: a peer whose endpoint is a DNS name,
//! answered by a DNS server this test runs in the hub's namespace (`[wg] resolvers`), whose
//! answer the test changes. The name is looked up again when handshakes go unanswered and
//! on reload, never while handshakes succeed; status shows what it resolved to.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const NAME: &str = "site.edge.test";

/// A DNS server answering A queries for [`NAME`] with whatever `answer` holds (TTL 0),
/// and nothing for anything else; counts the A queries for [`NAME`].
struct Dns {
    answer: Arc<Mutex<Ipv4Addr>>,
    queries: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The question of a query: (name, type, end of the question section).
fn question(q: &[u8]) -> Option<(String, u16, usize)> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let ty = u16::from_be_bytes([*q.get(at)?, *q.get(at + 1)?]);
    Some((labels.join("."), ty, at + 4))
}

fn answer(q: &[u8], ip: Ipv4Addr) -> Option<(Vec<u8>, bool)> {
    let (name, ty, end) = question(q)?;
    let ours = name == NAME && ty == 1;
    let with_answer = ours;
    let mut r = Vec::with_capacity(end + 16);
    r.extend_from_slice(&q[..2]); // id
    r.extend_from_slice(&[0x81, 0x80]); // response, recursion desired and available, NOERROR
    r.extend_from_slice(&[0, 1, 0, u8::from(with_answer), 0, 0, 0, 0]);
    r.extend_from_slice(&q[12..end]);
    if with_answer {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        r.extend_from_slice(&ip.octets());
    }
    Some((r, ours))
}

fn dns_server(ns: &Netns, port: u16, first: Ipv4Addr) -> Dns {
    let answer_ip = Arc::new(Mutex::new(first));
    let queries = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sock = ns
        .enter(move || UdpSocket::bind(("127.0.0.1", port)).unwrap())
        .join()
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (a, qn, st) = (answer_ip.clone(), queries.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !st.load(Ordering::SeqCst) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let ip = *a.lock().unwrap();
            if let Some((reply, ours)) = answer(&buf[..n], ip) {
                if ours {
                    qn.fetch_add(1, Ordering::SeqCst);
                }
                let _ = sock.send_to(&reply, from);
            }
        }
    });
    Dns {
        answer: answer_ip,
        queries,
        stop,
    }
}

fn site_status(ctl: &std::path::Path) -> edge_ipc::wg::PeerStatus {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let resp = rt
        .block_on(
            edge_ipc::Client::new(edge_config::Role::Wg, ctl.to_owned())
                .request(edge_ipc::Request::Status),
        )
        .unwrap();
    let edge_ipc::Response::Status(st) = resp else {
        panic!("not a status: {resp:?}")
    };
    let detail: edge_ipc::wg::Status = st.detail.wg().unwrap().clone();
    detail
        .peers
        .into_iter()
        .find(|p| p.name.as_deref() == Some("site"))
        .unwrap()
}

#[test]
// One scenario read top to bottom: the site moves, the name is looked up again, nothing
// is looked up while handshakes succeed, a reload looks up again; the steps share the DNS
// server and its query count, the namespaces and the daemon, so split they would take them all.
#[allow(clippy::too_many_lines)]
fn an_endpoint_name_is_looked_up_again_when_handshakes_fail_and_on_reload() {
    require_root();
    let tg = tag("dn");
    let hub = Netns::new(&format!("{tg}-hub"));
    let site = Netns::new(&format!("{tg}-s"));
    veth(&hub, "u1", "10.99.1.1/24", &site, "ul", "10.99.1.2/24");
    let dns = dns_server(&hub, 5353, Ipv4Addr::new(10, 99, 1, 9)); // nobody there

    // The site: wireguard-go that knows the hub's key but not where it is, so only the
    // hub can start a handshake.
    let kh = keypair();
    let ks = keypair();
    let ifs = format!("ews{tg}");
    let _ps = start_daemon(&site, Impl::WireguardGo, &ifs, &[]);
    iface_up(&site, &ifs, "10.98.0.2/24");
    let ksf = ks.private_file.to_string_lossy().into_owned();
    site.run(&[
        "wg",
        "set",
        &ifs,
        "private-key",
        &ksf,
        "listen-port",
        "51820",
        "peer",
        &kh.public,
        "allowed-ips",
        "10.98.0.1/32",
    ]);

    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key_path = dir.path().join("wg.key");
    std::fs::write(&key_path, &kh.private).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let ifh = format!("ewh{tg}");
    let cfg = dir.path().join("edge.toml");
    std::fs::write(
        &cfg,
        format!(
            "version = 1\n\n[global]\nstate_dir = \"{d}/state\"\nruntime_dir = \"{d}/run\"\n\
             log_format = \"text\"\nlog_level = \"info\"\n\n[global.metrics]\nwg = \"127.0.0.1:9852\"\n\n\
             [wg]\ninterface = \"{ifh}\"\nlisten_port = 51820\nprivate_key = {{ file = \"{k}\" }}\n\
             addresses = [\"10.98.0.1/24\"]\nresolvers = [\"127.0.0.1:5353\"]\n\n\
             [[wg.peer]]\nname = \"site\"\npublic_key = \"{pk}\"\nallowed_ips = [\"10.98.0.2/32\"]\n\
             endpoint = \"{NAME}:51820\"\n",
            d = dir.path().display(),
            k = key_path.display(),
            pk = ks.public,
        ),
    )
    .unwrap();
    let cfgs = cfg.to_string_lossy().into_owned();
    let mut hubd = hub.spawn(
        &[env!("CARGO_BIN_EXE_edge-wg"), "-c", &cfgs],
        &[],
        &format!("/tmp/{ifh}.log"),
    );
    let ctl = edge_config::socket_path(&dir.path().join("run"), edge_config::Role::Wg);
    wait_for("control socket", Duration::from_secs(10), || {
        assert!(hubd.alive(), "edge-wg exited: {}", hubd.log());
        ctl.exists()
    });
    assert_eq!(
        dns.queries.load(Ordering::SeqCst),
        1,
        "looked up once at start"
    );
    let st = site_status(&ctl);
    assert_eq!(st.endpoint_host.as_deref(), Some("site.edge.test:51820"));
    assert_eq!(st.resolved_endpoint.as_deref(), Some("10.99.1.9:51820"));

    // The site "moves": the name now points at it. The hub's initiations to the old
    // address go unanswered; after Rekey-Timeout (5 s) it looks the name up again.
    *dns.answer.lock().unwrap() = Ipv4Addr::new(10, 99, 1, 2);
    let t = Instant::now();
    wait_for(
        "site reachable at its new address",
        Duration::from_secs(20),
        || ping_once(&hub, "10.98.0.2"),
    );
    let took = t.elapsed();
    let st = site_status(&ctl);
    assert_eq!(st.resolved_endpoint.as_deref(), Some("10.99.1.2:51820"));
    assert_eq!(st.endpoint.as_deref(), Some("10.99.1.2:51820"));
    assert!(st.latest_handshake > 0);
    assert!(
        hubd.log()
            .contains("endpoint name resolves to a new address"),
        "{}",
        hubd.log()
    );
    eprintln!("the moved site was reached after {took:?}");

    // While handshakes succeed, nothing is looked up: no timer.
    let before = dns.queries.load(Ordering::SeqCst);
    let (sent, got) = ping_stats(&hub, "10.98.0.2", 40, "0.2");
    assert_eq!((sent, got), (40, 40));
    assert_eq!(
        dns.queries.load(Ordering::SeqCst),
        before,
        "no lookup while handshakes succeed"
    );

    // A reload looks every name up again.
    site.run(&["ip", "addr", "add", "10.99.1.3/24", "dev", "ul"]);
    *dns.answer.lock().unwrap() = Ipv4Addr::new(10, 99, 1, 3);
    // SAFETY: kill(2) on the pid of a child we started and have not reaped.
    unsafe { libc::kill(hubd.child.id() as libc::pid_t, libc::SIGHUP) };
    wait_for(
        "reload re-resolved the name",
        Duration::from_secs(10),
        || site_status(&ctl).resolved_endpoint.as_deref() == Some("10.99.1.3:51820"),
    );
    assert!(dns.queries.load(Ordering::SeqCst) > before);
    assert_eq!(
        site_status(&ctl).endpoint.as_deref(),
        Some("10.99.1.3:51820")
    );
    wait_for(
        "site reachable at the reloaded address",
        Duration::from_secs(10),
        || ping_once(&hub, "10.98.0.2"),
    );
    let (ok, metrics) = hub.try_run(&["curl", "-s", "http://127.0.0.1:9852/metrics"]);
    assert!(ok);
    let lookups = metrics
        .lines()
        .find_map(|l| l.strip_prefix("edge_wg_peer_endpoint_lookups_total{peer=\"site\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(lookups >= 3, "{metrics}");
}
