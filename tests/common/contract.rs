//! Every API response a test receives is checked against the OpenAPI document.
//!
//! The concrete URL is matched to the document's path template (a literal segment beats a
//! parameter, as in the router), then the operation must document the response's status; its
//! JSON body must validate against that response's schema (JSON Schema draft 2020-12, the
//! dialect of OpenAPI 3.1, with `uuid` and `date-time` formats checked); and every header the
//! response documents must be present and match its schema. A URL that matches no template
//! must be a 404, and a method a path does not offer a 405, both in the error envelope.
//!
//! One deliberate strictness over the document: objects may carry no property the document
//! does not name (the test adds `additionalProperties: false` to each object schema), so a
//! field that leaks into a response without being documented fails the test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The base path of the API; responses outside it (console, health) are not the contract's.
const API_BASE: &str = "/api/v1";

struct Contract {
    doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| Contract {
        doc: releasedesk_api::openapi_document(),
        validators: Mutex::new(HashMap::new()),
    })
}

/// The document as the tests check against it.
pub fn document() -> &'static Value {
    &contract().doc
}

/// Panics (failing the test) when the response is not what the document describes.
pub fn check(
    method: &Method,
    url: &reqwest::Url,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
) {
    let Some(rest) = url.path().strip_prefix(API_BASE) else {
        return;
    };
    if rest == "/openapi.json" {
        // The document itself; a standard validator checks it (`openapi_document_*` tests).
        return;
    }
    let what = format!("{method} {}", url.path());
    let c = contract();
    let Some(template) = match_template(&c.doc["paths"], rest) else {
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{what}: no such path in the document"
        );
        check_error_envelope(&what, headers, body);
        return;
    };
    let pointer = format!(
        "/paths/{}/{}",
        escape(&template),
        method.as_str().to_ascii_lowercase()
    );
    if c.doc.pointer(&pointer).is_none() {
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{what}: the document has no {method} on {template}"
        );
        check_error_envelope(&what, headers, body);
        return;
    }
    let response_pointer = format!("{pointer}/responses/{}", status.as_u16());
    let Some(response) = resolve(&c.doc, &response_pointer) else {
        panic!(
            "{what} answered {status}, which the document does not list for {} {template}: {body}",
            method
        );
    };
    let (response_pointer, response) = response;
    for (name, header) in response["headers"].as_object().into_iter().flatten() {
        let header_pointer = match header.get("$ref").and_then(Value::as_str) {
            Some(r) => r.trim_start_matches('#').to_owned(),
            None => format!("{response_pointer}/headers/{}", escape(name)),
        };
        let required = c.doc.pointer(&header_pointer).expect("header")["required"] == true;
        let Some(value) = headers.get(name.as_str()) else {
            assert!(
                !required,
                "{what} {status}: required header {name} is missing"
            );
            continue;
        };
        let value = value
            .to_str()
            .unwrap_or_else(|_| panic!("{what} {status}: header {name} is not text"));
        let schema_pointer = format!("{header_pointer}/schema");
        let schema = c.doc.pointer(&schema_pointer).expect("header schema");
        let instance = if schema["type"] == "integer" {
            value
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(value.to_owned()))
        } else {
            Value::String(value.to_owned())
        };
        validate(&what, &schema_pointer, &instance);
    }
    match response["content"].as_object() {
        Some(content) => {
            let (media, _) = content.iter().next().expect("a media type");
            let content_type = headers
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert!(
                content_type.starts_with(media.as_str()),
                "{what} {status}: content type {content_type:?}, documented {media}"
            );
            let instance: Value = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{what} {status}: body is not JSON ({e}): {body:?}"));
            let schema_pointer = format!("{response_pointer}/content/{}/schema", escape(media));
            validate(&what, &schema_pointer, &instance);
        }
        None => assert!(
            body.is_empty(),
            "{what} {status}: undocumented body {body:?}"
        ),
    }
}

fn check_error_envelope(what: &str, headers: &HeaderMap, body: &str) {
    assert!(
        headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json")),
        "{what}: not JSON"
    );
    let instance: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {body:?}"));
    validate(what, "/components/schemas/Error", &instance);
}

/// The template in `paths` that `rest` (the path after the base) matches; literal segments
/// win over parameters.
fn match_template(paths: &Value, rest: &str) -> Option<String> {
    let segments: Vec<&str> = rest.split('/').collect();
    paths
        .as_object()?
        .keys()
        .filter_map(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            if parts.len() != segments.len() {
                return None;
            }
            let mut literal = 0;
            for (part, segment) in parts.iter().zip(&segments) {
                if part.starts_with('{') && part.ends_with('}') {
                    if segment.is_empty() {
                        return None;
                    }
                } else if part == segment {
                    literal += 1;
                } else {
                    return None;
                }
            }
            Some((literal, template.clone()))
        })
        .max_by_key(|(literal, _)| *literal)
        .map(|(_, template)| template)
}

