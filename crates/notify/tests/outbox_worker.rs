//! The outbox worker against a real database (SQLite, and PostgreSQL with `TEST_DATABASE_URL`)
//! and a real SMTP server in the test process. One test per rule of DESIGN §4.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use releasedesk_domain::{
    ApprovalNote, PhoneNumberStatus, RejectionNote, RequestEvent, RequestStatus,
};
use releasedesk_notify::{
    Carrier, CarrierError, CarrierReceipt, NumberRelease, RecordingCarrier, Worker,
};
use releasedesk_store::{Actor, AuditAction, EmailKind, OutboxKind, OutboxState, Store, now};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const REASON: &str = "We moved our support line to another provider last month.";

/// What a snapshot shows of a received email: the envelope-ish headers and the text part.
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

async fn rejected_request(store: &Store, note: &str) -> releasedesk_store::ReleaseRequest {
    let c = customer(store, "ops@customer.example").await;
    let number = number(store, &c, 7).await;
    let req = request(store, &c, number, REASON).await;
    store
        .reject(&staff(), req.id, RejectionNote::parse(note).unwrap())
        .await
        .unwrap()
}

on_both_backends!(
    approval_emails_the_customer_once_then_the_job_releases_the_number,
    rejection_emails_the_staff_note_and_escapes_customer_text_in_html,
    new_request_emails_the_support_inbox_with_a_console_link,
    smtp_down_at_first_is_retried_soon_and_delivered_once_when_back,
    smtp_421_is_retried,
    smtp_550_goes_dead_and_a_console_retry_delivers_it,
    without_smtp_url_each_email_is_one_eml_file_named_by_its_row,
    several_workers_never_send_one_row_twice,
    a_crashed_workers_row_is_delivered_after_the_lease_with_the_same_message_id,
    a_row_whose_last_attempt_never_reports_back_goes_dead,
    shutdown_finishes_the_row_in_hand_and_hands_back_the_rest,
    a_carrier_refusal_makes_the_release_job_dead,
);

