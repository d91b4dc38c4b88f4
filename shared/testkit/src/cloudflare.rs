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
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};

/// Cloudflare's OpenAPI subset, unmodified (sha256 98b43fae…4431).
pub const OPENAPI: &str = include_str!("../fixtures/cloudflare-openapi-dns.json");

/// The base path of the API (`https://api.cloudflare.com/client/v4`).
pub const BASE_PATH: &str = "/client/v4";

/// Cloudflare's limit: 1,200 requests per 5 minutes per token.
const RATE_LIMIT: u64 = 1200;
const RATE_WINDOW: Duration = Duration::from_secs(300);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------------------

/// The OpenAPI document prepared for validation.
#[derive(Debug)]
pub struct Schema {
    doc: Value,
    /// `components` as written (response context).
    response_components: Value,
    /// `components` with readOnly properties and `id` dropped from `required` (request context).
    request_components: Value,
}

fn read_only_names(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(props)) = m.get("properties") {
                for (k, p) in props {
                    if p.get("readOnly") == Some(&Value::Bool(true)) && !out.contains(k) {
                        out.push(k.clone());
                    }
                }
            }
            for x in m.values() {
                read_only_names(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| read_only_names(x, out)),
        _ => {}
    }
}

fn strip_required(v: &mut Value, names: &[String]) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Array(req)) = m.get_mut("required") {
                req.retain(|r| r.as_str().is_none_or(|s| !names.iter().any(|n| n == s)));
            }
            for x in m.values_mut() {
                strip_required(x, names);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| strip_required(x, names)),
        _ => {}
    }
}

/// OpenAPI 3.0's `nullable: true` is not JSON Schema: turn `type: T` into `type: [T, "null"]`.
fn nullable_to_json_schema(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(t)) = m.get("type").cloned()
            {
                m.insert("type".into(), json!([t, "null"]));
            }
            m.values_mut().for_each(nullable_to_json_schema);
        }
        Value::Array(a) => a.iter_mut().for_each(nullable_to_json_schema),
        _ => {}
    }
}

impl Schema {
    /// Parses the embedded document.
    pub fn load() -> Schema {
        let mut doc: Value =
            serde_json::from_str(OPENAPI).expect("the OpenAPI fixture is valid JSON");
        nullable_to_json_schema(&mut doc);
        let response_components = doc["components"].clone();
        let mut names = Vec::new();
        read_only_names(&doc["components"], &mut names);
        // The record `id` is assigned by the server but not marked readOnly in this version.
        names.push("id".to_owned());
        let mut request_components = doc["components"].clone();
        strip_required(&mut request_components, &names);
        Schema {
            doc,
            response_components,
            request_components,
        }
    }

