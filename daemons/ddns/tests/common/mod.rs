//! Shared setup of the edge-ddns scenarios: a Cloudflare API test server, three echo
//! sources and a configuration pointing at them, all on loopback inside the test's own
//! network namespace.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use edge_config::{Config, SecretString};
use edge_ddns::cloudflare::RetryPolicy;
use edge_ddns::sync::{Mode, Syncer};
use edge_ipc::ddns::SyncReport;
use edge_metrics::ddns::Metrics;
use edge_testkit::cloudflare::{CfServer, EchoKind, EchoServer, Logged};
use hyper::Method;

/// A token that must never appear in any output.
pub const TOKEN: &str = "cf-TEST-t0ken-9f8e7d6c5b4a39281706";
/// The first public address the sources report.
pub const IP1: &str = "81.2.69.160";
/// The address after the ISP changed it.
pub const IP2: &str = "81.2.69.161";
/// What a lying source says.
pub const LIE: &str = "81.2.69.99";
/// The ownership comment.
pub const OWNER: &str = "managed by edge";

/// The servers and files of one scenario.
pub struct Lab {
    /// The Cloudflare API.
    pub cf: CfServer,
    /// The zone `example.com`.
    pub zone: String,
    /// Three sources: plain echo, trace, plain echo.
    pub echoes: Vec<EchoServer>,
    /// Config, token and state live here.
    pub dir: tempfile::TempDir,
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl Lab {
    /// Starts the servers on loopback; must run inside the test's namespace.
    pub fn new() -> Lab {
        let cf = CfServer::start_local(TOKEN);
        let zone = cf.add_zone("example.com");
        let echoes = vec![
            EchoServer::start(local(), EchoKind::Plain, IP1),
            EchoServer::start(local(), EchoKind::Trace, IP1),
            EchoServer::start(local(), EchoKind::Plain, IP1),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token file");
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Lab {
            cf,
            zone,
            echoes,
            dir,
        }
    }

    /// Every source answers `ip` (or is down with `None`).
    pub fn set_all(&self, ip: Option<&str>) {
        for e in &self.echoes {
            e.set_answer(ip);
        }
    }

    /// The configuration text; `record_extra` goes into the record table, `ddns_extra`
    /// into `[ddns]`.
    pub fn config_text(&self, ddns_extra: &str, record_extra: &str) -> String {
        let d = self.dir.path().display();
        format!(
            r#"version = 1
[global]
state_dir = "{d}/state"
runtime_dir = "{d}/run"
log_level = "info"
[global.metrics]
ddns = "127.0.0.1:9851"

[ddns]
token = {{ file = "{d}/token" }}
api_url = "{api}"
schedule = "0 0 0 1 1 *"
quorum = 2
timeout = "2s"
{ddns_extra}

[[ddns.record]]
name = "example.com"
type = "A"
proxied = true
{record_extra}

[[ddns.source]]
name = "echo-a"
kind = "http"
url = "{e0}"
family = "ipv4"

[[ddns.source]]
name = "trace-b"
kind = "cloudflare-trace"
url = "{e1}"
family = "ipv4"

[[ddns.source]]
name = "echo-c"
kind = "http"
url = "{e2}"
family = "ipv4"
"#,
            api = self.cf.url(),
            e0 = self.echoes[0].url(),
            e1 = self.echoes[1].url(),
            e2 = self.echoes[2].url(),
        )
    }

    /// Writes the configuration file and returns its path.
    pub fn write_config(&self, ddns_extra: &str, record_extra: &str) -> PathBuf {
        let p = self.dir.path().join("edge.toml");
        std::fs::write(&p, self.config_text(ddns_extra, record_extra)).expect("config");
        p
    }

    /// Parses the configuration.
    pub fn config(&self, ddns_extra: &str, record_extra: &str) -> Config {
        let p = self.write_config(ddns_extra, record_extra);
        match edge_config::parse(&p, &self.config_text(ddns_extra, record_extra)) {
            Ok(l) => l.config,
            Err(d) => panic!("test configuration refused:\n{d}"),
        }
    }

    /// A syncer (like a fresh daemon start: it loads the persisted state) with fast retries.
    pub fn syncer(&self, cfg: &Config) -> Syncer {
        Syncer::with_token(
            cfg,
            &SecretString::new(TOKEN.to_owned()),
            Metrics::default(),
            RetryPolicy {
                attempts: 4,
                rate_limit_attempts: 6,
                base: std::time::Duration::from_millis(20),
                cap: std::time::Duration::from_millis(200),
            },
        )
        .expect("syncer")
    }

    /// The managed A record(s) named example.com.
    pub fn a_records(&self) -> Vec<serde_json::Value> {
        self.cf
            .records()
            .into_iter()
            .filter(|r| r["name"] == "example.com" && r["type"] == "A")
            .collect()
    }

    /// Requests logged since the last `clear_log`.
    pub fn log(&self) -> Vec<Logged> {
        self.cf.log()
    }

    /// Write requests logged.
    pub fn writes(&self) -> Vec<Logged> {
        self.log().into_iter().filter(Logged::is_write).collect()
    }

    /// Panics when any request broke the OpenAPI schema.
    pub fn assert_schema_clean(&self) {
        let v = self.cf.violations();
        assert!(v.is_empty(), "schema violations:\n{}", v.join("\n"));
    }
}

/// Runs an async body on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// One sync at `now` (Unix seconds).
pub fn sync(s: &mut Syncer, now: u64) -> SyncReport {
    block_on(s.run(now, Mode::Sync))
}

/// Methods of a log, e.g. `["GET", "POST"]`.
pub fn methods(log: &[Logged]) -> Vec<String> {
    log.iter().map(|l| l.method.to_string()).collect()
}

/// True for a request of `method`.
pub fn is(l: &Logged, method: &Method) -> bool {
    l.method == *method
}
