//! Rollouts and releases in the control-plane database: the plan (which tenant goes in which
//! stage), every tenant's outcome, the rollout's state machine, and the released schema version.
//!
//! Invariants: at most one rollout is open (a unique partial index); state changes are guarded
//! by the state they leave, so two processes can never both make a transition; a tenant's
//! control-plane `schema_version` changes in the same transaction as its rollout row.

use std::time::Duration;

use serde::Serialize;
use sqlx::Row as _;
use sqlx::postgres::PgRow;
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
    Completed,
    Aborted,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Pending => "pending",
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Completed => "completed",
            RolloutState::Aborted => "aborted",
        }
    }

    fn parse(value: &str) -> StoreResult<Self> {
        Ok(match value {
            "pending" => RolloutState::Pending,
            "running" => RolloutState::Running,
            "paused" => RolloutState::Paused,
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
            RolloutState::Pending | RolloutState::Running | RolloutState::Paused
        )
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
    pub state: RolloutState,
    pub pause_reason: Option<String>,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub stage_started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One tenant's place and outcome in a rollout.
#[derive(Debug, Clone, Serialize)]
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

/// Per-status tenant counts of one stage (or of the whole rollout).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StageCounts {
    pub total: i64,
    pub pending: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub skipped: i64,
}

impl StageCounts {
    pub fn done(&self) -> i64 {
        self.succeeded + self.failed + self.skipped
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

fn rollout_from_row(row: &PgRow) -> StoreResult<RolloutRecord> {
    let max_failures: Option<i32> = row.try_get("max_failures")?;
    let max_failure_percent: Option<f32> = row.try_get("max_failure_percent")?;
    let state: String = row.try_get("state")?;
    Ok(RolloutRecord {
        id: row.try_get("id")?,
        target_version: row.try_get("target_version")?,
        stages: row.try_get("stages")?,
        current_stage: row.try_get("current_stage")?,
        concurrency_per_host: row.try_get("concurrency_per_host")?,
        failure_limit: match (max_failures, max_failure_percent) {
            (Some(count), _) => FailureLimit::Count(count),
            (None, Some(percent)) => FailureLimit::Percent(percent),
            (None, None) => FailureLimit::Count(0),
        },
        bake_seconds: row.try_get("bake_seconds")?,
        manual_approval: row.try_get("manual_approval")?,
        verify: row.try_get("verify")?,
        state: RolloutState::parse(&state)?,
        pause_reason: row.try_get("pause_reason")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        stage_started_at: row.try_get("stage_started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

fn rollout_tenant_from_row(row: &PgRow) -> StoreResult<RolloutTenant> {
    Ok(RolloutTenant {
        tenant_id: row.try_get("tenant_id")?,
        slug: row.try_get("slug")?,
        host: row.try_get("host")?,
        canary: row.try_get("canary")?,
        stage: row.try_get("stage")?,
        position: row.try_get("position")?,
        status: row.try_get("status")?,
        from_version: row.try_get("from_version")?,
        to_version: row.try_get("to_version")?,
        attempts: row.try_get("attempts")?,
        error: row.try_get("error")?,
    })
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
#[derive(Debug, Clone, Serialize)]
pub struct PlannedTenant {
    pub slug: String,
    pub host: Option<String>,
    pub canary: bool,
    pub stage: i32,
    pub schema_version: Option<i32>,
}

// After the macros above, which the queries use.
mod queries;
