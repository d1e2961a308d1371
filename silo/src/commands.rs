//! One function per command: load settings, start up, do the thing, shut down.

use std::sync::Arc;

use anyhow::Context as _;
use control_plane::Settings;
use secrecy::{ExposeSecret as _, SecretString};

use crate::bootstrap::{Bootstrapped, bootstrap, generate_key};
use crate::cli::{AdminCommand, Cli, Command, KeysCommand, ServeArgs, WorkerArgs};
use crate::{Application, ApplicationOptions};

fn say(line: &str) {
    eprintln!("{line}");
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&cli.data_dir, cli.config.as_deref(), |name| {
        std::env::var(name).ok()
    })?;
    match cli.command {
        Command::Dev(args) => serve(settings, args.serve, args.worker, true, true).await,
        Command::Serve(args) => serve(settings, args, WorkerArgs::default(), true, false).await,
        Command::Worker(worker) => {
            serve(settings, ServeArgs { http: None }, worker, false, true).await
        }
        Command::Keys(KeysCommand::Generate) => {
            if settings.master_keys.is_some() {
                anyhow::bail!(
                    "SILO_MASTER_KEYS is set, so the key file is not used: add a new key at the front of SILO_MASTER_KEYS instead"
                );
            }
            let id = generate_key(&settings.data_dir)?;
            println!(
                "Added master key `{id}` as the newest key. Run `silo keys rotate` to re-seal existing secrets."
            );
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate { json }) => {
            let started = bootstrap(settings, &say).await?;
            let report = started.store.reseal_all(&started.keyring).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"key_id": started.keyring.newest_key_id(), "resealed": report})
                );
            } else {
                println!(
                    "Re-sealed {} tenant connection strings, {} host admin URLs, {} warm-pool URLs, {} admin TOTP secrets and {} integration credentials under key `{}`.",
                    report.tenants,
                    report.hosts,
                    report.warm_databases,
                    report.admin_totp_secrets,
                    report.integrations,
                    started.keyring.newest_key_id()
                );
            }
            started.shutdown().await
        }
        Command::Hosts(command) => {
            let started = bootstrap(settings, &say).await?;
            let result = crate::hosts::run(&started, command).await;
            started.shutdown().await?;
            result
        }
        Command::Admin(AdminCommand::Create {
            email,
            password,
            json,
        }) => {
            let password = match password {
                Some(password) => password,
                None => rpassword::prompt_password("Password for the new super-admin: ")
                    .context("cannot read the password; set SILO_ADMIN_PASSWORD instead")?,
            };
            let started = bootstrap(settings, &say).await?;
            let result = admin::create_admin(
                &started.store,
                &started.keyring,
                &email,
                SecretString::from(password),
            )
            .await;
            started.shutdown().await?;
            let enrollment = result.with_context(|| format!("cannot create admin `{email}`"))?;
            // Shown once, on purpose: the admin needs it for the authenticator app.
            let (secret, url) = (
                enrollment.totp_secret.expose_secret(),
                enrollment.otpauth_url.expose_secret(),
            );
            if json {
                println!(
                    "{}",
                    serde_json::json!({"admin_id": enrollment.admin_id, "email": email,
                        "totp_secret": secret, "otpauth_url": url})
                );
            } else {
                println!("Created super-admin `{email}`.");
                println!(
                    "Add this TOTP secret to an authenticator app now; it is not shown again:"
                );
                println!("  secret: {secret}");
                println!("  url:    {url}");
            }
            Ok(())
        }
        Command::Tenants(command) => {
            let started = bootstrap(settings, &say).await?;
            let result = crate::tenants::run(&started, command).await;
            started.shutdown().await?;
            result
        }
    }
}

async fn serve(
    mut settings: Settings,
    args: ServeArgs,
    worker: WorkerArgs,
    http: bool,
    workers: bool,
) -> anyhow::Result<()> {
    if let Some(address) = args.http {
        settings.http_addr = address;
    }
    if let Some(warm_pool) = worker.warm_pool {
        settings.provisioning.warm_pool = warm_pool;
    }
    let started: Bootstrapped = bootstrap(settings, &say).await?;
    let application = Application::build(ApplicationOptions {
        settings: started.settings.clone(),
        store: started.store.clone(),
        keyring: Arc::clone(&started.keyring),
        serve_http: http,
        run_workers: workers,
        migrations: migrator::MigrationSet::embedded(),
    })
    .await?;
    if let Some(address) = application.address() {
        let base = &started.settings.base_domain;
        let port = address.port();
        say("Silo is ready.");
        say(&format!("  Sign up:        http://{base}:{port}/"));
        say(&format!("  Health:         http://{base}:{port}/healthz"));
        say(&format!(
            "  Tenants answer: http://<subdomain>.{base}:{port}/api/v1/health"
        ));
        if base == "localhost" {
            say(
                "  (*.localhost resolves to 127.0.0.1 in browsers; for curl add --resolve <subdomain>.localhost:PORT:127.0.0.1)",
            );
        }
    } else {
        say("Silo worker is running.");
    }
    say("Press Ctrl-C to stop.");
    let result = application.run_until(shutdown_signal()).await;
    say("Stopping…");
    let stopped = started.shutdown().await;
    result.and(stopped)
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a signal handler can be installed at start-up");
    tokio::select! {
        _ = interrupt => {},
        _ = terminate.recv() => {},
    }
}
