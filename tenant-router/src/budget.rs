//! Per database host: the connection budget every tenant pool of this router process shares, and
//! a circuit breaker that makes tenants on a dead host fail fast.
//!
//! Invariant: a tenant database connection exists only while it holds one of its host's budget
//! permits (the permit lives inside the pooled object and is released when the connection is
//! closed, plus a short grace for the server to end the backend), so the connections this
//! process holds to a host never exceed the budget.
//!
//! The budget is this process's share of the host's (see `resolve/fleet.rs`) and changes as routers
//! join and leave. When it shrinks below what is held, the difference is owed: no permit is
//! handed out until the debt is paid, each permit given back pays one, and idle connections are
//! closed to pay it (see [`HostState::settle`]).

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult, WeakPool};
use deadpool_postgres::ClientWrapper;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

/// One database host as this router process sees it.
#[derive(Debug)]
pub struct HostState {
    /// The connections every router together may hold to this host.
    pub fleet_budget: u32,
    pub budget: ConnectionBudget,
    pub breaker: CircuitBreaker,
    /// The tenant pools on this host, so a full budget can take idle connections from them.
    pools: Mutex<HashMap<Uuid, WeakPool<BudgetedManager>>>,
    /// Checkouts that skipped the session reset: the last request finished in the tenant app.
    pub quick_recycles: AtomicU64,
    /// Checkouts that reset the session in full (a request cut off, or no request known).
    pub full_resets: AtomicU64,
}

impl HostState {
    /// `fleet_budget` is the whole host's; this process takes `1 / routers` of it.
    pub fn new(fleet_budget: u32, routers: u32, wait: Duration, breaker: CircuitBreaker) -> Self {
        Self {
            fleet_budget,
            budget: ConnectionBudget::new(share_of_fleet(fleet_budget, routers), wait),
            breaker,
            pools: Mutex::new(HashMap::new()),
            quick_recycles: AtomicU64::new(0),
            full_resets: AtomicU64::new(0),
        }
    }

    pub fn register(&self, tenant: Uuid, pool: &TenantPool) {
        if let Ok(mut pools) = self.pools.lock() {
            pools.retain(|_, weak| weak.upgrade().is_some());
            pools.insert(tenant, pool.weak());
        }
    }

    /// Takes this process's share of the host's budget when `routers` serve it, and starts
    /// paying back what it holds above a smaller share.
    pub fn set_routers(&self, routers: u32) {
        self.budget
            .resize(share_of_fleet(self.fleet_budget, routers));
        self.settle();
    }

    /// Pays what the budget owes after it shrank: permits free now are forgotten, and as many
    /// idle connections are closed as are still owed (their permits are forgotten as they come
    /// back). Called on every resize and by the router's maintenance tick.
    pub fn settle(&self) {
        for _ in 0..self.budget.settle() {
            if !self.release_idle(Uuid::nil()) {
                break;
            }
        }
    }

    /// Closes one idle connection to make room for `requester`: the longest-idle one of another
    /// tenant, else one of the requester's own (left idle by a request that finished while this
    /// one was already making a new connection), if there is any.
    ///
    /// Idle connections are found by walking each pool's idle slots: a pool's `available` count
    /// is no guide, since requests waiting to create a connection count against it.
    /// Returns whether it found one.
    fn release_idle(&self, requester: Uuid) -> bool {
        let pools: Vec<(bool, TenantPool)> = match self.pools.lock() {
            Ok(pools) => pools
                .iter()
                .filter_map(|(tenant, weak)| Some((*tenant != requester, weak.upgrade()?)))
                .collect(),
            Err(_) => return false,
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
            return false;
        };
        let mut released = false;
        // The removed connection is dropped here, giving its permit back.
        pool.retain(|_, _| {
            let keep = released;
            released = true;
            keep
        });
        released
    }

