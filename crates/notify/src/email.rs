//! Typed emails: which outbox kind becomes which email, what it says (askama templates under
//! `templates/email/<name>/`), and how it is put together as a MIME message.

use askama::Template;
use chrono::{DateTime, SecondsFormat, Utc};
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use releasedesk_domain::{OutboxId, RequestId};
use releasedesk_store::{Audience, EnvironmentInfo, ReleaseRequest};

pub use releasedesk_store::EmailKind;

/// What every email template may show. Strings, already formatted, so the templates stay free
/// of formatting logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailContext {
    pub request_id: String,
    pub phone_number: String,
    pub environment_name: String,
    /// The customer's reason, as written (escaped by the HTML templates, not by the text ones).
    pub reason: String,
    /// The staff note meant for the customer (required on a rejection, optional on approval).
    pub review_note: Option<String>,
    pub requested_at: String,
    pub resolved_at: Option<String>,
    pub released_at: Option<String>,
    /// Where the recipient can look the request up.
    pub link: String,
    /// The reviewers whose approvals approved the request ("approved" email).
    pub approved_by: Vec<String>,
    /// When the request expires if nobody decides (the overdue reminder).
    pub expires_at: Option<String>,
}

impl EmailContext {
    /// Builds the context for `kind` from the request as it is now. `public_url` is the base of
    /// the links (no trailing slash needed).
    pub fn new(
        kind: EmailKind,
        request: &ReleaseRequest,
        environment: &EnvironmentInfo,
        public_url: &str,
    ) -> Self {
        Self {
            request_id: request.id.to_string(),
            phone_number: request.phone_number.clone(),
            environment_name: environment.name.clone(),
            reason: request.reason.clone(),
            review_note: request.review_note.clone(),
            requested_at: timestamp(request.requested_at),
            resolved_at: request.resolved_at.map(timestamp),
            released_at: request.released_at.map(timestamp),
            link: request_link(kind, public_url, request.id),
            approved_by: Vec::new(),
            expires_at: None,
        }
    }

    /// The reviewers whose approvals approved the request, as the outbox row recorded them.
    pub fn approved_by(mut self, names: &[String]) -> Self {
        self.approved_by = names.to_vec();
        self
    }

    /// When the request expires if nobody decides.
    pub fn expires_at(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.expires_at = at.map(timestamp);
        self
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn request_link(kind: EmailKind, public_url: &str, id: RequestId) -> String {
    let base = public_url.trim_end_matches('/');
    // Customers have no console: their emails link to the API resource.
    match kind.audience() {
        Audience::Staff => format!("{base}/console/requests/{id}"),
        Audience::Customer => format!("{base}/api/v1/phone-numbers/release-requests/{id}"),
    }
}

/// An email rendered from its templates, not yet addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Three templates per email, each an askama struct over the same context. The `.txt` ones are
/// not escaped (askama's text escaper for that extension); the `.html` ones are.
macro_rules! email_templates {
    ($($subject:ident = $subject_path:literal,
       $text:ident = $text_path:literal,
       $html:ident = $html_path:literal;)*) => {$(
        #[derive(Template)]
        #[template(path = $subject_path)]
        struct $subject<'a> {
            e: &'a EmailContext,
        }

        #[derive(Template)]
        #[template(path = $text_path)]
        struct $text<'a> {
            e: &'a EmailContext,
        }

        #[derive(Template)]
        #[template(path = $html_path)]
        struct $html<'a> {
            e: &'a EmailContext,
            subject: &'a str,
        }
    )*};
}

email_templates!(
    CreatedSubject = "email/request_created/subject.txt",
    CreatedText = "email/request_created/body.txt",
    CreatedHtml = "email/request_created/body.html";
    ApprovedSubject = "email/request_approved/subject.txt",
    ApprovedText = "email/request_approved/body.txt",
    ApprovedHtml = "email/request_approved/body.html";
    RejectedSubject = "email/request_rejected/subject.txt",
    RejectedText = "email/request_rejected/body.txt",
    RejectedHtml = "email/request_rejected/body.html";
    ReleasedSubject = "email/request_released/subject.txt",
    ReleasedText = "email/request_released/body.txt",
    ReleasedHtml = "email/request_released/body.html";
    ExpiredSubject = "email/request_expired/subject.txt",
    ExpiredText = "email/request_expired/body.txt",
    ExpiredHtml = "email/request_expired/body.html";
    OverdueSubject = "email/request_overdue/subject.txt",
    OverdueText = "email/request_overdue/body.txt",
    OverdueHtml = "email/request_overdue/body.html";
);

