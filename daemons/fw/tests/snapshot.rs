//! The ruleset compiled from the reference `config/edge.toml`, as `nft -f` text.

use std::path::Path;

use edge_fw::compile::compile;
use edge_fw::model::Model;

fn reference() -> edge_config::Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/edge.toml");
    let text = std::fs::read_to_string(&path).expect("config/edge.toml is readable");
    match edge_config::parse(&path, &text) {
        Ok(l) => l.config,
        Err(d) => panic!("reference config refused:\n{d}"),
    }
}

#[test]
fn reference_ruleset_snapshot() {
    let cfg = reference();
    let model = Model::from_config(&cfg, Default::default()).expect("model");
    let rs = compile(&model).expect("compile");
    insta::assert_snapshot!("edge_table", rs.edge.to_string());
    insta::assert_snapshot!("edge_state_table", rs.state.to_string());
}

#[test]
fn reference_script_snapshot() {
    let cfg = reference();
    let model = Model::from_config(&cfg, Default::default()).expect("model");
    let rs = compile(&model).expect("compile");
    insta::assert_snapshot!("script", rs.script());
}

mod common;

#[test]
fn dual_stack_ruleset_snapshot() {
    // The reference made dual-stack (tests/common: IPv6 on br-api, br1, wg0, an IPv6 forward
    // with hairpin and one restricted to the WireGuard network).
    let cfg = common::dual_stack();
    let model = Model::from_config(&cfg, Default::default()).expect("model");
    let rs = compile(&model).expect("compile");
    insta::assert_snapshot!("dual_stack_edge_table", rs.edge.to_string());
}
