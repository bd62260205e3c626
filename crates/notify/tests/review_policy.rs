//! The review policy's emails, through the worker and a real SMTP server, on SQLite and
//! PostgreSQL: the approved email names both reviewers of a four-eyes approval; an overdue
//! request reminds the support inbox once; an ignored one expires and tells the customer; sweeps
//! running at once send each email once.
//!
//! Service levels are set to zero (or the sweep is given a clock a month ahead), so nothing
//! waits for real time to pass.

mod common;

use chrono::TimeDelta;
use common::*;
use releasedesk_domain::{EmailAddress, RequiredApprovals, ServiceLevels, StaffId};
use releasedesk_store::{Actor, EmailKind, OutboxKind, Store, StoreOptions, now};

const REASON: &str = "We moved our support line to another provider last month.";

on_both_backends!(
    the_approved_email_names_both_reviewers_of_a_four_eyes_approval,
    an_overdue_request_reminds_the_support_inbox_once,
    an_ignored_request_expires_and_the_customer_is_emailed_once,
    sweeps_running_at_once_send_each_email_once,
    no_reminder_without_a_support_inbox_and_nothing_when_levels_are_off,
);

fn summary(mail: &Received) -> String {
    let parsed = mail.parsed();
    let header = |name: &str| parsed.header(name).unwrap_or_default();
    format!(
        "From: {}\nTo: {}\nSubject: {}\n\n{}",
        header("From"),
        header("To"),
        header("Subject"),
        parsed.text()
    )
}

/// Another store on the test's database with these service levels and the support inbox.
async fn store_with(db: &TestDb, levels: ServiceLevels, support: bool) -> Store {
    let options = StoreOptions {
        support_email: support.then(|| EmailAddress::parse(SUPPORT_INBOX).unwrap()),
        service_levels: levels,
        ..StoreOptions::default()
    };
    Store::connect(&db.url, options).await.unwrap()
}

fn levels(remind_after: Option<TimeDelta>, expire_after: Option<TimeDelta>) -> ServiceLevels {
    ServiceLevels {
        remind_after,
        expire_after,
    }
}

fn reviewer(email: &str) -> Actor {
    Actor::Staff {
        id: StaffId::new(),
        email: email.into(),
    }
}

async fn the_approved_email_names_both_reviewers_of_a_four_eyes_approval(db: &TestDb) {
    let store = &db.store;
    let smtp = SmtpServer::start();
    let c = customer(store, "ops@customer.example").await;
    store
        .set_required_approvals(&Actor::Cli, c.env.id, RequiredApprovals::TWO)
        .await
        .unwrap();
    let n = number(store, &c, 1).await;
    let req = request(store, &c, n, REASON).await;
    let first = store
        .approve(
            &reviewer("ada@support.test"),
            req.id,
            &req.phone_number,
            None,
        )
        .await
        .unwrap();
    assert_eq!(first.status.as_str(), "pending");
    let worker = smtp_worker(store, &smtp);
    assert_eq!(drain(&worker).await, 0, "a first approval sends nothing");
    store
        .approve(
            &reviewer("bob@support.test"),
            req.id,
            &req.phone_number,
            None,
        )
        .await
        .unwrap();
    drain(&worker).await;
    let received = smtp.received();
    let approved: Vec<_> = received
        .iter()
        .filter(|m| {
            m.parsed()
                .header("Subject")
                .is_some_and(|s| s.ends_with("approved"))
        })
        .collect();
    assert_eq!(approved.len(), 1, "{received:?}");
    // Reviewers unknown to the staff table are named by their email.
    assert!(
        approved[0]
            .parsed()
            .text()
            .contains("was approved by ada@support.test and bob@support.test."),
        "{}",
        approved[0].parsed().text()
    );
    snapshot_settings()
        .bind(|| insta::assert_snapshot!("approved_four_eyes_email", summary(approved[0])));
}

