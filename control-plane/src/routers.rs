//! The fleet of router processes: each heartbeats a row here, and each takes an equal share of
//! every database host's connection budget (see the tenant router's `resolve/fleet.rs`). Joins and leaves are
//! announced on [`ROUTERS_CHANNEL`] so the others re-count at once; a router that died without
//! leaving drops out after `live_within`.

use std::time::Duration;

use uuid::Uuid;

use crate::store::{Store, StoreResult};

/// Wakes every router to count the fleet again; the payload is empty.
pub const ROUTERS_CHANNEL: &str = "silo_routers";

/// A router process as it records itself.
#[derive(Debug, Clone)]
pub struct RouterIdentity {
    pub id: Uuid,
    pub hostname: String,
    pub pid: u32,
}

impl RouterIdentity {
    /// This process, under a new id.
    pub fn this_process() -> Self {
        Self {
            id: Uuid::new_v4(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|name| name.trim().to_owned())
                .unwrap_or_default(),
            pid: std::process::id(),
        }
    }
}

impl Store {
    /// Records that `router` is alive and returns how many routers are, itself included: those
    /// seen within `live_within`. Rows of routers gone for a day are removed on the way.
    pub async fn router_heartbeat(
        &self,
        router: &RouterIdentity,
        live_within: Duration,
    ) -> StoreResult<u32> {
        // The count reads the snapshot before this statement's own insert: count the others.
        let others: i64 = sqlx::query_scalar(
            "WITH beat AS ( \
                 INSERT INTO routers (id, hostname, pid) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET seen_at = now()), \
             gone AS ( \
                 DELETE FROM routers WHERE seen_at < now() - interval '1 day' AND id <> $1) \
             SELECT count(*) FROM routers \
             WHERE id <> $1 AND seen_at > now() - make_interval(secs => $4)",
        )
        .bind(router.id)
        .bind(&router.hostname)
        .bind(i32::try_from(router.pid).unwrap_or(i32::MAX))
        .bind(live_within.as_secs_f64())
        .fetch_one(self.pool())
        .await?;
        Ok(u32::try_from(others).unwrap_or(u32::MAX - 1) + 1)
    }

    /// Tells every router to count the fleet again (after a join or a leave).
    pub async fn announce_routers_changed(&self) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(ROUTERS_CHANNEL)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Removes `router` from the fleet (it is stopping) and tells the others.
    pub async fn router_left(&self, router: &RouterIdentity) -> StoreResult<()> {
        sqlx::query("DELETE FROM routers WHERE id = $1")
            .bind(router.id)
            .execute(self.pool())
            .await?;
        self.announce_routers_changed().await
    }
}
