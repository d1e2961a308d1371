//! The control plane: its database and everything that reads or writes it, the sealing of
//! secrets, settings and the embedded default PostgreSQL. The domain and the store; no HTTP
//! server code (the surfaces above it — `apex`, `admin`, the router — answer HTTP).
//!
//! Boundary: this crate depends on no other Silo crate; every other crate depends on it. The
//! router and the workers talk to each other only through its database and its [`model`]
//! types (the provisioner also uses the migrator as a library to migrate new databases).

pub mod access;
pub mod admins;
pub mod api_keys;
pub mod branding;
pub mod connect;
pub mod console;
pub mod dns;
pub mod domains;
pub mod embedded_postgres;
pub mod ended_sessions;
pub mod failed_tenants;
pub mod host_privileges;
pub mod hosts;
pub mod imports;
pub mod integrations;
pub mod invitations;
pub mod jobs;
pub mod limits;
pub mod mail;
pub mod model;
pub mod one_time_links;
pub mod passwords;
pub mod plans;
pub mod rollout_spec;
pub mod rollouts;
pub mod routers;
pub mod sealing;
pub mod settings;
pub mod signup;
pub mod store;
pub mod stripe;
pub mod subscriptions;
pub mod tenants;
pub mod usage;

pub use sealing::{Keyring, Purpose, Sealed};
pub use settings::Settings;
pub use store::Store;
