//! edge-link against the kernel, in network namespaces modelled on the user's host (veth
//! pairs named enp3s0f0, enp4s0f0, enp4s0f1; the ISP router at 192.198.0.1 behind
//! enp3s0f0). Needs root: without it every test fails with the reason.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::lab::*;
use edge_link::apply::ApplyError;
use edge_link::daemon::{ConvergeError, converge_once};
use edge_link::model::{Observed, SysctlKey};
use edge_link::op::Op;
use edge_testkit::Netns;

const REPAIR_TIMEOUT: Duration = Duration::from_secs(5);

fn ip_in(ns: &Netns, args: &[&str]) -> impl FnOnce() + Send + 'static {
    let name = ns.name().to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    move || {
        let mut all = vec!["-n".to_owned(), name];
        all.extend(args);
        edge_testkit::run_ok("ip", all);
    }
}

fn has_addr(o: &Observed, dev: &str, net: &str) -> bool {
    o.addresses
        .iter()
        .any(|a| a.dev == dev && a.net.to_string() == net)
}

fn has_default_route_via_br_api(o: &Observed) -> bool {
    o.routes.iter().any(|r| {
        r.dst.prefix_len() == 0
            && r.dev.as_deref() == Some("br-api")
            && r.is_ours()
            && r.gateway.map(|g| g.to_string()) == Some("192.198.0.1".into())
    })
}

/// The converged state of the reference configuration, read back over netlink.
fn converged(o: &Observed) -> bool {
    let port_of = |p: &str, b: &str| {
        o.links
            .get(p)
            .is_some_and(|l| l.controller.as_deref() == Some(b) && l.up)
    };
    ["br-api", "br1", "br0"].iter().all(|b| {
        o.links
            .get(*b)
            .is_some_and(|l| l.is_bridge() && l.up && l.mtu == 1500)
    }) && port_of("enp3s0f0", "br-api")
        && port_of("enp4s0f0", "br1")
        && has_addr(o, "br-api", "192.198.0.30/24")
        && has_addr(o, "br1", "10.17.5.1/24")
        && has_addr(o, "br0", "10.17.3.1/24")
        && has_addr(o, "br0", "10.17.4.1/24")
        && !has_addr(o, "enp3s0f0", "192.198.0.30/24")
        && has_default_route_via_br_api(o)
        && o.sysctls
            .get(&SysctlKey::RpFilter("br-api".into()))
            .map(String::as_str)
            == Some("2")
}

#[test]
fn converges_from_scratch_and_a_second_run_writes_nothing() {
    let lab = Lab::new(&[]);
    let d = lab.desired();
    let admin_before = lab.snapshot("enp4s0f1");

    let d1 = d.clone();
    let (first, took) = lab.host().run(move || {
        runtime().block_on(async move {
            let t = Instant::now();
            let r = converge_once(&d1).await;
            (r, t.elapsed())
        })
    });
    let (plan, report) = first.unwrap_or_else(|e| panic!("first run failed: {e:?}"));
    println!(
        "converged from scratch in {:.1} ms: {} operations, {} writes",
        took.as_secs_f64() * 1e3,
        plan.ops.len(),
        report.writes
    );
    assert!(!report.changed.is_empty());
    let o = observe_in(lab.host(), &d);
    assert!(converged(&o), "not converged: {o:#?}");
    // Read back with iproute2 too, as a user would.
    let links = links_by_name(lab.host());
    assert_eq!(links["br-api"]["linkinfo"]["info_kind"], "bridge");
    assert_eq!(links["enp3s0f0"]["master"], "br-api");
    assert_eq!(links["enp4s0f0"]["master"], "br1");
    assert_eq!(links["br-api"]["linkinfo"]["info_data"]["stp_state"], 0);
    let route = lab.host().ip_json(["route", "show", "default"]);
    assert_eq!(route[0]["dev"], "br-api");
    assert_eq!(route[0]["protocol"], "237");
    let fwd = lab.host().exec("sysctl", ["-n", "net.ipv4.ip_forward"]);
    assert_eq!(String::from_utf8_lossy(&fwd.stdout).trim(), "1");
    // The ISP router answers through the bridge.
    lab.host().exec("ping", ["-c1", "-W2", "192.198.0.1"]);

    wait_settled(lab.host());
    let events = EventCounter::start(lab.host());
    let d2 = d.clone();
    let second = lab
        .host()
        .run(move || runtime().block_on(async move { converge_once(&d2).await }));
    let events = events.finish();
    let (plan2, report2) = second.unwrap_or_else(|e| panic!("second run failed: {e:?}"));
    assert!(plan2.ops.is_empty(), "second plan:\n{plan2}");
    assert_eq!(report2.writes, 0, "a converged host must see zero writes");
    assert!(
        events.is_empty(),
        "the second run caused netlink events: {events:#?}"
    );

    assert_eq!(
        admin_before,
        lab.snapshot("enp4s0f1"),
        "the admin NIC changed"
    );
}

