//! The provisioning steps, in order: place → create role → create database → migrate →
//! seed admin → activate. Each checks what already exists before acting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use control_plane::model::TenantStatus;
use control_plane::settings::ProvisioningSettings;
use control_plane::store::{Placement, StoreError, TenantRecord, quote_identifier};
use control_plane::{Keyring, Purpose, Store};
use rand::distr::{Alphanumeric, SampleString as _};
use secrecy::{ExposeSecret as _, SecretString};
use tokio_postgres::Client;
use uuid::Uuid;

/// Why a provisioning attempt failed. `Display` is for operators (recorded per step); it never
/// contains a password or a connection string.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("no active database host has free capacity")]
    NoCapacity,
    #[error("the tenant's database host is not registered")]
    UnknownHost,
    #[error("the tenant database URL could not be built from the host's admin URL")]
    BadHostUrl,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sealing(#[from] control_plane::sealing::SealingError),
    #[error("database error: {}", describe_database_error(.0))]
    Database(#[from] tokio_postgres::Error),
    #[error("tenant migration failed: {0}")]
    Migration(#[from] migrator::MigrateError),
    #[error(transparent)]
    FailPoint(#[from] crate::failpoints::FailPointError),
}

impl ProvisionError {
    /// Whether trying again could help.
    fn is_retryable(&self) -> bool {
        !matches!(
            self,
            ProvisionError::NoCapacity | ProvisionError::BadHostUrl
        )
    }

    /// What the person who signed up is told.
    fn public_reason(&self, step: &str) -> String {
        match self {
            ProvisionError::NoCapacity => {
                "We have no room for new workspaces right now. Please try again later.".to_owned()
            }
            _ => format!(
                "Setting up your database failed at step `{step}`. Our team has been notified; \
                 you can retry the signup later."
            ),
        }
    }
}

/// The provisioning service a worker runs; shared by every job of a worker process.
#[derive(Debug)]
pub struct Provisioner {
    store: Store,
    keyring: Arc<Keyring>,
    settings: ProvisioningSettings,
    migrations: migrator::MigrationSet,
}

/// The step names, as recorded in `provisioning_events` and shown by the status endpoint.
pub mod step {
    pub const PLACED: &str = "placed";
    pub const ROLE_CREATED: &str = "role_created";
    pub const DATABASE_CREATED: &str = "database_created";
    pub const MIGRATED: &str = "migrated";
    pub const ADMIN_SEEDED: &str = "admin_seeded";
    pub const ACTIVATED: &str = "activated";

    /// Every step, in order.
    pub const ALL: [&str; 6] = [
        PLACED,
        ROLE_CREATED,
        DATABASE_CREATED,
        MIGRATED,
        ADMIN_SEEDED,
        ACTIVATED,
    ];

    /// The position of a recorded step (0 = none done yet).
    pub fn index(recorded: Option<&str>) -> usize {
        recorded
            .and_then(|name| ALL.iter().position(|step| *step == name))
            .map_or(0, |position| position + 1)
    }
}

impl Provisioner {
    pub fn new(store: Store, keyring: Arc<Keyring>, settings: ProvisioningSettings) -> Self {
        Self {
            store,
            keyring,
            settings,
            migrations: migrator::MigrationSet::embedded(),
        }
    }

    /// Uses `migrations` instead of the embedded ones (tests and tools that add migrations).
    pub fn with_migrations(mut self, migrations: migrator::MigrationSet) -> Self {
        self.migrations = migrations;
        self
    }

    /// Runs provisioning for one tenant to its end: `active`, or `failed` with a reason after the
    /// last attempt. Returns an error only when the control plane itself is unreachable, so the
    /// job stays queued and is retried.
    #[tracing::instrument(name = "provision", skip(self), fields(tenant = tracing::field::Empty))]
    pub async fn provision(&self, tenant_id: Uuid) -> Result<(), StoreError> {
        // One worker at a time per tenant; a second one waits, then finds the work done.
        let lock = self.store.lock_tenant(tenant_id).await?;
        let result = self.provision_locked(tenant_id).await;
        lock.release().await;
        result
    }

    async fn provision_locked(&self, tenant_id: Uuid) -> Result<(), StoreError> {
        loop {
            let tenant = self.store.tenant(tenant_id).await?;
            tracing::Span::current().record("tenant", tenant.slug.as_str());
            if tenant.status != TenantStatus::Provisioning {
                tracing::debug!(status = ?tenant.status, "nothing to provision");
                return Ok(());
            }
            let attempt = self.store.begin_attempt(tenant_id).await?;
            let mut current_step = step::PLACED;
            match self
                .provision_once(tenant, attempt, &mut current_step)
                .await
            {
                Ok(()) => {
                    tracing::info!(attempt, "tenant active");
                    return Ok(());
                }
                Err(error) => {
                    let final_attempt = attempt >= self.settings.max_attempts as i32;
                    tracing::warn!(attempt, step = current_step, %error, final_attempt, "provisioning attempt failed");
                    if final_attempt || !error.is_retryable() {
                        self.store
                            .mark_failed(tenant_id, &error.public_reason(current_step))
                            .await?;
                        return Ok(());
                    }
                    let backoff =
                        self.settings.retry_backoff * 2u32.saturating_pow(attempt as u32 - 1);
                    tokio::time::sleep(backoff.min(Duration::from_secs(60))).await;
                }
            }
        }
    }

    async fn provision_once(
        &self,
        mut tenant: TenantRecord,
        attempt: i32,
        current_step: &mut &'static str,
    ) -> Result<(), ProvisionError> {
        let id = tenant.id;
        let version = released_version(&self.store, &self.migrations).await?;
        if tenant.host_id.is_none() {
            tenant = self
                .timed(id, attempt, step::PLACED, current_step, async {
                    // A warm database, if the pool has one, arrives migrated and owned.
                    match self.store.claim_warm(&self.keyring, id, version).await? {
                        Some(claimed) => Ok(claimed),
                        None => self.place(&tenant).await,
                    }
                })
                .await?;
        }
        // Steps recorded as done are not repeated: each is recorded only after its work.
        let done = step::index(tenant.provisioning_step.as_deref());
        let needed = |name: &str| step::index(Some(name)) > done;
        let host_id = tenant.host_id.ok_or(ProvisionError::UnknownHost)?;
        let sealed_url = tenant
            .sealed_database_url
            .as_ref()
            .ok_or(ProvisionError::BadHostUrl)?;
        let tenant_url = self
            .keyring
            .open(Purpose::TenantDatabaseUrl, id, sealed_url)?;
        let database = tenant
            .database_name
            .clone()
            .ok_or(ProvisionError::BadHostUrl)?;
        let role = tenant.role_name.clone().ok_or(ProvisionError::BadHostUrl)?;

        if needed(step::ROLE_CREATED) || needed(step::DATABASE_CREATED) {
            let host = self.store.host(host_id).await?;
            let admin_url =
                self.keyring
                    .open(Purpose::HostAdminUrl, host.id, &host.sealed_admin_url)?;
            self.timed(id, attempt, step::ROLE_CREATED, current_step, async {
                let admin = connect(&admin_url).await?;
                ensure_role(&admin, &role, &tenant_url).await?;
                Ok(())
            })
            .await?;
            self.timed(id, attempt, step::DATABASE_CREATED, current_step, async {
                let admin = connect(&admin_url).await?;
                let template = crate::templates::ensure_template(
                    &self.store,
                    &self.migrations,
                    &admin,
                    &admin_url,
                    host.id,
                    version,
                )
                .await?;
                crate::templates::create_from_template(
                    &admin,
                    &admin_url,
                    &template,
                    &database,
                    &role,
                    self.settings.create_strategy,
                )
                .await
            })
            .await?;
        }

        let mut tenant_client = None;
        if needed(step::MIGRATED) {
            let client = self
                .timed(id, attempt, step::MIGRATED, current_step, async {
                    let mut client = connect(&tenant_url).await?;
                    let migrated = migrator::migrate_to(
                        &mut client,
                        &self.migrations,
                        Some(version),
                        migrator::MigrationLimits::default(),
                    )
                    .await?;
                    self.store.set_schema_version(id, migrated).await?;
                    Ok(client)
                })
                .await?;
            tenant_client = Some(client);
        }
        if let Some(hash) = tenant.pending_admin_password_hash.as_deref() {
            let email = tenant.admin_email.as_str();
            self.timed(id, attempt, step::ADMIN_SEEDED, current_step, async {
                let client = match tenant_client.take() {
                    Some(client) => client,
                    None => connect(&tenant_url).await?,
                };
                client
                    .execute(
                        "INSERT INTO users (email, password_hash, role) VALUES ($1, $2, 'owner') \
                         ON CONFLICT ((lower(email))) DO NOTHING",
                        &[&email, &hash],
                    )
                    .await?;
                Ok(())
            })
            .await?;
        }
        self.timed(id, attempt, step::ACTIVATED, current_step, async {
            self.store.activate(id).await?;
            Ok(())
        })
        .await
    }

    /// Picks a host and generates names and credentials; stored before anything is created, so
    /// a retry reuses them instead of leaving orphans.
    async fn place(&self, tenant: &TenantRecord) -> Result<TenantRecord, ProvisionError> {
        let host = self
            .store
            .choose_host()
            .await?
            .ok_or(ProvisionError::NoCapacity)?;
        let admin_url =
            self.keyring
                .open(Purpose::HostAdminUrl, host.id, &host.sealed_admin_url)?;
        let (database_name, role_name, password) = generate_names();
        let tenant_url = tenant_database_url(&admin_url, &role_name, &password, &database_name)?;
        let placement = Placement {
            host_id: host.id,
            sealed_database_url: self.keyring.seal(
                Purpose::TenantDatabaseUrl,
                tenant.id,
                &tenant_url,
            ),
            database_name,
            role_name,
        };
        Ok(self.store.place_tenant(tenant.id, &placement).await?)
    }

    /// Runs one step, records its outcome and duration, and remembers it as the current step.
    async fn timed<T>(
        &self,
        tenant_id: Uuid,
        attempt: i32,
        name: &'static str,
        current_step: &mut &'static str,
        work: impl Future<Output = Result<T, ProvisionError>>,
    ) -> Result<T, ProvisionError> {
        *current_step = name;
        crate::failpoints::hit("before", name, tenant_id).await?;
        let started = Instant::now();
        let result = work.await;
        let error = result.as_ref().err().map(ToString::to_string);
        self.store
            .record_step(
                tenant_id,
                name,
                &step::ALL,
                attempt,
                error.as_deref(),
                started.elapsed(),
            )
            .await?;
        let value = result?;
        crate::failpoints::hit("after", name, tenant_id).await?;
        Ok(value)
    }
}

/// tokio-postgres prints server errors as just "db error"; operators need the code and message.
/// (Server messages name objects, never passwords: those travel as SCRAM verifiers.)
fn describe_database_error(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// The schema version new tenants are created at: the released version (the target of the last
/// completed rollout, or the first build's newest), never a newer one a rollout is still taking
/// through the fleet. Capped at what `migrations` knows, should an older build still be running.
pub async fn released_version(
    store: &Store,
    migrations: &migrator::MigrationSet,
) -> Result<i32, StoreError> {
    let known = migrations.latest();
    Ok(match store.released_version().await? {
        Some(released) if released <= known => released,
        Some(released) => {
            tracing::warn!(
                released,
                known,
                "this build predates the released schema version"
            );
            known
        }
        None => known,
    })
}

/// `url` pointing at another database on the same server.
pub(crate) fn with_database(
    url: &SecretString,
    database: &str,
) -> Result<SecretString, ProvisionError> {
    let mut parsed =
        url::Url::parse(url.expose_secret()).map_err(|_| ProvisionError::BadHostUrl)?;
    parsed.set_path(database);
    Ok(SecretString::from(String::from(parsed)))
}

/// Fresh database and role names and a password. Names are random, never derived from input.
pub(crate) fn generate_names() -> (String, String, SecretString) {
    let suffix = Uuid::new_v4().simple().to_string();
    let database_name = format!("tenant_{}", &suffix[..20]);
    let role_name = format!("tenant_{}_owner", &suffix[..20]);
    let password = SecretString::from(Alphanumeric.sample_string(&mut rand::rng(), 40));
    (database_name, role_name, password)
}

/// The tenant's URL: the host admin URL's server, with the tenant's role, password and database.
pub(crate) fn tenant_database_url(
    admin_url: &SecretString,
    role: &str,
    password: &SecretString,
    database: &str,
) -> Result<SecretString, ProvisionError> {
    let mut url =
        url::Url::parse(admin_url.expose_secret()).map_err(|_| ProvisionError::BadHostUrl)?;
    url.set_username(role)
        .map_err(|()| ProvisionError::BadHostUrl)?;
    url.set_password(Some(password.expose_secret()))
        .map_err(|()| ProvisionError::BadHostUrl)?;
    with_database(&SecretString::from(String::from(url)), database)
}

pub(crate) async fn connect(url: &SecretString) -> Result<Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = url.expose_secret().parse()?;
    config.connect_timeout(Duration::from_secs(10));
    config.application_name("silo-provisioner");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "provisioner connection closed");
        }
    });
    Ok(client)
}

/// Creates the tenant's login role, or resets its password to the sealed one on a retry. The
/// password travels as a SCRAM verifier, so it never reaches the server (or its logs) in clear.
pub(crate) async fn ensure_role(
    admin: &Client,
    role: &str,
    tenant_url: &SecretString,
) -> Result<(), ProvisionError> {
    let config: tokio_postgres::Config = tenant_url.expose_secret().parse()?;
    let password = config.get_password().ok_or(ProvisionError::BadHostUrl)?;
    let verifier = postgres_protocol::password::scram_sha_256(password);
    let exists = admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&role])
        .await?
        .is_some();
    let verb = if exists { "ALTER" } else { "CREATE" };
    // Identifiers cannot be bound as parameters; the role name is generated, never user input.
    let statement = format!(
        "{verb} ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '{}'",
        quote_identifier(role),
        verifier.replace('\'', "''")
    );
    match admin.batch_execute(&statement).await {
        Ok(()) => Ok(()),
        // Another worker created it between our check and our CREATE: set the password.
        Err(error) if error.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) => {
            Box::pin(ensure_role(admin, role, tenant_url)).await
        }
        Err(error) => Err(error.into()),
    }
}
