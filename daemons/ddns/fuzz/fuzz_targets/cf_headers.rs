//! Fuzz the `Ratelimit` header (the API's headers steer how long the client waits): parsing
//! and the pause it asks for never panic; a parsed header carried an `r=` number; the pause
//! is at most MAX_RATE_WAIT and can be added to an `Instant` (a huge `t=` once overflowed).
#![no_main]

use std::time::{Duration, Instant};

use edge_ddns::cloudflare::{MAX_RATE_WAIT, parse_ratelimit, ratelimit_pause};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some((remaining, reset)) = parse_ratelimit(text) {
        assert!(text.contains("r="));
        if let Some(wait) = ratelimit_pause(remaining, reset) {
            assert!(wait >= Duration::from_secs(1) && wait <= MAX_RATE_WAIT);
            let _ = Instant::now() + wait;
        }
    }
});
