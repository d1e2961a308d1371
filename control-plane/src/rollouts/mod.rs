//! Rollouts and releases in the control-plane database: the plan (which tenant goes in which
//! stage), every tenant's outcome, the rollout's state machine, and the released schema version.
//!
//! Invariants: at most one rollout is open (a unique partial index); state changes are guarded
//! by the state they leave, so two processes can never both make a transition; a tenant's
//! control-plane `schema_version` changes in the same transaction as its rollout row.

use std::time::Duration;

use serde::Serialize;
use uuid::Uuid;

use crate::sealing::Sealed;
use crate::store::{StoreError, StoreResult};

/// A rollout's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    Pending,
    Running,
    Paused,
    /// An `--on-failure revert` rollout moving the tenants it moved back, before it ends aborted.
    Reverting,
    Completed,
    Aborted,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Pending => "pending",
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Reverting => "reverting",
            RolloutState::Completed => "completed",
            RolloutState::Aborted => "aborted",
        }
    }

    fn parse(value: &str) -> StoreResult<Self> {
        Ok(match value {
            "pending" => RolloutState::Pending,
            "running" => RolloutState::Running,
            "paused" => RolloutState::Paused,
            "reverting" => RolloutState::Reverting,
            "completed" => RolloutState::Completed,
            "aborted" => RolloutState::Aborted,
            other => {
                return Err(StoreError::Database(sqlx::Error::Decode(
                    format!("unknown rollout state {other}").into(),
                )));
            }
        })
    }

    /// Whether the rollout can still change.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            RolloutState::Pending
                | RolloutState::Running
                | RolloutState::Paused
                | RolloutState::Reverting
        )
    }

    /// The operator actions this state allows (a finished rollout allows none, so pages and
    /// the CLI offer none).
    pub fn allowed_actions(self) -> &'static [RolloutAction] {
        match self {
            RolloutState::Pending => &[RolloutAction::Abort],
            RolloutState::Running => &[RolloutAction::Pause, RolloutAction::Abort],
            RolloutState::Paused => &[
                RolloutAction::Resume,
                RolloutAction::Abort,
                RolloutAction::Retry,
            ],
            RolloutState::Reverting | RolloutState::Aborted => &[],
            RolloutState::Completed => &[RolloutAction::Retry],
        }
    }
}

/// Which way a rollout moves tenants: up through migrations, or back through revert scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutDirection {
    Forward,
    Back,
}

impl RolloutDirection {
    /// A target below the newest version any tenant is at is a rollback; anything else moves
    /// forwards (tenants already at or past the target are skipped).
    pub fn towards(target: i32, fleet_newest: Option<i32>) -> Self {
        if fleet_newest.is_some_and(|newest| target < newest) {
            RolloutDirection::Back
        } else {
            RolloutDirection::Forward
        }
    }

    /// Whether a tenant at `version` has something to do in a rollout to `target` this way
    /// (a rollback never moves a tenant up, nor a forward rollout one down).
    pub fn moves(self, version: Option<i32>, target: i32) -> bool {
        match (self, version) {
            (RolloutDirection::Forward, Some(version)) => version < target,
            (RolloutDirection::Forward, None) => true,
            (RolloutDirection::Back, Some(version)) => version > target,
            (RolloutDirection::Back, None) => false,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutDirection::Forward => "forward",
            RolloutDirection::Back => "back",
        }
    }

    fn parse(value: &str) -> StoreResult<Self> {
        match value {
            "forward" => Ok(RolloutDirection::Forward),
            "back" => Ok(RolloutDirection::Back),
            other => Err(StoreError::Database(sqlx::Error::Decode(
                format!("unknown rollout direction {other}").into(),
            ))),
        }
    }
}

/// What a rollout does when a stage passes its failure limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Pause, for the operator to fix and retry, or abort.
    Pause,
    /// Move every tenant the rollout already moved back to its version before, then abort: the
    /// fleet ends on one version.
    Revert,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Pause => "pause",
            OnFailure::Revert => "revert",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pause" => Some(OnFailure::Pause),
            "revert" => Some(OnFailure::Revert),
            _ => None,
        }
    }
}

/// How many failures in one stage pause the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureLimit {
    Count(i32),
    Percent(f32),
}

