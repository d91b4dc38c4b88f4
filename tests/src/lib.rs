//! End-to-end tests live in `tests/tests/`: each starts the real binaries inside network
//! namespaces it creates (see `edge-testkit`). Build the binaries first:
//! `cargo build --workspace --bins`.
