//! Tenant-scoped jobs on the control-plane queue (apalis): each carries its tenant in its
//! metadata, and the queue is fair across tenants. A job's priority is lowered by the number of
//! its tenant's jobs of the same queue still waiting; the queue is taken highest priority first,
//! so one tenant's burst is interleaved with other tenants' jobs instead of queued in front of
//! them, and no tenant's job waits behind another tenant's backlog.

use uuid::Uuid;

use crate::store::{StoreError, StoreResult};

/// The priority of a tenant's job with nothing of its own waiting; each of its jobs still
/// waiting lowers the next one's by one.
const FAIR_PRIORITY: usize = 1_000_000;

/// Queues `payload` on `queue` for `tenant` inside `transaction`, so the job exists if and only
/// if the change that asks for it commits.
pub async fn enqueue_fair(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    queue: &str,
    tenant: Uuid,
    payload: Vec<u8>,
) -> StoreResult<()> {
    let tenant = tenant.to_string();
    let waiting: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM apalis.jobs WHERE job_type = $1 AND metadata -> 'tenant' = $2 \
         AND (status IN ('Pending', 'Queued', 'Running') \
              OR (status = 'Failed' AND attempts < max_attempts))",
    )
    .bind(queue)
    .bind(&tenant)
    .fetch_one(&mut **transaction)
    .await?;
    let mut metadata = apalis::prelude::MetadataStore::new();
    metadata
        .insert("tenant", tenant)
        .map_err(|error| StoreError::Queue(error.to_string()))?;
    let task = apalis::prelude::TaskBuilder::new(payload)
        .with_metadata(metadata)
        .priority(FAIR_PRIORITY.saturating_sub(usize::try_from(waiting).unwrap_or(FAIR_PRIORITY)))
        .build();
    apalis_postgres::queries::push_tasks(&mut **transaction, queue, vec![task])
        .await
        .map_err(|error| StoreError::Queue(error.to_string()))
}