/// Foreign objects: libvirt's bridge `virbr0` with its address and route, a route a human
/// added (10.98.0.0/16, proto static).
fn add_foreign_objects(host: &Netns) {
    host.ip(["link", "add", "virbr0", "type", "bridge"]);
    host.ip(["link", "set", "virbr0", "up"]);
    host.ip(["addr", "add", "192.168.122.1/24", "dev", "virbr0"]);
    host.ip([
        "route",
        "add",
        "10.98.0.0/16",
        "via",
        "192.168.122.2",
        "proto",
        "static",
    ]);
}

/// Asserts that the daemon's metrics page (port 9854 in `host`) contains every needle.
fn assert_metrics_contain(host: &Netns, needles: &[&str]) {
    let metrics = host.exec("curl", ["-s", "http://127.0.0.1:9854/metrics"]);
    let metrics = String::from_utf8_lossy(&metrics.stdout);
    for needle in needles {
        assert!(
            metrics.contains(needle),
            "{needle} missing from:\n{metrics}"
        );
    }
}

#[test]
fn the_daemon_repairs_each_drift_and_leaves_foreign_objects_alone() {
    // VLAN filtering asked for on a kernel without it: reported once, never retried.
    let lab = Lab::new(&[("vlan_filtering = false", "vlan_filtering = true")]);
    let d = lab.desired();
    let host = lab.host();
    add_foreign_objects(host);
    let admin_before = lab.snapshot("enp4s0f1");
    let virbr_before = lab.snapshot("virbr0");

    let mut daemon = lab.daemon();
    let st = lab.wait_converged(&mut daemon, Duration::from_secs(20));
    assert!(
        st.notes.iter().any(|n| n.contains("vlan_filtering")),
        "VLAN filtering not reported: {:?}",
        st.notes
    );
    let writes_converged = st.writes;
    assert!(converged(&observe_in(host, &d)));

    type Act = Box<dyn FnOnce() + Send>;
    type Done = Box<dyn Fn(&Observed) -> bool + Send>;
    let cases: Vec<(&str, Act, Done)> = vec![
        (
            "port removed from its bridge",
            Box::new(ip_in(host, &["link", "set", "enp3s0f0", "nomaster"])),
            Box::new(|o: &Observed| o.links["enp3s0f0"].controller.as_deref() == Some("br-api")),
        ),
        (
            "MTU changed",
            Box::new(ip_in(host, &["link", "set", "br1", "mtu", "1400"])),
            Box::new(|o: &Observed| o.links["br1"].mtu == 1500),
        ),
        (
            "address deleted (its route vanishes silently)",
            Box::new(ip_in(
                host,
                &["addr", "del", "192.198.0.30/24", "dev", "br-api"],
            )),
            Box::new(|o: &Observed| {
                has_addr(o, "br-api", "192.198.0.30/24") && has_default_route_via_br_api(o)
            }),
        ),
        (
            "bridge deleted",
            Box::new(ip_in(host, &["link", "del", "br-api"])),
            Box::new(converged),
        ),
        (
            "link set down",
            Box::new(ip_in(host, &["link", "set", "enp4s0f0", "down"])),
            Box::new(|o: &Observed| o.links["enp4s0f0"].up),
        ),
    ];
    for (name, act, done) in cases {
        let took = time_repair(host, &d, REPAIR_TIMEOUT, act, done);
        println!("repaired `{name}` in {:.1} ms", took.as_secs_f64() * 1e3);
        assert!(converged(&observe_in(host, &d)), "after `{name}`");
    }
    let st = lab.wait_converged(&mut daemon, Duration::from_secs(5));
    assert!(st.writes > writes_converged);

    // Metrics say what happened.
    assert_metrics_contain(
        host,
        &[
            "edge_link_drift_repairs_total{kind=\"port\"}",
            "edge_link_drift_repairs_total{kind=\"mtu\"}",
            "edge_link_drift_repairs_total{kind=\"address\"}",
            "edge_link_drift_repairs_total{kind=\"bridge\"}",
            "edge_link_drift_repairs_total{kind=\"link_state\"}",
            "edge_link_link_admin_up{link=\"enp4s0f0\"} 1",
            "edge_link_bridge_ports{bridge=\"br-api\"} 1",
            "edge_link_netlink_events_total{kind=\"port_left_bridge\"}",
            "edge_link_repair_latency_seconds_count",
        ],
    );

    assert_eq!(
        admin_before,
        lab.snapshot("enp4s0f1"),
        "the admin NIC changed"
    );
    assert_eq!(
        virbr_before,
        lab.snapshot("virbr0"),
        "the foreign bridge changed"
    );
    let foreign = host.ip_json(["route", "show", "10.98.0.0/16"]);
    assert_eq!(
        foreign[0]["protocol"], "static",
        "the foreign route is gone: {foreign}"
    );
    let out = daemon.stop().expect("daemon output");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_nic_that_appears_late_is_converged_when_it_appears() {
    let lab = Lab::new(&[]);
    let d = lab.desired();
    // Unplug enp4s0f0 (its peer in `lb` goes with it).
    lab.host().ip(["link", "del", "enp4s0f0"]);
    let mut daemon = lab.daemon();
    let st = lab.wait_converged(&mut daemon, Duration::from_secs(20));
    assert!(
        st.waiting.iter().any(|w| w.contains("enp4s0f0")),
        "enp4s0f0 not reported as waited for: {:?}",
        st.waiting
    );
    let o = observe_in(lab.host(), &d);
    assert!(
        has_addr(&o, "br1", "10.17.5.1/24"),
        "br1 is set up without its port"
    );

    let lb = lab.topo.ns("lb").name().to_owned();
    let host = lab.host().name().to_owned();
    let took = time_repair(
        lab.host(),
        &d,
        REPAIR_TIMEOUT,
        move || {
            // Plug it in: created in `lb`, its peer moved into the host namespace.
            edge_testkit::run_ok(
                "ip",
                [
                    "-n", &lb, "link", "add", "eth0", "type", "veth", "peer", "name", "enp4s0f0",
                    "netns", &host,
                ],
            );
            edge_testkit::run_ok(
                "ip",
                ["-n", &lb, "addr", "add", "10.17.5.30/24", "dev", "eth0"],
            );
            edge_testkit::run_ok("ip", ["-n", &lb, "link", "set", "eth0", "up"]);
        },
        converged,
    );
    println!(
        "late NIC converged {:.1} ms after it appeared",
        took.as_secs_f64() * 1e3
    );
    // The load balancer reaches the host's gateway address through the bridge.
    lab.topo.ns("lb").exec("ping", ["-c1", "-W2", "10.17.5.1"]);
    let st = lab.wait_converged(&mut daemon, Duration::from_secs(5));
    assert!(st.waiting.is_empty(), "{:?}", st.waiting);
}

/// Runs `f` on a new thread inside `ns` without waiting for it.
fn spawn_in<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let path = format!("/run/netns/{}", ns.name());
    thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("netns file");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

/// One TCP connection from the ISP router to `addr` on the host, kept busy with 8-byte echo
/// round trips (one every 2 ms) until [`Echo::finish`].
struct Echo {
    stop: Arc<AtomicBool>,
    client: thread::JoinHandle<Result<Vec<Instant>, String>>,
    server: thread::JoinHandle<u64>,
}

impl Echo {
    /// Listens on `addr` in the host namespace and connects to it from the router's.
    fn start(lab: &Lab, addr: SocketAddr) -> Echo {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let server = spawn_in(lab.host(), move || {
            let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
            ready_tx.send(()).expect("ready");
            let (mut s, _) = l.accept().expect("accept");
            let mut buf = [0u8; 8];
            let mut echoed = 0u64;
            while s.read_exact(&mut buf).is_ok() {
                if s.write_all(&buf).is_err() {
                    break;
                }
                echoed += 1;
            }
            echoed
        });
        ready_rx.recv().expect("server ready");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let client = spawn_in(lab.topo.ns("router"), move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
            let mut trips: Vec<Instant> = Vec::new();
            let mut buf = [0u8; 8];
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                n += 1;
                let res = s
                    .write_all(&n.to_be_bytes())
                    .and_then(|_| s.read_exact(&mut buf));
                if let Err(e) = res {
                    return Err(format!("round trip {n} failed: {e}"));
                }
                assert_eq!(buf, n.to_be_bytes());
                trips.push(Instant::now());
                thread::sleep(Duration::from_millis(2));
            }
            Ok(trips)
        });
        Echo {
            stop,
            client,
            server,
        }
    }

    /// Stops the client; returns when each round trip completed (panics if one failed) and
    /// how many the server echoed.
    fn finish(self) -> (Vec<Instant>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let trips = self
            .client
            .join()
            .expect("client thread")
            .unwrap_or_else(|e| panic!("{e}"));
        // The client's socket is closed: the server reads EOF and returns.
        let echoed = self.server.join().expect("server thread");
        (trips, echoed)
    }
}

