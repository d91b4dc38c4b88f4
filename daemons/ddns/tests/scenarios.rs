//! The scenarios of issue 3 (point 7), each asserting what the Cloudflare test server
//! received. Each runs inside its own fresh network namespace (root needed: the test fails,
//! never skips, without it); servers listen on that namespace's loopback.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod common;

use std::time::{Duration, Instant};

use common::*;
use edge_testkit::cloudflare::{EchoKind, EchoServer, Fault};
use edge_testkit::in_new_netns;
use hyper::Method;
use serde_json::json;

const T0: u64 = 1_800_000_000;

#[test]
fn first_sync_creates_the_record_with_comment_and_automatic_ttl() {
    in_new_netns(|| {
        let lab = Lab::new();
        let cfg = lab.config("", "");
        let mut s = lab.syncer(&cfg);
        let r = sync(&mut s, T0);
        assert!(r.ok, "{r:?}");
        let log = lab.log();
        assert_eq!(
            methods(&log),
            ["GET", "GET", "POST"],
            "zone lookup, listing, create"
        );
        assert_eq!(log[0].path, "/zones");
        assert!(
            log[0]
                .query
                .contains(&("name".into(), "example.com".into()))
        );
        assert_eq!(log[1].path, format!("/zones/{}/dns_records", lab.zone));
        assert_eq!(
            log[2].body,
            Some(
                json!({"type":"A","name":"example.com","content":IP1,"ttl":1,"proxied":true,"comment":OWNER})
            )
        );
        let recs = lab.a_records();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["content"], IP1);
        assert!(
            log.iter()
                .all(|l| l.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))),
            "every request carries the bearer token"
        );
        lab.assert_schema_clean();
        // One cheap request per source per detection run.
        for e in &lab.echoes {
            assert_eq!(e.hits(), 1);
        }
    });
}

#[test]
fn a_second_run_makes_zero_writes_and_a_restart_costs_no_api_call() {
    in_new_netns(|| {
        let lab = Lab::new();
        let cfg = lab.config("", "");
        sync(&mut lab.syncer(&cfg), T0);
        lab.cf.clear_log();

        // Same process, a minute later: the state says the record holds the address.
        let mut s = lab.syncer(&cfg);
        let r = sync(&mut s, T0 + 60);
        assert!(r.ok, "{r:?}");
        assert_eq!(
            lab.log().len(),
            0,
            "no API call at all: {:?}",
            methods(&lab.log())
        );

        // A restart (new syncer, state read back from disk): still no API call.
        let mut restarted = lab.syncer(&cfg);
        assert!(sync(&mut restarted, T0 + 120).ok);
        assert_eq!(lab.log().len(), 0);

        // After verify_interval (1 h) one verification read, still zero writes; the zone id
        // comes from the state file, so no zone lookup.
        let r = sync(&mut restarted, T0 + 3700);
        assert!(r.ok, "{r:?}");
        assert_eq!(methods(&lab.log()), ["GET"]);
        assert_eq!(
            lab.log()[0].path,
            format!("/zones/{}/dns_records", lab.zone)
        );
        assert!(lab.writes().is_empty());
        lab.assert_schema_clean();
    });
}

#[test]
fn an_ip_change_produces_exactly_one_patch_carrying_only_content() {
    in_new_netns(|| {
        let lab = Lab::new();
        let cfg = lab.config("", "");
        let mut s = lab.syncer(&cfg);
        sync(&mut s, T0);
        // Someone adds tags in the dashboard: a PATCH of content keeps them (PUT would not).
        let id = lab.a_records()[0]["id"].as_str().unwrap().to_owned();
        lab.cf.clear_log();
        lab.set_all(Some(IP2));
        let r = sync(&mut s, T0 + 60);
        assert!(r.ok, "{r:?}");
        let writes = lab.writes();
        assert_eq!(writes.len(), 1, "{:?}", methods(&lab.log()));
        assert_eq!(writes[0].method, Method::PATCH);
        assert_eq!(
            writes[0].path,
            format!("/zones/{}/dns_records/{id}", lab.zone)
        );
        assert_eq!(writes[0].body, Some(json!({ "content": IP2 })));
        let rec = &lab.a_records()[0];
        assert_eq!(rec["content"], IP2);
        assert_eq!(rec["comment"], OWNER);
        assert_eq!(rec["proxied"], true);
        lab.assert_schema_clean();
    });
}

#[test]
fn one_lying_source_of_three_never_wins() {
    in_new_netns(|| {
        let lab = Lab::new();
        let cfg = lab.config("", "");
        let mut s = lab.syncer(&cfg);
        sync(&mut s, T0);
        lab.cf.clear_log();

        // The liar disagrees with two honest sources: the honest address stands, no write.
        lab.echoes[1].set_answer(Some(LIE));
        let r = sync(&mut s, T0 + 60);
        assert!(r.ok, "{r:?}");
        assert!(lab.writes().is_empty());

        // Two sources fail and the liar is alone: nothing is published, and no API call.
        lab.echoes[0].set_answer(None);
        lab.echoes[2].set_answer(None);
        let r = sync(&mut s, T0 + 120);
        assert!(!r.ok, "a failed detection is a failed sync");
        assert!(lab.log().is_empty(), "{:?}", methods(&lab.log()));
        assert_eq!(lab.a_records()[0]["content"], IP1);

        // A liar answering with a Cloudflare address is refused outright.
        lab.echoes[1].set_answer(Some("104.16.1.1"));
        lab.echoes[0].set_answer(Some(IP2));
        let r = sync(&mut s, T0 + 180);
        assert!(!r.ok);
        assert!(
            r.families[0].answers[1]
                .detail
                .contains("belongs to Cloudflare"),
            "{r:?}"
        );
        assert!(lab.writes().is_empty());
        assert_eq!(lab.a_records()[0]["content"], IP1);
    });
}

