//! The review policy in the console, one test per rule, each on SQLite and on PostgreSQL:
//! roles against every action, four eyes, staff management, overdue and expired requests.

mod common;

use axum::http::StatusCode;
use chrono::TimeDelta;
use common::{Backend, Browser, Customer, Page, STAFF_EMAIL, STAFF_PASSWORD, TestApp};
use releasedesk_console::{ConsoleConfig, create_staff_with_role};
use releasedesk_domain::{
    AgentStatus, Direction, EmailAddress, RequestId, RequiredApprovals, ServiceLevels, StaffId,
    StaffRole,
};
use releasedesk_store::{Actor, EmailKind, OutboxKind, OutboxState, StoreOptions, now};

const REASON: &str = "We no longer need this line after closing the branch.";
const PASSWORD: &str = "a long and careful passphrase";
const REJECT_NOTE: &str = "The number still routes live calls; keep it for now.";

on_both_backends!(
    each_role_against_each_action,
    forms_a_role_cannot_use_are_not_shown,
    one_approval_approves_where_one_is_required,
    four_eyes_need_two_different_reviewers,
    a_rejection_after_the_first_approval_ends_it,
    every_approval_checks_everything_again,
    two_reviewers_approving_at_once_approve_exactly_once,
    one_reviewers_two_clicks_at_once_record_one_approval,
    admin_adds_staff_with_a_password_shown_once,
    a_role_change_applies_at_the_next_click,
    disabling_an_account_ends_its_sessions_at_once,
    a_new_password_ends_the_sessions_and_replaces_the_old_one,
    the_last_enabled_admin_stays,
    two_admins_demoting_each_other_at_once_leave_one_admin,
    overdue_requests_are_marked_in_the_queue_and_on_their_page,
    expired_requests_have_their_tab_and_badge_and_no_forms,
);

// ---- helpers -----------------------------------------------------------------------------

/// An account with `role`, audited as the command line.
async fn account(app: &TestApp, email: &str, name: &str, role: StaffRole) -> StaffId {
    create_staff_with_role(
        &app.store,
        &Actor::Cli,
        &EmailAddress::parse(email).unwrap(),
        name,
        PASSWORD,
        role,
    )
    .await
    .unwrap()
}

async fn signed_in_as(app: &TestApp, email: &str, password: &str) -> Browser {
    let b = app.browser();
    let res = b.sign_in(email, password).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{email} signs in");
    assert!(b.cookie("rd_session").is_some(), "{email} signed in");
    b
}

async fn csrf(b: &Browser) -> String {
    b.get("/console/requests").await.csrf_token()
}

async fn approve(b: &Browser, id: RequestId, number: &str) -> Page {
    let token = csrf(b).await;
    b.post(
        &format!("/console/requests/{id}/approve"),
        &[("csrf_token", &token), ("confirm_number", number)],
    )
    .await
}

async fn four_eyes(app: &TestApp, c: &Customer) {
    app.store
        .set_required_approvals(&Actor::Cli, c.env, RequiredApprovals::TWO)
        .await
        .unwrap();
}

fn assert_not_allowed(page: &Page, what: &str) {
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{what}: {}", page.body);
    assert!(page.body.contains("Not allowed"), "{what}: {}", page.body);
    assert!(
        page.body.contains("Nothing was changed"),
        "{what}: {}",
        page.body
    );
}

async fn approvals(app: &TestApp, id: RequestId) -> Vec<String> {
    app.store
        .approvals(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.staff_email)
        .collect()
}

async fn outbox_rows(app: &TestApp, id: RequestId, kind: OutboxKind) -> usize {
    app.store
        .outbox_for_request(id)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.kind == kind)
        .count()
}