/// Prints and checks the round trips of an [`Echo`] across a move that ended at `moved_at`.
fn check_round_trips(trips: &[Instant], echoed: u64, moved_at: Instant) {
    let after = trips.iter().filter(|t| **t > moved_at).count();
    let max_gap = trips
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    println!(
        "{} round trips on one connection, {after} after the move; longest gap {:.1} ms",
        trips.len(),
        max_gap.as_secs_f64() * 1e3
    );
    assert!(after > 10, "too few round trips after the move: {after}");
    assert_eq!(
        echoed,
        trips.len() as u64,
        "the server echoed a different number of messages"
    );
}

#[test]
fn the_make_before_break_move_keeps_a_tcp_connection_alive() {
    let lab = Lab::new(&[]);
    let d = lab.desired();
    let addr: SocketAddr = "192.198.0.30:7070".parse().unwrap();
    let echo = Echo::start(&lab, addr);

    // Some traffic before the move.
    thread::sleep(Duration::from_millis(200));
    let d1 = d.clone();
    let moved_at = lab.host().run(move || {
        runtime().block_on(async move {
            converge_once(&d1).await.expect("converge");
            Instant::now()
        })
    });
    assert!(
        converged(&observe_in(lab.host(), &d)),
        "the address did not move"
    );
    thread::sleep(Duration::from_millis(300));
    let (trips, echoed) = echo.finish();
    check_round_trips(&trips, echoed, moved_at);
}