#[test]
fn all_sources_down_changes_nothing() {
    in_new_netns(|| {
        let lab = Lab::new();
        let cfg = lab.config("", "");
        let mut s = lab.syncer(&cfg);
        sync(&mut s, T0);
        lab.cf.clear_log();
        lab.set_all(None);
        // Even past the verification interval: without an agreed address nothing is read
        // or written.
        let r = sync(&mut s, T0 + 7200);
        assert!(!r.ok);
        assert_eq!(r.records[0].outcome, "skipped");
        assert!(lab.log().is_empty());
        assert_eq!(lab.a_records()[0]["content"], IP1);
        // A trace through WARP is refused like a failure.
        lab.echoes[1].set_answer(Some(IP2));
        lab.echoes[1].set_warp(true);
        let r = sync(&mut s, T0 + 7300);
        assert!(r.families[0].answers[1].detail.contains("warp=on"), "{r:?}");
        assert!(lab.log().is_empty());
    });
}

#[test]
fn a_429_storm_converges_after_retry_after_with_no_lost_update() {
    in_new_netns(|| {
        let lab = Lab::new();
        let cfg = lab.config("", "");
        let mut s = lab.syncer(&cfg);
        sync(&mut s, T0);
        lab.cf.clear_log();
        lab.set_all(Some(IP2));
        // Every request is refused three times in a row with Retry-After: 1.
        lab.cf
            .inject(Fault::RateLimited { retry_after: 1 }, 3, None);
        let started = Instant::now();
        let r = sync(&mut s, T0 + 60);
        let took = started.elapsed();
        assert!(r.ok, "{r:?}");
        assert_eq!(
            lab.a_records()[0]["content"],
            IP2,
            "the update was not lost"
        );
        let log = lab.log();
        let statuses: Vec<u16> = log.iter().map(|l| l.status).collect();
        assert_eq!(statuses, [429, 429, 429, 200, 200], "{:?}", methods(&log));
        // Retry-After was honoured between each refusal and the next attempt.
        for w in log.windows(2).take(3) {
            let gap = w[1].at.duration_since(w[0].at);
            assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
        }
        assert!(took >= Duration::from_secs(3));
        assert_eq!(lab.writes().iter().filter(|l| l.status == 200).count(), 1);
        lab.assert_schema_clean();
    });
}

/// L3: the reset of a spent `Ratelimit` window is the server's number; `t=u64::MAX` once
/// overflowed `Instant + Duration` and the panic killed the (current-thread) daemon. Now the
/// answer is taken and the next request waits (for at most MAX_RATE_WAIT) instead.
#[test]
fn a_ratelimit_header_with_a_huge_reset_pauses_instead_of_panicking() {
    use edge_ddns::cloudflare::{Client, ClientOptions};
    in_new_netns(|| {
        let lab = Lab::new();
        lab.cf.inject(
            Fault::RatelimitHeader {
                remaining: 0,
                reset: u64::MAX,
            },
            1,
            None,
        );
        let client = Client::new(
            ClientOptions::new(url::Url::parse(&lab.cf.url()).unwrap()),
            &edge_config::SecretString::new(TOKEN.to_owned()),
            edge_metrics::ddns::Metrics::default(),
        )
        .unwrap();
        block_on(async {
            let zone = client.zone_id("example.com").await.unwrap();
            assert_eq!(zone, lab.zone);
            // The window is spent: the listing waits for it rather than being sent.
            let listing = tokio::time::timeout(
                Duration::from_secs(1),
                client.list_records(&zone, "example.com", "A"),
            )
            .await;
            assert!(listing.is_err(), "sent during the pause: {listing:?}");
        });
        assert_eq!(methods(&lab.log()), ["GET"]);
        lab.assert_schema_clean();
    });
}

#[test]
fn server_errors_slow_answers_and_malformed_json_are_retried_with_backoff() {
    in_new_netns(|| {
        let lab = Lab::new();
        let cfg = lab.config("", "");
        let mut s = lab.syncer(&cfg);
        lab.cf.inject(Fault::ServerError, 2, Some(Method::GET));
        lab.cf.inject(Fault::MalformedJson, 1, Some(Method::GET));
        lab.cf.inject(
            Fault::Slow(Duration::from_millis(300)),
            1,
            Some(Method::POST),
        );
        let r = sync(&mut s, T0);
        assert!(r.ok, "{r:?}");
        let statuses: Vec<(String, u16)> = lab
            .log()
            .iter()
            .map(|l| (l.method.to_string(), l.status))
            .collect();
        assert_eq!(
            statuses,
            [
                ("GET".into(), 500),
                ("GET".into(), 500),
                ("GET".into(), 200), // malformed body, retried
                ("GET".into(), 200),
                ("GET".into(), 200),
                ("POST".into(), 200),
            ]
        );
        assert_eq!(lab.a_records().len(), 1, "exactly one record created");
    });
}

#[test]
fn a_post_that_fails_is_not_retried_blindly_and_the_next_sync_relists() {
    in_new_netns(|| {
        let lab = Lab::new();
        let cfg = lab.config("", "");
        let mut s = lab.syncer(&cfg);
        lab.cf.inject(Fault::ServerError, 1, Some(Method::POST));
        let r = sync(&mut s, T0);
        assert!(!r.ok);
        assert_eq!(lab.writes().len(), 1, "one POST, no blind retry");
        let r = sync(&mut s, T0 + 60);
        assert!(r.ok, "{r:?}");
        assert_eq!(lab.a_records().len(), 1);
    });
}

