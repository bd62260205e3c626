//! One test per console rule, each run on SQLite and on PostgreSQL.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::{Backend, Browser, Page, STAFF_EMAIL, STAFF_PASSWORD, SignInForm, TestApp};
use releasedesk_console::ConsoleConfig;
use releasedesk_store::SignInThrottle;

const NUMBER: &str = "+15551234567";
const REASON: &str = "We no longer need this line after closing the branch.";

on_both_backends!(
    signed_out_pages_redirect_to_sign_in,
    sign_in_lands_on_the_page_asked_for,
    root_and_console_redirect_to_the_queue,
    forged_or_missing_csrf_is_403_and_changes_nothing,
    wrong_confirmation_shows_an_error_and_changes_nothing,
    approval_with_the_typed_number_approves_and_queues_the_release,
    customer_markup_is_rendered_inert,
    approval_of_an_in_use_number_is_refused_naming_the_agents,
    concurrent_approvals_approve_once,
    a_second_approve_says_already_decided,
    reject_needs_a_note_of_10_to_500_characters,
    reject_normalises_line_endings_and_is_terminal,
    a_parallel_burst_of_wrong_passwords_is_counted_one_by_one,
    another_address_hammering_does_not_lock_the_real_user_out,
    a_distributed_guesser_delays_new_addresses_but_never_a_known_one,
    one_address_spraying_many_accounts_is_locked,
    the_lock_is_bounded,
    x_forwarded_for_counts_only_from_a_trusted_proxy,
    a_full_password_check_line_answers_busy_at_once,
    unknown_email_and_wrong_password_get_the_same_answer,
    sign_out_ends_the_session_on_the_server,
    sign_in_issues_a_new_session_id,
    idle_sessions_end,
    security_headers_are_on_every_response,
    cookies_are_http_only_and_same_site_strict,
    cookies_are_secure_when_configured,
    unknown_request_is_a_404_page,
    queue_lists_pending_oldest_first_with_filters,
    queue_pages_by_keyset,
    audit_log_filters_and_exports_csv,
    outbox_lists_rows_and_retries_dead_ones,
    outbox_shows_webhook_deliveries_and_retries_dead_ones,
    stylesheet_is_served_with_cache_headers,
);

async fn signed_out_pages_redirect_to_sign_in(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, NUMBER, REASON).await;
    let browser = app.browser();
    for path in [
        "/console/requests",
        &format!("/console/requests/{id}"),
        "/console/audit",
        "/console/outbox",
    ] {
        let res = browser.get(path).await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            res.location()
                .starts_with("/console/login?next=%2Fconsole%2F"),
            "{path}: {}",
            res.location()
        );
    }
    let res = browser
        .post(
            &format!("/console/requests/{id}/approve"),
            &[("csrf_token", "x"), ("confirm_number", NUMBER)],
        )
        .await;
    assert_eq!(
        (res.status, res.location()),
        (StatusCode::SEE_OTHER, "/console/login")
    );
    assert_eq!(app.status_of(id).await, "pending");
}

async fn sign_in_lands_on_the_page_asked_for(b: Backend) {
    let app = TestApp::start(b).await;
    let browser = app.browser();
    let to_login = browser.get("/console/audit?action=request.approved").await;
    let login = browser.follow(&to_login).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login
            .body
            .contains("name=\"next\" value=\"/console/audit?action=request.approved\"")
    );
    let token = login.csrf_token();
    let res = browser
        .post(
            "/console/login",
            &[
                ("email", STAFF_EMAIL),
                ("password", STAFF_PASSWORD),
                ("csrf_token", &token),
                ("next", "/console/audit?action=request.approved"),
            ],
        )
        .await;
    assert_eq!(res.location(), "/console/audit?action=request.approved");
    // Somewhere outside the console is not followed.
    let other = app.browser();
    let login = other.get("/console/login?next=https://evil.example/").await;
    assert!(
        login
            .body
            .contains("name=\"next\" value=\"/console/requests\"")
    );
}

async fn root_and_console_redirect_to_the_queue(b: Backend) {
    let app = TestApp::start(b).await;
    for path in ["/", "/console", "/console/"] {
        let res = app.browser().get(path).await;
        assert_eq!(
            (res.status, res.location()),
            (StatusCode::SEE_OTHER, "/console/requests"),
            "{path}"
        );
    }
}

