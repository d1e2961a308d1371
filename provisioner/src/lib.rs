//! Provisioning workers: apalis jobs on the control-plane database that place a tenant on a
//! database host, create its role and database, migrate it, seed its admin and activate it.
//!
//! `offboarding` exports cancelled tenants with pg_dump and drops them after a grace period;
//! it also holds the on-demand `export` and `restore`. `mail` is the mail worker (SMTP or `.eml`
//! files).
//!
//! Invariant: every step is idempotent and recorded, so a worker killed at any point is resumed
//! by another (apalis re-enqueues a job whose worker stopped sending heartbeats) and converges.
//! Boundary: workers never serve end users; they talk to the router only through the
//! control-plane database.

pub mod credentials;
pub mod failpoints;
pub mod host_sql;
pub mod mail;
pub mod offboarding;
pub mod purge;
mod steps;
pub mod templates;
pub mod usage;
mod warm;
pub mod worker;

pub use warm::{forget_host, refill_host, remove_host, run_warm_pool};

pub use host_sql::ProvisionError;
pub use steps::{Provisioner, step};
pub use worker::run_worker;
