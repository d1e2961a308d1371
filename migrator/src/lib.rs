//! Applies tenant-schema migrations to one tenant database safely, forwards or back: under an
//! advisory lock, with lock and statement timeouts, recording history in the tenant's own
//! database. The rollout engine and the `migrator` CLI build on this.
//!
//! Invariant: two processes migrating the same database never both apply a migration; the
//! advisory lock serialises them and refinery's history makes the second a no-op.

pub mod drift;
pub mod lint;
mod outside;
pub mod reach;
mod revert;
pub mod rollout;

pub use revert::revert_to;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tenant_schema::Migration;
use tokio_postgres::Client;

/// The advisory lock key every Silo migrator takes in a tenant database (advisory locks are
/// scoped to the database, so one constant serves every tenant).
const MIGRATION_LOCK_KEY: i64 = 0x0511_105C_4E3A;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("tenant database query failed: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    /// A statement of a migration that runs outside a transaction failed; `cleanup` says what
    /// was done about an invalid index it left behind.
    #[error(
        "V{version} (run outside a transaction) failed at statement {statement}: {error}; {cleanup}"
    )]
    OutsideTransaction {
        version: i32,
        statement: usize,
        #[source]
        error: tokio_postgres::Error,
        cleanup: String,
    },
    /// A migration outside a transaction ran, yet left an invalid index (which is dropped).
    #[error("V{version} left the invalid index {index} behind; {cleanup}")]
    InvalidIndexLeft {
        version: i32,
        index: String,
        cleanup: String,
    },
    #[error(
        "V{version} has no revert script (V{version}__{name}.revert.sql): it cannot be rolled back"
    )]
    MissingRevert { version: i32, name: String },
    #[error("reverting V{version} failed: {error}")]
    RevertFailed {
        version: i32,
        #[source]
        error: tokio_postgres::Error,
    },
    #[error("the revert script for V{0} has no migration of that version beside it")]
    UnpairedRevert(i32),
}

/// Timeouts that keep a migration from stalling tenant traffic.
#[derive(Debug, Clone, Copy)]
pub struct MigrationLimits {
    /// How long a statement may wait for a table lock before the migration fails.
    pub lock_timeout: Duration,
    /// How long one statement may run.
    pub statement_timeout: Duration,
}

impl Default for MigrationLimits {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(300),
        }
    }
}

/// How the migrator's tenant connections present themselves (10 s connect timeout).
pub const MIGRATOR_CONNECTION: control_plane::connect::ConnectOptions =
    control_plane::connect::ConnectOptions::named("silo-migrator");

/// Connects to a tenant database from its sealed URL, as the migrator. The error is safe to
/// show: it never contains the URL.
pub async fn connect_tenant(
    keyring: &control_plane::Keyring,
    tenant_id: uuid::Uuid,
    sealed: Option<&control_plane::Sealed>,
) -> Result<Client, String> {
    control_plane::connect::connect_tenant(keyring, tenant_id, sealed, MIGRATOR_CONNECTION)
        .await
        .map_err(|error| error.to_string())
}

/// Whether the tenant database has a migration history table yet.
pub async fn has_history(client: &Client) -> Result<bool, MigrateError> {
    Ok(client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&tenant_schema::HISTORY_TABLE],
        )
        .await?
        .get(0))
}

/// One row of a tenant's own migration history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppliedMigration {
    pub version: i32,
    pub name: String,
    pub applied_on: Option<String>,
}

/// The tenant's own migration history, oldest first (empty when it has none yet).
pub async fn history(client: &Client) -> Result<Vec<AppliedMigration>, MigrateError> {
    if !has_history(client).await? {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT version, name, applied_on FROM {} ORDER BY version",
                tenant_schema::HISTORY_TABLE
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| AppliedMigration {
            version: row.get("version"),
            name: row.get("name"),
            applied_on: row.get("applied_on"),
        })
        .collect())
}

/// The newest applied version recorded in the tenant's own history (0 when none).
pub async fn applied_version(client: &Client) -> Result<i32, MigrateError> {
    if !has_history(client).await? {
        return Ok(0);
    }
    let statement = format!(
        "SELECT coalesce(max(version), 0) FROM {}",
        tenant_schema::HISTORY_TABLE
    );
    Ok(client.query_one(&statement, &[]).await?.get(0))
}

/// The migrations a process knows: the embedded tenant schema, or (in tests and tools) that plus
/// more. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MigrationSet {
    migrations: Arc<Vec<Migration>>,
    /// Revert scripts by the version they undo.
    reverts: Arc<BTreeMap<i32, String>>,
}

fn embedded_reverts() -> BTreeMap<i32, String> {
    tenant_schema::reverts()
        .into_iter()
        .map(|revert| (revert.version, revert.sql.to_owned()))
        .collect()
}

