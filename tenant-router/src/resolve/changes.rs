//! Change notifications: every router LISTENs on the control plane's tenant channel and drops
//! what a change makes stale (a tenant, its pool, a domain, an API key); after a lost listener
//! every entry is marked stale rather than dropped, so a down control plane does not stop
//! tenants already resolved.

use std::sync::atomic::Ordering;
use std::time::Duration;

use control_plane::model::{TENANT_CHANGES_CHANNEL, TenantChanged};

use super::RouterState;

impl RouterState {
    /// Forgets one tenant: its resolution and its pool. A pool in use by a request stays alive
    /// (deadpool pools are reference-counted) until that request returns its connection.
    pub async fn invalidate(&self, changed: &TenantChanged) {
        self.inner.changes.fetch_add(1, Ordering::SeqCst);
        if changed.sessions_ended.is_some() {
            // Only sessions ended; the tenant's resolution and pool are still good.
            self.reload_ended_sessions(Some(changed.id)).await;
            return;
        }
        if let Some(prefix) = &changed.api_key {
            // Only that key changed; the tenant's resolution and pool are still good.
            self.inner.api_key_cache.invalidate(prefix).await;
            return;
        }
        self.inner.tenant_cache.invalidate(&changed.slug).await;
        self.inner.pool_cache.invalidate(&changed.id).await;
        match &changed.domain {
            Some(domain) => self.inner.domain_cache.invalidate(domain).await,
            None => {
                // The tenant itself changed (perhaps its slug): forget its domains' answers too.
                let id = changed.id;
                let _ = self
                    .inner
                    .domain_cache
                    .invalidate_entries_if(move |_, entry| {
                        entry.value.as_ref().is_some_and(|owner| owner.0 == id)
                    });
            }
        }
    }

    /// Marks every resolution stale (each is read again before its next use); used when change
    /// notifications may have been missed. Stale entries remain a fallback while the
    /// control-plane database cannot be reached.
    pub fn invalidate_all(&self) {
        self.inner.changes.fetch_add(1, Ordering::SeqCst);
        self.inner.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Listens for tenant changes and drops the affected cache entries until `shutdown`
    /// resolves. After a lost connection it marks every entry stale before trusting the cache
    /// again, since notifications sent meanwhile are lost.
    pub async fn follow_changes(&self, shutdown: impl Future<Output = ()>) {
        let follow = async {
            loop {
                let mut listener = match self.inner.store.listen(TENANT_CHANGES_CHANNEL).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for tenant changes; retrying");
                        self.invalidate_all();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                // Anything cached before listening may already be stale, and sessions may
                // have ended meanwhile.
                self.invalidate_all();
                self.reload_ended_sessions(None).await;
                loop {
                    match listener.try_recv().await {
                        Ok(Some(notification)) => {
                            match serde_json::from_str::<TenantChanged>(notification.payload()) {
                                Ok(changed) => self.invalidate(&changed).await,
                                Err(_) => self.invalidate_all(),
                            }
                        }
                        Ok(None) => {
                            tracing::warn!(
                                "tenant change listener lost its connection; resynchronising"
                            );
                            self.invalidate_all();
                        }
                        Err(error) => {
                            tracing::warn!(%error, "tenant change listener failed; reconnecting");
                            self.invalidate_all();
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            break;
                        }
                    }
                }
            }
        };
        tokio::select! {
            () = follow => {},
            () = shutdown => {},
        }
    }
}
