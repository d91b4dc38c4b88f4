//! I/O shell: the process-wide TLS crypto provider.
//!
//! reqwest (feature `rustls-no-provider`) and the DNS-over-TLS resolver (hickory feature
//! `tls-ring`) both use rustls with *ring*. aws-lc-rs, reqwest's default, links a far larger
//! library whose start-up touches more pages: the daemon's idle memory was over its target.
//! reqwest panics when it builds a client and no provider is installed, so every constructor
//! of an HTTP client here calls [`install_crypto_provider`] first, not only `main`.

use std::sync::Once;

static INSTALL: Once = Once::new();

/// Installs ring as rustls' process-wide default crypto provider, once; a provider that is
/// already installed (by the embedding program) is kept.
pub fn install_crypto_provider() {
    INSTALL.call_once(|| {
        // Err only means another provider was installed first: keep that one.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
