//! Start-up shared by every command: find or start the control-plane database, load the master
//! keys, apply migrations and register the default database host.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use control_plane::embedded_postgres::{ClusterOptions, EmbeddedPostgres};
use control_plane::{Keyring, Settings, Store};
use secrecy::{ExposeSecret as _, SecretString};

/// The control-plane database name on the embedded cluster.
pub const CONTROL_PLANE_DATABASE: &str = "silo";
/// The database host name Silo registers for the server it starts or is pointed at.
pub const DEFAULT_HOST_NAME: &str = "local";
const DEFAULT_HOST_CAPACITY: i32 = 1_000;

/// Everything a command needs once start-up is done.
pub struct Bootstrapped {
    pub settings: Settings,
    pub store: Store,
    pub keyring: Arc<Keyring>,
    /// The embedded cluster, when this process uses one.
    pub embedded: Option<EmbeddedPostgres>,
}

impl Bootstrapped {
    /// Stops the embedded cluster if this process started it.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.store.pool().close().await;
        if let Some(cluster) = self.embedded.filter(EmbeddedPostgres::started_here) {
            tokio::task::spawn_blocking(move || cluster.stop())
                .await?
                .context("failed to stop the embedded PostgreSQL")?;
        }
        Ok(())
    }
}

/// Where the data dir keeps generated master keys when `SILO_MASTER_KEYS` is not set.
pub fn key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("master-keys")
}

/// Runs start-up. `say` receives lines meant for the person at the terminal.
pub async fn bootstrap(
    settings: Settings,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Bootstrapped> {
    let keyring = Arc::new(load_keyring(&settings, say)?);
    let (database_url, host_admin_url, embedded) = match &settings.database_url {
        Some(url) => (url.clone(), url.clone(), None),
        None => {
            let data_dir = settings.data_dir.clone();
            let cluster = tokio::task::spawn_blocking(move || {
                EmbeddedPostgres::start(&data_dir, ClusterOptions::default())
            })
            .await??;
            say(&format!(
                "Embedded PostgreSQL {} on 127.0.0.1:{} (data in {})",
                if cluster.started_here() {
                    "started"
                } else {
                    "already running"
                },
                cluster.port(),
                settings.data_dir.join("postgres").display()
            ));
            (
                cluster.superuser_url(CONTROL_PLANE_DATABASE),
                cluster.superuser_url("postgres"),
                Some(cluster),
            )
        }
    };
    let store = Store::connect(&database_url, 10)
        .await
        .context("cannot connect to the control-plane database")?
        .with_domain_claim_ttl(settings.domains.claim_ttl);
    store
        .migrate()
        .await
        .context("cannot apply the control-plane migrations")?;
    // A fresh control plane releases this build's newest tenant schema; later versions are
    // released only by completed rollouts.
    store
        .ensure_initial_release(tenant_schema::latest_version())
        .await?;
    // The server Silo starts or is pointed at is a database host too, unless hosts were
    // registered explicitly; the embedded one's URL is refreshed every start.
    if embedded.is_some() || store.hosts().await?.is_empty() {
        store
            .upsert_host(
                &keyring,
                DEFAULT_HOST_NAME,
                &host_admin_url,
                DEFAULT_HOST_CAPACITY,
                "system:bootstrap",
            )
            .await?;
        // Tenant roles must not reach this server's shared databases — the control plane's
        // own among them, with the routers' change channel. A server whose admin role may not
        // close them still starts (it may be an existing deployment), saying what to run.
        let control_plane = store.control_plane_identity().await?;
        if let Err(error) =
            control_plane::host_privileges::close_shared_databases(&host_admin_url, &control_plane)
                .await
        {
            say(&format!("warning: {error}"));
            tracing::warn!(%error, "the default host's shared databases stay open to PUBLIC");
        }
    }
    Ok(Bootstrapped {
        settings,
        store,
        keyring,
        embedded,
    })
}

/// `SILO_MASTER_KEYS` if set; otherwise the data dir's key file, generated on first use.
fn load_keyring(settings: &Settings, say: &(dyn Fn(&str) + Sync)) -> anyhow::Result<Keyring> {
    if let Some(spec) = &settings.master_keys {
        return Keyring::parse(spec).context("SILO_MASTER_KEYS is not valid");
    }
    let path = key_file(&settings.data_dir);
    if !path.exists() {
        fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("cannot create {}", settings.data_dir.display()))?;
        let entry = Keyring::generate_entry(&new_key_id());
        write_key_file(&path, &entry)?;
        say(&format!(
            "Generated a master key in {} (mode 0600). Set SILO_MASTER_KEYS in production.",
            path.display()
        ));
    }
    let spec = SecretString::from(
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    Keyring::parse(&spec).with_context(|| format!("{} is not a valid key file", path.display()))
}

/// Adds a fresh key, newest first, to the data dir's key file; returns its id.
pub fn generate_key(data_dir: &Path) -> anyhow::Result<String> {
    let path = key_file(data_dir);
    let existing = fs::read_to_string(&path).unwrap_or_default();
    let id = new_key_id();
    let entry = Keyring::generate_entry(&id);
    let combined = SecretString::from(format!("{}\n{}", entry.expose_secret(), existing));
    Keyring::parse(&combined).context("the key file would not be valid")?;
    write_key_file(&path, &combined)?;
    Ok(id)
}

fn write_key_file(path: &Path, contents: &SecretString) -> anyhow::Result<()> {
    let temporary = path.with_extension("new");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(contents.expose_secret().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    fs::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

fn new_key_id() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    format!(
        "k{seconds}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    )
}
