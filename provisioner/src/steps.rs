//! The provisioning steps, in order: place → create role → create database → migrate →
//! seed admin → activate. Each checks what already exists before acting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use control_plane::model::TenantStatus;
use control_plane::settings::ProvisioningSettings;
use control_plane::store::StoreError;
use control_plane::tenants::{Placement, TenantRecord};
use control_plane::{Keyring, Purpose, Store};
use uuid::Uuid;

use crate::host_sql::{
    ProvisionError, connect, ensure_role, generate_names, released_version, tenant_database_url,
};

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
