//! What a rollout to a version would do to the fleet, decided once for the CLI and the dashboard
//! before anything starts: which way it goes, how many tenants it would move (none: "this
//! rollout does nothing"), and which migrations it would undo (a rollback) or apply (forwards)
//! with or without a revert script — a rollback, or `--on-failure revert`, needs one for each.

use control_plane::Store;
use control_plane::rollouts::{OnFailure, RolloutDirection};
use control_plane::store::StoreError;
use serde::Serialize;

use crate::MigrationSet;

/// One migration a rollout would apply or undo, and whether it can be undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevertAvailability {
    pub version: i32,
    /// The revert script's file name, `V{n}__name.revert.sql`.
    pub file: String,
    pub available: bool,
}

/// A rollout to `target` over the fleet as it is now.
#[derive(Debug, Clone, Serialize)]
pub struct Reach {
    pub target: i32,
    pub direction: RolloutDirection,
    /// Servable tenants.
    pub tenants: i64,
    /// Tenants it would move (the rest are already there, or past it the other way).
    pub moves: i64,
    /// The migrations it would undo (a rollback) or apply (forwards), newest first.
    pub migrations: Vec<RevertAvailability>,
}

/// Why a rollout may not start: a migration it must be able to undo has no revert script.
/// Code `revert_missing` wherever it is answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what}; {files} cannot be undone: no revert script ({scripts}). Add the script beside the migration, or roll forward instead"
)]
pub struct RevertMissing {
    what: String,
    files: String,
    scripts: String,
}

impl RevertMissing {
    pub const CODE: &'static str = "revert_missing";
}

impl Reach {
    /// Reads the fleet's versions from the control plane (connects to no tenant).
    pub async fn of(store: &Store, set: &MigrationSet, target: i32) -> Result<Self, StoreError> {
        let distribution = store.version_distribution().await?;
        let newest = distribution
            .iter()
            .filter_map(|(version, _)| *version)
            .max();
        let direction = RolloutDirection::towards(target, newest);
        let tenants = distribution.iter().map(|(_, count)| count).sum();
        let moving = || {
            distribution
                .iter()
                .filter(|(version, _)| direction.moves(*version, target))
        };
        let moves = moving().map(|(_, count)| count).sum();
        let (low, high) = match direction {
            RolloutDirection::Back => (target, newest.unwrap_or(target)),
            RolloutDirection::Forward => (
                moving()
                    .map(|(version, _)| version.unwrap_or(0))
                    .min()
                    .unwrap_or(target),
                target,
            ),
        };
        let migrations = set
            .migrations()
            .iter()
            .rev()
            .filter(|m| m.version() > low && m.version() <= high)
            .map(|m| RevertAvailability {
                version: m.version(),
                file: format!("V{}__{}.revert.sql", m.version(), m.name()),
                available: set.revert_sql(m.version()).is_some(),
            })
            .collect();
        Ok(Self {
            target,
            direction,
            tenants,
            moves,
            migrations,
        })
    }

    /// Nothing to do: every tenant is already at the target (or past it the other way).
    pub fn does_nothing(&self) -> bool {
        self.moves == 0
    }

    /// Whether the rollout may start: a rollback needs every migration it undoes revertible,
    /// and so does a forward rollout with `--on-failure revert` for those it applies.
    pub fn check(&self, on_failure: OnFailure) -> Result<(), RevertMissing> {
        let needs_reverts =
            self.direction == RolloutDirection::Back || on_failure == OnFailure::Revert;
        let missing: Vec<&RevertAvailability> =
            self.migrations.iter().filter(|m| !m.available).collect();
        if !needs_reverts || missing.is_empty() || self.does_nothing() {
            return Ok(());
        }
        let what = match self.direction {
            RolloutDirection::Back => format!(
                "a rollback to version {} undoes every migration above it",
                self.target
            ),
            RolloutDirection::Forward => {
                "--on-failure revert must be able to undo every migration the rollout applies"
                    .to_owned()
            }
        };
        Err(RevertMissing {
            what,
            files: missing
                .iter()
                .map(|m| format!("V{}", m.version))
                .collect::<Vec<_>>()
                .join(", "),
            scripts: missing
                .iter()
                .map(|m| m.file.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}