    /// Validates `instance` against `schema` (which may `$ref` `#/components/...`); returns
    /// the violations.
    pub fn check(&self, schema: &Value, instance: &Value, request: bool) -> Vec<String> {
        // $refs are `#/components/schemas/...`: putting `components` at the root of the
        // validated document makes every one of them resolve.
        let mut root = Map::new();
        root.insert("allOf".into(), json!([schema]));
        root.insert(
            "components".into(),
            if request {
                self.request_components.clone()
            } else {
                self.response_components.clone()
            },
        );
        let v = match jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(true)
            .build(&Value::Object(root))
        {
            Ok(v) => v,
            Err(e) => return vec![format!("schema does not compile: {e}")],
        };
        v.iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    /// The operation object of `method path-template`.
    pub fn operation(&self, method: &Method, template: &str) -> Option<&Value> {
        self.doc["paths"][template].get(method.as_str().to_ascii_lowercase())
    }

    fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let ptr = r.trim_start_matches('#');
                self.doc.pointer(ptr).unwrap_or(v)
            }
            None => v,
        }
    }

    /// Checks the query of a request against the operation's declared parameters.
    pub fn check_query(&self, op: &Value, query: &[(String, String)]) -> Vec<String> {
        let mut out = Vec::new();
        let params: Vec<&Value> = op["parameters"]
            .as_array()
            .map(|a| a.iter().map(|p| self.resolve(p)).collect())
            .unwrap_or_default();
        for (k, v) in query {
            let Some(p) = params
                .iter()
                .find(|p| p["in"] == "query" && p["name"] == k.as_str())
            else {
                out.push(format!(
                    "query parameter `{k}` is not declared by the operation"
                ));
                continue;
            };
            let schema = &p["schema"];
            let ty = self.resolve(schema)["type"].as_str().unwrap_or("string");
            let instance = match ty {
                "number" | "integer" => match v.parse::<f64>() {
                    Ok(n) => json!(n),
                    Err(_) => {
                        out.push(format!("query parameter `{k}={v}` is not a number"));
                        continue;
                    }
                },
                "boolean" => match v.as_str() {
                    "true" => json!(true),
                    "false" => json!(false),
                    _ => {
                        out.push(format!("query parameter `{k}={v}` is not a boolean"));
                        continue;
                    }
                },
                _ => json!(v),
            };
            for e in self.check(schema, &instance, true) {
                out.push(format!("query parameter `{k}`: {e}"));
            }
        }
        out
    }

    /// Checks a path parameter against its declared schema.
    pub fn check_path_param(&self, op: &Value, name: &str, value: &str) -> Vec<String> {
        let Some(p) = op["parameters"].as_array().and_then(|a| {
            a.iter()
                .map(|p| self.resolve(p))
                .find(|p| p["in"] == "path" && p["name"] == name)
        }) else {
            return vec![format!("path parameter `{name}` is not declared")];
        };
        self.check(&p["schema"], &json!(value), true)
            .into_iter()
            .map(|e| format!("path parameter `{name}`: {e}"))
            .collect()
    }

    /// The request body schema of an operation.
    pub fn body_schema<'a>(&'a self, op: &'a Value) -> Option<&'a Value> {
        op.pointer("/requestBody/content/application~1json/schema")
    }

    /// The 200 response schema of an operation.
    pub fn ok_schema<'a>(&'a self, op: &'a Value) -> Option<&'a Value> {
        op.pointer("/responses/200/content/application~1json/schema")
    }
}

// ---------------------------------------------------------------------------------------
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
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// A server certificate for some names, signed by a fresh test CA.
pub(crate) struct Tls {
    /// The CA's certificate (PEM), for the client to trust.
    pub(crate) ca_pem: String,
    /// Serves the certificate.
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
}

