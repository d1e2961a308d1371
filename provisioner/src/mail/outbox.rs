//! Where mails leave: an SMTP server (lettre's pooled async transport over rustls), or, with no
//! SMTP configured (`silo dev`), `.eml` files in a folder, each path logged so the local flow
//! works end to end. Errors never carry the SMTP URL (it may hold a password).

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::{
    AsyncFileTransport, AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor,
};
use secrecy::{ExposeSecret as _, SecretString};

/// How long one SMTP conversation may take before the attempt counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a mail did not leave.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(
        "SILO_SMTP_URL is not a valid SMTP URL (smtp://user:password@host:587?tls=required, \
         smtps://host:465 or smtp://host:25)"
    )]
    BadSmtpUrl,
    #[error("cannot create the mail folder {path}: {source}")]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the SMTP server did not take the mail: {0}")]
    Smtp(String),
    #[error("cannot write the mail file: {0}")]
    File(String),
}

/// Where a sent mail went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    Smtp,
    File(PathBuf),
}

/// The configured way out.
pub enum Outbox {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files {
        transport: AsyncFileTransport<Tokio1Executor>,
        folder: PathBuf,
    },
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outbox::Smtp(_) => f.write_str("Outbox::Smtp"),
            Outbox::Files { folder, .. } => write!(f, "Outbox::Files({})", folder.display()),
        }
    }
}

impl Outbox {
    /// SMTP at `smtp_url` if set, else `.eml` files in `folder` (created if missing).
    pub fn new(smtp_url: Option<&SecretString>, folder: &Path) -> Result<Self, OutboxError> {
        match smtp_url {
            Some(url) => Ok(Outbox::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .map_err(|_| OutboxError::BadSmtpUrl)?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build(),
            )),
            None => Self::files(folder),
        }
    }

    /// `.eml` files in `folder`.
    pub fn files(folder: &Path) -> Result<Self, OutboxError> {
        std::fs::create_dir_all(folder).map_err(|source| OutboxError::Folder {
            path: folder.to_owned(),
            source,
        })?;
        Ok(Outbox::Files {
            transport: AsyncFileTransport::new(folder),
            folder: folder.to_owned(),
        })
    }

    /// Sends (or writes) one message.
    pub async fn send(&self, message: Message) -> Result<Delivered, OutboxError> {
        match self {
            Outbox::Smtp(transport) => transport
                .send(message)
                .await
                .map(|_| Delivered::Smtp)
                .map_err(|error| OutboxError::Smtp(error.to_string())),
            Outbox::Files { transport, folder } => {
                let id = transport
                    .send(message)
                    .await
                    .map_err(|error| OutboxError::File(error.to_string()))?;
                Ok(Delivered::File(folder.join(format!("{id}.eml"))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::message::header::ContentType;

    #[tokio::test]
    async fn without_smtp_a_mail_is_an_eml_file_in_the_folder() {
        let folder = std::env::temp_dir().join(format!("silo-outbox-{}", uuid::Uuid::new_v4()));
        let outbox = Outbox::new(None, &folder).expect("the folder is made");
        let message = Message::builder()
            .from("Silo <no-reply@localhost>".parse().expect("an address"))
            .to("owner@example.test".parse().expect("an address"))
            .subject("Your workspace Acme is ready")
            .header(ContentType::TEXT_PLAIN)
            .body("http://acme.localhost:8080/".to_owned())
            .expect("a message");
        let Delivered::File(path) = outbox.send(message).await.expect("written") else {
            panic!("no SMTP was configured");
        };
        assert_eq!(path.parent(), Some(folder.as_path()));
        assert_eq!(path.extension().and_then(|e| e.to_str()), Some("eml"));
        let written = std::fs::read_to_string(&path).expect("the file");
        assert!(
            written.contains("Subject: Your workspace Acme is ready"),
            "{written}"
        );
        assert!(written.contains("http://acme.localhost:8080/"), "{written}");
        std::fs::remove_dir_all(&folder).expect("cleaned up");
    }

    #[test]
    fn a_bad_smtp_url_is_refused_without_echoing_it() {
        let url = SecretString::from("smtp://user:hunter2@[bad".to_owned());
        let error = Outbox::new(Some(&url), Path::new("/nonexistent")).expect_err("refused");
        assert!(!error.to_string().contains("hunter2"));
    }
}
