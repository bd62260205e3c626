//! Snapshots of the rendered pages (SQLite; the HTML does not depend on the backend), with ids,
//! times and tokens redacted. Review a changed snapshot before accepting it.

mod common;

use axum::http::StatusCode;
use common::{Backend, TestApp};

const NUMBER: &str = "+15551234567";

fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "[id]",
        ),
        (
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)",
            "[rfc3339]",
        ),
        (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", "[time]"),
        (r"talq_[A-Za-z0-9]+…", "talq_[prefix]…"),
        (
            r#"name="csrf_token" value="[A-Za-z0-9_-]{43}""#,
            r#"name="csrf_token" value="[csrf]""#,
        ),
    ]
}

macro_rules! snapshot {
    ($name:expr, $body:expr) => {
        insta::with_settings!({ filters => filters(), prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, $body);
        })
    };
}

/// A small world: two customers, a pending request, a blocked one, an approved one.
async fn world() -> (TestApp, common::Browser, Vec<releasedesk_domain::RequestId>) {
    let app = TestApp::start(Backend::Sqlite).await;
    let acme = app.customer("Acme Telephony").await;
    let globex = app.customer("Globex").await;
    let pending = app
        .pending_request(
            &acme,
            NUMBER,
            "We closed the Leeds office; this line now rings an empty desk.\nPlease release it.",
        )
        .await;
    let blocked = app
        .blocked_request(&globex, "+442071838750", "Front Desk Bot")
        .await;
    let approved = app
        .pending_request(
            &acme,
            "+15557654321",
            "Duplicate number created by mistake.",
        )
        .await;
    let browser = app.signed_in().await;
    let token = browser.get("/console/requests").await.csrf_token();
    let res = browser
        .post(
            &format!("/console/requests/{approved}/approve"),
            &[
                ("csrf_token", &token),
                ("confirm_number", "+15557654321"),
                ("note", "Done, thanks."),
            ],
        )
        .await;
    assert_eq!(res.flash().unwrap().0, "success");
    // Show (and so use up) the approval's flash, as the browser would after the redirect.
    assert!(browser.follow(&res).await.body.contains("flash-ok"));
    (app, browser, vec![pending, blocked, approved])
}

#[tokio::test]
async fn login_page() {
    let app = TestApp::start(Backend::Sqlite).await;
    let page = app.browser().get("/console/login").await;
    assert_eq!(page.status, StatusCode::OK);
    snapshot!("login", page.body);
}

#[tokio::test]
async fn queue_page() {
    let (_app, browser, _) = world().await;
    let page = browser.get("/console/requests").await;
    assert_eq!(page.status, StatusCode::OK);
    snapshot!("queue_pending", page.body);
}

#[tokio::test]
async fn request_page_pending() {
    let (_app, browser, ids) = world().await;
    let page = browser.get(&format!("/console/requests/{}", ids[0])).await;
    snapshot!("request_pending", page.body);
}

#[tokio::test]
async fn request_page_blocked_with_refusal_flash() {
    let (_app, browser, ids) = world().await;
    let path = format!("/console/requests/{}", ids[1]);
    let token = browser.get(&path).await.csrf_token();
    let res = browser
        .post(
            &format!("{path}/approve"),
            &[("csrf_token", &token), ("confirm_number", "+442071838750")],
        )
        .await;
    let page = browser.follow(&res).await;
    snapshot!("request_blocked", page.body);
    let again = browser.get(&path).await;
    assert!(!again.body.contains("class=\"flash"), "a flash shows once");
}

#[tokio::test]
async fn request_page_approved() {
    let (_app, browser, ids) = world().await;
    let page = browser.get(&format!("/console/requests/{}", ids[2])).await;
    snapshot!("request_approved", page.body);
}

#[tokio::test]
async fn audit_page() {
    let (_app, browser, _) = world().await;
    let page = browser.get("/console/audit").await;
    snapshot!("audit", page.body);
}

#[tokio::test]
async fn outbox_page() {
    let (_app, browser, _) = world().await;
    let page = browser.get("/console/outbox").await;
    snapshot!("outbox", page.body);
}

#[tokio::test]
async fn error_pages() {
    let (_app, browser, ids) = world().await;
    let missing = browser
        .get("/console/requests/01900000-0000-7000-8000-000000000000")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    snapshot!("error_404", missing.body);
    let forged = browser
        .post(
            &format!("/console/requests/{}/approve", ids[0]),
            &[("csrf_token", "forged"), ("confirm_number", NUMBER)],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    snapshot!("error_403", forged.body);
}
