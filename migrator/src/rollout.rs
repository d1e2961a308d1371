//! The rollout engine: drives one rollout stage by stage — canaries first, tenants of each host
//! in parallel up to the per-host concurrency, every outcome recorded — pausing when a stage's
//! failures pass the limit (or, under `--on-failure revert`, moving the tenants it moved back
//! and ending aborted), waiting out the bake time or an approval between stages, and releasing
//! the target when the last stage is done. A rollout moves tenants forwards through migrations
//! or back through revert scripts, the same way.
//!
//! Invariants: one engine drives a rollout at a time (an advisory lock on the control plane);
//! everything it knows is in the control-plane database, so a crash anywhere resumes where it
//! stopped (a tenant left `running` is simply migrated again: the advisory lock in the tenant
//! database plus refinery's history make that a no-op if it had finished); a tenant already at
//! the target by the control plane's record is skipped without connecting, unless `verify`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use control_plane::rollouts::{
    OnFailure, RolloutDirection, RolloutRecord, RolloutState, RolloutWork,
};
use control_plane::store::StoreError;
use control_plane::{Keyring, Store};
use futures::StreamExt as _;
use uuid::Uuid;

use crate::{MigrationLimits, MigrationSet, migrate_to, revert_to};

/// What drives rollouts: the control plane, the keys to open tenant URLs, and the migrations.
#[derive(Debug, Clone)]
pub struct Engine {
    pub store: Store,
    pub keyring: Arc<Keyring>,
    pub set: MigrationSet,
    pub limits: MigrationLimits,
    /// Read each tenant's own history instead of trusting the control plane's version.
    pub verify: bool,
}

/// Why a tenant's migration failed, in words for the per-tenant table: the server's own message
/// and SQLSTATE where there is one (refinery wraps it as just "db error"). Never holds a secret.
fn describe(error: &crate::MigrateError) -> String {
    let top = error.to_string();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = current {
        if let Some(db) = cause
            .downcast_ref::<tokio_postgres::Error>()
            .and_then(tokio_postgres::Error::as_db_error)
        {
            let detail = format!("{} ({})", db.message(), db.code().code());
            return if top.contains("db error") {
                top.replace("db error", &detail)
            } else {
                format!("{top}: {detail}")
            };
        }
        current = cause.source();
    }
    top
}

impl Engine {
    pub fn new(store: Store, keyring: Arc<Keyring>, set: MigrationSet) -> Self {
        Self {
            store,
            keyring,
            set,
            limits: MigrationLimits::default(),
            verify: false,
        }
    }

    /// Drives the rollout if no other process does, until it is no longer running; returns its
    /// state then. `None`: another process holds it.
    pub async fn drive_if_free(
        &self,
        rollout_id: Uuid,
    ) -> Result<Option<RolloutState>, StoreError> {
        let Some(lock) = self.store.try_lock_rollout(rollout_id).await? else {
            return Ok(None);
        };
        let result = self.drive(rollout_id).await;
        lock.release().await;
        result.map(Some)
    }

