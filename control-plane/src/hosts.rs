//! Database hosts (the PostgreSQL servers tenant databases live on), placement by free
//! capacity, their per-version template databases and their warm pools of ready databases.

use secrecy::SecretString;
use uuid::Uuid;

use crate::sealing::{Keyring, Purpose, Sealed};
use crate::store::{Store, StoreError, StoreResult, connect_options, insert_audit};
use crate::tenants::TenantRecord;

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
/// A `database_hosts` row with its tenant count; the two sealed columns become a [`Sealed`].
/// No `Debug`: it holds the sealed blob.
#[derive(sqlx::FromRow)]
struct HostRow {
    id: Uuid,
    name: String,
    admin_url_key_id: String,
    sealed_admin_url: Vec<u8>,
    capacity: i32,
    status: String,
    tenant_count: i64,
}

impl From<HostRow> for DatabaseHost {
    fn from(row: HostRow) -> Self {
        DatabaseHost {
            id: row.id,
            name: row.name,
            sealed_admin_url: Sealed {
                key_id: row.admin_url_key_id,
                blob: row.sealed_admin_url,
            },
            capacity: row.capacity,
            status: row.status,
            tenant_count: row.tenant_count,
        }
    }
}

/// A `warm_databases` row; the two sealed columns become a [`Sealed`] and the status a flag.
/// No `Debug`: it holds the sealed blob.
#[derive(sqlx::FromRow)]
struct WarmRow {
    id: Uuid,
    host_id: Uuid,
    database_name: String,
    role_name: String,
    sealed_database_url: Vec<u8>,
    database_url_key_id: String,
    schema_version: i32,
    status: String,
}

impl From<WarmRow> for WarmDatabase {
    fn from(row: WarmRow) -> Self {
        WarmDatabase {
            id: row.id,
            host_id: row.host_id,
            database_name: row.database_name,
            role_name: row.role_name,
            sealed_database_url: Sealed {
                blob: row.sealed_database_url,
                key_id: row.database_url_key_id,
            },
            schema_version: row.schema_version,
            ready: row.status == "ready",
        }
    }
}

/// The ready warm database a signup claims. No `Debug`: it holds the sealed blob.
#[derive(sqlx::FromRow)]
struct ClaimedWarmRow {
    id: Uuid,
    host_id: Uuid,
    database_name: String,
    role_name: String,
    sealed_database_url: Vec<u8>,
    database_url_key_id: String,
}

impl Store {
    // ---- database hosts ----

    pub async fn add_host(
        &self,
        keyring: &Keyring,
        name: &str,
        admin_url: &SecretString,
        capacity: i32,
        actor: &str,
    ) -> StoreResult<Uuid> {
        connect_options(admin_url)?;
        let id = Uuid::new_v4();
        let sealed = keyring.seal(Purpose::HostAdminUrl, id, admin_url);
        let mut transaction = self.pool().begin().await?;
        let result = sqlx::query(
            "INSERT INTO database_hosts (id, name, sealed_admin_url, admin_url_key_id, capacity) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(name)
        .bind(&sealed.blob)
        .bind(&sealed.key_id)
        .bind(capacity)
        .execute(&mut *transaction)
        .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("23505") => {
                return Err(StoreError::HostNameTaken);
            }
            Err(error) => return Err(error.into()),
        }
        let detail = serde_json::json!({"host": name, "capacity": capacity});
        insert_audit(&mut transaction, actor, "host.add", None, detail).await?;
        transaction.commit().await?;
        Ok(id)
    }

    /// Registers `name` with `admin_url`, or refreshes its URL if it is already registered.
    pub async fn upsert_host(
        &self,
        keyring: &Keyring,
        name: &str,
        admin_url: &SecretString,
        capacity: i32,
        actor: &str,
    ) -> StoreResult<Uuid> {
        if let Some(host) = self.host_by_name(name).await? {
            let sealed = keyring.seal(Purpose::HostAdminUrl, host.id, admin_url);
            self.store_host_admin_url(host.id, &sealed).await?;
            return Ok(host.id);
        }
        match self
            .add_host(keyring, name, admin_url, capacity, actor)
            .await
        {
            Err(StoreError::HostNameTaken) => {
                Box::pin(self.upsert_host(keyring, name, admin_url, capacity, actor)).await
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
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Sets a host `active` (takes new tenants) or `draining` (takes none; serves its own).
    pub async fn set_host_status(&self, name: &str, status: &str, actor: &str) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        let before: Option<String> =
            sqlx::query_scalar("SELECT status FROM database_hosts WHERE name = $1 FOR UPDATE")
                .bind(name)
                .fetch_optional(&mut *transaction)
                .await?;
        let Some(before) = before else {
            return Err(StoreError::NotFound);
        };
        sqlx::query("UPDATE database_hosts SET status = $2, updated_at = now() WHERE name = $1")
            .bind(name)
            .bind(status)
            .execute(&mut *transaction)
            .await?;
        let detail = serde_json::json!({"host": name, "before": before, "after": status});
        insert_audit(&mut transaction, actor, "host.set_status", None, detail).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Deletes a host record that holds no tenants (its warm databases and templates must have
    /// been dropped from the server first).
    pub async fn delete_host(&self, host_id: Uuid, actor: &str) -> StoreResult<()> {
        self.delete_host_recording(host_id, actor, None).await
    }

    /// Deletes a host's record (refused while tenants live there); when the server was not
    /// cleaned (`left_behind`: what is still on it), the audit row says so and names it.
    pub async fn delete_host_recording(
        &self,
        host_id: Uuid,
        actor: &str,
        left_behind: Option<&[String]>,
    ) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE host_id = $1")
            .bind(host_id)
            .fetch_one(&mut *transaction)
            .await?;
        if tenants > 0 {
            return Err(StoreError::HostInUse(tenants));
        }
        let name: Option<String> =
            sqlx::query_scalar("DELETE FROM database_hosts WHERE id = $1 RETURNING name")
                .bind(host_id)
                .fetch_optional(&mut *transaction)
                .await?;
        let Some(name) = name else {
            return Err(StoreError::NotFound);
        };
        let detail = match left_behind {
            None => serde_json::json!({"host": name}),
            Some(left) => serde_json::json!({"host": name, "forgotten": true, "left_behind": left}),
        };
        insert_audit(&mut transaction, actor, "host.remove", None, detail).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Whether a new tenant could be placed now: a ready warm database or an active host with room.
    pub async fn has_capacity(&self) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM database_hosts h WHERE h.status = 'active' \
             AND (SELECT count(*) FROM tenants t WHERE t.host_id = h.id) < h.capacity)",
        )
        .fetch_one(self.pool())
        .await?)
    }

