//! Fuzz the `Ratelimit` header parser (the API's headers steer how long the client waits):
//! never a panic; a parsed header carried an `r=` number.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((remaining, _reset)) = edge_ddns::cloudflare::parse_ratelimit(text) {
        assert!(text.contains("r="));
        let _ = remaining;
    }
});
