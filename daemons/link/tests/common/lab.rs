//! The user's host in network namespaces (edge-testkit's reference topology), prepared as
//! systemd-networkd left it before edge-link: enp3s0f0 carries 192.198.0.30/24 and the
//! default route, the admin NIC enp4s0f1 has its own address. Plus helpers to run edge-link
//! there, read the state back over netlink and count netlink events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use edge_config::Role;
use edge_ipc::link::Status;
use edge_ipc::proto::Response;
use edge_ipc::{Client, Request};
use edge_link::Desired;
use edge_link::model::{Caps, Observed};
use edge_link::netlink::Netlink;
use edge_testkit::{ChildGuard, Netns, Topology};
use futures::StreamExt;

/// Namespace prefix of every edge-link test.
pub const PREFIX: &str = "elk";

/// The host and its neighbours.
pub struct Lab {
    /// Namespaces: inet, router (gateway 192.198.0.1), host, lb, admin, remote.
    pub topo: Topology,
    /// Holds the configuration and the control socket.
    pub dir: tempfile::TempDir,
    /// The configuration file.
    pub config: PathBuf,
}

/// A current-thread tokio runtime (for code run inside a namespace thread).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

impl Lab {
    /// Builds the topology and the pre-edge state of the host; `link_tweaks` are `(old, new)`
    /// text replacements applied to the reference configuration.
    pub fn new(link_tweaks: &[(&str, &str)]) -> Lab {
        let topo = Topology::reference_host(PREFIX);
        let host = topo.ns("host");
        host.ip(["addr", "add", "192.198.0.30/24", "dev", "enp3s0f0"]);
        host.ip([
            "route",
            "add",
            "default",
            "via",
            "192.198.0.1",
            "dev",
            "enp3s0f0",
            "metric",
            "100",
            "proto",
            "static",
        ]);
        host.ip(["addr", "add", "192.168.1.1/24", "dev", "enp4s0f1"]);
        host.ip([
            "route",
            "add",
            "10.99.0.0/16",
            "via",
            "192.168.1.10",
            "proto",
            "static",
        ]);
        let dir = tempfile::tempdir().expect("tempdir");
        let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/edge.toml");
        let mut text = std::fs::read_to_string(reference).expect("config/edge.toml");
        text = text.replace(
            "runtime_dir = \"/run/edge\"",
            &format!("runtime_dir = \"{}\"", dir.path().display()),
        );
        text = text.replace(
            "state_dir = \"/var/lib/edge\"",
            &format!("state_dir = \"{}\"", dir.path().display()),
        );
        for (old, new) in link_tweaks {
            assert!(
                text.contains(old),
                "tweak `{old}` does not match the reference config"
            );
            text = text.replacen(old, new, 1);
        }
        let config = dir.path().join("edge.toml");
        std::fs::write(&config, text).expect("write config");
        Lab { topo, dir, config }
    }

    /// The host's namespace.
    pub fn host(&self) -> &Netns {
        self.topo.ns("host")
    }

    /// The desired state of the lab's configuration.
    pub fn desired(&self) -> Desired {
        let loaded = edge_config::parse(
            &self.config,
            &std::fs::read_to_string(&self.config).expect("config"),
        )
        .expect("lab config is valid");
        Desired::from_config(loaded.config.link.as_ref().expect("[link]"))
    }

    /// Starts the daemon inside the host namespace.
    pub fn daemon(&self) -> ChildGuard {
        let mut c = Command::new(env!("CARGO_BIN_EXE_edge-link"));
        c.arg("--config")
            .arg(&self.config)
            .args(["--log-level", "debug"]);
        self.host().spawn("edge-link", c)
    }

    /// Asks the daemon for its status; `None` while it does not answer.
    pub fn status(&self) -> Option<(bool, Status)> {
        let client = Client::new(
            Role::Link,
            edge_config::socket_path(self.dir.path(), Role::Link),
        )
        .with_timeout(Duration::from_secs(2));
        let resp = runtime().block_on(client.request(Request::Status)).ok()?;
        match resp {
            Response::Status(st) => {
                let detail: Status = st.detail.link()?.clone();
                Some((st.ready, detail))
            }
            _ => None,
        }
    }

