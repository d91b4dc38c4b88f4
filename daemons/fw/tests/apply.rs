//! Netlink apply in a fresh namespace: commit, read-back (checked against `nft -j`),
//! idempotence, element-only updates, kernel rejection, the bytecode nft would generate.

mod common;

use edge_fw::apply::{self, Change, Options};
use edge_fw::ir::{ElemData, Expr, Origin, Rule};
use edge_fw::nfnl::Socket;
use edge_testkit::in_new_netns;

#[test]
fn apply_reads_back_identical_and_second_apply_writes_nothing() {
    in_new_netns(|| {
        let cfg = common::reference();
        let (m, rs) = common::build(&cfg, Default::default());
        let r = common::apply(&m, &rs, Options::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.change, Change::Replace);
        let commit = r.commit.expect("committed");
        assert!(commit.rejections.is_empty());
        let d = common::diff(&rs);
        assert!(d.is_empty(), "diff: {d:#?}");
        let again = common::apply(&m, &rs, Options::default()).expect("second apply");
        assert!(
            !again.changed(),
            "a converged table must cause zero netlink writes"
        );
        assert!(again.commit.is_none() && again.dry_run.is_none());
    });
}

#[test]
fn a_ruleset_the_kernel_rejects_leaves_the_previous_tables_untouched() {
    in_new_netns(|| {
        let cfg = common::reference();
        let (m, rs) = common::build(&cfg, Default::default());
        common::apply(&m, &rs, Options::default()).unwrap_or_else(|e| panic!("{e}"));
        let before = common::read_live_checked();
        // A rule jumping through a verdict map to a chain that does not exist: valid syntax,
        // refused by the kernel (ENOENT) while it validates the batch.
        let mut bad = rs.clone();
        let allow = bad
            .edge
            .sets
            .iter_mut()
            .find(|s| s.name == "allow4")
            .expect("allow4");
        allow.elements[0].data = ElemData::Jump("allow_missing".into());
        bad.edge.chains[0].rules.push(Rule {
            exprs: vec![Expr::Accept],
            origin: Origin {
                id: "test/marker".into(),
                at: Some("edge.toml:999".into()),
            },
        });
        let err = common::apply(&m, &bad, Options::default()).expect_err("kernel must refuse");
        let msg = err.to_string();
        eprintln!("{msg}");
        assert!(msg.contains("dry run"), "{msg}");
        assert!(
            msg.contains("map allow4"),
            "the error names the message: {msg}"
        );
        let after = common::read_live_checked();
        assert_eq!(before, after, "the previous tables must be untouched");
    });
}

#[test]
fn a_dual_stack_ruleset_is_accepted_by_the_kernel_and_reads_back_identical() {
    in_new_netns(|| {
        let (m, rs) = common::build(&common::dual_stack(), Default::default());
        assert!(rs.edge.set("fwd6").is_some(), "IPv6 forwards compiled");
        let r = common::apply(&m, &rs, Options::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.changed());
        let d = common::diff(&rs);
        assert!(d.is_empty(), "diff:\n{}", d.join("\n"));
        let again = common::apply(&m, &rs, Options::default()).expect("second apply");
        assert!(!again.changed(), "converged: zero writes");
    });
}

