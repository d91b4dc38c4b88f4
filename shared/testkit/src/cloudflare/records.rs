//! The test server's zones and records and the DNS API operations performed on them, with
//! Cloudflare's answer envelope and pagination.

use hyper::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::{Inner, hex_id, now_rfc3339};

/// An operation's answer: the HTTP status and the JSON envelope.
type Answer = (StatusCode, Value);

pub(super) fn zone_name(g: &Inner, zone_id: &str) -> String {
    g.zones
        .iter()
        .find(|z| z["id"] == zone_id)
        .and_then(|z| z["name"].as_str())
        .unwrap_or("")
        .to_owned()
}

pub(super) fn make_record(g: &mut Inner, zone_id: &str, zone_name: &str, f: &Value) -> String {
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

pub(super) fn envelope_ok(result: Value, info: Option<Value>) -> Value {
    let mut v = json!({"success": true, "errors": [], "messages": [], "result": result});
    if let Some(i) = info {
        v["result_info"] = i;
    }
    v
}

pub(super) fn envelope_err(code: u32, message: &str) -> Value {
    json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})
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

fn invalid_body() -> Answer {
    (
        StatusCode::BAD_REQUEST,
        envelope_err(9207, "Request body is invalid."),
    )
}

/// Performs an operation on the state; returns status and body.
pub(super) fn operate(
    g: &mut Inner,
    method: &Method,
    template: &str,
    params: &[(&'static str, String)],
    query: &[(String, String)],
    body: Option<&Value>,
) -> Answer {
    let p = |k: &str| {
        params
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    match (method.clone(), template) {
        (Method::GET, "/user/tokens/verify") => (
            StatusCode::OK,
            envelope_ok(json!({"id": hex_id(1, 0x70c), "status": "active"}), None),
        ),
        (Method::GET, "/zones") => list_zones(g, query),
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
                return list_records(g, &zone, query);
            }
            // POST: create.
            create_record(g, &zone, body)
        }
        (m, "/zones/{zone_id}/dns_records/{dns_record_id}") => {
            record_operation(g, &m, &p("zone_id"), p("dns_record_id"), body)
        }
        _ => (
            StatusCode::NOT_FOUND,
            envelope_err(7003, "No route for that URI"),
        ),
    }
}

/// `GET /zones`, filtered by `name` and `status`.
fn list_zones(g: &Inner, query: &[(String, String)]) -> Answer {
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

/// `GET /zones/{zone_id}/dns_records`, filtered by `name`, `type`, `content` and comment.
fn list_records(g: &Inner, zone: &str, query: &[(String, String)]) -> Answer {
    let comment = query_get(query, "comment.exact").or(query_get(query, "comment"));
    let recs: Vec<Value> = g
        .records
        .values()
        .filter(|r| {
            r["zone_id"] == zone
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
    (StatusCode::OK, envelope_ok(json!(page), Some(info)))
}

/// `POST /zones/{zone_id}/dns_records`: refused beside a CNAME of that name or an identical
/// record, as Cloudflare does.
fn create_record(g: &mut Inner, zone: &str, body: Option<&Value>) -> Answer {
    let Some(b) = body else {
        return invalid_body();
    };
    let name = b["name"].as_str().unwrap_or("").to_ascii_lowercase();
    let same_name: Vec<&Value> = g
        .records
        .values()
        .filter(|r| {
            r["zone_id"] == zone
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
    let zname = zone_name(g, zone);
    let id = make_record(g, zone, &zname, b);
    (StatusCode::OK, envelope_ok(g.records[&id].clone(), None))
}

/// GET, DELETE, PATCH or PUT of one record of a zone.
fn record_operation(
    g: &mut Inner,
    m: &Method,
    zone: &str,
    id: String,
    body: Option<&Value>,
) -> Answer {
    let Some(rec) = g.records.get(&id).filter(|r| r["zone_id"] == zone).cloned() else {
        return (
            StatusCode::NOT_FOUND,
            envelope_err(1001, "DNS record not found"),
        );
    };
    match *m {
        Method::GET => (StatusCode::OK, envelope_ok(rec, None)),
        Method::DELETE => {
            g.records.remove(&id);
            (StatusCode::OK, envelope_ok(json!({"id": id}), None))
        }
        Method::PATCH | Method::PUT => {
            let Some(Value::Object(b)) = body else {
                return invalid_body();
            };
            let new = updated(rec, m, b);
            g.records.insert(id, new.clone());
            (StatusCode::OK, envelope_ok(new, None))
        }
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            envelope_err(10000, "method not allowed"),
        ),
    }
}

/// The record after a PATCH (the fields sent change) or a PUT (what is not sent goes back
/// to its default).
fn updated(rec: Value, m: &Method, b: &Map<String, Value>) -> Value {
    let mut new = if *m == Method::PUT {
        // PUT overwrites: what is not sent goes back to its default.
        let mut r = rec;
        r["comment"] = Value::Null;
        r["tags"] = json!([]);
        r["proxied"] = json!(false);
        r["ttl"] = json!(1);
        r
    } else {
        rec
    };
    for (k, v) in b {
        new[k.as_str()] = v.clone();
    }
    if new["proxied"] == json!(true) {
        new["ttl"] = json!(1);
    }
    new["modified_on"] = json!(now_rfc3339());
    drop_nulls(new)
}
