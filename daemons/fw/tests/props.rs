//! Properties of the compiler: deterministic, and each forward appears exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use edge_config::fw::{Forward, Proto};
use edge_config::types::{InterfaceName, Port, PortRange};
use edge_fw::compile::{compile, counter_name};
use edge_fw::ir::ElemData;
use edge_fw::model::{Env, Model};
use proptest::prelude::*;

fn fw_with(specs: &[(u16, u8, u8, bool, u8)]) -> edge_config::fw::Fw {
    let mut fw = common::reference().fw.expect("[fw]");
    let template = fw.forwards[0].clone();
    let ifaces = ["br-api", "wg0"];
    fw.forwards = specs
        .iter()
        .enumerate()
        .map(|(i, (port, len, proto, hairpin, iface))| {
            let start = Port::new(*port).expect("port");
            let end = Port::new(port.saturating_add(u16::from(*len))).expect("port");
            Forward {
                name: format!("f{i}"),
                proto: [Proto::Tcp, Proto::Udp, Proto::Both][usize::from(*proto % 3)],
                port: PortRange { start, end },
                on: vec![InterfaceName::new(ifaces[usize::from(*iface % 2)]).expect("if")],
                address: Some(IpAddr::V4(Ipv4Addr::new(192, 198, 0, 30))),
                to: IpAddr::V4(Ipv4Addr::new(10, 17, 5, (i % 250) as u8 + 1)),
                to_port: PortRange { start, end },
                hairpin: *hairpin,
                ..template.clone()
            }
        })
        .collect();
    fw
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn compile_is_deterministic_and_each_forward_appears_exactly_once(
        raw in proptest::collection::vec((1u16..60000, 0u8..3, 0u8..3, any::<bool>(), 0u8..2), 0..20)
    ) {
        // Give every forward its own port block so the config's overlap rule holds.
        let specs: Vec<_> = raw.iter().enumerate().map(|(i, (_, len, p, h, f))| (1000 + (i as u16) * 10, *len, *p, *h, *f)).collect();
        let fw = fw_with(&specs);
        let m = Model::new(&fw, Env { file: "p.toml".into(), ..Env::default() }).expect("model");
        let a = compile(&m).expect("compile");
        let b = compile(&m).expect("compile");
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.script(), b.script());

        // Every forward has exactly one counter, and its keys are all in the dispatch map,
        // mapped to its own target, each key exactly once.
        let ctr = a.state.set("fwd4_ctr");
        let fwd = a.edge.set("fwd4");
        let mut keys_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        if let Some(ctr) = ctr {
            for e in &ctr.elements {
                if let ElemData::Counter(c) = &e.data {
                    prop_assert!(keys_of.entry(c.clone()).or_default().insert(e.key.to_string()));
                }
            }
        }
        let mut seen = BTreeSet::new();
        if let Some(fwd) = fwd {
            for e in &fwd.elements {
                prop_assert!(seen.insert(e.key.to_string()), "key twice: {}", e.key);
            }
        }
        for f in &fw.forwards {
            let c = counter_name(&f.name);
            prop_assert_eq!(a.state.counters.iter().filter(|x| **x == c).count(), 1);
            let protos = if f.proto == Proto::Both { 2 } else { 1 };
            let ifaces = 1 + if f.hairpin { fw.lan.len() } else { 0 };
            let expected = protos * ifaces * f.port.len() as usize;
            prop_assert_eq!(keys_of.get(&c).map(|k| k.len()).unwrap_or(0), expected);
            for k in keys_of.get(&c).into_iter().flatten() {
                let e = fwd.and_then(|s| s.elements.iter().find(|e| e.key.to_string() == *k));
                prop_assert!(matches!(e.map(|e| &e.data), Some(ElemData::Target(ip, _)) if *ip == f.to));
            }
        }
        prop_assert_eq!(seen.len(), keys_of.values().map(|k| k.len()).sum::<usize>());
    }
}