async fn approval_emails_the_customer_once_then_the_job_releases_the_number(db: &TestDb) {
    let store = &db.store;
    let smtp = SmtpServer::start();
    let c = customer(store, "ops@customer.example").await;
    let number = number(store, &c, 1).await;
    draft_agent_holding(store, &c, number).await;
    let req = request(store, &c, number, REASON).await;
    let note = ApprovalNote::parse("Releasing it today. Thanks for tidying up.").unwrap();
    store
        .approve(&staff(), req.id, &req.phone_number, Some(note))
        .await
        .unwrap();
    let approved_row =
        outbox_row(store, req.id, OutboxKind::Email(EmailKind::RequestApproved)).await;
    let worker = smtp_worker(store, &smtp);

    // One pass carries out both rows the approval wrote: the email and the release job.
    assert_eq!(worker.run_once().await.unwrap(), 2);
    let received = smtp.received();
    assert_eq!(received.len(), 1, "exactly one email so far: {received:?}");
    let mail = &received[0];
    assert_eq!(mail.to, ["ops@customer.example"]);
    let parsed = mail.parsed();
    assert_eq!(
        parsed.header("Message-ID"),
        Some(message_id_of(approved_row.id))
    );
    assert!(
        parsed
            .header("Content-Type")
            .unwrap()
            .starts_with("multipart/alternative")
    );
    assert_eq!(parsed.parts.len(), 2, "text and HTML");
    assert!(
        parsed
            .part("text/plain")
            .content_type
            .contains("charset=utf-8")
    );
    let api_link = format!(
        "{PUBLIC_URL}/api/v1/phone-numbers/release-requests/{}",
        req.id
    );
    assert!(
        parsed.html().contains(&format!("href=\"{api_link}\"")),
        "{}",
        parsed.html()
    );
    assert!(parsed.html().contains("Releasing it today."));
    snapshot_settings().bind(|| insta::assert_snapshot!("approved_email", summary(mail)));
    assert_eq!(
        store
            .outbox_row(approved_row.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        OutboxState::Sent
    );

    // The release job ran in the same pass: request, number and assignments, in one go.
    let released = store.find_request(req.id).await.unwrap();
    assert_eq!(released.status, RequestStatus::Released);
    assert!(released.released_at.is_some_and(|at| at <= now()));
    let number_now = store.get_phone_number(c.env.id, number).await.unwrap();
    assert_eq!(number_now.current_status, PhoneNumberStatus::Released);
    assert!(
        number_now.agents.is_empty(),
        "assignments removed: {:?}",
        number_now.agents
    );
    let job = outbox_row(store, req.id, OutboxKind::ReleaseNumber).await;
    assert_eq!((job.state, job.attempts), (OutboxState::Sent, 1));
    let timeline = store.request_timeline(req.id).await.unwrap();
    let event = timeline
        .iter()
        .find(|e| e.action == AuditAction::Request(RequestEvent::Released).name())
        .expect("a released audit event");
    assert!(
        event
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains(RecordingCarrier::NAME)
    );

    // The release enqueued the "released" email; the next pass sends it, and nothing more.
    assert_eq!(drain(&worker).await, 1);
    let received = smtp.received();
    assert_eq!(received.len(), 2);
    let released_mail = &received[1];
    let released_row =
        outbox_row(store, req.id, OutboxKind::Email(EmailKind::RequestReleased)).await;
    assert_eq!(
        released_mail.parsed().header("Message-ID"),
        Some(message_id_of(released_row.id))
    );
    snapshot_settings().bind(|| insta::assert_snapshot!("released_email", summary(released_mail)));
    let subjects: Vec<_> = received
        .iter()
        .map(|m| m.parsed().header("Subject").unwrap())
        .collect();
    let expected = [
        format!("Release of {} approved", req.phone_number),
        format!("{} has been released", req.phone_number),
    ];
    assert_eq!(subjects, expected, "each email went out once");
}

async fn rejection_emails_the_staff_note_and_escapes_customer_text_in_html(db: &TestDb) {
    let store = &db.store;
    let smtp = SmtpServer::start();
    let c = customer(store, "ops@customer.example").await;
    let number = number(store, &c, 2).await;
    let reason = "Closing the <Berlin> office & its \"hotline\" for good.";
    let req = request(store, &c, number, reason).await;
    let note = "An active agent <Reception bot> still answers on this number.";
    store
        .reject(&staff(), req.id, RejectionNote::parse(note).unwrap())
        .await
        .unwrap();
    let worker = smtp_worker(store, &smtp);

    assert_eq!(drain(&worker).await, 1);
    let received = smtp.received();
    assert_eq!(received.len(), 1);
    let parsed = received[0].parsed();
    // Text as written in the text part; escaped in the HTML part.
    assert!(parsed.text().contains(reason));
    assert!(parsed.text().contains(note));
    assert!(
        parsed
            .html()
            .contains("Closing the &#60;Berlin&#62; office &#38; its &#34;hotline&#34;"),
        "{}",
        parsed.html()
    );
    assert!(!parsed.html().contains("<Berlin>") && !parsed.html().contains("<Reception bot>"));
    snapshot_settings().bind(|| insta::assert_snapshot!("rejected_email", summary(&received[0])));
    // A rejection releases nothing.
    assert_eq!(
        store.find_request(req.id).await.unwrap().status,
        RequestStatus::Rejected
    );
}

async fn new_request_emails_the_support_inbox_with_a_console_link(db: &TestDb) {
    let store = db.store_with_support_inbox().await;
    let smtp = SmtpServer::start();
    let c = customer(&store, "ops@customer.example").await;
    let number = number(&store, &c, 3).await;
    let req = request(&store, &c, number, REASON).await;
    let worker = smtp_worker(&store, &smtp);

    assert_eq!(drain(&worker).await, 1);
    let received = smtp.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].to, [SUPPORT_INBOX]);
    let parsed = received[0].parsed();
    let console_link = format!("{PUBLIC_URL}/console/requests/{}", req.id);
    assert!(parsed.text().contains(&console_link));
    assert!(parsed.html().contains(&format!("href=\"{console_link}\"")));
    snapshot_settings()
        .bind(|| insta::assert_snapshot!("request_created_email", summary(&received[0])));
    store.close().await;
}

