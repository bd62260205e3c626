//! The customer REST API, black-box over real HTTP: one test per rule of the workflow and the
//! API (docs/workflow.md).
//!
//! Snapshots sit in `allow_duplicates!`: the SQLite and PostgreSQL runs of a test assert the
//! same snapshot, so both backends must answer byte for byte alike.

mod common;

use common::{TestApp, redact, send, send_full};
use releasedesk_domain::{ApprovalNote, RejectionNote, RequestId, StaffId};
use releasedesk_store::Actor;
use reqwest::StatusCode;
use serde_json::{Value, json};

const REASON: &str =
    "We migrated outbound calling to a new toll-free number and no longer need this DID.";

fn staff() -> Actor {
    Actor::Staff {
        id: StaffId::new(),
        email: "reviewer@example.com".into(),
    }
}

fn rid(s: &str) -> RequestId {
    RequestId::parse(s).unwrap()
}

backend_tests!(
    request_release_returns_201_with_the_pending_request,
    second_request_for_a_number_is_409_already_pending,
    request_for_a_number_held_by_an_active_agent_is_422_in_use,
    a_paused_agent_does_not_block_a_request,
    detaching_through_calling_then_requesting_succeeds,
    assigning_a_number_with_an_open_request_is_409,
    reason_length_is_counted_in_characters_after_trimming,
    reason_control_characters_are_refused,
    reason_missing_or_of_the_wrong_type,
    body_that_is_not_json_is_400,
    body_without_json_content_type_is_415,
    body_over_16_kib_is_413,
    tokens_missing_malformed_unknown_or_revoked_are_401,
    bearer_scheme_is_case_insensitive,
    other_environments_ids_are_404,
    malformed_ids_are_404,
    list_is_newest_first_and_paginates,
    list_filters_by_status_and_number,
    list_rejects_bad_query_values,
    get_returns_one_request,
    cancel_of_pending_request_is_200,
    cancel_of_decided_request_is_409_naming_its_status,
    approved_request_blocks_new_requests_409_already_approved,
    released_number_refuses_requests_and_assignments,
    rejected_request_shows_the_review_note,
    fifty_concurrent_creates_give_one_201,
    cancel_racing_approve_has_exactly_one_winner,
    phone_numbers_list_shows_agents_and_open_request,
    agents_list_and_calling_validation,
    openapi_document_needs_no_token_and_lists_every_endpoint,
    unknown_routes_and_methods_answer_in_the_envelope,
    every_response_carries_a_request_id,
    internal_errors_are_opaque_with_a_request_id,
    open_request_counts_stop_at_the_cap,
    // The edges: each test is the attack, and what a caller then sees.
    a_json_array_body_is_400_and_creates_nothing,
    an_array_body_leaves_the_agents_numbers_alone,
    an_id_that_is_not_utf8_is_the_resources_404,
    the_api_root_is_a_404_in_the_envelope,
    a_401_carries_a_bearer_challenge,
    oversized_or_foreign_request_ids_are_replaced,
    a_reason_of_ten_zero_width_spaces_is_422,
    a_reason_with_a_right_to_left_override_is_422,
    the_request_object_keeps_the_public_pages_shape,
    openapi_document_passes_a_standard_validator,
    an_expired_request_is_listed_as_expired_and_frees_its_number,
);

