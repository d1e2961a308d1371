//! The control-plane database: the sqlx pool, its migrations, and every query on tenants,
//! database hosts and the provisioning record. Secrets enter and leave only as [`Sealed`] blobs.

use std::str::FromStr as _;
use std::time::Duration;

use apalis::prelude::TaskBuilder;
use secrecy::{ExposeSecret as _, SecretString};
use sqlx::Row as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use uuid::Uuid;

use crate::model::{PROVISION_QUEUE, ProvisionTenant, TenantStatus};
use crate::sealing::{Keyring, Purpose, Sealed};

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// What can go wrong in the store. `Display` never includes a connection string.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the subdomain is already taken")]
    SubdomainTaken,
    #[error("the record does not exist")]
    NotFound,
    #[error("a database host with that name already exists")]
    HostNameTaken,
    #[error("the database host still holds {0} tenants; move or offboard them first")]
    HostInUse(i64),
    #[error("another rollout is still open; finish, pause-and-abort or complete it first")]
    RolloutOpen,
    #[error("a super-admin with that email already exists")]
    AdminExists,
    #[error("that domain is already registered")]
    DomainTaken,
    #[error("there is no such plan")]
    UnknownPlan,
    #[error("there is no such module")]
    UnknownModule,
    #[error("the tenant is `{0}`; that is not possible in this state")]
    WrongStatus(&'static str),
    #[error("a `{from}` subscription cannot become `{to}`")]
    InvalidTransition {
        from: &'static str,
        to: &'static str,
    },
    #[error("the database URL is not a valid PostgreSQL URL")]
    InvalidUrl,
    #[error("the control-plane database is unreachable: {0}")]
    Unavailable(sqlx::Error),
    #[error("control-plane query failed: {0}")]
    Database(sqlx::Error),
    #[error("control-plane migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("job queue setup failed: {0}")]
    Queue(String),
    #[error(transparent)]
    Sealing(#[from] crate::sealing::SealingError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(error)
            }
            sqlx::Error::Configuration(_) => StoreError::InvalidUrl,
            other => StoreError::Database(other),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Parses a PostgreSQL URL without ever echoing it.
pub fn connect_options(url: &SecretString) -> StoreResult<PgConnectOptions> {
    PgConnectOptions::from_str(url.expose_secret())
        .map(|options| {
            // Defence in depth: a transaction left open by a bug is ended by the server instead
            // of holding row locks (and every rollout worker behind them) forever.
            options.options([("idle_in_transaction_session_timeout", "60s")])
        })
        .map_err(|_| StoreError::InvalidUrl)
}

/// Creates `database` on the server behind `admin_url` unless it exists.
pub async fn ensure_database(admin_url: &SecretString, database: &str) -> StoreResult<()> {
    let options = connect_options(admin_url)?.database("postgres");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&pool)
            .await?;
    if !exists {
        let statement = format!("CREATE DATABASE {}", quote_identifier(database));
        match sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&pool)
            .await
        {
            Ok(_) => {}
            // Another process created it between our check and our CREATE.
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42P04") => {}
            Err(error) => return Err(error.into()),
        }
    }
    pool.close().await;
    Ok(())
}

/// Double-quotes an SQL identifier.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A database host: a PostgreSQL server tenant databases live on.
#[derive(Debug, Clone)]
pub struct DatabaseHost {
    pub id: Uuid,
    pub name: String,
    pub sealed_admin_url: Sealed,
    pub capacity: i32,
    pub status: String,
    pub tenant_count: i64,
}

/// A tenant as the control plane records it.
#[derive(Debug, Clone)]
pub struct TenantRecord {
    pub id: Uuid,
    pub slug: String,
    pub display_name: String,
    pub status: TenantStatus,
    pub host_id: Option<Uuid>,
    pub database_name: Option<String>,
    pub role_name: Option<String>,
    pub sealed_database_url: Option<Sealed>,
    pub schema_version: Option<i32>,
    pub admin_email: String,
    pub pending_admin_password_hash: Option<String>,
    pub provisioning_step: Option<String>,
    pub provisioning_attempts: i32,
    pub failure_reason: Option<String>,
}

/// A database (and role) made ahead of demand, waiting to be claimed by a signup.
#[derive(Debug, Clone)]
pub struct WarmDatabase {
    pub id: Uuid,
    pub host_id: Uuid,
    pub database_name: String,
    pub role_name: String,
    pub sealed_database_url: Sealed,
    pub schema_version: i32,
    pub ready: bool,
}

/// One pg_dump file Silo made of a tenant database.
#[derive(Debug, Clone)]
pub struct TenantExport {
    pub id: Uuid,
    pub tenant_id: Uuid,
    /// `offboarding` or `on_demand`.
    pub reason: String,
    pub path: String,
    pub bytes: i64,
    pub schema_version: Option<i32>,
}