#[test]
fn an_unowned_record_with_the_same_name_is_untouched_unless_adopted() {
    in_new_netns(|| {
        let lab = Lab::new();
        let theirs = lab.cf.add_record(
            &lab.zone,
            json!({"type":"A","name":"example.com","content":"81.2.69.1","proxied":false,"ttl":300,"comment":"made by hand"}),
        );
        let cfg = lab.config("", "");
        let mut s = lab.syncer(&cfg);
        let r = sync(&mut s, T0);
        assert!(
            !r.ok,
            "the record is not converged, and the report says why"
        );
        assert!(r.records[0].detail.contains("adopt = true"), "{r:?}");
        assert!(lab.writes().is_empty(), "never touched");
        let recs = lab.a_records();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["content"], "81.2.69.1");
        assert_eq!(recs[0]["comment"], "made by hand");

        // With adopt = true it is taken over: content and the ownership comment, nothing else.
        lab.cf.clear_log();
        let cfg = lab.config("", "adopt = true");
        let mut s = lab.syncer(&cfg);
        assert!(sync(&mut s, T0 + 60).ok);
        let w = lab.writes();
        assert_eq!(w.len(), 1);
        assert_eq!(
            w[0].path,
            format!("/zones/{}/dns_records/{theirs}", lab.zone)
        );
        assert_eq!(w[0].body, Some(json!({"content": IP1, "comment": OWNER})));
        let rec = &lab.a_records()[0];
        assert_eq!(rec["ttl"], 300, "the user's TTL is kept");
        lab.assert_schema_clean();
    });
}

#[test]
fn records_are_found_across_small_pages_and_zones_by_walking_up_labels() {
    in_new_netns(|| {
        let lab = Lab::new();
        // Two unowned records and our own share the name: with one record per page, ours is
        // on page 3.
        for c in ["81.2.69.1", "81.2.69.2"] {
            lab.cf.add_record(
                &lab.zone,
                json!({"type":"A","name":"home.example.com","content":c}),
            );
        }
        let ours = lab.cf.add_record(
            &lab.zone,
            json!({"type":"A","name":"home.example.com","content":"81.2.69.3","comment":OWNER}),
        );
        lab.cf.set_max_per_page(Some(1));
        let text = lab
            .config_text("", "")
            .replace("name = \"example.com\"", "name = \"home.example.com\"");
        let p = lab.dir.path().join("edge.toml");
        std::fs::write(&p, &text).unwrap();
        let cfg = edge_config::parse(&p, &text).unwrap().config;
        let mut s = lab.syncer(&cfg);
        let r = sync(&mut s, T0);
        assert!(r.ok, "{r:?}");
        let log = lab.log();
        let zone_names: Vec<&str> = log
            .iter()
            .filter(|l| l.path == "/zones")
            .filter_map(|l| {
                l.query
                    .iter()
                    .find(|(k, _)| k == "name")
                    .map(|(_, v)| v.as_str())
            })
            .collect();
        assert_eq!(zone_names, ["home.example.com", "example.com"]);
        let pages: Vec<&str> = log
            .iter()
            .filter(|l| l.path.ends_with("/dns_records"))
            .filter_map(|l| {
                l.query
                    .iter()
                    .find(|(k, _)| k == "page")
                    .map(|(_, v)| v.as_str())
            })
            .collect();
        assert_eq!(pages, ["1", "2", "3"]);
        let w = lab.writes();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].path.ends_with(&ours),
            "our record is patched, not a new one created"
        );
        lab.assert_schema_clean();
    });
}

#[test]
fn the_token_appears_nowhere_in_the_captured_logs() {
    in_new_netns(|| {
        let lab = Lab::new();
        let cfg = lab.write_config("", "");
        let bin = env!("CARGO_BIN_EXE_edge-ddns");
        let run = |extra: &[&str]| {
            let out = std::process::Command::new(bin)
                .args([
                    "--once",
                    "--log-level",
                    "trace",
                    "--log-format",
                    "text",
                    "--config",
                ])
                .arg(&cfg)
                .args(extra)
                .output()
                .expect("run edge-ddns --once");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status, text)
        };
        // A creating run, a dry run, an IP change, and a refused token: all at trace level.
        let (st, t1) = run(&[]);
        assert!(st.success(), "{t1}");
        assert!(t1.contains("record created"), "{t1}");
        let (st, t2) = run(&["--dry-run"]);
        assert!(st.success(), "{t2}");
        lab.set_all(Some(IP2));
        let (st, t3) = run(&[]);
        assert!(st.success(), "{t3}");
        assert!(t3.contains("record updated"), "{t3}");
        let token_file = lab.dir.path().join("token");
        std::fs::write(&token_file, "another-wrong-token-123\n").unwrap();
        lab.set_all(Some(IP1));
        let (st, t4) = run(&[]);
        assert_eq!(st.code(), Some(1), "a refused token fails the run: {t4}");
        assert!(t4.contains("10000"), "the Cloudflare error is shown: {t4}");
        for (i, t) in [t1, t2, t3, t4].iter().enumerate() {
            assert!(!t.contains(TOKEN), "run {i} leaked the token:\n{t}");
            assert!(
                !t.contains("another-wrong-token-123"),
                "run {i} leaked the token:\n{t}"
            );
        }
        assert_eq!(lab.a_records()[0]["content"], IP2);
    });
}

