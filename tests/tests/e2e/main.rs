//! End-to-end tests across the parts, against a real PostgreSQL cluster and real HTTP over
//! loopback. One test binary; each module covers one capability.

// Test helpers unwrap too: a panic with a backtrace is the clearest failure a test can give.
#![allow(clippy::unwrap_used)]

mod browser;
mod harness;
mod session;

mod admin;
mod api_keys;
mod app_pages;
mod billing;
mod console;
mod edges;
mod hosts;
mod isolation;
mod landing;
mod migrator_cli;
mod offboarding;
mod openapi;
mod pages;
mod provisioning;
mod proxies;
mod rollouts;
mod router;
mod sealing;
mod signup;
mod tenant_admin;
mod tenant_app;
mod tidy;
mod tls;
mod usage;