    async fn drive(&self, rollout_id: Uuid) -> Result<RolloutState, StoreError> {
        loop {
            let rollout = self.store.rollout(rollout_id).await?;
            if rollout.state == RolloutState::Reverting {
                self.revert_moved_tenants(&rollout).await?;
                continue;
            }
            if rollout.state != RolloutState::Running {
                return Ok(rollout.state);
            }
            if rollout.target_version > self.set.latest() {
                // An older build (say, mid-deploy): leave the rollout to a process that knows it.
                tracing::warn!(
                    rollout = %rollout_id,
                    target = rollout.target_version,
                    known = self.set.latest(),
                    "this build does not know the rollout's target version; leaving it to another"
                );
                return Ok(rollout.state);
            }
            let stage = rollout.current_stage;
            let last = usize::try_from(stage).map_or(true, |s| s + 1 >= rollout.stages.len());
            if last {
                self.store.add_late_tenants(rollout_id, stage).await?;
            }
            if !self.bake(&rollout).await? {
                continue;
            }
            self.run_stage(&rollout, stage).await?;

            let counts = self.store.stage_counts(rollout_id, Some(stage)).await?;
            // The limit is checked before anything else: `run_stage` stopped starting tenants
            // when it was passed, and looking again for pending work would start a fresh batch
            // (a bad migration would then reach the whole stage, whatever the limit said).
            if rollout.failure_limit.exceeded(counts.failed, counts.total) {
                self.pause_for_failures(&rollout, stage, counts.failed)
                    .await?;
                continue;
            }
            if counts.pending + counts.running > 0 {
                continue; // paused meanwhile, or more work arrived: look again
            }
            if last {
                // Tenants that signed up while the last stage ran are migrated before release.
                if self.store.add_late_tenants(rollout_id, stage).await? > 0 {
                    continue;
                }
                self.store
                    .transition_rollout(
                        rollout_id,
                        &[RolloutState::Running],
                        RolloutState::Completed,
                        None,
                    )
                    .await?;
                tracing::info!(rollout = %rollout_id, version = rollout.target_version, "rollout completed; version released");
            } else if self.store.advance_stage(rollout_id, stage).await? && rollout.manual_approval
            {
                self.store
                    .transition_rollout(
                        rollout_id,
                        &[RolloutState::Running],
                        RolloutState::Paused,
                        Some(&format!(
                            "stage {} done; resume to approve stage {}",
                            stage + 1,
                            stage + 2
                        )),
                    )
                    .await?;
            }
        }
    }

    /// Waits until the current stage's bake time (counted from the stage's start) has passed;
    /// `false` if the rollout stopped running meanwhile.
    async fn bake(&self, rollout: &RolloutRecord) -> Result<bool, StoreError> {
        if rollout.current_stage == 0 || rollout.bake_seconds == 0 {
            return Ok(true);
        }
        let ready_at =
            rollout.stage_started_at + chrono::Duration::seconds(i64::from(rollout.bake_seconds));
        loop {
            let remaining = ready_at - chrono::Utc::now();
            if remaining <= chrono::Duration::zero() {
                return Ok(true);
            }
            if self.store.rollout(rollout.id).await?.state != RolloutState::Running {
                return Ok(false);
            }
            let nap = remaining
                .to_std()
                .unwrap_or_default()
                .min(Duration::from_secs(1));
            tokio::time::sleep(nap).await;
        }
    }

    async fn pause_for_failures(
        &self,
        rollout: &RolloutRecord,
        stage: i32,
        failed: i64,
    ) -> Result<(), StoreError> {
        let (state, reason) = match rollout.on_failure {
            OnFailure::Pause => (
                RolloutState::Paused,
                format!(
                    "{failed} tenants failed in stage {}, over the limit; fix and `retry`, or `abort`",
                    stage + 1
                ),
            ),
            OnFailure::Revert => (
                RolloutState::Reverting,
                format!(
                    "{failed} tenants failed in stage {}, over the limit; moving the tenants \
                     this rollout moved back (--on-failure revert)",
                    stage + 1
                ),
            ),
        };
        self.store
            .transition_rollout(rollout.id, &[RolloutState::Running], state, Some(&reason))
            .await?;
        tracing::warn!(rollout = %rollout.id, stage, failed, state = state.as_str(), "too many failures");
        Ok(())
    }

