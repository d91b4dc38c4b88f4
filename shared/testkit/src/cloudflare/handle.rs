//! Request handling: read the request, validate it against the OpenAPI description, apply
//! faults, Cloudflare's rate limit and authentication, perform it, log it and answer.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::records::{envelope_err, envelope_ok, operate};
use super::{BASE_PATH, Fault, Inner, Logged, RATE_LIMIT, RATE_WINDOW, Schema};
use crate::serve::lock;

type Resp = Response<Full<Bytes>>;

/// A request as read, with the violations found while reading it.
struct Received {
    at: Instant,
    method: Method,
    /// The path as sent.
    full_path: String,
    /// The path below [`BASE_PATH`].
    path: String,
    query: Vec<(String, String)>,
    authorization: Option<String>,
    body: Option<Value>,
    violations: Vec<String>,
}

/// An operation of the OpenAPI description a request routes to.
struct Routed<'s> {
    template: &'static str,
    params: Vec<(&'static str, String)>,
    op: &'s Value,
}

/// What the server answers with.
enum Body {
    Json(Value),
    /// Not JSON ([`Fault::MalformedJson`]).
    Raw(&'static str),
}

pub(super) async fn handle(
    st: Arc<Mutex<Inner>>,
    schema: Arc<Schema>,
    req: Request<Incoming>,
) -> Resp {
    let mut r = read_request(req).await;
    // `GET /ips`: the proxy's ranges, no token, outside the DNS API's description.
    if r.method == Method::GET && r.path == "/ips" {
        return serve_ips(&st);
    }
    if !r.full_path.starts_with(BASE_PATH) {
        r.violations
            .push(format!("path {} is not under {BASE_PATH}", r.full_path));
    }

    // Pick a fault, Cloudflare's own rate limit, then authenticate.
    let fault = take_fault(&st, &r.method);
    if let Some(Fault::Slow(d)) = &fault {
        tokio::time::sleep(*d).await;
    }

    let mut g = lock(&st);
    let (remaining, reset) = count_in_window(&mut g);
    let authorized = r.authorization.as_deref() == Some(&format!("Bearer {}", g.token));

    let routed = route(&r.path).and_then(|(template, params)| {
        schema.operation(&r.method, template).map(|op| Routed {
            template,
            params,
            op,
        })
    });
    match &routed {
        None => r.violations.push(format!(
            "{} {} is not an operation of the OpenAPI description",
            r.method, r.path
        )),
        Some(o) => {
            let found = check_request(&schema, &g, &r, o);
            r.violations.extend(found);
        }
    }

    let (status, out, response_violations) = match fault.as_ref().and_then(fault_answer) {
        Some((status, out)) => (status, out, Vec::new()),
        None if remaining == 0 => (
            StatusCode::TOO_MANY_REQUESTS,
            Body::Json(envelope_err(
                10100,
                "More than 1200 requests per 300 seconds reached. Please wait and consider throttling your request speed",
            )),
            Vec::new(),
        ),
        None if !authorized => (
            StatusCode::FORBIDDEN,
            Body::Json(envelope_err(10000, "Authentication error")),
            Vec::new(),
        ),
        None => perform(&mut g, &schema, &r, routed.as_ref()),
    };
    g.log.push(Logged {
        method: r.method,
        path: r.path,
        query: r.query,
        body: r.body,
        authorization: r.authorization,
        status: status.as_u16(),
        fault: fault.clone(),
        violations: r.violations,
        response_violations,
        at: r.at,
    });
    drop(g);
    respond(status, out, fault.as_ref(), remaining, reset)
}

/// Reads method, path, query, `Authorization` and the JSON body; a body that is not JSON,
/// or not sent as `application/json`, is a violation.
async fn read_request(req: Request<Incoming>) -> Received {
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
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header(hyper::header::AUTHORIZATION);
    let content_type = header(hyper::header::CONTENT_TYPE);
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
    Received {
        at,
        method,
        full_path,
        path,
        query,
        authorization,
        body,
        violations,
    }
}

/// Answers `GET /ips` (not logged, no token needed).
fn serve_ips(st: &Mutex<Inner>) -> Resp {
    let mut g = lock(st);
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
    resp
}

/// The first injected fault that applies to `method`, counted down (and forgotten when
/// used up).
fn take_fault(st: &Mutex<Inner>, method: &Method) -> Option<Fault> {
    let mut g = lock(st);
    let idx = g
        .faults
        .iter()
        .position(|f| f.remaining > 0 && f.method.as_ref().is_none_or(|m| m == method));
    idx.map(|i| {
        let f = &mut g.faults[i];
        f.remaining -= 1;
        let fault = f.fault.clone();
        if f.remaining == 0 {
            g.faults.remove(i);
        }
        fault
    })
}

/// Counts this request in the 5-minute window; returns the requests left and the seconds
/// until the window resets.
fn count_in_window(g: &mut Inner) -> (u64, u64) {
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
    (RATE_LIMIT.saturating_sub(used), reset)
}

/// Matches a path below the base to an OpenAPI template and its parameters.
fn route(path: &str) -> Option<(&'static str, Vec<(&'static str, String)>)> {
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
    Some((t, params))
}

