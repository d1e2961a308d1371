//! `silo hosts …`: register, list, drain, activate and remove database hosts. Every change is
//! audited as `cli:<login name>` by the store, in the same transaction as the change.

use anyhow::Context as _;
use control_plane::host_privileges::close_shared_databases;
use control_plane::sealing::Purpose;
use secrecy::SecretString;

use crate::bootstrap::Bootstrapped;
use crate::cli::{HostsCommand, actor};

/// Runs one `silo hosts` command against a started control plane.
pub async fn run(started: &Bootstrapped, command: HostsCommand) -> anyhow::Result<()> {
    match command {
        HostsCommand::Add {
            name,
            admin_url,
            capacity,
        } => {
            let capacity = i32::try_from(capacity).context("--capacity is too large")?;
            let admin_url = SecretString::from(admin_url);
            close_shared(started, &name, &admin_url).await?;
            let id = started
                .store
                .add_host(&started.keyring, &name, &admin_url, capacity, &actor())
                .await
                .with_context(|| format!("cannot add host `{name}`"))?;
            println!("Added database host `{name}` ({id}) with capacity {capacity}.");
            Ok(())
        }
        HostsCommand::Check { name } => {
            let host = host_named(started, &name).await?;
            let admin_url = started
                .keyring
                .open(Purpose::HostAdminUrl, host.id, &host.sealed_admin_url)
                .with_context(|| format!("cannot open host `{name}`'s admin URL"))?;
            close_shared(started, &name, &admin_url).await
        }
        HostsCommand::Drain { name } => {
            started
                .store
                .set_host_status(&name, "draining", &actor())
                .await
                .with_context(|| format!("cannot drain host `{name}`"))?;
            println!(
                "Host `{name}` is draining: it takes no new tenants and keeps serving its own."
            );
            Ok(())
        }
        HostsCommand::Activate { name } => {
            started
                .store
                .set_host_status(&name, "active", &actor())
                .await
                .with_context(|| format!("cannot activate host `{name}`"))?;
            println!("Host `{name}` is active and takes new tenants.");
            Ok(())
        }
        HostsCommand::Remove {
            name,
            forget: false,
        } => {
            let host = host_named(started, &name).await?;
            provisioner::remove_host(&started.store, &started.keyring, &host, &actor())
                .await
                .with_context(|| {
                    format!(
                        "cannot remove host `{name}` (if its server is gone for good, \
                         `silo hosts remove {name} --forget` removes the record alone)"
                    )
                })?;
            println!("Removed host `{name}`.");
            Ok(())
        }
        HostsCommand::Remove { name, forget: true } => {
            let host = host_named(started, &name).await?;
            let left_behind = provisioner::forget_host(&started.store, &host, &actor())
                .await
                .with_context(|| format!("cannot forget host `{name}`"))?;
            println!("Forgot host `{name}` without contacting its server.");
            if !left_behind.is_empty() {
                println!("Left on that server, should it come back:");
                for thing in &left_behind {
                    println!("  {thing}");
                }
            }
            Ok(())
        }
        HostsCommand::List { json } => {
            let hosts = started.store.hosts().await?;
            if json {
                let rows: Vec<_> = hosts
                    .iter()
                    .map(|host| {
                        serde_json::json!({"id": host.id, "name": host.name, "status": host.status,
                            "capacity": host.capacity, "tenants": host.tenant_count})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!(
                    "{:<20} {:<10} {:>8} {:>9}",
                    "NAME", "STATUS", "TENANTS", "CAPACITY"
                );
                for host in &hosts {
                    println!(
                        "{:<20} {:<10} {:>8} {:>9}",
                        host.name, host.status, host.tenant_count, host.capacity
                    );
                }
            }
            Ok(())
        }
    }
}

/// Revokes PUBLIC's access to the host's shared databases, or fails with the statements to run.
async fn close_shared(
    started: &Bootstrapped,
    name: &str,
    admin_url: &SecretString,
) -> anyhow::Result<()> {
    let control_plane = started.store.control_plane_identity().await?;
    let closed = close_shared_databases(admin_url, &control_plane)
        .await
        .with_context(|| format!("host `{name}` keeps tenant roles out of nothing yet"))?;
    println!(
        "Host `{name}`: PUBLIC may not connect to {} (tenant roles reach only their own databases).",
        closed.join(", ")
    );
    Ok(())
}

async fn host_named(
    started: &Bootstrapped,
    name: &str,
) -> anyhow::Result<control_plane::hosts::DatabaseHost> {
    started
        .store
        .host_by_name(name)
        .await?
        .with_context(|| format!("there is no host named `{name}`"))
}