/// A fresh test CA and a server certificate for `names`, signed by it.
pub(crate) fn make_tls(names: &[String]) -> Tls {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "edge test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let params = CertificateParams::new(names.to_vec()).expect("server params");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let chain = vec![cert.der().clone()];
    let der_key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let cfg = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, der_key)
        .expect("server TLS config");
    Tls {
        ca_pem: ca_cert.pem(),
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(cfg)),
    }
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
        let std_listener = std::net::TcpListener::bind(opts.bind).unwrap_or_else(|e| {
            panic!(
                "cannot bind the Cloudflare test server to {}: {e}",
                opts.bind
            )
        });
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local addr");
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
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
        let acceptor = tls.map(|t| t.acceptor);
        let st = inner.clone();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                loop {
                    let (stream, _) = tokio::select! {
                        _ = &mut stop_rx => break,
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    };
                    let st = st.clone();
                    let schema = schema.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            let st = st.clone();
                            let schema = schema.clone();
                            async move { Ok::<_, Infallible>(handle(st, schema, req).await) }
                        });
                        match acceptor {
                            Some(acc) => {
                                if let Ok(tls) = acc.accept(stream).await {
                                    let _ = http1::Builder::new()
                                        .serve_connection(TokioIo::new(tls), svc)
                                        .await;
                                }
                            }
                            None => {
                                let _ = http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                            }
                        }
                    });
                }
            });
        });
        CfServer {
            addr,
            scheme: if ca_pem.is_some() { "https" } else { "http" },
            ca_pem,
            inner,
            stop: Some(stop_tx),
            thread: Some(thread),
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

    /// Adds an active zone and returns its id.
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

impl Drop for CfServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn zone_name(g: &Inner, zone_id: &str) -> String {
    g.zones
        .iter()
        .find(|z| z["id"] == zone_id)
        .and_then(|z| z["name"].as_str())
        .unwrap_or("")
        .to_owned()
}

fn make_record(g: &mut Inner, zone_id: &str, zone_name: &str, f: &Value) -> String {
    let n = g.next_id;
    g.next_id += 1;
    let id = hex_id(n, 0x7ec);
    let proxied = f["proxied"].as_bool().unwrap_or(false);
    let rec = json!({
        "id": id,
        "zone_id": zone_id,
        "zone_name": zone_name,
        "name": f["name"].as_str().unwrap_or("").to_ascii_lowercase(),
        "type": f["type"],
        "content": f["content"],
        "proxiable": true,
        "proxied": proxied,
        "ttl": if proxied { json!(1) } else { f.get("ttl").cloned().unwrap_or(json!(1)) },
        "locked": false,
        "comment": f.get("comment").cloned().unwrap_or(Value::Null),
        "tags": f.get("tags").cloned().unwrap_or(json!([])),
        "meta": {"auto_added": false, "source": "primary"},
        "created_on": now_rfc3339(),
        "modified_on": now_rfc3339(),
    });
    g.records.insert(id.clone(), drop_nulls(rec));
    id
}

/// Removes null members: this version of the schema declares none of them nullable.
fn drop_nulls(mut v: Value) -> Value {
    if let Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}

// ---------------------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------------------

type Resp = Response<Full<Bytes>>;

fn envelope_ok(result: Value, info: Option<Value>) -> Value {
    let mut v = json!({"success": true, "errors": [], "messages": [], "result": result});
    if let Some(i) = info {
        v["result_info"] = i;
    }
    v
}

fn envelope_err(code: u32, message: &str) -> Value {
    json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})
}

/// Matches a path below the base to an OpenAPI template and its parameters.
fn route(method: &Method, path: &str) -> Option<(&'static str, Vec<(&'static str, String)>)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (t, params): (&'static str, Vec<(&'static str, String)>) = match parts.as_slice() {
        ["zones"] => ("/zones", vec![]),
        ["user", "tokens", "verify"] => ("/user/tokens/verify", vec![]),
        ["zones", z, "dns_records"] => (
            "/zones/{zone_id}/dns_records",
            vec![("zone_id", (*z).to_owned())],
        ),
        ["zones", z, "dns_records", r] => (
            "/zones/{zone_id}/dns_records/{dns_record_id}",
            vec![
                ("zone_id", (*z).to_owned()),
                ("dns_record_id", (*r).to_owned()),
            ],
        ),
        _ => return None,
    };
    let _ = method;
    Some((t, params))
}

fn paginate(
    items: Vec<Value>,
    query: &[(String, String)],
    default_per_page: u64,
    max: Option<u64>,
) -> (Vec<Value>, Value) {
    let get = |k: &str| {
        query
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.parse::<f64>().ok())
    };
    let page = get("page").map_or(1, |p| p.max(1.0) as u64);
    let mut per_page = get("per_page").map_or(default_per_page, |p| p.max(1.0) as u64);
    if let Some(m) = max {
        per_page = per_page.min(m);
    }
    let total = items.len() as u64;
    let start = ((page - 1) * per_page) as usize;
    let slice: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(per_page as usize)
        .collect();
    let info =
        json!({"page": page, "per_page": per_page, "count": slice.len(), "total_count": total});
    (slice, info)
}

fn query_get<'a>(query: &'a [(String, String)], k: &str) -> Option<&'a str> {
    query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// Performs an operation on the state; returns status and body.
