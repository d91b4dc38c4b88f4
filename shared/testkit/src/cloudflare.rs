//! A Cloudflare API v4 test server and public-IP echo servers, for edge-ddns's tests, its
//! benchmark and the lab.
//!
//! [`CfServer`] serves the operations of Cloudflare's official OpenAPI description
//! (`fixtures/cloudflare-openapi-dns.json`, an unmodified copy of
//! `shared/cloudflare/openapi-dns.json`) and **validates every request against it**: the
//! operation must exist, every query parameter must be declared and match its schema, path
//! ids must match theirs, and bodies must match the request schema. Schema quirks handled
//! (see `shared/cloudflare/README.md`): the lower-case `4xx` response keys are accepted as
//! written; `$ref`s are resolved inside the document; in a request, `readOnly` properties and
//! the server-assigned `id` are not required (OpenAPI 3.0 request semantics); `nullable`
//! becomes a `"null"` type (OpenAPI 3.0 → JSON Schema); a PATCH body
//! is validated as what it means: the record after the patch must be a valid record.
//! Responses are validated too (against the `200` schema), so the server cannot drift from
//! Cloudflare's format unnoticed.
//!
//! Faults can be injected ([`Fault`]: 429 + `Retry-After`, a `Ratelimit` header of the
//! test's choosing, 500, slow answers, malformed JSON), pages can be made small, and every
//! request is logged ([`Logged`]) with the violations found. Plain HTTP (loopback tests) or
//! HTTPS with a fresh test CA (rcgen).
//!
//! [`EchoServer`] answers like ipify (plain text) or like `/cdn-cgi/trace`, with an answer the
//! test changes at will (or none: the source is "down").

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{Value, json};

use crate::serve::{Serving, bind, lock, make_tls, serve};

/// Cloudflare's OpenAPI subset, unmodified (sha256 98b43fae…4431).
pub const OPENAPI: &str = include_str!("../fixtures/cloudflare-openapi-dns.json");

/// The base path of the API (`https://api.cloudflare.com/client/v4`).
pub const BASE_PATH: &str = "/client/v4";

/// Cloudflare's limit: 1,200 requests per 5 minutes per token.
const RATE_LIMIT: u64 = 1200;
const RATE_WINDOW: Duration = Duration::from_secs(300);

mod echo;
mod handle;
mod records;
mod schema;
#[cfg(test)]
mod tests;

pub use echo::{EchoKind, EchoServer};
pub use schema::Schema;

use records::{make_record, zone_name};
// Server state
// ---------------------------------------------------------------------------------------

/// A fault the server injects instead of (or before) answering.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// HTTP 429 with `Retry-After: secs` (the operation is not performed).
    RateLimited {
        /// Seconds in `Retry-After`.
        retry_after: u64,
    },
    /// HTTP 500 with a failure envelope (the operation is not performed).
    ServerError,
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// HTTP 200 with a truncated JSON body (the operation is not performed).
    MalformedJson,
    /// Answers normally (the operation is performed) but with this `Ratelimit` header,
    /// `"default";r=<remaining>;t=<reset>`, instead of the server's own count.
    RatelimitHeader {
        /// `r=`: requests left in the window.
        remaining: u64,
        /// `t=`: seconds until the window resets.
        reset: u64,
    },
    /// HTTP `status` with `success: false` and one Cloudflare error (`code`, `message`) in
    /// the envelope, e.g. 400 / 81057 "The record already exists." (the operation is not
    /// performed).
    ApiError {
        /// HTTP status answered.
        status: u16,
        /// Cloudflare error code in `errors[]`.
        code: u32,
        /// Its message.
        message: String,
    },
}

#[derive(Debug)]
struct FaultRule {
    fault: Fault,
    remaining: usize,
    method: Option<Method>,
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Logged {
    /// HTTP method.
    pub method: Method,
    /// Path below the API base (`/zones/…/dns_records`).
    pub path: String,
    /// Decoded query pairs.
    pub query: Vec<(String, String)>,
    /// The parsed JSON body, if any.
    pub body: Option<Value>,
    /// The `Authorization` header as received.
    pub authorization: Option<String>,
    /// The status answered.
    pub status: u16,
    /// Fault injected, if any.
    pub fault: Option<Fault>,
    /// Schema violations found in the request.
    pub violations: Vec<String>,
    /// Schema violations found in the server's own answer.
    pub response_violations: Vec<String>,
    /// When it arrived.
    pub at: Instant,
}

impl Logged {
    /// True for POST, PUT, PATCH and DELETE.
    pub fn is_write(&self) -> bool {
        matches!(
            self.method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    }
}

#[derive(Debug)]
struct Inner {
    /// The answer of `GET /ips` (IPv4 and IPv6 prefixes), when set.
    ips: Option<(Vec<String>, Vec<String>)>,
    /// `GET /ips` requests answered.
    ips_served: u64,
    zones: Vec<Value>,
    records: BTreeMap<String, Value>,
    log: Vec<Logged>,
    faults: VecDeque<FaultRule>,
    max_per_page: Option<u64>,
    next_id: u64,
    window: VecDeque<Instant>,
    token: String,
}

fn hex_id(n: u64, salt: u64) -> String {
    format!("{:016x}{:016x}", salt, n)
}

fn now_rfc3339() -> String {
    // A fixed timestamp keeps the server deterministic; only the format matters.
    "2026-01-01T00:00:00.000000Z".to_owned()
}

/// Settings of a [`CfServer`].
#[derive(Debug, Clone)]
pub struct CfOptions {
    /// Where to listen.
    pub bind: SocketAddr,
    /// The only token accepted (`Authorization: Bearer <token>`).
    pub token: String,
    /// Serve HTTPS with a fresh test CA; the certificate names these hosts/IPs.
    pub tls_names: Option<Vec<String>>,
}

/// The Cloudflare API test server; stops on drop.
#[derive(Debug)]
pub struct CfServer {
    addr: SocketAddr,
    scheme: &'static str,
    ca_pem: Option<String>,
    inner: Arc<Mutex<Inner>>,
    /// Stops and joins the server thread when dropped.
    _serving: Serving,
}

impl CfServer {
    /// Plain HTTP on `127.0.0.1:<free port>` accepting `token`.
    pub fn start_local(token: &str) -> CfServer {
        CfServer::start(CfOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: token.to_owned(),
            tls_names: None,
        })
    }

