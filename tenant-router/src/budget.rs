//! Per database host: the connection budget every tenant pool of this router process shares, and
//! a circuit breaker that makes tenants on a dead host fail fast.
//!
//! Invariant: a tenant database connection exists only while it holds one of its host's budget
//! permits (the permit lives inside the pooled object and is released when the connection is
//! closed, plus a short grace for the server to end the backend), so the connections this
//! process holds to a host never exceed the budget.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult, WeakPool};
use deadpool_postgres::ClientWrapper;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// One database host as this router process sees it.
#[derive(Debug)]
pub struct HostState {
    pub budget: ConnectionBudget,
    pub breaker: CircuitBreaker,
    /// The tenant pools on this host, so a full budget can take idle connections from them.
    pools: Mutex<HashMap<Uuid, WeakPool<BudgetedManager>>>,
}

impl HostState {
    pub fn new(budget: ConnectionBudget, breaker: CircuitBreaker) -> Self {
        Self {
            budget,
            breaker,
            pools: Mutex::new(HashMap::new()),
        }
    }

    pub fn register(&self, tenant: Uuid, pool: &TenantPool) {
        if let Ok(mut pools) = self.pools.lock() {
            pools.retain(|_, weak| weak.upgrade().is_some());
            pools.insert(tenant, pool.weak());
        }
    }

    /// Closes one idle connection to make room for `requester`: the longest-idle one of another
    /// tenant, else one of the requester's own (left idle by a request that finished while this
    /// one was already making a new connection), if there is any.
    ///
    /// Idle connections are found by walking each pool's idle slots: a pool's `available` count
    /// is no guide, since requests waiting to create a connection count against it.
    fn release_idle(&self, requester: Uuid) {
        let pools: Vec<(bool, TenantPool)> = match self.pools.lock() {
            Ok(pools) => pools
                .iter()
                .filter_map(|(tenant, weak)| Some((*tenant != requester, weak.upgrade()?)))
                .collect(),
            Err(_) => return,
        };
        let best = pools
            .into_iter()
            .filter_map(|(other, pool)| {
                let mut longest_idle = None::<Duration>;
                pool.retain(|_, metrics| {
                    longest_idle = longest_idle.max(Some(metrics.last_used()));
                    true
                });
                Some(((other, longest_idle?), pool))
            })
            .max_by_key(|(key, _)| *key);
        let Some((_, pool)) = best else {
            return;
        };
        let mut released = false;
        // The removed connection is dropped here, giving its permit back.
        pool.retain(|_, _| {
            let keep = released;
            released = true;
            keep
        });
    }

    /// A budget permit for one new connection of `requester`'s pool: at once if one is free;
    /// otherwise idle connections of other tenants are closed to make room, and the request
    /// waits up to the budget's wait for one before giving up with `Capacity`.
    async fn acquire(&self, requester: Uuid) -> Result<OwnedSemaphorePermit, ConnectError> {
        let budget = &self.budget;
        if let Ok(permit) = budget.permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        budget.waits.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + budget.wait;
        loop {
            self.release_idle(requester);
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(25));
            if let Ok(Ok(permit)) =
                tokio::time::timeout(slice, budget.permits.clone().acquire_owned()).await
            {
                return Ok(permit);
            }
            if Instant::now() >= deadline {
                budget.refusals.fetch_add(1, Ordering::Relaxed);
                return Err(ConnectError::Capacity);
            }
        }
    }
}

/// The connections one router process may hold to one host.
#[derive(Debug)]
pub struct ConnectionBudget {
    limit: u32,
    permits: Arc<Semaphore>,
    wait: Duration,
    /// Connection creations that had to wait for a permit.
    pub waits: AtomicU64,
    /// Connection creations refused after waiting `wait`.
    pub refusals: AtomicU64,
}