#[test]
fn once_exit_codes_tell_success() {
    in_new_netns(|| {
        let lab = Lab::new();
        let bin = env!("CARGO_BIN_EXE_edge-ddns");
        let cfg = lab.write_config("", "");
        let ok = std::process::Command::new(bin)
            .args(["--once", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(ok.status.code(), Some(0));
        lab.set_all(None);
        let st = lab.dir.path().join("state/ddns/state.json");
        std::fs::remove_file(st).unwrap();
        let fail = std::process::Command::new(bin)
            .args(["--once", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert_eq!(fail.status.code(), Some(1));
        let bad = lab.dir.path().join("bad.toml");
        std::fs::write(&bad, "version = 1\n[ddns]\nquorum = 0\n").unwrap();
        let bad = std::process::Command::new(bin)
            .args(["--once", "--config"])
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(2));
        let err = String::from_utf8_lossy(&bad.stderr);
        assert!(err.contains("bad.toml:"), "located config errors: {err}");
    });
}

/// A DNS server answering `whoami.cloudflare` TXT CH with `answer`, like 1.1.1.1 does.
fn whoami_server(answer: &'static str) -> std::net::SocketAddr {
    use hickory_resolver::proto::op::{Message, OpCode};
    use hickory_resolver::proto::rr::rdata::TXT;
    use hickory_resolver::proto::rr::{DNSClass, RData, Record};
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(q.metadata.id, OpCode::Query);
            resp.add_query(q.queries[0].clone());
            let asked = &q.queries[0];
            if asked.query_class() == DNSClass::CH
                && asked
                    .name()
                    .to_ascii()
                    .eq_ignore_ascii_case("whoami.cloudflare.")
            {
                let mut rec = Record::from_rdata(
                    asked.name().clone(),
                    0,
                    RData::TXT(TXT::new(vec![answer.to_owned()])),
                );
                rec.dns_class = DNSClass::CH;
                resp.add_answer(rec);
            }
            let _ = sock.send_to(&resp.to_vec().unwrap(), from);
        }
    });
    addr
}

#[test]
fn a_dns_source_votes_with_whoami_txt_in_the_chaos_class() {
    in_new_netns(|| {
        let lab = Lab::new();
        let dns = whoami_server(IP1);
        // Replace the trace source by DNS; the echoes other than echo-a are down.
        let text = lab.config_text("", "").replace(
            &format!(
                "name = \"trace-b\"\nkind = \"cloudflare-trace\"\nurl = \"{}\"\nfamily = \"ipv4\"",
                lab.echoes[1].url()
            ),
            &format!(
                "name = \"whoami\"\nkind = \"dns\"\nserver = \"{dns}\"\nquery = \"whoami.cloudflare\"\ntype = \"TXT\"\nclass = \"CH\"\ntransport = \"udp\"\nfamily = \"ipv4\""
            ),
        );
        assert!(text.contains("whoami.cloudflare"));
        lab.echoes[2].set_answer(None);
        let p = lab.dir.path().join("edge.toml");
        std::fs::write(&p, &text).unwrap();
        let cfg = edge_config::parse(&p, &text).unwrap().config;
        let mut s = lab.syncer(&cfg);
        let r = sync(&mut s, T0);
        assert!(r.ok, "{r:?}");
        let whoami = r.families[0]
            .answers
            .iter()
            .find(|a| a.source == "whoami")
            .unwrap();
        assert_eq!(whoami.detail, IP1, "{r:?}");
        assert_eq!(lab.a_records()[0]["content"], IP1);
    });
}

// ---------------------------------------------------------------------------------------
// Issue 3 gaps: DoH, AAAA, duplicates, the request budget.
// ---------------------------------------------------------------------------------------

/// What the DoH responder received: (method, content-type, question name, type, class).
type DohSeen = (String, String, String, String, String);

/// A DNS-over-HTTPS responder (RFC 8484 POST) on `127.0.0.1`, serving HTTPS with a
/// certificate from a fresh test CA. Answers A questions with an A record and TXT questions
/// (any class, e.g. `whoami.cloudflare` CH) with a TXT record holding the current answer.
type Doh = TlsResponder<DohSeen>;

/// A TLS responder on `127.0.0.1` with a certificate from a fresh test CA: each connection
/// is handed to `serve` on a thread of its own with the current answer; what was asked is
/// kept in `seen`. DoH and DoT differ only in `serve`.
struct TlsResponder<S> {
    addr: std::net::SocketAddr,
    ca_pem: String,
    answer: std::sync::Arc<std::sync::Mutex<String>>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<S>>>,
}

/// How a [`TlsResponder`] serves one connection.
type Serve<S> = fn(
    std::net::TcpStream,
    std::sync::Arc<rustls::ServerConfig>,
    &std::sync::Mutex<String>,
    &std::sync::Mutex<Vec<S>>,
) -> std::io::Result<()>;

impl<S: Clone + Send + 'static> TlsResponder<S> {
    fn spawn(answer: &str, serve: Serve<S>) -> Self {
        use std::sync::{Arc, Mutex};
        let (ca_pem, tls) = test_tls();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(Mutex::new(answer.to_owned()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, s) = (answer.clone(), seen.clone());
        // Lives as long as the test's namespace thread: the listener dies with the process.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (tls, a, s) = (tls.clone(), a.clone(), s.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, tls, &a, &s);
                });
            }
        });
        TlsResponder {
            addr,
            ca_pem,
            answer,
            seen,
        }
    }

    fn set_answer(&self, a: &str) {
        *self.answer.lock().unwrap() = a.to_owned();
    }

    fn seen(&self) -> Vec<S> {
        self.seen.lock().unwrap().clone()
    }
}

/// A fresh test CA (PEM) and a TLS server configuration for `127.0.0.1` signed by it.
fn test_tls() -> (String, std::sync::Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use std::sync::Arc;
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "edge DNS test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap(),
    );
    (ca_cert.pem(), tls)
}

impl TlsResponder<DohSeen> {
    fn start(answer: &str) -> Doh {
        TlsResponder::spawn(answer, Doh::serve)
    }

