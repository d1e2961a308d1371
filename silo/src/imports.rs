//! The import worker: takes [`ImportJob`]s from the control-plane queue (`silo.import`, fair
//! across tenants), opens the job's file (sealed to its tenant), checks it with the tenant app's
//! rules and writes the items into that tenant's own database, reached through its sealed URL —
//! the job's tenant and no other. All or nothing: the rows go in one transaction, committed only
//! when no row has a problem; a worker that dies half-way leaves nothing, and the job runs again.
//! Progress reaches the control plane while it runs, so the page can show it.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use control_plane::connect::{ConnectOptions, connect_tenant};
use control_plane::imports::{Ending, IMPORT_QUEUE, ImportJob, ImportProblem};
use control_plane::model::TenantStatus;
use control_plane::{Keyring, Purpose, Store};
use secrecy::ExposeSecret as _;
use tracing::Instrument as _;

/// What the worker needs to run imports.
#[derive(Debug)]
pub struct Importer {
    store: Store,
    keyring: Arc<Keyring>,
}

/// Why one attempt at an import failed (it is tried again; nothing of it was kept).
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the control-plane database: {0}")]
    Store(#[from] control_plane::store::StoreError),
    #[error("the tenant's database: {0}")]
    Tenant(String),
}

impl Importer {
    pub fn new(store: Store, keyring: Arc<Keyring>) -> Self {
        Self { store, keyring }
    }