impl FailureLimit {
    /// Whether `failed` failures among `total` tenants of a stage exceed the limit.
    pub fn exceeded(self, failed: i64, total: i64) -> bool {
        match self {
            FailureLimit::Count(count) => failed > i64::from(count),
            FailureLimit::Percent(percent) => {
                total > 0 && (failed as f64) * 100.0 / (total as f64) > f64::from(percent)
            }
        }
    }
}

/// What an operator asks for.
#[derive(Debug, Clone)]
pub struct RolloutSpec {
    pub target_version: i32,
    /// Cumulative percentages, ascending, ending at 100.
    pub stages: Vec<i32>,
    pub concurrency_per_host: i32,
    pub failure_limit: FailureLimit,
    pub bake: Duration,
    pub manual_approval: bool,
    /// Read every tenant's own history instead of trusting the control plane's version.
    pub verify: bool,
    /// Forwards or back (the caller decides from the fleet, see [`RolloutDirection::towards`],
    /// and checks that every migration to undo has a revert script).
    pub direction: RolloutDirection,
    pub on_failure: OnFailure,
    /// Lint rules whose error-level findings the operator accepted (checked by the caller
    /// against the migrations the rollout applies; recorded on the rollout and its audit row).
    pub accepted_risks: Vec<String>,
    pub created_by: String,
}

/// A rollout as stored.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutRecord {
    pub id: Uuid,
    pub target_version: i32,
    pub stages: Vec<i32>,
    pub current_stage: i32,
    pub concurrency_per_host: i32,
    pub failure_limit: FailureLimit,
    pub bake_seconds: i32,
    pub manual_approval: bool,
    pub verify: bool,
    pub direction: RolloutDirection,
    pub on_failure: OnFailure,
    pub state: RolloutState,
    pub pause_reason: Option<String>,
    /// Lint rules accepted when it was started.
    pub accepted_risks: Vec<String>,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub stage_started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One tenant's place and outcome in a rollout.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RolloutTenant {
    pub tenant_id: Uuid,
    pub slug: String,
    pub host: Option<String>,
    pub canary: bool,
    pub stage: i32,
    pub position: i32,
    pub status: String,
    pub from_version: Option<i32>,
    pub to_version: Option<i32>,
    pub attempts: i32,
    pub error: Option<String>,
}

/// What the engine needs to migrate one tenant.
#[derive(Debug, Clone)]
pub struct RolloutWork {
    pub tenant_id: Uuid,
    pub slug: String,
    pub host_id: Option<Uuid>,
    pub schema_version: Option<i32>,
    pub sealed_database_url: Option<Sealed>,
}

/// A tenant an `--on-failure revert` rollout has to move back.
#[derive(Debug, Clone)]
pub struct TenantToRevert {
    pub work: RolloutWork,
    /// Its version before the rollout.
    pub from_version: Option<i32>,
    /// It failed (its own database may still be part-way); else it succeeded.
    pub failed: bool,
    pub error: Option<String>,
}

/// Per-status tenant counts of one stage (or of the whole rollout).
#[derive(Debug, Clone, Copy, Default, Serialize, sqlx::FromRow)]
pub struct StageCounts {
    pub total: i64,
    pub pending: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub skipped: i64,
    /// Moved, then moved back by `--on-failure revert`.
    pub reverted: i64,
}

impl StageCounts {
    pub fn done(&self) -> i64 {
        self.succeeded + self.failed + self.skipped + self.reverted
    }
}

/// The tenants a rollout covers, in plan order: canaries first, then by a hash of the id, so
/// planning twice picks the same tenants for each stage. `$1` is the stages array.
macro_rules! plan_query {
    ($tail:literal) => {
        concat!(
            "WITH ordered AS ( \
               SELECT t.id, t.slug, t.canary, t.schema_version, h.name AS host, \
                      (row_number() OVER (ORDER BY t.canary DESC, md5(t.id::text)) - 1)::int AS position, \
                      count(*) OVER () AS total \
               FROM tenants t LEFT JOIN database_hosts h ON h.id = t.host_id \
               WHERE t.status IN ('active', 'suspended') \
             ), staged AS ( \
               SELECT o.*, (SELECT min(i) - 1 FROM generate_subscripts($1::int[], 1) AS i \
                            WHERE o.position < ceil(o.total * ($1::int[])[i] / 100.0))::int AS stage \
               FROM ordered o \
             ) ",
            $tail
        )
    };
}

