//! The replica probe: real packets through a ruleset in private namespaces, and what happens
//! where namespaces cannot be created: the probe is skipped, and a confirm-apply then never
//! confirms itself (only a human does, else the previous tables come back).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edge_fw::apply::Options;
use edge_fw::confirm::{self, Outcome, Probe, Verdict};
use edge_fw::ir::L4;
use edge_fw::nfnl::Socket;
use edge_fw::replica::{self, Path};
use edge_fw::safety;
use edge_fw::wire::Live;
use edge_testkit::{in_new_netns, wait_for};

fn ssh_from_admin() -> Path {
    Path {
        what: "SSH from the admin LAN".into(),
        iif: "enp4s0f1".into(),
        src: "192.168.1.2".parse().expect("ip"),
        src_net: "192.168.1.0/24".parse().expect("net"),
        dst: "192.168.1.1".parse().expect("ip"),
        proto: L4::Tcp,
        port: 22,
    }
}

#[test]
fn the_replica_admits_what_the_ruleset_admits_and_nothing_else() {
    let (_, rs) = common::build(&common::reference(), Default::default());
    let mut from_internet = ssh_from_admin();
    from_internet.what = "SSH from the internet".into();
    from_internet.iif = "br-api".into();
    from_internet.src = "198.51.100.9".parse().expect("ip");
    from_internet.src_net = "198.51.100.9/32".parse().expect("net");
    from_internet.dst = "192.198.0.30".parse().expect("ip");
    let wg = Path {
        what: "WireGuard".into(),
        iif: "br-api".into(),
        src: "198.51.100.7".parse().expect("ip"),
        src_net: "198.51.100.7/32".parse().expect("net"),
        dst: "192.198.0.30".parse().expect("ip"),
        proto: L4::Udp,
        port: 51820,
    };
    let paths = vec![ssh_from_admin(), from_internet, wg];
    // Run from a namespace of its own: the replica never depends on the caller's.
    let results = in_new_netns(move || replica::run(&rs, &paths, Duration::from_millis(800)))
        .expect("replica built");
    assert!(results[0].is_ok(), "admin SSH admitted: {results:?}");
    assert!(
        results[1]
            .as_ref()
            .is_err_and(|e| e.contains("connect to 192.198.0.30:22")),
        "internet SSH dropped: {results:?}"
    );
    assert!(results[2].is_ok(), "WireGuard echoed: {results:?}");
}

#[test]
fn without_the_right_to_create_namespaces_the_replica_is_skipped_not_passed() {
    let (m, rs) = common::build(&common::reference(), Default::default());
    let verdict = in_new_netns(move || {
        // What the hardened unit leaves edge-fw: no CAP_SYS_ADMIN. Threads inherit it.
        caps::drop(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_ADMIN,
        )
        .expect("drop CAP_SYS_ADMIN");
        let probe = Probe::Replica {
            paths: vec![ssh_from_admin()],
        };
        confirm::run_probe(&probe, &m, &rs, Duration::from_millis(500))
    });
    match verdict {
        Verdict::Skipped(why) => assert!(
            why.contains("cannot create a private network namespace"),
            "{why}"
        ),
        v => panic!("expected Skipped, got {v:?}"),
    }
}

/// The dual-stack lab's config with SSH admitted on wg0 only: a lockout of the admin LAN that
/// the symbolic check passes (model and ruleset).
fn lockout() -> (edge_fw::model::Model, edge_fw::ir::Ruleset) {
    let text = common::wg0_only_ssh(&common::dual_stack_text());
    let (m, rs) = common::build(
        &common::parse(&common::reference_path(), &text),
        Default::default(),
    );
    assert_eq!(
        safety::check(&m, &rs),
        Ok(()),
        "the symbolic check misses it"
    );
    (m, rs)
}

/// The lab with the dual-stack ruleset applied in its host namespace; the live tables.
fn lab_with_ruleset() -> (common::Lab, Live) {
    let lab = common::lab();
    let (m0, rs0) = common::build(&common::dual_stack(), Default::default());
    let before = lab.ns("host").run(move || {
        common::apply(&m0, &rs0, Options::default()).expect("first apply");
        common::read_live_checked()
    });
    (lab, before)
}

