//! The `silo` binary's library: wiring only. It builds the control plane, the tenant router and
//! the provisioning workers from settings and runs them in one process (`silo dev`, `silo serve`,
//! `silo worker`) or runs an operator command (`silo keys …`, `silo hosts …`, `silo tenants …`).
//!
//! Boundary: no business logic lives here; every decision is made in the crates it wires.

pub mod application;
pub mod bootstrap;
pub mod cli;
pub mod commands;
pub mod dispatch;
pub mod hosts;
mod http_server;
pub mod imports;
pub mod logging;
pub mod migrator_cli;
pub mod openapi;
pub mod tenants;

pub use application::{Application, ApplicationOptions};
