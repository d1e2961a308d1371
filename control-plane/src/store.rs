//! The control-plane database's ground: the sqlx pool and its migrations, [`StoreError`], the
//! audit log, advisory session locks, and key rotation. The queries of each part of the domain
//! live beside it as `impl Store` blocks (`tenants.rs`, `hosts.rs`, `plans.rs`, …), each over
//! this pool; none of them is named here, so this module is the bottom of the crate.
//! Secrets enter and leave only as [`crate::sealing::Sealed`] blobs.

use std::str::FromStr as _;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use uuid::Uuid;

use crate::connect::{ConnectError, SslMode, TlsSettings};
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
    /// No live claim's token is published at the domain's challenge record.
    #[error(
        "no TXT record at {record} holds the token of a live claim ({found} TXT records found)"
    )]
    DomainNotProven { record: String, found: usize },
    /// Every claim on the domain expired before it was verified.
    #[error("every claim on that domain expired before it was verified")]
    DomainClaimExpired,
    #[error("the plan allows {limit} {what} and the workspace has {count}")]
    PlanLimitReached {
        what: &'static str,
        limit: i32,
        count: i64,
    },
    #[error("an import is already queued or running for this workspace")]
    ImportRunning,
    #[error("there is no such plan")]
    UnknownPlan,
    #[error("there is no such module")]
    UnknownModule,
    #[error("the tenant is `{0}`; that is not possible in this state")]
    WrongStatus(&'static str),
    /// An operator's action that the rollout's state does not allow.
    #[error("the rollout is `{state}`, so it cannot be {action}")]
    RolloutNotAllowed {
        state: &'static str,
        action: &'static str,
    },
    #[error("a `{from}` subscription cannot become `{to}`")]
    InvalidTransition {
        from: &'static str,
        to: &'static str,
    },
    #[error("the database URL is not a valid PostgreSQL URL")]
    InvalidUrl,
    /// The URL's TLS settings are unusable, or TLS with the server failed (names the server).
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
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

/// Parses a PostgreSQL URL without ever echoing it. Its `sslmode` and `sslrootcert` mean what
/// they mean to every other connection Silo makes ([`crate::connect::TlsSettings`]): sqlx's own
/// reading differs for `require` with a root certificate (it would not verify), so the mode in
/// force and the CA file are set here explicitly.
pub fn connect_options(url: &SecretString) -> StoreResult<PgConnectOptions> {
    let tls = TlsSettings::of_url(url)?;
    let root_cert = tls.root_cert_path()?;
    let options = PgConnectOptions::from_str(url.expose_secret())
        .map_err(|_| StoreError::InvalidUrl)?
        // Defence in depth: a transaction left open by a bug is ended by the server instead
        // of holding row locks (and every rollout worker behind them) forever.
        .options([("idle_in_transaction_session_timeout", "60s")])
        .ssl_mode(match tls.effective_mode() {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require => PgSslMode::Require,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::VerifyFull => PgSslMode::VerifyFull,
        });
    Ok(match root_cert {
        Some(path) => options.ssl_root_cert(path),
        None => options,
    })
}

/// [`connect_options`] for a connection sqlx makes to the control-plane server (the store's
/// pool, creating its database). sqlx's TLS always adds the public root CAs to `sslrootcert`:
/// with `verify-full` a public CA's certificate still has to name the host, but with
/// `verify-ca` any name would pass, so that mode is refused here rather than quietly weaker.
fn control_plane_options(url: &SecretString) -> StoreResult<PgConnectOptions> {
    if TlsSettings::of_url(url)?.effective_mode() == SslMode::VerifyCa {
        return Err(StoreError::Connect(ConnectError::VerifyCaOnControlPlane));
    }
    connect_options(url)
}

/// A pool on `options`; a TLS failure names the server (sqlx's own error does not).
async fn connect_pool(pool: PgPoolOptions, options: PgConnectOptions) -> StoreResult<PgPool> {
    let server = format!("{}:{}", options.get_host(), options.get_port());
    pool.connect_with(options).await.map_err(|error| {
        // sqlx reports a failed handshake as `Tls`, a refused certificate as `Io` around
        // rustls's error.
        let detail = match &error {
            sqlx::Error::Tls(detail) => Some(detail.to_string()),
            sqlx::Error::Io(io) => io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .map(ToString::to_string),
            _ => None,
        };
        match detail {
            Some(detail) => StoreError::Connect(ConnectError::Tls { server, detail }),
            None => error.into(),
        }
    })
}

/// Creates `database` on the server behind `admin_url` unless it exists.
pub async fn ensure_database(admin_url: &SecretString, database: &str) -> StoreResult<()> {
    let options = control_plane_options(admin_url)?.database("postgres");
    let pool = connect_pool(
        PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10)),
        options,
    )
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

