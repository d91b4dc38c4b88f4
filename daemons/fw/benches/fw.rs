//! `cargo bench -p edge-fw`: compile and apply 1k / 10k / 50k port-forwards over netlink
//! against `nft -f` of the same rendered ruleset in the same run, the netlink read-back
//! against `nft -j list` of the same tables, the full apply path (build, read, plan, dry run,
//! commit, verify), the zero-write check, and TCP connection latency through the dispatch map
//! with 10 vs 50k forwards.
//! `cargo bench -p edge-fw -- flush`: how fast the running daemon restores its tables after
//! `nft flush ruleset`.
//!
//! Runs as root inside namespaces it creates (prefix `efw`; `efp` for the flush run);
//! prints Markdown tables.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edge_config::fw::{Forward, Fw, Policy, Proto};
use edge_config::types::{InterfaceName, Port, PortRange};
use edge_fw::apply::{self, Options};
use edge_fw::compile::compile;
use edge_fw::ir::Ruleset;
use edge_fw::model::{Env, Model};
use edge_fw::nfnl::Socket;
use edge_fw::observe::read_live;
use edge_fw::txn::Transaction;
use edge_fw::wire::Live;
use edge_testkit::{Topology, in_new_netns};

fn reference_fw() -> Fw {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/edge.toml");
    let text = std::fs::read_to_string(&path).expect("config/edge.toml");
    let cfg = edge_config::parse(&path, &text)
        .expect("reference config")
        .config;
    cfg.fw.expect("[fw]")
}

/// A firewall with `n` TCP forwards on `iface` to `to:9000`, ports 1024.. .
fn synthetic(n: usize, iface: &str, addr: Ipv4Addr, to: Ipv4Addr) -> Fw {
    let mut fw = reference_fw();
    let template = fw.forwards[0].clone();
    let ifname = InterfaceName::new(iface).expect("ifname");
    fw.wan = vec![ifname.clone()];
    fw.lan.clear();
    fw.vpn.clear();
    fw.masquerade.clear();
    fw.input.policy = Policy::Accept;
    fw.forwards = (0..n)
        .map(|i| {
            let p = Port::new(1024 + i as u16).expect("port");
            Forward {
                name: format!("f{i}"),
                proto: Proto::Tcp,
                port: PortRange::single(p),
                on: vec![ifname.clone()],
                address: Some(IpAddr::V4(addr)),
                to: IpAddr::V4(to),
                to_port: PortRange::single(Port::new(9000).expect("port")),
                from: None,
                hairpin: false,
                // Plain forwards, as measured before the origin lock existed (a lock puts
                // each forward behind a chain of its own; web forwards are a handful).
                origin_lock: None,
                ..template.clone()
            }
        })
        .collect();
    fw
}

fn model(fw: &Fw) -> Model {
    Model::new(
        fw,
        Env {
            file: "bench.toml".into(),
            ..Env::default()
        },
    )
    .expect("model")
}

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed());
        last = Some(v);
    }
    (best, last.expect("runs > 0"))
}

/// Best thread CPU time of `runs` calls: robust when other jobs share the 2 cores.
fn best_cpu<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let now = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the live timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    };
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = now();
        std::hint::black_box(f());
        best = best.min(now() - t);
    }
    best
}