/// The host's IPv6 address, its prefix and the ISP router's IPv6 address (a ULA prefix).
const HOST6: &str = "fd00:198::30/64";
const ROUTER6: &str = "fd00:198::1";

/// Waits until duplicate address detection of `net` on `dev` in `ns` has ended (the
/// address is no longer tentative); panics if it failed or did not end in 5 s.
fn wait_dad_done(ns: &Netns, dev: &str, net: &str) {
    let flags = || address_flags(ns, dev, net);
    let done = edge_testkit::wait_for(Duration::from_secs(5), || {
        flags().is_some_and(|f| !f.contains(&"tentative".to_owned()))
    });
    assert!(
        done.is_some(),
        "DAD of {net} on {dev} did not end: {:?}",
        flags()
    );
    let f = flags().unwrap_or_default();
    assert!(
        !f.contains(&"dadfailed".to_owned()),
        "{net} on {dev}: {f:?}"
    );
}

/// The flags `ip -j addr` shows for `net` on `dev` (`tentative`, `dadfailed`, `nodad`,
/// ...); `None` when the address is not there.
fn address_flags(ns: &Netns, dev: &str, net: &str) -> Option<Vec<String>> {
    let (ip, len) = net.split_once('/')?;
    let len: u64 = len.parse().ok()?;
    let v = ns.ip_json(["addr", "show", "dev", dev]);
    let info = v.get(0)?.get("addr_info")?.as_array()?.clone();
    let a = info
        .into_iter()
        .find(|a| a["local"] == ip && a["prefixlen"].as_u64() == Some(len))?;
    let flags = a
        .as_object()?
        .iter()
        .filter(|(_, v)| **v == serde_json::Value::Bool(true))
        .map(|(k, _)| k.clone())
        .collect();
    Some(flags)
}

