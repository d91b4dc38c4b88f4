//! `edgectl ha fifo` as keepalived runs it: the exact lines keepalived writes go into a real
//! FIFO; the reader publishes each role in order in `ha.json` (generations 1, 2, 3...),
//! ignores other instances and lines, and sends every role, in order, to a daemon's control
//! socket (a real edge-ipc server). Beside it, the track file follows the carrier of the
//! VRRP interface in its network namespace (a real veth: its peer goes down, the file
//! says 1 with the reason; up again, 0).

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_ipc::ha::{HaRole, Health, RoleState};
use edge_ipc::proto::{Request, Response};
use edge_testkit::{Netns, binary, wait_for};

fn config(dir: &Path) -> PathBuf {
    let text = format!(
        r#"version = 1
[global]
runtime_dir = "{d}/run"
state_dir = "{d}/state"
[link]
[[link.bridge]]
name = "br-api"
addresses = ["10.0.0.31/24"]
[ha]
name = "edge-a"
address = "10.0.0.31"
instance = "edge"
virtual_router_id = 30
interface = "br-api"
[ha.peer]
name = "edge-b"
address = "10.0.0.32"
[[ha.vip]]
address = "10.0.0.30/32"
"#,
        d = dir.display()
    );
    let p = dir.join("edge.toml");
    std::fs::write(&p, text).unwrap();
    std::fs::create_dir_all(dir.join("run/link")).unwrap();
    p
}

fn role_file(dir: &Path) -> Option<RoleState> {
    serde_json::from_slice(&std::fs::read(dir.join("run/ha.json")).ok()?).ok()
}

/// A daemon's control socket answering every SetRole as a following daemon does, recording
/// what it got in order.
struct Follower {
    got: Arc<Mutex<Vec<RoleState>>>,
    _server: tokio::task::JoinHandle<()>,
    _rt: tokio::runtime::Runtime,
}

impl Follower {
    fn serve(sock: &Path) -> Self {
        let got: Arc<Mutex<Vec<RoleState>>> = Arc::default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let server = rt.block_on(edge_ipc::server::bind(sock, tx)).unwrap();
        let seen = got.clone();
        rt.spawn(async move {
            while let Some(inc) = rx.recv().await {
                if let Request::SetRole(s) = inc.request {
                    seen.lock().unwrap().push(*s);
                }
                let _ = inc.reply.send(Response::Done {
                    message: "ok".into(),
                    detail: serde_json::Value::Null,
                });
            }
        });
        Self {
            got,
            _server: server,
            _rt: rt,
        }
    }
}

/// The track file: carrier on the VRRP interface `br-api` (its veth peer `wan-peer` in
/// `ns` decides it), nothing else to check here (no [fw]).
fn assert_health_follows_carrier(ns: &Netns, dir: &Path, log: &Path) {
    let health = |v: &str| {
        wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(dir.join("run/ha-health")).is_ok_and(|t| t == v)
        })
        .is_some()
    };
    assert!(
        health("0\n"),
        "healthy with carrier; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
    ns.ip(["link", "set", "wan-peer", "down"]);
    assert!(health("1\n"), "unhealthy without carrier");
    let report: Health =
        serde_json::from_slice(&std::fs::read(dir.join("run/ha-health.json")).unwrap()).unwrap();
    assert!(!report.ok);
    assert_eq!(report.problems, ["br-api: no carrier"]);
    ns.ip(["link", "set", "wan-peer", "up"]);
    assert!(health("0\n"), "healthy again");
}

#[test]
fn keepalived_lines_become_ordered_roles_in_the_file_and_on_the_socket() {
    let ns = Netns::new("eha", "fifo");
    // The VRRP interface: one end of a veth pair, its carrier decided by the other end.
    ns.ip([
        "link", "add", "br-api", "type", "veth", "peer", "name", "wan-peer",
    ]);
    ns.ip(["link", "set", "br-api", "up"]);
    ns.ip(["link", "set", "wan-peer", "up"]);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cfg = config(dir);
    let fifo = dir.join("ha.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );

    // A daemon's control socket (edge-link's path).
    let follower = Follower::serve(&dir.join("run/link/control.sock"));
    let got = &follower.got;

    let log = dir.join("fifo.log");
    let mut cmd = Command::new(binary("edgectl"));
    cmd.args(["--config", cfg.to_str().unwrap(), "ha", "fifo", "--log"])
        .arg(&log)
        .arg(&fifo);
    let mut reader = ns.spawn("edgectl ha fifo", cmd);

    // keepalived opens the FIFO for writing and writes whole lines.
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let lines = [
        "INSTANCE \"edge\" BACKUP 100\n",
        "INSTANCE \"edge\" MASTER 100\n",
        "INSTANCE \"other\" MASTER 50\n",
        "GROUP \"g\" MASTER\n",
        "INSTANCE \"edge\" FAULT 100\n",
        "INSTANCE \"edge\" STOP 100\n",
    ];
    // All at once: the reader must keep them in order.
    w.write_all(lines.concat().as_bytes()).unwrap();
    w.flush().unwrap();
    let done = wait_for(Duration::from_secs(15), || got.lock().unwrap().len() == 4);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        done.is_some(),
        "the socket got {:?}\nlog:\n{text}",
        got.lock().unwrap()
    );
    let seen: Vec<(HaRole, u64, String)> = got
        .lock()
        .unwrap()
        .iter()
        .map(|s| (s.role, s.generation, s.event.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (HaRole::Backup, 1, "BACKUP".to_owned()),
            (HaRole::Master, 2, "MASTER".to_owned()),
            (HaRole::Fault, 3, "FAULT".to_owned()),
            (HaRole::Backup, 4, "STOP".to_owned()),
        ],
        "log:\n{text}"
    );
    let file = role_file(dir).unwrap();
    assert_eq!((file.role, file.generation), (HaRole::Backup, 4));
    assert_eq!(file.instance, "edge");
    assert!(text.contains("ignored: instance `other` MASTER"), "{text}");
    assert!(text.contains("ignored: GROUP \"g\" MASTER"), "{text}");

    // keepalived restarts: it closes the FIFO and opens it again; the generation goes on.
    drop(w);
    let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    w.write_all(b"INSTANCE \"edge\" MASTER 100\n").unwrap();
    let next = wait_for(Duration::from_secs(10), || {
        role_file(dir).is_some_and(|s| s.generation == 5 && s.role == HaRole::Master)
    });
    assert!(next.is_some(), "{:?}", role_file(dir));

    assert_health_follows_carrier(&ns, dir, &log);

    // keepalived stops its script with SIGTERM.
    reader.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(reader.wait_timeout(Duration::from_secs(5)).is_some());
}