async fn forged_or_missing_csrf_is_403_and_changes_nothing(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, NUMBER, REASON).await;
    let browser = app.signed_in().await;
    let approve = format!("/console/requests/{id}/approve");
    let reject = format!("/console/requests/{id}/reject");
    let note = "Please keep the number, it is still routed.";
    for (path, form) in [
        (
            &approve,
            vec![("csrf_token", "forged"), ("confirm_number", NUMBER)],
        ),
        (&approve, vec![("confirm_number", NUMBER)]),
        (&reject, vec![("csrf_token", ""), ("note", note)]),
        (&reject, vec![("note", note)]),
    ] {
        let res = browser.post(path, &form).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path} {form:?}");
        assert!(res.body.contains("Nothing was changed"), "{}", res.body);
        assert!(
            res.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    assert_eq!(app.status_of(id).await, "pending");
    assert_eq!(
        app.events(id, "request.approved").await + app.events(id, "request.rejected").await,
        0
    );

    // The sign-out form is protected too: a forged one leaves the session alive.
    let res = browser
        .post("/console/logout", &[("csrf_token", "forged")])
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(
        browser.get("/console/requests").await.status,
        StatusCode::OK
    );

    // Another session's token is not this session's token.
    let other = app.signed_in().await;
    let other_token = other.get("/console/requests").await.csrf_token();
    let res = browser
        .post(
            &approve,
            &[("csrf_token", &other_token), ("confirm_number", NUMBER)],
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(app.status_of(id).await, "pending");

    // The sign-in form: its token must match the pre-session cookie.
    let fresh = app.browser();
    fresh.get("/console/login").await;
    let res = fresh
        .post(
            "/console/login",
            &[
                ("email", STAFF_EMAIL),
                ("password", STAFF_PASSWORD),
                ("csrf_token", "forged"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(fresh.cookie("rd_session").is_none());
}

async fn wrong_confirmation_shows_an_error_and_changes_nothing(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, NUMBER, REASON).await;
    let browser = app.signed_in().await;
    let page = browser.get(&format!("/console/requests/{id}")).await;
    let token = page.csrf_token();
    for typed in ["+15551234568", "15551234567", "", "+1 555 123 4567"] {
        let res = browser
            .post(
                &format!("/console/requests/{id}/approve"),
                &[("csrf_token", &token), ("confirm_number", typed)],
            )
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER);
        assert_eq!(res.location(), format!("/console/requests/{id}"));
        let shown = browser.follow(&res).await;
        assert!(
            shown
                .body
                .contains("does not match this request&#39;s number. Nothing changed"),
            "{}",
            shown.body
        );
        assert_eq!(app.status_of(id).await, "pending", "{typed:?}");
    }
    assert_eq!(app.events(id, "request.approved").await, 0);
    assert!(app.store.outbox_for_request(id).await.unwrap().is_empty());
}

async fn approval_with_the_typed_number_approves_and_queues_the_release(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, NUMBER, REASON).await;
    let browser = app.signed_in().await;
    let token = browser
        .get(&format!("/console/requests/{id}"))
        .await
        .csrf_token();
    let res = browser
        .post(
            &format!("/console/requests/{id}/approve"),
            &[
                ("csrf_token", &token),
                ("confirm_number", NUMBER),
                ("note", "Released as asked.\r\nThanks!"),
            ],
        )
        .await;
    assert_eq!(res.flash().unwrap().0, "success");
    let page = browser.follow(&res).await;
    assert!(
        page.body
            .contains("Approved. +15551234567 will be released")
    );
    assert!(page.body.contains("badge-approved"));
    let r = app.store.find_request(id).await.unwrap();
    assert_eq!(r.status.as_str(), "approved");
    assert_eq!(
        r.review_note.as_deref(),
        Some("Released as asked.\nThanks!")
    );
    assert_eq!(r.reviewed_by, Some(app.staff_id));
    let kinds: Vec<_> = app
        .store
        .outbox_for_request(id)
        .await
        .unwrap()
        .iter()
        .map(|o| o.kind.as_str())
        .collect();
    assert_eq!(kinds, ["email.request_approved", "release.number"]);
    // The forms are gone once decided.
    assert!(!page.body.contains("name=\"confirm_number\""));
}

async fn customer_markup_is_rendered_inert(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("<b>Acme</b>").await;
    let id = app
        .pending_request(
            &c,
            NUMBER,
            "<script>alert(1)</script> and \"quotes\" & <img src=x onerror=alert(2)>",
        )
        .await;
    let browser = app.signed_in().await;
    for path in [
        format!("/console/requests/{id}"),
        "/console/requests".to_owned(),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        // askama escapes with numeric entities.
        assert!(
            page.body
                .contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{path}"
        );
        assert!(
            page.body.contains("&#60;img src=x onerror=alert(2)&#62;"),
            "{path}"
        );
        assert!(!page.body.contains("<script"), "{path}");
        assert!(!page.body.contains("<img"), "{path}");
        assert!(page.body.contains("&#60;b&#62;Acme&#60;/b&#62;"), "{path}");
    }
}

async fn approval_of_an_in_use_number_is_refused_naming_the_agents(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.blocked_request(&c, NUMBER, "Front Desk Bot").await;
    let browser = app.signed_in().await;
    let page = browser.get(&format!("/console/requests/{id}")).await;
    assert!(page.body.contains("Approval is blocked"));
    assert!(page.body.contains("<strong>Front Desk Bot</strong>"));
    let res = browser
        .post(
            &format!("/console/requests/{id}/approve"),
            &[
                ("csrf_token", &page.csrf_token()),
                ("confirm_number", NUMBER),
            ],
        )
        .await;
    let (kind, text) = res.flash().unwrap();
    assert_eq!(kind, "error");
    assert!(
        text.contains("in use by active agent Front Desk Bot. Nothing changed."),
        "{text}"
    );
    assert!(
        browser
            .follow(&res)
            .await
            .body
            .contains("in use by active agent Front Desk Bot")
    );
    assert_eq!(app.status_of(id).await, "pending");
    assert_eq!(app.events(id, "request.approved").await, 0);
}

async fn concurrent_approvals_approve_once(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, NUMBER, REASON).await;
    let browser = app.signed_in().await;
    let token = browser
        .get(&format!("/console/requests/{id}"))
        .await
        .csrf_token();
    let path = format!("/console/requests/{id}/approve");
    let posts = (0..10).map(|_| {
        let (browser, path, token) = (browser.clone(), path.clone(), token.clone());
        tokio::spawn(async move {
            browser
                .post(&path, &[("csrf_token", &token), ("confirm_number", NUMBER)])
                .await
        })
    });
    let results = futures::future::join_all(posts).await;
    let flashes: Vec<(String, String)> = results
        .into_iter()
        .map(|r| r.unwrap())
        .map(|p| p.flash().expect("a flash"))
        .collect();
    let won = flashes.iter().filter(|(k, _)| k == "success").count();
    assert_eq!(won, 1, "{flashes:?}");
    for (kind, text) in flashes.iter().filter(|(k, _)| k != "success") {
        assert_eq!(
            (kind.as_str(), text.as_str()),
            (
                "error",
                "This request was already approved; nothing changed."
            )
        );
    }
    assert_eq!(app.events(id, "request.approved").await, 1);
    assert_eq!(app.store.outbox_for_request(id).await.unwrap().len(), 2);
}