/// As the kernel reported it (`events` from an [`EventCounter`]): the bridge's copy of
/// [`HOST6`] arrives before the NIC's goes, and is never tentative (DAD would keep it
/// unusable for seconds).
fn assert_host6_moved_before_removed(host: &Netns, events: &[String]) {
    let of_host6: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("Address(fd00:198::30)") && e.contains("Address(AddressMessage"))
        .collect();
    let bridge_idx = links_by_name(host)["br-api"]["ifindex"].clone();
    let nic_idx = links_by_name(host)["enp3s0f0"]["ifindex"].clone();
    let added = of_host6
        .iter()
        .position(|e| e.contains("NewAddress") && e.contains(&format!("index: {bridge_idx} ")));
    let deleted = of_host6
        .iter()
        .position(|e| e.contains("DelAddress") && e.contains(&format!("index: {nic_idx} ")));
    assert!(
        matches!((added, deleted), (Some(a), Some(d)) if a < d),
        "not make-before-break for {HOST6}: {of_host6:#?}"
    );
    assert!(
        of_host6.iter().all(|e| !e.contains("Tentative")),
        "{HOST6} was tentative: {of_host6:#?}"
    );
}

/// The plan moving [`HOST6`] from enp3s0f0 onto br-api adds it to the bridge, enslaves the
/// NIC, moves the default route via `gw6`, checks `gw6`, and only then removes the NIC's
/// copy, in that order.
fn assert_host6_plan_is_make_before_break(plan: &edge_link::Plan, gw6: std::net::IpAddr) {
    let pos = |what: &str, f: &dyn Fn(&Op) -> bool| {
        plan.ops
            .iter()
            .position(f)
            .unwrap_or_else(|| panic!("no {what} in the plan:\n{plan}"))
    };
    let add = pos(
        "address add",
        &|o| matches!(o, Op::AddAddress { dev, net, .. } if dev == "br-api" && net.to_string() == HOST6),
    );
    let enslave = pos(
        "enslave",
        &|o| matches!(o, Op::SetController { port, bridge, .. } if port == "enp3s0f0" && bridge == "br-api"),
    );
    let moved = pos("route move", &|o| {
        matches!(o, Op::ReplaceRoute { route, .. }
            if route.dst.prefix_len() == 0 && route.gateway == Some(gw6)
                && route.dev.as_deref() == Some("br-api"))
    });
    let check = pos(
        "gateway check",
        &|o| matches!(o, Op::CheckGateway { dev, gateway, .. } if dev == "br-api" && *gateway == gw6),
    );
    let del = pos(
        "address del",
        &|o| matches!(o, Op::DelAddress { dev, net, .. } if dev == "enp3s0f0" && net.to_string() == HOST6),
    );
    assert!(
        add < enslave && enslave < moved && moved < check && check < del,
        "not make-before-break:\n{plan}"
    );
}

