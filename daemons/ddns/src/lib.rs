//! edge-ddns: the Cloudflare DDNS updater.
//!
//! Pure core: [`model`] (records, addresses and what may be published), [`parse`] (echo and
//! trace answers), [`quorum`] (k-of-n agreement) and [`plan`] (desired + detected + observed
//! -> changes). I/O shell: [`cloudflare`] (the API client), [`detect`] (the sources),
//! [`netlink`] (interface addresses and events), [`state`] (what was published, persisted),
//! [`sync`] (one run: detect, plan, apply), [`daemon`] (the event loop) and [`tls`] (the
//! rustls crypto provider).

pub mod cloudflare;
pub mod daemon;
pub mod detect;
pub mod model;
pub mod netlink;
pub mod parse;
pub mod plan;
pub mod quorum;
pub mod state;
pub mod sync;
pub mod tls;