async fn smtp_down_at_first_is_retried_soon_and_delivered_once_when_back(db: &TestDb) {
    let store = &db.store;
    let req = rejected_request(store, "The number is still on your active IVR flow.").await;
    let row = outbox_row(store, req.id, OutboxKind::Email(EmailKind::RequestRejected)).await;
    let port = SmtpServer::unused_port();
    let config = config(Some(smtp_url(port)), &std::env::temp_dir());
    let worker = Worker::new(store.clone(), config, Arc::new(RecordingCarrier)).unwrap();

    // Nothing listens: a transient failure, due again within a few seconds.
    let before = now();
    assert_eq!(worker.run_once().await.unwrap(), 1);
    let failed = store.outbox_row(row.id).await.unwrap().unwrap();
    assert_eq!((failed.state, failed.attempts), (OutboxState::Pending, 1));
    assert!(failed.last_error.is_some());
    assert_eq!(failed.lease_owner, None);
    let delay = (failed.next_attempt_at - before).to_std().unwrap();
    assert!(
        delay >= Duration::from_millis(1500) && delay <= Duration::from_secs(5),
        "first retry after {delay:?}"
    );
    // Not due yet: a pass now does nothing.
    assert_eq!(worker.run_once().await.unwrap(), 0);

    let smtp = SmtpServer::start_on(port);
    run_until(&worker, Duration::from_secs(10), || {
        smtp.received_count() > 0
    })
    .await;
    let sent = store.outbox_row(row.id).await.unwrap().unwrap();
    assert_eq!((sent.state, sent.attempts), (OutboxState::Sent, 2));
    assert_eq!(drain(&worker).await, 0);
    assert_eq!(smtp.received_count(), 1, "delivered exactly once");
    assert_eq!(
        smtp.received()[0].parsed().header("Message-ID"),
        Some(message_id_of(row.id))
    );
}

async fn smtp_421_is_retried(db: &TestDb) {
    let store = &db.store;
    let smtp = SmtpServer::start();
    smtp.script(&[Reply::Unavailable]);
    let req = rejected_request(store, "The number is still on your active IVR flow.").await;
    let row = outbox_row(store, req.id, OutboxKind::Email(EmailKind::RequestRejected)).await;
    let worker = smtp_worker(store, &smtp);

    assert_eq!(worker.run_once().await.unwrap(), 1);
    let failed = store.outbox_row(row.id).await.unwrap().unwrap();
    assert_eq!(failed.state, OutboxState::Pending);
    assert!(
        failed
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("421"),
        "{:?}",
        failed.last_error
    );
    assert_eq!((smtp.refused_count(), smtp.received_count()), (1, 0));

    run_until(&worker, Duration::from_secs(10), || {
        smtp.received_count() > 0
    })
    .await;
    assert_eq!(
        store.outbox_row(row.id).await.unwrap().unwrap().state,
        OutboxState::Sent
    );
    assert_eq!(drain(&worker).await, 0);
    assert_eq!(smtp.received_count(), 1);
}