#[test]
fn the_make_before_break_move_of_an_ipv6_address_keeps_a_tcp_connection_alive() {
    // br-api also holds the host's IPv6 address, with an IPv6 default route via the router.
    let lab = Lab::new(&[
        (
            "addresses = [\"192.198.0.30/24\"]",
            "addresses = [\"192.198.0.30/24\", \"fd00:198::30/64\"]",
        ),
        (
            "# The host's default route: out through the ISP router.\n",
            "[[link.route]]\nto = \"::/0\"\nvia = \"fd00:198::1\"\ndev = \"br-api\"\nmetric = 100\n\n# The host's default route: out through the ISP router.\n",
        ),
    ]);
    let d = lab.desired();
    let host = lab.host();
    let router = lab.topo.ns("router");
    router.ip([
        "addr",
        "add",
        &format!("{ROUTER6}/64"),
        "dev",
        "lan0",
        "nodad",
    ]);
    // As networkd leaves it: the NIC holds the address (DAD done) and the default route.
    host.ip(["addr", "add", HOST6, "dev", "enp3s0f0"]);
    wait_dad_done(host, "enp3s0f0", HOST6);
    host.ip([
        "-6", "route", "add", "default", "via", ROUTER6, "dev", "enp3s0f0", "metric", "100",
        "proto", "static",
    ]);
    let router_mac = router.ip_json(["link", "show", "lan0"])[0]["address"].clone();
    // New interfaces (the bridges) run DAD for 10 s instead of 1-2 s: longer than the
    // gateway check waits, so a move that waited for DAD on the bridge would fail here.
    host.exec("sysctl", ["-qw", "net.ipv6.conf.default.dad_transmits=10"]);

    let addr: SocketAddr = "[fd00:198::30]:7070".parse().unwrap();
    let echo = Echo::start(&lab, addr);
    // Some traffic before the move.
    thread::sleep(Duration::from_millis(200));
    let events = EventCounter::start(host);
    let d1 = d.clone();
    let (plan, report, moved_at) = host.run(move || {
        runtime().block_on(async move {
            let (plan, report) = converge_once(&d1).await.expect("converge");
            (plan, report, Instant::now())
        })
    });
    // Right after the move the bridge's address is usable: not waiting for DAD, which
    // would leave it unable to receive (and the connection stalled) for a second or more.
    let flags = address_flags(host, "br-api", HOST6);
    assert!(
        flags
            .as_ref()
            .is_some_and(|f| !f.iter().any(|f| f == "tentative" || f == "dadfailed")),
        "{HOST6} on br-api right after the move: {flags:?}"
    );
    assert_host6_moved_before_removed(host, &events.finish());
    thread::sleep(Duration::from_millis(300));
    let (trips, echoed) = echo.finish();

    // The make-before-break order, for the IPv6 address as for the IPv4 one.
    let gw6: std::net::IpAddr = ROUTER6.parse().unwrap();
    assert_host6_plan_is_make_before_break(&plan, gw6);
    // The gateway check ran and passed (a failed one rolls the run back with an error) ...
    assert!(
        report
            .already
            .iter()
            .any(|o| matches!(o, Op::CheckGateway { gateway, .. } if *gateway == gw6)),
        "the IPv6 gateway was not checked: {report:?}"
    );
    // ... and the router answered neighbour discovery on the bridge.
    let neigh = host.ip_json(["-6", "neigh", "show", ROUTER6, "dev", "br-api"]);
    assert_eq!(
        neigh[0]["lladdr"], router_mac,
        "no neighbour entry for the router on br-api: {neigh}"
    );

    // The address is on the bridge only, and so is the default route (now ours).
    let o = observe_in(host, &d);
    assert!(converged(&o), "the IPv4 move did not complete: {o:#?}");
    assert!(has_addr(&o, "br-api", HOST6), "{HOST6} not on br-api");
    assert!(
        !has_addr(&o, "enp3s0f0", HOST6),
        "{HOST6} still on enp3s0f0"
    );
    let defaults6: Vec<_> = o
        .routes
        .iter()
        .filter(|r| r.dst.to_string() == "::/0")
        .collect();
    assert!(
        defaults6.len() == 1
            && defaults6[0].dev.as_deref() == Some("br-api")
            && defaults6[0].gateway == Some(gw6)
            && defaults6[0].metric == 100
            && defaults6[0].is_ours(),
        "IPv6 default routes: {defaults6:#?}"
    );
    // The router still reaches the host's IPv6 address, now through the bridge.
    router.exec("ping", ["-6", "-c1", "-W2", "fd00:198::30"]);

    check_round_trips(&trips, echoed, moved_at);
}