    /// One request per connection (`connection: close`).
    fn serve(
        stream: std::net::TcpStream,
        tls: std::sync::Arc<rustls::ServerConfig>,
        answer: &std::sync::Mutex<String>,
        seen: &std::sync::Mutex<Vec<DohSeen>>,
    ) -> std::io::Result<()> {
        use std::io::{Read as _, Write as _};
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let conn = rustls::ServerConnection::new(tls).map_err(std::io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, stream);
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let header = |name: &str| {
            head.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        let len: usize = header("content-length").parse().unwrap_or(0);
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let method = head.split(' ').next().unwrap_or("").to_owned();
        let text = answer.lock().unwrap().clone();
        let (body, (name, kind, class)) = dns_reply(&buf[head_end..], &text)
            .ok_or_else(|| std::io::Error::other("not a DNS question"))?;
        seen.lock()
            .unwrap()
            .push((method, header("content-type"), name, kind, class));
        write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-type: application/dns-message\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )?;
        s.write_all(&body)?;
        s.flush()?;
        s.conn.send_close_notify();
        let _ = s.flush();
        Ok(())
    }

    fn url(&self) -> String {
        format!("https://{}/dns-query", self.addr)
    }
}

/// Parses `text` written to the lab's config file.
fn parse_config(lab: &Lab, text: &str) -> edge_config::Config {
    let p = lab.dir.path().join("edge.toml");
    std::fs::write(&p, text).unwrap();
    match edge_config::parse(&p, text) {
        Ok(l) => l.config,
        Err(d) => panic!("test configuration refused:\n{d}"),
    }
}

#[test]
fn a_doh_source_votes_in_the_quorum_and_a_wrong_doh_answer_never_wins_alone() {
    in_new_netns(|| {
        let lab = Lab::new();
        let doh = Doh::start(IP1);
        let ca = lab.dir.path().join("doh-ca.pem");
        std::fs::write(&ca, &doh.ca_pem).unwrap();
        // The trace source becomes Cloudflare-style DoH (whoami.cloudflare TXT CH), trusted
        // through ca_file; echo-c is down, so no quorum without the DoH vote.
        let text = lab
            .config_text(&format!("ca_file = \"{}\"", ca.display()), "")
            .replace(
                &format!(
                    "name = \"trace-b\"\nkind = \"cloudflare-trace\"\nurl = \"{}\"",
                    lab.echoes[1].url()
                ),
                &format!(
                    "name = \"doh\"\nkind = \"dns\"\nserver = \"{}\"\nquery = \"whoami.cloudflare\"\ntype = \"TXT\"\nclass = \"CH\"\ntransport = \"https\"",
                    doh.url()
                ),
            );
        assert!(text.contains("transport = \"https\""));
        let cfg = parse_config(&lab, &text);
        lab.echoes[2].set_answer(None);
        let mut s = lab.syncer(&cfg);
        let r = sync(&mut s, T0);
        assert!(r.ok, "echo-a and DoH agree: {r:?}");
        let answer = |r: &edge_ipc::ddns::SyncReport, name: &str| {
            r.families[0]
                .answers
                .iter()
                .find(|a| a.source == name)
                .map(|a| (a.result.clone(), a.detail.clone()))
                .unwrap()
        };
        assert_eq!(answer(&r, "doh"), ("ok".to_owned(), IP1.to_owned()));
        assert_eq!(lab.a_records()[0]["content"], IP1);
        // What the responder received: one RFC 8484 POST carrying the CH TXT question.
        assert_eq!(
            doh.seen(),
            [(
                "POST".to_owned(),
                "application/dns-message".to_owned(),
                "whoami.cloudflare.".to_owned(),
                "TXT".to_owned(),
                "CH".to_owned()
            )]
        );

        // The address changes and DoH sees it first, echo-a still says IP1: a tie decides
        // nothing, nothing is written.
        lab.cf.clear_log();
        doh.set_answer(IP2);
        let r = sync(&mut s, T0 + 60);
        assert!(!r.ok, "a 1:1 split is no quorum: {r:?}");
        assert_eq!(answer(&r, "doh").1, IP2);
        assert!(lab.log().is_empty(), "{:?}", methods(&lab.log()));
        assert_eq!(lab.a_records()[0]["content"], IP1);

        // A lying DoH answer against two honest echoes is outvoted.
        lab.echoes[2].set_answer(Some(IP1));
        doh.set_answer(LIE);
        let r = sync(&mut s, T0 + 120);
        assert!(r.ok, "{r:?}");
        assert_eq!(r.families[0].address.as_deref(), Some(IP1));
        assert!(lab.writes().is_empty());

        // DoH alone (both echoes down): a single vote is below the quorum of 2.
        lab.set_all(None);
        let r = sync(&mut s, T0 + 180);
        assert!(!r.ok, "{r:?}");
        assert_eq!(answer(&r, "doh").1, LIE);
        assert!(r.families[0].address.is_none());
        assert!(lab.log().is_empty());

        // Once echo-a follows the DoH answer, the two agree and the record moves.
        lab.echoes[0].set_answer(Some(IP2));
        doh.set_answer(IP2);
        let r = sync(&mut s, T0 + 240);
        assert!(r.ok, "{r:?}");
        let w = lab.writes();
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].body, Some(json!({ "content": IP2 })));
        assert_eq!(doh.seen().len(), 5, "one DoH request per detection run");
        lab.assert_schema_clean();
    });
}

/// Global IPv6 addresses (2a01:4f8::/32 is outside documentation, ULA and Cloudflare's ranges).
const V6_1: &str = "2a01:4f8:1:2::10";
const V6_2: &str = "2a01:4f8:1:2::11";

