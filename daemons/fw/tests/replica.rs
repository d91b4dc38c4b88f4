//! The replica probe: real packets through a ruleset in private namespaces, and what happens
//! where namespaces cannot be created.

mod common;

use std::time::Duration;

use edge_fw::confirm::{self, Probe, Verdict};
use edge_fw::ir::L4;
use edge_fw::replica::{self, Path};
use edge_testkit::in_new_netns;

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
