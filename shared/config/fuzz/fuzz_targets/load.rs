//! Fuzz the config loader: any input must yield a config or located diagnostics, never a
//! panic, and rendering the diagnostics must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let diags = match edge_config::parse(std::path::Path::new("fuzz.toml"), text) {
        Ok(l) => l.warnings,
        Err(d) => d,
    };
    for d in diags.items() {
        assert!(d.location.is_some(), "unlocated diagnostic: {d:?}");
    }
    let _ = diags.render();
});
