//! The OpenAPI document prepared for validation: `$ref`s resolved against `components`,
//! `readOnly` and `id` not required in requests, `nullable` made JSON Schema.

use hyper::Method;
use serde_json::{Map, Value, json};

use super::OPENAPI;

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
