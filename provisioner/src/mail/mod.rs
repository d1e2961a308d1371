//! The mail worker: takes [`MailJob`]s from the control-plane queue (`silo.mail`), finds what
//! each needs (the tenant's name, its links; for a password reset the user, in the tenant's own
//! database through its sealed URL), composes the mail and sends it. A failed send is retried
//! in the worker with a growing wait (apalis's retry layer), never inside a request.
//!
//! Nothing here logs an address's secret part: links with tokens appear only in the mail itself
//! (or, without SMTP, in the `.eml` file whose path is logged).

pub mod compose;
pub mod outbox;

use std::sync::Arc;
use std::time::Duration;

use apalis::layers::retry::RetryPolicy;
use apalis::layers::retry::backoff::Backoff;
use apalis::prelude::*;
use control_plane::connect::{ConnectOptions, connect_tenant};
use control_plane::mail::{MAIL_QUEUE, Mail, MailJob};
use control_plane::model::TenantStatus;
use control_plane::one_time_links::{LinkPurpose, PASSWORD_RESET_LIFETIME, password_reset_subject};
use control_plane::store::StoreError;
use control_plane::{Keyring, Store};
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use secrecy::{ExposeSecret as _, SecretString};
use tracing::Instrument as _;

pub use compose::{Composed, compose};
pub use outbox::{Delivered, Outbox, OutboxError};

/// Why one attempt at a mail failed (it is tried again).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("the control-plane database: {0}")]
    Store(#[from] StoreError),
    #[error("the tenant's database: {0}")]
    Tenant(String),
}

/// What the worker knows to send mails.
#[derive(Debug)]
pub struct Mailer {
    store: Store,
    keyring: Arc<Keyring>,
    outbox: Outbox,
    from: Mailbox,
    /// `scheme://host[:port]` of the apex; workspaces are `scheme://<slug>.host[:port]/`.
    public_url: String,
}