async fn an_overdue_request_reminds_the_support_inbox_once(db: &TestDb) {
    let store = store_with(db, levels(Some(TimeDelta::hours(24)), None), true).await;
    let smtp = SmtpServer::start();
    let c = customer(&store, "ops@customer.example").await;
    let n = number(&store, &c, 1).await;
    let req = request(&store, &c, n, REASON).await;
    let worker = smtp_worker(&store, &smtp);
    drain(&worker).await; // the "new request" email
    assert_eq!(smtp.received_count(), 1);

    // Not yet overdue: nothing.
    assert_eq!(store.sweep_service_levels(now()).await.unwrap().reminded, 0);
    // A day and a bit later: one reminder, however often the sweep runs.
    let later = now() + TimeDelta::hours(25);
    assert_eq!(store.sweep_service_levels(later).await.unwrap().reminded, 1);
    assert_eq!(store.sweep_service_levels(later).await.unwrap().reminded, 0);
    assert_eq!(
        store
            .sweep_service_levels(later + TimeDelta::days(3))
            .await
            .unwrap()
            .reminded,
        0
    );
    drain(&worker).await;
    let received = smtp.received();
    assert_eq!(received.len(), 2, "{received:?}");
    let reminder = &received[1];
    assert_eq!(reminder.to, [SUPPORT_INBOX]);
    let text = reminder.parsed().text().to_owned();
    assert!(
        text.contains(&format!("{PUBLIC_URL}/console/requests/{}", req.id)),
        "{text}"
    );
    assert!(!text.contains("Expires:"), "no expiry is set: {text}");
    snapshot_settings().bind(|| insta::assert_snapshot!("overdue_email", summary(reminder)));
    let timeline = store.request_timeline(req.id).await.unwrap();
    let reminded: Vec<_> = timeline
        .iter()
        .filter(|e| e.action == "request.reminded")
        .collect();
    assert_eq!(reminded.len(), 1);
    assert_eq!(reminded[0].actor_kind, "system");
    assert!(store.reminded_at(req.id).await.unwrap().is_some());
    assert_eq!(
        store.find_request(req.id).await.unwrap().status.as_str(),
        "pending",
        "a reminder decides nothing"
    );
    store.close().await;
}

async fn an_ignored_request_expires_and_the_customer_is_emailed_once(db: &TestDb) {
    // Expire as soon as the sweep looks: no waiting.
    let store = store_with(db, levels(None, Some(TimeDelta::zero())), false).await;
    let smtp = SmtpServer::start();
    let c = customer(&store, "ops@customer.example").await;
    let n = number(&store, &c, 1).await;
    let req = request(&store, &c, n, REASON).await;
    let worker = smtp_worker(&store, &smtp);
    let report = worker.sweep_once().await.unwrap();
    assert_eq!((report.expired, report.reminded), (1, 0));
    assert_eq!(worker.sweep_once().await.unwrap().expired, 0);

    let expired = store.find_request(req.id).await.unwrap();
    assert_eq!(expired.status.as_str(), "expired");
    assert!(expired.resolved_at.is_some());
    assert_eq!(expired.reviewed_by, None);
    let timeline = store.request_timeline(req.id).await.unwrap();
    let event = timeline
        .iter()
        .find(|e| e.action == "request.expired")
        .unwrap();
    assert_eq!(
        (event.actor_kind.as_str(), event.actor_label.as_str()),
        ("system", "releasedesk")
    );

    drain(&worker).await;
    let received = smtp.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].to, ["ops@customer.example"]);
    assert_eq!(
        received[0].parsed().header("Message-ID"),
        Some(message_id_of(
            outbox_row(&store, req.id, OutboxKind::Email(EmailKind::RequestExpired))
                .await
                .id
        ))
    );
    snapshot_settings().bind(|| insta::assert_snapshot!("expired_email", summary(&received[0])));

    // The number is free: a new request for it is accepted.
    let again = request(&store, &c, n, REASON).await;
    assert_eq!(again.status.as_str(), "pending");
    store.close().await;
}