    /// Waits until the daemon says it is ready and converged (panics after `timeout`).
    pub fn wait_converged(&self, daemon: &mut ChildGuard, timeout: Duration) -> Status {
        let start = Instant::now();
        loop {
            if let Some((true, st)) = self.status()
                && st.converged
            {
                return st;
            }
            if !daemon.is_running() {
                let out = daemon.stop();
                panic!(
                    "edge-link exited early:\n{}",
                    out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                        .unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < timeout,
                "edge-link not converged after {timeout:?}; last status: {:?}",
                self.status()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `ip -j -d link show DEV`, `ip -j addr show DEV` and `ip -j -4 route show table all
    /// dev DEV` of the host, for before/after comparisons. Values that change by themselves
    /// are dropped: bridge timers, address lifetimes and IPv6 duplicate address detection
    /// (whose end adds a local IPv6 route, hence IPv4 routes only).
    pub fn snapshot(&self, dev: &str) -> (serde_json::Value, serde_json::Value, serde_json::Value) {
        let h = self.host();
        (
            stable(h.ip_json(["-d", "link", "show", dev])),
            stable(h.ip_json(["addr", "show", dev])),
            stable(h.ip_json(["-4", "route", "show", "table", "all", "dev", dev])),
        )
    }
}

/// Drops the fields of `ip -j` output that change without anyone changing anything.
pub fn stable(mut v: serde_json::Value) -> serde_json::Value {
    const VOLATILE: [&str; 7] = [
        "gc_timer",
        "hello_timer",
        "tcn_timer",
        "topology_change_timer",
        "tentative",
        "valid_life_time",
        "preferred_life_time",
    ];
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for k in VOLATILE {
                    m.remove(k);
                }
                m.values_mut().for_each(walk);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

/// Reads the host's state over netlink from inside `ns`.
pub fn observe_in(ns: &Netns, desired: &Desired) -> Observed {
    let keys = desired.sysctl_keys();
    ns.run(move || {
        runtime().block_on(async {
            let nl = Netlink::connect().expect("netlink");
            edge_link::observe::observe(&nl, &keys, Caps::default())
                .await
                .expect("observe")
        })
    })
}

/// Runs `act` inside `ns`, then polls the state every 2 ms until `done` holds; returns the
/// time from just before `act` to the first state where `done` held (panics after
/// `timeout`).
pub fn time_repair(
    ns: &Netns,
    desired: &Desired,
    timeout: Duration,
    act: impl FnOnce() + Send + 'static,
    done: impl Fn(&Observed) -> bool + Send + 'static,
) -> Duration {
    let keys = desired.sysctl_keys();
    ns.run(move || {
        runtime().block_on(async move {
            let nl = Netlink::connect().expect("netlink");
            let start = Instant::now();
            act();
            loop {
                let o = edge_link::observe::observe(&nl, &keys, Caps::default())
                    .await
                    .expect("observe");
                if done(&o) {
                    return start.elapsed();
                }
                assert!(
                    start.elapsed() < timeout,
                    "not repaired after {timeout:?}: {o:#?}"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    })
}

/// Counts netlink events (links, addresses, routes) in a namespace, from a subscription that
/// is in place when [`EventCounter::start`] returns.
pub struct EventCounter {
    ns: String,
    marker: String,
    thread: Option<thread::JoinHandle<Vec<String>>>,
}

static MARKERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

impl EventCounter {
    /// Subscribes inside `ns`.
    pub fn start(ns: &Netns) -> EventCounter {
        let path = format!("/run/netns/{}", ns.name());
        let n = MARKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let marker = format!("127.77.{}.{}", n / 250, n % 250 + 1);
        let needle = format!("Local({marker})");
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("netns file");
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            runtime().block_on(async move {
                let (conn, _h, mut events) =
                    rtnetlink::new_multicast_connection(&edge_link::daemon::GROUPS)
                        .expect("multicast connection");
                let task = tokio::spawn(conn);
                ready_tx.send(()).expect("ready");
                let mut seen = Vec::new();
                while let Some((m, _)) = events.next().await {
                    let s = format!("{:?}", m.payload);
                    if s.contains(&needle) {
                        break;
                    }
                    seen.push(s);
                }
                task.abort();
                seen
            })
        });
        ready_rx.recv().expect("event counter ready");
        EventCounter {
            ns: ns.name().to_owned(),
            marker,
            thread: Some(thread),
        }
    }

    /// Stops and returns the events seen (Debug renderings). A marker address added to `lo`
    /// ends the recording, so every event the kernel sent before is counted without waiting.
    pub fn finish(mut self) -> Vec<String> {
        edge_testkit::run_ok(
            "ip",
            [
                "-n",
                &self.ns,
                "addr",
                "add",
                &format!("{}/32", self.marker),
                "dev",
                "lo",
            ],
        );
        self.thread
            .take()
            .map(|t| t.join().expect("event counter thread"))
            .unwrap_or_default()
    }
}

/// Every link's operational state and carrier-change counter (`IFLA_CARRIER_CHANGES`),
/// read over netlink inside `ns`.
pub fn carrier_states(ns: &Netns) -> BTreeMap<String, (String, u32)> {
    use rtnetlink::packet_route::RouteNetlinkMessage;
    use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
    ns.run(|| {
        runtime().block_on(async {
            let nl = Netlink::connect().expect("netlink");
            let msgs = nl
                .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
                .await
                .expect("link dump");
            msgs.into_iter()
                .filter_map(|m| match m {
                    RouteNetlinkMessage::NewLink(l) => {
                        let mut name = None;
                        let mut oper = String::new();
                        let mut changes = 0;
                        for a in l.attributes {
                            match a {
                                LinkAttribute::IfName(n) => name = Some(n),
                                LinkAttribute::OperState(s) => oper = format!("{s:?}"),
                                LinkAttribute::CarrierChanges(c) => changes = c,
                                _ => {}
                            }
                        }
                        Some((name?, (oper, changes)))
                    }
                    _ => None,
                })
                .collect()
        })
    })
}

/// Waits until the kernel has reported the carrier of the bridges and their NICs (its link
/// watcher does so up to a second after a port is added), so that later netlink events can
/// only come from what a test does next.
pub fn wait_settled(ns: &Netns) {
    let settled = edge_testkit::wait_for(Duration::from_secs(5), || {
        let s = carrier_states(ns);
        ["br-api", "br1", "enp3s0f0", "enp4s0f0"]
            .iter()
            .all(|l| s.get(*l).is_some_and(|(oper, _)| oper == "Up"))
    });
    assert!(
        settled.is_some(),
        "links never reached operstate UP: {:?}",
        carrier_states(ns)
    );
}

/// Links whose `ip -j link` entries name them, keyed by name (for quick assertions).
pub fn links_by_name(ns: &Netns) -> BTreeMap<String, serde_json::Value> {
    let v = ns.ip_json(["-d", "link", "show"]);
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| Some((l["ifname"].as_str()?.to_owned(), l.clone())))
        .collect()
}
