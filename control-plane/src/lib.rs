//! The control plane: its database and everything that reads or writes it, the sealing of
//! secrets, settings, the embedded default PostgreSQL, and the apex HTTP API.
//!
//! Boundary: this crate depends on no other Silo crate; the router, provisioner and migrator
//! depend on it, and talk to each other only through its database and its [`model`] types.

pub mod admins;
pub mod api_keys;
pub mod branding;
pub mod console;
pub mod domains;
pub mod embedded_postgres;
pub mod error;
pub mod http;
pub mod integrations;
pub mod model;
pub mod passwords;
pub mod plans;
pub mod rollouts;
pub mod sealing;
pub mod settings;
pub mod signup;
pub mod store;
pub mod stripe;
pub mod subscriptions;
pub mod usage;

pub use error::ApiError;
pub use sealing::{Keyring, Purpose, Sealed};
pub use settings::Settings;
pub use store::Store;