/// The object at `pointer`, following one `$ref` (shared responses); with its own pointer.
fn resolve<'d>(doc: &'d Value, pointer: &str) -> Option<(String, &'d Value)> {
    let value = doc.pointer(pointer)?;
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = r.trim_start_matches('#').to_owned();
            let resolved = doc.pointer(&target)?;
            Some((target, resolved))
        }
        None => Some((pointer.to_owned(), value)),
    }
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn validate(what: &str, schema_pointer: &str, instance: &Value) {
    let validator = validator(schema_pointer);
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: the response does not match the document ({schema_pointer}):\n  {}\nbody: {instance}",
        errors.join("\n  ")
    );
}

/// A validator for the schema at `pointer`, with `#/components/schemas/…` resolvable: the
/// document's components are embedded in the root the schema is compiled from.
fn validator(pointer: &str) -> Arc<jsonschema::Validator> {
    let c = contract();
    if let Some(v) = c.validators.lock().unwrap().get(pointer) {
        return v.clone();
    }
    let schema = c
        .doc
        .pointer(pointer)
        .unwrap_or_else(|| panic!("no schema at {pointer}"))
        .clone();
    let mut components = c.doc["components"].clone();
    close_objects(&mut components);
    let mut target = schema;
    close_objects(&mut target);
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": components,
        "allOf": [target],
    });
    let compiled = Arc::new(
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("the schema at {pointer} does not compile: {e}")),
    );
    c.validators
        .lock()
        .unwrap()
        .insert(pointer.to_owned(), compiled.clone());
    compiled
}

/// Adds `additionalProperties: false` to every object schema that names its properties and
/// says nothing of others.
fn close_objects(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for value in map.values_mut() {
                close_objects(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_segments_win_over_parameters() {
        let paths = json!({
            "/phone-numbers/release-requests": {},
            "/phone-numbers/{phone_number_id}": {},
            "/phone-numbers/{phone_number_id}/request-release": {},
        });
        assert_eq!(
            match_template(&paths, "/phone-numbers/release-requests").as_deref(),
            Some("/phone-numbers/release-requests")
        );
        assert_eq!(
            match_template(&paths, "/phone-numbers/%ff").as_deref(),
            Some("/phone-numbers/{phone_number_id}")
        );
        assert_eq!(match_template(&paths, "/"), None);
        assert_eq!(match_template(&paths, ""), None);
        assert_eq!(match_template(&paths, "/phone-numbers/"), None);
    }

    fn url(path: &str) -> reqwest::Url {
        reqwest::Url::parse(&format!("http://127.0.0.1:9{path}")).unwrap()
    }

    fn headers(request_id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("x-request-id", request_id.parse().unwrap());
        h
    }

    const ONE: &str = "/api/v1/phone-numbers/release-requests/0193a0b2-7c4e-7d2a-9f1e-2b3c4d5e6f70";

    fn request(extra: &str) -> String {
        format!(
            r#"{{"success":true,"data":{{"id":"0193a0b2-7c4e-7d2a-9f1e-2b3c4d5e6f70","phone_number_id":"0193a0b2-0000-7000-8000-000000000001","phone_number":"+15551234567","reason":"We no longer need this number.","status":"pending","requested_at":"2024-01-15T12:00:00Z"{extra}}}}}"#
        )
    }

    #[test]
    fn a_documented_response_passes() {
        check(
            &Method::GET,
            &url(ONE),
            StatusCode::OK,
            &headers("abc"),
            &request(""),
        );
    }

    #[test]
    #[should_panic(expected = "does not list")]
    fn an_undocumented_status_fails() {
        let body = r#"{"success":false,"message":"x","code":"RELEASE_ALREADY_PENDING"}"#;
        check(
            &Method::GET,
            &url(ONE),
            StatusCode::CONFLICT,
            &headers("abc"),
            body,
        );
    }

    #[test]
    #[should_panic(expected = "does not match the document")]
    fn an_undocumented_field_fails() {
        let body = request(r#","environment_id":"0193a0b2-0000-7000-8000-000000000002""#);
        check(
            &Method::GET,
            &url(ONE),
            StatusCode::OK,
            &headers("abc"),
            &body,
        );
    }

    #[test]
    #[should_panic(expected = "does not match the document")]
    fn a_time_that_is_not_a_date_time_fails() {
        let body = request("").replace("2024-01-15T12:00:00Z", "15/01/2024 12:00");
        check(
            &Method::GET,
            &url(ONE),
            StatusCode::OK,
            &headers("abc"),
            &body,
        );
    }

    #[test]
    #[should_panic(expected = "does not match the document")]
    fn a_null_optional_field_fails() {
        let body = request(r#","resolved_at":null"#);
        check(
            &Method::GET,
            &url(ONE),
            StatusCode::OK,
            &headers("abc"),
            &body,
        );
    }

    #[test]
    #[should_panic(expected = "does not match the document")]
    fn a_request_id_the_server_should_have_replaced_fails() {
        check(
            &Method::GET,
            &url(ONE),
            StatusCode::OK,
            &headers("has space"),
            &request(""),
        );
    }

    #[test]
    #[should_panic(expected = "no such path")]
    fn an_unknown_path_must_be_a_404() {
        let body = r#"{"success":true,"data":[]}"#;
        check(
            &Method::GET,
            &url("/api/v1/"),
            StatusCode::OK,
            &headers("abc"),
            body,
        );
    }
}