async fn smtp_550_goes_dead_and_a_console_retry_delivers_it(db: &TestDb) {
    let store = &db.store;
    let smtp = SmtpServer::start();
    smtp.script(&[Reply::NoMailbox]);
    let req = rejected_request(store, "The number is still on your active IVR flow.").await;
    let row = outbox_row(store, req.id, OutboxKind::Email(EmailKind::RequestRejected)).await;
    let worker = smtp_worker(store, &smtp);

    assert_eq!(worker.run_once().await.unwrap(), 1);
    let dead = store.outbox_row(row.id).await.unwrap().unwrap();
    assert_eq!(
        (dead.state, dead.attempts),
        (OutboxState::Dead, 1),
        "one attempt, no retries: {dead:?}"
    );
    assert!(
        dead.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("550"),
        "{:?}",
        dead.last_error
    );
    assert!(dead.completed_at.is_some());
    // Dead rows stay dead.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(drain(&worker).await, 0);
    assert_eq!(smtp.received_count(), 0);

    store.outbox_retry(row.id, &Actor::Cli).await.unwrap();
    assert_eq!(drain(&worker).await, 1);
    assert_eq!(
        store.outbox_row(row.id).await.unwrap().unwrap().state,
        OutboxState::Sent
    );
    assert_eq!(smtp.received_count(), 1);
    assert_eq!(
        smtp.received()[0].parsed().header("Message-ID"),
        Some(message_id_of(row.id))
    );
}

async fn without_smtp_url_each_email_is_one_eml_file_named_by_its_row(db: &TestDb) {
    let store = &db.store;
    let mail_dir = tempfile::tempdir().unwrap();
    // The folder does not exist yet: the worker makes it.
    let mail_dir = mail_dir.path().join("mail-outbox");
    let c = customer(store, "ops@customer.example").await;
    let number = number(store, &c, 4).await;
    let req = request(store, &c, number, REASON).await;
    store
        .approve(&staff(), req.id, &req.phone_number, None)
        .await
        .unwrap();
    let worker = Worker::new(
        store.clone(),
        config(None, &mail_dir),
        Arc::new(RecordingCarrier),
    )
    .unwrap();

    assert_eq!(
        drain(&worker).await,
        3,
        "approved email, release job, released email"
    );
    let mut files: Vec<_> = std::fs::read_dir(&mail_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let approved = outbox_row(store, req.id, OutboxKind::Email(EmailKind::RequestApproved)).await;
    let released = outbox_row(store, req.id, OutboxKind::Email(EmailKind::RequestReleased)).await;
    let mut expected = vec![
        format!("{}.eml", approved.id),
        format!("{}.eml", released.id),
    ];
    expected.sort();
    assert_eq!(
        files, expected,
        "one file per email, no temporary files left"
    );
    let raw = std::fs::read_to_string(mail_dir.join(format!("{}.eml", approved.id))).unwrap();
    let parsed = ParsedEmail::parse(&raw);
    assert_eq!(
        parsed.header("Message-ID"),
        Some(message_id_of(approved.id))
    );
    assert_eq!(parsed.header("To").as_deref(), Some("ops@customer.example"));
    assert!(parsed.text().contains("was approved"));
    assert!(
        !parsed.text().contains("Note from our support team"),
        "no note was given"
    );
}

async fn several_workers_never_send_one_row_twice(db: &TestDb) {
    const ROWS: usize = 30;
    let smtp = SmtpServer::start();
    let store = &db.store;
    let c = customer(store, "ops@customer.example").await;
    let mut rows = Vec::new();
    for n in 0..ROWS {
        let number = number(store, &c, 100 + n as u32).await;
        let req = request(store, &c, number, REASON).await;
        store
            .reject(
                &staff(),
                req.id,
                RejectionNote::parse("Still routed from your main IVR.").unwrap(),
            )
            .await
            .unwrap();
        rows.push(
            outbox_row(store, req.id, OutboxKind::Email(EmailKind::RequestRejected))
                .await
                .id,
        );
    }

    // Three workers, each with its own connection pool, as three processes would be.
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let store = db.another_store().await;
        let worker = smtp_worker(&store, &smtp);
        tasks.push(tokio::spawn(worker.run(shutdown.clone())));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while smtp.received_count() < ROWS && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A little longer: a duplicate would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }

    let mut ids: Vec<String> = smtp
        .received()
        .iter()
        .map(|m| m.parsed().header("Message-ID").unwrap())
        .collect();
    assert_eq!(ids.len(), ROWS, "every row delivered, none twice");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), ROWS, "no Message-ID twice");
    let mut expected: Vec<String> = rows.iter().map(|id| message_id_of(*id)).collect();
    expected.sort();
    assert_eq!(ids, expected);
    for id in rows {
        let row = store.outbox_row(id).await.unwrap().unwrap();
        assert_eq!((row.state, row.attempts), (OutboxState::Sent, 1), "{row:?}");
    }
}

