//! Fuzz target: the UAPI text protocol: parse a request; for `set`, apply it to a
//! configuration, diff, apply the diff, and format a `get` reply. Nothing may panic, and
//! applying the diff must converge on the configuration `apply_set` produced.
#![no_main]

use edge_wg::diff::PeerDiff;
use edge_wg::model::DeviceConfig;
use edge_wg::uapi::{self, DeviceStatus, PeerStatus, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Request::Set(req)) = uapi::parse_request(text) {
        let old = DeviceConfig::default();
        let new = uapi::apply_set(&old, &req);
        let diff = PeerDiff::new(&old, &new);
        let mut cur = old.clone();
        diff.apply_to(&mut cur);
        assert_eq!(cur, new);
        let st = DeviceStatus {
            interface: "wg0".into(),
            private_key: new.private_key.map(|k| k.0.0),
            public_key: None,
            listen_port: new.listen_port,
            fwmark: new.fwmark,
            peers: new
                .peers
                .values()
                .map(|p| PeerStatus {
                    public_key: p.public_key.to_base64(),
                    endpoint: p.endpoint,
                    allowed_ips: p.allowed_ips.clone(),
                    ..PeerStatus::default()
                })
                .collect(),
        };
        let out = uapi::format_get(&st);
        assert!(out.ends_with("errno=0\n\n"));
    }
});