/// The violations of a routed request: its query, path parameters and body.
fn check_request(schema: &Schema, g: &Inner, r: &Received, o: &Routed) -> Vec<String> {
    let mut violations = schema.check_query(o.op, &r.query);
    for (k, v) in &o.params {
        violations.extend(schema.check_path_param(o.op, k, v));
    }
    match (schema.body_schema(o.op), &r.body) {
        (Some(_), None) if r.method != Method::DELETE => {
            violations.push("the operation requires a JSON body".into())
        }
        (Some(s), Some(b)) if r.method == Method::PATCH => {
            violations.extend(check_patch(schema, g, s, b, &o.params));
        }
        (Some(s), Some(b)) => violations.extend(schema.check(s, b, true)),
        (None, Some(_)) => violations.push("the operation takes no body".into()),
        _ => {}
    }
    violations
}

/// A PATCH means "these fields change": the patched record must be valid.
fn check_patch(
    schema: &Schema,
    g: &Inner,
    s: &Value,
    b: &Value,
    params: &[(&'static str, String)],
) -> Vec<String> {
    if !b.is_object() || b.as_object().is_some_and(Map::is_empty) {
        return vec!["a PATCH body must be a non-empty JSON object".into()];
    }
    let id = params
        .iter()
        .find(|(k, _)| *k == "dns_record_id")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let Some(rec) = g.records.get(&id) else {
        return Vec::new();
    };
    let mut merged = writable(rec);
    for (k, v) in b.as_object().into_iter().flatten() {
        merged[k.as_str()] = v.clone();
    }
    schema
        .check(s, &merged, true)
        .into_iter()
        .map(|e| format!("record after PATCH: {e}"))
        .collect()
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

/// The answer of a fault that replaces the operation; `None` for the faults that let it
/// happen ([`Fault::Slow`], [`Fault::RatelimitHeader`]).
fn fault_answer(fault: &Fault) -> Option<(StatusCode, Body)> {
    match fault {
        Fault::RateLimited { .. } => Some((
            StatusCode::TOO_MANY_REQUESTS,
            Body::Json(envelope_err(
                971,
                "Please wait and consider throttling your request speed",
            )),
        )),
        Fault::ServerError => Some((
            StatusCode::INTERNAL_SERVER_ERROR,
            Body::Json(envelope_err(10001, "Internal server error")),
        )),
        Fault::MalformedJson => Some((
            StatusCode::OK,
            Body::Raw("{\"success\":true,\"errors\":[],\"result\":{\"id\":"),
        )),
        Fault::ApiError {
            status,
            code,
            message,
        } => Some((
            StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
            Body::Json(envelope_err(*code, message)),
        )),
        Fault::Slow(_) | Fault::RatelimitHeader { .. } => None,
    }
}

/// Performs a routed operation and checks the server's own `200` answer against the
/// description; an unrouted request is answered 404.
fn perform(
    g: &mut Inner,
    schema: &Schema,
    r: &Received,
    routed: Option<&Routed>,
) -> (StatusCode, Body, Vec<String>) {
    let Some(o) = routed else {
        return (
            StatusCode::NOT_FOUND,
            Body::Json(envelope_err(7003, "No route for that URI")),
            Vec::new(),
        );
    };
    let (s, v) = operate(
        g,
        &r.method,
        o.template,
        &o.params,
        &r.query,
        r.body.as_ref(),
    );
    let mut response_violations = Vec::new();
    if s == StatusCode::OK
        && let Some(rs) = schema.ok_schema(o.op)
    {
        response_violations = schema.check(rs, &v, false);
    }
    (s, Body::Json(v), response_violations)
}

/// The HTTP response with Cloudflare's `Ratelimit` headers (or the injected ones) and
/// `Retry-After` on a 429.
fn respond(
    status: StatusCode,
    out: Body,
    fault: Option<&Fault>,
    remaining: u64,
    reset: u64,
) -> Resp {
    let text = match out {
        Body::Json(v) => v.to_string(),
        Body::Raw(r) => r.to_owned(),
    };
    let (remaining, reset) = match fault {
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
    if let Some(Fault::RateLimited { retry_after }) = fault {
        resp = resp.header("retry-after", retry_after.to_string());
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        resp = resp.header("retry-after", reset.max(1).to_string());
    }
    resp.body(Full::new(Bytes::from(text)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}