pub(crate) async fn insert_audit(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    actor: &str,
    action: &str,
    tenant_id: Option<Uuid>,
    detail: serde_json::Value,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO audit_log (actor, action, tenant_id, detail) VALUES ($1, $2, $3, $4)")
        .bind(actor)
        .bind(action)
        .bind(tenant_id)
        .bind(detail)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

/// What a new signup stores.
#[derive(Debug)]
pub struct NewTenant<'a> {
    pub slug: &'a str,
    pub display_name: &'a str,
    pub admin_email: &'a str,
    pub admin_password_hash: &'a str,
    /// How long the new tenant's trial lasts.
    pub trial: Duration,
}

/// Where a tenant was placed and what it will be called there.
#[derive(Debug)]
pub struct Placement {
    pub host_id: Uuid,
    pub database_name: String,
    pub role_name: String,
    pub sealed_database_url: Sealed,
}

/// `SELECT <every tenant column> FROM tenants <tail>`, as a static string (sqlx audits dynamic SQL).
macro_rules! select_tenants {
    ($tail:literal) => {
        concat!(
            "SELECT id, slug, display_name, status, host_id, database_name, role_name, ",
            "sealed_database_url, database_url_key_id, schema_version, admin_email, ",
            "pending_admin_password_hash, provisioning_step, provisioning_attempts, failure_reason ",
            "FROM tenants ",
            $tail
        )
    };
}

fn tenant_from_row(row: &PgRow) -> StoreResult<TenantRecord> {
    let status: String = row.try_get("status")?;
    let sealed_blob: Option<Vec<u8>> = row.try_get("sealed_database_url")?;
    let key_id: Option<String> = row.try_get("database_url_key_id")?;
    Ok(TenantRecord {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        display_name: row.try_get("display_name")?,
        status: TenantStatus::parse(&status).ok_or_else(|| {
            StoreError::Database(sqlx::Error::Decode(
                format!("unknown tenant status {status}").into(),
            ))
        })?,
        host_id: row.try_get("host_id")?,
        database_name: row.try_get("database_name")?,
        role_name: row.try_get("role_name")?,
        sealed_database_url: sealed_blob
            .zip(key_id)
            .map(|(blob, key_id)| Sealed { key_id, blob }),
        schema_version: row.try_get("schema_version")?,
        admin_email: row.try_get("admin_email")?,
        pending_admin_password_hash: row.try_get("pending_admin_password_hash")?,
        provisioning_step: row.try_get("provisioning_step")?,
        provisioning_attempts: row.try_get("provisioning_attempts")?,
        failure_reason: row.try_get("failure_reason")?,
    })
}

fn host_from_row(row: &PgRow) -> StoreResult<DatabaseHost> {
    Ok(DatabaseHost {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        sealed_admin_url: Sealed {
            key_id: row.try_get("admin_url_key_id")?,
            blob: row.try_get("sealed_admin_url")?,
        },
        capacity: row.try_get("capacity")?,
        status: row.try_get("status")?,
        tenant_count: row.try_get("tenant_count")?,
    })
}

