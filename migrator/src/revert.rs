//! Moving a tenant database back: each applied migration above the target is undone by its
//! revert script (`V{n}__name.revert.sql`), newest first, and its row leaves refinery's history
//! in the same transaction — so history, schema and (through the engine) the control plane's
//! version all move back together, and a later forward move applies the migration again.
//!
//! Invariant: nothing is undone unless every migration to undo has a revert script (checked
//! before the first one runs), and a drifted database is refused as it is going forwards.

use tokio_postgres::Client;

use crate::{MigrateError, MigrationLimits, MigrationSet, applied_version, history};

/// Undoes every applied migration above `target` and returns the version the database is at
/// afterwards. Scripts marked `-- silo:no-transaction` run outside a transaction, as forwards.
pub async fn revert_to(
    client: &mut Client,
    set: &MigrationSet,
    target: i32,
    limits: MigrationLimits,
) -> Result<i32, MigrateError> {
    crate::lock(client, limits).await?;
    let result = revert_locked(client, set, target).await;
    crate::unlock(client, result).await
}

async fn revert_locked(
    client: &mut Client,
    set: &MigrationSet,
    target: i32,
) -> Result<i32, MigrateError> {
    // refinery's checks first, applying nothing: a database whose history differs from the
    // known migrations is not touched.
    let current = applied_version(client).await?;
    set.runner()
        .set_target(refinery::Target::Version(current))
        .run_async(client)
        .await?;
    let mut to_undo: Vec<(i32, String)> = history(client)
        .await?
        .into_iter()
        .filter(|applied| applied.version > target)
        .map(|applied| (applied.version, applied.name))
        .collect();
    to_undo.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    if let Some((version, name)) = to_undo
        .iter()
        .find(|(version, _)| set.revert_sql(*version).is_none())
    {
        return Err(MigrateError::MissingRevert {
            version: *version,
            name: name.clone(),
        });
    }
    let forget = format!(
        "DELETE FROM {} WHERE version = $1",
        tenant_schema::HISTORY_TABLE
    );
    for (version, _) in to_undo {
        let sql = set.revert_sql(version).unwrap_or_default();
        if tenant_schema::runs_outside_transaction(sql) {
            crate::outside::run(client, version, sql).await?;
            client.execute(&forget, &[&version]).await?;
        } else {
            let transaction = client.transaction().await?;
            transaction
                .batch_execute(sql)
                .await
                .map_err(|error| MigrateError::RevertFailed { version, error })?;
            transaction.execute(&forget, &[&version]).await?;
            transaction.commit().await?;
        }
        tracing::info!(version, "reverted");
    }
    applied_version(client).await
}