async fn sweeps_running_at_once_send_each_email_once(db: &TestDb) {
    const REQUESTS: u32 = 12;
    let setup = store_with(db, levels(None, None), true).await;
    let c = customer(&setup, "ops@customer.example").await;
    let mut ids = Vec::new();
    for i in 0..REQUESTS {
        let n = number(&setup, &c, i).await;
        ids.push(request(&setup, &c, n, REASON).await.id);
    }
    // Two "instances" (pools of their own) sweep at the same moment, several times over:
    // first as reminders come due, then as everything expires.
    for at in [now() + TimeDelta::hours(25), now() + TimeDelta::days(31)] {
        let sweeper = || async {
            let store = store_with(db, ServiceLevels::default(), true).await;
            let mut total = releasedesk_store::SweepReport::default();
            for _ in 0..3 {
                let r = store.sweep_service_levels(at).await.unwrap();
                total.reminded += r.reminded;
                total.expired += r.expired;
            }
            store.close().await;
            total
        };
        let (one, two) = tokio::join!(sweeper(), sweeper());
        let reports = [one, two];
        let reminded: usize = reports.iter().map(|r| r.reminded).sum();
        let expired: usize = reports.iter().map(|r| r.expired).sum();
        if at < now() + TimeDelta::days(2) {
            assert_eq!((reminded, expired), (REQUESTS as usize, 0), "{reports:?}");
        } else {
            assert_eq!((reminded, expired), (0, REQUESTS as usize), "{reports:?}");
        }
    }
    let smtp = SmtpServer::start();
    drain(&smtp_worker(&setup, &smtp)).await;
    let received = smtp.received();
    let count = |suffix: &str| {
        received
            .iter()
            .filter(|m| {
                m.parsed()
                    .header("Subject")
                    .is_some_and(|s| s.contains(suffix))
            })
            .count()
    };
    assert_eq!(count("Overdue release request"), REQUESTS as usize);
    assert_eq!(count("expired"), REQUESTS as usize);
    for id in ids {
        for kind in [EmailKind::RequestOverdue, EmailKind::RequestExpired] {
            outbox_row(&setup, id, OutboxKind::Email(kind)).await; // exactly one each
        }
        let timeline = setup.request_timeline(id).await.unwrap();
        for action in ["request.reminded", "request.expired"] {
            assert_eq!(
                timeline.iter().filter(|e| e.action == action).count(),
                1,
                "{action}"
            );
        }
    }
    setup.close().await;
}

async fn no_reminder_without_a_support_inbox_and_nothing_when_levels_are_off(db: &TestDb) {
    let c = customer(&db.store, "ops@customer.example").await;
    let n = number(&db.store, &c, 1).await;
    let req = request(&db.store, &c, n, REASON).await;
    let far = now() + TimeDelta::days(365);
    let without_inbox = store_with(db, levels(Some(TimeDelta::zero()), None), false).await;
    assert_eq!(
        without_inbox.sweep_service_levels(far).await.unwrap(),
        Default::default()
    );
    let off = store_with(db, ServiceLevels::OFF, true).await;
    assert_eq!(
        off.sweep_service_levels(far).await.unwrap(),
        Default::default()
    );
    assert_eq!(
        db.store.find_request(req.id).await.unwrap().status.as_str(),
        "pending"
    );
    assert!(db.store.reminded_at(req.id).await.unwrap().is_none());
    // Once an inbox is set, the overdue request gets its reminder after all.
    let with_inbox = store_with(db, levels(Some(TimeDelta::zero()), None), true).await;
    assert_eq!(
        with_inbox.sweep_service_levels(far).await.unwrap().reminded,
        1
    );
    for s in [without_inbox, off, with_inbox] {
        s.close().await;
    }
}