    pub async fn hosts(&self) -> StoreResult<Vec<DatabaseHost>> {
        let rows = sqlx::query_as::<_, HostRow>(
            "SELECT h.*, (SELECT count(*) FROM tenants t WHERE t.host_id = h.id) AS tenant_count \
             FROM database_hosts h ORDER BY h.name",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(DatabaseHost::from).collect())
    }

    pub async fn host(&self, id: Uuid) -> StoreResult<DatabaseHost> {
        let row = sqlx::query_as::<_, HostRow>(
            "SELECT h.*, (SELECT count(*) FROM tenants t WHERE t.host_id = h.id) AS tenant_count \
             FROM database_hosts h WHERE h.id = $1",
        )
        .bind(id)
        .fetch_one(self.pool())
        .await?;
        Ok(row.into())
    }

    pub async fn host_by_name(&self, name: &str) -> StoreResult<Option<DatabaseHost>> {
        let row = sqlx::query_as::<_, HostRow>(
            "SELECT h.*, (SELECT count(*) FROM tenants t WHERE t.host_id = h.id) AS tenant_count \
             FROM database_hosts h WHERE h.name = $1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(DatabaseHost::from))
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
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn mark_warm_ready(&self, id: Uuid) -> StoreResult<()> {
        sqlx::query("UPDATE warm_databases SET status = 'ready' WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Warm databases of a host: (ready or creating at `version`) and those at other versions.
    pub async fn warm_databases(&self, host_id: Uuid) -> StoreResult<Vec<WarmDatabase>> {
        let rows = sqlx::query_as::<_, WarmRow>(
            "SELECT id, host_id, database_name, role_name, sealed_database_url, database_url_key_id, \
             schema_version, status FROM warm_databases WHERE host_id = $1 ORDER BY created_at",
        )
        .bind(host_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(WarmDatabase::from).collect())
    }

    pub async fn delete_warm(&self, id: Uuid) -> StoreResult<()> {
        sqlx::query("DELETE FROM warm_databases WHERE id = $1")
            .bind(id)
            .execute(self.pool())
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
        let mut transaction = self.pool().begin().await?;
        let row = sqlx::query_as::<_, ClaimedWarmRow>(
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
        let warm_id = row.id;
        let sealed = Sealed {
            blob: row.sealed_database_url,
            key_id: row.database_url_key_id,
        };
        let url = keyring.open(Purpose::WarmDatabaseUrl, warm_id, &sealed)?;
        let resealed = keyring.seal(Purpose::TenantDatabaseUrl, tenant_id, &url);
        let placed = sqlx::query(
            "UPDATE tenants SET host_id = $2, database_name = $3, role_name = $4, sealed_database_url = $5, \
             database_url_key_id = $6, schema_version = $7, provisioning_step = 'migrated', updated_at = now() \
             WHERE id = $1 AND host_id IS NULL",
        )
        .bind(tenant_id)
        .bind(row.host_id)
        .bind(&row.database_name)
        .bind(&row.role_name)
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
        .fetch_optional(self.pool())
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
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn templates_of(&self, host_id: Uuid) -> StoreResult<Vec<(i32, String)>> {
        let templates = sqlx::query_as(
            "SELECT schema_version, database_name FROM host_templates WHERE host_id = $1",
        )
        .bind(host_id)
        .fetch_all(self.pool())
        .await?;
        Ok(templates)
    }

    pub async fn forget_template(&self, host_id: Uuid, version: i32) -> StoreResult<()> {
        sqlx::query("DELETE FROM host_templates WHERE host_id = $1 AND schema_version = $2")
            .bind(host_id)
            .bind(version)
            .execute(self.pool())
            .await?;
        Ok(())
    }
    /// The active host with the most free capacity, if any has room.
    pub async fn choose_host(&self) -> StoreResult<Option<DatabaseHost>> {
        let row = sqlx::query_as::<_, HostRow>(
            "SELECT h.*, count(t.id) AS tenant_count FROM database_hosts h \
             LEFT JOIN tenants t ON t.host_id = h.id \
             WHERE h.status = 'active' GROUP BY h.id \
             HAVING count(t.id) < h.capacity \
             ORDER BY h.capacity - count(t.id) DESC, h.name LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(DatabaseHost::from))
    }
}
