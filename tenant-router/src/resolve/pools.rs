//! Per-tenant connection pools: tenant id → a deadpool-postgres pool built from the tenant's
//! own sealed URL, under its host's connection budget and circuit breaker; a checkout resets the
//! session unless the last request ran to its end in the tenant app. The budget's default is a share of the host's usable connections.

use control_plane::connect::{self, ConnectOptions};
use std::sync::Arc;

use control_plane::Purpose;
use deadpool::managed::PoolError;
use deadpool_postgres::{ManagerConfig, RecyclingMethod, Runtime};
use web::{ApiError, ErrorCode};

use crate::budget::{
    BudgetedManager, CircuitBreaker, ConnectError, HostState, TenantClient, TenantPool,
};

use super::{CachedPool, ResolvedTenant, RouterState};

/// Run before a pooled connection is handed on, unless its last request ran to its end in the
/// tenant app (see `BudgetedClient::serve`): ends any transaction left open or aborted, then
/// resets every session setting, temporary table, advisory lock and LISTEN, so nothing of one
/// request reaches the next.
/// (deadpool's `Clean`, plus a last statement that fails — so the connection is dropped — when
/// the connection came back inside a transaction: only then does `now()`, the transaction's
/// start, differ from this statement's start. An aborted transaction fails the first statement.)
const RESET_SESSION: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; \
     SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES; \
     SELECT 1 / (now() = statement_timestamp())::int";

impl RouterState {
    /// A connection to the tenant's own database from its cached pool, within its host's
    /// connection budget; fails fast while the host's breaker is open.
    pub async fn connection(&self, tenant: &ResolvedTenant) -> Result<TenantClient, ApiError> {
        let pool = self.pool(tenant).await?;
        let host = pool.manager().host.clone();
        if host.breaker.is_open() {
            return Err(tenant_unavailable());
        }
        match pool.get().await {
            Ok(client) => {
                host.breaker.record_success();
                Ok(client)
            }
            Err(PoolError::Backend(ConnectError::Capacity) | PoolError::Timeout(_)) => {
                Err(capacity())
            }
            Err(PoolError::Backend(error)) => {
                if error.is_host_failure() {
                    host.breaker.record_failure();
                }
                tracing::warn!(tenant = %tenant.slug, %error, "cannot connect to the tenant database");
                Err(tenant_unavailable())
            }
            Err(error) => {
                tracing::warn!(tenant = %tenant.slug, %error, "cannot get a tenant database connection");
                Err(tenant_unavailable())
            }
        }
    }

    /// The tenant's pool: the cached one if it was built from the tenant's current sealed URL,
    /// else a new one.
    async fn pool(&self, tenant: &ResolvedTenant) -> Result<TenantPool, ApiError> {
        let cache = &self.inner.pool_cache;
        if let Some(cached) = cache.get(&tenant.id).await {
            if cached.built_from == tenant.sealed_database_url {
                return Ok(cached.pool);
            }
            cache.invalidate(&tenant.id).await;
        }
        let cached = cache
            .try_get_with(tenant.id, async {
                let pool = self.build_pool(tenant).await?;
                Ok(CachedPool {
                    pool,
                    built_from: tenant.sealed_database_url.clone(),
                })
            })
            .await
            .map_err(|error: Arc<ApiError>| (*error).clone())?;
        Ok(cached.pool)
    }

