//! The rollout record's queries: releases, plans, creating a rollout, the engine's work per
//! stage and its per-tenant outcomes, operator actions, and the fleet's version distribution.

use crate::store::{Store, StoreError, StoreResult};
use uuid::Uuid;

use super::*;
use crate::store::insert_audit;

impl Store {
    /// The released schema version: what new tenants are provisioned at — the newest release,
    /// which after a completed rollback is a lower version than before.
    pub async fn released_version(&self) -> StoreResult<Option<i32>> {
        Ok(sqlx::query_scalar(
            "SELECT version FROM schema_releases ORDER BY released_at DESC, version DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await?)
    }

    /// The newest control-plane schema version among servable tenants (`None`: no tenant).
    pub async fn fleet_newest_version(&self) -> StoreResult<Option<i32>> {
        Ok(sqlx::query_scalar(
            "SELECT max(schema_version) FROM tenants WHERE status IN ('active', 'suspended')",
        )
        .fetch_one(self.pool())
        .await?)
    }

    /// Records `version` as released if nothing ever was (a fresh control plane releases the
    /// build's newest migration; later versions need a completed rollout).
    pub async fn ensure_initial_release(&self, version: i32) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO schema_releases (version) SELECT $1 \
             WHERE NOT EXISTS (SELECT 1 FROM schema_releases)",
        )
        .bind(version)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Which tenants each stage of `stages` would take, without changing anything.
    pub async fn plan(&self, stages: &[i32]) -> StoreResult<Vec<PlannedTenant>> {
        let planned = sqlx::query_as(plan_query!(
            "SELECT slug, host, canary, stage, schema_version FROM staged ORDER BY position"
        ))
        .bind(stages)
        .fetch_all(self.pool())
        .await?;
        Ok(planned)
    }

    /// Creates a running rollout and its plan in one transaction. Refused while another rollout
    /// is open.
    pub async fn create_rollout(&self, spec: &RolloutSpec) -> StoreResult<Uuid> {
        let id = Uuid::new_v4();
        let (max_failures, max_failure_percent) = match spec.failure_limit {
            FailureLimit::Count(count) => (Some(count), None),
            FailureLimit::Percent(percent) => (None, Some(percent)),
        };
        let mut transaction = self.pool().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO rollouts (id, target_version, stages, concurrency_per_host, max_failures, \
             max_failure_percent, bake_seconds, manual_approval, created_by, verify, accepted_risks, \
             direction, on_failure) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(id)
        .bind(spec.target_version)
        .bind(&spec.stages)
        .bind(spec.concurrency_per_host)
        .bind(max_failures)
        .bind(max_failure_percent)
        .bind(i32::try_from(spec.bake.as_secs()).unwrap_or(i32::MAX))
        .bind(spec.manual_approval)
        .bind(&spec.created_by)
        .bind(spec.verify)
        .bind(&spec.accepted_risks)
        .bind(spec.direction.as_str())
        .bind(spec.on_failure.as_str())
        .execute(&mut *transaction)
        .await;
        match inserted {
            Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                return Err(StoreError::RolloutOpen);
            }
            other => {
                other?;
            }
        }
        sqlx::query(plan_query!(
            "INSERT INTO rollout_tenants (rollout_id, tenant_id, stage, position) \
             SELECT $2, id, stage, position FROM staged"
        ))
        .bind(&spec.stages)
        .bind(id)
        .execute(&mut *transaction)
        .await?;
        let detail = serde_json::json!({
            "rollout": id, "target_version": spec.target_version, "stages": spec.stages,
            "accepted_risks": spec.accepted_risks, "direction": spec.direction,
            "on_failure": spec.on_failure,
        });
        insert_audit(
            &mut transaction,
            &spec.created_by,
            "rollout.start",
            None,
            detail,
        )
        .await?;
        transaction.commit().await?;
        Ok(id)
    }

    /// Adds to the last stage every servable tenant the plan does not hold yet (tenants that
    /// signed up after the rollout began); returns how many.
    pub async fn add_late_tenants(&self, rollout_id: Uuid, last_stage: i32) -> StoreResult<u64> {
        let added = sqlx::query(
            "INSERT INTO rollout_tenants (rollout_id, tenant_id, stage, position) \
             SELECT $1, t.id, $2, \
                    (SELECT coalesce(max(position), -1) FROM rollout_tenants WHERE rollout_id = $1) \
                    + (row_number() OVER (ORDER BY t.created_at, t.id))::int \
             FROM tenants t WHERE t.status IN ('active', 'suspended') \
               AND NOT EXISTS (SELECT 1 FROM rollout_tenants r WHERE r.rollout_id = $1 AND r.tenant_id = t.id)",
        )
        .bind(rollout_id)
        .bind(last_stage)
        .execute(self.pool())
        .await?;
        Ok(added.rows_affected())
    }