#[test]
fn an_aaaa_record_is_created_from_ipv6_sources_and_patched_with_content_only() {
    in_new_netns(|| {
        let lab = Lab::new();
        let v6: Vec<EchoServer> = (0..3)
            .map(|_| EchoServer::start("[::1]:0".parse().unwrap(), EchoKind::Plain, V6_1))
            .collect();
        let mut text = lab
            .config_text("", "")
            .replace("type = \"A\"", "type = \"AAAA\"")
            .replace("family = \"ipv4\"", "family = \"ipv6\"")
            .replace("kind = \"cloudflare-trace\"", "kind = \"http\"");
        for (old, new) in lab.echoes.iter().zip(&v6) {
            text = text.replace(
                &format!("url = \"{}\"", old.url()),
                &format!("url = \"{}\"", new.url()),
            );
        }
        assert!(text.contains("[::1]"), "{text}");
        let cfg = parse_config(&lab, &text);
        let aaaa = || -> Vec<serde_json::Value> {
            lab.cf
                .records()
                .into_iter()
                .filter(|r| r["name"] == "example.com" && r["type"] == "AAAA")
                .collect()
        };
        let mut s = lab.syncer(&cfg);
        let r = sync(&mut s, T0);
        assert!(r.ok, "{r:?}");
        assert_eq!(r.families.len(), 1);
        assert_eq!(r.families[0].family, "ipv6");
        assert_eq!(r.families[0].address.as_deref(), Some(V6_1));
        let w = lab.writes();
        assert_eq!(w.len(), 1, "{:?}", methods(&lab.log()));
        assert_eq!(w[0].method, Method::POST);
        assert_eq!(
            w[0].body,
            Some(
                json!({"type":"AAAA","name":"example.com","content":V6_1,"ttl":1,"proxied":true,"comment":OWNER})
            )
        );
        // The listing asked for AAAA records.
        assert!(lab.log().iter().any(|l| l.path.ends_with("/dns_records")
            && l.query.contains(&("type".into(), "AAAA".into()))));
        let recs = aaaa();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["content"], V6_1);
        assert!(lab.a_records().is_empty(), "no A record without an A entry");
        for e in &lab.echoes {
            assert_eq!(
                e.hits(),
                0,
                "IPv4 sources are not asked for an AAAA-only config"
            );
        }
        let id = recs[0]["id"].as_str().unwrap().to_owned();

        // The prefix changes; one source wrongly answers an IPv4 address, which is refused
        // for the ipv6 family: the two others carry the change.
        lab.cf.clear_log();
        for e in &v6 {
            e.set_answer(Some(V6_2));
        }
        v6[1].set_answer(Some(IP1));
        let r = sync(&mut s, T0 + 60);
        assert!(r.ok, "{r:?}");
        assert_eq!(r.families[0].answers[1].result, "rejected", "{r:?}");
        assert!(
            r.families[0].answers[1]
                .detail
                .contains("wrong address family"),
            "{r:?}"
        );
        let w = lab.writes();
        assert_eq!(w.len(), 1, "{:?}", methods(&lab.log()));
        assert_eq!(w[0].method, Method::PATCH);
        assert_eq!(w[0].path, format!("/zones/{}/dns_records/{id}", lab.zone));
        assert_eq!(w[0].body, Some(json!({ "content": V6_2 })));
        let rec = &aaaa()[0];
        assert_eq!(rec["content"], V6_2);
        assert_eq!(rec["comment"], OWNER);
        assert_eq!(aaaa().len(), 1);
        lab.assert_schema_clean();
    });
}

/// Number of POSTs in a log.
fn posts(log: &[edge_testkit::cloudflare::Logged]) -> usize {
    log.iter().filter(|l| is(l, &Method::POST)).count()
}

#[test]
fn a_create_refused_as_duplicate_is_reported_and_not_retried_in_a_loop() {
    in_new_netns(|| {
        let lab = Lab::new();
        let cfg = lab.config("", "");
        let mut s = lab.syncer(&cfg);
        // Cloudflare refuses the next two creations: the name is taken by something the
        // listing of A records does not show.
        lab.cf.inject(
            Fault::ApiError {
                status: 400,
                code: 81057,
                message: "The record already exists.".into(),
            },
            2,
            Some(Method::POST),
        );
        let r = sync(&mut s, T0);
        assert!(!r.ok, "{r:?}");
        assert_eq!(r.records[0].outcome, "failed");
        let detail = &r.records[0].detail;
        assert!(
            detail.contains("81057") && detail.contains("The record already exists."),
            "the Cloudflare error is reported: {detail}"
        );
        assert!(
            detail.contains("already exists") && detail.contains("paused"),
            "the report explains the duplicate and the pause: {detail}"
        );
        assert_eq!(methods(&lab.log()), ["GET", "GET", "POST"]);
        assert!(lab.a_records().is_empty());

        // Every minute for the next hour: no POST, not even a listing; the report still says
        // why.
        lab.cf.clear_log();
        for m in 1..=10 {
            let r = sync(&mut s, T0 + 60 * m);
            assert!(!r.ok);
            assert!(r.records[0].detail.contains("duplicate"), "{r:?}");
        }
        assert!(lab.log().is_empty(), "{:?}", methods(&lab.log()));

        // A restarted daemon has forgotten the pause: it re-lists before it creates (the
        // zone id is not looked up again: the failed runs saved it with their count).
        let mut restarted = lab.syncer(&cfg);
        let r = sync(&mut restarted, T0 + 700);
        assert!(!r.ok);
        let log = lab.log();
        assert_eq!(methods(&log), ["GET", "POST"], "list, then create");
        assert!(log[0].path.ends_with("/dns_records"), "{:?}", log[0].path);
        lab.cf.clear_log();

        // After the hour the original syncer lists again, then creates (the fault is spent).
        let r = sync(&mut s, T0 + 3700);
        assert!(r.ok, "{r:?}");
        let log = lab.log();
        assert_eq!(posts(&log), 1);
        assert!(
            log.iter()
                .position(|l| l.path.ends_with("/dns_records") && is(l, &Method::GET))
                < log.iter().position(|l| is(l, &Method::POST)),
            "a listing precedes the create: {:?}",
            methods(&log)
        );
        assert_eq!(lab.a_records().len(), 1);
        lab.assert_schema_clean();
    });
}

