//! Helpers shared by the namespaced tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use edge_fw::compile::compile;
use edge_fw::ir::Ruleset;
use edge_fw::model::Model;

/// Namespace prefix of every namespace these tests create.
pub const PREFIX: &str = "efw";

/// The reference configuration.
pub fn reference() -> edge_config::Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/edge.toml");
    let text = std::fs::read_to_string(&path).expect("config/edge.toml is readable");
    parse(&path, &text)
}

/// Parses config text (panics with the diagnostics).
pub fn parse(path: &Path, text: &str) -> edge_config::Config {
    match edge_config::parse(path, text) {
        Ok(l) => l.config,
        Err(d) => panic!("config refused:\n{d}"),
    }
}

/// Model and ruleset of a config, with optional interface addresses.
pub fn build(cfg: &edge_config::Config, addrs: BTreeMap<String, Vec<IpAddr>>) -> (Model, Ruleset) {
    let m = Model::from_config(cfg, addrs).expect("model");
    let rs = compile(&m).expect("compile");
    (m, rs)
}
