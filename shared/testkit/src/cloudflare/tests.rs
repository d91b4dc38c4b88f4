//! The Cloudflare test server checked against itself and the fixture.

use super::*;

/// Sends one raw HTTP/1.1 request and returns the status line and body.
fn raw(addr: SocketAddr, method: &str, path: &str, auth: bool, body: Option<&str>) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = body.unwrap_or("");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    if auth {
        req.push_str("Authorization: Bearer tok\r\n");
    }
    if !body.is_empty() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
// One server session read top to bottom: each step counts on the zone, record, log and
// record count the steps before it left; split, every part would need the server and ids.
#[allow(clippy::too_many_lines)]
fn the_server_checks_every_request_and_authenticates() {
    crate::in_new_netns(|| {
        let cf = CfServer::start_local("tok");
        let z = cf.add_zone("example.com");
        let id = cf.add_record(
            &z,
            json!({"type":"A","name":"example.com","content":"81.2.69.160"}),
        );
        let a = cf.addr();
        let ok = raw(
            a,
            "GET",
            &format!("/client/v4/zones/{z}/dns_records?type=A&name=example.com"),
            true,
            None,
        );
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("ratelimit: \"default\";r=1199;t="), "{ok}");
        assert!(cf.violations().is_empty(), "{:?}", cf.violations());
        let noauth = raw(a, "GET", "/client/v4/zones?name=example.com", false, None);
        assert!(
            noauth.starts_with("HTTP/1.1 403") && noauth.contains("10000"),
            "{noauth}"
        );
        cf.clear_log();
        raw(
            a,
            "GET",
            &format!("/client/v4/zones/{z}/dns_records?name.exact=example.com"),
            true,
            None,
        );
        raw(
            a,
            "PATCH",
            &format!("/client/v4/zones/{z}/dns_records/{id}"),
            true,
            Some(r#"{"content":"not-an-ip"}"#),
        );
        raw(
            a,
            "POST",
            &format!("/client/v4/zones/{z}/dns_records"),
            true,
            Some(r#"{"type":"A","content":"81.2.69.1"}"#),
        );
        raw(
            a,
            "GET",
            "/client/v4/zones/not-a-zone-id-that-is-far-too-long-for-the-schema/dns_records",
            true,
            None,
        );
        raw(a, "GET", "/client/v4/accounts", true, None);
        let v = cf.violations();
        let has = |needle: &str| v.iter().any(|x| x.contains(needle));
        assert!(has("`name.exact` is not declared"), "{v:#?}");
        assert!(has("record after PATCH"), "{v:#?}");
        assert!(has("POST /zones/"), "{v:#?}");
        assert!(has("path parameter `zone_id`"), "{v:#?}");
        assert!(
            has("is not an operation of the OpenAPI description"),
            "{v:#?}"
        );
        cf.inject(Fault::RateLimited { retry_after: 7 }, 1, None);
        let limited = raw(a, "GET", "/client/v4/zones", true, None);
        assert!(
            limited.starts_with("HTTP/1.1 429") && limited.contains("retry-after: 7"),
            "{limited}"
        );
        // A Cloudflare error in the envelope: the create is answered with it and not
        // performed; the next one goes through.
        let before = cf.records().len();
        cf.inject(
            Fault::ApiError {
                status: 400,
                code: 81057,
                message: "The record already exists.".into(),
            },
            1,
            Some(Method::POST),
        );
        let post = |name: &str| {
            raw(
                a,
                "POST",
                &format!("/client/v4/zones/{z}/dns_records"),
                true,
                Some(&format!(
                    r#"{{"type":"A","name":"{name}","content":"81.2.69.7"}}"#
                )),
            )
        };
        let refused = post("dup.example.com");
        assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
        let env: Value =
            serde_json::from_str(refused.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap();
        assert_eq!(env["success"], false, "{refused}");
        assert_eq!(env["errors"][0]["code"], 81057, "{refused}");
        assert_eq!(
            cf.records().len(),
            before,
            "the refused create is not performed"
        );
        let created = post("dup.example.com");
        assert!(created.starts_with("HTTP/1.1 200"), "{created}");
        assert_eq!(cf.records().len(), before + 1);
        let faults: Vec<Option<Fault>> = cf
            .log()
            .iter()
            .rev()
            .take(2)
            .map(|l| l.fault.clone())
            .collect();
        assert_eq!(faults[0], None);
        assert!(matches!(
            faults[1],
            Some(Fault::ApiError { code: 81057, .. })
        ));
    });
}

#[test]
fn the_fixture_is_the_official_subset() {
    // sha256 from shared/cloudflare/README.md; compared by length and a spot check here
    // (no hashing crate in the testkit): 73,169 bytes, every operation present.
    assert_eq!(OPENAPI.len(), 73_169);
    let s = Schema::load();
    for (m, p) in [
        (Method::GET, "/zones"),
        (Method::GET, "/zones/{zone_id}/dns_records"),
        (Method::POST, "/zones/{zone_id}/dns_records"),
        (
            Method::PATCH,
            "/zones/{zone_id}/dns_records/{dns_record_id}",
        ),
        (Method::PUT, "/zones/{zone_id}/dns_records/{dns_record_id}"),
        (
            Method::DELETE,
            "/zones/{zone_id}/dns_records/{dns_record_id}",
        ),
        (Method::GET, "/user/tokens/verify"),
    ] {
        assert!(s.operation(&m, p).is_some(), "{m} {p}");
    }
}

#[test]
fn request_bodies_are_validated_against_the_schema() {
    let s = Schema::load();
    let op = s
        .operation(&Method::POST, "/zones/{zone_id}/dns_records")
        .unwrap();
    let body = s.body_schema(op).unwrap();
    let good = json!({"type":"A","name":"example.com","content":"81.2.69.160","ttl":1,"proxied":true,"comment":"managed by edge"});
    assert_eq!(s.check(body, &good, true), Vec::<String>::new());
    let bad_ip = json!({"type":"A","name":"example.com","content":"not-an-ip"});
    assert!(
        !s.check(body, &bad_ip, true).is_empty(),
        "format ipv4 is checked"
    );
    let bad_ttl = json!({"type":"A","name":"example.com","content":"81.2.69.160","ttl":5});
    assert!(
        !s.check(body, &bad_ttl, true).is_empty(),
        "ttl 5 is refused"
    );
    let no_type = json!({"name":"example.com","content":"81.2.69.160"});
    assert!(!s.check(body, &no_type, true).is_empty());
    let list = s
        .operation(&Method::GET, "/zones/{zone_id}/dns_records")
        .unwrap();
    assert!(
        s.check_query(
            list,
            &[
                ("type".into(), "A".into()),
                ("per_page".into(), "100".into())
            ]
        )
        .is_empty()
    );
    assert!(
        !s.check_query(list, &[("name.exact".into(), "x".into())])
            .is_empty(),
        "not in the 2024 schema"
    );
    assert!(
        !s.check_query(list, &[("type".into(), "BOGUS".into())])
            .is_empty()
    );
    let zones = s.operation(&Method::GET, "/zones").unwrap();
    assert!(
        !s.check_query(zones, &[("per_page".into(), "100".into())])
            .is_empty(),
        "zones per_page max is 50"
    );
}