    pub async fn rollout(&self, id: Uuid) -> StoreResult<RolloutRecord> {
        sqlx::query_as::<_, RolloutRow>("SELECT * FROM rollouts WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)?
            .try_into()
    }

    /// Every rollout, newest first.
    pub async fn rollouts(&self) -> StoreResult<Vec<RolloutRecord>> {
        sqlx::query_as::<_, RolloutRow>("SELECT * FROM rollouts ORDER BY created_at DESC, id")
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(RolloutRecord::try_from)
            .collect()
    }

    /// The rollouts the engine should drive now: running and reverting ones.
    pub async fn running_rollouts(&self) -> StoreResult<Vec<Uuid>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM rollouts WHERE state IN ('running', 'reverting')")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// The tenants a reverting rollout may have moved and has not moved back yet — those that
    /// succeeded, and those that failed (a failure part-way through several migrations leaves
    /// the earlier ones applied) — in plan order.
    pub async fn tenants_to_revert(&self, rollout_id: Uuid) -> StoreResult<Vec<TenantToRevert>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            work: RolloutWorkRow,
            from_version: Option<i32>,
            status: String,
            error: Option<String>,
        }
        let rows = sqlx::query_as::<_, Row>(
            "SELECT t.id, t.slug, t.host_id, t.schema_version, t.sealed_database_url, \
                    t.database_url_key_id, r.from_version, r.status, r.error \
             FROM rollout_tenants r JOIN tenants t ON t.id = r.tenant_id \
             WHERE r.rollout_id = $1 AND r.status IN ('succeeded', 'failed') ORDER BY r.position",
        )
        .bind(rollout_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| TenantToRevert {
                work: RolloutWork::from(row.work),
                from_version: row.from_version,
                failed: row.status == "failed",
                error: row.error,
            })
            .collect())
    }

    /// Pending (or interrupted: `running`) tenants of a stage, in plan order.
    pub async fn stage_work(&self, rollout_id: Uuid, stage: i32) -> StoreResult<Vec<RolloutWork>> {
        let rows = sqlx::query_as::<_, RolloutWorkRow>(
            "SELECT t.id, t.slug, t.host_id, t.schema_version, t.sealed_database_url, \
                    t.database_url_key_id \
             FROM rollout_tenants r JOIN tenants t ON t.id = r.tenant_id \
             WHERE r.rollout_id = $1 AND r.stage = $2 AND r.status IN ('pending', 'running') \
             ORDER BY r.position",
        )
        .bind(rollout_id)
        .bind(stage)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(RolloutWork::from).collect())
    }

    /// Marks a tenant as being migrated now, only while the rollout is running: `false` means
    /// it was paused or aborted meanwhile and the tenant must not be touched.
    pub async fn start_rollout_tenant(
        &self,
        rollout_id: Uuid,
        tenant_id: Uuid,
        from_version: Option<i32>,
    ) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE rollout_tenants SET status = 'running', attempts = attempts + 1, \
             started_at = now(), finished_at = NULL, error = NULL, \
             from_version = coalesce(from_version, $3) \
             WHERE rollout_id = $1 AND tenant_id = $2 \
               AND EXISTS (SELECT 1 FROM rollouts WHERE id = $1 AND state = 'running')",
        )
        .bind(rollout_id)
        .bind(tenant_id)
        .bind(from_version)
        .execute(self.pool())
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Records a tenant's outcome; on success its control-plane version moves in the same
    /// transaction.
    pub async fn finish_rollout_tenant(
        &self,
        rollout_id: Uuid,
        tenant_id: Uuid,
        status: &str,
        to_version: Option<i32>,
        error: Option<&str>,
    ) -> StoreResult<()> {
        let mut transaction = self.pool().begin().await?;
        sqlx::query(
            "UPDATE rollout_tenants SET status = $3, to_version = $4, error = $5, finished_at = now() \
             WHERE rollout_id = $1 AND tenant_id = $2",
        )
        .bind(rollout_id)
        .bind(tenant_id)
        .bind(status)
        .bind(to_version)
        .bind(error)
        .execute(&mut *transaction)
        .await?;
        if let Some(version) = to_version {
            sqlx::query("UPDATE tenants SET schema_version = $2, updated_at = now() WHERE id = $1")
                .bind(tenant_id)
                .bind(version)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Tenant counts per status for one stage, or for the whole rollout (`stage` = None).
    pub async fn stage_counts(
        &self,
        rollout_id: Uuid,
        stage: Option<i32>,
    ) -> StoreResult<StageCounts> {
        let counts = sqlx::query_as(
            "SELECT count(*) AS total, \
                    count(*) FILTER (WHERE status = 'pending') AS pending, \
                    count(*) FILTER (WHERE status = 'running') AS running, \
                    count(*) FILTER (WHERE status = 'succeeded') AS succeeded, \
                    count(*) FILTER (WHERE status = 'failed') AS failed, \
                    count(*) FILTER (WHERE status = 'skipped') AS skipped, \
                    count(*) FILTER (WHERE status = 'reverted') AS reverted \
             FROM rollout_tenants WHERE rollout_id = $1 AND ($2::int IS NULL OR stage = $2)",
        )
        .bind(rollout_id)
        .bind(stage)
        .fetch_one(self.pool())
        .await?;
        Ok(counts)
    }

    /// The rollout's tenants in plan order (optionally only those with `status`).
    pub async fn rollout_tenants(
        &self,
        rollout_id: Uuid,
        status: Option<&str>,
    ) -> StoreResult<Vec<RolloutTenant>> {
        let tenants = sqlx::query_as(
            "SELECT r.*, t.slug, t.canary, h.name AS host \
             FROM rollout_tenants r JOIN tenants t ON t.id = r.tenant_id \
             LEFT JOIN database_hosts h ON h.id = t.host_id \
             WHERE r.rollout_id = $1 AND ($2::text IS NULL OR r.status = $2) ORDER BY r.position",
        )
        .bind(rollout_id)
        .bind(status)
        .fetch_all(self.pool())
        .await?;
        Ok(tenants)
    }

    /// One tenant's rows across every rollout, newest first: (rollout id, target, row).
    pub async fn tenant_rollouts(
        &self,
        tenant_id: Uuid,
    ) -> StoreResult<Vec<(Uuid, i32, RolloutTenant)>> {
        let rows = sqlx::query_as::<_, TenantRolloutRow>(
            "SELECT r.*, t.slug, t.canary, h.name AS host, o.target_version \
             FROM rollout_tenants r JOIN tenants t ON t.id = r.tenant_id \
             JOIN rollouts o ON o.id = r.rollout_id \
             LEFT JOIN database_hosts h ON h.id = t.host_id \
             WHERE r.tenant_id = $1 ORDER BY o.created_at DESC",
        )
        .bind(tenant_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| (row.rollout_id, row.target_version, row.tenant))
            .collect())
    }

    /// Moves a rollout from one of `from` to `to` (with a reason); `false` if it was in none of
    /// them. Completing also releases the target version, in the same transaction.
    pub async fn transition_rollout(
        &self,
        rollout_id: Uuid,
        from: &[RolloutState],
        to: RolloutState,
        reason: Option<&str>,
    ) -> StoreResult<bool> {
        let from: Vec<&str> = from.iter().map(|state| state.as_str()).collect();
        let mut transaction = self.pool().begin().await?;
        let target: Option<(i32, String)> = sqlx::query_as(
            "UPDATE rollouts SET state = $3, pause_reason = $4, \
             finished_at = CASE WHEN $3 IN ('completed', 'aborted') THEN now() END \
             WHERE id = $1 AND state = ANY($2) RETURNING target_version, direction",
        )
        .bind(rollout_id)
        .bind(&from)
        .bind(to.as_str())
        .bind(reason)
        .fetch_optional(&mut *transaction)
        .await?;
        let Some((target, direction)) = target else {
            return Ok(false);
        };
        if to == RolloutState::Completed {
            // The newest release is the released version, in either direction.
            sqlx::query(
                "INSERT INTO schema_releases (version, rollout_id) VALUES ($1, $2) \
                 ON CONFLICT (version) DO UPDATE SET rollout_id = $2, released_at = now()",
            )
            .bind(target)
            .bind(rollout_id)
            .execute(&mut *transaction)
            .await?;
            if direction == RolloutDirection::Back.as_str() {
                // Templates above the released version are forgotten: should that version be
                // released again (perhaps with its migration fixed), its template is rebuilt
                // from the migrations the build knows then (a stale database of the same name
                // is dropped by the builder).
                sqlx::query("DELETE FROM host_templates WHERE schema_version > $1")
                    .bind(target)
                    .execute(&mut *transaction)
                    .await?;
            }
        }
        transaction.commit().await?;
        Ok(true)
    }

    /// Starts the next stage (only if `stage` is still the current one).
    pub async fn advance_stage(&self, rollout_id: Uuid, stage: i32) -> StoreResult<bool> {
        let updated = sqlx::query(
            "UPDATE rollouts SET current_stage = $2 + 1, stage_started_at = now() \
             WHERE id = $1 AND current_stage = $2 AND state = 'running'",
        )
        .bind(rollout_id)
        .bind(stage)
        .execute(self.pool())
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Puts failed tenants back to pending and a paused rollout back to running; returns how
    /// many tenants will be tried again.
    pub async fn retry_rollout_failures(&self, rollout_id: Uuid) -> StoreResult<u64> {
        let mut transaction = self.pool().begin().await?;
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM rollouts WHERE id = $1 FOR UPDATE")
                .bind(rollout_id)
                .fetch_optional(&mut *transaction)
                .await?;
        match state.as_deref() {
            None => return Err(StoreError::NotFound),
            // A completed rollout may retry its failed tenants; its release stands.
            Some("running" | "paused" | "completed") => {}
            Some(_) => {
                return Err(StoreError::RolloutNotAllowed {
                    state: "finished",
                    action: RolloutAction::Retry.done(),
                });
            }
        }
        let retried = sqlx::query(
            "UPDATE rollout_tenants SET status = 'pending', error = NULL \
             WHERE rollout_id = $1 AND status = 'failed'",
        )
        .bind(rollout_id)
        .execute(&mut *transaction)
        .await?;
        sqlx::query(
            "UPDATE rollouts SET state = 'running', pause_reason = NULL, finished_at = NULL WHERE id = $1",
        )
            .bind(rollout_id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(retried.rows_affected())
    }

    /// Applies an operator's action and audits it; `RolloutNotAllowed` when the rollout's state does not
    /// allow it (nothing changes then).
    pub async fn rollout_action(
        &self,
        rollout_id: Uuid,
        action: RolloutAction,
        actor: &str,
    ) -> StoreResult<RolloutRecord> {
        let before = self.rollout(rollout_id).await?;
        let changed = match action {
            RolloutAction::Pause => {
                self.transition_rollout(
                    rollout_id,
                    &[RolloutState::Running],
                    RolloutState::Paused,
                    Some("paused by an operator"),
                )
                .await?
            }
            RolloutAction::Resume => {
                self.transition_rollout(
                    rollout_id,
                    &[RolloutState::Paused],
                    RolloutState::Running,
                    None,
                )
                .await?
            }
            RolloutAction::Abort => {
                self.transition_rollout(
                    rollout_id,
                    &[
                        RolloutState::Pending,
                        RolloutState::Running,
                        RolloutState::Paused,
                    ],
                    RolloutState::Aborted,
                    Some("aborted by an operator"),
                )
                .await?
            }
            RolloutAction::Retry => {
                let retried = self.retry_rollout_failures(rollout_id).await?;
                retried > 0 || before.state == RolloutState::Paused
            }
        };
        if !changed {
            return Err(StoreError::RolloutNotAllowed {
                state: before.state.as_str(),
                action: action.done(),
            });
        }
        let after = self.rollout(rollout_id).await?;
        self.audit(
            actor,
            &format!("rollout.{}", action.as_str()),
            None,
            serde_json::json!({"rollout": rollout_id, "before": before.state, "after": after.state}),
        )
        .await?;
        Ok(after)
    }

    /// Counts of servable tenants per control-plane schema version.
    pub async fn version_distribution(&self) -> StoreResult<Vec<(Option<i32>, i64)>> {
        let distribution = sqlx::query_as(
            "SELECT schema_version, count(*) AS tenants FROM tenants \
             WHERE status IN ('active', 'suspended') GROUP BY schema_version ORDER BY schema_version",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(distribution)
    }

    /// Marks or unmarks a tenant as a canary (canaries go first in every rollout).
    pub async fn set_canary(&self, tenant_id: Uuid, canary: bool) -> StoreResult<()> {
        sqlx::query("UPDATE tenants SET canary = $2 WHERE id = $1")
            .bind(tenant_id)
            .bind(canary)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
