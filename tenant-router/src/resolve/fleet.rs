//! One connection budget per database host across router processes. Every router records itself
//! in the control plane (a heartbeat), counts the live routers, and takes an equal share of each
//! host's budget: with `n` routers, `budget / n` each, so together they stay within it.
//!
//! A router joining or leaving announces it on [`ROUTERS_CHANNEL`] and the others re-count at
//! once; one that dies without leaving is dropped after three missed heartbeats, and its share
//! goes back to the others then. A router that cannot reach the control plane keeps the count
//! it last knew. A shrinking share is paid back as connections come free (see
//! [`crate::budget`]), never by breaking one in use.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::Duration;

use control_plane::routers::ROUTERS_CHANNEL;

use super::RouterState;

/// A router not seen for this many heartbeats is gone.
const MISSED_HEARTBEATS: u32 = 3;

impl RouterState {
    /// How many routers this one counted at its last heartbeat, itself included.
    pub fn routers(&self) -> u32 {
        self.inner.routers.load(Ordering::Relaxed)
    }

    /// Records this router in the control plane, takes its share, and tells the other routers
    /// to count again. Called before serving; on failure it serves on the count it has (one).
    pub async fn join_fleet(&self) {
        if self.heartbeat().await
            && let Err(error) = self.inner.store.announce_routers_changed().await
        {
            tracing::warn!(%error, "cannot announce this router to the others");
        }
    }

    /// Heartbeats every `heartbeat_interval`, and counts again whenever another router joins or
    /// leaves, until `served` resolves; then leaves the fleet, giving its share back.
    pub async fn follow_fleet(&self, served: impl Future<Output = ()>) {
        let interval = self.inner.settings.heartbeat_interval;
        let follow = async {
            loop {
                let mut listener = match self.inner.store.listen(ROUTERS_CHANNEL).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for other routers; retrying");
                        tokio::time::sleep(interval).await;
                        self.heartbeat().await;
                        continue;
                    }
                };
                loop {
                    // A wake-up or the interval, whichever comes first: count again either way.
                    let woken = tokio::time::timeout(interval, listener.try_recv()).await;
                    self.heartbeat().await;
                    if let Ok(Err(error)) = woken {
                        tracing::warn!(%error, "router listener failed; reconnecting");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        break;
                    }
                }
            }
        };
        tokio::select! {
            () = follow => {},
            () = served => {},
        }
        if let Err(error) = self.inner.store.router_left(&self.inner.identity).await {
            tracing::warn!(%error, "cannot remove this router from the fleet; the others take its share after three heartbeats");
        }
    }

    /// Records this router as alive and takes its share of every host; returns whether the
    /// control plane answered.
    async fn heartbeat(&self) -> bool {
        let interval = self.inner.settings.heartbeat_interval;
        match self
            .inner
            .store
            .router_heartbeat(&self.inner.identity, interval * MISSED_HEARTBEATS)
            .await
        {
            Ok(routers) => {
                self.set_routers(routers);
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot record this router's heartbeat; keeping its share");
                false
            }
        }
    }

    fn set_routers(&self, routers: u32) {
        let before = self.inner.routers.swap(routers, Ordering::Relaxed);
        if before != routers {
            tracing::info!(
                routers,
                "routers serving the fleet changed; sharing each host's connection budget among them"
            );
        }
        for (_, host) in self.hosts() {
            host.set_routers(routers);
        }
    }

    /// Pays back what each host's budget owes after a shrink (idle connections closed).
    pub(crate) fn settle_budgets(&self) {
        for (_, host) in self.hosts() {
            host.settle();
        }
    }
}
