//! The client's pacing, retries and refusal of plain HTTP.

use reqwest::header::HeaderMap;

use super::*;

#[test]
fn ratelimit_header_is_parsed() {
    assert_eq!(parse_ratelimit("\"default\";r=50;t=30"), Some((50, 30)));
    assert_eq!(parse_ratelimit("\"default\";r=0;t=7"), Some((0, 7)));
    assert_eq!(parse_ratelimit("\"default\";t=7"), None);
}

fn loopback_client() -> Client {
    Client::new(
        ClientOptions::new(Url::parse("http://127.0.0.1:9/client/v4").unwrap()),
        &SecretString::new("t0k3n-value".to_owned()),
        Metrics::default(),
    )
    .unwrap()
}

/// L3: `t=` is the server's number; `u64::MAX` seconds overflowed `Instant + Duration`
/// and the panic killed the current-thread daemon. It goes through the client's own path
/// (`note_headers`, as after every answer) and becomes a pause of at most MAX_RATE_WAIT.
#[test]
fn a_huge_ratelimit_reset_is_clamped_and_never_panics() {
    let c = loopback_client();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut c2 = c.clone();
    c2.set_pause_hook(Arc::new(move |t| lock(&s).push(t)));
    let mut h = HeaderMap::new();
    h.insert(
        "ratelimit",
        HeaderValue::from_static("\"default\";r=0;t=18446744073709551615"),
    );
    let before = SystemTime::now();
    c2.note_headers(&h);
    let until = c
        .paused_until()
        .expect("a spent window pauses the shared pace");
    let d = until.duration_since(before).unwrap();
    assert!(
        d <= MAX_RATE_WAIT + Duration::from_secs(1) && d + Duration::from_secs(1) >= MAX_RATE_WAIT,
        "{d:?}"
    );
    assert_eq!(*lock(&seen), vec![until], "the hook is told the pause once");
    // A shorter pause does not shorten it, nor call the hook again.
    h.insert("ratelimit", HeaderValue::from_static("\"default\";r=1;t=5"));
    c2.note_headers(&h);
    assert_eq!(c.paused_until(), Some(until));
    assert_eq!(lock(&seen).len(), 1);
    // Plenty left: no pause.
    assert_eq!(ratelimit_pause(3, u64::MAX), None);
    assert_eq!(ratelimit_pause(0, 0), Some(Duration::from_secs(1)));
    assert_eq!(ratelimit_pause(2, u64::MAX), Some(MAX_RATE_WAIT));
}

#[test]
fn a_persisted_pause_resumes_clamped_and_a_past_one_is_ignored() {
    let c = loopback_client();
    c.resume_pause(SystemTime::now() - Duration::from_secs(5));
    assert_eq!(c.paused_until(), None);
    // A wall clock far ahead (a corrupt file, a clock set back) waits MAX_RATE_WAIT at most.
    c.resume_pause(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 4));
    let d = c
        .paused_until()
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(d <= MAX_RATE_WAIT, "{d:?}");
    assert!(d + Duration::from_secs(2) >= MAX_RATE_WAIT, "{d:?}");
}

#[test]
fn backoff_grows_and_is_capped() {
    let p = RetryPolicy {
        attempts: 4,
        rate_limit_attempts: 4,
        base: Duration::from_millis(100),
        cap: Duration::from_millis(400),
    };
    for _ in 0..50 {
        let d1 = p.delay(1);
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
        let d5 = p.delay(5);
        assert!(d5 >= Duration::from_millis(200) && d5 <= Duration::from_millis(400));
    }
}

#[test]
fn plain_http_is_refused_unless_loopback() {
    let tok = SecretString::new("t0k3n-value".to_owned());
    let e = Client::new(
        ClientOptions::new(Url::parse("http://198.18.0.1/client/v4").unwrap()),
        &tok,
        Metrics::default(),
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("only https://"), "{msg}");
    assert!(!msg.contains("t0k3n-value"));
    let c = Client::new(
        ClientOptions::new(Url::parse("http://127.0.0.1:9/client/v4").unwrap()),
        &tok,
        Metrics::default(),
    )
    .unwrap();
    assert!(!format!("{c:?}").contains("t0k3n-value"));
    assert_eq!(
        c.url("/zones", &[("name", "a b".into())]).as_str(),
        "http://127.0.0.1:9/client/v4/zones?name=a+b"
    );
}
