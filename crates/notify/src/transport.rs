//! Where emails go: an SMTP server (lettre) or, with no SMTP configured, one `.eml` file per
//! email in a folder, so the embedded default works without a mail server.

use std::io;
use std::path::{Path, PathBuf};

use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use releasedesk_store::{EmailKind, OutboxRow};
use tokio::io::AsyncWriteExt;

/// Why an email was not delivered, sorted by what the worker should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Try again later: SMTP 4xx, connection refused or reset, timeouts, a full disk.
    #[error("{0}")]
    Transient(String),
    /// Trying again will not help: an SMTP 5xx reply.
    #[error("{0}")]
    Permanent(String),
}

impl DeliveryError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Permanent(_))
    }
}

pub(crate) enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    File(PathBuf),
}

impl Transport {
    /// `smtp_url` in lettre's own URL syntax (`smtp://host:port`, `?tls=required` for
    /// STARTTLS, `smtps://` for TLS, `user:pass@` for credentials); `None` writes files.
    pub(crate) fn new(smtp_url: Option<&str>, mail_dir: &Path) -> anyhow::Result<Self> {
        match smtp_url {
            Some(url) => {
                // The URL may hold a password: the error names the setting, never the value.
                let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| anyhow::anyhow!("SMTP_URL is not a valid SMTP URL: {e}"))?;
                Ok(Self::Smtp(builder.build()))
            }
            None => Ok(Self::File(mail_dir.to_owned())),
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Smtp(_) => "smtp".to_owned(),
            Self::File(dir) => format!("files in {}", dir.display()),
        }
    }

    /// Delivers `message`. Returns only once the SMTP server accepted it (250 after DATA) or
    /// the file is durably in place.
    pub(crate) async fn send(
        &self,
        row: &OutboxRow,
        kind: EmailKind,
        message: Message,
    ) -> Result<(), DeliveryError> {
        match self {
            Self::Smtp(smtp) => smtp.send(message).await.map(drop).map_err(classify_smtp),
            Self::File(dir) => write_eml(dir, &eml_file_name(row, kind), &message.formatted())
                .await
                .map_err(|e| {
                    DeliveryError::Transient(format!(
                        "writing the .eml file in {}: {e}",
                        dir.display()
                    ))
                }),
        }
    }
}

/// A 5xx reply is permanent. Everything else (4xx, refused or reset connections, timeouts, TLS
/// trouble, a server lacking an extension) is transient: the next attempt may meet a healthier
/// or reconfigured server, and a row that never succeeds still ends `dead` once its attempts
/// run out, so an operator who fixes `SMTP_URL` within that hour loses nothing.
fn classify_smtp(e: lettre::transport::smtp::Error) -> DeliveryError {
    let text = error_chain(&e);
    if e.is_permanent() {
        DeliveryError::Permanent(text)
    } else {
        DeliveryError::Transient(text)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `{created}-{kind}-{outbox id}.eml`, e.g.
/// `20261128T091500Z-request_approved-01937c3e-….eml`: a person listing the folder sees when
/// and what each email is, in the order they were written. The name is a function of the row
/// alone (never of the attempt), so a retry after a crash overwrites the file rather than
/// adding a second one.
pub fn eml_file_name(row: &OutboxRow, kind: EmailKind) -> String {
    format!(
        "{}-{}-{}.eml",
        row.created_at.format("%Y%m%dT%H%M%SZ"),
        kind.as_str(),
        row.id
    )
}

/// Written to a temporary name, synced, then renamed: a reader never sees half an email.
async fn write_eml(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = tokio::fs::File::create(&tmp).await?;
    file.write_all(bytes).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&tmp, dir.join(name)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_smtp_url_error_does_not_leak_the_password() {
        let err = Transport::new(Some("imap://user:s3cret@mail.example"), Path::new("."))
            .err()
            .unwrap();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    // lettre's connection pool starts a task as it is built: a Tokio runtime is needed.
    #[tokio::test]
    async fn smtp_urls_in_lettre_syntax_are_accepted() {
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://mail.example:587?tls=required",
            "smtps://user:pw@mail.example",
        ] {
            assert!(Transport::new(Some(url), Path::new(".")).is_ok(), "{url}");
        }
    }

    #[tokio::test]
    async fn a_retry_overwrites_the_same_file_and_leaves_no_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        write_eml(dir.path(), "a.eml", b"first attempt")
            .await
            .unwrap();
        write_eml(dir.path(), "a.eml", b"second attempt")
            .await
            .unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files, ["a.eml"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.eml")).unwrap(),
            "second attempt"
        );
    }
}