/// How many audit events of `action` there are in all.
async fn audit_count(app: &TestApp, action: &str) -> usize {
    app.store
        .list_audit(&releasedesk_store::AuditFilter {
            action: releasedesk_store::AuditAction::parse(action),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
}

// ---- roles -------------------------------------------------------------------------------

/// Everything a staff member can do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Queue,
    Request,
    Audit,
    Outbox,
    Approve,
    Reject,
    RetryOutbox,
    StaffPage,
    AddStaff,
    SetRole,
    Disable,
    Enable,
    NewPassword,
}

const ACTS: [Act; 13] = [
    Act::Queue,
    Act::Request,
    Act::Audit,
    Act::Outbox,
    Act::Approve,
    Act::Reject,
    Act::RetryOutbox,
    Act::StaffPage,
    Act::AddStaff,
    Act::SetRole,
    Act::Disable,
    Act::Enable,
    Act::NewPassword,
];

/// Who may do what, written out here rather than taken from the code under test.
fn allowed(act: Act, role: StaffRole) -> bool {
    match act {
        Act::Queue | Act::Request | Act::Audit | Act::Outbox => true,
        Act::Approve | Act::Reject | Act::RetryOutbox => {
            matches!(role, StaffRole::Reviewer | StaffRole::Admin)
        }
        Act::StaffPage
        | Act::AddStaff
        | Act::SetRole
        | Act::Disable
        | Act::Enable
        | Act::NewPassword => role == StaffRole::Admin,
    }
}

/// A dead outbox row of a new, rejected request.
async fn dead_row(app: &TestApp, c: &Customer, number: &str) -> releasedesk_domain::OutboxId {
    let id = app.pending_request(c, number, REASON).await;
    app.store
        .reject(
            &Actor::Staff {
                id: StaffId::new(),
                email: "someone@support.example".into(),
            },
            id,
            releasedesk_domain::RejectionNote::parse(REJECT_NOTE).unwrap(),
        )
        .await
        .unwrap();
    let rows = app
        .store
        .claim_outbox("test-worker", now() + TimeDelta::minutes(1), 1000)
        .await
        .unwrap();
    let row = rows
        .iter()
        .find(|r| r.request_id == Some(id))
        .expect("the rejection's email")
        .id;
    for r in &rows {
        let permanent = r.id == row;
        app.store
            .outbox_mark_failed(r.id, "test-worker", "550 no such mailbox", permanent, now())
            .await
            .unwrap();
    }
    row
}

async fn each_role_against_each_action(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let mut numbers = 0u32;
    let mut next_number = || {
        numbers += 1;
        format!("+1555100{numbers:04}")
    };
    for role in [StaffRole::Viewer, StaffRole::Reviewer, StaffRole::Admin] {
        let email = format!("{role}@support.example");
        account(&app, &email, &format!("The {role}"), role).await;
        let browser = signed_in_as(&app, &email, PASSWORD).await;
        let token = csrf(&browser).await;
        for act in ACTS {
            let what = format!("{role} {act:?}");
            let expect = allowed(act, role);
            match act {
                Act::Queue | Act::Request | Act::Audit | Act::Outbox | Act::StaffPage => {
                    let id = app.pending_request(&c, &next_number(), REASON).await;
                    let path = match act {
                        Act::Queue => "/console/requests".to_owned(),
                        Act::Request => format!("/console/requests/{id}"),
                        Act::Audit => "/console/audit".to_owned(),
                        Act::Outbox => "/console/outbox".to_owned(),
                        _ => "/console/staff".to_owned(),
                    };
                    let page = browser.get(&path).await;
                    if expect {
                        assert_eq!(page.status, StatusCode::OK, "{what}");
                    } else {
                        assert_not_allowed(&page, &what);
                    }
                }
                Act::Approve | Act::Reject => {
                    let number = next_number();
                    let id = app.pending_request(&c, &number, REASON).await;
                    let page = if act == Act::Approve {
                        browser
                            .post(
                                &format!("/console/requests/{id}/approve"),
                                &[("csrf_token", &token), ("confirm_number", &number)],
                            )
                            .await
                    } else {
                        browser
                            .post(
                                &format!("/console/requests/{id}/reject"),
                                &[("csrf_token", &token), ("note", REJECT_NOTE)],
                            )
                            .await
                    };
                    let decided = if act == Act::Approve {
                        "approved"
                    } else {
                        "rejected"
                    };
                    if expect {
                        assert_eq!(page.status, StatusCode::SEE_OTHER, "{what}");
                        assert_eq!(page.flash().unwrap().0, "success", "{what}");
                        assert_eq!(app.status_of(id).await, decided, "{what}");
                    } else {
                        assert_not_allowed(&page, &what);
                        assert_eq!(app.status_of(id).await, "pending", "{what}");
                        assert!(approvals(&app, id).await.is_empty(), "{what}");
                        assert_eq!(app.store.request_timeline(id).await.unwrap().len(), 1);
                    }
                }
                Act::RetryOutbox => {
                    let row = dead_row(&app, &c, &next_number()).await;
                    let page = browser
                        .post(
                            &format!("/console/outbox/{row}/retry"),
                            &[("csrf_token", &token)],
                        )
                        .await;
                    let state = app.store.outbox_row(row).await.unwrap().unwrap().state;
                    if expect {
                        assert_eq!(page.status, StatusCode::SEE_OTHER, "{what}");
                        assert_eq!(state, OutboxState::Pending, "{what}");
                    } else {
                        assert_not_allowed(&page, &what);
                        assert_eq!(state, OutboxState::Dead, "{what}");
                    }
                }
                Act::AddStaff => {
                    let new = format!(
                        "new-{}@support.example",
                        next_number().trim_start_matches('+')
                    );
                    let page = browser
                        .post(
                            "/console/staff",
                            &[
                                ("csrf_token", &token),
                                ("email", &new),
                                ("name", "New Person"),
                                ("role", "viewer"),
                            ],
                        )
                        .await;
                    let exists = app
                        .store
                        .staff_by_email(&EmailAddress::parse(&new).unwrap())
                        .await
                        .is_ok();
                    if expect {
                        assert_eq!(page.status, StatusCode::OK, "{what}");
                        assert!(exists, "{what}");
                    } else {
                        assert_not_allowed(&page, &what);
                        assert!(!exists, "{what}");
                    }
                }
                Act::SetRole | Act::Disable | Act::Enable | Act::NewPassword => {
                    let target_email = format!(
                        "target-{}@support.example",
                        next_number().trim_start_matches('+')
                    );
                    let target = account(&app, &target_email, "Target", StaffRole::Reviewer).await;
                    if act == Act::Enable {
                        app.store.disable_staff(&Actor::Cli, target).await.unwrap();
                    }
                    let before = app.store.staff_member(target).await.unwrap();
                    let resets = audit_count(&app, "staff.password_reset").await;
                    let (path, form) = match act {
                        Act::SetRole => (
                            format!("/console/staff/{target}/role"),
                            vec![("csrf_token", token.as_str()), ("role", "admin")],
                        ),
                        Act::Disable => (
                            format!("/console/staff/{target}/disable"),
                            vec![("csrf_token", token.as_str())],
                        ),
                        Act::Enable => (
                            format!("/console/staff/{target}/enable"),
                            vec![("csrf_token", token.as_str())],
                        ),
                        _ => (
                            format!("/console/staff/{target}/password"),
                            vec![("csrf_token", token.as_str())],
                        ),
                    };
                    let page = browser.post(&path, &form).await;
                    let after = app.store.staff_member(target).await.unwrap();
                    let resets_after = audit_count(&app, "staff.password_reset").await;
                    if expect {
                        assert!(
                            page.status.is_success() || page.status.is_redirection(),
                            "{what}: {}",
                            page.status
                        );
                        let changed = match act {
                            Act::SetRole => after.role == StaffRole::Admin,
                            Act::Disable => after.is_disabled(),
                            Act::Enable => !after.is_disabled(),
                            _ => resets_after == resets + 1,
                        };
                        assert!(changed, "{what}");
                    } else {
                        assert_not_allowed(&page, &what);
                        assert_eq!(after, before, "{what}");
                        assert_eq!(resets_after, resets, "{what}");
                    }
                }
            }
        }
    }
}

async fn forms_a_role_cannot_use_are_not_shown(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, "+15551234567", REASON).await;
    dead_row(&app, &c, "+15551234568").await;
    for role in [StaffRole::Viewer, StaffRole::Reviewer, StaffRole::Admin] {
        let email = format!("{role}@support.example");
        account(&app, &email, &format!("The {role}"), role).await;
        let browser = signed_in_as(&app, &email, PASSWORD).await;
        let request = browser.get(&format!("/console/requests/{id}")).await;
        let outbox = browser.get("/console/outbox").await;
        let decides = role != StaffRole::Viewer;
        assert_eq!(request.body.contains("/approve\""), decides, "{role}");
        assert_eq!(request.body.contains("/reject\""), decides, "{role}");
        assert_eq!(
            request.body.contains("can read requests but not approve"),
            !decides,
            "{role}"
        );
        assert_eq!(outbox.body.contains("/retry\""), decides, "{role}");
        assert_eq!(
            request.body.contains("href=\"/console/staff\""),
            role == StaffRole::Admin,
            "{role}"
        );
        assert!(
            request
                .body
                .contains(&format!("<span class=\"role\">{role}</span>")),
            "{role}"
        );
    }
}

