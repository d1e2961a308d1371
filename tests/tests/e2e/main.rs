//! End-to-end tests across the parts, against a real PostgreSQL cluster and real HTTP over
//! loopback. One test binary; each module covers one capability.

// Test helpers unwrap too: a panic with a backtrace is the clearest failure a test can give.
#![allow(clippy::unwrap_used)]

mod browser;
mod csp;
mod harness;
mod session;
mod smtp;
mod stripe_stand_in;
mod test_dns;

mod admin;
mod api_keys;
mod app_pages;
mod billing;
mod console;
mod domains;
mod drain;
mod edges;
mod hosts;
mod imports;
mod isolation;
mod landing;
mod mail;
mod migrator_cli;
mod offboarding;
mod openapi;
mod outside_transaction;
mod pages;
mod provisioning;
mod proxies;
mod rollbacks;
mod rollouts;
mod router;
mod rules;
mod sealing;
mod settings_limits;
mod settings_pages;
mod signup;
mod story;
mod systemd_units;
mod tenant_admin;
mod tenant_app;
mod tidy;
mod tls;
mod usage;