/// The control-plane store: a cheap-to-clone handle on the sqlx pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    /// Connects to the control-plane database (creating it if the server lacks it).
    pub async fn connect(url: &SecretString, max_connections: u32) -> StoreResult<Self> {
        let options = connect_options(url)?;
        if let Some(database) = options.get_database() {
            ensure_database(url, database).await?;
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Applies the control plane's migrations and the job queue's.
    pub async fn migrate(&self) -> StoreResult<()> {
        MIGRATIONS.run(&self.pool).await?;
        apalis_postgres::PostgresStorage::setup(&self.pool)
            .await
            .map_err(|error| StoreError::Queue(error.to_string()))?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    // ---- database hosts ----

    pub async fn add_host(
        &self,
        keyring: &Keyring,
        name: &str,
        admin_url: &SecretString,
        capacity: i32,
    ) -> StoreResult<Uuid> {
        connect_options(admin_url)?;
        let id = Uuid::new_v4();
        let sealed = keyring.seal(Purpose::HostAdminUrl, id, admin_url);
        let result = sqlx::query(
            "INSERT INTO database_hosts (id, name, sealed_admin_url, admin_url_key_id, capacity) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(name)
        .bind(&sealed.blob)
        .bind(&sealed.key_id)
        .bind(capacity)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(id),
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("23505") => {
                Err(StoreError::HostNameTaken)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Registers `name` with `admin_url`, or refreshes its URL if it is already registered.
    pub async fn upsert_host(
        &self,
        keyring: &Keyring,
        name: &str,
        admin_url: &SecretString,
        capacity: i32,
    ) -> StoreResult<Uuid> {
        if let Some(host) = self.host_by_name(name).await? {
            let sealed = keyring.seal(Purpose::HostAdminUrl, host.id, admin_url);
            self.store_host_admin_url(host.id, &sealed).await?;
            return Ok(host.id);
        }
        match self.add_host(keyring, name, admin_url, capacity).await {
            Err(StoreError::HostNameTaken) => {
                Box::pin(self.upsert_host(keyring, name, admin_url, capacity)).await
            }
            other => other,
        }
    }

    pub async fn store_host_admin_url(&self, host_id: Uuid, sealed: &Sealed) -> StoreResult<()> {
        sqlx::query(
            "UPDATE database_hosts SET sealed_admin_url = $2, admin_url_key_id = $3, updated_at = now() \
             WHERE id = $1",
        )
        .bind(host_id)
        .bind(&sealed.blob)
        .bind(&sealed.key_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Sets a host `active` (takes new tenants) or `draining` (takes none; serves its own).
    pub async fn set_host_status(&self, name: &str, status: &str) -> StoreResult<()> {
        let updated = sqlx::query(
            "UPDATE database_hosts SET status = $2, updated_at = now() WHERE name = $1",
        )
        .bind(name)
        .bind(status)
        .execute(&self.pool)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Deletes a host record that holds no tenants (its warm databases and templates must have
    /// been dropped from the server first).
    pub async fn delete_host(&self, host_id: Uuid) -> StoreResult<()> {
        let mut transaction = self.pool.begin().await?;
        let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE host_id = $1")
            .bind(host_id)
            .fetch_one(&mut *transaction)
            .await?;
        if tenants > 0 {
            return Err(StoreError::HostInUse(tenants));
        }
        sqlx::query("DELETE FROM database_hosts WHERE id = $1")
            .bind(host_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Whether a new tenant could be placed now: a ready warm database or an active host with room.
    pub async fn has_capacity(&self) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM database_hosts h WHERE h.status = 'active' \
             AND (SELECT count(*) FROM tenants t WHERE t.host_id = h.id) < h.capacity)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn hosts(&self) -> StoreResult<Vec<DatabaseHost>> {
        let rows = sqlx::query(
            "SELECT h.*, (SELECT count(*) FROM tenants t WHERE t.host_id = h.id) AS tenant_count \
             FROM database_hosts h ORDER BY h.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(host_from_row).collect()
    }

    pub async fn host(&self, id: Uuid) -> StoreResult<DatabaseHost> {
        let row = sqlx::query(
            "SELECT h.*, (SELECT count(*) FROM tenants t WHERE t.host_id = h.id) AS tenant_count \
             FROM database_hosts h WHERE h.id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        host_from_row(&row)
    }

    pub async fn host_by_name(&self, name: &str) -> StoreResult<Option<DatabaseHost>> {
        let row = sqlx::query(
            "SELECT h.*, (SELECT count(*) FROM tenants t WHERE t.host_id = h.id) AS tenant_count \
             FROM database_hosts h WHERE h.name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(host_from_row).transpose()
    }

    // ---- tenants ----

    /// Takes the tenant's provisioning lock on a connection of its own, waiting while another
    /// worker holds it. The lock lives exactly as long as the returned guard's connection, so a
    /// worker that dies releases it with its connection and another can take over.
    pub async fn lock_tenant(&self, tenant_id: Uuid) -> StoreResult<SessionLock> {
        self.session_lock(LockClass::Tenant, &tenant_id.to_string())
            .await
    }

    /// Takes the lock that serialises building one host's template at one version.
    pub async fn lock_template(&self, host_id: Uuid, version: i32) -> StoreResult<SessionLock> {
        self.session_lock(LockClass::Template, &format!("{host_id}/{version}"))
            .await
    }

    /// Takes the lock that lets one worker at a time refill a host's warm pool, if it is free.
    pub async fn try_lock_warm_pool(&self, host_id: Uuid) -> StoreResult<Option<SessionLock>> {
        self.try_session_lock(LockClass::WarmPool, &host_id.to_string())
            .await
    }

    /// The lock held by whichever process drives a rollout; `None` if another process has it.
    pub async fn try_lock_rollout(&self, rollout_id: Uuid) -> StoreResult<Option<SessionLock>> {
        self.try_session_lock(LockClass::Rollout, &rollout_id.to_string())
            .await
    }

    async fn try_session_lock(
        &self,
        class: LockClass,
        key: &str,
    ) -> StoreResult<Option<SessionLock>> {
        use sqlx::Connection as _;
        let mut connection =
            sqlx::postgres::PgConnection::connect_with(&self.pool.connect_options()).await?;
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(class as i32)
            .bind(key)
            .fetch_one(&mut connection)
            .await?;
        if taken {
            Ok(Some(SessionLock { connection }))
        } else {
            let _ = connection.close().await;
            Ok(None)
        }
    }

    async fn session_lock(&self, class: LockClass, key: &str) -> StoreResult<SessionLock> {
        use sqlx::Connection as _;
        let mut connection =
            sqlx::postgres::PgConnection::connect_with(&self.pool.connect_options()).await?;
        sqlx::query("SELECT pg_advisory_lock($1, hashtext($2))")
            .bind(class as i32)
            .bind(key)
            .execute(&mut connection)
            .await?;
        Ok(SessionLock { connection })
    }

    // ---- warm pool ----

    /// Records a warm database about to be created (names and sealed URL first, so a crash
    /// leaves a row to finish rather than an orphan).
    pub async fn insert_warm(&self, warm: &WarmDatabase) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO warm_databases (id, host_id, database_name, role_name, sealed_database_url, \
             database_url_key_id, schema_version) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(warm.id)
        .bind(warm.host_id)
        .bind(&warm.database_name)
        .bind(&warm.role_name)
        .bind(&warm.sealed_database_url.blob)
        .bind(&warm.sealed_database_url.key_id)
        .bind(warm.schema_version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn mark_warm_ready(&self, id: Uuid) -> StoreResult<()> {
        sqlx::query("UPDATE warm_databases SET status = 'ready' WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Warm databases of a host: (ready or creating at `version`) and those at other versions.
    pub async fn warm_databases(&self, host_id: Uuid) -> StoreResult<Vec<WarmDatabase>> {
        let rows = sqlx::query(
            "SELECT id, host_id, database_name, role_name, sealed_database_url, database_url_key_id, \
             schema_version, status FROM warm_databases WHERE host_id = $1 ORDER BY created_at",
        )
        .bind(host_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(WarmDatabase {
                    id: row.try_get("id")?,
                    host_id: row.try_get("host_id")?,
                    database_name: row.try_get("database_name")?,
                    role_name: row.try_get("role_name")?,
                    sealed_database_url: Sealed {
                        blob: row.try_get("sealed_database_url")?,
                        key_id: row.try_get("database_url_key_id")?,
                    },
                    schema_version: row.try_get("schema_version")?,
                    ready: row.try_get::<String, _>("status")? == "ready",
                })
            })
            .collect()
    }

    pub async fn delete_warm(&self, id: Uuid) -> StoreResult<()> {
        sqlx::query("DELETE FROM warm_databases WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Atomically takes one ready warm database at `version` on a host with free capacity and
    /// places the tenant in it, re-sealing its URL under the tenant's id. Returns `None` when the
    /// pool is empty.
    pub async fn claim_warm(
        &self,
        keyring: &Keyring,
        tenant_id: Uuid,
        version: i32,
    ) -> StoreResult<Option<TenantRecord>> {
        let mut transaction = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT w.id, w.host_id, w.database_name, w.role_name, w.sealed_database_url, w.database_url_key_id \
             FROM warm_databases w JOIN database_hosts h ON h.id = w.host_id \
             WHERE w.status = 'ready' AND w.schema_version = $1 AND h.status = 'active' \
               AND (SELECT count(*) FROM tenants t WHERE t.host_id = h.id) < h.capacity \
             ORDER BY w.created_at LIMIT 1 FOR UPDATE OF w SKIP LOCKED",
        )
        .bind(version)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let warm_id: Uuid = row.try_get("id")?;
        let sealed = Sealed {
            blob: row.try_get("sealed_database_url")?,
            key_id: row.try_get("database_url_key_id")?,
        };
        let url = keyring.open(Purpose::WarmDatabaseUrl, warm_id, &sealed)?;
        let resealed = keyring.seal(Purpose::TenantDatabaseUrl, tenant_id, &url);
        let placed = sqlx::query(
            "UPDATE tenants SET host_id = $2, database_name = $3, role_name = $4, sealed_database_url = $5, \
             database_url_key_id = $6, schema_version = $7, provisioning_step = 'migrated', updated_at = now() \
             WHERE id = $1 AND host_id IS NULL",
        )
        .bind(tenant_id)
        .bind(row.try_get::<Uuid, _>("host_id")?)
        .bind(row.try_get::<String, _>("database_name")?)
        .bind(row.try_get::<String, _>("role_name")?)
        .bind(&resealed.blob)
        .bind(&resealed.key_id)
        .bind(version)
        .execute(&mut *transaction)
        .await?;
        if placed.rows_affected() == 0 {
            // Already placed (a retry): leave the warm database in the pool.
            return Ok(None);
        }
        sqlx::query("DELETE FROM warm_databases WHERE id = $1")
            .bind(warm_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(Some(self.tenant(tenant_id).await?))
    }

    // ---- templates ----

    /// The ready template database of `host_id` at `version`, if one was built.
    pub async fn template(&self, host_id: Uuid, version: i32) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT database_name FROM host_templates WHERE host_id = $1 AND schema_version = $2",
        )
        .bind(host_id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn record_template(
        &self,
        host_id: Uuid,
        version: i32,
        database: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO host_templates (host_id, schema_version, database_name) VALUES ($1, $2, $3) \
             ON CONFLICT (host_id, schema_version) DO UPDATE SET database_name = $3, ready_at = now()",
        )
        .bind(host_id)
        .bind(version)
        .bind(database)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn templates_of(&self, host_id: Uuid) -> StoreResult<Vec<(i32, String)>> {
        let rows = sqlx::query(
            "SELECT schema_version, database_name FROM host_templates WHERE host_id = $1",
        )
        .bind(host_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    pub async fn forget_template(&self, host_id: Uuid, version: i32) -> StoreResult<()> {
        sqlx::query("DELETE FROM host_templates WHERE host_id = $1 AND schema_version = $2")
            .bind(host_id)
            .bind(version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Inserts the tenant and enqueues its provisioning job in one transaction, so a crash can
    /// never leave a tenant without a job or a job without a tenant.
    pub async fn create_tenant_and_enqueue(&self, new: NewTenant<'_>) -> StoreResult<Uuid> {
        let id = Uuid::new_v4();
        let mut transaction = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO tenants (id, slug, display_name, status, admin_email, pending_admin_password_hash) \
             VALUES ($1, $2, $3, 'provisioning', $4, $5) ON CONFLICT (slug) DO NOTHING",
        )
        .bind(id)
        .bind(new.slug)
        .bind(new.display_name)
        .bind(new.admin_email)
        .bind(new.admin_password_hash)
        .execute(&mut *transaction)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::SubdomainTaken);
        }
        crate::subscriptions::start_trial(&mut transaction, id, new.trial).await?;
        enqueue_provisioning(&mut transaction, id).await?;
        transaction.commit().await?;
        Ok(id)
    }

    /// Puts a failed tenant back to `provisioning` and enqueues it again.
    pub async fn retry_provisioning(&self, tenant_id: Uuid) -> StoreResult<()> {
        let mut transaction = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE tenants SET status = 'provisioning', failure_reason = NULL, provisioning_attempts = 0, \
             updated_at = now() WHERE id = $1 AND status = 'failed'",
        )
        .bind(tenant_id)
        .execute(&mut *transaction)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        enqueue_provisioning(&mut transaction, tenant_id).await?;
        transaction.commit().await?;
        Ok(())
    }

    pub async fn tenant(&self, id: Uuid) -> StoreResult<TenantRecord> {
        let row = sqlx::query(select_tenants!("WHERE id = $1"))
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        tenant_from_row(&row)
    }

    pub async fn tenant_by_slug(&self, slug: &str) -> StoreResult<Option<TenantRecord>> {
        let row = sqlx::query(select_tenants!("WHERE slug = $1"))
            .bind(slug)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(tenant_from_row).transpose()
    }

    pub async fn tenants(&self) -> StoreResult<Vec<TenantRecord>> {
        let rows = sqlx::query(select_tenants!("ORDER BY slug"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(tenant_from_row).collect()
    }

    /// Records where the tenant goes; only the first placement sticks, so a retried job reuses it.
    pub async fn place_tenant(
        &self,
        tenant_id: Uuid,
        placement: &Placement,
    ) -> StoreResult<TenantRecord> {
        sqlx::query(
            "UPDATE tenants SET host_id = $2, database_name = $3, role_name = $4, \
             sealed_database_url = $5, database_url_key_id = $6, updated_at = now() \
             WHERE id = $1 AND host_id IS NULL",
        )
        .bind(tenant_id)
        .bind(placement.host_id)
        .bind(&placement.database_name)
        .bind(&placement.role_name)
        .bind(&placement.sealed_database_url.blob)
        .bind(&placement.sealed_database_url.key_id)
        .execute(&self.pool)
        .await?;
        self.tenant(tenant_id).await
    }

    /// The active host with the most free capacity, if any has room.
    pub async fn choose_host(&self) -> StoreResult<Option<DatabaseHost>> {
        let row = sqlx::query(
            "SELECT h.*, count(t.id) AS tenant_count FROM database_hosts h \
             LEFT JOIN tenants t ON t.host_id = h.id \
             WHERE h.status = 'active' GROUP BY h.id \
             HAVING count(t.id) < h.capacity \
             ORDER BY h.capacity - count(t.id) DESC, h.name LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(host_from_row).transpose()
    }

    /// Records one step attempt. On success the tenant's `provisioning_step` moves forward to
    /// `step` (never back: `order` lists every step in order).
    pub async fn record_step(
        &self,
        tenant_id: Uuid,
        step: &str,
        order: &[&str],
        attempt: i32,
        error: Option<&str>,
        duration: Duration,
    ) -> StoreResult<()> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO provisioning_events (tenant_id, step, attempt, outcome, error, duration_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tenant_id)
        .bind(step)
        .bind(attempt)
        .bind(if error.is_none() { "succeeded" } else { "failed" })
        .bind(error)
        .bind(i32::try_from(duration.as_millis()).unwrap_or(i32::MAX))
        .execute(&mut *transaction)
        .await?;
        if error.is_none() {
            sqlx::query(
                "UPDATE tenants SET provisioning_step = $2, updated_at = now() WHERE id = $1 \
                 AND coalesce(array_position($3::text[], provisioning_step), 0) < array_position($3::text[], $2)",
            )
            .bind(tenant_id)
            .bind(step)
            .bind(order)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Counts one more provisioning attempt and returns the new count.
    pub async fn begin_attempt(&self, tenant_id: Uuid) -> StoreResult<i32> {
        let attempts = sqlx::query_scalar(
            "UPDATE tenants SET provisioning_attempts = provisioning_attempts + 1, updated_at = now() \
             WHERE id = $1 RETURNING provisioning_attempts",
        )
        .bind(tenant_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(attempts)
    }

    pub async fn set_schema_version(&self, tenant_id: Uuid, version: i32) -> StoreResult<()> {
        sqlx::query("UPDATE tenants SET schema_version = $2, updated_at = now() WHERE id = $1")
            .bind(tenant_id)
            .bind(version)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks the tenant active and forgets the admin password hash, which now lives in its
    /// database. The step is set in the same statement, so nobody reads `active` with an
    /// earlier step.
    pub async fn activate(&self, tenant_id: Uuid) -> StoreResult<()> {
        sqlx::query(
            "UPDATE tenants SET status = 'active', provisioning_step = 'activated', \
             pending_admin_password_hash = NULL, failure_reason = NULL, \
             activated_at = now(), updated_at = now() WHERE id = $1 AND status = 'provisioning'",
        )
        .bind(tenant_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn mark_failed(&self, tenant_id: Uuid, reason: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE tenants SET status = 'failed', failure_reason = $2, updated_at = now() \
             WHERE id = $1 AND status = 'provisioning'",
        )
        .bind(tenant_id)
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_status(&self, tenant_id: Uuid, status: TenantStatus) -> StoreResult<()> {
        let updated =
            sqlx::query("UPDATE tenants SET status = $2, updated_at = now() WHERE id = $1")
                .bind(tenant_id)
                .bind(status.as_str())
                .execute(&self.pool)
                .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    // ---- change notifications ----

    /// A dedicated connection listening on `channel`.
    pub async fn listen(&self, channel: &str) -> StoreResult<sqlx::postgres::PgListener> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(channel).await?;
        Ok(listener)
    }

    // ---- offboarding and audit ----

    /// Cancels a tenant: it stops being served at once (the status change is published to every
    /// router), is exported by a worker, and its database and role are dropped after `grace`.
    /// Recorded in the audit log in the same transaction.
    pub async fn cancel_tenant(
        &self,
        tenant_id: Uuid,
        grace: Duration,
        actor: &str,
    ) -> StoreResult<TenantRecord> {
        use crate::subscriptions::{self, Effects, Lifecycle, SubscriptionStatus};
        let mut transaction = self.pool.begin().await?;
        let before: Option<String> =
            sqlx::query_scalar("SELECT status FROM tenants WHERE id = $1 FOR UPDATE")
                .bind(tenant_id)
                .fetch_optional(&mut *transaction)
                .await?;
        let before = before.ok_or(StoreError::NotFound)?;
        if let Some(status @ (TenantStatus::Cancelled | TenantStatus::Deprovisioned)) =
            TenantStatus::parse(&before)
        {
            return Err(StoreError::WrongStatus(status.as_str()));
        }
        // The subscription ends with the tenant (a tenant from before billing may have none).
        match subscriptions::lock(&mut transaction, tenant_id).await {
            Ok(current) if current.status != SubscriptionStatus::Cancelled => {
                let lifecycle = Lifecycle {
                    trial: Duration::ZERO,
                    past_due_grace: Duration::ZERO,
                    offboarding_grace: grace,
                };
                subscriptions::transition(
                    &mut transaction,
                    &current,
                    SubscriptionStatus::Cancelled,
                    "cancelled",
                    actor,
                    &lifecycle,
                    Effects::default(),
                )
                .await?;
            }
            Ok(_) | Err(StoreError::NotFound) => {
                subscriptions::cancel_tenant_in(&mut transaction, tenant_id, grace, actor).await?;
            }
            Err(error) => return Err(error),
        }
        transaction.commit().await?;
        self.tenant(tenant_id).await
    }

    /// Cancelled tenants, with whether each is past its grace period.
    pub async fn cancelled_tenants(&self) -> StoreResult<Vec<(Uuid, bool)>> {
        let rows = sqlx::query(
            "SELECT id, purge_after <= now() AS due FROM tenants WHERE status = 'cancelled' \
             ORDER BY purge_after",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("due")?)))
            .collect()
    }

    /// Ends offboarding: the database and role are gone, so the tenant no longer counts against
    /// its host and its connection string is forgotten.
    pub async fn mark_deprovisioned(&self, tenant_id: Uuid, actor: &str) -> StoreResult<()> {
        let mut transaction = self.pool.begin().await?;
        let host: Option<Option<String>> = sqlx::query_scalar(
            "SELECT h.name FROM tenants t LEFT JOIN database_hosts h ON h.id = t.host_id \
             WHERE t.id = $1 AND t.status = 'cancelled' FOR UPDATE OF t",
        )
        .bind(tenant_id)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(host) = host else {
            return Err(StoreError::WrongStatus("not cancelled"));
        };
        sqlx::query(
            "UPDATE tenants SET status = 'deprovisioned', deprovisioned_at = now(), host_id = NULL, \
             sealed_database_url = NULL, database_url_key_id = NULL, updated_at = now() WHERE id = $1",
        )
        .bind(tenant_id)
        .execute(&mut *transaction)
        .await?;
        insert_audit(
            &mut transaction,
            actor,
            "tenant.deprovision",
            Some(tenant_id),
            serde_json::json!({"before": "cancelled", "after": "deprovisioned", "host": host}),
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Records a finished export file.
    pub async fn record_export(&self, export: &TenantExport) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO tenant_exports (id, tenant_id, reason, path, bytes, schema_version) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(export.id)
        .bind(export.tenant_id)
        .bind(&export.reason)
        .bind(&export.path)
        .bind(export.bytes)
        .bind(export.schema_version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A tenant's exports, oldest first.
    pub async fn exports_of(&self, tenant_id: Uuid) -> StoreResult<Vec<TenantExport>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, reason, path, bytes, schema_version FROM tenant_exports \
             WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(TenantExport {
                    id: row.try_get("id")?,
                    tenant_id: row.try_get("tenant_id")?,
                    reason: row.try_get("reason")?,
                    path: row.try_get("path")?,
                    bytes: row.try_get("bytes")?,
                    schema_version: row.try_get("schema_version")?,
                })
            })
            .collect()
    }

    /// Appends one row to the audit log.
    /// Deletes one of a tenant's rows by key (`sql`: `$1` the tenant id, `$2` the key) and
    /// audits it, in one transaction; `NotFound` (nothing audited) if there was no such row.
    pub(crate) async fn delete_audited(
        &self,
        sql: &'static str,
        tenant_id: Uuid,
        key: &str,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> StoreResult<()> {
        let mut transaction = self.pool.begin().await?;
        let removed = sqlx::query(sql)
            .bind(tenant_id)
            .bind(key)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        if removed == 0 {
            return Err(StoreError::NotFound);
        }
        insert_audit(&mut transaction, actor, action, Some(tenant_id), detail).await?;
        transaction.commit().await?;
        Ok(())
    }

    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        tenant_id: Option<Uuid>,
        detail: serde_json::Value,
    ) -> StoreResult<()> {
        let mut transaction = self.pool.begin().await?;
        insert_audit(&mut transaction, actor, action, tenant_id, detail).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// A tenant's audit trail, oldest first: (actor, action, detail).
    pub async fn audit_of(
        &self,
        tenant_id: Uuid,
    ) -> StoreResult<Vec<(String, String, serde_json::Value)>> {
        let rows = sqlx::query(
            "SELECT actor, action, detail FROM audit_log WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("actor")?,
                    row.try_get("action")?,
                    row.try_get("detail")?,
                ))
            })
            .collect()
    }

    // ---- key rotation ----

    /// Re-seals every tenant connection string and host admin URL not yet under the newest key.
    /// Each row is re-sealed in its own transaction under a row lock, so rotation can be
    /// interrupted and run again, and runs safely beside live traffic.
    /// Stores a tenant's new sealed database URL (after a credential rotation), audited. The
    /// change trigger tells every router, which then builds a new pool with it.
    pub async fn replace_tenant_url(
        &self,
        tenant_id: Uuid,
        sealed: &Sealed,
        actor: &str,
    ) -> StoreResult<()> {
        let mut transaction = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE tenants SET sealed_database_url = $2, database_url_key_id = $3, \
             updated_at = now() WHERE id = $1 AND sealed_database_url IS NOT NULL",
        )
        .bind(tenant_id)
        .bind(&sealed.blob)
        .bind(&sealed.key_id)
        .execute(&mut *transaction)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        insert_audit(
            &mut transaction,
            actor,
            "tenant.rotate_credentials",
            Some(tenant_id),
            serde_json::json!({}),
        )
        .await?;
        transaction.commit().await?;
        Ok(())
    }

    pub async fn reseal_all(&self, keyring: &Keyring) -> StoreResult<RotationReport> {
        Ok(RotationReport {
            tenants: self.reseal_table(keyring, &SEALED_TENANT_URLS).await?,
            hosts: self.reseal_table(keyring, &SEALED_HOST_URLS).await?,
            warm_databases: self.reseal_table(keyring, &SEALED_WARM_URLS).await?,
            admin_totp_secrets: self.reseal_table(keyring, &SEALED_ADMIN_TOTP).await?,
            integrations: self.reseal_integrations(keyring).await?,
        })
    }

    async fn reseal_table(&self, keyring: &Keyring, column: &SealedColumn) -> StoreResult<u64> {
        let SealedColumn {
            table,
            blob,
            key_id,
            purpose,
        } = *column;
        let newest = keyring.newest_key_id();
        let ids: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM {table} WHERE {key_id} IS NOT NULL AND {key_id} <> $1"
        )))
        .bind(newest)
        .fetch_all(&self.pool)
        .await?;
        let mut resealed_rows = 0;
        for id in ids {
            let mut transaction = self.pool.begin().await?;
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {blob}, {key_id} FROM {table} WHERE id = $1 FOR UPDATE"
            )))
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await?;
            // The row may have gone (a claimed warm database) or been re-sealed meanwhile.
            let Some(row) = row else { continue };
            let Some(current_key) = row.try_get::<Option<String>, _>(1)? else {
                continue;
            };
            if current_key == newest {
                continue;
            }
            let sealed = Sealed {
                blob: row.try_get(0)?,
                key_id: current_key,
            };
            let plaintext = keyring.open(purpose, id, &sealed)?;
            let resealed = keyring.seal(purpose, id, &plaintext);
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET {blob} = $2, {key_id} = $3 WHERE id = $1"
            )))
            .bind(id)
            .bind(&resealed.blob)
            .bind(&resealed.key_id)
            .execute(&mut *transaction)
            .await?;
            transaction.commit().await?;
            resealed_rows += 1;
        }
        Ok(resealed_rows)
    }
}

/// A column holding sealed secrets, for rotation. Names are constants, never input.
#[derive(Debug, Clone, Copy)]
struct SealedColumn {
    table: &'static str,
    blob: &'static str,
    key_id: &'static str,
    purpose: Purpose,
}

const SEALED_TENANT_URLS: SealedColumn = SealedColumn {
    table: "tenants",
    blob: "sealed_database_url",
    key_id: "database_url_key_id",
    purpose: Purpose::TenantDatabaseUrl,
};
const SEALED_HOST_URLS: SealedColumn = SealedColumn {
    table: "database_hosts",
    blob: "sealed_admin_url",
    key_id: "admin_url_key_id",
    purpose: Purpose::HostAdminUrl,
};
const SEALED_WARM_URLS: SealedColumn = SealedColumn {
    table: "warm_databases",
    blob: "sealed_database_url",
    key_id: "database_url_key_id",
    purpose: Purpose::WarmDatabaseUrl,
};

const SEALED_ADMIN_TOTP: SealedColumn = SealedColumn {
    table: "admin_users",
    blob: "sealed_totp_secret",
    key_id: "totp_key_id",
    purpose: Purpose::AdminTotpSecret,
};

/// The first key of the two-key advisory locks Silo takes in the control plane.
#[derive(Debug, Clone, Copy)]
enum LockClass {
    Tenant = 0x5110,
    Template = 0x5111,
    WarmPool = 0x5112,
    Rollout = 0x5113,
}

/// Holds an advisory lock on a connection of its own; dropping it closes the connection, which
/// releases the lock, so a process that dies never leaves a lock behind.
#[derive(Debug)]
pub struct SessionLock {
    connection: sqlx::postgres::PgConnection,
}

impl SessionLock {
    /// Releases the lock by closing its connection.
    pub async fn release(self) {
        use sqlx::Connection as _;
        let _ = self.connection.close().await;
    }
}

/// How many secrets a rotation re-sealed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RotationReport {
    pub tenants: u64,
    pub hosts: u64,
    pub warm_databases: u64,
    pub admin_totp_secrets: u64,
    /// Tenants' integration credentials (`tenant_integrations`).
    pub integrations: u64,
}

async fn enqueue_provisioning(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant_id: Uuid,
) -> StoreResult<()> {
    let payload = serde_json::to_vec(&ProvisionTenant { tenant_id })
        .expect("a job of a uuid always serialises");
    let task = TaskBuilder::new(payload).build();
    apalis_postgres::queries::push_tasks(&mut **transaction, PROVISION_QUEUE, vec![task])
        .await
        .map_err(|error| StoreError::Queue(error.to_string()))
}