/// Renders the three parts of `kind`'s email.
pub fn render(kind: EmailKind, e: &EmailContext) -> Result<RenderedEmail, askama::Error> {
    let subject = match kind {
        EmailKind::RequestCreated => CreatedSubject { e }.render()?,
        EmailKind::RequestApproved => ApprovedSubject { e }.render()?,
        EmailKind::RequestRejected => RejectedSubject { e }.render()?,
        EmailKind::RequestReleased => ReleasedSubject { e }.render()?,
        EmailKind::RequestExpired => ExpiredSubject { e }.render()?,
        EmailKind::RequestOverdue => OverdueSubject { e }.render()?,
    };
    // A subject is one header line: whatever a value holds, it must not break the header.
    let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let s = subject.as_str();
    let (text, html) = match kind {
        EmailKind::RequestCreated => (
            CreatedText { e }.render()?,
            CreatedHtml { e, subject: s }.render()?,
        ),
        EmailKind::RequestApproved => (
            ApprovedText { e }.render()?,
            ApprovedHtml { e, subject: s }.render()?,
        ),
        EmailKind::RequestRejected => (
            RejectedText { e }.render()?,
            RejectedHtml { e, subject: s }.render()?,
        ),
        EmailKind::RequestReleased => (
            ReleasedText { e }.render()?,
            ReleasedHtml { e, subject: s }.render()?,
        ),
        EmailKind::RequestExpired => (
            ExpiredText { e }.render()?,
            ExpiredHtml { e, subject: s }.render()?,
        ),
        EmailKind::RequestOverdue => (
            OverdueText { e }.render()?,
            OverdueHtml { e, subject: s }.render()?,
        ),
    };
    Ok(RenderedEmail {
        subject,
        text: with_final_newline(text),
        html: with_final_newline(html),
    })
}

fn with_final_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// The stable `Message-ID` of the email an outbox row sends: the same on every retry and on
/// every worker, so a receiver can recognise a duplicate that at-least-once delivery let through.
pub fn message_id(outbox_id: OutboxId, host: &str) -> String {
    format!("<{outbox_id}@{host}>")
}

