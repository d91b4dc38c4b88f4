//! No secret reaches a log line, at every level down to `trace` (reqwest's and hyper's
//! included): not a header value, not a token, not a URL path, not a secret that a receiver
//! echoes back in its answer.
//!
//! One test in its own binary, on purpose: `tracing` caches per call site whether anyone
//! listens, process-wide, so a thread-local subscriber in a binary where other tests log
//! concurrently may miss events.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_config::notify::Notify;
use edge_metrics::notify::Metrics;
use edge_notify::event::examples;
use edge_notify::{Notifier, Tuning, probe};
use edge_testkit::receiver::{Answer, Receiver};

fn fast() -> Tuning {
    Tuning {
        attempts: 3,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(100),
        window: Duration::from_secs(60),
    }
}

fn notify(text: &str) -> Notify {
    let full = format!("version = 1\n[notify]\n{text}");
    match edge_config::parse(Path::new("edge.toml"), &full) {
        Ok(l) => l.config.notify.unwrap(),
        Err(d) => panic!("test configuration refused:\n{d}\n{full}"),
    }
}

fn secret_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

#[tokio::test]
async fn no_secret_reaches_a_log_line() {
    let buf = Buf::default();
    let w = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || w.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dir = tempfile::tempdir().unwrap();

    // 1. Three targets answering 500: every attempt fails and is logged.
    let rx = Receiver::start_local(Answer::Status(500));
    let hook = secret_file(dir.path(), "hook", "Bearer hook-SECRET-1234");
    let tok = secret_file(dir.path(), "ntfy", "tk_ntfy-SECRET-5678");
    let cfg = notify(&format!(
        "[[notify.webhook]]\nname = \"hook\"\nurl = \"{}\"\nheaders = {{ X-Api-Key = {{ file = \"{}\" }} }}\n[[notify.ntfy]]\nname = \"phone\"\nurl = \"{}\"\ntoken = {{ file = \"{}\" }}\n[[notify.heartbeat]]\nname = \"hc\"\nurl = \"{}\"\n",
        rx.url("/hook/path-SECRET-aaaa"),
        hook.display(),
        rx.url("/topic-SECRET-bbbb"),
        tok.display(),
        rx.url("/ping/uuid-SECRET-cccc"),
    ));
    let n = Notifier::start_with(Some(&cfg), "edge-ddns", Metrics::default(), fast());
    n.send(examples().remove(0));
    n.heartbeat(false, "sync FAILED");
    assert!(n.flush(Duration::from_secs(20)).await);
    assert_eq!(
        rx.count(),
        9,
        "three attempts for each of the three targets"
    );
    let got = rx.received();
    assert!(
        got.iter()
            .any(|r| r.header("x-api-key") == Some("Bearer hook-SECRET-1234"))
    );
    assert!(
        got.iter()
            .any(|r| r.header("authorization") == Some("Bearer tk_ntfy-SECRET-5678"))
    );
    let log = buf.text();
    assert_eq!(
        log.matches("notification not delivered after 3 attempts")
            .count(),
        3,
        "{log}"
    );
    assert!(log.contains("target_name=\"phone\""), "{log}");

    // 2. A receiver that echoes the request's headers in its answer.
    let echo = Receiver::start_local(Answer::EchoHeaders(401));
    let secret = secret_file(dir.path(), "echo", "Bearer echo-SECRET-9999\n");
    let cfg = notify(&format!(
        "[[notify.webhook]]\nname = \"echo\"\nurl = \"{}\"\nheaders = {{ Authorization = {{ file = \"{}\" }} }}\n",
        echo.url("/"),
        secret.display()
    ));
    let n = Notifier::start_with(Some(&cfg), "edge-ddns", Metrics::default(), fast());
    n.send(examples().remove(0));
    assert!(n.flush(Duration::from_secs(20)).await);
    let log = buf.text();
    assert!(
        log.contains("authorization: [redacted]"),
        "the echoed answer is logged, scrubbed: {log}"
    );
    // edgectl shows the answer too: scrubbed as well.
    let res = probe(&cfg, None, "edgectl").await.unwrap();
    assert!(res[0].detail.contains("[redacted]"), "{}", res[0].detail);
    assert!(!res[0].detail.contains("SECRET"), "{}", res[0].detail);

    let log = buf.text();
    assert!(!log.contains("SECRET"), "a secret reached the log:\n{log}");
}