#[test]
fn a_new_forward_is_an_element_only_update_and_a_new_rule_is_a_replace() {
    in_new_netns(|| {
        let cfg = common::reference();
        let (m, rs) = common::build(&cfg, Default::default());
        common::apply(&m, &rs, Options::default()).unwrap_or_else(|e| panic!("{e}"));
        // One more forward: new elements in the maps and a new counter, nothing else.
        let text = format!(
            "{}\n[[fw.forward]]\nname = \"smtp\"\nproto = \"tcp\"\nport = 25\non = [\"br-api\"]\naddress = \"192.198.0.30\"\nto = \"10.17.5.30\"\n",
            std::fs::read_to_string(&cfg.path).expect("read")
        );
        let (m2, rs2) = common::build(&common::parse(&cfg.path, &text), Default::default());
        let r = common::apply(&m2, &rs2, Options::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.change, Change::Elements, "{r:?}");
        let d = common::diff(&rs2);
        assert!(d.is_empty(), "{d:#?}");
        // The counter of a forward that existed kept its identity (not recreated).
        assert!(common::counters().contains_key("fwd_smtp"));
        // Removing it again: elements out, the counter deleted.
        let r = common::apply(&m, &rs, Options::default()).expect("back");
        assert_eq!(r.change, Change::Elements);
        assert!(!common::counters().contains_key("fwd_smtp"));
        // A new input rule changes a chain: the table is replaced.
        let text = std::fs::read_to_string(&cfg.path).expect("read").replacen(
            "port = 22",
            "port = 2222",
            1,
        );
        let (m3, rs3) = common::build(&common::parse(&cfg.path, &text), Default::default());
        let r = common::apply(&m3, &rs3, Options::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.change, Change::Replace);
        assert!(common::diff(&rs3).is_empty());
    });
}

#[test]
fn a_dry_run_changes_nothing_whatever_its_verdict() {
    in_new_netns(|| {
        let (m, rs) = common::build(&common::reference(), Default::default());
        let sock = Socket::open().expect("socket");
        apply::dry_run(&sock, &rs).expect("a good ruleset passes the dry run");
        let live = edge_fw::observe::read_live(&sock).expect("read");
        assert!(live.edge.is_none() && live.state.is_none(), "{live:?}");
        common::apply(&m, &rs, Options::default()).expect("apply");
    });
}

/// `nft --debug=netlink list table inet edge` and `... edge_state`, with each set's element
/// lines sorted (the kernel lists them in hash order).
fn bytecode() -> String {
    let mut text = String::new();
    for table in ["edge", "edge_state"] {
        let out = std::process::Command::new("nft")
            .args(["--debug=netlink", "list", "table", "inet", table])
            .output()
            .expect("nft");
        assert!(out.status.success(), "{out:?}");
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    let mut lines: Vec<String> = Vec::new();
    let mut run: Vec<String> = Vec::new();
    for l in text.lines() {
        if l.trim_start().starts_with("element ") {
            run.push(l.to_owned());
            continue;
        }
        run.sort();
        lines.append(&mut run);
        lines.push(l.to_owned());
    }
    run.sort();
    lines.append(&mut run);
    lines.join("\n")
}

#[test]
fn dual_stack_netlink_bytecode_equals_what_nft_generates() {
    // Prefixes of every shape, both families: byte-aligned, masked, single hosts.
    let text = common::dual_stack_text().replace(
        "\"192.168.1.0/24\", \"fd00:1::/64\"",
        "\"192.168.0.0/20\", \"10.1.2.3/32\", \"fd00:1::/60\", \"fd00:2::/127\", \"fd00:3::5/128\"",
    );
    let (m, rs) = common::build(
        &common::parse(&common::reference_path(), &text),
        Default::default(),
    );
    let ours = in_new_netns(move || {
        common::apply(&m, &rs, Options::default()).unwrap_or_else(|e| panic!("{e}"));
        common::read_live_checked();
        bytecode()
    });
    let (_, rs) = common::build(
        &common::parse(&common::reference_path(), &text),
        Default::default(),
    );
    let script = rs.script();
    let nft = in_new_netns(move || {
        let mut child = std::process::Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("nft");
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("write");
        assert!(child.wait().expect("nft").success());
        bytecode()
    });
    assert!(ours.contains("ip6 saddr fd00:1::/60"), "{ours}");
    let (a, b): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), nft.lines().collect());
    let only_ours: Vec<&&str> = a.iter().filter(|l| !b.contains(l)).collect();
    let only_nft: Vec<&&str> = b.iter().filter(|l| !a.contains(l)).collect();
    assert!(
        only_ours.is_empty() && only_nft.is_empty() && a.len() == b.len(),
        "netlink vs nft -f:\n only ours: {only_ours:#?}\n only nft: {only_nft:#?}"
    );
}
