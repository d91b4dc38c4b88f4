//! Fuzz what a record listing can make the planner do: any JSON the API (or a proxy) sends
//! is decoded as records and planned for. Never a panic, and never a write to a record that
//! lacks the ownership comment unless the config adopts it.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use edge_config::ddns::RecordType;
use edge_ddns::model::{Desired, Observed};
use edge_ddns::plan::{Action, plan};
use libfuzzer_sys::fuzz_target;

const OWNER: &str = "managed by edge";

fuzz_target!(|data: &[u8]| {
    let Ok(observed) = serde_json::from_slice::<Vec<Observed>>(data) else {
        return;
    };
    for adopt in [false, true] {
        let desired = Desired {
            name: "example.com".into(),
            kind: RecordType::A,
            proxied: true,
            ttl: 1,
            adopt,
        };
        let ip = IpAddr::V4(Ipv4Addr::new(81, 0, 0, 2));
        let p = plan(&desired, Some(ip), &observed, OWNER);
        let _ = serde_json::to_string(&p).expect("a plan serializes");
        if let Action::Patch { id, .. } = &p.action {
            let target: Vec<&Observed> = observed.iter().filter(|o| &o.id == id).collect();
            assert!(!target.is_empty(), "patch of a record that was not listed: {id}");
            assert!(
                adopt || target.iter().any(|o| o.is_owned(OWNER)),
                "patch of an unowned record without adopt: {p:?}"
            );
        }
    }
});