async fn a_crashed_workers_row_is_delivered_after_the_lease_with_the_same_message_id(db: &TestDb) {
    let store = &db.store;
    let smtp = SmtpServer::start();
    let req = rejected_request(store, "The number is still on your active IVR flow.").await;
    let row = outbox_row(store, req.id, OutboxKind::Email(EmailKind::RequestRejected)).await;

    // A worker claims the row, then dies before doing anything with it.
    let lease = Duration::from_secs(2);
    let claimed = store
        .claim_outbox(
            "crashed-worker",
            now() + chrono::Duration::from_std(lease).unwrap(),
            10,
        )
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|r| r.id).collect::<Vec<_>>(), [row.id]);

    let worker = smtp_worker(store, &smtp);
    // While the lease holds, nobody else takes the row.
    assert_eq!(worker.run_once().await.unwrap(), 0);
    assert_eq!(smtp.received_count(), 0);

    run_until(&worker, Duration::from_secs(10), || {
        smtp.received_count() > 0
    })
    .await;
    let sent = store.outbox_row(row.id).await.unwrap().unwrap();
    assert_eq!(
        (sent.state, sent.attempts),
        (OutboxState::Sent, 2),
        "the crashed attempt counts"
    );
    assert_eq!(smtp.received_count(), 1);
    assert_eq!(
        smtp.received()[0].parsed().header("Message-ID"),
        Some(message_id_of(row.id))
    );
    // The crashed worker, should it come back, cannot complete what it lost.
    assert!(
        !store
            .outbox_mark_sent(row.id, "crashed-worker")
            .await
            .unwrap()
    );
}

async fn a_row_whose_last_attempt_never_reports_back_goes_dead(db: &TestDb) {
    let store = &db.store;
    let smtp = SmtpServer::start();
    let req = rejected_request(store, "The number is still on your active IVR flow.").await;
    let row = outbox_row(store, req.id, OutboxKind::Email(EmailKind::RequestRejected)).await;

    // Every allowed attempt is claimed by a worker that dies (as a row that crashes its
    // worker would do); each lease is already over.
    let expired = now() - chrono::Duration::seconds(1);
    for _ in 0..row.max_attempts {
        assert_eq!(
            store
                .claim_outbox("doomed-worker", expired, 10)
                .await
                .unwrap()
                .len(),
            1
        );
    }

    let worker = smtp_worker(store, &smtp);
    assert_eq!(worker.run_once().await.unwrap(), 0, "not claimed once more");
    let dead = store.outbox_row(row.id).await.unwrap().unwrap();
    assert_eq!(dead.state, OutboxState::Dead, "{dead:?}");
    assert!(
        dead.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("lease")
    );
    assert_eq!(dead.lease_owner, None);

    // Like any dead row, a console retry sends it.
    store.outbox_retry(row.id, &Actor::Cli).await.unwrap();
    assert_eq!(drain(&worker).await, 1);
    assert_eq!(smtp.received_count(), 1);
}

/// A carrier that waits for the test's go-ahead, so a test can act while a release is in hand.
struct GatedCarrier {
    started: Notify,
    go: Notify,
    calls: AtomicUsize,
}

#[async_trait]
impl Carrier for GatedCarrier {
    async fn release(&self, _number: &NumberRelease) -> Result<CarrierReceipt, CarrierError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.started.notify_one();
        self.go.notified().await;
        Ok(CarrierReceipt {
            carrier: "gated".into(),
            reference: Some("ref-1".into()),
        })
    }
}