impl ConnectionBudget {
    pub fn new(limit: u32, wait: Duration) -> Self {
        Self {
            limit,
            permits: Arc::new(Semaphore::new(limit as usize)),
            wait,
            waits: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Connections currently held.
    pub fn in_use(&self) -> u32 {
        self.limit
            .saturating_sub(u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX))
    }
}

/// Consecutive connection failures to a host open the breaker for a cool-down; while open,
/// requests for that host's tenants fail at once instead of each waiting for a connect timeout.
/// After the cool-down requests are let through again; one more failure reopens it.
#[derive(Debug)]
pub struct CircuitBreaker {
    threshold: u32,
    cool_down: Duration,
    consecutive_failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
    /// How many times the breaker opened.
    pub trips: AtomicU64,
}

impl CircuitBreaker {
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cool_down,
            consecutive_failures: AtomicU32::new(0),
            open_until: Mutex::new(None),
            trips: AtomicU64::new(0),
        }
    }

    pub fn is_open(&self) -> bool {
        self.open_until
            .lock()
            .map(|until| until.is_some_and(|until| Instant::now() < until))
            .unwrap_or(false)
    }

    pub fn record_success(&self) {
        if self.consecutive_failures.swap(0, Ordering::Relaxed) > 0
            && let Ok(mut until) = self.open_until.lock()
        {
            *until = None;
        }
    }

    pub fn record_failure(&self) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= self.threshold
            && let Ok(mut until) = self.open_until.lock()
        {
            *until = Some(Instant::now() + self.cool_down);
            self.trips.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Why a pool could not create a connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The host's budget stayed full for the whole wait.
    #[error("the database host's connection budget is full")]
    Capacity,
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

impl ConnectError {
    /// Whether the failure says something about the host (unreachable, refusing, timing out)
    /// rather than about one tenant (its database or role gone, its password wrong).
    pub fn is_host_failure(&self) -> bool {
        match self {
            Self::Capacity => false,
            Self::Postgres(error) => error.code().is_none(),
        }
    }
}

/// How long a closed connection's permit is kept back: the server needs a moment after our
/// side closes to end the backend, which until then still counts against `max_connections`
/// (and shows in `pg_stat_activity`).
const BACKEND_EXIT_GRACE: Duration = Duration::from_millis(20);

/// A pooled tenant connection and the budget permit it holds.
#[derive(Debug)]
pub struct BudgetedClient {
    client: ClientWrapper,
    permit: Option<OwnedSemaphorePermit>,
}

impl Deref for BudgetedClient {
    type Target = ClientWrapper;
    fn deref(&self) -> &ClientWrapper {
        &self.client
    }
}

impl std::ops::DerefMut for BudgetedClient {
    fn deref_mut(&mut self) -> &mut ClientWrapper {
        &mut self.client
    }
}

impl Drop for BudgetedClient {
    fn drop(&mut self) {
        let permit = self.permit.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                tokio::time::sleep(BACKEND_EXIT_GRACE).await;
                drop(permit);
            });
        }
    }
}

/// deadpool-postgres's manager (connect, statement cache, reset between requests) with a budget
/// permit taken before each new connection.
pub struct BudgetedManager {
    pub inner: deadpool_postgres::Manager,
    pub host: Arc<HostState>,
    pub tenant: Uuid,
}

impl std::fmt::Debug for BudgetedManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The inner manager's Debug would print the connection settings, password included.
        f.debug_struct("BudgetedManager").finish_non_exhaustive()
    }
}

impl managed::Manager for BudgetedManager {
    type Type = BudgetedClient;
    type Error = ConnectError;

    async fn create(&self) -> Result<BudgetedClient, ConnectError> {
        let permit = self.host.acquire(self.tenant).await?;
        let client = managed::Manager::create(&self.inner).await?;
        Ok(BudgetedClient {
            client,
            permit: Some(permit),
        })
    }

    async fn recycle(
        &self,
        object: &mut BudgetedClient,
        metrics: &Metrics,
    ) -> RecycleResult<ConnectError> {
        managed::Manager::recycle(&self.inner, &mut object.client, metrics)
            .await
            .map_err(|error| match error {
                RecycleError::Message(message) => RecycleError::Message(message),
                RecycleError::Backend(error) => RecycleError::Backend(error.into()),
            })
    }

    fn detach(&self, object: &mut BudgetedClient) {
        managed::Manager::detach(&self.inner, &mut object.client);
    }
}

pub type TenantPool = managed::Pool<BudgetedManager>;
pub type TenantClient = managed::Object<BudgetedManager>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_budget_never_hands_out_more_permits_than_its_limit() {
        let host = HostState::new(
            ConnectionBudget::new(2, Duration::from_millis(60)),
            CircuitBreaker::new(3, Duration::from_secs(1)),
        );
        let tenant = Uuid::new_v4();
        let first = host.acquire(tenant).await.unwrap();
        let _second = host.acquire(tenant).await.unwrap();
        assert_eq!(host.budget.in_use(), 2);
        assert!(matches!(
            host.acquire(tenant).await,
            Err(ConnectError::Capacity)
        ));
        assert_eq!(host.budget.refusals.load(Ordering::Relaxed), 1);
        // A permit given back during the wait is handed to the waiter.
        let waiter = tokio::spawn(async move { host.acquire(tenant).await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert!(waiter.await.unwrap().is_ok());
    }

    #[test]
    fn the_breaker_opens_after_the_threshold_and_closes_on_success() {
        let breaker = CircuitBreaker::new(3, Duration::from_secs(60));
        breaker.record_failure();
        breaker.record_failure();
        assert!(!breaker.is_open());
        breaker.record_failure();
        assert!(breaker.is_open());
        assert_eq!(breaker.trips.load(Ordering::Relaxed), 1);
        breaker.record_success();
        assert!(!breaker.is_open());
        let brief = CircuitBreaker::new(1, Duration::from_millis(1));
        brief.record_failure();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!brief.is_open(), "half-open after the cool-down");
    }
}
