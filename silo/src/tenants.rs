//! `silo tenants …`: the operator's view of tenants and their offboarding and backups.

use std::io::IsTerminal as _;

use anyhow::Context as _;
use control_plane::subscriptions::{Action, Subscription, TrialExtension};
use control_plane::tenants::TenantRecord;

use crate::bootstrap::Bootstrapped;
use crate::cli::TenantsCommand;

use crate::cli::actor;

async fn find(started: &Bootstrapped, slug: &str) -> anyhow::Result<TenantRecord> {
    started
        .store
        .tenant_by_slug(slug)
        .await?
        .with_context(|| format!("there is no tenant `{slug}` (see `silo tenants list`)"))
}

/// Asks the person at the terminal to type the slug; refuses without a terminal unless `--yes`.
fn confirm(yes: bool, slug: &str, what: &str) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "{what}: pass --yes to confirm when not running at a terminal"
    );
    eprintln!("{what}. Type the subdomain `{slug}` to confirm:");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    anyhow::ensure!(answer.trim() == slug, "not confirmed; nothing was changed");
    Ok(())
}

fn print_subscription(slug: &str, subscription: &Subscription) {
    let when = |at: Option<chrono::DateTime<chrono::Utc>>| {
        at.map_or_else(
            || "-".to_owned(),
            |at| at.format("%Y-%m-%d %H:%M").to_string(),
        )
    };
    println!(
        "`{slug}`: {} (trial ends {}, period ends {}, grace ends {}, cancels {})",
        subscription.status.as_str(),
        when(subscription.trial_ends_at),
        when(subscription.current_period_end),
        when(subscription.grace_ends_at),
        when(subscription.cancel_at),
    );
}

fn report_subscription(slug: &str, subscription: &Subscription, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"slug": slug, "subscription": subscription})
        );
    } else {
        print_subscription(slug, subscription);
    }
}

fn print_purge_report(report: &[provisioner::purge::FailedTenant], dry_run: bool, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({"dry_run": dry_run, "tenants": report})
        );
        return;
    }
    if report.is_empty() {
        println!("No tenant's provisioning has failed; nothing to purge.");
    }
    for tenant in report {
        let place = match (&tenant.host, &tenant.database) {
            (Some(host), Some(database)) => format!("database {database} on host {host}"),
            _ => "never placed on a host".to_owned(),
        };
        let done = match (&tenant.error, dry_run, tenant.purged) {
            (Some(error), _, _) => format!("NOT purged: {error}"),
            (None, true, _) => "would be purged".to_owned(),
            (None, false, true) => "purged; the subdomain is free".to_owned(),
            (None, false, false) => "left alone: no longer failed".to_owned(),
        };
        println!("`{}` ({place}): {done}", tenant.slug);
    }
}