#[test]
fn two_owned_records_with_the_same_name_are_reported_and_only_one_is_patched() {
    in_new_netns(|| {
        let lab = Lab::new();
        let first = lab.cf.add_record(
            &lab.zone,
            json!({"type":"A","name":"example.com","content":"81.2.69.1","proxied":true,"comment":OWNER}),
        );
        let second = lab.cf.add_record(
            &lab.zone,
            json!({"type":"A","name":"example.com","content":"81.2.69.2","proxied":true,"comment":OWNER}),
        );
        assert!(first < second);
        let cfg = lab.config("", "");
        let mut s = lab.syncer(&cfg);
        let r = sync(&mut s, T0);
        assert!(r.ok, "{r:?}");
        assert_eq!(r.records[0].outcome, "patched");
        let detail = &r.records[0].detail;
        assert!(
            detail.contains("2 owned duplicates")
                && detail.contains(&first)
                && detail.contains(&second)
                && detail.contains("delete all but one"),
            "{detail}"
        );
        let w = lab.writes();
        assert_eq!(w.len(), 1, "one PATCH, no POST: {:?}", methods(&lab.log()));
        assert_eq!(w[0].method, Method::PATCH);
        assert_eq!(
            w[0].path,
            format!("/zones/{}/dns_records/{first}", lab.zone),
            "the lowest id is patched"
        );
        assert_eq!(w[0].body, Some(json!({ "content": IP1 })));
        let recs = lab.a_records();
        assert_eq!(recs.len(), 2, "never multiplied, never deleted");

        // The next verification: one of them holds the address, nothing is written, the
        // duplicates are still reported.
        lab.cf.clear_log();
        let r = sync(&mut s, T0 + 3700);
        assert!(r.ok, "{r:?}");
        assert_eq!(r.records[0].outcome, "unchanged");
        assert!(r.records[0].detail.contains("owned duplicates"), "{r:?}");
        assert!(lab.writes().is_empty());
        // An address change moves the same (lowest) record again, still one PATCH.
        lab.set_all(Some(IP2));
        let r = sync(&mut s, T0 + 3760);
        assert!(r.ok, "{r:?}");
        let w = lab.writes();
        assert_eq!(w.len(), 1);
        assert!(w[0].path.ends_with(&first));
        lab.assert_schema_clean();
    });
}

#[test]
fn a_tiny_request_budget_stops_with_budget_exhausted_and_sends_no_more() {
    use edge_ddns::cloudflare::{ApiError, Client, ClientOptions, RetryPolicy};
    in_new_netns(|| {
        let lab = Lab::new();
        // Five records on five pages of one: a listing needs five requests.
        for i in 1..=5 {
            lab.cf.add_record(
                &lab.zone,
                json!({"type":"A","name":"example.com","content":format!("81.2.69.{i}")}),
            );
        }
        lab.cf.set_max_per_page(Some(1));
        // There is no `[ddns]` key for the budget (it is fixed at 120 per 5 minutes), so the
        // client is built with the library's options.
        let mut opts = ClientOptions::new(url::Url::parse(&lab.cf.url()).unwrap());
        opts.budget = 3;
        opts.budget_window = Duration::from_secs(2);
        opts.retry = RetryPolicy {
            attempts: 4,
            rate_limit_attempts: 6,
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        };
        let client = Client::new(
            opts,
            &edge_config::SecretString::new(TOKEN.to_owned()),
            edge_metrics::ddns::Metrics::default(),
        )
        .unwrap();
        block_on(async {
            let zone = client.zone_id("example.com").await.unwrap();
            assert_eq!(zone, lab.zone);
            let err = client
                .list_records(&zone, "example.com", "A")
                .await
                .unwrap_err();
            assert!(
                matches!(err, ApiError::BudgetExhausted { limit: 3, .. }),
                "{err:?}"
            );
            assert!(err.to_string().contains("budget of 3 requests"), "{err}");
            // The create that would follow is refused locally as well: nothing is sent.
            let rec = edge_ddns::plan::NewRecord {
                kind: "A".into(),
                name: "example.com".into(),
                content: IP1.into(),
                ttl: 1,
                proxied: true,
                comment: OWNER.into(),
            };
            let err = client.create(&zone, &rec).await.unwrap_err();
            assert!(matches!(err, ApiError::BudgetExhausted { .. }), "{err:?}");
            let log = lab.log();
            assert_eq!(
                methods(&log),
                ["GET", "GET", "GET"],
                "zone lookup and two pages, then the budget is spent"
            );
            assert_eq!(client.requests_sent(), 3);

            // Retries count against the budget too: after the window, a listing whose
            // answers are 500s stops at the budget, not at the retry limit.
            tokio::time::sleep(Duration::from_millis(2100)).await;
            lab.cf.clear_log();
            lab.cf.set_max_per_page(None);
            lab.cf.inject(Fault::ServerError, 3, Some(Method::GET));
            let err = client
                .list_records(&zone, "example.com", "A")
                .await
                .unwrap_err();
            assert!(matches!(err, ApiError::BudgetExhausted { .. }), "{err:?}");
            let statuses: Vec<u16> = lab.log().iter().map(|l| l.status).collect();
            assert_eq!(statuses, [500, 500, 500]);

            // A new window allows requests again.
            tokio::time::sleep(Duration::from_millis(2100)).await;
            lab.cf.clear_log();
            let listed = client
                .list_records(&zone, "example.com", "A")
                .await
                .unwrap();
            assert_eq!(listed.len(), 5);
            assert_eq!(methods(&lab.log()), ["GET"]);
        });
        lab.assert_schema_clean();
    });
}

/// What a DNS question asked: (name, type, class).
type Asked = (String, String, String);

