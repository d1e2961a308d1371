//! Items imported from CSV: the first tenant-scoped job besides mail. A request records the
//! import with its file sealed to the tenant ([`Purpose::ItemImport`]) and queues an
//! [`ImportJob`] on [`IMPORT_QUEUE`] in the same transaction, fair across tenants
//! ([`crate::jobs`]); a worker opens the file, checks every row and writes the items into the
//! tenant's own database in one transaction (all or nothing), reporting progress here. One
//! import at a time per tenant. Problems name a line and a field, never a cell's value.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::sealing::Sealed;
use crate::store::{Store, StoreError, StoreResult, insert_audit};

/// The apalis queue import jobs travel on; producers and the worker must agree on it.
pub const IMPORT_QUEUE: &str = "silo.import";

/// The most problems an import keeps (the count says how many there were in all).
pub const MAX_PROBLEMS_KEPT: usize = 100;

/// One import to run, on behalf of one tenant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportJob {
    pub tenant_id: Uuid,
    pub import_id: i64,
}

/// Something wrong with the file: on `line` (1 is the header), in `field` when one is named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportProblem {
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

/// Where an import stands.
#[derive(Debug, Clone, Serialize)]
pub struct ItemImport {
    pub id: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// `queued`, `running`, `imported`, `refused` (problems in the file: nothing imported) or
    /// `failed` (the database refused: nothing imported).
    pub state: String,
    pub rows_total: i32,
    pub rows_done: i32,
    pub problems: Vec<ImportProblem>,
    pub problem_count: i32,
    pub finished_at: Option<DateTime<Utc>>,
}

impl ItemImport {
    /// Whether the import is still to finish.
    pub fn is_open(&self) -> bool {
        matches!(self.state.as_str(), "queued" | "running")
    }
}

#[derive(sqlx::FromRow)]
struct ImportRow {
    id: i64,
    created_by: String,
    created_at: DateTime<Utc>,
    state: String,
    rows_total: i32,
    rows_done: i32,
    problems: sqlx::types::Json<Vec<ImportProblem>>,
    problem_count: i32,
    finished_at: Option<DateTime<Utc>>,
}

impl From<ImportRow> for ItemImport {
    fn from(row: ImportRow) -> Self {
        Self {
            id: row.id,
            created_by: row.created_by,
            created_at: row.created_at,
            state: row.state,
            rows_total: row.rows_total,
            rows_done: row.rows_done,
            problems: row.problems.0,
            problem_count: row.problem_count,
            finished_at: row.finished_at,
        }
    }
}

macro_rules! columns {
    () => {
        "id, created_by, created_at, state, rows_total, rows_done, problems, problem_count, \
         finished_at"
    };
}

/// How an import ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Imported,
    Refused,
    Failed,
}

impl Ending {
    fn as_str(self) -> &'static str {
        match self {
            Ending::Imported => "imported",
            Ending::Refused => "refused",
            Ending::Failed => "failed",
        }
    }
}

impl Store {
    /// Records an import of the sealed `file` and queues its job (audited as `items.import`);
    /// `ImportRunning` while the tenant has one queued or running.
    pub async fn create_import(
        &self,
        tenant_id: Uuid,
        actor: &str,
        file: &Sealed,
    ) -> StoreResult<ItemImport> {
        let mut transaction = self.pool().begin().await?;
        let row = sqlx::query_as::<_, ImportRow>(concat!(
            "INSERT INTO item_imports (tenant_id, created_by, file_key_id, file_sealed) \
             VALUES ($1, $2, $3, $4) RETURNING ",
            columns!()
        ))
        .bind(tenant_id)
        .bind(actor)
        .bind(&file.key_id)
        .bind(&file.blob)
        .fetch_one(&mut *transaction)
        .await
        .map_err(|error| match &error {
            sqlx::Error::Database(database) if database.is_unique_violation() => {
                StoreError::ImportRunning
            }
            _ => error.into(),
        })?;
        let job = ImportJob {
            tenant_id,
            import_id: row.id,
        };
        let payload =
            serde_json::to_vec(&job).map_err(|error| StoreError::Queue(error.to_string()))?;
        crate::jobs::enqueue_fair(&mut transaction, IMPORT_QUEUE, tenant_id, payload).await?;
        insert_audit(
            &mut transaction,
            actor,
            "items.import",
            Some(tenant_id),
            serde_json::json!({"import": row.id}),
        )
        .await?;
        transaction.commit().await?;
        Ok(row.into())
    }

    /// The tenant's import `id` (`NotFound` for another tenant's).
    pub async fn import_of(&self, tenant_id: Uuid, id: i64) -> StoreResult<ItemImport> {
        let row = sqlx::query_as::<_, ImportRow>(concat!(
            "SELECT ",
            columns!(),
            " FROM item_imports WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(row.into())
    }

    /// The tenant's newest import, if any.
    pub async fn latest_import(&self, tenant_id: Uuid) -> StoreResult<Option<ItemImport>> {
        let row = sqlx::query_as::<_, ImportRow>(concat!(
            "SELECT ",
            columns!(),
            " FROM item_imports WHERE tenant_id = $1 ORDER BY id DESC LIMIT 1"
        ))
        .bind(tenant_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(Into::into))
    }

    /// Marks the import running (again, after a worker died) and returns its sealed file;
    /// `None` when it has already ended.
    pub async fn begin_import(&self, tenant_id: Uuid, id: i64) -> StoreResult<Option<Sealed>> {
        let row: Option<(Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
            "UPDATE item_imports SET state = 'running', rows_done = 0 \
             WHERE tenant_id = $1 AND id = $2 AND state IN ('queued', 'running') \
             RETURNING file_key_id, file_sealed",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            Some((Some(key_id), Some(blob))) => Some(Sealed { key_id, blob }),
            _ => None,
        })
    }

    /// How far a running import has got.
    pub async fn import_progress(&self, id: i64, done: i32, total: i32) -> StoreResult<()> {
        sqlx::query(
            "UPDATE item_imports SET rows_done = $2, rows_total = $3 \
             WHERE id = $1 AND state = 'running'",
        )
        .bind(id)
        .bind(done)
        .bind(total)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Ends an import: its state, what it found, and the file dropped.
    pub async fn finish_import(
        &self,
        id: i64,
        ending: Ending,
        rows: (i32, i32),
        problems: &[ImportProblem],
        problem_count: usize,
    ) -> StoreResult<()> {
        let kept = &problems[..problems.len().min(MAX_PROBLEMS_KEPT)];
        sqlx::query(
            "UPDATE item_imports SET state = $2, rows_done = $3, rows_total = $4, \
             problems = $5, problem_count = $6, finished_at = now(), \
             file_key_id = NULL, file_sealed = NULL \
             WHERE id = $1 AND state IN ('queued', 'running')",
        )
        .bind(id)
        .bind(ending.as_str())
        .bind(rows.0)
        .bind(rows.1)
        .bind(sqlx::types::Json(kept))
        .bind(i32::try_from(problem_count).unwrap_or(i32::MAX))
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