impl Mailer {
    /// `from` must be a mailbox (`Name <address>` or an address); `public_url` the apex's URL.
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        outbox: Outbox,
        from: &str,
        public_url: &str,
    ) -> Result<Self, String> {
        let from = from.parse().map_err(|_| {
            format!("mail.from `{from}` is not an address like Acme <no-reply@acme.example>")
        })?;
        Ok(Self {
            store,
            keyring,
            outbox,
            from,
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }

    /// The workspace's own address, as mails link to it.
    pub fn workspace_url(&self, slug: &str) -> String {
        match self.public_url.split_once("://") {
            Some((scheme, host)) => format!("{scheme}://{slug}.{host}/"),
            None => format!("http://{slug}.{}/", self.public_url),
        }
    }

    /// Sends `job`'s mail. A job that can never be sent (its tenant gone, an address that is no
    /// address, a link that no longer opens) is dropped with a warning; anything else that fails
    /// is an error, and the job is tried again.
    pub async fn deliver(&self, job: &MailJob) -> Result<(), MailError> {
        let kind = job.mail.kind();
        let tenant = match self.store.tenant(job.tenant_id).await {
            Ok(tenant) => tenant,
            Err(StoreError::NotFound) => {
                tracing::warn!(kind, tenant_id = %job.tenant_id, "mail for an unknown tenant dropped");
                return Ok(());
            }
            Err(error) => return Err(error.into()),
        };
        let span = tracing::info_span!("mail", kind, tenant = %tenant.slug);
        self.deliver_for(job, &tenant).instrument(span).await
    }

    /// [`Mailer::deliver`] once the job's tenant is known.
    async fn deliver_for(
        &self,
        job: &MailJob,
        tenant: &control_plane::tenants::TenantRecord,
    ) -> Result<(), MailError> {
        let Ok(to) = job.to.parse::<Mailbox>() else {
            tracing::warn!("mail to an address that is no address dropped");
            return Ok(());
        };
        let workspace = self.workspace_url(&tenant.slug);
        let link: SecretString = match &job.mail {
            Mail::Invitation { link, .. } => match link.open(&self.keyring, tenant.id) {
                Ok(link) => link,
                Err(error) => {
                    tracing::warn!(%error, "invitation mail whose link does not open dropped");
                    return Ok(());
                }
            },
            Mail::PasswordReset { origin } => {
                if tenant.status != TenantStatus::Active {
                    return Ok(());
                }
                let Some(user_id) = self.active_user(tenant, &job.to).await? else {
                    // Nobody to reset: no mail, and the person who asked was told the same.
                    tracing::info!("password reset asked for an address with no active user");
                    return Ok(());
                };
                let token = self
                    .store
                    .create_link(
                        LinkPurpose::PasswordReset,
                        tenant.id,
                        &password_reset_subject(user_id),
                        PASSWORD_RESET_LIFETIME,
                    )
                    .await?;
                SecretString::from(format!(
                    "{}/password/reset?token={}",
                    origin.trim_end_matches('/'),
                    token.expose_secret()
                ))
            }
            Mail::Welcome
            | Mail::TrialEnding { .. }
            | Mail::PaymentFailed { .. }
            | Mail::Suspended => SecretString::from(workspace),
        };
        let composed = compose(&job.mail, &tenant.display_name, link.expose_secret());
        let Ok(message) = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(composed.subject)
            .multipart(MultiPart::alternative_plain_html(
                composed.text,
                composed.html,
            ))
        else {
            tracing::warn!("mail that cannot be put together dropped");
            return Ok(());
        };
        match self.outbox.send(message).await? {
            Delivered::Smtp => tracing::info!("mail sent"),
            Delivered::File(path) => {
                tracing::info!(path = %path.display(), "mail written (no SMTP configured)");
            }
        }
        Ok(())
    }

    /// The id of the active user with this email in the tenant's own database.
    async fn active_user(
        &self,
        tenant: &control_plane::tenants::TenantRecord,
        email: &str,
    ) -> Result<Option<i64>, MailError> {
        let client = connect_tenant(
            &self.keyring,
            tenant.id,
            tenant.sealed_database_url.as_ref(),
            ConnectOptions::named("silo-mail"),
        )
        .await
        .map_err(|error| MailError::Tenant(error.to_string()))?;
        let row = client
            .query_opt(tenant_schema::ACTIVE_USER_ID_BY_EMAIL_SQL, &[&email.trim()])
            .await
            .map_err(|error| MailError::Tenant(error.to_string()))?;
        Ok(row.map(|row| row.get::<_, i64>(0)))
    }
}

/// Waits between attempts: one second, doubling, at most `max`.
#[derive(Debug, Clone)]
pub struct GrowingWait {
    next: Duration,
    max: Duration,
}

impl GrowingWait {
    pub fn new(max: Duration) -> Self {
        Self {
            next: Duration::from_secs(1).min(max),
            max,
        }
    }
}

impl Backoff for GrowingWait {
    type Future = tokio::time::Sleep;

    fn next_backoff(&mut self) -> Self::Future {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        tokio::time::sleep(wait)
    }
}

async fn handle(job: MailJob, mailer: Data<Arc<Mailer>>) -> Result<(), BoxDynError> {
    mailer.deliver(&job).await.map_err(|error| {
        tracing::warn!(kind = job.mail.kind(), %error, "mail not sent; it will be tried again");
        error.into()
    })
}

/// How the mail worker runs.
#[derive(Debug, Clone)]
pub struct MailWorkerSettings {
    pub concurrency: usize,
    pub max_attempts: u32,
    pub retry_max_backoff: Duration,
    pub heartbeat: Duration,
}

/// Runs a mail worker until `shutdown` resolves. New jobs are noticed at once (LISTEN/NOTIFY),
/// with a one-second poll as a safety net.
pub async fn run_mail_worker(
    mailer: Arc<Mailer>,
    pool: apalis_postgres::PgPool,
    settings: MailWorkerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let backend = crate::worker::queue_backend::<MailJob>(&pool, MAIL_QUEUE, settings.heartbeat);
    let retries = usize::try_from(settings.max_attempts.saturating_sub(1)).unwrap_or(usize::MAX);
    let policy =
        RetryPolicy::retries(retries).with_backoff(GrowingWait::new(settings.retry_max_backoff));
    let name = format!("mailer-{}", uuid::Uuid::new_v4().simple());
    WorkerBuilder::new(name)
        .backend(backend)
        .concurrency(settings.concurrency)
        .retry(policy)
        .data(mailer)
        .build(handle)
        .run_until(async move {
            shutdown.await;
            Ok::<(), std::io::Error>(())
        })
        .await
}