/// What the shipped unit leaves edge-fw (no CAP_SYS_ADMIN): the replica cannot run, the
/// remaining probes cannot see the lockout and all pass. The apply must not confirm itself;
/// with nobody confirming, the window ends and the previous tables come back.
#[test]
fn without_the_replica_a_confirm_apply_waits_for_a_human_and_rolls_back_when_none_comes() {
    let (lab, before) = lab_with_ruleset();
    let (m1, rs1) = lockout();
    let window = Duration::from_secs(3);
    let (out, after, took) = lab.ns("host").run(move || {
        common::drop_cap_sys_admin();
        let probes = confirm::default_probes(&common::here(&m1));
        let flag = Arc::new(AtomicBool::new(false));
        let t = Instant::now();
        let out = confirm::apply_with_confirm(
            &Socket::open().expect("socket"),
            &m1,
            &rs1,
            window,
            &probes,
            &flag,
        )
        .expect("confirm apply");
        (out, common::read_live_checked(), t.elapsed())
    });
    match &out {
        Outcome::RolledBack { failures } => {
            // The live probes passed: the only failure is the missing confirm.
            assert_eq!(failures.len(), 1, "{failures:#?}");
            let f = &failures[0];
            assert!(
                f.contains("replica probe not run: cannot create a private network namespace for the replica: Operation not permitted"),
                "{f}"
            );
            assert!(
                f.contains(
                    "only `edgectl fw confirm` could keep this ruleset, and none came within 3s"
                ),
                "{f}"
            );
        }
        o => panic!("expected a rollback, got {o:?}"),
    }
    assert!(
        took >= window,
        "rolled back before the window ended: {took:?}"
    );
    assert_eq!(before.edge, after.edge, "inet edge restored byte for byte");
    assert_eq!(before.state, after.state, "inet edge_state restored");
    assert!(
        common::curl_retry(lab.ns("admin"), "http://192.168.1.1:22/").is_some(),
        "SSH from the admin LAN works again"
    );
}

/// Same, but the admin confirms (the `edgectl fw confirm` flag) a second after seeing the
/// new ruleset live, while the apply still waits: the new ruleset stays.
#[test]
fn without_the_replica_a_confirm_apply_is_kept_by_a_human_confirm() {
    let (lab, before) = lab_with_ruleset();
    let (m1, rs1) = lockout();
    let rs_new = rs1.clone();
    let (out, live, pending_at_confirm) = lab.ns("host").run(move || {
        common::drop_cap_sys_admin();
        let probes = confirm::default_probes(&common::here(&m1));
        let flag = Arc::new(AtomicBool::new(false));
        let settled = Arc::new(AtomicBool::new(false));
        // The admin: a thread of this one (same namespace, same capabilities).
        let human = {
            let (flag, settled, rs) = (flag.clone(), settled.clone(), rs1.clone());
            std::thread::spawn(move || {
                let live = wait_for(Duration::from_secs(10), || common::converged(&rs));
                assert!(live.is_some(), "the new ruleset never went live");
                std::thread::sleep(Duration::from_secs(1));
                let pending = !settled.load(Ordering::SeqCst);
                flag.store(true, Ordering::SeqCst);
                pending
            })
        };
        let out = confirm::apply_with_confirm(
            &Socket::open().expect("socket"),
            &m1,
            &rs1,
            Duration::from_secs(3),
            &probes,
            &flag,
        )
        .expect("confirm apply");
        settled.store(true, Ordering::SeqCst);
        let pending = human.join().expect("human thread");
        (out, common::read_live_checked(), pending)
    });
    assert!(
        pending_at_confirm,
        "the apply settled by itself ({out:?}) before the admin confirmed"
    );
    assert_eq!(out, Outcome::ConfirmedByHand);
    assert_eq!(
        edge_fw::wire::lines(&edge_fw::wire::diff(
            &edge_fw::lower::ruleset(&rs_new),
            &live
        )),
        Vec::<String>::new(),
        "the new ruleset stays"
    );
    assert_ne!(
        live.edge, before.edge,
        "the new ruleset differs from the previous one"
    );
}