// ---- four eyes ---------------------------------------------------------------------------

async fn one_approval_approves_where_one_is_required(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, "+15551234567", REASON).await;
    let ada = app.signed_in().await;
    let page = ada.get(&format!("/console/requests/{id}")).await;
    assert!(page.body.contains("<dd class=\"policy\">1 approval</dd>"));
    assert!(!page.body.contains("approvals-summary"));
    let res = approve(&ada, id, "+15551234567").await;
    assert!(res.flash().unwrap().1.starts_with("Approved."));
    assert_eq!(app.status_of(id).await, "approved");
    assert_eq!(approvals(&app, id).await, [STAFF_EMAIL]);
    assert_eq!(app.events(id, "request.approval_recorded").await, 0);
    assert_eq!(app.events(id, "request.approved").await, 1);
}

async fn four_eyes_need_two_different_reviewers(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    four_eyes(&app, &c).await;
    let number = "+15551234567";
    let id = app.pending_request(&c, number, REASON).await;
    account(
        &app,
        "bob@support.example",
        "Bob Checker",
        StaffRole::Reviewer,
    )
    .await;
    let ada = app.signed_in().await;
    let bob = signed_in_as(&app, "bob@support.example", PASSWORD).await;
    let path = format!("/console/requests/{id}");

    let page = ada.get(&path).await;
    assert!(page.body.contains("2 approvals from different reviewers"));
    assert!(page.body.contains("0 of 2 approvals"), "{}", page.body);
    assert!(page.body.contains("Approve (first of 2)"));

    // The first approval is recorded; the request stays pending and nothing is sent.
    let res = approve(&ada, id, number).await;
    let (kind, text) = res.flash().unwrap();
    assert_eq!(kind, "success");
    assert!(text.contains("Your approval is recorded"), "{text}");
    assert_eq!(app.status_of(id).await, "pending");
    assert_eq!(approvals(&app, id).await, [STAFF_EMAIL]);
    assert_eq!(app.events(id, "request.approval_recorded").await, 1);
    assert_eq!(app.events(id, "request.approved").await, 0);
    assert_eq!(
        outbox_rows(&app, id, OutboxKind::Email(EmailKind::RequestApproved)).await,
        0
    );
    assert_eq!(outbox_rows(&app, id, OutboxKind::ReleaseNumber).await, 0);
    let page = ada.follow(&res).await;
    assert!(
        page.body.contains("1 of 2 approvals, by Ada Reviewer"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Awaiting a second approval"));
    assert!(!page.body.contains("/approve\""), "no approve form for Ada");
    assert!(page.body.contains("/reject\""), "Ada may still reject");

    // The same reviewer cannot give the second approval.
    let res = approve(&ada, id, number).await;
    let (kind, text) = res.flash().unwrap();
    assert_eq!(kind, "error");
    assert!(
        text.contains("You already approved this request") && text.contains("different reviewer"),
        "{text}"
    );
    assert_eq!(app.status_of(id).await, "pending");
    assert_eq!(approvals(&app, id).await.len(), 1);
    assert_eq!(app.events(id, "request.approval_recorded").await, 1);

    // A different reviewer's approval approves it, naming both.
    let page = bob.get(&path).await;
    assert!(page.body.contains("1 of 2 approvals, by Ada Reviewer"));
    assert!(page.body.contains("Approve and release"));
    let res = approve(&bob, id, number).await;
    assert!(res.flash().unwrap().1.starts_with("Approved."));
    assert_eq!(app.status_of(id).await, "approved");
    assert_eq!(
        approvals(&app, id).await,
        [STAFF_EMAIL, "bob@support.example"]
    );
    let timeline = app.store.request_timeline(id).await.unwrap();
    let approved = timeline
        .iter()
        .find(|e| e.action == "request.approved")
        .unwrap();
    assert_eq!(approved.actor_label, "bob@support.example");
    let detail: serde_json::Value =
        serde_json::from_str(approved.detail.as_deref().unwrap()).unwrap();
    assert_eq!(
        detail["approved_by"],
        serde_json::json!([STAFF_EMAIL, "bob@support.example"])
    );
    let emails: Vec<_> = app
        .store
        .outbox_for_request(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == OutboxKind::Email(EmailKind::RequestApproved))
        .collect();
    assert_eq!(emails.len(), 1);
    assert_eq!(
        emails[0].payload.approved_by,
        ["Ada Reviewer", "Bob Checker"]
    );
    assert_eq!(outbox_rows(&app, id, OutboxKind::ReleaseNumber).await, 1);
    let page = bob.follow(&res).await;
    assert!(
        page.body
            .contains("Approved by Ada Reviewer and Bob Checker"),
        "{}",
        page.body
    );
}

async fn a_rejection_after_the_first_approval_ends_it(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    four_eyes(&app, &c).await;
    let number = "+15551234567";
    let id = app.pending_request(&c, number, REASON).await;
    account(
        &app,
        "bob@support.example",
        "Bob Checker",
        StaffRole::Reviewer,
    )
    .await;
    let ada = app.signed_in().await;
    let bob = signed_in_as(&app, "bob@support.example", PASSWORD).await;
    approve(&ada, id, number).await;
    let token = csrf(&bob).await;
    let res = bob
        .post(
            &format!("/console/requests/{id}/reject"),
            &[("csrf_token", &token), ("note", REJECT_NOTE)],
        )
        .await;
    assert_eq!(res.flash().unwrap().0, "success");
    assert_eq!(app.status_of(id).await, "rejected");
    let res = approve(&bob, id, number).await;
    assert_eq!(
        res.flash().unwrap(),
        (
            "error".into(),
            "This request was already rejected; nothing changed.".into()
        )
    );
    assert_eq!(app.status_of(id).await, "rejected");
    assert_eq!(approvals(&app, id).await, [STAFF_EMAIL], "history is kept");
    assert_eq!(outbox_rows(&app, id, OutboxKind::ReleaseNumber).await, 0);
    // The number takes a new request.
    let number_id = app.store.find_request(id).await.unwrap().phone_number_id;
    app.request(&c, number_id, REASON).await;
}

async fn every_approval_checks_everything_again(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    four_eyes(&app, &c).await;
    let number = "+15551234567";
    let n = app.add_number(&c, number).await;
    let agent = app
        .store
        .add_agent(
            c.env,
            "Front desk",
            AgentStatus::Draft,
            Direction::Inbound,
            &[n],
        )
        .await
        .unwrap();
    let id = app.request(&c, n, REASON).await;
    account(
        &app,
        "bob@support.example",
        "Bob Checker",
        StaffRole::Reviewer,
    )
    .await;
    let ada = app.signed_in().await;
    let bob = signed_in_as(&app, "bob@support.example", PASSWORD).await;

    // The first approval types the number too.
    let res = approve(&ada, id, "+15550000000").await;
    assert!(res.flash().unwrap().1.contains("does not match"));
    assert!(approvals(&app, id).await.is_empty());
    approve(&ada, id, number).await;
    assert_eq!(approvals(&app, id).await.len(), 1);

    // The agent went live between the approvals: the second is refused.
    app.store
        .set_agent_status(c.env, agent.id, AgentStatus::Active)
        .await
        .unwrap();
    let res = approve(&bob, id, number).await;
    let (kind, text) = res.flash().unwrap();
    assert_eq!(kind, "error");
    assert!(text.contains("in use by active agent Front desk"), "{text}");
    assert_eq!(app.status_of(id).await, "pending");
    assert_eq!(approvals(&app, id).await.len(), 1);

    // And the typed number again.
    app.store
        .set_agent_status(c.env, agent.id, AgentStatus::Paused)
        .await
        .unwrap();
    let res = approve(&bob, id, "+15551234568").await;
    assert!(res.flash().unwrap().1.contains("does not match"));
    assert_eq!(app.status_of(id).await, "pending");
    approve(&bob, id, number).await;
    assert_eq!(app.status_of(id).await, "approved");
}

async fn two_reviewers_approving_at_once_approve_exactly_once(b: Backend) {
    let app = TestApp::start(b).await;
    account(
        &app,
        "bob@support.example",
        "Bob Checker",
        StaffRole::Reviewer,
    )
    .await;
    let ada = app.signed_in().await;
    let bob = signed_in_as(&app, "bob@support.example", PASSWORD).await;
    let (ada_token, bob_token) = (csrf(&ada).await, csrf(&bob).await);
    for (policy, env) in [
        (RequiredApprovals::TWO, "Four eyes"),
        (RequiredApprovals::ONE, "One"),
    ] {
        let c = app.customer(env).await;
        app.store
            .set_required_approvals(&Actor::Cli, c.env, policy)
            .await
            .unwrap();
        for round in 0..5 {
            let number = format!("+1555200{}{round:03}", policy.get());
            let id = app.pending_request(&c, &number, REASON).await;
            let path = format!("/console/requests/{id}/approve");
            let post = |b: &Browser, token: &str| {
                let (b, path, token, number) =
                    (b.clone(), path.clone(), token.to_owned(), number.clone());
                tokio::spawn(async move {
                    b.post(
                        &path,
                        &[("csrf_token", &token), ("confirm_number", &number)],
                    )
                    .await
                })
            };
            let (a, b2) = (post(&ada, &ada_token), post(&bob, &bob_token));
            let flashes = [
                a.await.unwrap().flash().unwrap(),
                b2.await.unwrap().flash().unwrap(),
            ];
            let what = format!("{policy} required, round {round}: {flashes:?}");
            assert_eq!(app.status_of(id).await, "approved", "{what}");
            assert_eq!(app.events(id, "request.approved").await, 1, "{what}");
            assert_eq!(
                outbox_rows(&app, id, OutboxKind::Email(EmailKind::RequestApproved)).await,
                1,
                "{what}"
            );
            assert_eq!(
                outbox_rows(&app, id, OutboxKind::ReleaseNumber).await,
                1,
                "{what}"
            );
            let approved = flashes
                .iter()
                .filter(|(_, t)| t.starts_with("Approved."))
                .count();
            assert_eq!(approved, 1, "{what}");
            if policy == RequiredApprovals::TWO {
                // Both approvals count: one recorded, then the other approves.
                assert_eq!(approvals(&app, id).await.len(), 2, "{what}");
                assert_eq!(
                    app.events(id, "request.approval_recorded").await,
                    1,
                    "{what}"
                );
                assert!(flashes.iter().all(|(k, _)| k == "success"), "{what}");
            } else {
                // The loser is told clearly that it was already approved.
                assert_eq!(approvals(&app, id).await.len(), 1, "{what}");
                assert!(
                    flashes.iter().any(|(k, t)| k == "error"
                        && t == "This request was already approved; nothing changed."),
                    "{what}"
                );
            }
        }
    }
}

async fn one_reviewers_two_clicks_at_once_record_one_approval(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    four_eyes(&app, &c).await;
    let ada = app.signed_in().await;
    let token = csrf(&ada).await;
    for round in 0..3 {
        let number = format!("+1555300{round:04}");
        let id = app.pending_request(&c, &number, REASON).await;
        let path = format!("/console/requests/{id}/approve");
        let clicks: Vec<_> = (0..2)
            .map(|_| {
                let (b, path, token, number) =
                    (ada.clone(), path.clone(), token.clone(), number.clone());
                tokio::spawn(async move {
                    b.post(
                        &path,
                        &[("csrf_token", &token), ("confirm_number", &number)],
                    )
                    .await
                    .flash()
                    .unwrap()
                })
            })
            .collect();
        let mut flashes = Vec::new();
        for c in clicks {
            flashes.push(c.await.unwrap());
        }
        assert_eq!(approvals(&app, id).await.len(), 1, "{flashes:?}");
        assert_eq!(app.status_of(id).await, "pending", "{flashes:?}");
        assert_eq!(app.events(id, "request.approval_recorded").await, 1);
        assert!(
            flashes
                .iter()
                .any(|(k, t)| k == "error" && t.contains("You already approved")),
            "{flashes:?}"
        );
    }
}

// ---- staff management --------------------------------------------------------------------

async fn admin(app: &TestApp) -> Browser {
    account(app, "root@support.example", "Rita Admin", StaffRole::Admin).await;
    signed_in_as(app, "root@support.example", PASSWORD).await
}

/// The generated password a page shows once.
fn shown_password(page: &Page) -> String {
    let marker = "id=\"initial_password\">";
    let start = page.body.find(marker).expect("a password on the page") + marker.len();
    let end = page.body[start..].find('<').unwrap() + start;
    page.body[start..end].to_owned()
}

async fn admin_adds_staff_with_a_password_shown_once(b: Backend) {
    let app = TestApp::start(b).await;
    let root = admin(&app).await;
    let token = csrf(&root).await;
    let page = root
        .post(
            "/console/staff",
            &[
                ("csrf_token", &token),
                ("email", "carol@support.example"),
                ("name", "Carol <Viewer>"),
                ("role", "viewer"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Carol &#60;Viewer&#62; can sign in"));
    assert!(page.body.contains("Shown once"));
    let password = shown_password(&page);
    assert!(password.chars().count() >= 12, "{password}");
    assert!(
        !page.headers.contains_key("set-cookie")
            || !page.set_cookies().iter().any(|c| c.contains(&password))
    );
    // The listing never shows it again.
    let list = root.get("/console/staff").await;
    assert!(list.body.contains("carol@support.example"));
    assert!(!list.body.contains(&password));

    let carol = signed_in_as(&app, "carol@support.example", &password).await;
    let queue = carol.get("/console/requests").await;
    assert!(queue.body.contains("<span class=\"role\">viewer</span>"));

    // A taken email changes nothing.
    let res = root
        .post(
            "/console/staff",
            &[
                ("csrf_token", &token),
                ("email", "carol@support.example"),
                ("name", "Carol Again"),
                ("role", "admin"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    assert!(res.flash().unwrap().1.contains("already has an account"));
    let carol_account = app
        .store
        .staff_by_email(&EmailAddress::parse("carol@support.example").unwrap())
        .await
        .unwrap();
    assert_eq!(carol_account.role, StaffRole::Viewer);
    let added = app
        .store
        .list_audit(&releasedesk_store::AuditFilter {
            action: releasedesk_store::AuditAction::parse("staff.added"),
            actor: Some("root@support.example".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(added.len(), 1);
    assert!(
        added[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("\"role\":\"viewer\""),
        "{added:?}"
    );
}

async fn a_role_change_applies_at_the_next_click(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, "+15551234567", REASON).await;
    let root = admin(&app).await;
    let ada = app.signed_in().await;
    let ada_token = csrf(&ada).await;
    let token = csrf(&root).await;
    let res = root
        .post(
            &format!("/console/staff/{}/role", app.staff_id),
            &[("csrf_token", &token), ("role", "viewer")],
        )
        .await;
    assert_eq!(
        res.flash().unwrap().1,
        format!("{STAFF_EMAIL} is now viewer.")
    );
    // Ada's open session now reads, but no longer decides.
    let page = ada
        .post(
            &format!("/console/requests/{id}/approve"),
            &[
                ("csrf_token", &ada_token),
                ("confirm_number", "+15551234567"),
            ],
        )
        .await;
    assert_not_allowed(&page, "demoted reviewer");
    assert!(page.body.contains("Your role (viewer)"));
    assert_eq!(app.status_of(id).await, "pending");
    assert_eq!(
        ada.get(&format!("/console/requests/{id}")).await.status,
        StatusCode::OK
    );
    assert_eq!(audit_count(&app, "staff.role_changed").await, 1);
}

async fn disabling_an_account_ends_its_sessions_at_once(b: Backend) {
    let app = TestApp::start(b).await;
    let root = admin(&app).await;
    let ada = app.signed_in().await;
    let ada_elsewhere = app.signed_in().await;
    let token = csrf(&root).await;
    let res = root
        .post(
            &format!("/console/staff/{}/disable", app.staff_id),
            &[("csrf_token", &token)],
        )
        .await;
    assert!(res.flash().unwrap().1.contains("sessions have ended"));
    for b in [&ada, &ada_elsewhere] {
        let res = b.get("/console/requests").await;
        assert_eq!(res.status, StatusCode::SEE_OTHER);
        assert!(res.location().starts_with("/console/login"));
    }
    let res = app.browser().sign_in(STAFF_EMAIL, STAFF_PASSWORD).await;
    assert_eq!(
        res.flash().unwrap().0,
        "error",
        "a disabled account cannot sign in"
    );
    let list = root.get("/console/staff").await;
    assert!(list.body.contains("badge-disabled"));
    let detail = app
        .store
        .list_audit(&releasedesk_store::AuditFilter {
            action: releasedesk_store::AuditAction::parse("staff.disabled"),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(detail.len(), 1);
    assert!(
        detail[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("\"sessions_ended\":2")
    );

    // Enabled again, the same password works.
    root.post(
        &format!("/console/staff/{}/enable", app.staff_id),
        &[("csrf_token", &token)],
    )
    .await;
    signed_in_as(&app, STAFF_EMAIL, STAFF_PASSWORD).await;
}

async fn a_new_password_ends_the_sessions_and_replaces_the_old_one(b: Backend) {
    let app = TestApp::start(b).await;
    let root = admin(&app).await;
    let ada = app.signed_in().await;
    let token = csrf(&root).await;
    let page = root
        .post(
            &format!("/console/staff/{}/password", app.staff_id),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("New password for Ada Reviewer"));
    let password = shown_password(&page);
    assert_eq!(
        ada.get("/console/requests").await.status,
        StatusCode::SEE_OTHER
    );
    let old = app.browser().sign_in(STAFF_EMAIL, STAFF_PASSWORD).await;
    assert_eq!(old.flash().unwrap().0, "error");
    signed_in_as(&app, STAFF_EMAIL, &password).await;
    assert_eq!(audit_count(&app, "staff.password_reset").await, 1);
}

async fn the_last_enabled_admin_stays(b: Backend) {
    let app = TestApp::start(b).await;
    let root = admin(&app).await;
    let token = csrf(&root).await;
    let me = app
        .store
        .staff_by_email(&EmailAddress::parse("root@support.example").unwrap())
        .await
        .unwrap()
        .id;
    for (path, form) in [
        (
            format!("/console/staff/{me}/role"),
            vec![("csrf_token", token.as_str()), ("role", "reviewer")],
        ),
        (
            format!("/console/staff/{me}/disable"),
            vec![("csrf_token", token.as_str())],
        ),
    ] {
        let res = root.post(&path, &form).await;
        let (kind, text) = res.flash().unwrap();
        assert_eq!(kind, "error", "{path}");
        assert!(text.contains("no enabled admin"), "{text}");
    }
    let me_now = app.store.staff_member(me).await.unwrap();
    assert_eq!(
        (me_now.role, me_now.is_disabled()),
        (StaffRole::Admin, false)
    );
    assert_eq!(audit_count(&app, "staff.role_changed").await, 0);

    // With a second admin, the first may step down (and is then refused the staff page).
    let res = root
        .post(
            &format!("/console/staff/{}/role", app.staff_id),
            &[("csrf_token", &token), ("role", "admin")],
        )
        .await;
    assert_eq!(res.flash().unwrap().0, "success");
    let res = root
        .post(
            &format!("/console/staff/{me}/role"),
            &[("csrf_token", &token), ("role", "reviewer")],
        )
        .await;
    assert_eq!(res.flash().unwrap().0, "success");
    assert_not_allowed(&root.get("/console/staff").await, "former admin");
}

async fn two_admins_demoting_each_other_at_once_leave_one_admin(b: Backend) {
    let app = TestApp::start(b).await;
    let a = account(&app, "a@support.example", "Admin A", StaffRole::Admin).await;
    let b_id = account(&app, "b@support.example", "Admin B", StaffRole::Admin).await;
    for round in 0..3 {
        let store = app.store.clone();
        let one = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .set_staff_role(
                        &Actor::Staff {
                            id: a,
                            email: "a@support.example".into(),
                        },
                        b_id,
                        StaffRole::Reviewer,
                    )
                    .await
            }
        });
        let two = tokio::spawn(async move {
            store
                .set_staff_role(
                    &Actor::Staff {
                        id: b_id,
                        email: "b@support.example".into(),
                    },
                    a,
                    StaffRole::Reviewer,
                )
                .await
        });
        let results = [one.await.unwrap(), two.await.unwrap()];
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(releasedesk_store::StoreError::LastAdmin))),
            "round {round}: {results:?}"
        );
        let admins = app
            .store
            .list_staff()
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.role == StaffRole::Admin)
            .count();
        assert_eq!(admins, 1, "round {round}");
        // Both admins again for the next round.
        for id in [a, b_id] {
            app.store
                .set_staff_role(&Actor::Cli, id, StaffRole::Admin)
                .await
                .unwrap();
        }
    }
}

// ---- service levels ----------------------------------------------------------------------

async fn overdue_requests_are_marked_in_the_queue_and_on_their_page(b: Backend) {
    // Overdue as soon as it exists: no waiting for a day.
    let options = StoreOptions {
        service_levels: ServiceLevels {
            remind_after: Some(TimeDelta::zero()),
            ..ServiceLevels::default()
        },
        ..StoreOptions::default()
    };
    let app = TestApp::with_options(b, ConsoleConfig::default(), options).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, "+15551234567", REASON).await;
    let decided = app.pending_request(&c, "+15551234568", REASON).await;
    let ada = app.signed_in().await;
    approve(&ada, decided, "+15551234568").await;

    let queue = ada.get("/console/requests").await;
    assert_eq!(
        queue.body.matches("badge-overdue").count(),
        1,
        "{}",
        queue.body
    );
    let all = ada.get("/console/requests?status=all").await;
    assert_eq!(
        all.body.matches("badge-overdue").count(),
        1,
        "only pending ones"
    );
    let page = ada.get(&format!("/console/requests/{id}")).await;
    assert!(page.body.contains("badge-overdue"));
    assert!(page.body.contains("<dt>Expires</dt>"));

    // Under the default service levels a new request is not overdue.
    let calm = TestApp::start(b).await;
    let c = calm.customer("Acme").await;
    calm.pending_request(&c, "+15551234567", REASON).await;
    let queue = calm.signed_in().await.get("/console/requests").await;
    assert!(!queue.body.contains("badge-overdue"));
}

async fn expired_requests_have_their_tab_and_badge_and_no_forms(b: Backend) {
    let app = TestApp::start(b).await;
    let c = app.customer("Acme").await;
    let id = app.pending_request(&c, "+15551234567", REASON).await;
    // The sweep, a month from now.
    let report = app
        .store
        .sweep_service_levels(now() + TimeDelta::days(31))
        .await
        .unwrap();
    assert_eq!(report.expired, 1);
    let ada = app.signed_in().await;
    let pending = ada.get("/console/requests").await;
    assert!(pending.body.contains("No requests here."));
    let expired = ada.get("/console/requests?status=expired").await;
    assert!(expired.body.contains("+15551234567"));
    assert!(expired.body.contains("badge badge-expired"));
    assert!(
        expired
            .body
            .contains("class=\"tab tab-expired\" href=\"/console/requests?status=expired\" aria-current=\"page\""),
        "{}",
        expired.body
    );
    let page = ada.get(&format!("/console/requests/{id}")).await;
    assert!(page.body.contains("badge badge-expired"));
    assert!(!page.body.contains("/approve\"") && !page.body.contains("/reject\""));
    assert!(
        page.body
            .contains("<strong>request.expired</strong> by releasedesk"),
        "{}",
        page.body
    );
    // The number is free for a new request.
    let n = app.store.find_request(id).await.unwrap().phone_number_id;
    app.request(&c, n, REASON).await;
}