pub async fn run(started: &Bootstrapped, command: TenantsCommand) -> anyhow::Result<()> {
    let (store, keyring) = (&started.store, &started.keyring);
    match command {
        TenantsCommand::List { json } => {
            let tenants = store.tenants().await?;
            let hosts = store.hosts().await?;
            let host_name = |tenant: &TenantRecord| {
                tenant
                    .host_id
                    .and_then(|id| hosts.iter().find(|host| host.id == id))
                    .map_or("-", |host| host.name.as_str())
                    .to_owned()
            };
            if json {
                let rows: Vec<_> = tenants
                    .iter()
                    .map(|tenant| {
                        serde_json::json!({"id": tenant.id, "slug": tenant.slug,
                            "name": tenant.display_name, "status": tenant.status,
                            "host": tenant.host_id.map(|_| host_name(tenant)),
                            "schema_version": tenant.schema_version})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                println!(
                    "{:<30} {:<14} {:<20} {:>7}",
                    "SUBDOMAIN", "STATUS", "HOST", "SCHEMA"
                );
                for tenant in &tenants {
                    println!(
                        "{:<30} {:<14} {:<20} {:>7}",
                        tenant.slug,
                        tenant.status.as_str(),
                        host_name(tenant),
                        tenant
                            .schema_version
                            .map_or_else(|| "-".to_owned(), |version| version.to_string())
                    );
                }
            }
        }
        TenantsCommand::Cancel {
            slug,
            grace,
            yes,
            json,
        } => {
            let tenant = find(started, &slug).await?;
            let grace = grace.unwrap_or(started.settings.offboarding.grace);
            confirm(
                yes,
                &slug,
                &format!(
                    "Cancelling `{slug}` stops serving it now and drops its database in {}",
                    humantime::format_duration(grace)
                ),
            )?;
            store
                .cancel_tenant(tenant.id, grace, &actor())
                .await
                .with_context(|| format!("cannot cancel `{slug}`"))?;
            let export_dir = started.settings.export_dir();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"tenant_id": tenant.id, "slug": slug, "status": "cancelled",
                        "grace_seconds": grace.as_secs(), "export_dir": export_dir})
                );
            } else {
                println!(
                    "Cancelled `{slug}`: no longer served. A worker exports it to {} and drops its database and role after {}.",
                    export_dir.display(),
                    humantime::format_duration(grace)
                );
            }
        }
        TenantsCommand::Subscription { slug, json } => {
            let tenant = find(started, &slug).await?;
            let subscription = store.subscription(tenant.id).await?;
            let transitions = store.subscription_transitions(tenant.id).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"slug": slug, "subscription": subscription, "transitions": transitions})
                );
            } else {
                print_subscription(&slug, &subscription);
                for transition in &transitions {
                    println!(
                        "  {}  {} → {}  {} ({})",
                        transition.at.format("%Y-%m-%d %H:%M:%S"),
                        transition.from_status.as_deref().unwrap_or("-"),
                        transition.to_status,
                        transition.reason,
                        transition.actor
                    );
                }
            }
        }
        TenantsCommand::Suspend { slug, yes, json } => {
            let tenant = find(started, &slug).await?;
            confirm(
                yes,
                &slug,
                &format!("Suspending `{slug}` stops serving it now (its data is kept)"),
            )?;
            let subscription = store
                .change_subscription(
                    tenant.id,
                    Action::Suspend,
                    &actor(),
                    &started.settings.lifecycle(),
                )
                .await
                .with_context(|| format!("cannot suspend `{slug}`"))?;
            report_subscription(&slug, &subscription, json);
        }
        TenantsCommand::Reactivate { slug, json } => {
            let tenant = find(started, &slug).await?;
            let subscription = store
                .change_subscription(
                    tenant.id,
                    Action::Reactivate,
                    &actor(),
                    &started.settings.lifecycle(),
                )
                .await
                .with_context(|| format!("cannot reactivate `{slug}`"))?;
            report_subscription(&slug, &subscription, json);
        }
        TenantsCommand::ExtendTrial { slug, by, json } => {
            let tenant = find(started, &slug).await?;
            let by = chrono::Duration::from_std(by).context("that duration is too long")?;
            let subscription = store
                .extend_trial(
                    tenant.id,
                    TrialExtension::By(by),
                    &actor(),
                    &started.settings.lifecycle(),
                )
                .await
                .with_context(|| format!("cannot extend the trial of `{slug}`"))?;
            report_subscription(&slug, &subscription, json);
        }
        TenantsCommand::PurgeFailed { dry_run, json } => {
            let report = provisioner::purge::purge_failed(store, keyring, dry_run, &actor())
                .await
                .context("cannot list the failed tenants")?;
            print_purge_report(&report, dry_run, json);
            let stuck = report
                .iter()
                .filter(|tenant| tenant.error.is_some())
                .count();
            anyhow::ensure!(
                stuck == 0,
                "{stuck} failed tenant(s) could not be purged; they keep their subdomains"
            );
        }
        TenantsCommand::RotateCredentials { slug, json } => {
            let tenant = find(started, &slug).await?;
            provisioner::credentials::rotate_credentials(store, keyring, tenant.id, &actor())
                .await
                .with_context(|| format!("cannot rotate the credentials of `{slug}`"))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"tenant_id": tenant.id, "slug": slug, "rotated": true})
                );
            } else {
                println!("Rotated the database credentials of `{slug}`.");
            }
        }
        TenantsCommand::Export { slug, output, json } => {
            let tenant = find(started, &slug).await?;
            let export = provisioner::offboarding::export(
                store,
                keyring,
                &tenant,
                "on_demand",
                &started.settings.export_dir(),
                output.as_deref(),
            )
            .await
            .with_context(|| format!("cannot export `{slug}`"))?;
            store
                .audit(
                    &actor(),
                    "tenant.export",
                    Some(tenant.id),
                    serde_json::json!({"file": export.path, "bytes": export.bytes}),
                )
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"tenant_id": tenant.id, "slug": slug, "file": export.path,
                        "bytes": export.bytes, "schema_version": export.schema_version})
                );
            } else {
                println!(
                    "Exported `{slug}` to {} ({} bytes).",
                    export.path, export.bytes
                );
            }
        }
        TenantsCommand::Restore {
            slug,
            file,
            yes,
            json,
        } => {
            let tenant = find(started, &slug).await?;
            anyhow::ensure!(file.is_file(), "{} is not a file", file.display());
            confirm(
                yes,
                &slug,
                &format!(
                    "Restoring replaces all of `{slug}`'s data with {}",
                    file.display()
                ),
            )?;
            let version =
                provisioner::offboarding::restore(store, keyring, &tenant, &file, &actor())
                    .await
                    .with_context(|| format!("cannot restore `{slug}`"))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"tenant_id": tenant.id, "slug": slug, "schema_version": version})
                );
            } else {
                println!(
                    "Restored `{slug}` from {} (schema version {version}).",
                    file.display()
                );
            }
        }
    }
    Ok(())
}