impl MigrationSet {
    /// The migrations (and revert scripts) built into this binary.
    pub fn embedded() -> Self {
        Self {
            migrations: Arc::new(tenant_schema::migrations()),
            reverts: Arc::new(embedded_reverts()),
        }
    }

    /// This set plus revert scripts (version, SQL), for tests and tools; each must pair with a
    /// migration of the set.
    pub fn with_reverts(mut self, reverts: &[(i32, &str)]) -> Result<Self, MigrateError> {
        let mut all = (*self.reverts).clone();
        for (version, sql) in reverts {
            if !self.migrations.iter().any(|m| m.version() == *version) {
                return Err(MigrateError::UnpairedRevert(*version));
            }
            all.insert(*version, (*sql).to_owned());
        }
        self.reverts = Arc::new(all);
        Ok(self)
    }

    /// The revert script of `version`, if it has one.
    pub fn revert_sql(&self, version: i32) -> Option<&str> {
        self.reverts.get(&version).map(String::as_str)
    }

    /// The migrations a move from version `from` back to `to` would undo that have no revert
    /// script, newest first (empty: the move can be made).
    pub fn missing_reverts(&self, from: i32, to: i32) -> Vec<&Migration> {
        self.migrations
            .iter()
            .rev()
            .filter(|m| m.version() > to && m.version() <= from)
            .filter(|m| !self.reverts.contains_key(&m.version()))
            .collect()
    }

    /// The embedded migrations plus `extra` (`V{n}__name` and its SQL), for tests and tools.
    pub fn with_extra(extra: &[(&str, &str)]) -> Result<Self, MigrateError> {
        let mut migrations = tenant_schema::migrations();
        for (name, sql) in extra {
            migrations.push(Migration::unapplied(name, sql)?);
        }
        migrations.sort_by_key(Migration::version);
        Ok(Self {
            migrations: Arc::new(migrations),
            reverts: Arc::new(embedded_reverts()),
        })
    }

    /// The newest version in the set.
    pub fn latest(&self) -> i32 {
        self.migrations
            .iter()
            .map(Migration::version)
            .max()
            .unwrap_or(0)
    }

    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    fn runner(&self) -> refinery::Runner {
        let mut runner = refinery::Runner::new(&self.migrations);
        runner.set_migration_table_name(tenant_schema::HISTORY_TABLE);
        runner
    }
}

/// Applies every pending migration of `set` up to `target` (all, when `None`) and returns the
/// version the database is at afterwards. Migrations marked `-- silo:no-transaction` run
/// statement by statement outside a transaction (see `outside.rs`); the others in refinery's
/// transaction each.
pub async fn migrate_to(
    client: &mut Client,
    set: &MigrationSet,
    target: Option<i32>,
    limits: MigrationLimits,
) -> Result<i32, MigrateError> {
    lock(client, limits).await?;
    let result = run_locked(client, set, target.unwrap_or_else(|| set.latest())).await;
    unlock(client, result).await
}

/// Sets the session's timeouts (they hold outside transactions too) and takes the migration
/// lock, in one round trip (its key is a constant, not input).
async fn lock(client: &Client, limits: MigrationLimits) -> Result<(), MigrateError> {
    client
        .batch_execute(&format!(
            "SET lock_timeout = {}; SET statement_timeout = {}; SELECT pg_advisory_lock({MIGRATION_LOCK_KEY});",
            limits.lock_timeout.as_millis(),
            limits.statement_timeout.as_millis()
        ))
        .await?;
    Ok(())
}

/// Releases the migration lock even when the work failed (a lost connection releases it
/// anyway), and passes the work's result on.
async fn unlock(client: &Client, result: Result<i32, MigrateError>) -> Result<i32, MigrateError> {
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let version = result?;
    unlocked?;
    Ok(version)
}

async fn run_locked(
    client: &mut Client,
    set: &MigrationSet,
    target: i32,
) -> Result<i32, MigrateError> {
    loop {
        let current = applied_version(client).await?;
        let next_outside = set.migrations().iter().find(|migration| {
            migration.version() > current
                && migration.version() <= target
                && tenant_schema::runs_outside_transaction(migration.sql().unwrap_or_default())
        });
        // refinery checks the history (a drifted database is refused) and applies the
        // transactional migrations up to the next one that must run outside a transaction.
        let stop = next_outside.map_or(target, |migration| migration.version() - 1);
        set.runner()
            .set_target(refinery::Target::Version(stop))
            .run_async(client)
            .await?;
        match next_outside {
            None => return applied_version(client).await,
            Some(migration) => outside::apply(client, migration).await?,
        }
    }
}