async fn a_second_approve_says_already_decided(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, NUMBER, REASON).await;
    let browser = app.signed_in().await;
    let token = browser
        .get(&format!("/console/requests/{id}"))
        .await
        .csrf_token();
    let path = format!("/console/requests/{id}/approve");
    let form = [("csrf_token", token.as_str()), ("confirm_number", NUMBER)];
    assert_eq!(
        browser.post(&path, &form).await.flash().unwrap().0,
        "success"
    );
    let second = browser.post(&path, &form).await;
    assert_eq!(
        second.flash().unwrap(),
        (
            "error".into(),
            "This request was already approved; nothing changed.".into()
        )
    );
    // Rejecting a decided request says the same.
    let res = browser
        .post(
            &format!("/console/requests/{id}/reject"),
            &[
                ("csrf_token", &token),
                ("note", "Changed my mind about it."),
            ],
        )
        .await;
    assert_eq!(
        res.flash().unwrap().1,
        "This request was already approved; nothing changed."
    );
    assert_eq!(app.events(id, "request.approved").await, 1);
    assert_eq!(app.status_of(id).await, "approved");
}

async fn reject_needs_a_note_of_10_to_500_characters(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, NUMBER, REASON).await;
    let browser = app.signed_in().await;
    let token = browser
        .get(&format!("/console/requests/{id}"))
        .await
        .csrf_token();
    let reject = |note: String| {
        let (browser, token) = (browser.clone(), token.clone());
        let path = format!("/console/requests/{id}/reject");
        async move {
            browser
                .post(&path, &[("csrf_token", &token), ("note", &note)])
                .await
        }
    };
    for bad in [
        "".to_owned(),
        "   ".to_owned(),
        "123456789".to_owned(),
        "x".repeat(501),
        // Invisible or reordering text is no note for a customer.
        "\u{200B}".repeat(10),
        "Still routed\u{202E}.tluafed".to_owned(),
    ] {
        let res = reject(bad.clone()).await;
        let (kind, text) = res.flash().unwrap();
        assert_eq!(kind, "error", "{bad:?}");
        assert!(
            text.starts_with("A rejection needs a note for the customer of 10–500 characters"),
            "{text}"
        );
        assert!(text.ends_with("Nothing changed."));
        assert_eq!(app.status_of(id).await, "pending");
    }
    // Exactly 10 (after trimming) is enough; characters, not bytes.
    let res = reject("  ééééééééé!  ".to_owned()).await;
    assert_eq!(res.flash().unwrap().0, "success");
    assert_eq!(app.status_of(id).await, "rejected");
}

async fn reject_normalises_line_endings_and_is_terminal(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, NUMBER, REASON).await;
    let browser = app.signed_in().await;
    let token = browser
        .get(&format!("/console/requests/{id}"))
        .await
        .csrf_token();
    let res = browser
        .post(
            &format!("/console/requests/{id}/reject"),
            &[
                ("csrf_token", &token),
                ("note", "The number is still routed.\r\nDetach it first."),
            ],
        )
        .await;
    assert_eq!(
        res.flash().unwrap().1,
        "Rejected. The customer is emailed your note."
    );
    let r = app.store.find_request(id).await.unwrap();
    assert_eq!(
        (r.status.as_str(), r.review_note.as_deref()),
        (
            "rejected",
            Some("The number is still routed.\nDetach it first.")
        )
    );
    assert_eq!(app.events(id, "request.rejected").await, 1);
    let page = browser.follow(&res).await;
    assert!(page.body.contains("Note sent to the customer"));
    let res = browser
        .post(
            &format!("/console/requests/{id}/approve"),
            &[("csrf_token", &token), ("confirm_number", NUMBER)],
        )
        .await;
    assert_eq!(
        res.flash().unwrap().1,
        "This request was already rejected; nothing changed."
    );
}

const FAILED: &str = "That email and password do not match an active staff account.";
const WRONG: &str = "wrong password!!";

fn is_locked(page: &Page) -> bool {
    page.flash()
        .is_some_and(|(_, text)| text.starts_with("Too many failed sign-ins. Try again in"))
}

fn is_failed(page: &Page) -> bool {
    page.flash().is_some_and(|(_, text)| text == FAILED)
}

fn is_signed_in(page: &Page) -> bool {
    page.flash().is_some_and(|(kind, _)| kind == "success")
        && page.set_cookie("rd_session").is_some()
}