async fn request_release_returns_201_with_the_pending_request(app: TestApp) {
    let (status, body) = app
        .post_json(
            &format!("/phone-numbers/{}/request-release", app.numbers.free),
            json!({ "reason": REASON }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body["data"]["phone_number_id"],
        app.numbers.free.to_string()
    );
    assert_eq!(body["data"]["phone_number"], app.numbers.free_e164);
    let requested_at = body["data"]["requested_at"].as_str().unwrap();
    assert!(
        requested_at.ends_with('Z') && requested_at.len() == 20,
        "{requested_at}"
    );
    insta::allow_duplicates! { insta::assert_json_snapshot!(redact(body), @r#"
    {
      "data": {
        "id": "[id]",
        "phone_number": "+15550000001",
        "phone_number_id": "[id]",
        "reason": "We migrated outbound calling to a new toll-free number and no longer need this DID.",
        "requested_at": "[time]",
        "status": "pending"
      },
      "success": true
    }
    "#); }
    app.shutdown().await;
}

async fn second_request_for_a_number_is_409_already_pending(app: TestApp) {
    app.request_release(app.numbers.free).await;
    let (status, body) = app
        .post_json(
            &format!("/phone-numbers/{}/request-release", app.numbers.free),
            json!({ "reason": REASON }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({
            "success": false,
            "message": "A release request for this phone number is already pending",
            "code": "RELEASE_ALREADY_PENDING"
        })
    );
    app.shutdown().await;
}

async fn request_for_a_number_held_by_an_active_agent_is_422_in_use(app: TestApp) {
    let (status, body) = app
        .post_json(
            &format!("/phone-numbers/{}/request-release", app.numbers.in_use),
            json!({ "reason": REASON }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body,
        json!({
            "success": false,
            "message": "Phone number is currently assigned to active agents and cannot be released",
            "code": "PHONE_NUMBER_IN_USE"
        })
    );
    let (_, list) = app.get("/phone-numbers/release-requests").await;
    assert_eq!(list["data"], json!([]), "nothing was created");
    app.shutdown().await;
}

async fn a_paused_agent_does_not_block_a_request(app: TestApp) {
    app.request_release(app.numbers.held_by_paused).await;
    app.shutdown().await;
}

async fn detaching_through_calling_then_requesting_succeeds(app: TestApp) {
    let (status, body) = app
        .put_json(
            &format!("/agents/{}/calling", app.front_desk),
            json!({ "direction": "outbound", "phone_number_ids": [] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["phone_number_ids"], json!([]));
    assert_eq!(body["data"]["direction"], "outbound");
    let (_, number) = app
        .get(&format!("/phone-numbers/{}", app.numbers.in_use))
        .await;
    assert_eq!(number["data"]["in_use"], false);
    assert_eq!(number["data"]["agents"], json!([]));
    app.request_release(app.numbers.in_use).await;
    app.shutdown().await;
}

async fn assigning_a_number_with_an_open_request_is_409(app: TestApp) {
    app.request_release(app.numbers.free).await;
    let (status, body) = app
        .put_json(
            &format!("/agents/{}/calling", app.front_desk),
            json!({ "direction": "inbound", "phone_number_ids": [app.numbers.in_use.to_string(), app.numbers.free.to_string()] }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "PHONE_NUMBER_RELEASE_PENDING");
    // Nothing changed: the agent still holds exactly its old number.
    let agent = app
        .store
        .get_agent(app.env_id, app.front_desk)
        .await
        .unwrap();
    assert_eq!(agent.phone_number_ids, vec![app.numbers.in_use]);
    app.shutdown().await;
}

async fn post_reason(app: &TestApp, reason: Value) -> (StatusCode, Value) {
    app.post_json(
        &format!("/phone-numbers/{}/request-release", app.numbers.free),
        json!({ "reason": reason }),
    )
    .await
}

async fn reason_length_is_counted_in_characters_after_trimming(app: TestApp) {
    // 9 characters of two bytes each: too short although 18 bytes.
    let (status, body) = post_reason(&app, json!("ééééééééé")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    insta::allow_duplicates! { insta::assert_json_snapshot!(body, @r#"
    {
      "code": "VALIDATION_ERROR",
      "errors": {
        "reason": [
          "must be at least 10 characters (got 9)"
        ]
      },
      "message": "The request has invalid fields",
      "success": false
    }
    "#); }
    // Padding does not count.
    let (status, _) = post_reason(&app, json!(format!("   {}   ", "a".repeat(9)))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // 501 emoji (2004 bytes): too long.
    let (status, body) = post_reason(&app, json!("📞".repeat(501))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["errors"]["reason"][0],
        "must be at most 500 characters (got 501)"
    );
    // Exactly 500 four-byte characters, padded: accepted and stored trimmed.
    let (status, body) = post_reason(&app, json!(format!("  {}\n", "📞".repeat(500)))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["data"]["reason"].as_str().unwrap().chars().count(),
        500
    );
    // Exactly 10 CJK characters on another number.
    let (status, body) = app
        .post_json(
            &format!("/phone-numbers/{}/request-release", app.numbers.free2),
            json!({ "reason": "号码不再需要了谢谢你" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    app.shutdown().await;
}

async fn reason_control_characters_are_refused(app: TestApp) {
    for bad in [
        "no longer\u{0} needed here",
        "no longer\u{1b}[2J needed",
        "no longer\r\nneeded here",
    ] {
        let (status, body) = post_reason(&app, json!(bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        assert_eq!(body["code"], "VALIDATION_ERROR");
        assert!(
            body["errors"]["reason"][0]
                .as_str()
                .unwrap()
                .contains("control characters")
        );
    }
    let (status, body) = post_reason(&app, json!("line one\n\tline two is fine")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["reason"], "line one\n\tline two is fine");
    app.shutdown().await;
}

async fn reason_missing_or_of_the_wrong_type(app: TestApp) {
    let (status, body) = app
        .post_json(
            &format!("/phone-numbers/{}/request-release", app.numbers.free),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"]["reason"][0], "is required");
    let (status, body) = post_reason(&app, json!(12345678901_u64)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "INVALID_JSON");
    app.shutdown().await;
}

async fn body_that_is_not_json_is_400(app: TestApp) {
    let url = app.url(&format!(
        "/phone-numbers/{}/request-release",
        app.numbers.free
    ));
    for raw in ["{\"reason\": ", "not json", "[1,2,3]", "\"a string\""] {
        let (status, body) = send(
            app.client
                .post(&url)
                .bearer_auth(&app.token)
                .header("content-type", "application/json")
                .body(raw),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw}");
        assert_eq!(body["code"], "INVALID_JSON");
        assert_eq!(body["success"], false);
    }
    app.shutdown().await;
}

async fn body_without_json_content_type_is_415(app: TestApp) {
    let url = app.url(&format!(
        "/phone-numbers/{}/request-release",
        app.numbers.free
    ));
    let body = json!({ "reason": REASON }).to_string();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonp"),
    ] {
        let mut req = app
            .client
            .post(&url)
            .bearer_auth(&app.token)
            .body(body.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let (status, res) = send(req).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert_eq!(
            res,
            json!({ "success": false, "message": "Content-Type must be application/json", "code": "UNSUPPORTED_MEDIA_TYPE" })
        );
    }
    let (status, _) = send(
        app.client
            .post(&url)
            .bearer_auth(&app.token)
            .header("content-type", "application/json; charset=utf-8")
            .body(body),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "a charset parameter is fine");
    app.shutdown().await;
}

async fn body_over_16_kib_is_413(app: TestApp) {
    let url = app.url(&format!(
        "/phone-numbers/{}/request-release",
        app.numbers.free
    ));
    let big = json!({ "reason": "a".repeat(17 * 1024) }).to_string();
    let (status, body) = send(
        app.client
            .post(&url)
            .bearer_auth(&app.token)
            .header("content-type", "application/json")
            .body(big),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    // Streamed without a Content-Length: still refused once the limit is passed.
    let chunks: Vec<Result<String, std::io::Error>> = vec![
        Ok("{\"reason\": \"".into()),
        Ok("b".repeat(20 * 1024)),
        Ok("\"}".into()),
    ];
    let stream = futures::stream::iter(chunks);
    let (status, body) = send(
        app.client
            .post(&url)
            .bearer_auth(&app.token)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream)),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    // Just under the limit is read (and then judged on the reason's length).
    let under = json!({ "reason": "c".repeat(16 * 1024 - 20) }).to_string();
    assert!(under.len() <= 16 * 1024);
    let (status, body) = send(
        app.client
            .post(&url)
            .bearer_auth(&app.token)
            .header("content-type", "application/json")
            .body(under),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["code"], "VALIDATION_ERROR");
    app.shutdown().await;
}

async fn tokens_missing_malformed_unknown_or_revoked_are_401(app: TestApp) {
    let url = app.url("/phone-numbers");
    let revoked = app.store.issue_token(app.env_id, None).await.unwrap();
    assert_eq!(
        app.store.revoke_token(&revoked.info.prefix).await.unwrap(),
        1
    );
    let unknown = format!("talq_{}", "Z".repeat(40));
    let cases: Vec<Option<String>> = vec![
        None,
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some("Basic dXNlcjpwYXNz".into()),
        Some(format!("Token {}", app.token)),
        Some("Bearer talq_short".into()),
        Some(format!("Bearer {unknown}")),
        Some(format!("Bearer {}", revoked.token.expose())),
        Some(app.token.clone()),
    ];
    for header in cases {
        let mut req = app.client.get(&url);
        if let Some(h) = &header {
            req = req.header("authorization", h);
        }
        let (status, body) = send(req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header:?}");
        assert_eq!(
            body,
            json!({ "success": false, "message": "Missing, invalid or revoked API token", "code": "UNAUTHORIZED" })
        );
    }
    app.shutdown().await;
}

async fn bearer_scheme_is_case_insensitive(app: TestApp) {
    for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
        let (status, _) = send(
            app.client
                .get(app.url("/phone-numbers"))
                .header("authorization", format!("{scheme} {}", app.token)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{scheme}");
    }
    app.shutdown().await;
}

async fn other_environments_ids_are_404(app: TestApp) {
    // The other environment's own request, to probe with our token.
    let other_auth = app
        .store
        .authenticate(
            &releasedesk_domain::ApiToken::parse(&app.other_token)
                .unwrap()
                .hash(),
        )
        .await
        .unwrap()
        .unwrap();
    let theirs = app
        .store
        .request_release(
            &other_auth,
            app.other_number,
            releasedesk_domain::Reason::parse(REASON).unwrap(),
        )
        .await
        .unwrap();
    let (status, body) = app
        .post_json(
            &format!("/phone-numbers/{}/request-release", app.other_number),
            json!({ "reason": REASON }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("PHONE_NUMBER_NOT_FOUND"))
    );
    assert_eq!(body["message"], "Phone number not found");
    let (status, body) = app
        .get(&format!("/phone-numbers/{}", app.other_number))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("PHONE_NUMBER_NOT_FOUND"))
    );
    let (status, body) = app
        .get(&format!("/phone-numbers/release-requests/{}", theirs.id))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("RELEASE_REQUEST_NOT_FOUND"))
    );
    let (status, body) = app
        .post_json(
            &format!("/phone-numbers/release-requests/{}/cancel", theirs.id),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("RELEASE_REQUEST_NOT_FOUND"))
    );
    let (status, body) = app
        .put_json(
            &format!("/agents/{}/calling", app.other_agent),
            json!({ "direction": "inbound", "phone_number_ids": [] }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("AGENT_NOT_FOUND"))
    );
    // Their number cannot be attached to our agent either.
    let (status, body) = app
        .put_json(
            &format!("/agents/{}/calling", app.front_desk),
            json!({ "direction": "inbound", "phone_number_ids": [app.other_number.to_string()] }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("PHONE_NUMBER_NOT_FOUND"))
    );
    // Their request is not in our list, and was not cancelled by the probe.
    let (_, list) = app.get("/phone-numbers/release-requests").await;
    assert_eq!(list["data"], json!([]));
    assert_eq!(
        app.store
            .find_request(theirs.id)
            .await
            .unwrap()
            .status
            .as_str(),
        "pending"
    );
    app.shutdown().await;
}

async fn malformed_ids_are_404(app: TestApp) {
    for id in ["phone-uuid-1", "1", "00000000-0000-0000-0000-00000000000g"] {
        let (status, body) = app
            .post_json(
                &format!("/phone-numbers/{id}/request-release"),
                json!({ "reason": REASON }),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("PHONE_NUMBER_NOT_FOUND")),
            "{id}"
        );
        let (status, body) = app
            .get(&format!("/phone-numbers/release-requests/{id}"))
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("RELEASE_REQUEST_NOT_FOUND"))
        );
        let (status, body) = app
            .put_json(
                &format!("/agents/{id}/calling"),
                json!({ "direction": "inbound", "phone_number_ids": [] }),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("AGENT_NOT_FOUND"))
        );
    }
    let unknown = uuid::Uuid::now_v7();
    let (status, body) = app.get(&format!("/phone-numbers/{unknown}")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("PHONE_NUMBER_NOT_FOUND"))
    );
    app.shutdown().await;
}

async fn list_is_newest_first_and_paginates(app: TestApp) {
    let mut created = Vec::new();
    for i in 0..7 {
        let n = app.add_number(&format!("+1555100000{i}")).await;
        created.push(app.request_release(n).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/phone-numbers/release-requests?limit=3".to_owned(),
            Some(c) => format!("/phone-numbers/release-requests?limit=3&cursor={c}"),
        };
        let (status, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK);
        pages += 1;
        let items = body["data"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
        let has_more = body["pagination"]["has_more"].as_bool().unwrap();
        assert_eq!(has_more, body["pagination"]["next_cursor"].is_string());
        if !has_more {
            assert!(body["pagination"]["next_cursor"].is_null());
            break;
        }
        cursor = body["pagination"]["next_cursor"]
            .as_str()
            .map(str::to_owned);
    }
    assert_eq!(pages, 3);
    created.reverse();
    assert_eq!(seen, created, "newest first, each exactly once");
    let (_, default) = app.get("/phone-numbers/release-requests").await;
    assert_eq!(
        default["data"].as_array().unwrap().len(),
        7,
        "default limit is 50"
    );
    app.shutdown().await;
}

async fn list_filters_by_status_and_number(app: TestApp) {
    let a = app.request_release(app.numbers.free).await;
    let b = app.request_release(app.numbers.free2).await;
    let (status, _) = app
        .post_json(
            &format!("/phone-numbers/release-requests/{a}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, pending) = app
        .get("/phone-numbers/release-requests?status=pending")
        .await;
    let ids: Vec<&str> = pending["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![b.as_str()]);
    let (_, cancelled) = app
        .get("/phone-numbers/release-requests?status=cancelled")
        .await;
    assert_eq!(cancelled["data"][0]["id"], a.as_str());
    let (_, by_number) = app
        .get(&format!(
            "/phone-numbers/release-requests?phone_number_id={}",
            app.numbers.free
        ))
        .await;
    assert_eq!(by_number["data"].as_array().unwrap().len(), 1);
    assert_eq!(by_number["data"][0]["id"], a.as_str());
    app.shutdown().await;
}

async fn list_rejects_bad_query_values(app: TestApp) {
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("status=done", "status"),
        ("cursor=nope", "cursor"),
        ("phone_number_id=x", "phone_number_id"),
    ] {
        let (status, body) = app
            .get(&format!("/phone-numbers/release-requests?{query}"))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(body["code"], "VALIDATION_ERROR");
        assert!(body["errors"][field].is_array(), "{query}: {body}");
    }
    let (status, _) = app.get("/phone-numbers/release-requests?limit=100").await;
    assert_eq!(status, StatusCode::OK);
    app.shutdown().await;
}

async fn get_returns_one_request(app: TestApp) {
    let id = app.request_release(app.numbers.free).await;
    let (status, body) = app
        .get(&format!("/phone-numbers/release-requests/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["id"], id.as_str());
    assert_eq!(body["data"]["status"], "pending");
    assert!(
        body["data"].get("resolved_at").is_none(),
        "unset optional fields are omitted"
    );
    app.shutdown().await;
}

async fn cancel_of_pending_request_is_200(app: TestApp) {
    let id = app.request_release(app.numbers.free).await;
    let (status, body) = app
        .post_json(
            &format!("/phone-numbers/release-requests/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    insta::allow_duplicates! { insta::assert_json_snapshot!(redact(body), @r#"
    {
      "data": {
        "id": "[id]",
        "phone_number": "+15550000001",
        "phone_number_id": "[id]",
        "reason": "We no longer need this number for our agents.",
        "requested_at": "[time]",
        "resolved_at": "[time]",
        "status": "cancelled"
      },
      "success": true
    }
    "#); }
    // Cancelled is terminal and frees the number for a new request.
    app.request_release(app.numbers.free).await;
    app.shutdown().await;
}

async fn cancel_of_decided_request_is_409_naming_its_status(app: TestApp) {
    let cancelled = app.request_release(app.numbers.free).await;
    app.post_json(
        &format!("/phone-numbers/release-requests/{cancelled}/cancel"),
        json!({}),
    )
    .await;
    let (status, body) = app
        .post_json(
            &format!("/phone-numbers/release-requests/{cancelled}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body,
        json!({ "success": false, "message": "Release request is cancelled and can no longer be cancelled", "code": "RELEASE_REQUEST_NOT_PENDING" })
    );
    let approved = app.request_release(app.numbers.free2).await;
    app.store
        .approve(&staff(), rid(&approved), "+15550000002", None)
        .await
        .unwrap();
    let (status, body) = app
        .post_json(
            &format!("/phone-numbers/release-requests/{approved}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "RELEASE_REQUEST_NOT_PENDING");
    assert_eq!(
        body["message"],
        "Release request is approved and can no longer be cancelled"
    );
    let (_, after) = app
        .get(&format!("/phone-numbers/release-requests/{approved}"))
        .await;
    assert_eq!(after["data"]["status"], "approved");
    app.shutdown().await;
}

async fn approved_request_blocks_new_requests_409_already_approved(app: TestApp) {
    let id = app.request_release(app.numbers.free).await;
    app.store
        .approve(
            &staff(),
            rid(&id),
            &app.numbers.free_e164,
            Some(ApprovalNote::parse("Approved, thanks.").unwrap()),
        )
        .await
        .unwrap();
    let (status, body) = app
        .post_json(
            &format!("/phone-numbers/{}/request-release", app.numbers.free),
            json!({ "reason": REASON }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "RELEASE_ALREADY_APPROVED");
    let (_, got) = app
        .get(&format!("/phone-numbers/release-requests/{id}"))
        .await;
    assert_eq!(got["data"]["status"], "approved");
    assert_eq!(got["data"]["review_note"], "Approved, thanks.");
    assert!(got["data"]["resolved_at"].is_string());
    app.shutdown().await;
}

async fn released_number_refuses_requests_and_assignments(app: TestApp) {
    // Hold the number by the paused agent too: its assignment must go on release.
    let id = app.request_release(app.numbers.held_by_paused).await;
    app.store
        .approve(&staff(), rid(&id), "+15550000004", None)
        .await
        .unwrap();
    common::run_worker_until_idle(&app).await;
    let (_, got) = app
        .get(&format!("/phone-numbers/release-requests/{id}"))
        .await;
    assert_eq!(got["data"]["status"], "released", "{got}");
    assert!(got["data"]["released_at"].is_string());
    let (_, number) = app
        .get(&format!("/phone-numbers/{}", app.numbers.held_by_paused))
        .await;
    assert_eq!(number["data"]["current_status"], "released");
    assert_eq!(
        number["data"]["agents"],
        json!([]),
        "assignments removed on release"
    );
    assert!(number["data"].get("release_request_id").is_none());
    let (status, body) = app
        .post_json(
            &format!(
                "/phone-numbers/{}/request-release",
                app.numbers.held_by_paused
            ),
            json!({ "reason": REASON }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("PHONE_NUMBER_RELEASED"))
    );
    let (status, body) = app
        .put_json(
            &format!("/agents/{}/calling", app.night_shift),
            json!({ "direction": "inbound", "phone_number_ids": [app.numbers.held_by_paused.to_string()] }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("PHONE_NUMBER_RELEASED"))
    );
    // Still listed.
    let (_, numbers) = app.get("/phone-numbers").await;
    assert!(
        numbers["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["current_status"] == "released")
    );
    app.shutdown().await;
}

async fn rejected_request_shows_the_review_note(app: TestApp) {
    let id = app.request_release(app.numbers.free).await;
    app.store
        .reject(
            &staff(),
            rid(&id),
            RejectionNote::parse("This number still routes your main IVR.").unwrap(),
        )
        .await
        .unwrap();
    let (_, got) = app
        .get(&format!("/phone-numbers/release-requests/{id}"))
        .await;
    insta::allow_duplicates! { insta::assert_json_snapshot!(redact(got), @r#"
    {
      "data": {
        "id": "[id]",
        "phone_number": "+15550000001",
        "phone_number_id": "[id]",
        "reason": "We no longer need this number for our agents.",
        "requested_at": "[time]",
        "resolved_at": "[time]",
        "review_note": "This number still routes your main IVR.",
        "status": "rejected"
      },
      "success": true
    }
    "#); }
    // Rejected is terminal: the number can be requested again.
    app.request_release(app.numbers.free).await;
    app.shutdown().await;
}

async fn fifty_concurrent_creates_give_one_201(app: TestApp) {
    let url = app.url(&format!(
        "/phone-numbers/{}/request-release",
        app.numbers.free
    ));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let req = app
            .client
            .post(&url)
            .bearer_auth(&app.token)
            .json(&json!({ "reason": REASON }));
        tasks.push(tokio::spawn(send(req)));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                assert_eq!(body["code"], "RELEASE_ALREADY_PENDING");
                assert_eq!(
                    body["message"],
                    "A release request for this phone number is already pending"
                );
                conflicts += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, conflicts), (1, 49));
    let (_, list) = app.get("/phone-numbers/release-requests").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    app.shutdown().await;
}

async fn cancel_racing_approve_has_exactly_one_winner(app: TestApp) {
    for round in 0..5 {
        let number = app.add_number(&format!("+1555200000{round}")).await;
        let e164 = format!("+1555200000{round}");
        let id = app.request_release(number).await;
        let cancel = tokio::spawn(send(
            app.client
                .post(app.url(&format!("/phone-numbers/release-requests/{id}/cancel")))
                .bearer_auth(&app.token),
        ));
        let store = app.store.clone();
        let request = rid(&id);
        let approve =
            tokio::spawn(async move { store.approve(&staff(), request, &e164, None).await });
        let (cancel_status, _) = cancel.await.unwrap();
        let approved = approve.await.unwrap();
        let final_status = app.store.find_request(request).await.unwrap().status;
        match (cancel_status, approved) {
            (StatusCode::OK, Err(releasedesk_store::StoreError::NotPending(s))) => {
                assert_eq!(s.as_str(), "cancelled");
                assert_eq!(final_status.as_str(), "cancelled");
            }
            (StatusCode::CONFLICT, Ok(r)) => {
                assert_eq!(r.status.as_str(), "approved");
                assert_eq!(final_status.as_str(), "approved");
            }
            (c, a) => panic!("round {round}: cancel {c}, approve {a:?}: not exactly one winner"),
        }
    }
    app.shutdown().await;
}

async fn phone_numbers_list_shows_agents_and_open_request(app: TestApp) {
    let id = app.request_release(app.numbers.free).await;
    let (status, body) = app.get("/phone-numbers").await;
    assert_eq!(status, StatusCode::OK);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 4, "only our environment's numbers");
    let free = data
        .iter()
        .find(|n| n["id"] == app.numbers.free.to_string())
        .unwrap();
    assert_eq!(free["release_request_id"], id.as_str());
    insta::allow_duplicates! { insta::assert_json_snapshot!(redact(body), @r#"
    {
      "data": [
        {
          "agents": [],
          "created_at": "[time]",
          "current_status": "active",
          "id": "[id]",
          "in_use": false,
          "phone_number": "+15550000001",
          "release_request_id": "[id]"
        },
        {
          "agents": [],
          "created_at": "[time]",
          "current_status": "active",
          "id": "[id]",
          "in_use": false,
          "phone_number": "+15550000002"
        },
        {
          "agents": [
            {
              "current_status": "active",
              "id": "[id]",
              "name": "Front desk"
            }
          ],
          "created_at": "[time]",
          "current_status": "active",
          "id": "[id]",
          "in_use": true,
          "phone_number": "+15550000003"
        },
        {
          "agents": [
            {
              "current_status": "paused",
              "id": "[id]",
              "name": "Night shift"
            }
          ],
          "created_at": "[time]",
          "current_status": "active",
          "id": "[id]",
          "in_use": false,
          "phone_number": "+15550000004"
        }
      ],
      "pagination": {
        "has_more": false,
        "next_cursor": null
      },
      "success": true
    }
    "#); }
    let (_, page) = app.get("/phone-numbers?limit=3").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    assert_eq!(page["pagination"]["has_more"], true);
    app.shutdown().await;
}

async fn agents_list_and_calling_validation(app: TestApp) {
    let (status, body) = app.get("/agents").await;
    assert_eq!(status, StatusCode::OK);
    insta::allow_duplicates! { insta::assert_json_snapshot!(redact(body), @r#"
    {
      "data": [
        {
          "created_at": "[time]",
          "current_status": "active",
          "direction": "inbound",
          "id": "[id]",
          "name": "Front desk",
          "phone_number_ids": [
            "[id]"
          ],
          "updated_at": "[time]"
        },
        {
          "created_at": "[time]",
          "current_status": "paused",
          "direction": "outbound",
          "id": "[id]",
          "name": "Night shift",
          "phone_number_ids": [
            "[id]"
          ],
          "updated_at": "[time]"
        }
      ],
      "pagination": {
        "has_more": false,
        "next_cursor": null
      },
      "success": true
    }
    "#); }
    let path = format!("/agents/{}/calling", app.front_desk);
    let (status, body) = app.put_json(&path, json!({ "phone_number_ids": [] })).await;
    assert_eq!(
        (status, body["errors"]["direction"][0].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("is required"))
    );
    let (status, body) = app
        .put_json(
            &path,
            json!({ "direction": "sideways", "phone_number_ids": [] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["errors"]["direction"][0],
        "must be inbound or outbound"
    );
    let (status, body) = app.put_json(&path, json!({ "direction": "inbound" })).await;
    assert_eq!(
        (status, body["errors"]["phone_number_ids"][0].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("is required"))
    );
    let (status, body) = app
        .put_json(
            &path,
            json!({ "direction": "inbound", "phone_number_ids": "all" }),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_JSON"))
    );
    // Adding a free number and keeping the old one; duplicates collapse.
    let (status, body) = app
        .put_json(
            &path,
            json!({ "direction": "inbound", "phone_number_ids": [app.numbers.in_use.to_string(), app.numbers.free.to_string(), app.numbers.free.to_string()] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"]["phone_number_ids"].as_array().unwrap().len(),
        2
    );
    let (status, body) = send(
        app.client
            .put(app.url(&path))
            .bearer_auth(&app.token)
            .header("content-type", "text/plain")
            .body("{}"),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("UNSUPPORTED_MEDIA_TYPE")
        )
    );
    app.shutdown().await;
}

async fn openapi_document_needs_no_token_and_lists_every_endpoint(app: TestApp) {
    let (status, doc) = send(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/phone-numbers/{phone_number_id}/request-release", "post"),
        ("/phone-numbers/release-requests", "get"),
        ("/phone-numbers/release-requests/{request_id}", "get"),
        (
            "/phone-numbers/release-requests/{request_id}/cancel",
            "post",
        ),
        ("/phone-numbers", "get"),
        ("/phone-numbers/{phone_number_id}", "get"),
        ("/agents", "get"),
        ("/agents/{agent_id}/calling", "put"),
        ("/webhook-endpoints", "post"),
        ("/webhook-endpoints", "get"),
        ("/webhook-endpoints/{webhook_endpoint_id}", "get"),
        ("/webhook-endpoints/{webhook_endpoint_id}", "delete"),
        (
            "/webhook-endpoints/{webhook_endpoint_id}/rotate-secret",
            "post",
        ),
        ("/webhook-endpoints/{webhook_endpoint_id}/test", "post"),
        ("/webhook-endpoints/{webhook_endpoint_id}/deliveries", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    assert_eq!(
        paths.len(),
        13,
        "no undocumented extra paths: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    app.shutdown().await;
}

async fn unknown_routes_and_methods_answer_in_the_envelope(app: TestApp) {
    let (status, body) = app.get("/nope").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
    let (status, body) = send(
        app.client
            .delete(app.url("/phone-numbers"))
            .bearer_auth(&app.token),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("METHOD_NOT_ALLOWED"))
    );
    app.shutdown().await;
}

async fn every_response_carries_a_request_id(app: TestApp) {
    for req in [
        app.client
            .get(app.url("/phone-numbers"))
            .bearer_auth(&app.token),
        app.client.get(app.url("/phone-numbers")),
        app.client.get(format!("{}/livez", app.base)),
        app.client.get(format!("{}/readyz", app.base)),
    ] {
        let res = send_full(req).await;
        let id = res
            .headers
            .get("x-request-id")
            .expect("x-request-id")
            .to_str()
            .unwrap()
            .to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
    // A caller's own id is kept.
    let res = send_full(
        app.client
            .get(app.url("/phone-numbers"))
            .bearer_auth(&app.token)
            .header("x-request-id", "caller-chosen-id"),
    )
    .await;
    assert_eq!(res.headers["x-request-id"], "caller-chosen-id");
    app.shutdown().await;
}

async fn internal_errors_are_opaque_with_a_request_id(app: TestApp) {
    // Break the audit table behind the service's back: creating a request must fail as a 500,
    // say nothing of the cause, and leave nothing half-written.
    let raw = app.raw_db().await;
    use sea_orm::ConnectionTrait;
    raw.execute_unprepared("ALTER TABLE audit_events RENAME TO audit_events_gone")
        .await
        .unwrap();
    let (status, body) = send(
        app.client
            .post(app.url(&format!(
                "/phone-numbers/{}/request-release",
                app.numbers.free
            )))
            .bearer_auth(&app.token)
            .header("x-request-id", "trace-me-123")
            .json(&json!({ "reason": REASON })),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        body,
        json!({ "success": false, "message": "An internal error occurred; quote request id trace-me-123 to support", "code": "INTERNAL_ERROR" })
    );
    raw.execute_unprepared("ALTER TABLE audit_events_gone RENAME TO audit_events")
        .await
        .unwrap();
    let (_, list) = app.get("/phone-numbers/release-requests").await;
    assert_eq!(
        list["data"],
        json!([]),
        "the failed transaction left nothing behind"
    );
    app.request_release(app.numbers.free).await;
    let _ = raw.close().await;
    app.shutdown().await;
}

/// The console's queue counts open requests only up to a cap, so its cost does not grow with
/// the table.
async fn open_request_counts_stop_at_the_cap(app: TestApp) {
    use releasedesk_store::OPEN_COUNT_CAP;
    let counts = app.store.open_request_counts().await.unwrap();
    assert_eq!(counts.iter().map(|c| c.1).collect::<Vec<_>>(), vec![0, 0]);
    for i in 0..=OPEN_COUNT_CAP + 1 {
        let number = app.add_number(&format!("+1666{i:07}")).await;
        app.store
            .request_release(
                &app.auth,
                number,
                releasedesk_domain::Reason::parse(REASON).unwrap(),
            )
            .await
            .unwrap();
    }
    let counts = app.store.open_request_counts().await.unwrap();
    assert_eq!(counts[0].0.as_str(), "pending");
    assert_eq!(
        counts[0].1,
        OPEN_COUNT_CAP + 1,
        "counted up to the cap, plus one to say 'more'"
    );
    assert_eq!(counts[1].1, 0);
    app.shutdown().await;
}

/// Nobody decided within the service level: the sweep (here with a clock a month ahead)
/// expires the request; the customer sees it as `expired`, can filter on it, cannot cancel it,
/// and may ask again for the number.
async fn an_expired_request_is_listed_as_expired_and_frees_its_number(app: TestApp) {
    let id = app.request_release(app.numbers.free).await;
    let other = app.request_release(app.numbers.free2).await;
    let (status, _) = app
        .post_json(
            &format!("/phone-numbers/release-requests/{other}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a cancelled request does not expire"
    );
    let report = app
        .store
        .sweep_service_levels(releasedesk_store::now() + chrono::TimeDelta::days(31))
        .await
        .unwrap();
    assert_eq!(report.expired, 1);

    let (status, body) = app
        .get(&format!("/phone-numbers/release-requests/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["status"], "expired");
    assert!(body["data"]["resolved_at"].is_string());
    assert!(body["data"].get("review_note").is_none());

    let (status, list) = app
        .get("/phone-numbers/release-requests?status=expired")
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let (_, pending) = app
        .get("/phone-numbers/release-requests?status=pending")
        .await;
    assert_eq!(pending["data"], json!([]));

    let (status, body) = app
        .post_json(
            &format!("/phone-numbers/release-requests/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["code"], "RELEASE_REQUEST_NOT_PENDING");
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    let (_, number) = app
        .get(&format!("/phone-numbers/{}", app.numbers.free))
        .await;
    assert!(
        number["data"].get("release_request_id").is_none(),
        "{number}"
    );
    let again = app.request_release(app.numbers.free).await;
    assert_ne!(again, id);
    app.shutdown().await;
}

/// `["…"]` was read as `{"reason": "…"}` (serde maps an array onto a struct's fields in order)
/// and created a request.
async fn a_json_array_body_is_400_and_creates_nothing(app: TestApp) {
    let url = app.url(&format!(
        "/phone-numbers/{}/request-release",
        app.numbers.free
    ));
    for raw in [
        json!([REASON]).to_string(),
        format!(" \n{}", json!([REASON])),
        json!(REASON).to_string(),
        "null".to_owned(),
        "42".to_owned(),
        "true".to_owned(),
    ] {
        let (status, body) = send(
            app.client
                .post(&url)
                .bearer_auth(&app.token)
                .header("content-type", "application/json")
                .body(raw.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw}");
        assert_eq!(body["code"], "INVALID_JSON", "{raw}");
        assert_eq!(
            body["message"],
            "Request body is not valid JSON of the expected shape: the body must be a JSON object"
        );
    }
    let (_, list) = app.get("/phone-numbers/release-requests").await;
    assert_eq!(list["data"], json!([]), "nothing was created");
    let (_, number) = app
        .get(&format!("/phone-numbers/{}", app.numbers.free))
        .await;
    assert!(number["data"].get("release_request_id").is_none());
    app.shutdown().await;
}

/// `PUT /agents/{id}/calling` with `["inbound",[]]` emptied the agent's numbers.
async fn an_array_body_leaves_the_agents_numbers_alone(app: TestApp) {
    let path = format!("/agents/{}/calling", app.front_desk);
    let (status, body) = send(
        app.client
            .put(app.url(&path))
            .bearer_auth(&app.token)
            .header("content-type", "application/json")
            .body(r#"["inbound",[]]"#),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_JSON"))
    );
    let agent = app
        .store
        .get_agent(app.env_id, app.front_desk)
        .await
        .unwrap();
    assert_eq!(agent.phone_number_ids, vec![app.numbers.in_use]);
    let (_, number) = app
        .get(&format!("/phone-numbers/{}", app.numbers.in_use))
        .await;
    assert_eq!(number["data"]["in_use"], true, "still held by the agent");
    app.shutdown().await;
}

/// `%ff` as an id was a `text/plain` 400 from the router instead of the resource's 404.
async fn an_id_that_is_not_utf8_is_the_resources_404(app: TestApp) {
    for bad in ["%ff", "%c3%28", "%00", "%2F", "%20"] {
        let cases = [
            (
                send(
                    app.client
                        .get(app.url(&format!("/phone-numbers/{bad}")))
                        .bearer_auth(&app.token),
                )
                .await,
                "PHONE_NUMBER_NOT_FOUND",
                "Phone number not found",
            ),
            (
                app.post_json(
                    &format!("/phone-numbers/{bad}/request-release"),
                    json!({ "reason": REASON }),
                )
                .await,
                "PHONE_NUMBER_NOT_FOUND",
                "Phone number not found",
            ),
            (
                app.get(&format!("/phone-numbers/release-requests/{bad}"))
                    .await,
                "RELEASE_REQUEST_NOT_FOUND",
                "Release request not found",
            ),
            (
                app.post_json(
                    &format!("/phone-numbers/release-requests/{bad}/cancel"),
                    json!({}),
                )
                .await,
                "RELEASE_REQUEST_NOT_FOUND",
                "Release request not found",
            ),
            (
                app.put_json(
                    &format!("/agents/{bad}/calling"),
                    json!({ "direction": "inbound", "phone_number_ids": [] }),
                )
                .await,
                "AGENT_NOT_FOUND",
                "Agent not found",
            ),
        ];
        for ((status, body), code, message) in cases {
            assert_eq!(status, StatusCode::NOT_FOUND, "{bad} {code}");
            assert_eq!(
                body,
                json!({ "success": false, "message": message, "code": code }),
                "{bad}"
            );
        }
    }
    // Without a token the answer is still 401: an id is not looked at before the token.
    let (status, body) = send(app.client.get(app.url("/phone-numbers/%ff"))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("UNAUTHORIZED"))
    );
    // Nothing was touched: the agent keeps its number.
    let agent = app
        .store
        .get_agent(app.env_id, app.front_desk)
        .await
        .unwrap();
    assert_eq!(agent.phone_number_ids, vec![app.numbers.in_use]);
    app.shutdown().await;
}

/// `GET /api/v1/` was an empty 404.
async fn the_api_root_is_a_404_in_the_envelope(app: TestApp) {
    let root = format!("{}/api/v1", app.base);
    for url in [
        root.clone(),
        format!("{root}/"),
        format!("{root}/phone-numbers/"),
    ] {
        for req in [
            app.client.get(&url).bearer_auth(&app.token),
            app.client.get(&url),
            app.client.post(&url).bearer_auth(&app.token),
        ] {
            let reply = send_full(req).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{url}");
            assert_eq!(
                reply.json,
                json!({ "success": false, "message": "No such endpoint", "code": "NOT_FOUND" }),
                "{url}"
            );
            assert!(reply.headers.contains_key("x-request-id"));
        }
    }
    app.shutdown().await;
}

/// A 401 had no `WWW-Authenticate`, so standard clients could not tell it asks for a token.
async fn a_401_carries_a_bearer_challenge(app: TestApp) {
    let url = app.url("/phone-numbers/release-requests");
    for req in [
        app.client.get(&url),
        app.client
            .get(&url)
            .header("authorization", "Basic dXNlcjpwYXNz"),
        app.client
            .get(&url)
            .bearer_auth(format!("talq_{}", "Z".repeat(40))),
        app.client
            .post(app.url(&format!(
                "/phone-numbers/{}/request-release",
                app.numbers.free
            )))
            .json(&json!({ "reason": REASON })),
    ] {
        let reply = send_full(req).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            reply.headers["www-authenticate"],
            "Bearer realm=\"releasedesk\""
        );
        assert_eq!(reply.json["code"], "UNAUTHORIZED");
    }
    // Nothing was created by the unauthenticated POST.
    let (_, list) = app.get("/phone-numbers/release-requests").await;
    assert_eq!(list["data"], json!([]));
    app.shutdown().await;
}

/// An 8,000-character `X-Request-Id` was echoed in the response and written into the logs.
async fn oversized_or_foreign_request_ids_are_replaced(app: TestApp) {
    use reqwest::header::HeaderValue;
    let request_id_of = |value: HeaderValue| {
        let req = app
            .client
            .get(app.url("/phone-numbers"))
            .bearer_auth(&app.token)
            .header("x-request-id", value);
        async move {
            let reply = send_full(req).await;
            assert_eq!(reply.status, StatusCode::OK);
            reply.headers["x-request-id"].to_str().unwrap().to_owned()
        }
    };
    let replaced = [
        HeaderValue::from_str(&"a".repeat(8_000)).unwrap(),
        HeaderValue::from_str(&"b".repeat(129)).unwrap(),
        HeaderValue::from_static("with space"),
        HeaderValue::from_static("id;DROP TABLE"),
        HeaderValue::from_static("<script>alert(1)</script>"),
        HeaderValue::from_static("line\tbreak"),
        HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        HeaderValue::from_static(""),
    ];
    for value in replaced {
        let sent = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let got = request_id_of(value).await;
        assert_ne!(got, sent);
        assert!(uuid::Uuid::parse_str(&got).is_ok(), "{got}");
    }
    let longest = "A.b_C-9".repeat(18) + "xx";
    assert_eq!(longest.len(), 128);
    for kept in ["caller-chosen-id", longest.as_str()] {
        assert_eq!(
            request_id_of(HeaderValue::from_str(kept).unwrap()).await,
            kept
        );
    }
    // A replaced id is the one a 500 quotes, too: the caller's text never reaches the message.
    let raw = app.raw_db().await;
    use sea_orm::ConnectionTrait;
    raw.execute_unprepared("ALTER TABLE audit_events RENAME TO audit_events_gone")
        .await
        .unwrap();
    let reply = send_full(
        app.client
            .post(app.url(&format!(
                "/phone-numbers/{}/request-release",
                app.numbers.free
            )))
            .bearer_auth(&app.token)
            .header("x-request-id", "<b>bold</b>")
            .json(&json!({ "reason": REASON })),
    )
    .await;
    raw.execute_unprepared("ALTER TABLE audit_events_gone RENAME TO audit_events")
        .await
        .unwrap();
    let _ = raw.close().await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let id = reply.headers["x-request-id"].to_str().unwrap();
    assert_eq!(
        reply.json["message"],
        format!("An internal error occurred; quote request id {id} to support")
    );
    assert!(!reply.text.contains("bold"));
    app.shutdown().await;
}

async fn a_reason_of_ten_zero_width_spaces_is_422(app: TestApp) {
    for invisible in [
        "\u{200B}".repeat(10),
        "\u{FEFF}".repeat(12),
        format!("ok{}", "\u{200B}\u{2060}".repeat(8)),
    ] {
        let (status, body) = post_reason(&app, json!(invisible)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{invisible:?}");
        assert_eq!(body["code"], "VALIDATION_ERROR");
        let message = body["errors"]["reason"][0].as_str().unwrap();
        assert!(
            message.starts_with("must contain at least 10 visible characters (got "),
            "{message}"
        );
    }
    let (status, body) = post_reason(&app, json!("\u{200B}".repeat(10))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    insta::allow_duplicates! { insta::assert_json_snapshot!(body, @r#"
    {
      "code": "VALIDATION_ERROR",
      "errors": {
        "reason": [
          "must contain at least 10 visible characters (got 0): spaces and invisible formatting characters such as U+200B do not count"
        ]
      },
      "message": "The request has invalid fields",
      "success": false
    }
    "#); }
    let (_, list) = app.get("/phone-numbers/release-requests").await;
    assert_eq!(list["data"], json!([]), "nothing reached the staff's queue");
    app.shutdown().await;
}

/// A right-to-left override makes the staff read something else than what was written.
async fn a_reason_with_a_right_to_left_override_is_422(app: TestApp) {
    for (reason, found) in [
        (
            "Cancel invoice \u{202E}fdp.exe for this number".to_owned(),
            "U+202E",
        ),
        (format!("{}\u{2066}hidden\u{2069}", REASON), "U+2066"),
        (
            "\u{202A}We no longer need this number.".to_owned(),
            "U+202A",
        ),
    ] {
        let (status, body) = post_reason(&app, json!(reason)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{reason:?}");
        assert_eq!(
            body["errors"]["reason"][0],
            format!(
                "must not contain bidirectional override or isolate characters (found {found})"
            )
        );
    }
    let (_, list) = app.get("/phone-numbers/release-requests").await;
    assert_eq!(list["data"], json!([]));
    // Right-to-left text itself is fine.
    let (status, _) = post_reason(&app, json!("لم نعد بحاجة إلى هذا الرقم")).await;
    assert_eq!(status, StatusCode::CREATED);
    app.shutdown().await;
}

/// The release request on the wire, byte for byte: the public page's field order, times to
/// the second with `Z`, optional fields left out. (The JSON snapshots above sort keys, so they
/// cannot show the order.)
async fn the_request_object_keeps_the_public_pages_shape(app: TestApp) {
    let reply = send_full(
        app.client
            .post(app.url(&format!(
                "/phone-numbers/{}/request-release",
                app.numbers.free
            )))
            .bearer_auth(&app.token)
            .json(&json!({ "reason": REASON })),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let data = &reply.json["data"];
    let (id, at) = (
        data["id"].as_str().unwrap(),
        data["requested_at"].as_str().unwrap(),
    );
    assert_eq!(
        reply.text,
        format!(
            r#"{{"success":true,"data":{{"id":"{id}","phone_number_id":"{}","phone_number":"+15550000001","reason":"{REASON}","status":"pending","requested_at":"{at}"}}}}"#,
            app.numbers.free
        )
    );
    // The same object in the list, and the same one the store hands to webhooks.
    let listed = send_full(
        app.client
            .get(app.url("/phone-numbers/release-requests"))
            .bearer_auth(&app.token),
    )
    .await;
    let object = app.store.find_request(rid(id)).await.unwrap().to_object();
    let one = serde_json::to_string(&object).unwrap();
    assert!(
        listed
            .text
            .starts_with(&format!(r#"{{"success":true,"data":[{one}],"pagination":"#)),
        "{}",
        listed.text
    );
    assert!(reply.text.contains(&one));
    app.shutdown().await;
}

/// The served document, checked by a standard validator (Python's `openapi-spec-validator`,
/// installed by `.ci/run`). In CI a missing validator fails the test; elsewhere it is skipped
/// with a note.
async fn openapi_document_passes_a_standard_validator(app: TestApp) {
    let reply = send_full(app.client.get(app.url("/openapi.json"))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        &reply.json,
        common::contract::document(),
        "the tests check responses against the document the server serves"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &reply.text).unwrap();
    let available = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!(
                "CI is set but python3 -m openapi_spec_validator is not installed: the OpenAPI document cannot be checked"
            );
        }
        eprintln!(
            "openapi-spec-validator is not installed (pip install openapi-spec-validator): skipping the standard validator"
        );
        app.shutdown().await;
        return;
    }
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with(": OK"),
        "the validator refused the document:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.shutdown().await;
}
