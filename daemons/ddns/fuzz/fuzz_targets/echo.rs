//! Fuzz the plain-text echo parser (an ipify-style answer is untrusted): never a panic, and
//! an accepted answer is exactly one address with surrounding whitespace.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ip) = edge_ddns::parse::echo(data) {
        let text = std::str::from_utf8(data).expect("accepted answers are text");
        assert_eq!(text.trim().parse::<std::net::IpAddr>().ok(), Some(ip));
    }
});