    /// `--on-failure revert`: moves every tenant this rollout moved back to the version it was
    /// at before, then ends the rollout aborted (nothing released). Resumable: tenants already
    /// moved back are `reverted`, and a tenant that cannot be is recorded `failed` with why.
    async fn revert_moved_tenants(&self, rollout: &RolloutRecord) -> Result<(), StoreError> {
        let moved = self.store.tenants_to_revert(rollout.id).await?;
        let back = match rollout.direction {
            RolloutDirection::Forward => RolloutDirection::Back,
            RolloutDirection::Back => RolloutDirection::Forward,
        };
        let concurrency = usize::try_from(rollout.concurrency_per_host)
            .unwrap_or(1)
            .max(1);
        let results: Vec<Result<bool, StoreError>> = futures::stream::iter(moved)
            .map(|tenant| async move {
                let item = &tenant.work;
                // A failed tenant's own history says where it stopped; a succeeded one is where
                // the control plane recorded it.
                let outcome = match tenant.from_version {
                    Some(before) => self.move_tenant(item, before, back, tenant.failed).await,
                    None => Err("the version before this rollout was not recorded".to_owned()),
                };
                let (status, to_version, error) = match (&outcome, tenant.failed) {
                    (Ok((_, after)), false) => ("reverted", Some(*after), None),
                    (Ok((_, after)), true) => (
                        "failed",
                        Some(*after),
                        Some(format!(
                            "{}; moved back to version {after}",
                            tenant.error.as_deref().unwrap_or("failed")
                        )),
                    ),
                    (Err(error), _) => {
                        tracing::warn!(rollout = %rollout.id, tenant = %item.slug, %error, "moving a tenant back failed");
                        ("failed", None, Some(format!("moving it back failed: {error}")))
                    }
                };
                self.store
                    .finish_rollout_tenant(rollout.id, item.tenant_id, status, to_version, error.as_deref())
                    .await?;
                Ok(outcome.is_ok())
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut not_reverted = 0;
        for result in results {
            if !result? {
                not_reverted += 1;
            }
        }
        let counts = self.store.stage_counts(rollout.id, None).await?;
        let mut reason = format!(
            "{}; {} tenants moved back",
            rollout
                .pause_reason
                .as_deref()
                .unwrap_or("over the failure limit")
                .split(';')
                .next()
                .unwrap_or_default(),
            counts.reverted
        );
        if not_reverted > 0 {
            reason.push_str(&format!(
                ", {not_reverted} could not be (see their errors; fix them by hand)"
            ));
        }
        self.store
            .transition_rollout(
                rollout.id,
                &[RolloutState::Reverting],
                RolloutState::Aborted,
                Some(&reason),
            )
            .await?;
        tracing::warn!(rollout = %rollout.id, %reason, "rollout reverted and aborted");
        Ok(())
    }

    /// Migrates the stage's pending tenants: each host's tenants in plan order, up to the
    /// per-host concurrency, all hosts at once. Stops starting tenants once the failure limit is
    /// passed or the rollout is paused or aborted elsewhere; tenants already started finish.
    async fn run_stage(&self, rollout: &RolloutRecord, stage: i32) -> Result<(), StoreError> {
        let work = self.store.stage_work(rollout.id, stage).await?;
        if work.is_empty() {
            return Ok(());
        }
        let total = self
            .store
            .stage_counts(rollout.id, Some(stage))
            .await?
            .total;
        let mut by_host: HashMap<Option<Uuid>, Vec<RolloutWork>> = HashMap::new();
        for item in work {
            by_host.entry(item.host_id).or_default().push(item);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let concurrency = usize::try_from(rollout.concurrency_per_host)
            .unwrap_or(1)
            .max(1);
        let hosts = by_host.into_values().map(|items| {
            let stop = stop.clone();
            async move {
                futures::stream::iter(items)
                    .map(|item| {
                        let stop = stop.clone();
                        async move {
                            if stop.load(Ordering::Relaxed) {
                                return Ok(());
                            }
                            let outcome = self.migrate_one(rollout, &item).await?;
                            match outcome {
                                TenantOutcome::NotStarted => stop.store(true, Ordering::Relaxed),
                                TenantOutcome::Failed => {
                                    let failed = self
                                        .store
                                        .stage_counts(rollout.id, Some(stage))
                                        .await?
                                        .failed;
                                    if rollout.failure_limit.exceeded(failed, total) {
                                        stop.store(true, Ordering::Relaxed);
                                    }
                                }
                                TenantOutcome::Done => {}
                            }
                            Ok::<(), StoreError>(())
                        }
                    })
                    .buffer_unordered(concurrency)
                    .collect::<Vec<_>>()
                    .await
            }
        });
        for results in futures::future::join_all(hosts).await {
            for result in results {
                result?;
            }
        }
        Ok(())
    }

    async fn migrate_one(
        &self,
        rollout: &RolloutRecord,
        item: &RolloutWork,
    ) -> Result<TenantOutcome, StoreError> {
        let target = rollout.target_version;
        let verify = self.verify || rollout.verify;
        let direction = rollout.direction;
        if !verify && !direction.moves(item.schema_version, target) && item.schema_version.is_some()
        {
            self.store
                .finish_rollout_tenant(rollout.id, item.tenant_id, "skipped", None, None)
                .await?;
            return Ok(TenantOutcome::Done);
        }
        if !self
            .store
            .start_rollout_tenant(rollout.id, item.tenant_id, item.schema_version)
            .await?
        {
            return Ok(TenantOutcome::NotStarted);
        }
        let result = self.move_tenant(item, target, direction, verify).await;
        match result {
            Ok((before, _)) if !direction.moves(Some(before), target) => {
                self.store
                    .finish_rollout_tenant(
                        rollout.id,
                        item.tenant_id,
                        "skipped",
                        Some(before),
                        None,
                    )
                    .await?;
                Ok(TenantOutcome::Done)
            }
            Ok((_, after)) => {
                self.store
                    .finish_rollout_tenant(
                        rollout.id,
                        item.tenant_id,
                        "succeeded",
                        Some(after),
                        None,
                    )
                    .await?;
                Ok(TenantOutcome::Done)
            }
            Err(error) => {
                tracing::warn!(rollout = %rollout.id, tenant = %item.slug, %error, "tenant migration failed");
                self.store
                    .finish_rollout_tenant(rollout.id, item.tenant_id, "failed", None, Some(&error))
                    .await?;
                Ok(TenantOutcome::Failed)
            }
        }
    }

    /// Connects to the tenant's database and moves it to `target`: forwards through the
    /// migrations, or back through the revert scripts; returns (version before, after).
    async fn move_tenant(
        &self,
        item: &RolloutWork,
        target: i32,
        direction: RolloutDirection,
        verify: bool,
    ) -> Result<(i32, i32), String> {
        let mut client = crate::connect_tenant(
            &self.keyring,
            item.tenant_id,
            item.sealed_database_url.as_ref(),
        )
        .await?;
        // The control plane's record is trusted unless verifying (refinery checks the history
        // either way, so nothing is applied twice).
        let before = match (verify, item.schema_version) {
            (false, Some(version)) => version,
            _ => crate::applied_version(&client)
                .await
                .map_err(|e| describe(&e))?,
        };
        let after = match direction {
            _ if !direction.moves(Some(before), target) => return Ok((before, before)),
            RolloutDirection::Forward => {
                migrate_to(&mut client, &self.set, Some(target), self.limits).await
            }
            RolloutDirection::Back => revert_to(&mut client, &self.set, target, self.limits).await,
        }
        .map_err(|e| describe(&e))?;
        Ok((before, after))
    }
}

enum TenantOutcome {
    Done,
    Failed,
    /// The rollout stopped running before this tenant started.
    NotStarted,
}

/// Drives every running rollout, from the workers, until `shutdown` resolves. Several worker
/// processes may run this: each rollout is driven by whichever takes its lock.
pub async fn run_rollouts(engine: Engine, shutdown: impl Future<Output = ()>) {
    let work = async {
        loop {
            match engine.store.running_rollouts().await {
                Ok(ids) => {
                    for id in ids {
                        if let Err(error) = engine.drive_if_free(id).await {
                            tracing::warn!(rollout = %id, %error, "driving a rollout failed; will resume");
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot list running rollouts"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        () = work => {},
        () = shutdown => {},
    }
}
