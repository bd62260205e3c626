//! The OpenAPI 3.1 document: its frame (info, security, tags) and the responses every
//! operation shares, added here once so that no operation can forget one.
//!
//! Each operation's own statuses (its success, 400, 404, 409, 415, 422) are listed on the
//! handler; [`add_common_responses`] adds what any operation can answer: 401 (every operation
//! needs a token), 413 (a declared body over 16 KiB is refused on every route), 500 and 503,
//! plus the `X-Request-Id` header, which every response carries.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::{BEARER_CHALLENGE, ErrorBody};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "releasedesk API",
        description = "Request the release of phone numbers you no longer need; support reviews each request before the number is released.\n\nEvery error is `{\"success\": false, \"message\", \"code\"}` (validation errors add `errors`). An unknown endpoint is a 404 `NOT_FOUND` and a method an endpoint does not offer a 405 `METHOD_NOT_ALLOWED`, in the same envelope.",
        version = "1.0.0"
    ),
    servers((url = "/api/v1")),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody)),
    tags(
        (name = "Release requests", description = "Ask for a number to be released, follow and cancel the request."),
        (name = "Phone numbers", description = "The environment's numbers."),
        (name = "Agents", description = "The environment's agents and the numbers they hold."),
        (name = "Webhooks", description = "Endpoints that receive every change of the environment's release requests, signed (Standard Webhooks)."),
    )
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("talq_…")
                    .description(Some("An environment token: `Authorization: Bearer talq_…`"))
                    .build(),
            ),
        );
    }
}

const REQUEST_ID: &str = "X-Request-Id";

/// Adds 401, 413, 500 and 503 to every operation (as references to shared responses under
/// `components/responses`), and `X-Request-Id` to every response.
pub(crate) fn add_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    let common = common_responses();
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .headers
        .insert(REQUEST_ID.to_owned(), RefOr::T(request_id_header()));
    for (_, name, response) in &common {
        components
            .responses
            .insert((*name).to_owned(), RefOr::T(response.clone()));
    }
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            for response in responses.values_mut() {
                if let RefOr::T(response) = response {
                    with_request_id(response);
                }
            }
            for (status, name, _) in &common {
                responses.entry((*status).to_owned()).or_insert_with(|| {
                    RefOr::Ref(Ref::new(format!("#/components/responses/{name}")))
                });
            }
        }
    }
}

/// What any operation can answer: (status, name under `components/responses`, response).
fn common_responses() -> [(&'static str, &'static str, Response); 4] {
    let unauthorized = error_response(
        "`UNAUTHORIZED`: the token is missing, malformed, unknown or revoked (one message for all).",
    )
    .header(
        "WWW-Authenticate",
        HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .examples([BEARER_CHALLENGE]),
            ))
            .description(Some("The Bearer challenge (RFC 6750)."))
            .build(),
    );
    let too_large =
        error_response("`PAYLOAD_TOO_LARGE`: the body is over 16 KiB (declared or streamed).");
    let internal = error_response(
        "`INTERNAL_ERROR`: the message quotes the request id to give to support; the cause goes to the server's log only.",
    );
    let unavailable = error_response(
        "`STORAGE_UNAVAILABLE`: the database cannot take the request now (full disk, read-only file, failover). Try again after `Retry-After`.",
    )
    .header(
        "Retry-After",
        HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            ))
            .description(Some("Seconds to wait before trying again."))
            .build(),
    );
    [
        ("401", "Unauthorized", unauthorized),
        ("413", "PayloadTooLarge", too_large),
        ("500", "InternalError", internal),
        ("503", "StorageUnavailable", unavailable),
    ]
    .map(|(status, name, builder)| {
        let mut response = builder.build();
        with_request_id(&mut response);
        (status, name, response)
    })
}

/// The response headers the API always sends with their response, as JSON pointers into the
/// document.
const ALWAYS_SENT_HEADERS: [&str; 3] = [
    "/components/headers/X-Request-Id",
    "/components/responses/Unauthorized/headers/WWW-Authenticate",
    "/components/responses/StorageUnavailable/headers/Retry-After",
];

/// Marks [`ALWAYS_SENT_HEADERS`] `required: true` in the serialized document; every other
/// documented header (such as `Idempotent-Replayed`) is sent only sometimes.
pub(crate) fn mark_required_headers(doc: &mut serde_json::Value) {
    for pointer in ALWAYS_SENT_HEADERS {
        let header = doc
            .pointer_mut(pointer)
            .and_then(serde_json::Value::as_object_mut)
            .unwrap_or_else(|| panic!("the document has no header at {pointer}"));
        header.insert("required".into(), true.into());
    }
}