/// Failed sign-ins whose password was checked (refused ones are not recorded).
async fn checked_failures(app: &TestApp) -> usize {
    app.store
        .list_audit(&releasedesk_store::AuditFilter {
            action: Some(releasedesk_store::AuditAction::StaffSignInFailed),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

/// Sends every form at once, each from a task of its own, and returns the answers.
async fn submit_all(forms: Vec<SignInForm>, email: &str, password: &str) -> Vec<Page> {
    let tasks: Vec<_> = forms
        .into_iter()
        .map(|form| {
            let (email, password) = (email.to_owned(), password.to_owned());
            tokio::spawn(async move { form.submit(&email, &password).await })
        })
        .collect();
    futures::future::try_join_all(tasks).await.unwrap()
}

/// Signs in as a person would: when the console answers "busy, try again", tries again.
async fn sign_in_like_a_person(browser: &Browser, email: &str, password: &str) -> Page {
    for _ in 0..100 {
        let page = browser.sign_in(email, password).await;
        if page.status != StatusCode::SERVICE_UNAVAILABLE {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the console stayed busy");
}

async fn a_parallel_burst_of_wrong_passwords_is_counted_one_by_one(b: Backend) {
    // A line long enough that every attempt of the burst is admitted: the throttle alone decides.
    let app = TestApp::with_config(
        b,
        ConsoleConfig {
            password_queue: 64,
            ..ConsoleConfig::default()
        },
    )
    .await;
    let attacker = app.browser().at_address("203.0.113.7:5000");
    let mut forms = Vec::new();
    for _ in 0..40 {
        forms.push(attacker.fresh().ready_to_sign_in().await);
    }
    let answers = submit_all(forms, STAFF_EMAIL, WRONG).await;

    let failed = answers.iter().filter(|p| is_failed(p)).count();
    let locked = answers.iter().filter(|p| is_locked(p)).count();
    assert_eq!(
        failed + locked,
        40,
        "every answer is a failure or a lock, none an error: {:?}",
        answers.iter().map(|p| p.status).collect::<Vec<_>>()
    );
    assert_eq!(
        checked_failures(&app).await,
        5,
        "exactly the limit of passwords were checked"
    );
    assert_eq!(failed, 4, "the fifth failure starts the lock");

    // The right password right after the burst, from the same address: refused too.
    let user = attacker.fresh();
    let res = user.sign_in(STAFF_EMAIL, STAFF_PASSWORD).await;
    assert!(is_locked(&res), "{:?}", res.flash());
    assert!(user.cookie("rd_session").is_none());
    assert_eq!(checked_failures(&app).await, 5);
}

async fn another_address_hammering_does_not_lock_the_real_user_out(b: Backend) {
    let app = TestApp::start(b).await;
    let attacker = app.browser().at_address("203.0.113.7:5000");
    let mut forms = Vec::new();
    for _ in 0..30 {
        forms.push(attacker.fresh().ready_to_sign_in().await);
    }
    // The real user, at their own address (never used before), signs in during the hammering.
    let user = app.browser().at_address("198.51.100.1:4000");
    let hammering = tokio::spawn(submit_all(forms, STAFF_EMAIL, WRONG));
    let res = sign_in_like_a_person(&user, STAFF_EMAIL, STAFF_PASSWORD).await;
    assert!(is_signed_in(&res), "{:?}", res.flash());
    let answers = hammering.await.unwrap();
    assert!(
        answers
            .iter()
            .all(|p| is_failed(p) || is_locked(p) || p.status == StatusCode::SERVICE_UNAVAILABLE),
        "no errors under the burst"
    );

    // The attacker goes on, one a second would do as well: the user still gets in.
    for _ in 0..5 {
        assert!(is_locked(
            &attacker.fresh().sign_in(STAFF_EMAIL, WRONG).await
        ));
    }
    let again = user.fresh();
    assert!(is_signed_in(
        &again.sign_in(STAFF_EMAIL, STAFF_PASSWORD).await
    ));
}

async fn a_distributed_guesser_delays_new_addresses_but_never_a_known_one(b: Backend) {
    let app = TestApp::start(b).await;
    // The user has signed in from home before: that address is known to the account.
    let home = app.browser().at_address("198.51.100.1:4000");
    assert!(is_signed_in(
        &home.sign_in(STAFF_EMAIL, STAFF_PASSWORD).await
    ));

    // Ten rotating addresses guess until each is locked: 10 × 5 failures reach the account's
    // limit for addresses it has not signed in from.
    for i in 0..10 {
        let from = app
            .browser()
            .at_address(&format!("203.0.113.{}:5000", 10 + i));
        for _ in 0..6 {
            from.fresh().sign_in(STAFF_EMAIL, WRONG).await;
        }
    }
    assert_eq!(checked_failures(&app).await, 50);
    let eleventh = app.browser().at_address("203.0.113.99:5000");
    assert!(
        is_locked(&eleventh.sign_in(STAFF_EMAIL, WRONG).await),
        "a new address is refused without a check"
    );
    assert_eq!(checked_failures(&app).await, 50);

    // From home the user gets in; from a café never used before they wait (the trade-off).
    assert!(is_signed_in(
        &home.fresh().sign_in(STAFF_EMAIL, STAFF_PASSWORD).await
    ));
    let cafe = app.browser().at_address("192.0.2.50:1234");
    assert!(is_locked(&cafe.sign_in(STAFF_EMAIL, STAFF_PASSWORD).await));
    assert!(cafe.cookie("rd_session").is_none());
}

async fn one_address_spraying_many_accounts_is_locked(b: Backend) {
    let app = TestApp::start(b).await;
    let sprayer = app.browser().at_address("203.0.113.7:5000");
    for i in 0..19 {
        let res = sprayer
            .sign_in(&format!("guess{i}@support.example"), WRONG)
            .await;
        assert!(is_failed(&res), "guess {i}: {:?}", res.flash());
    }
    // A colleague behind the same address signs in with the 20th attempt: it is given back, so
    // the address is not locked by it.
    let colleague = sprayer.fresh();
    assert!(is_signed_in(
        &colleague.sign_in(STAFF_EMAIL, STAFF_PASSWORD).await
    ));
    assert!(is_locked(
        &sprayer.sign_in("guess19@support.example", WRONG).await
    ));
    // Now the address is refused whatever account it names; the user elsewhere is not.
    assert!(is_locked(
        &sprayer.fresh().sign_in(STAFF_EMAIL, STAFF_PASSWORD).await
    ));
    let elsewhere = app.browser().at_address("198.51.100.1:4000");
    assert!(is_signed_in(
        &elsewhere.sign_in(STAFF_EMAIL, STAFF_PASSWORD).await
    ));
    assert_eq!(checked_failures(&app).await, 20);
}

async fn the_lock_is_bounded(b: Backend) {
    let throttle = SignInThrottle {
        account_at_address: 2,
        // Long enough that a loaded test machine still sees the lock running, short enough to wait out.
        first_lock: chrono::TimeDelta::seconds(2),
        max_lock: chrono::TimeDelta::seconds(3),
        ..SignInThrottle::default()
    };
    let app = TestApp::with_config(
        b,
        ConsoleConfig {
            sign_in_throttle: throttle,
            ..ConsoleConfig::default()
        },
    )
    .await;
    let browser = app.browser();
    for _ in 0..2 {
        browser.sign_in(STAFF_EMAIL, WRONG).await;
    }
    assert!(is_locked(
        &browser.sign_in(STAFF_EMAIL, STAFF_PASSWORD).await
    ));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // One more failure after the lock: locked again, for longer but never beyond the cap.
    assert!(is_locked(&browser.sign_in(STAFF_EMAIL, WRONG).await));
    assert!(is_locked(
        &browser.sign_in(STAFF_EMAIL, STAFF_PASSWORD).await
    ));
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let res = browser.sign_in(STAFF_EMAIL, STAFF_PASSWORD).await;
    assert!(
        is_signed_in(&res),
        "the real user gets in once the lock ends"
    );
    // Success clears the account's count at this address: a typo afterwards does not lock.
    let res = browser.fresh().sign_in(STAFF_EMAIL, WRONG).await;
    assert!(is_failed(&res), "{:?}", res.flash());
}

async fn x_forwarded_for_counts_only_from_a_trusted_proxy(b: Backend) {
    let app = TestApp::with_config(
        b,
        ConsoleConfig {
            trusted_proxies: "10.0.0.1".parse().unwrap(),
            ..ConsoleConfig::default()
        },
    )
    .await;
    // From an untrusted peer the header is ignored: rotating it buys no fresh guesses.
    let attacker = app.browser().at_address("203.0.113.7:5000");
    for i in 0..5 {
        attacker
            .fresh()
            .with_header("x-forwarded-for", &format!("198.51.100.{i}"))
            .sign_in(STAFF_EMAIL, WRONG)
            .await;
    }
    let res = attacker
        .fresh()
        .with_header("x-forwarded-for", "198.51.100.200")
        .sign_in(STAFF_EMAIL, STAFF_PASSWORD)
        .await;
    assert!(is_locked(&res), "the peer's lock holds: {:?}", res.flash());

    // Through the trusted proxy the client is the right-most hop the proxy appended.
    let proxy = app.browser().at_address("10.0.0.1:40000");
    let behind = |hops: &str| proxy.fresh().with_header("x-forwarded-for", hops);
    assert!(is_locked(
        &behind("203.0.113.7")
            .sign_in(STAFF_EMAIL, STAFF_PASSWORD)
            .await
    ));
    assert!(
        is_locked(
            &behind("198.51.100.77, 203.0.113.7")
                .sign_in(STAFF_EMAIL, STAFF_PASSWORD)
                .await
        ),
        "a forged hop left of the proxy's is not believed"
    );
    assert!(is_signed_in(
        &behind("203.0.113.7, 198.51.100.50")
            .sign_in(STAFF_EMAIL, STAFF_PASSWORD)
            .await
    ));
    let signed_in = app
        .store
        .list_audit(&releasedesk_store::AuditFilter {
            action: Some(releasedesk_store::AuditAction::StaffSignedIn),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let detail: serde_json::Value =
        serde_json::from_str(signed_in[0].detail.as_deref().unwrap()).unwrap();
    assert_eq!(detail["remote_addr"], "198.51.100.50");
}

/// An Argon2id hash whose check takes seconds (many passes over little memory), so a test can
/// hold the single password check for as long as it needs.
const SLOW_HASH: &str = "$argon2id$v=19$m=1024,t=3000,p=1$c29tZXNhbHRzb21lc2FsdA$\
                         AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

async fn a_full_password_check_line_answers_busy_at_once(b: Backend) {
    let app = TestApp::with_config(
        b,
        ConsoleConfig {
            password_checks: 1,
            password_queue: 0,
            ..ConsoleConfig::default()
        },
    )
    .await;
    let slow = releasedesk_domain::EmailAddress::parse("slow@support.example").unwrap();
    app.store
        .add_staff(&slow, "Slow Hash", SLOW_HASH)
        .await
        .unwrap();
    // One sign-in takes the only check for seconds; while it runs, every other sign-in is
    // answered "busy" without being checked. (Should a probe take the check first, the holder
    // is the one answered busy: start it again.)
    let mut probes = 0;
    let mut checked_meanwhile = 0;
    let mut busy = None;
    let mut holding = None;
    while busy.is_none() {
        let holder = app
            .browser()
            .at_address("198.51.100.1:1")
            .ready_to_sign_in()
            .await;
        let task = tokio::spawn(async move { holder.submit("slow@support.example", WRONG).await });
        while !task.is_finished() {
            probes += 1;
            assert!(probes < 500, "no sign-in was ever answered busy");
            let page = app
                .browser()
                .at_address(&format!("203.0.113.{}:1", probes % 250))
                .sign_in(&format!("nobody{probes}@support.example"), WRONG)
                .await;
            if page.status == StatusCode::SERVICE_UNAVAILABLE {
                busy = Some(page);
                break;
            }
            assert!(is_failed(&page), "{:?} {:?}", page.status, page.flash());
            checked_meanwhile += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        holding = Some(task);
    }
    let busy = busy.unwrap();
    assert_eq!(
        busy.headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("2")
    );
    assert!(
        busy.body
            .contains("Too many sign-ins are being checked right now")
    );
    assert!(busy.set_cookie("rd_session").is_none());

    let held = holding.unwrap().await.unwrap();
    assert!(is_failed(&held), "the long check ends normally");
    assert_eq!(
        checked_failures(&app).await,
        checked_meanwhile + 1,
        "the busy answer counted nothing"
    );
}

async fn unknown_email_and_wrong_password_get_the_same_answer(b: Backend) {
    let app = TestApp::start(b).await;
    let unknown = app
        .browser()
        .sign_in("nobody@support.example", STAFF_PASSWORD)
        .await;
    let wrong = app.browser().sign_in(STAFF_EMAIL, "not the password").await;
    let malformed = app
        .browser()
        .sign_in("not an email", "not the password")
        .await;
    for res in [&unknown, &wrong, &malformed] {
        assert_eq!(res.status, StatusCode::SEE_OTHER);
        assert_eq!(res.location(), "/console/login?next=%2Fconsole%2Frequests");
        assert_eq!(
            res.flash().unwrap(),
            (
                "error".into(),
                "That email and password do not match an active staff account.".into()
            )
        );
        assert!(res.set_cookie("rd_session").is_none());
    }
}

async fn sign_out_ends_the_session_on_the_server(b: Backend) {
    let app = TestApp::start(b).await;
    let browser = app.signed_in().await;
    let session = browser.cookie("rd_session").unwrap();
    let token = browser.get("/console/requests").await.csrf_token();
    let res = browser
        .post("/console/logout", &[("csrf_token", &token)])
        .await;
    assert_eq!(
        (res.status, res.location()),
        (StatusCode::SEE_OTHER, "/console/login")
    );
    assert!(res.set_cookie("rd_session").unwrap().contains("Max-Age=0"));
    assert!(browser.follow(&res).await.body.contains("Signed out."));
    // A copy of the old cookie no longer opens anything.
    let replay = app.browser();
    replay.set_cookie("rd_session", &session);
    assert_eq!(
        replay.get("/console/requests").await.status,
        StatusCode::SEE_OTHER
    );
    let out = app
        .store
        .list_audit(&releasedesk_store::AuditFilter {
            action: Some(releasedesk_store::AuditAction::StaffSignedOut),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
}

async fn sign_in_issues_a_new_session_id(b: Backend) {
    let app = TestApp::start(b).await;
    // A session id planted before sign-in is not adopted.
    let browser = app.browser();
    browser.set_cookie("rd_session", "planted-by-someone-else");
    browser.sign_in(STAFF_EMAIL, STAFF_PASSWORD).await;
    let first = browser.cookie("rd_session").unwrap();
    assert_ne!(first, "planted-by-someone-else");
    assert_eq!(first.len(), 43);

    // Signing in again while holding a session replaces it: the old id stops working.
    let login = app.browser().get("/console/login").await;
    let again = app.browser();
    again.set_cookie(
        "rd_login_csrf",
        login
            .set_cookie("rd_login_csrf")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1,
    );
    again.set_cookie("rd_session", &first);
    let res = again
        .post(
            "/console/login",
            &[
                ("email", STAFF_EMAIL),
                ("password", STAFF_PASSWORD),
                ("csrf_token", &login.csrf_token()),
            ],
        )
        .await;
    assert_eq!(res.flash().unwrap().0, "success");
    let second = again.cookie("rd_session").unwrap();
    assert_ne!(second, first);
    assert_eq!(
        browser.get("/console/requests").await.status,
        StatusCode::SEE_OTHER,
        "old id dropped at sign-in"
    );
    assert_eq!(again.get("/console/requests").await.status, StatusCode::OK);
}

async fn idle_sessions_end(b: Backend) {
    let config = ConsoleConfig {
        idle_timeout: Duration::from_secs(2),
        ..ConsoleConfig::default()
    };
    let app = TestApp::with_config(b, config).await;
    let browser = app.signed_in().await;
    assert_eq!(
        browser.get("/console/requests").await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(
        browser.get("/console/requests").await.status,
        StatusCode::SEE_OTHER
    );

    let config = ConsoleConfig {
        absolute_timeout: Duration::from_secs(2),
        ..ConsoleConfig::default()
    };
    let app = TestApp::with_config(b, config).await;
    let browser = app.signed_in().await;
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(
        browser.get("/console/requests").await.status,
        StatusCode::SEE_OTHER,
        "absolute timeout"
    );
}

async fn security_headers_are_on_every_response(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, NUMBER, REASON).await;
    let anon = app.browser();
    let browser = app.signed_in().await;
    let token = browser.get("/console/requests").await.csrf_token();
    let pages = vec![
        anon.get("/console/login").await,
        anon.get("/console/requests").await,
        browser.get("/console/requests").await,
        browser.get(&format!("/console/requests/{id}")).await,
        browser.get("/console/audit").await,
        browser.get("/console/outbox").await,
        browser.get("/console/nope").await,
        browser
            .post(
                &format!("/console/requests/{id}/approve"),
                &[("csrf_token", "forged")],
            )
            .await,
        browser
            .post(
                &format!("/console/requests/{id}/approve"),
                &[("csrf_token", &token), ("confirm_number", "x")],
            )
            .await,
        browser.get("/console/static/console.css").await,
    ];
    for p in &pages {
        let h = |name: &str| {
            p.headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        assert!(
            h("content-security-policy").starts_with("default-src 'self'; frame-ancestors 'none'"),
            "{p:?}"
        );
        assert!(h("content-security-policy").contains("form-action 'self'"));
        assert_eq!(h("x-content-type-options"), "nosniff");
        assert_eq!(h("x-frame-options"), "DENY");
        assert_eq!(h("referrer-policy"), "same-origin");
    }
    for p in &pages[..9] {
        assert_eq!(p.headers["cache-control"], "no-store", "{p:?}");
    }
}

async fn cookies_are_http_only_and_same_site_strict(b: Backend) {
    let app = TestApp::start(b).await;
    let browser = app.browser();
    let login = browser.get("/console/login").await;
    let res = browser
        .post(
            "/console/login",
            &[
                ("email", STAFF_EMAIL),
                ("password", STAFF_PASSWORD),
                ("csrf_token", &login.csrf_token()),
            ],
        )
        .await;
    let mut all = login.set_cookies();
    all.extend(res.set_cookies());
    for name in ["rd_login_csrf", "rd_session", "rd_flash"] {
        assert!(
            all.iter().any(|c| c.starts_with(&format!("{name}="))),
            "{name} set"
        );
    }
    for c in &all {
        assert!(c.contains("; HttpOnly"), "{c}");
        assert!(c.contains("; SameSite=Strict"), "{c}");
        assert!(c.contains("; Path=/console"), "{c}");
        assert!(!c.contains("Secure"), "{c}");
    }
}

async fn cookies_are_secure_when_configured(b: Backend) {
    let app = TestApp::with_config(
        b,
        ConsoleConfig {
            secure_cookies: true,
            ..ConsoleConfig::default()
        },
    )
    .await;
    let browser = app.browser();
    let login = browser.get("/console/login").await;
    let res = browser
        .post(
            "/console/login",
            &[
                ("email", STAFF_EMAIL),
                ("password", STAFF_PASSWORD),
                ("csrf_token", &login.csrf_token()),
            ],
        )
        .await;
    let mut all = login.set_cookies();
    all.extend(res.set_cookies());
    assert!(all.len() >= 3);
    for c in &all {
        assert!(c.ends_with("; Secure"), "{c}");
        assert!(c.contains("; HttpOnly; SameSite=Strict"), "{c}");
    }
}

async fn unknown_request_is_a_404_page(b: Backend) {
    let app = TestApp::start(b).await;
    let browser = app.signed_in().await;
    for path in [
        format!("/console/requests/{}", uuid::Uuid::now_v7()),
        "/console/requests/not-an-id".into(),
    ] {
        let res = browser.get(&path).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{path}");
        assert!(res.body.contains("There is no such release request."));
        assert!(res.body.contains("<!doctype html>"));
    }
}

async fn queue_lists_pending_oldest_first_with_filters(b: Backend) {
    let app = TestApp::start(b).await;
    let acme = app.customer("Acme").await;
    let globex = app.customer("Globex").await;
    let first = app.pending_request(&acme, "+15550000001", REASON).await;
    let second = app.pending_request(&globex, "+15550000002", REASON).await;
    let third = app.pending_request(&acme, "+4930000003", REASON).await;
    let rejected = app.pending_request(&acme, "+15550000004", REASON).await;
    let browser = app.signed_in().await;
    let token = browser.get("/console/requests").await.csrf_token();
    browser
        .post(
            &format!("/console/requests/{rejected}/reject"),
            &[
                ("csrf_token", &token),
                ("note", "Still in use by your IVR."),
            ],
        )
        .await;

    let page = browser.get("/console/requests").await;
    let order: Vec<usize> = [first, second, third]
        .iter()
        .map(|id| page.body.find(&id.to_string()).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "oldest first");
    assert!(
        !page.body.contains(&rejected.to_string()),
        "pending only by default"
    );
    assert!(page.body.contains("just now"), "ages shown");

    let env_filtered = browser
        .get(&format!("/console/requests?env={}", globex.env))
        .await;
    assert!(env_filtered.body.contains(&second.to_string()));
    assert!(!env_filtered.body.contains(&first.to_string()));

    let searched = browser.get("/console/requests?q=%2B49").await;
    assert!(searched.body.contains(&third.to_string()));
    assert!(!searched.body.contains(&first.to_string()));

    let rejected_tab = browser.get("/console/requests?status=rejected").await;
    assert!(rejected_tab.body.contains(&rejected.to_string()));
    assert!(!rejected_tab.body.contains(&first.to_string()));

    assert_eq!(
        browser.get("/console/requests?status=bogus").await.status,
        StatusCode::BAD_REQUEST
    );
}

async fn queue_pages_by_keyset(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let mut ids = Vec::new();
    for i in 0..52 {
        ids.push(
            app.pending_request(&c, &format!("+1555100{i:04}"), REASON)
                .await,
        );
    }
    let browser = app.signed_in().await;
    let page = browser.get("/console/requests").await;
    assert!(page.body.contains(&ids[49].to_string()));
    assert!(!page.body.contains(&ids[50].to_string()));
    let marker = "href=\"/console/requests?status=pending&#38;after=";
    let start = page.body.find(marker).expect("a next page link") + "href=\"".len();
    let href = page.body[start..]
        .split('"')
        .next()
        .unwrap()
        .replace("&#38;", "&");
    let next = browser.get(&href).await;
    assert!(next.body.contains(&ids[50].to_string()) && next.body.contains(&ids[51].to_string()));
    assert!(!next.body.contains(&ids[49].to_string()));
    assert!(!next.body.contains("Next page"));
    assert!(next.body.contains("First page"));
}

async fn audit_log_filters_and_exports_csv(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme, Inc.").await;
    let id = app.pending_request(&c, NUMBER, REASON).await;
    let browser = app.signed_in().await;
    let token = browser.get("/console/requests").await.csrf_token();
    browser
        .post(
            &format!("/console/requests/{id}/reject"),
            &[
                ("csrf_token", &token),
                ("note", "Sorry, we \"can't\" do that:\nstill routed."),
            ],
        )
        .await;

    let page = browser.get("/console/audit?action=request.rejected").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("request.rejected"));
    assert!(!page.body.contains("<td>staff.signed_in</td>"));
    let all = browser.get("/console/audit").await;
    assert!(
        all.body.contains("<td>staff.signed_in</td>")
            && all.body.contains("<td>request.created</td>")
    );
    let by_actor = browser
        .get(&format!("/console/audit?actor={}", STAFF_EMAIL))
        .await;
    assert!(!by_actor.body.contains("<td>request.created</td>"));

    let csv = browser
        .get("/console/audit?action=request.rejected&format=csv")
        .await;
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let mut lines = csv.body.split("\r\n");
    assert_eq!(
        lines.next().unwrap(),
        "occurred_at,action,actor_kind,actor,environment,environment_id,request_id,phone_number_id,detail"
    );
    let row = lines.next().unwrap();
    assert!(
        row.contains(",request.rejected,staff,ada@support.example,\"Acme, Inc.\","),
        "{row}"
    );
    assert!(
        row.ends_with("\"note: Sorry, we \"\"can't\"\" do that:\nstill routed.\""),
        "{row}"
    );
    assert_eq!(lines.next(), Some(""));
}

async fn outbox_lists_rows_and_retries_dead_ones(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, NUMBER, REASON).await;
    let browser = app.signed_in().await;
    let token = browser.get("/console/requests").await.csrf_token();
    browser
        .post(
            &format!("/console/requests/{id}/reject"),
            &[("csrf_token", &token), ("note", "Still routed, sorry.")],
        )
        .await;
    let rows = app
        .store
        .claim_outbox(
            "test-worker",
            chrono::Utc::now() + chrono::TimeDelta::minutes(1),
            10,
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    app.store
        .outbox_mark_failed(
            rows[0].id,
            "test-worker",
            "550 <mailbox> unavailable",
            true,
            chrono::Utc::now(),
        )
        .await
        .unwrap();

    let page = browser.get("/console/outbox").await;
    assert!(page.body.contains("email.request_rejected"));
    assert!(page.body.contains("550 &#60;mailbox&#62; unavailable"));
    assert!(
        page.body
            .contains(&format!("/console/outbox/{}/retry", rows[0].id))
    );
    let dead = browser.get("/console/outbox?state=dead").await;
    assert!(dead.body.contains("email.request_rejected"));

    let retry = format!("/console/outbox/{}/retry", rows[0].id);
    assert_eq!(
        browser
            .post(&retry, &[("csrf_token", "forged")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let res = browser.post(&retry, &[("csrf_token", &token)]).await;
    assert_eq!(
        res.flash().unwrap(),
        (
            "success".into(),
            "email.request_rejected queued again; the worker picks it up shortly.".into()
        )
    );
    assert_eq!(
        app.store
            .outbox_row(rows[0].id)
            .await
            .unwrap()
            .unwrap()
            .state
            .as_str(),
        "pending"
    );
    let again = browser.post(&retry, &[("csrf_token", &token)]).await;
    assert_eq!(again.flash().unwrap().0, "error");
}

async fn outbox_shows_webhook_deliveries_and_retries_dead_ones(b: Backend) {
    use releasedesk_domain::{WebhookPolicy, WebhookUrl};
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let url = "https://hooks.example.com/releasedesk?team=ops&x=1";
    let endpoint = app
        .store
        .create_webhook_endpoint(
            &c.auth,
            releasedesk_store::NewWebhookEndpoint {
                url: WebhookUrl::parse(url, WebhookPolicy::default()).unwrap(),
                description: None,
                events: Vec::new(),
            },
        )
        .await
        .unwrap();
    let delivery = app
        .store
        .send_test_webhook(&c.auth, endpoint.endpoint.id)
        .await
        .unwrap();
    let rows = app
        .store
        .claim_outbox(
            "test-worker",
            chrono::Utc::now() + chrono::TimeDelta::minutes(1),
            10,
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    app.store
        .webhook_attempt_failed(
            delivery.id,
            "test-worker",
            Some(500),
            "answered 500 Internal Server Error",
            true,
            chrono::Utc::now(),
        )
        .await
        .unwrap();

    let browser = app.signed_in().await;
    let page = browser.get("/console/outbox?state=dead").await;
    assert!(page.body.contains("webhook <code>webhook.test</code>"));
    assert!(
        page.body
            .contains("https://hooks.example.com/releasedesk?team=ops&#38;x=1"),
        "the URL is shown, escaped"
    );
    assert!(page.body.contains("<td>HTTP 500</td>"));
    assert!(page.body.contains("answered 500 Internal Server Error"));
    let retry = format!("/console/outbox/{}/retry", delivery.id);
    assert!(page.body.contains(&retry));

    let token = page.csrf_token();
    let res = browser.post(&retry, &[("csrf_token", &token)]).await;
    assert_eq!(
        res.flash().unwrap(),
        (
            "success".into(),
            "webhook queued again; the worker picks it up shortly.".into()
        )
    );
    let row = app.store.outbox_row(delivery.id).await.unwrap().unwrap();
    assert_eq!((row.state.as_str(), row.attempts), ("pending", 0));
}

async fn stylesheet_is_served_with_cache_headers(b: Backend) {
    let app = TestApp::start(b).await;
    let css = app.browser().get("/console/static/console.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.headers["content-type"], "text/css; charset=utf-8");
    assert!(
        css.headers["cache-control"]
            .to_str()
            .unwrap()
            .starts_with("public, max-age=")
    );
    assert!(css.body.contains("@media"));
    let etag = css.headers["etag"].to_str().unwrap().to_owned();
    let req = axum::http::Request::get("/console/static/console.css")
        .header("if-none-match", &etag)
        .body(axum::body::Body::empty())
        .unwrap();
    let res = tower::ServiceExt::oneshot(app.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
}