/// The control-plane store: a cheap-to-clone handle on the sqlx pool.
#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    /// How long an unverified custom-domain claim lasts (`[domains] claim_ttl`).
    domain_claim_ttl: Duration,
}

/// An unverified custom-domain claim's life unless the settings say otherwise.
pub const DEFAULT_DOMAIN_CLAIM_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl Store {
    /// Connects to the control-plane database (creating it if the server lacks it).
    pub async fn connect(url: &SecretString, max_connections: u32) -> StoreResult<Self> {
        let options = control_plane_options(url)?;
        if let Some(database) = options.get_database() {
            ensure_database(url, database).await?;
        }
        let pool = connect_pool(
            PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(5)),
            options,
        )
        .await?;
        Ok(Self {
            pool,
            domain_claim_ttl: DEFAULT_DOMAIN_CLAIM_TTL,
        })
    }

    /// The same store, with unverified custom-domain claims lasting `ttl`.
    pub fn with_domain_claim_ttl(mut self, ttl: Duration) -> Self {
        self.domain_claim_ttl = ttl;
        self
    }

    /// How long an unverified custom-domain claim lasts.
    pub fn domain_claim_ttl(&self) -> Duration {
        self.domain_claim_ttl
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

    /// Whether the database answers and holds every control-plane migration this build knows,
    /// each applied successfully: what a process needs before it takes traffic.
    pub async fn is_ready(&self) -> bool {
        let applied: Result<Vec<i64>, _> = sqlx::query_scalar(
            "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await;
        let Ok(applied) = applied else {
            return false;
        };
        MIGRATIONS
            .iter()
            .filter(|migration| !migration.migration_type.is_down_migration())
            .all(|migration| applied.binary_search(&migration.version).is_ok())
    }

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

    // ---- change notifications ----

    /// A dedicated connection listening on `channel`.
    pub async fn listen(&self, channel: &str) -> StoreResult<sqlx::postgres::PgListener> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(channel).await?;
        Ok(listener)
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
        let trail = sqlx::query_as(
            "SELECT actor, action, detail FROM audit_log WHERE tenant_id = $1 ORDER BY id",
        )
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(trail)
    }

    // ---- key rotation ----

    /// Re-seals every tenant connection string and host admin URL not yet under the newest key.
    /// Each row is re-sealed in its own transaction under a row lock, so rotation can be
    /// interrupted and run again, and runs safely beside live traffic.
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
            let row: Option<(Option<Vec<u8>>, Option<String>)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {blob}, {key_id} FROM {table} WHERE id = $1 FOR UPDATE"
                )))
                .bind(id)
                .fetch_optional(&mut *transaction)
                .await?;
            // The row may have gone (a claimed warm database) or been re-sealed meanwhile.
            let Some((current_blob, current_key)) = row else {
                continue;
            };
            let Some(current_key) = current_key else {
                continue;
            };
            if current_key == newest {
                continue;
            }
            // A key id without a blob is as undecodable as it was when the blob was read alone.
            let current_blob = current_blob.ok_or_else(|| sqlx::Error::ColumnDecode {
                index: "0".to_owned(),
                source: Box::new(sqlx::error::UnexpectedNullError),
            })?;
            let sealed = Sealed {
                blob: current_blob,
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