    /// Starts the server on its own thread (in the calling thread's network namespace).
    pub fn start(opts: CfOptions) -> CfServer {
        let tls = opts.tls_names.as_deref().map(make_tls);
        let (listener, addr) = bind(opts.bind, "the Cloudflare test server");
        let inner = Arc::new(Mutex::new(Inner {
            ips: None,
            ips_served: 0,
            zones: Vec::new(),
            records: BTreeMap::new(),
            log: Vec::new(),
            faults: VecDeque::new(),
            max_per_page: None,
            next_id: 1,
            window: VecDeque::new(),
            token: opts.token.clone(),
        }));
        let schema = Arc::new(Schema::load());
        let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
        let acceptor = tls.map(|t| t.acceptor);
        let st = inner.clone();
        let serving = serve(listener, acceptor, move |req| {
            handle::handle(st.clone(), schema.clone(), req)
        });
        CfServer {
            addr,
            scheme: if ca_pem.is_some() { "https" } else { "http" },
            ca_pem,
            inner,
            _serving: serving,
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API base URL (`http://127.0.0.1:PORT/client/v4`).
    pub fn url(&self) -> String {
        format!("{}://{}{BASE_PATH}", self.scheme, self.addr)
    }

    /// The test CA's certificate (PEM) when serving HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Sets what `GET /ips` answers (Cloudflare's list of its proxy ranges; it needs no
    /// token and is not part of the DNS API's OpenAPI description).
    pub fn set_ips(&self, v4: &[&str], v6: &[&str]) {
        lock(&self.inner).ips = Some((
            v4.iter().map(|s| (*s).to_owned()).collect(),
            v6.iter().map(|s| (*s).to_owned()).collect(),
        ));
    }

    /// How many `GET /ips` requests were answered.
    pub fn ips_served(&self) -> u64 {
        lock(&self.inner).ips_served
    }

    /// Adds an active zone and returns its id.
    pub fn add_zone(&self, name: &str) -> String {
        let mut g = lock(&self.inner);
        let n = g.next_id;
        g.next_id += 1;
        let id = hex_id(n, 0x2a);
        g.zones.push(json!({
            "id": id, "name": name, "status": "active", "paused": false, "type": "full",
            "account": {"id": hex_id(1, 0xacc), "name": "Test Account"},
            "development_mode": 0, "name_servers": ["ns1.example.net", "ns2.example.net"],
            "original_name_servers": [], "original_registrar": null, "original_dnshost": null,
            "created_on": now_rfc3339(), "modified_on": now_rfc3339(), "activated_on": now_rfc3339(),
            "meta": {"step": 4, "custom_certificate_quota": 0, "page_rule_quota": 3, "phishing_detected": false, "multiple_railguns_allowed": false},
            "owner": {"type": "user"},
            "permissions": ["#dns_records:edit"], "plan": {"id": "free", "name": "Free Website", "price": 0, "currency": "USD", "frequency": "", "is_subscribed": true, "can_subscribe": false, "legacy_id": "free", "legacy_discount": false, "externally_managed": false},
            "vanity_name_servers": []
        }));
        id
    }

    /// Adds a record directly (as if made in the dashboard); returns its id.
    pub fn add_record(&self, zone_id: &str, fields: Value) -> String {
        let mut g = lock(&self.inner);
        let zone_name = zone_name(&g, zone_id);
        make_record(&mut g, zone_id, &zone_name, &fields)
    }

    /// Every record, in id order.
    pub fn records(&self) -> Vec<Value> {
        lock(&self.inner).records.values().cloned().collect()
    }

    /// Every request received so far.
    pub fn log(&self) -> Vec<Logged> {
        lock(&self.inner).log.clone()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        lock(&self.inner).log.clear();
    }

    /// Injects `fault` into the next `times` requests (of `method`, when given).
    pub fn inject(&self, fault: Fault, times: usize, method: Option<Method>) {
        lock(&self.inner).faults.push_back(FaultRule {
            fault,
            remaining: times,
            method,
        });
    }

    /// Caps `per_page` (to exercise pagination with few records).
    pub fn set_max_per_page(&self, n: Option<u64>) {
        lock(&self.inner).max_per_page = n;
    }

    /// Every schema violation seen in requests (and in the server's own answers).
    pub fn violations(&self) -> Vec<String> {
        lock(&self.inner)
            .log
            .iter()
            .flat_map(|l| {
                let what = format!("{} {}", l.method, l.path);
                l.violations
                    .iter()
                    .map(move |v| format!("request {what}: {v}"))
                    .chain(
                        l.response_violations
                            .iter()
                            .map(move |v| format!("response to {} {}: {v}", l.method, l.path)),
                    )
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}
