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
