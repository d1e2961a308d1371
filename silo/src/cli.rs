//! The `silo` command line. Every flag has a doc line, so `--help` is the manual.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Silo: a control plane for database-per-tenant SaaS.
///
/// Settings come from defaults, then `<data-dir>/silo.toml` (or --config), then SILO_*
/// environment variables (SILO_DATABASE_URL, SILO_MASTER_KEYS, SILO_BASE_DOMAIN, SILO_HTTP_ADDR),
/// then flags. Every command reads the same settings, so an operator command run beside
/// `silo dev` with the same --data-dir finds the same database and keys.
#[derive(Debug, Parser)]
#[command(name = "silo", version, propagate_version = true)]
pub struct Cli {
    /// Folder for Silo's local state: the embedded PostgreSQL cluster and generated master keys.
    #[arg(long, global = true, default_value = ".silo", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// A TOML settings file (default: <data-dir>/silo.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process: control plane, router and workers, on one port. Uses an
    /// embedded PostgreSQL in the data dir unless SILO_DATABASE_URL is set.
    Dev(DevArgs),
    /// Run the HTTP processes (control plane and tenant router) without workers.
    Serve(ServeArgs),
    /// Run provisioning workers only; run as many as needed.
    Worker(WorkerArgs),
    /// Manage the master keys that seal connection strings.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage the PostgreSQL servers tenant databases live on.
    #[command(subcommand)]
    Hosts(HostsCommand),
    /// List, cancel, back up and restore tenants.
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Manage super-admins (who log in at /admin and use /api/v1/admin).
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a super-admin. Prints the TOTP secret (and an otpauth:// URL for a QR code) once:
    /// add it to an authenticator app; logins need the password and the app's current code.
    Create {
        /// The admin's email, used to log in.
        #[arg(long)]
        email: String,
        /// The password (at least 12 characters); read from SILO_ADMIN_PASSWORD, else asked for
        /// at the terminal without echo.
        #[arg(long, env = "SILO_ADMIN_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// List tenants with their status, host and schema version.
    List {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a tenant: it stops being served at once (410 on its subdomain), a worker exports it
    /// with pg_dump into the export folder, and after the grace period its database and role are
    /// dropped and it ends `deprovisioned`. The export and the audit trail remain.
    Cancel {
        /// The tenant's subdomain.
        slug: String,
        /// How long to keep its database before dropping it, e.g. `30days`, `12h`, `0s`
        /// (default: the `offboarding.grace` setting).
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        grace: Option<std::time::Duration>,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Clean up tenants whose provisioning failed: drop the role Silo made for each (it carries
    /// Silo's marker) and the database that role owns, if any (safe to run again), then remove
    /// its record, so its subdomain is free for a new signup. A role or database of the name
    /// that Silo did not make is left alone and that tenant is not purged. Audited. Exits
    /// non-zero if any could not be purged (its host unreachable, say): that one keeps its
    /// record and subdomain.
    PurgeFailed {
        /// Only list the failed tenants that would be purged; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a tenant's subscription (trial, active, past_due, suspended, cancelled), its dates
    /// and every recorded transition.
    Subscription {
        /// The tenant's subdomain.
        slug: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Suspend a tenant's subscription: its subdomain answers 403 `tenant_suspended` at once;
    /// nothing is deleted. Undo with `reactivate`.
    Suspend {
        /// The tenant's subdomain.
        slug: String,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Reactivate a suspended subscription: served again at once, in the state it was
    /// suspended from (a trial stays a trial while its end is ahead, else it is past due).
    Reactivate {
        /// The tenant's subdomain.
        slug: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Extend a tenant's trial by a duration (from its end, or from now if it lapsed — which
    /// also serves a tenant that was past due or suspended after its trial).
    ExtendTrial {
        /// The tenant's subdomain.
        slug: String,
        /// How much longer, e.g. `7days`.
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        by: std::time::Duration,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a tenant's database role a new random password (sealed and stored, then set on the
    /// server). Routers switch to it at once; connections already open keep working until they
    /// close. If interrupted, run it again.
    RotateCredentials {
        /// The tenant's subdomain.
        slug: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Back up a tenant's database now (pg_dump custom format), into the export folder or FILE.
    Export {
        /// The tenant's subdomain.
        slug: String,
        /// Write the archive here instead of the export folder.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Replace a tenant's data with a backup made by `silo tenants export`. The archive is
    /// restored into a new database first and swapped in only if that succeeds, so a bad file
    /// changes nothing. Open connections to the tenant's database are ended.
    Restore {
        /// The tenant's subdomain.
        slug: String,
        /// A pg_dump custom-format archive.
        file: PathBuf,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on for HTTP (overrides SILO_HTTP_ADDR).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

#[derive(Debug, Args, Default)]
pub struct WorkerArgs {
    /// Keep N databases per host pre-created from the template, so a signup is served in tens of
    /// milliseconds (0 turns the warm pool off).
    #[arg(long, value_name = "N")]
    pub warm_pool: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Re-seal every tenant connection string and host admin URL under the newest key. Safe to
    /// interrupt and run again.
    Rotate {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a fresh key, newest first, to the data dir's key file (when SILO_MASTER_KEYS is not
    /// used). Run `silo keys rotate` afterwards. Prints the new key's id, never the key.
    Generate,
}

#[derive(Debug, Subcommand)]
pub enum HostsCommand {
    /// Register a PostgreSQL server for tenant databases. Its admin URL is sealed at once.
    Add {
        /// A short name: lowercase letters, digits, `-` or `_`.
        #[arg(long)]
        name: String,
        /// A superuser (or CREATEROLE + CREATEDB) URL; read from the environment variable
        /// SILO_HOST_ADMIN_URL when omitted, so it stays out of shell history.
        #[arg(long, env = "SILO_HOST_ADMIN_URL", hide_env_values = true)]
        admin_url: String,
        /// How many tenants this host may hold.
        #[arg(long)]
        capacity: u32,
    },
    /// Keep tenant roles out of a host's shared databases: revoke PUBLIC's CONNECT and TEMPORARY
    /// on `postgres`, the admin URL's database and the control-plane database if it is there
    /// (as `hosts add` does), or print the statements to run as their owner.
    Check {
        /// The host's name.
        name: String,
    },
    /// Stop placing new tenants on a host; its tenants keep being served.
    Drain {
        /// The host's name.
        name: String,
    },
    /// Let a drained host take new tenants again.
    Activate {
        /// The host's name.
        name: String,
    },
    /// Remove a host that holds no tenants, dropping its warm-pool and template databases.
    Remove {
        /// The host's name.
        name: String,
        /// The server is gone for good: remove the record without contacting it, and list the
        /// warm-pool and template databases (and roles) left on it, to drop by hand should it
        /// come back. Still refused while tenants live there.
        #[arg(long)]
        forget: bool,
    },
    /// List database hosts with their load.
    List {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The audit log's name for whoever runs an operator command: `cli:<login name>`.
pub fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())
    )
}