/// Puts a rendered email together: multipart/alternative, plain text first (the fallback),
/// then HTML.
pub fn build_message(
    email: &RenderedEmail,
    from: &Mailbox,
    to: Mailbox,
    message_id: String,
) -> Result<Message, lettre::error::Error> {
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(email.subject.clone())
        .message_id(Some(message_id))
        .multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            email.html.clone(),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> EmailContext {
        EmailContext {
            request_id: "0190f0a0-0000-7000-8000-000000000001".into(),
            phone_number: "+15551234567".into(),
            environment_name: "Acme <prod>".into(),
            reason: "We moved to <b>another</b> provider & \"won't\" need it".into(),
            review_note: Some("Agent <script>alert(1)</script> still holds it".into()),
            requested_at: "2026-01-02T03:04:05Z".into(),
            resolved_at: Some("2026-01-02T04:04:05Z".into()),
            released_at: None,
            link: "http://example.test/api/v1/phone-numbers/release-requests/x".into(),
            approved_by: vec!["Ada <Lovelace>".into(), "Bob Checker".into()],
            expires_at: Some("2026-02-01T03:04:05Z".into()),
        }
    }

    #[test]
    fn html_body_escapes_customer_and_staff_text() {
        for kind in [
            EmailKind::RequestCreated,
            EmailKind::RequestApproved,
            EmailKind::RequestRejected,
            EmailKind::RequestExpired,
            EmailKind::RequestOverdue,
        ] {
            let email = render(kind, &context()).unwrap();
            assert!(
                !email.html.contains("<b>another</b>"),
                "{kind:?}: reason not escaped"
            );
            assert!(
                !email.html.contains("<script>"),
                "{kind:?}: note not escaped"
            );
            assert!(
                email.html.contains("&#60;b&#62;another&#60;/b&#62;"),
                "{kind:?}"
            );
            assert!(
                !email.html.contains("Acme <prod>"),
                "{kind:?}: environment not escaped"
            );
        }
    }

    #[test]
    fn text_body_and_subject_are_not_html_escaped() {
        let email = render(EmailKind::RequestRejected, &context()).unwrap();
        assert!(
            email
                .text
                .contains("We moved to <b>another</b> provider & \"won't\" need it")
        );
        assert!(
            email
                .text
                .contains("Agent <script>alert(1)</script> still holds it")
        );
        assert_eq!(email.subject, "Release of +15551234567 rejected");
        let created = render(EmailKind::RequestCreated, &context()).unwrap();
        assert_eq!(
            created.subject,
            "New release request: +15551234567 (Acme <prod>)"
        );
    }

    #[test]
    fn subject_stays_on_one_line() {
        let mut e = context();
        e.environment_name = "two\nlines".into();
        let email = render(EmailKind::RequestCreated, &e).unwrap();
        assert_eq!(
            email.subject,
            "New release request: +15551234567 (two lines)"
        );
    }

    #[test]
    fn approval_note_is_shown_only_when_given() {
        let with = render(EmailKind::RequestApproved, &context()).unwrap();
        assert!(with.text.contains("Note from our support team:"));
        let mut e = context();
        e.review_note = None;
        let without = render(EmailKind::RequestApproved, &e).unwrap();
        assert!(!without.text.contains("Note from our support team"));
        assert!(!without.html.contains("Note from our support team"));
    }

    #[test]
    fn the_approved_email_names_every_approving_reviewer() {
        let email = render(EmailKind::RequestApproved, &context()).unwrap();
        assert!(
            email
                .text
                .contains("was approved by Ada <Lovelace> and Bob Checker."),
            "{}",
            email.text
        );
        assert!(
            email
                .html
                .contains("by Ada &#60;Lovelace&#62; and Bob Checker."),
            "{}",
            email.html
        );
        let mut e = context();
        e.approved_by.clear();
        let anonymous = render(EmailKind::RequestApproved, &e).unwrap();
        assert!(
            anonymous.text.contains("was approved."),
            "{}",
            anonymous.text
        );
    }

    #[test]
    fn every_kind_renders_with_a_one_line_subject() {
        for &kind in EmailKind::ALL {
            let email = render(kind, &context()).unwrap();
            assert!(email.subject.contains("+15551234567"), "{kind:?}");
            assert!(!email.subject.contains('\n'), "{kind:?}");
            assert!(email.html.starts_with("<!DOCTYPE html>"), "{kind:?}");
        }
    }

    #[test]
    fn the_expired_email_says_the_number_is_unchanged_and_free_for_a_new_request() {
        let email = render(EmailKind::RequestExpired, &context()).unwrap();
        assert_eq!(email.subject, "Release request for +15551234567 expired");
        assert!(email.text.contains("stays active"), "{}", email.text);
        assert!(email.text.contains("send a new request"), "{}", email.text);
    }

    #[test]
    fn the_overdue_reminder_links_to_the_console_and_says_when_it_expires() {
        let email = render(EmailKind::RequestOverdue, &context()).unwrap();
        assert_eq!(
            email.subject,
            "Overdue release request: +15551234567 (Acme <prod>)"
        );
        assert!(email.text.contains("Expires:     2026-02-01T03:04:05Z"));
        let mut e = context();
        e.expires_at = None;
        assert!(
            !render(EmailKind::RequestOverdue, &e)
                .unwrap()
                .text
                .contains("Expires")
        );
        let id = RequestId::new();
        assert_eq!(
            request_link(EmailKind::RequestOverdue, "https://rd.example", id),
            format!("https://rd.example/console/requests/{id}")
        );
        assert_eq!(
            request_link(EmailKind::RequestExpired, "https://rd.example", id),
            format!("https://rd.example/api/v1/phone-numbers/release-requests/{id}")
        );
    }

    #[test]
    fn staff_emails_link_to_the_console_and_customer_emails_to_the_api() {
        let id = RequestId::new();
        assert_eq!(
            request_link(EmailKind::RequestCreated, "https://rd.example/", id),
            format!("https://rd.example/console/requests/{id}")
        );
        assert_eq!(
            request_link(EmailKind::RequestReleased, "https://rd.example", id),
            format!("https://rd.example/api/v1/phone-numbers/release-requests/{id}")
        );
    }

    #[test]
    fn message_is_multipart_alternative_with_the_given_message_id() {
        let email = render(EmailKind::RequestApproved, &context()).unwrap();
        let id = OutboxId::new();
        let msg = build_message(
            &email,
            &"releasedesk <no-reply@localhost>".parse().unwrap(),
            "ops@customer.example".parse().unwrap(),
            message_id(id, "rd.example"),
        )
        .unwrap();
        let raw = String::from_utf8(msg.formatted()).unwrap();
        assert!(
            raw.contains(&format!("Message-ID: <{id}@rd.example>")),
            "{raw}"
        );
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain; charset=utf-8"));
        assert!(raw.contains("text/html; charset=utf-8"));
    }
}