fn operate(
    g: &mut Inner,
    method: &Method,
    template: &str,
    params: &[(&'static str, String)],
    query: &[(String, String)],
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let p = |k: &str| {
        params
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let not_found = |what: &str| {
        (
            StatusCode::NOT_FOUND,
            envelope_err(1001, &format!("{what} not found")),
        )
    };
    match (method.clone(), template) {
        (Method::GET, "/user/tokens/verify") => (
            StatusCode::OK,
            envelope_ok(json!({"id": hex_id(1, 0x70c), "status": "active"}), None),
        ),
        (Method::GET, "/zones") => {
            let zones: Vec<Value> = g
                .zones
                .iter()
                .filter(|z| {
                    query_get(query, "name").is_none_or(|n| {
                        z["name"]
                            .as_str()
                            .is_some_and(|zn| zn.eq_ignore_ascii_case(n))
                    }) && query_get(query, "status").is_none_or(|s| z["status"] == s)
                })
                .cloned()
                .collect();
            let (page, info) = paginate(zones, query, 20, g.max_per_page);
            (StatusCode::OK, envelope_ok(json!(page), Some(info)))
        }
        (m, "/zones/{zone_id}/dns_records") => {
            let zone = p("zone_id");
            if !g.zones.iter().any(|z| z["id"] == zone.as_str()) {
                return (
                    StatusCode::NOT_FOUND,
                    envelope_err(
                        7003,
                        "Could not route to /zones/…/dns_records, perhaps your object identifier is invalid?",
                    ),
                );
            }
            if m == Method::GET {
                let comment = query_get(query, "comment.exact").or(query_get(query, "comment"));
                let recs: Vec<Value> = g
                    .records
                    .values()
                    .filter(|r| {
                        r["zone_id"] == zone.as_str()
                            && query_get(query, "name").is_none_or(|n| {
                                r["name"]
                                    .as_str()
                                    .is_some_and(|x| x.eq_ignore_ascii_case(n))
                            })
                            && query_get(query, "type").is_none_or(|t| r["type"] == t)
                            && query_get(query, "content").is_none_or(|c| r["content"] == c)
                            && comment.is_none_or(|c| {
                                r["comment"]
                                    .as_str()
                                    .is_some_and(|x| x.eq_ignore_ascii_case(c))
                            })
                    })
                    .cloned()
                    .collect();
                let (page, info) = paginate(recs, query, 100, g.max_per_page);
                return (StatusCode::OK, envelope_ok(json!(page), Some(info)));
            }
            // POST: create.
            let Some(b) = body else {
                return (
                    StatusCode::BAD_REQUEST,
                    envelope_err(9207, "Request body is invalid."),
                );
            };
            let name = b["name"].as_str().unwrap_or("").to_ascii_lowercase();
            let same_name: Vec<&Value> = g
                .records
                .values()
                .filter(|r| {
                    r["zone_id"] == zone.as_str()
                        && r["name"]
                            .as_str()
                            .is_some_and(|x| x.eq_ignore_ascii_case(&name))
                })
                .collect();
            if same_name.iter().any(|r| r["type"] == "CNAME") {
                return (
                    StatusCode::BAD_REQUEST,
                    envelope_err(81054, "A CNAME record with that host already exists."),
                );
            }
            if same_name
                .iter()
                .any(|r| r["type"] == b["type"] && r["content"] == b["content"])
            {
                return (
                    StatusCode::BAD_REQUEST,
                    envelope_err(81058, "An identical record already exists."),
                );
            }
            let zname = zone_name(g, &zone);
            let id = make_record(g, &zone, &zname, b);
            (StatusCode::OK, envelope_ok(g.records[&id].clone(), None))
        }
        (m, "/zones/{zone_id}/dns_records/{dns_record_id}") => {
            let (zone, id) = (p("zone_id"), p("dns_record_id"));
            let Some(rec) = g
                .records
                .get(&id)
                .filter(|r| r["zone_id"] == zone.as_str())
                .cloned()
            else {
                return not_found("DNS record");
            };
            match m {
                Method::GET => (StatusCode::OK, envelope_ok(rec, None)),
                Method::DELETE => {
                    g.records.remove(&id);
                    (StatusCode::OK, envelope_ok(json!({"id": id}), None))
                }
                Method::PATCH | Method::PUT => {
                    let Some(Value::Object(b)) = body else {
                        return (
                            StatusCode::BAD_REQUEST,
                            envelope_err(9207, "Request body is invalid."),
                        );
                    };
                    let mut new = if m == Method::PUT {
                        // PUT overwrites: what is not sent goes back to its default.
                        let mut r = rec.clone();
                        r["comment"] = Value::Null;
                        r["tags"] = json!([]);
                        r["proxied"] = json!(false);
                        r["ttl"] = json!(1);
                        r
                    } else {
                        rec.clone()
                    };
                    for (k, v) in b {
                        new[k.as_str()] = v.clone();
                    }
                    if new["proxied"] == json!(true) {
                        new["ttl"] = json!(1);
                    }
                    new["modified_on"] = json!(now_rfc3339());
                    let new = drop_nulls(new);
                    g.records.insert(id, new.clone());
                    (StatusCode::OK, envelope_ok(new, None))
                }
                _ => (
                    StatusCode::METHOD_NOT_ALLOWED,
                    envelope_err(10000, "method not allowed"),
                ),
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            envelope_err(7003, "No route for that URI"),
        ),
    }
}

/// The record fields a client may send (what the request schema describes).
fn writable(rec: &Value) -> Value {
    let mut out = Map::new();
    for k in [
        "type", "name", "content", "ttl", "proxied", "comment", "tags",
    ] {
        if let Some(v) = rec.get(k)
            && !v.is_null()
        {
            out.insert(k.to_owned(), v.clone());
        }
    }
    Value::Object(out)
}

async fn handle(st: Arc<Mutex<Inner>>, schema: Arc<Schema>, req: Request<Incoming>) -> Resp {
    let at = Instant::now();
    let method = req.method().clone();
    let full_path = req.uri().path().to_owned();
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let authorization = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let mut violations = Vec::new();
    let body: Option<Value> = if bytes.is_empty() {
        None
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => Some(v),
            Err(e) => {
                violations.push(format!("body is not JSON: {e}"));
                None
            }
        }
    };
    if body.is_some()
        && !content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"))
    {
        violations.push(format!(
            "body sent with content-type {content_type:?}, not application/json"
        ));
    }
    let path = full_path
        .strip_prefix(BASE_PATH)
        .unwrap_or(&full_path)
        .to_owned();
    // `GET /ips`: the proxy's ranges, no token, outside the DNS API's description.
    if method == Method::GET && path == "/ips" {
        let mut g = lock(&st);
        let (status, out) = match &g.ips {
            Some((v4, v6)) => (
                StatusCode::OK,
                envelope_ok(
                    json!({"ipv4_cidrs": v4, "ipv6_cidrs": v6, "etag": format!("{:x}", v4.len() * 131 + v6.len())}),
                    None,
                ),
            ),
            None => (StatusCode::NOT_FOUND, envelope_err(1000, "no list set")),
        };
        g.ips_served += 1;
        drop(g);
        let mut resp = Response::new(Full::new(Bytes::from(out.to_string())));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        return resp;
    }
    if !full_path.starts_with(BASE_PATH) {
        violations.push(format!("path {full_path} is not under {BASE_PATH}"));
    }

    // Pick a fault, Cloudflare's own rate limit, then authenticate.
    let fault = {
        let mut g = lock(&st);
        let idx = g
            .faults
            .iter()
            .position(|f| f.remaining > 0 && f.method.as_ref().is_none_or(|m| *m == method));
        idx.map(|i| {
            let f = &mut g.faults[i];
            f.remaining -= 1;
            let fault = f.fault.clone();
            if f.remaining == 0 {
                g.faults.remove(i);
            }
            fault
        })
    };
    if let Some(Fault::Slow(d)) = &fault {
        tokio::time::sleep(*d).await;
    }

    let mut g = lock(&st);
    let now = Instant::now();
    while g
        .window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= RATE_WINDOW)
    {
        g.window.pop_front();
    }
    g.window.push_back(now);
    let used = g.window.len() as u64;
    let reset = g.window.front().map_or(0, |t| {
        RATE_WINDOW.saturating_sub(now.duration_since(*t)).as_secs()
    });
    let remaining = RATE_LIMIT.saturating_sub(used);
    let authorized = authorization.as_deref() == Some(&format!("Bearer {}", g.token));

    let mut response_violations = Vec::new();
    let routed = route(&method, &path);
    let op = routed
        .as_ref()
        .and_then(|(t, _)| schema.operation(&method, t).map(|o| (*t, o)));
    if op.is_none() {
        violations.push(format!(
            "{method} {path} is not an operation of the OpenAPI description"
        ));
    }
    if let (Some((_, op)), Some((_, params))) = (op, &routed) {
        violations.extend(schema.check_query(op, &query));
        for (k, v) in params {
            violations.extend(schema.check_path_param(op, k, v));
        }
        match (schema.body_schema(op), &body) {
            (Some(_), None) if method != Method::DELETE => {
                violations.push("the operation requires a JSON body".into())
            }
            (Some(s), Some(b)) if method == Method::PATCH => {
                // A PATCH means "these fields change": the patched record must be valid.
                if !b.is_object() || b.as_object().is_some_and(Map::is_empty) {
                    violations.push("a PATCH body must be a non-empty JSON object".into());
                } else if let Some((_, params)) = &routed {
                    let id = params
                        .iter()
                        .find(|(k, _)| *k == "dns_record_id")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    if let Some(rec) = g.records.get(&id) {
                        let mut merged = writable(rec);
                        for (k, v) in b.as_object().into_iter().flatten() {
                            merged[k.as_str()] = v.clone();
                        }
                        violations.extend(
                            schema
                                .check(s, &merged, true)
                                .into_iter()
                                .map(|e| format!("record after PATCH: {e}")),
                        );
                    }
                }
            }
            (Some(s), Some(b)) => violations.extend(schema.check(s, b, true)),
            (None, Some(_)) => violations.push("the operation takes no body".into()),
            _ => {}
        }
    }

    let (status, out, raw): (StatusCode, Option<Value>, Option<&'static str>) = match &fault {
        Some(Fault::RateLimited { .. }) => (
            StatusCode::TOO_MANY_REQUESTS,
            Some(envelope_err(
                971,
                "Please wait and consider throttling your request speed",
            )),
            None,
        ),
        Some(Fault::ServerError) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(envelope_err(10001, "Internal server error")),
            None,
        ),
        Some(Fault::MalformedJson) => (
            StatusCode::OK,
            None,
            Some("{\"success\":true,\"errors\":[],\"result\":{\"id\":"),
        ),
        Some(Fault::ApiError {
            status,
            code,
            message,
        }) => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
            Some(envelope_err(*code, message)),
            None,
        ),
        _ if remaining == 0 => (
            StatusCode::TOO_MANY_REQUESTS,
            Some(envelope_err(
                10100,
                "More than 1200 requests per 300 seconds reached. Please wait and consider throttling your request speed",
            )),
            None,
        ),
        _ if !authorized => (
            StatusCode::FORBIDDEN,
            Some(envelope_err(10000, "Authentication error")),
            None,
        ),
        _ => match (&routed, &op) {
            (Some((t, params)), Some(_)) => {
                let (s, v) = operate(&mut g, &method, t, params, &query, body.as_ref());
                if s == StatusCode::OK
                    && let Some((_, o)) = op
                    && let Some(rs) = schema.ok_schema(o)
                {
                    response_violations = schema.check(rs, &v, false);
                }
                (s, Some(v), None)
            }
            _ => (
                StatusCode::NOT_FOUND,
                Some(envelope_err(7003, "No route for that URI")),
                None,
            ),
        },
    };
    g.log.push(Logged {
        method: method.clone(),
        path,
        query,
        body,
        authorization,
        status: status.as_u16(),
        fault: fault.clone(),
        violations,
        response_violations,
        at,
    });
    drop(g);
    let text = match (out, raw) {
        (Some(v), _) => v.to_string(),
        (None, Some(r)) => r.to_owned(),
        (None, None) => String::new(),
    };
    let (remaining, reset) = match &fault {
        Some(Fault::RatelimitHeader { remaining, reset }) => (*remaining, *reset),
        _ => (remaining, reset),
    };
    let mut resp = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("ratelimit", format!("\"default\";r={remaining};t={reset}"))
        .header(
            "ratelimit-policy",
            format!("\"default\";q={RATE_LIMIT};w={}", RATE_WINDOW.as_secs()),
        );
    if let Some(Fault::RateLimited { retry_after }) = &fault {
        resp = resp.header("retry-after", retry_after.to_string());
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        resp = resp.header("retry-after", reset.max(1).to_string());
    }
    resp.body(Full::new(Bytes::from(text)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

// ---------------------------------------------------------------------------------------
// Echo servers
// ---------------------------------------------------------------------------------------

/// What an [`EchoServer`] answers like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoKind {
    /// ipify: the address as plain text.
    Plain,
    /// `/cdn-cgi/trace`: `key=value` lines with `ip=`.
    Trace,
}

#[derive(Debug)]
struct EchoState {
    answer: Option<String>,
    warp: bool,
    hits: u64,
}

/// A public-IP echo server whose answer the test sets; stops on drop.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    kind: EchoKind,
    state: Arc<Mutex<EchoState>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EchoServer {
    /// Starts on `bind` (in the calling thread's namespace), answering `answer`.
    pub fn start(bind: SocketAddr, kind: EchoKind, answer: &str) -> EchoServer {
        let std_listener = std::net::TcpListener::bind(bind)
            .unwrap_or_else(|e| panic!("cannot bind the echo server to {bind}: {e}"));
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(EchoState {
            answer: Some(answer.to_owned()),
            warp: false,
            hits: 0,
        }));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
                loop {
                    let (stream, _) = tokio::select! {
                        _ = &mut stop_rx => break,
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    };
                    let st = st.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req: Request<Incoming>| {
                            let st = st.clone();
                            async move {
                                let host = req
                                    .headers()
                                    .get(hyper::header::HOST)
                                    .and_then(|h| h.to_str().ok())
                                    .map(|h| h.split(':').next().unwrap_or(h).to_owned())
                                    .unwrap_or_default();
                                let mut g = lock(&st);
                                g.hits += 1;
                                let resp = match (&g.answer, kind) {
                                    (None, _) => Response::builder()
                                        .status(StatusCode::SERVICE_UNAVAILABLE)
                                        .body(Full::new(Bytes::from_static(b"down"))),
                                    (Some(a), EchoKind::Plain) => Response::builder()
                                        .header("content-type", "text/plain")
                                        .body(Full::new(Bytes::from(a.clone()))),
                                    (Some(a), EchoKind::Trace) => Response::builder()
                                        .header("content-type", "text/plain")
                                        .body(Full::new(Bytes::from(format!(
                                            "fl=1f1\nh={host}\nip={a}\nts=1700000000.000\nvisit_scheme=https\nuag=edge\ncolo=FRA\nsliver=none\nhttp=http/1.1\nloc=DE\ntls=TLSv1.3\nsni=plaintext\nwarp={}\ngateway=off\nrbi=off\nkex=X25519\n",
                                            if g.warp { "on" } else { "off" }
                                        )))),
                                };
                                Ok::<_, Infallible>(resp.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
                            }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
        });
        EchoServer {
            addr,
            kind,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The URL to configure (`http://ADDR/` or `http://ADDR/cdn-cgi/trace`).
    pub fn url(&self) -> String {
        match self.kind {
            EchoKind::Plain => format!("http://{}/", self.addr),
            EchoKind::Trace => format!("http://{}/cdn-cgi/trace", self.addr),
        }
    }

    /// Changes the answer; `None` makes the server answer 503 ("down").
    pub fn set_answer(&self, answer: Option<&str>) {
        lock(&self.state).answer = answer.map(str::to_owned);
    }

    /// Makes a trace answer say `warp=on`.
    pub fn set_warp(&self, on: bool) {
        lock(&self.state).warp = on;
    }

    /// Requests served so far.
    pub fn hits(&self) -> u64 {
        lock(&self.state).hits
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
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
}