async fn shutdown_finishes_the_row_in_hand_and_hands_back_the_rest(db: &TestDb) {
    let store = &db.store;
    let c = customer(store, "ops@customer.example").await;
    let mut requests = Vec::new();
    for n in 0..3 {
        let number = number(store, &c, 200 + n).await;
        let req = request(store, &c, number, REASON).await;
        requests.push(req.id);
    }
    let mail_dir = tempfile::tempdir().unwrap();
    for id in &requests {
        let req = store.find_request(*id).await.unwrap();
        store
            .approve(&staff(), *id, &req.phone_number, None)
            .await
            .unwrap();
    }
    let carrier = Arc::new(GatedCarrier {
        started: Notify::new(),
        go: Notify::new(),
        calls: AtomicUsize::new(0),
    });
    let worker = Worker::new(
        store.clone(),
        config(None, mail_dir.path()),
        carrier.clone(),
    )
    .unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(worker.run(shutdown.clone()));

    // The worker holds a batch of all six rows (approved email, release job, for each request)
    // and is inside the first release: stop it.
    tokio::time::timeout(Duration::from_secs(10), carrier.started.notified())
        .await
        .unwrap();
    shutdown.cancel();
    carrier.go.notify_one();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();

    assert_eq!(
        carrier.calls.load(Ordering::SeqCst),
        1,
        "no new row started after shutdown"
    );
    let mut done = 0;
    for id in &requests {
        for row in store.outbox_for_request(*id).await.unwrap() {
            match row.state {
                OutboxState::Sent => done += 1,
                OutboxState::Pending => {
                    // Handed back: free for the next worker, the attempt not counted.
                    assert_eq!(
                        (row.lease_owner.as_deref(), row.attempts),
                        (None, 0),
                        "{row:?}"
                    );
                }
                OutboxState::Dead => panic!("{row:?}"),
            }
        }
    }
    // Done: the first approved email, and the release job that was in hand when the shutdown
    // came (which enqueued its "released" email, pending like the handed-back rows).
    assert_eq!(done, 2);
    let released = count_released(store, &requests).await;
    assert_eq!(released, 1, "the release in hand was completed");
}

async fn count_released(store: &Store, requests: &[releasedesk_domain::RequestId]) -> usize {
    let mut n = 0;
    for id in requests {
        if store.find_request(*id).await.unwrap().status == RequestStatus::Released {
            n += 1;
        }
    }
    n
}

struct RefusingCarrier;

#[async_trait]
impl Carrier for RefusingCarrier {
    async fn release(&self, number: &NumberRelease) -> Result<CarrierReceipt, CarrierError> {
        Err(CarrierError::Permanent(format!(
            "{} is not on this account",
            number.phone_number
        )))
    }
}

async fn a_carrier_refusal_makes_the_release_job_dead(db: &TestDb) {
    let store = &db.store;
    let mail_dir = tempfile::tempdir().unwrap();
    let c = customer(store, "ops@customer.example").await;
    let number = number(store, &c, 5).await;
    let req = request(store, &c, number, REASON).await;
    store
        .approve(&staff(), req.id, &req.phone_number, None)
        .await
        .unwrap();
    let worker = Worker::new(
        store.clone(),
        config(None, mail_dir.path()),
        Arc::new(RefusingCarrier),
    )
    .unwrap();

    assert_eq!(drain(&worker).await, 2);
    let job = outbox_row(store, req.id, OutboxKind::ReleaseNumber).await;
    assert_eq!(job.state, OutboxState::Dead);
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("not on this account")
    );
    // Nothing was released, and the number is still the customer's.
    assert_eq!(
        store.find_request(req.id).await.unwrap().status,
        RequestStatus::Approved
    );
    let number_now = store.get_phone_number(c.env.id, number).await.unwrap();
    assert_eq!(number_now.current_status, PhoneNumberStatus::Active);
}
