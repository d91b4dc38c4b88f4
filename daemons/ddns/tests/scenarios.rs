//! The scenarios of issue 3 (point 7), each asserting what the Cloudflare test server
//! received. Each runs inside its own fresh network namespace (root needed: the test fails,
//! never skips, without it); servers listen on that namespace's loopback.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod common;

use std::time::{Duration, Instant};

use common::*;
use edge_testkit::cloudflare::Fault;
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