    /// Runs `job`'s import to its end (imported, refused or failed), unless it already ended.
    pub async fn run(&self, job: &ImportJob) -> Result<(), ImportError> {
        let tenant = match self.store.tenant(job.tenant_id).await {
            Ok(tenant) => tenant,
            Err(control_plane::store::StoreError::NotFound) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        let span = tracing::info_span!("import", import = job.import_id, tenant = %tenant.slug);
        self.run_for(job, &tenant).instrument(span).await
    }

    async fn run_for(
        &self,
        job: &ImportJob,
        tenant: &control_plane::tenants::TenantRecord,
    ) -> Result<(), ImportError> {
        let Some(sealed) = self.store.begin_import(tenant.id, job.import_id).await? else {
            return Ok(());
        };
        let refuse = |message: &str| ImportProblem {
            line: 0,
            field: None,
            message: message.to_owned(),
        };
        // Opening and checking a file of 100,000 rows is CPU work: off the async threads, so
        // the worker goes on taking other tenants' jobs meanwhile.
        let keyring = self.keyring.clone();
        let tenant_id = tenant.id;
        let parsed = tokio::task::spawn_blocking(move || {
            let file = keyring.open(Purpose::ItemImport, tenant_id, &sealed).ok()?;
            Some(tenant_app::imports::parse_items(file.expose_secret()))
        })
        .await
        .map_err(|error| ImportError::Tenant(format!("the file check stopped: {error}")))?;
        let Some(parsed) = parsed else {
            let problem =
                refuse("the file could not be opened (sealed with a key no longer loaded)");
            return self.end(job, Ending::Failed, (0, 0), &[problem], 1).await;
        };
        let total = count(parsed.rows_read);
        if parsed.problem_count > 0 {
            tracing::info!(
                problems = parsed.problem_count,
                "import refused: the file has problems"
            );
            return self
                .end(
                    job,
                    Ending::Refused,
                    (0, total),
                    &parsed.problems,
                    parsed.problem_count,
                )
                .await;
        }
        if tenant.status != TenantStatus::Active {
            let problem = refuse("the workspace is not active, so nothing was imported");
            return self
                .end(job, Ending::Failed, (0, total), &[problem], 1)
                .await;
        }
        let max_items = self.store.entitlements(tenant.id).await?.plan.max_items;
        // The tenant's database out of reach ends the import as failed, saying so, rather than
        // leaving it open (it would block the next one); the person imports again later.
        let unreachable = |error: &dyn std::fmt::Display| {
            tracing::warn!(%error, "the tenant database could not be reached for an import");
            refuse(
                "the workspace's database could not be reached, so nothing was imported; import the file again in a moment",
            )
        };
        let mut client = match connect_tenant(
            &self.keyring,
            tenant.id,
            tenant.sealed_database_url.as_ref(),
            ConnectOptions::named("silo-import"),
        )
        .await
        {
            Ok(client) => client,
            Err(error) => {
                let problem = unreachable(&error);
                return self
                    .end(job, Ending::Failed, (0, total), &[problem], 1)
                    .await;
            }
        };
        let transaction = match client.transaction().await {
            Ok(transaction) => transaction,
            Err(error) => {
                let problem = unreachable(&error);
                return self
                    .end(job, Ending::Failed, (0, total), &[problem], 1)
                    .await;
            }
        };
        let (progress, reporter) = self.progress_reporter(job.import_id, total);
        let written =
            tenant_app::imports::write_items(&transaction, &parsed.rows, max_items, &move |done| {
                let _ = progress.send(count(done));
            })
            .await;
        reporter.abort();
        match written {
            Ok(problems) if problems.is_empty() => {
                if let Err(error) = transaction.commit().await {
                    // The connection may have gone after PostgreSQL committed: say so.
                    tracing::warn!(%error, "an import's commit was not confirmed");
                    let problem = refuse(
                        "the connection to the workspace's database was lost while saving; check the items before importing again",
                    );
                    return self
                        .end(job, Ending::Failed, (0, total), &[problem], 1)
                        .await;
                }
                tracing::info!(items = total, "items imported");
                self.end(job, Ending::Imported, (total, total), &[], 0)
                    .await
            }
            Ok(problems) => {
                drop(transaction);
                let problem_count = problems.len();
                self.end(job, Ending::Refused, (0, total), &problems, problem_count)
                    .await
            }
            Err(error) if error.as_db_error().is_some() => {
                // The database refused a row (a rule the file check does not know): nothing
                // is kept, and trying again would be refused the same way.
                tracing::warn!(%error, "the tenant database refused the import");
                drop(transaction);
                let problem =
                    refuse("the database refused a row, so nothing was imported; check the file");
                self.end(job, Ending::Failed, (0, total), &[problem], 1)
                    .await
            }
            Err(error) => {
                drop(transaction);
                let problem = unreachable(&error);
                self.end(job, Ending::Failed, (0, total), &[problem], 1)
                    .await
            }
        }
    }

    async fn end(
        &self,
        job: &ImportJob,
        ending: Ending,
        rows: (i32, i32),
        problems: &[ImportProblem],
        problem_count: usize,
    ) -> Result<(), ImportError> {
        self.store
            .finish_import(job.import_id, ending, rows, problems, problem_count)
            .await?;
        Ok(())
    }

    /// A sender for the rows written so far, and the task that writes the newest count to the
    /// control plane a few times a second (so a fast import costs few updates).
    fn progress_reporter(
        &self,
        import_id: i64,
        total: i32,
    ) -> (tokio::sync::watch::Sender<i32>, tokio::task::JoinHandle<()>) {
        let (sender, mut receiver) = tokio::sync::watch::channel(0);
        let store = self.store.clone();
        let reporter = tokio::spawn(async move {
            let _ = store.import_progress(import_id, 0, total).await;
            while receiver.changed().await.is_ok() {
                let done = *receiver.borrow_and_update();
                if let Err(error) = store.import_progress(import_id, done, total).await {
                    tracing::debug!(%error, "import progress not recorded");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        (sender, reporter)
    }
}

fn count(rows: usize) -> i32 {
    i32::try_from(rows).unwrap_or(i32::MAX)
}

async fn handle(job: ImportJob, importer: Data<Arc<Importer>>) -> Result<(), BoxDynError> {
    importer.run(&job).await.map_err(|error| {
        tracing::warn!(import = job.import_id, %error, "import not finished; it will be tried again");
        error.into()
    })
}

/// Runs an import worker until `shutdown` resolves, `concurrency` imports at a time. New jobs
/// are noticed at once (LISTEN/NOTIFY), with a one-second poll as a safety net.
pub async fn run_import_worker(
    importer: Arc<Importer>,
    pool: apalis_postgres::PgPool,
    concurrency: usize,
    heartbeat: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let backend = provisioner::worker::queue_backend::<ImportJob>(&pool, IMPORT_QUEUE, heartbeat);
    // A failure that is not the file's (the tenant's database down, say) is tried again, the
    // waits doubling up to a minute; each attempt starts over on a fresh transaction.
    let policy = apalis::layers::retry::RetryPolicy::retries(5)
        .with_backoff(provisioner::mail::GrowingWait::new(Duration::from_secs(60)));
    let name = format!("importer-{}", uuid::Uuid::new_v4().simple());
    WorkerBuilder::new(name)
        .backend(backend)
        .concurrency(concurrency)
        .retry(policy)
        .data(importer)
        .build(handle)
        .run_until(async move {
            shutdown.await;
            Ok::<(), std::io::Error>(())
        })
        .await
}