#[test]
fn restarting_the_daemon_causes_no_link_flap() {
    let lab = Lab::new(&[]);
    let mut daemon = lab.daemon();
    lab.wait_converged(&mut daemon, Duration::from_secs(20));
    // The kernel reports a new port's carrier through its link watcher, up to a second
    // later; let that settle so only the restart is measured.
    let settled = edge_testkit::wait_for(Duration::from_secs(5), || {
        let s = carrier_states(lab.host());
        ["br-api", "br1", "enp3s0f0", "enp4s0f0"]
            .iter()
            .all(|l| s.get(*l).is_some_and(|(oper, _)| oper == "Up"))
    });
    assert!(
        settled.is_some(),
        "links never reached operstate UP: {:?}",
        carrier_states(lab.host())
    );
    let carriers_before = carrier_states(lab.host());
    let events = EventCounter::start(lab.host());
    daemon.stop();
    let mut daemon = lab.daemon();
    let st = lab.wait_converged(&mut daemon, Duration::from_secs(20));
    let events = events.finish();
    assert_eq!(
        carriers_before,
        carrier_states(lab.host()),
        "operstate or carrier-change counters moved during the restart"
    );
    let link_events: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("NewLink") || e.contains("DelLink"))
        .collect();
    assert!(
        link_events.is_empty(),
        "link events during the restart: {link_events:#?}"
    );
    assert!(events.is_empty(), "events during the restart: {events:#?}");
    assert_eq!(st.writes, 0, "the restarted daemon wrote to the kernel");
}

#[test]
fn a_gateway_that_does_not_answer_reverts_the_move() {
    let lab = Lab::new(&[("move_check_timeout = \"5s\"", "move_check_timeout = \"1s\"")]);
    let d = lab.desired();
    // The ISP router is gone: nobody answers for 192.198.0.1.
    lab.topo
        .ns("router")
        .ip(["addr", "del", "192.198.0.1/24", "dev", "lan0"]);
    let links_before = lab.host().ip_json(["link", "show"]);
    let addrs_before = lab.host().ip_json(["addr", "show"]);
    let routes_before = lab.host().ip_json(["-4", "route", "show", "table", "all"]);
    let res = lab
        .host()
        .run(move || runtime().block_on(async move { converge_once(&d).await }));
    match res.map_err(|e| match e {
        ConvergeError::Apply(a) => Ok(*a),
        other => Err(other),
    }) {
        Err(Ok(ApplyError::GatewayCheck { rollback, .. })) => {
            assert!(
                rollback.failed.is_empty(),
                "rollback incomplete: {rollback:?}"
            );
        }
        other => panic!("expected a failed gateway check, got {other:?}"),
    }
    // Bridges gone again, the NIC keeps its address and route.
    assert_eq!(links_before, lab.host().ip_json(["link", "show"]));
    let strip = |v: serde_json::Value| {
        // Address lifetimes tick; compare what matters.
        v.as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                (
                    l["ifname"].clone(),
                    l["addr_info"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| (a["local"].clone(), a["prefixlen"].clone()))
                        .collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(addrs_before),
        strip(lab.host().ip_json(["addr", "show"]))
    );
    assert_eq!(
        routes_before,
        lab.host().ip_json(["-4", "route", "show", "table", "all"])
    );
}