/// Answers one DNS message: an A record (A questions) or a TXT record holding `text`.
fn dns_reply(wire: &[u8], text: &str) -> Option<(Vec<u8>, Asked)> {
    use hickory_resolver::proto::op::{Message, OpCode};
    use hickory_resolver::proto::rr::rdata::{A, TXT};
    use hickory_resolver::proto::rr::{RData, Record, RecordType};
    let q = Message::from_vec(wire).ok()?;
    let asked = q.queries.first()?.clone();
    let mut resp = Message::response(q.metadata.id, OpCode::Query);
    resp.metadata.recursion_desired = q.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_query(asked.clone());
    let rdata = match asked.query_type() {
        RecordType::A => RData::A(A(text.parse().ok()?)),
        _ => RData::TXT(TXT::new(vec![text.to_owned()])),
    };
    let mut rec = Record::from_rdata(asked.name().clone(), 0, rdata);
    rec.dns_class = asked.query_class();
    resp.add_answer(rec);
    Some((
        resp.to_vec().ok()?,
        (
            asked.name().to_ascii(),
            asked.query_type().to_string(),
            asked.query_class().to_string(),
        ),
    ))
}

/// A DNS-over-TLS responder (RFC 7858: length-prefixed DNS over TLS over TCP) on
/// `127.0.0.1`, with a certificate from a fresh test CA.
type Dot = TlsResponder<Asked>;

impl TlsResponder<Asked> {
    fn start(answer: &str) -> Dot {
        TlsResponder::spawn(answer, Dot::serve)
    }

    fn serve(
        stream: std::net::TcpStream,
        tls: std::sync::Arc<rustls::ServerConfig>,
        answer: &std::sync::Mutex<String>,
        seen: &std::sync::Mutex<Vec<Asked>>,
    ) -> std::io::Result<()> {
        use std::io::{Read as _, Write as _};
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let conn = rustls::ServerConnection::new(tls).map_err(std::io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, stream);
        loop {
            let mut len = [0u8; 2];
            s.read_exact(&mut len)?;
            let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut msg)?;
            let text = answer.lock().unwrap().clone();
            let Some((wire, asked)) = dns_reply(&msg, &text) else {
                return Ok(());
            };
            seen.lock().unwrap().push(asked);
            let n = u16::try_from(wire.len()).unwrap();
            s.write_all(&n.to_be_bytes())?;
            s.write_all(&wire)?;
            s.flush()?;
        }
    }
}

#[test]
fn a_dot_source_trusts_ca_file_and_votes_in_the_quorum() {
    in_new_netns(|| {
        let lab = Lab::new();
        let dot = Dot::start(IP1);
        let ca = lab.dir.path().join("dot-ca.pem");
        std::fs::write(&ca, &dot.ca_pem).unwrap();
        // The trace source becomes DoT (`myip.opendns.com` A, class IN); echo-c is down, so
        // no quorum without the DoT vote.
        let text = |ddns_extra: &str| {
            lab.config_text(ddns_extra, "").replace(
                &format!(
                    "name = \"trace-b\"\nkind = \"cloudflare-trace\"\nurl = \"{}\"",
                    lab.echoes[1].url()
                ),
                &format!(
                    "name = \"dot\"\nkind = \"dns\"\nserver = \"{}\"\nquery = \"myip.opendns.com\"\ntype = \"A\"\ntransport = \"tls\"",
                    dot.addr
                ),
            )
        };
        lab.echoes[2].set_answer(None);
        let dot_answer = |r: &edge_ipc::ddns::SyncReport| {
            r.families[0]
                .answers
                .iter()
                .find(|a| a.source == "dot")
                .map(|a| (a.result.clone(), a.detail.clone()))
                .unwrap()
        };

        // Without ca_file the test CA is not trusted: no question is sent, no quorum, no API
        // call.
        let plain = text("");
        assert!(plain.contains("transport = \"tls\""));
        let cfg = parse_config(&lab, &plain);
        let r = sync(&mut lab.syncer(&cfg), T0);
        assert!(!r.ok, "{r:?}");
        assert_eq!(dot_answer(&r).0, "failed", "{r:?}");
        // The failure tells the operator what to check (hickory alone says only "no
        // connections available").
        let detail = format!("{:?}", dot_answer(&r).1);
        assert!(detail.contains("ca_file"), "{detail}");
        assert!(dot.seen().is_empty(), "{:?}", dot.seen());
        assert!(lab.log().is_empty(), "{:?}", methods(&lab.log()));

        // With ca_file the DoT answer counts: echo-a and DoT agree, the record is created.
        let cfg = parse_config(&lab, &text(&format!("ca_file = \"{}\"", ca.display())));
        let mut s = lab.syncer(&cfg);
        let r = sync(&mut s, T0 + 60);
        assert!(r.ok, "{r:?}");
        assert_eq!(dot_answer(&r), ("ok".to_owned(), IP1.to_owned()));
        assert_eq!(lab.a_records()[0]["content"], IP1);
        let seen = dot.seen();
        assert!(!seen.is_empty());
        assert!(
            seen.iter().all(|q| q
                == &(
                    "myip.opendns.com.".to_owned(),
                    "A".to_owned(),
                    "IN".to_owned()
                )),
            "{seen:?}"
        );

        // A lying DoT answer against echo-a is a split: nothing is written.
        lab.cf.clear_log();
        dot.set_answer(LIE);
        let r = sync(&mut s, T0 + 120);
        assert!(!r.ok, "{r:?}");
        assert_eq!(dot_answer(&r).1, LIE);
        assert!(lab.log().is_empty(), "{:?}", methods(&lab.log()));
        assert_eq!(lab.a_records()[0]["content"], IP1);
        lab.assert_schema_clean();
    });
}
