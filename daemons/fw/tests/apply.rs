//! Netlink apply in a fresh namespace: commit, read-back, idempotence, kernel rejection.

mod common;

use edge_fw::apply::{self, Live, Options};
use edge_fw::ir::{ElemData, Expr, Origin, Rule};
use edge_testkit::in_new_netns;

#[test]
fn apply_reads_back_identical_and_second_apply_writes_nothing() {
    in_new_netns(|| {
        let cfg = common::reference();
        let (m, rs) = common::build(&cfg, Default::default());
        let r = apply::apply(&m, &rs, Options::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.changed);
        let commit = r.commit.expect("committed");
        assert!(commit.rejections.is_empty());
        // Read back independently with nft and compare after normalisation.
        let live = Live::read().expect("read");
        assert!(live.diff(&rs).is_empty(), "diff: {:?}", live.diff(&rs));
        let again = apply::apply(&m, &rs, Options::default()).expect("second apply");
        assert!(
            !again.changed,
            "a converged table must cause zero netlink writes"
        );
        assert!(again.commit.is_none() && again.dry_run.is_none());
    });
}

#[test]
fn a_ruleset_the_kernel_rejects_leaves_the_previous_table_byte_for_byte() {
    in_new_netns(|| {
        let cfg = common::reference();
        let (m, rs) = common::build(&cfg, Default::default());
        apply::apply(&m, &rs, Options::default()).unwrap_or_else(|e| panic!("{e}"));
        let before = Live::read().expect("read");
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
        let err = apply::apply(&m, &bad, Options::default()).expect_err("kernel must refuse");
        let msg = err.to_string();
        eprintln!("{msg}");
        assert!(msg.contains("dry run"), "{msg}");
        assert!(
            msg.contains("map allow4"),
            "the error names the message: {msg}"
        );
        let after = Live::read().expect("read");
        assert_eq!(
            before, after,
            "the previous tables must be untouched, byte for byte"
        );
    });
}

#[test]
fn a_dual_stack_ruleset_is_accepted_by_the_kernel_and_reads_back_identical() {
    in_new_netns(|| {
        let (m, rs) = common::build(&common::dual_stack(), Default::default());
        assert!(rs.edge.set("fwd6").is_some(), "IPv6 forwards compiled");
        let r = apply::apply(&m, &rs, Options::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(r.changed);
        let live = Live::read().expect("read");
        assert!(
            live.diff(&rs).is_empty(),
            "diff:\n{}",
            live.diff(&rs).join("\n")
        );
        let again = apply::apply(&m, &rs, Options::default()).expect("second apply");
        assert!(!again.changed, "converged: zero writes");
    });
}

/// `nft --debug=netlink list table inet edge`, with each set's element lines sorted (the
/// kernel lists them in hash order).
fn bytecode() -> String {
    let out = std::process::Command::new("nft")
        .args(["--debug=netlink", "list", "table", "inet", "edge"])
        .output()
        .expect("nft");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
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
        apply::apply(&m, &rs, Options::default()).unwrap_or_else(|e| panic!("{e}"));
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
    let diff = edge_fw::normalize::line_diff(&ours, &nft);
    assert!(
        diff.is_empty(),
        "netlink (-) vs nft -f (+):\n{}",
        diff.join("\n")
    );
}