    /// A budget permit for one new connection of `requester`'s pool: at once if one is free;
    /// otherwise idle connections of other tenants are closed to make room, and the request
    /// waits up to the budget's wait for one before giving up with `Capacity`.
    async fn acquire(&self, requester: Uuid) -> Result<OwnedSemaphorePermit, ConnectError> {
        let budget = &self.budget;
        if let Ok(permit) = budget.permits.clone().try_acquire_owned()
            && let Some(permit) = budget.keep(permit)
        {
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
                && let Some(permit) = budget.keep(permit)
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

/// `routers`' equal shares of a host's `fleet_budget`: this process's, at least one.
pub fn share_of_fleet(fleet_budget: u32, routers: u32) -> u32 {
    (fleet_budget / routers.max(1)).max(1)
}

/// The connections one router process may hold to one host.
#[derive(Debug)]
pub struct ConnectionBudget {
    /// The limit, and the permits owed: handed out under an older, larger limit and to be
    /// forgotten as they come back. The semaphore holds `limit + owed` permits in all.
    state: Mutex<BudgetState>,
    permits: Arc<Semaphore>,
    wait: Duration,
    /// Connection creations that had to wait for a permit.
    pub waits: AtomicU64,
    /// Connection creations refused after waiting `wait`.
    pub refusals: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct BudgetState {
    limit: u32,
    owed: u32,
}

impl ConnectionBudget {
    pub fn new(limit: u32, wait: Duration) -> Self {
        Self {
            state: Mutex::new(BudgetState { limit, owed: 0 }),
            permits: Arc::new(Semaphore::new(limit as usize)),
            wait,
            waits: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        // The state is two counters updated together; a panic cannot leave them half-written.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn limit(&self) -> u32 {
        self.state().limit
    }

    /// Connections currently held (above the limit while a shrink is being paid back).
    pub fn in_use(&self) -> u32 {
        let state = *self.state();
        let available = u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX);
        (state.limit + state.owed).saturating_sub(available)
    }

    /// Permits held above the limit after it shrank.
    pub fn owed(&self) -> u32 {
        self.state().owed
    }

    /// Sets the limit. Growing pays any debt first; shrinking forgets the free permits and
    /// owes the rest.
    pub fn resize(&self, limit: u32) {
        let mut state = self.state();
        if limit >= state.limit {
            let grow = limit - state.limit;
            let paid = grow.min(state.owed);
            state.owed -= paid;
            self.permits.add_permits((grow - paid) as usize);
        } else {
            state.owed += state.limit - limit;
        }
        state.limit = limit;
        Self::forget_free(&self.permits, &mut state);
    }

    /// Forgets free permits against the debt; returns what is still owed.
    fn settle(&self) -> u32 {
        let mut state = self.state();
        Self::forget_free(&self.permits, &mut state);
        state.owed
    }

    fn forget_free(permits: &Semaphore, state: &mut BudgetState) {
        if state.owed > 0 {
            let forgotten = permits.forget_permits(state.owed as usize);
            state.owed -= u32::try_from(forgotten).unwrap_or(state.owed);
        }
    }

    /// A permit just taken, unless the budget owes one: then it pays the debt instead.
    fn keep(&self, permit: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
        let mut state = self.state();
        if state.owed == 0 {
            return Some(permit);
        }
        state.owed -= 1;
        permit.forget();
        None
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
    /// The request this checkout serves, when the seam lent it to one (see
    /// [`BudgetedClient::serve`]): set once that request's handler ran to its end.
    served: Option<Arc<AtomicBool>>,
}

impl BudgetedClient {
    /// Lends this checkout to a request of the tenant app, whose handler sets `finished` when it
    /// ran to its end. Such a connection comes back clean by construction (the tenant app keeps
    /// no session state and ends every transaction it opens: `tidy` checks its SQL), so its next
    /// checkout skips the session reset. A request cut off half-way (its client gone), a
    /// checkout never lent, or one whose request had not finished yet is reset in full.
    pub fn serve(&mut self, finished: Arc<AtomicBool>) {
        self.served = Some(finished);
    }
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
            served: None,
        })
    }

    async fn recycle(
        &self,
        object: &mut BudgetedClient,
        metrics: &Metrics,
    ) -> RecycleResult<ConnectError> {
        let finished = object
            .served
            .take()
            .is_some_and(|finished| finished.load(Ordering::Acquire));
        if finished {
            // Nothing of the last request can be left on it: only check it is still open.
            self.host.quick_recycles.fetch_add(1, Ordering::Relaxed);
            return if object.client.is_closed() {
                Err(RecycleError::message("Connection closed"))
            } else {
                Ok(())
            };
        }
        self.host.full_resets.fetch_add(1, Ordering::Relaxed);
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
            2,
            1,
            Duration::from_millis(60),
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

    #[tokio::test]
    async fn a_shrunk_budget_hands_out_nothing_until_its_debt_is_paid() {
        let host = HostState::new(
            4,
            1,
            Duration::from_millis(60),
            CircuitBreaker::new(3, Duration::from_secs(1)),
        );
        let tenant = Uuid::new_v4();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(host.acquire(tenant).await.unwrap());
        }
        assert_eq!(host.budget.in_use(), 3);

        // A second router joins: this one's share is 2 of the host's 4, and it holds 3.
        host.set_routers(2);
        assert_eq!(host.budget.limit(), 2);
        assert_eq!(
            host.budget.owed(),
            1,
            "the free permit was forgotten, one is owed"
        );
        assert_eq!(host.budget.in_use(), 3);
        assert!(matches!(
            host.acquire(tenant).await,
            Err(ConnectError::Capacity)
        ));

        // The first permit given back pays the debt and is not handed out again.
        drop(held.pop());
        assert!(matches!(
            host.acquire(tenant).await,
            Err(ConnectError::Capacity)
        ));
        assert_eq!((host.budget.owed(), host.budget.in_use()), (0, 2));
        // The next one is.
        drop(held.pop());
        let again = host.acquire(tenant).await.unwrap();
        assert_eq!(host.budget.in_use(), 2);

        // The other router leaves: growing pays nothing owed and frees two more.
        host.set_routers(1);
        assert_eq!((host.budget.limit(), host.budget.in_use()), (4, 2));
        let _more = (
            host.acquire(tenant).await.unwrap(),
            host.acquire(tenant).await.unwrap(),
        );
        assert_eq!(host.budget.in_use(), 4);
        drop(again);
        assert_eq!(share_of_fleet(4, 8), 1, "never below one");
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