pub(crate) fn error_response(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ErrorBody::name())))
            .build(),
    )
}

fn with_request_id(response: &mut Response) {
    response
        .headers
        .entry(REQUEST_ID.to_owned())
        .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/headers/{REQUEST_ID}"))));
}

fn request_id_header() -> utoipa::openapi::Header {
    HeaderBuilder::new()
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z0-9._-]{1,128}$")),
        ))
        .description(Some(
            "The request's id: the caller's own `X-Request-Id` when it is 1–128 characters of `[A-Za-z0-9._-]`, otherwise one the server made. It is in every log line of the request.",
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use releasedesk_domain::{AgentStatus, Direction, PhoneNumberStatus, Reason, RequestStatus};
    use serde_json::{Value, json};

    use crate::ErrorCode;
    use crate::routes::{DEFAULT_LIMIT, MAX_LIMIT};

    fn doc() -> Value {
        crate::openapi_document()
    }

    #[test]
    fn only_the_headers_always_sent_are_required() {
        let doc = doc();
        let mut required = Vec::new();
        let mut walk = vec![("".to_owned(), &doc)];
        while let Some((at, v)) = walk.pop() {
            match v {
                Value::Object(map) => {
                    if map.get("required") == Some(&Value::Bool(true)) && at.contains("/headers/") {
                        required.push(at.clone());
                    }
                    walk.extend(map.iter().map(|(k, v)| (format!("{at}/{k}"), v)));
                }
                Value::Array(items) => {
                    walk.extend(
                        items
                            .iter()
                            .enumerate()
                            .map(|(i, v)| (format!("{at}/{i}"), v)),
                    );
                }
                _ => {}
            }
        }
        required.sort();
        let mut expected = super::ALWAYS_SENT_HEADERS.to_vec();
        expected.sort();
        assert_eq!(required, expected);
    }

    fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                out.push((method.clone(), path.clone(), op));
            }
        }
        out
    }

    fn strings(v: &Value) -> Vec<&str> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect()
    }

    #[test]
    fn the_document_is_openapi_3_1_with_one_named_operation_each() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids: Vec<String> = operations(&doc)
            .iter()
            .map(|(_, _, op)| op["operationId"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        assert_eq!(
            ids,
            [
                "cancelReleaseRequest",
                "createReleaseRequest",
                "createWebhookEndpoint",
                "deleteWebhookEndpoint",
                "getPhoneNumber",
                "getReleaseRequest",
                "getWebhookEndpoint",
                "listAgents",
                "listPhoneNumbers",
                "listReleaseRequests",
                "listWebhookEndpointDeliveries",
                "listWebhookEndpoints",
                "rotateWebhookEndpointSecret",
                "sendWebhookEndpointTest",
                "updateAgentCalling",
            ]
        );
    }

    #[test]
    fn every_operation_documents_the_statuses_any_request_can_get() {
        let doc = doc();
        for (method, path, op) in operations(&doc) {
            let responses = op["responses"].as_object().unwrap();
            for status in ["401", "413", "500", "503"] {
                assert!(responses.contains_key(status), "{method} {path}: {status}");
            }
            let has_body = op.get("requestBody").is_some();
            for status in ["400", "415"] {
                assert_eq!(
                    responses.contains_key(status),
                    has_body,
                    "{method} {path}: {status}"
                );
            }
            if path.contains('{') {
                assert!(responses.contains_key("404"), "{method} {path}: 404");
            }
        }
        let unauthorized = &doc["components"]["responses"]["Unauthorized"];
        assert!(unauthorized["headers"]["WWW-Authenticate"].is_object());
        let unavailable = &doc["components"]["responses"]["StorageUnavailable"];
        assert!(unavailable["headers"]["Retry-After"].is_object());
    }

    #[test]
    fn enums_come_from_the_domain() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let names = |all: &[&str]| all.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            strings(&schemas["RequestStatus"]["enum"]),
            names(
                &RequestStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            )
        );
        assert_eq!(
            strings(&schemas["Direction"]["enum"]),
            names(
                &Direction::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            )
        );
        assert_eq!(
            strings(&schemas["AgentStatus"]["enum"]),
            names(
                &AgentStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            )
        );
        assert_eq!(
            strings(&schemas["PhoneNumberStatus"]["enum"]),
            names(
                &PhoneNumberStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            )
        );
        assert_eq!(
            strings(&schemas["ErrorCode"]["enum"]),
            names(
                &ErrorCode::ALL
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
            )
        );
        let list = &doc["paths"]["/phone-numbers/release-requests"]["get"]["parameters"];
        let status = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "status")
            .unwrap();
        assert_eq!(status["schema"]["enum"], schemas["RequestStatus"]["enum"]);
    }

    #[test]
    fn ids_are_uuids_and_times_date_times() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        for id in ["RequestId", "PhoneNumberId", "AgentId"] {
            assert_eq!(schemas[id]["format"], "uuid", "{id}");
        }
        let request = &schemas["ReleaseRequest"]["properties"];
        assert_eq!(request["id"]["$ref"], "#/components/schemas/RequestId");
        for time in ["requested_at", "resolved_at", "released_at"] {
            assert_eq!(request[time]["format"], "date-time", "{time}");
        }
        for (method, path, op) in operations(&doc) {
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    assert_eq!(
                        p["schema"]["format"], "uuid",
                        "{method} {path} {}",
                        p["name"]
                    );
                }
            }
        }
    }

    #[test]
    fn lengths_and_limits_match_the_rules() {
        let doc = doc();
        let reason = &doc["components"]["schemas"]["RequestReleaseBody"]["properties"]["reason"];
        assert_eq!(reason["minLength"], Reason::MIN_CHARS);
        assert_eq!(reason["maxLength"], Reason::MAX_CHARS);
        let shown = &doc["components"]["schemas"]["ReleaseRequest"]["properties"]["reason"];
        assert_eq!(
            (&shown["minLength"], &shown["maxLength"]),
            (&reason["minLength"], &reason["maxLength"])
        );
        let mut paginated = Vec::new();
        for (method, path, op) in operations(&doc) {
            let Some(limit) = op["parameters"]
                .as_array()
                .and_then(|params| params.iter().find(|p| p["name"] == "limit"))
            else {
                continue;
            };
            paginated.push(format!("{method} {path}"));
            assert_eq!(limit["schema"]["type"], "integer", "{path}");
            assert_eq!(
                (
                    &limit["schema"]["minimum"],
                    &limit["schema"]["maximum"],
                    &limit["schema"]["default"]
                ),
                (&json!(1), &json!(MAX_LIMIT), &json!(DEFAULT_LIMIT)),
                "{path}"
            );
        }
        // Every list that can grow is paged; an environment's webhook endpoints (at most 10)
        // come in one page.
        paginated.sort();
        assert_eq!(
            paginated,
            [
                "get /agents",
                "get /phone-numbers",
                "get /phone-numbers/release-requests",
                "get /webhook-endpoints/{webhook_endpoint_id}/deliveries",
            ]
        );
    }

    /// Required fields are required and never `null`; optional ones are left out, not `null`.
    /// The one `null` the API sends is `pagination.next_cursor` on the last page.
    #[test]
    fn nothing_is_nullable_but_the_last_pages_cursor() {
        fn walk(path: &str, v: &Value, found: &mut Vec<String>) {
            match v {
                Value::Object(map) => {
                    let nullable = match map.get("type") {
                        Some(Value::Array(types)) => types.contains(&json!("null")),
                        Some(t) => t == "null",
                        None => false,
                    };
                    if nullable {
                        found.push(path.to_owned());
                    }
                    for (k, v) in map {
                        walk(&format!("{path}/{k}"), v, found);
                    }
                }
                Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        walk(&format!("{path}/{i}"), v, found);
                    }
                }
                _ => {}
            }
        }
        let doc = doc();
        let mut found = Vec::new();
        walk("", &doc, &mut found);
        assert!(
            found
                .iter()
                .all(|p| p.ends_with("/pagination/properties/next_cursor")
                    || p == "/components/schemas/Pagination/properties/next_cursor"),
            "{found:#?}"
        );
        assert!(!found.is_empty(), "next_cursor is null on the last page");
        let pagination = &doc["components"]["schemas"]["Pagination"];
        assert_eq!(
            strings(&pagination["required"]),
            ["next_cursor", "has_more"]
        );
        let request = &doc["components"]["schemas"]["ReleaseRequest"];
        assert_eq!(
            strings(&request["required"]),
            [
                "id",
                "phone_number_id",
                "phone_number",
                "reason",
                "status",
                "requested_at"
            ]
        );
    }
}