fn nft_f(script: &str) -> Duration {
    let t = Instant::now();
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("nft");
    assert!(
        out.status.success(),
        "nft -f failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

struct Row {
    n: usize,
    elements: usize,
    compile: Duration,
    msgs: usize,
    bytes: usize,
    dry: Duration,
    commit: Duration,
    nft: Duration,
    verify: Duration,
    nft_list: Duration,
    full: Duration,
    noop_writes: usize,
}

/// `nft -j list table inet edge; nft -j list table inet edge_state`.
fn nft_j_list() -> Duration {
    let t = Instant::now();
    for table in ["edge", "edge_state"] {
        let out = Command::new("nft")
            .args(["-j", "list", "table", "inet", table])
            .output()
            .expect("nft");
        assert!(out.status.success(), "nft -j list table inet {table}");
        std::hint::black_box(out.stdout.len());
    }
    t.elapsed()
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn apply_row(n: usize) -> Row {
    let fw = synthetic(
        n,
        "wan0",
        Ipv4Addr::new(192, 198, 0, 30),
        Ipv4Addr::new(10, 17, 5, 30),
    );
    let m = model(&fw);
    let (compile_wall, rs) = best(5, || compile(&m).expect("compile"));
    let compile_t = best_cpu(5, || compile(&m).expect("compile")).min(compile_wall);
    let rs2 = rs.clone();
    let m2 = m.clone();
    in_new_netns(move || {
        let (m, rs) = (m2, rs2);
        let elements: usize = rs.edge.sets.iter().map(|s| s.elements.len()).sum::<usize>()
            + rs.state
                .sets
                .iter()
                .map(|s| s.elements.len())
                .sum::<usize>();
        let sock = Socket::open().expect("socket");
        // First install (creates both tables).
        apply::apply(&sock, &m, &rs, Options::default()).unwrap_or_else(|e| panic!("{e}"));
        // Replace the existing tables: netlink dry run + commit, then nft -f of the same
        // ruleset, alternating, best of 3 each.
        let want = edge_fw::lower::ruleset(&rs);
        let live = read_live(&sock).expect("read");
        let tx = Transaction::replace(&want, &live);
        let mut dry = Duration::MAX;
        let mut commit = Duration::MAX;
        let mut nft = Duration::MAX;
        let mut out = None;
        let script = rs.script();
        for _ in 0..3 {
            let t = Instant::now();
            let o = sock.send(&tx, true).expect("dry run");
            assert!(o.rejections.is_empty(), "{:?}", o.rejections);
            dry = dry.min(t.elapsed());
            let t = Instant::now();
            let o = sock.send(&tx, false).expect("commit");
            assert!(o.rejections.is_empty(), "{:?}", o.rejections);
            commit = commit.min(t.elapsed());
            out = Some(o);
            nft = nft.min(nft_f(&script));
        }
        let o = out.expect("ran");
        // The read-back (netlink, decoded, compared) against nft's own JSON listing of the
        // same tables, alternating, best of 3 each.
        let mut verify = Duration::MAX;
        let mut nft_list = Duration::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            apply::verify(&sock, &want).expect("verify");
            verify = verify.min(t.elapsed());
            nft_list = nft_list.min(nft_j_list());
        }
        // The full apply path from the model: compile, read, plan, dry run, commit, verify
        // (forced: the tables already match).
        let forced = Options {
            force: true,
            ..Options::default()
        };
        let (full, _) = best(3, || {
            let rs = compile(&m).expect("compile");
            apply::apply(&sock, &m, &rs, forced).expect("full apply")
        });
        let noop = apply::apply(&sock, &m, &rs, Options::default()).expect("noop apply");
        let noop_writes = usize::from(noop.dry_run.is_some()) + usize::from(noop.commit.is_some());
        Row {
            n,
            elements,
            compile: compile_t,
            msgs: o.messages,
            bytes: o.bytes,
            dry,
            commit,
            nft,
            verify,
            nft_list,
            full,
            noop_writes,
        }
    })
}

fn echo_server(l: TcpListener) {
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let mut b = [0u8; 1];
        if s.read_exact(&mut b).is_ok() {
            let _ = s.write_all(&b);
        }
    }
}

/// Median and p90 time of (TCP connect through the DNAT map + 1-byte echo + close).
fn latency(n: usize, samples: usize) -> (Duration, Duration) {
    let mut t = Topology::new("efw");
    t.add("c");
    t.add("h");
    t.add("s");
    t.link("h", "hc", "c", "eth0");
    t.link("h", "hs", "s", "eth0");
    t.addr("h", "hc", "10.99.0.1/24");
    t.addr("c", "eth0", "10.99.0.2/24");
    t.addr("h", "hs", "10.99.1.1/24");
    t.addr("s", "eth0", "10.99.1.2/24");
    t.route("s", &["default", "via", "10.99.1.1"]);
    t.forward("h");
    let fw = synthetic(
        n,
        "hc",
        Ipv4Addr::new(10, 99, 0, 1),
        Ipv4Addr::new(10, 99, 1, 2),
    );
    let m = model(&fw);
    let rs: Ruleset = compile(&m).expect("compile");
    t.ns("h")
        .run(move || {
            let sock = Socket::open().map_err(|e| e.to_string())?;
            apply::apply(&sock, &m, &rs, Options::default())
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let server_ns = t.ns("s").name().to_owned();
    std::thread::spawn(move || {
        enter(&server_ns);
        let l = TcpListener::bind("10.99.1.2:9000").expect("bind");
        echo_server(l);
    });
    std::thread::sleep(Duration::from_millis(200));
    let port = 1024 + (n / 2) as u16;
    let client = t.ns("c").run(move || {
        let addr = SocketAddr::from(([10, 99, 0, 1], port));
        let mut v = Vec::with_capacity(samples);
        for i in 0..samples + 50 {
            let t = Instant::now();
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                .expect("connect through the forward");
            s.write_all(b"x").expect("write");
            let mut b = [0u8; 1];
            s.read_exact(&mut b).expect("echo");
            drop(s);
            if i >= 50 {
                v.push(t.elapsed());
            }
        }
        v.sort();
        (v[v.len() / 2], v[v.len() * 9 / 10])
    });
    drop(t);
    client
}

fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns");
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// nf_tables notifications of a namespace, stamped on receipt, from a thread inside it.
fn nft_events(ns: &str) -> std::sync::mpsc::Receiver<(Instant, edge_fw::events::Notification)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        enter(&ns);
        let sock = edge_fw::nfnl::subscribe().expect("nf_tables event socket");
        let mut buf = Vec::with_capacity(1 << 16);
        loop {
            let Ok(d) = edge_fw::nfnl::recv_events(&sock, &mut buf) else {
                continue;
            };
            let at = Instant::now();
            for e in edge_fw::events::parse(d) {
                if tx.send((at, e)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// `nft flush ruleset` (what restarting nftables.service does) against a running edge-fw:
/// the time from the flush's commit (its `DELTABLE inet edge` notification) to edge-fw's
/// restoring commit (`NEWTABLE inet edge`), both seen in the nf_tables events; `rounds`
/// samples. Anchors of the same run: `nft -f` of the same ruleset into an empty namespace
/// (a restore by hand) and our own dry run + commit of it (the floor), plus the cost of one
/// netlink read of our tables, which the repair path pays before writing.
// One measurement read top to bottom: the anchors, the daemon's restores and the table
// that compares them share the configuration, the compiled ruleset and the timings.
#[allow(clippy::too_many_lines)]
fn flush_restore(extra: usize, rounds: usize) {
    use edge_fw::events::Notification;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/edge.toml");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = std::fs::read_to_string(&path)
        .expect("config")
        .replace(
            "state_dir = \"/var/lib/edge\"",
            &format!("state_dir = \"{}\"", dir.path().display()),
        )
        .replace(
            "runtime_dir = \"/run/edge\"",
            &format!("runtime_dir = \"{}\"", dir.path().display()),
        );
    // `extra` more TCP forwards on br-api (ports 20000..), as an operator would write them.
    for i in 0..extra {
        text.push_str(&format!(
            "\n[[fw.forward]]\nname = \"b{i}\"\nport = {}\naddress = \"192.198.0.30\"\nto = \"10.17.5.30\"\nto_port = 9000\n",
            20000 + i
        ));
    }
    // Never fetch Cloudflare's list from a benchmark: a closed local port.
    text.push_str("\n[fw.origin_lock]\nurl = \"http://127.0.0.1:9/client/v4/ips\"\n");
    let cfg_path = dir.path().join("edge.toml");
    std::fs::write(&cfg_path, &text).expect("write config");
    let cfg = edge_config::parse(&cfg_path, &text).expect("config").config;
    let m = Model::from_config(&cfg, Default::default()).expect("model");
    let rs = compile(&m).expect("compile");

    // Anchors: restores by hand or by our library, in a namespace of their own, each right
    // after an `nft flush ruleset` of the installed tables (the state the daemon meets).
    let script = rs.script();
    let rs2 = rs.clone();
    let m2 = m.clone();
    let (anchor_nft, anchor_commit, anchor_dry_commit, read_absent, read_present) =
        in_new_netns(move || {
            let flush = || {
                let ok = Command::new("nft")
                    .args(["flush", "ruleset"])
                    .status()
                    .expect("nft");
                assert!(ok.success());
            };
            let sock = Socket::open().expect("socket");
            apply::apply(&sock, &m2, &rs2, Options::default()).expect("install");
            let tx = Transaction::replace(&edge_fw::lower::ruleset(&rs2), &Live::default());
            let mut best = [Duration::MAX; 5];
            for _ in 0..5 {
                flush();
                best[0] = best[0].min(nft_f(&script));
                flush();
                let t = Instant::now();
                apply::commit(&sock, &tx, false).expect("commit");
                best[1] = best[1].min(t.elapsed());
                flush();
                let t = Instant::now();
                read_live(&sock).expect("read");
                best[3] = best[3].min(t.elapsed());
                let t = Instant::now();
                apply::commit(&sock, &tx, true).expect("commit");
                best[2] = best[2].min(t.elapsed());
                let t = Instant::now();
                read_live(&sock).expect("read");
                best[4] = best[4].min(t.elapsed());
            }
            (best[0], best[1], best[2], best[3], best[4])
        });

    let ns = edge_testkit::Netns::new("efp", "flush");
    let events = nft_events(ns.name());
    // EDGE_FW_BIN: measure another build of the daemon (e.g. an older commit) the same way.
    let bin = std::env::var("EDGE_FW_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_edge-fw").into());
    println!("daemon: {bin}\n");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--config",
        &cfg_path.to_string_lossy(),
        "--log-format",
        "text",
    ]);
    let mut daemon = ns.spawn("edge-fw", cmd);
    let converged = |rs: &Ruleset| {
        let rs = rs.clone();
        ns.run(move || {
            Socket::open()
                .ok()
                .and_then(|s| read_live(&s).ok())
                .is_some_and(|l| edge_fw::wire::diff(&edge_fw::lower::ruleset(&rs), &l).is_empty())
        })
    };
    let ok = edge_testkit::wait_for(Duration::from_secs(120), || converged(&rs));
    assert!(
        ok.is_some(),
        "edge-fw did not apply: running {}",
        daemon.is_running()
    );
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        // Let the daemon finish whatever it does after its last write.
        std::thread::sleep(Duration::from_millis(600 + extra as u64));
        while events.try_recv().is_ok() {}
        ns.exec("nft", ["flush", "ruleset"]);
        let is = |n: &Notification, want: u32| matches!(n, Notification::Object { msg, family: 1, table } if u32::from(*msg) == want && table == "edge");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut t0 = None;
        let mut t1 = None;
        while t1.is_none() && Instant::now() < deadline {
            let Ok((at, n)) = events.recv_timeout(Duration::from_millis(100)) else {
                continue;
            };
            if t0.is_none() && is(&n, libc::NFT_MSG_DELTABLE as u32) {
                t0 = Some(at);
            } else if t0.is_some() && is(&n, libc::NFT_MSG_NEWTABLE as u32) {
                t1 = Some(at);
            }
        }
        let (Some(t0), Some(t1)) = (t0, t1) else {
            panic!("edge-fw did not restore inet edge within 60 s");
        };
        samples.push(t1 - t0);
    }
    assert!(
        converged(&rs),
        "restored table differs from the compiled one"
    );
    daemon.stop();
    samples.sort();
    let q = |f: f64| samples[((samples.len() - 1) as f64 * f) as usize];
    println!(
        "edge-fw restore after `nft flush ruleset` (reference config + {extra} forwards, {} rounds; release build)\n",
        samples.len()
    );
    println!("| figure | ms |");
    println!("|---|---:|");
    println!("| restore: min | {} |", ms(samples[0]));
    println!("| restore: median | {} |", ms(q(0.5)));
    println!("| restore: p90 | {} |", ms(q(0.9)));
    println!("| restore: max | {} |", ms(samples[samples.len() - 1]));
    println!(
        "| anchor: our commit of the same ruleset after a flush (best of 5) | {} |",
        ms(anchor_commit)
    );
    println!(
        "| anchor: our dry run + commit of it (best of 5) | {} |",
        ms(anchor_dry_commit)
    );
    println!(
        "| anchor: `nft -f` of it (best of 5) | {} |",
        ms(anchor_nft)
    );
    println!(
        "| one netlink read of our tables, absent | {} |",
        ms(read_absent)
    );
    println!(
        "| one netlink read of our tables, present | {} |",
        ms(read_present)
    );
    println!(
        "\nmedian restore / our commit = {:.2}; median restore / nft -f = {:.2}",
        q(0.5).as_secs_f64() / anchor_commit.as_secs_f64(),
        q(0.5).as_secs_f64() / anchor_nft.as_secs_f64()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::env::args().any(|a| a == "flush") {
        // `cargo bench -p edge-fw -- flush`: restore latency of the running daemon.
        edge_testkit::require_root();
        // `-- flush N`: N more forwards than the reference (fewer rounds when N > 0).
        let extra: usize = std::env::args()
            .skip_while(|a| a != "flush")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        flush_restore(extra, if extra == 0 { 20 } else { 5 });
        return;
    }
    if std::env::args().any(|a| a == "readback") {
        // `cargo bench -p edge-fw -- readback`: where the read-back of 50k forwards goes.
        readback();
        return;
    }
    if std::env::args().any(|a| a == "compile") {
        // `cargo bench -p edge-fw -- compile`: the pure compiler only (no root needed).
        compile_only();
        return;
    }
    apply_and_latency();
}

/// The read-back of 50k forwards, piece by piece: read, diff, lower, and a raw dump.
fn readback() {
    edge_testkit::require_root();
    let fw = synthetic(
        50_000,
        "wan0",
        Ipv4Addr::new(192, 198, 0, 30),
        Ipv4Addr::new(10, 17, 5, 30),
    );
    let m = model(&fw);
    let rs = compile(&m).expect("compile");
    in_new_netns(move || {
        let sock = Socket::open().expect("socket");
        apply::apply(&sock, &m, &rs, Options::default()).expect("install");
        let want = edge_fw::lower::ruleset(&rs);
        let (t_read, live) = best(3, || read_live(&sock).expect("read"));
        let (t_diff, _) = best(3, || edge_fw::wire::diff(&want, &live));
        let (t_lower, _) = best(3, || edge_fw::lower::ruleset(&rs));
        let (t_raw, n) = best(3, || {
            let mut a = edge_fw::codec::Attrs::new();
            a.str(edge_fw::uapi::NFTA_SET_ELEM_LIST_TABLE, "edge")
                .str(edge_fw::uapi::NFTA_SET_ELEM_LIST_SET, "fwd4");
            let mut n = 0usize;
            sock.dump(
                libc::NFT_MSG_GETSETELEM,
                edge_fw::uapi::NFPROTO_INET,
                &a,
                |m| n += m.body.len(),
            )
            .expect("dump");
            n
        });
        println!(
            "50k forwards: read_live {} ms, diff {} ms, lower {} ms; raw dump of fwd4 (no decode) {} ms, {} bytes",
            ms(t_read),
            ms(t_diff),
            ms(t_lower),
            ms(t_raw),
            n
        );
    });
}

/// The pure compiler at 1k, 10k and 50k forwards, with the plan and the batch build.
fn compile_only() {
    for n in [1_000, 10_000, 50_000] {
        let fw = synthetic(
            n,
            "wan0",
            Ipv4Addr::new(192, 198, 0, 30),
            Ipv4Addr::new(10, 17, 5, 30),
        );
        let m = model(&fw);
        let (t, _) = best(5, || compile(&m).expect("compile"));
        let cpu = best_cpu(5, || compile(&m).expect("compile"));
        println!(
            "compile {n} forwards: {} ms wall, {} ms CPU (best of 5)",
            ms(t),
            ms(cpu)
        );
        let rs = compile(&m).expect("compile");
        let want = edge_fw::lower::ruleset(&rs);
        let (tp, tx) = best(3, || Transaction::replace(&want, &Live::default()));
        let (tb, _) = best(3, || tx.encode(1));
        println!(
            "  plan of {n} forwards: {} ms, batch build {} ms (best of 3)",
            ms(tp),
            ms(tb)
        );
    }
}

/// The main tables: apply figures per size, then connect latency through the DNAT map.
fn apply_and_latency() {
    edge_testkit::require_root();
    println!("edge-fw benchmark (release build, 2 cores; best of 3 for netlink and nft -f)\n");
    println!(
        "| forwards | set elements | compile ms (CPU) | batch msgs | batch MB | dry run ms | commit ms | nft -f ms | commit / nft -f | read-back ms | nft -j list ms | read-back / nft -j | full apply ms | writes when converged |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in [1_000, 10_000, 50_000] {
        let r = apply_row(n);
        println!(
            "| {} | {} | {} | {} | {:.2} | {} | {} | {} | {:.2} | {} | {} | {:.3} | {} | {} |",
            r.n,
            r.elements,
            ms(r.compile),
            r.msgs,
            r.bytes as f64 / 1e6,
            ms(r.dry),
            ms(r.commit),
            ms(r.nft),
            r.commit.as_secs_f64() / r.nft.as_secs_f64(),
            ms(r.verify),
            ms(r.nft_list),
            r.verify.as_secs_f64() / r.nft_list.as_secs_f64(),
            ms(r.full),
            r.noop_writes
        );
    }
    println!(
        "\nTCP connect + 1-byte echo + close through the DNAT map (2000 samples after 50 warm-up):\n"
    );
    println!("| forwards | median µs | p90 µs |");
    println!("|---:|---:|---:|");
    let mut med = Vec::new();
    for n in [10, 50_000] {
        let (m, p90) = latency(n, 2000);
        println!(
            "| {n} | {:.1} | {:.1} |",
            m.as_secs_f64() * 1e6,
            p90.as_secs_f64() * 1e6
        );
        med.push(m);
    }
    println!(
        "\nratio median(50k) / median(10) = {:.3}",
        med[1].as_secs_f64() / med[0].as_secs_f64()
    );
}
