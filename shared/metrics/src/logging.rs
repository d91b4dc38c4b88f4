//! I/O: tracing subscriber setup, called once from each binary's `main`.

use edge_config::LogFormat;
use tracing_subscriber::EnvFilter;

/// True when stderr/stdout go to journald (systemd sets `JOURNAL_STREAM` for the unit).
pub fn under_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some_and(|v| !v.is_empty())
}

/// Installs the global subscriber. `filter` is a level or tracing directives; `RUST_LOG`
/// overrides it. Under journald, `Auto` writes plain lines without timestamps or colours.
pub fn init(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let res = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Auto if under_journald() => builder
            .without_time()
            .with_ansi(false)
            .with_target(false)
            .try_init(),
        LogFormat::Auto | LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    let _ = res;
}
