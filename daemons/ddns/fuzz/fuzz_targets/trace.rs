//! Fuzz the `/cdn-cgi/trace` parser: never a panic; an accepted trace has an `ip=` line
//! with that address and no `warp=` other than `off`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let host = Some("one.one.one.one");
    match edge_ddns::parse::trace(data, host) {
        Ok(ip) => {
            let text = std::str::from_utf8(data).expect("accepted traces are text");
            let kv = |k: &str| {
                text.lines()
                    .filter_map(|l| l.split_once('='))
                    .filter(|(key, _)| key.trim() == k)
                    .map(|(_, v)| v.trim().to_owned())
                    .collect::<Vec<_>>()
            };
            assert!(kv("ip").iter().any(|v| v.parse().ok() == Some(ip)));
            assert!(kv("warp").iter().all(|v| v == "off"));
        }
        Err(e) => {
            // Every refusal renders (it reaches logs and `edgectl ddns status`).
            let _ = e.to_string();
        }
    }
});