/// A `rollouts` row; the two failure-limit columns become a [`FailureLimit`] and the state is
/// checked.
#[derive(Debug, sqlx::FromRow)]
struct RolloutRow {
    id: Uuid,
    target_version: i32,
    stages: Vec<i32>,
    current_stage: i32,
    concurrency_per_host: i32,
    max_failures: Option<i32>,
    max_failure_percent: Option<f32>,
    bake_seconds: i32,
    manual_approval: bool,
    verify: bool,
    direction: String,
    on_failure: String,
    state: String,
    pause_reason: Option<String>,
    accepted_risks: Vec<String>,
    created_by: String,
    created_at: chrono::DateTime<chrono::Utc>,
    stage_started_at: chrono::DateTime<chrono::Utc>,
    finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl TryFrom<RolloutRow> for RolloutRecord {
    type Error = StoreError;

    fn try_from(row: RolloutRow) -> StoreResult<Self> {
        Ok(RolloutRecord {
            id: row.id,
            target_version: row.target_version,
            stages: row.stages,
            current_stage: row.current_stage,
            concurrency_per_host: row.concurrency_per_host,
            failure_limit: match (row.max_failures, row.max_failure_percent) {
                (Some(count), _) => FailureLimit::Count(count),
                (None, Some(percent)) => FailureLimit::Percent(percent),
                (None, None) => FailureLimit::Count(0),
            },
            bake_seconds: row.bake_seconds,
            manual_approval: row.manual_approval,
            verify: row.verify,
            direction: RolloutDirection::parse(&row.direction)?,
            on_failure: OnFailure::parse(&row.on_failure).ok_or_else(|| {
                StoreError::Database(sqlx::Error::Decode(
                    format!("unknown on_failure {}", row.on_failure).into(),
                ))
            })?,
            state: RolloutState::parse(&row.state)?,
            pause_reason: row.pause_reason,
            accepted_risks: row.accepted_risks,
            created_by: row.created_by,
            created_at: row.created_at,
            stage_started_at: row.stage_started_at,
            finished_at: row.finished_at,
        })
    }
}

/// What `stage_work` selects; the two sealed columns become an optional [`Sealed`].
/// No `Debug`: it holds the sealed blob.
#[derive(sqlx::FromRow)]
struct RolloutWorkRow {
    id: Uuid,
    slug: String,
    host_id: Option<Uuid>,
    schema_version: Option<i32>,
    sealed_database_url: Option<Vec<u8>>,
    database_url_key_id: Option<String>,
}

impl From<RolloutWorkRow> for RolloutWork {
    fn from(row: RolloutWorkRow) -> Self {
        RolloutWork {
            tenant_id: row.id,
            slug: row.slug,
            host_id: row.host_id,
            schema_version: row.schema_version,
            sealed_database_url: row
                .sealed_database_url
                .zip(row.database_url_key_id)
                .map(|(blob, key_id)| Sealed { key_id, blob }),
        }
    }
}

/// A tenant's row in one rollout, with the rollout's id and target version.
#[derive(Debug, sqlx::FromRow)]
struct TenantRolloutRow {
    rollout_id: Uuid,
    target_version: i32,
    #[sqlx(flatten)]
    tenant: RolloutTenant,
}

/// What an operator can do to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    Pause,
    Resume,
    Abort,
    Retry,
}

impl RolloutAction {
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "pause" => RolloutAction::Pause,
            "resume" => RolloutAction::Resume,
            "abort" => RolloutAction::Abort,
            "retry" => RolloutAction::Retry,
            _ => return None,
        })
    }

    /// The action done, for sentences ("it cannot be paused").
    pub fn done(self) -> &'static str {
        match self {
            RolloutAction::Pause => "paused",
            RolloutAction::Resume => "resumed",
            RolloutAction::Abort => "aborted",
            RolloutAction::Retry => "retried",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutAction::Pause => "pause",
            RolloutAction::Resume => "resume",
            RolloutAction::Abort => "abort",
            RolloutAction::Retry => "retry",
        }
    }
}

/// A planned tenant, before any rollout exists.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct PlannedTenant {
    pub slug: String,
    pub host: Option<String>,
    pub canary: bool,
    pub stage: i32,
    pub schema_version: Option<i32>,
}

// After the macros above, which the queries use.
mod queries;