    async fn build_pool(&self, tenant: &ResolvedTenant) -> Result<TenantPool, ApiError> {
        let settings = &self.inner.settings;
        let sealed = tenant
            .sealed_database_url
            .as_ref()
            .ok_or_else(tenant_unavailable)?;
        let url = self
            .inner
            .keyring
            .open(Purpose::TenantDatabaseUrl, tenant.id, sealed)
            .map_err(|error| {
                tracing::error!(tenant = %tenant.slug, %error, "cannot open the tenant's connection string");
                tenant_unavailable()
            })?;
        let options = ConnectOptions {
            connect_timeout: settings.connect_timeout,
            ..ConnectOptions::named("silo-router")
        };
        let target = connect::config(&url, options).map_err(|error| {
            tracing::error!(tenant = %tenant.slug, %error, "the tenant's connection string is not usable");
            tenant_unavailable()
        })?;
        let tls = target.tls.connector().map_err(|error| {
            tracing::error!(tenant = %tenant.slug, %error, "cannot set up TLS to the tenant's database");
            tenant_unavailable()
        })?;
        let host = self.host(tenant, &target).await?;
        let manager = BudgetedManager {
            inner: deadpool_postgres::Manager::from_config(
                target.config,
                tls,
                ManagerConfig {
                    recycling_method: RecyclingMethod::Custom(RESET_SESSION.to_owned()),
                },
            ),
            host: host.clone(),
            tenant: tenant.id,
        };
        let pool = TenantPool::builder(manager)
            .max_size(settings.pool_max_size)
            .runtime(Runtime::Tokio1)
            // Waiting for one of the tenant's own connections (its cap) counts as capacity; a
            // new connection's wait for the host budget and its connect have their own limits.
            .wait_timeout(Some(settings.budget_wait))
            .build()
            .map_err(|_| ApiError::internal())?;
        host.register(tenant.id, &pool);
        Ok(pool)
    }

    /// The tenant's host state, made on first contact: its budget is the configured one, or a
    /// share of the server's `max_connections` (read once, over the tenant's own credentials).
    async fn host(
        &self,
        tenant: &ResolvedTenant,
        target: &connect::Target,
    ) -> Result<Arc<HostState>, ApiError> {
        let inner = &self.inner;
        let host_id = tenant.host_id.unwrap_or_default();
        if let Some(host) = inner
            .hosts
            .lock()
            .ok()
            .and_then(|hosts| hosts.get(&host_id).cloned())
        {
            return Ok(host);
        }
        if inner.unreachable_hosts.contains_key(&host_id) {
            return Err(tenant_unavailable());
        }
        let settings = &inner.settings;
        let limit = match settings.connection_budget {
            Some(limit) => limit,
            None => match usable_connections(target).await {
                Ok(usable) => share_of(usable, settings.budget_share),
                Err(error) => {
                    tracing::warn!(tenant = %tenant.slug, %error, "cannot reach the tenant's database host");
                    inner.unreachable_hosts.insert(host_id, ()).await;
                    return Err(tenant_unavailable());
                }
            },
        };
        let mut hosts = inner.hosts.lock().map_err(|_| ApiError::internal())?;
        let routers = self.routers();
        let host = hosts.entry(host_id).or_insert_with(|| {
            Arc::new(HostState::new(
                limit,
                routers,
                settings.budget_wait,
                CircuitBreaker::new(settings.breaker_threshold, settings.breaker_cool_down),
            ))
        });
        Ok(host.clone())
    }
}

/// The connections a server accepts from non-superusers.
async fn usable_connections(target: &connect::Target) -> Result<u32, connect::ConnectError> {
    let client = target.connect().await?;
    let row = client
        .query_one(
            "SELECT current_setting('max_connections')::int \
                  - current_setting('superuser_reserved_connections')::int",
            &[],
        )
        .await;
    drop(client);
    let usable: i32 = row?.get(0);
    Ok(u32::try_from(usable).unwrap_or(1))
}

/// `share` of `usable` connections, at least one.
fn share_of(usable: u32, share: f64) -> u32 {
    ((f64::from(usable) * share).floor() as u32).max(1)
}

fn capacity() -> ApiError {
    ApiError::new(
        ErrorCode::Capacity,
        "This workspace's database server is at its connection limit. Try again shortly.",
    )
    .retry_after(1)
}

pub(super) fn tenant_unavailable() -> ApiError {
    ApiError::new(
        ErrorCode::TenantUnavailable,
        "This workspace's database cannot be reached right now. Try again shortly.",
    )
    .retry_after(5)
}

#[cfg(test)]
mod tests {
    use super::share_of;

    #[test]
    fn the_default_budget_is_a_share_of_the_usable_connections() {
        assert_eq!(share_of(97, 0.5), 48);
        assert_eq!(share_of(47, 0.5), 23);
        assert_eq!(share_of(1, 0.1), 1, "never zero");
    }
}
