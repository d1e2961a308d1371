//! Named fail points: a test (or an operator, through `SILO_FAILPOINTS`) arms a point such as
//! `after_database_created` to make provisioning fail, pause forever, or exit the process there,
//! so crash recovery can be shown deterministically at every step.
//!
//! Points are named `before_<step>` and `after_<step>` for every step in `steps::step`.
//! Unarmed points cost one atomic load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;
use uuid::Uuid;

/// What an armed point does when it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    /// The step fails with an error (and is retried like any failure).
    Error,
    /// The job stops there forever, as if the process froze; tests then kill the worker.
    Pause,
    /// The process exits at once with status 137, as if it were killed.
    Exit,
}

#[derive(Debug)]
struct Armed {
    name: String,
    tenant: Option<Uuid>,
    action: FailAction,
    reached: Arc<Notify>,
}

static ANY_ARMED: AtomicBool = AtomicBool::new(false);

fn registry() -> &'static Mutex<Vec<Armed>> {
    static REGISTRY: OnceLock<Mutex<Vec<Armed>>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut armed = Vec::new();
        // `SILO_FAILPOINTS=after_database_created=exit,before_migrated=error`
        if let Ok(spec) = std::env::var("SILO_FAILPOINTS") {
            for entry in spec.split(',').filter(|entry| !entry.trim().is_empty()) {
                let (name, action) = entry.split_once('=').unwrap_or((entry, "error"));
                let action = match action.trim() {
                    "pause" => FailAction::Pause,
                    "exit" => FailAction::Exit,
                    _ => FailAction::Error,
                };
                armed.push(Armed {
                    name: name.trim().to_owned(),
                    tenant: None,
                    action,
                    reached: Arc::new(Notify::new()),
                });
            }
        }
        if !armed.is_empty() {
            ANY_ARMED.store(true, Ordering::SeqCst);
        }
        Mutex::new(armed)
    })
}

/// A handle on an armed point: wait until a job reaches it.
#[derive(Debug, Clone)]
pub struct FailPoint {
    reached: Arc<Notify>,
}

impl FailPoint {
    /// Resolves once the point has fired.
    pub async fn reached(&self) {
        self.reached.notified().await;
    }
}

/// Arms `name` to fire once, for `tenant` only (or any tenant).
pub fn arm(name: &str, tenant: Option<Uuid>, action: FailAction) -> FailPoint {
    let reached = Arc::new(Notify::new());
    registry()
        .lock()
        .expect("the fail point registry is never poisoned")
        .push(Armed {
            name: name.to_owned(),
            tenant,
            action,
            reached: reached.clone(),
        });
    ANY_ARMED.store(true, Ordering::SeqCst);
    FailPoint { reached }
}

/// Called `before` and `after` each step; fires (once) the matching armed action.
pub(crate) async fn hit(when: &str, step: &str, tenant: Uuid) -> Result<(), FailPointError> {
    if !ANY_ARMED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let name = format!("{when}_{step}");
    let name = name.as_str();
    let fired = {
        let mut armed = registry()
            .lock()
            .expect("the fail point registry is never poisoned");
        let position = armed
            .iter()
            .position(|point| point.name == name && point.tenant.is_none_or(|id| id == tenant));
        position.map(|index| armed.remove(index))
    };
    let Some(point) = fired else {
        return Ok(());
    };
    tracing::warn!(failpoint = name, %tenant, action = ?point.action, "fail point reached");
    point.reached.notify_one();
    match point.action {
        FailAction::Error => Err(FailPointError(point.name)),
        FailAction::Pause => std::future::pending().await,
        FailAction::Exit => std::process::exit(137),
    }
}

/// The error an armed `error` point returns.
#[derive(Debug, thiserror::Error)]
#[error("fail point `{0}` fired")]
pub struct FailPointError(String);
