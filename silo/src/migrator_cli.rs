//! The `migrator` command line for SREs: fleet status and drift, plans, and rollouts (start,
//! watch, pause, resume, abort, retry), one tenant's history. It reads the same settings as
//! `silo`. Every command takes `--json`. Exit codes: 0 success, 1 error, 2 the rollout failed
//! (aborted, or finished with failed tenants), 3 the rollout is paused.

use std::io::{IsTerminal as _, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use control_plane::Store;
use control_plane::rollouts::{
    FailureLimit, RolloutAction, RolloutRecord, RolloutSpec, RolloutState,
};
use control_plane::store::StoreError;
use migrator::MigrationSet;
use migrator::rollout::Engine;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::bootstrap::Bootstrapped;

/// migrator: roll tenant-schema migrations out across every tenant database, in stages.
///
/// Reads the same settings as `silo` (data dir, SILO_DATABASE_URL, SILO_MASTER_KEYS, …).
/// Exit codes: 0 success, 1 error, 2 the rollout failed (aborted, or finished with failed
/// tenants), 3 the rollout is paused.
#[derive(Debug, Parser)]
#[command(name = "migrator", version, propagate_version = true)]
pub struct MigratorCli {
    /// Silo's data dir (the embedded cluster and generated keys), as for `silo`.
    #[arg(long, global = true, default_value = ".silo", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// A TOML settings file (default: <data-dir>/silo.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: MigratorCommand,
}

#[derive(Debug, Subcommand)]
pub enum MigratorCommand {
    /// The fleet: released version, tenants per schema version, the open rollout; with --drift,
    /// every tenant's history is compared with the known migrations.
    Status {
        /// Connect to every tenant database and report drift (slow on big fleets).
        #[arg(long)]
        drift: bool,
        #[arg(long)]
        json: bool,
    },
    /// Which tenants each stage of a rollout would take. Changes nothing.
    Plan {
        #[command(flatten)]
        stages: StagesArg,
        #[arg(long)]
        json: bool,
    },
    /// One tenant: its versions, its own migration history, drift, and its rollouts.
    Tenant {
        /// The tenant's subdomain.
        slug: String,
        #[arg(long)]
        json: bool,
    },
    /// Start and steer rollouts.
    #[command(subcommand)]
    Rollout(RolloutCommand),
}

#[derive(Debug, Args)]
pub struct StagesArg {
    /// Cumulative percentages of the fleet per stage, ascending, ending at 100.
    #[arg(long, default_value = "10,50,100", value_delimiter = ',')]
    pub stages: Vec<i32>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The schema version to roll out (default: the newest this build knows).
    #[arg(long)]
    pub to: Option<i32>,
    #[command(flatten)]
    pub stages: StagesArg,
    /// Tenants migrated at once per database host.
    #[arg(long, default_value_t = 4)]
    pub concurrency: i32,
    /// Failures per stage that pause the rollout: a count (`3`) or a share of the stage (`5%`).
    #[arg(long, default_value = "0")]
    pub max_failures: String,
    /// Wait this long after a stage before starting the next (e.g. `10m`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub bake: Duration,
    /// Pause after every stage until `migrator rollout resume` approves the next.
    #[arg(long)]
    pub manual_approval: bool,
    /// Read every tenant's own migration history instead of trusting the control plane's
    /// record of its version (slower: connects to tenants already at the target).
    #[arg(long)]
    pub verify: bool,
    /// Run the rollout in this process (and watch it) instead of leaving it to the workers.
    #[arg(long)]
    pub local: bool,
    /// Start without asking (required when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RolloutRef {
    /// The rollout's id (default: the newest rollout).
    pub id: Option<Uuid>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub reference: RolloutRef,
    /// Also drive the rollout in this process (e.g. to resume a `--local` run that was killed).
    #[arg(long)]
    pub local: bool,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Plan and start a rollout.
    Start(StartArgs),
    /// Follow a rollout until it completes, pauses or is aborted: progress per stage, failures
    /// as they happen.
    Watch(WatchArgs),
    /// Stop starting tenants (those under way finish).
    Pause(RolloutRef),
    /// Continue a paused rollout (also approves the next stage under --manual-approval).
    Resume(RolloutRef),
    /// End a rollout for good; tenants already migrated stay migrated.
    Abort(RolloutRef),
    /// Try the failed tenants again (after a fix) and continue.
    Retry(RolloutRef),
}

/// How a command ended, as the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Failed = 2,
    Paused = 3,
}

fn exit_for(rollout: &RolloutRecord, failed: i64) -> Exit {
    match rollout.state {
        RolloutState::Paused => Exit::Paused,
        RolloutState::Aborted => Exit::Failed,
        RolloutState::Completed if failed > 0 => Exit::Failed,
        _ => Exit::Success,
    }
}

fn validate_stages(stages: &[i32]) -> anyhow::Result<()> {
    control_plane::rollout_spec::check_stages(stages)
        .map_err(|error| anyhow::anyhow!("--stages: {error}"))
}

async fn resolve_rollout(store: &Store, id: Option<Uuid>) -> anyhow::Result<RolloutRecord> {
    match id {
        Some(id) => store
            .rollout(id)
            .await
            .with_context(|| format!("there is no rollout {id}")),
        None => store
            .rollouts()
            .await?
            .into_iter()
            .next()
            .context("there are no rollouts yet; start one with `migrator rollout start`"),
    }
}

fn rollout_json(rollout: &RolloutRecord, counts: &control_plane::rollouts::StageCounts) -> Value {
    json!({"id": rollout.id, "target_version": rollout.target_version, "state": rollout.state,
           "stages": rollout.stages, "current_stage": rollout.current_stage + 1,
           "pause_reason": rollout.pause_reason, "created_by": rollout.created_by,
           "counts": counts})
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    table
}

/// Runs one command against a started control plane, writing results to `out`.
pub async fn execute(
    started: &Bootstrapped,
    migrations: &MigrationSet,
    command: MigratorCommand,
    out: &mut dyn Write,
) -> anyhow::Result<Exit> {
    let store = &started.store;
    match command {
        MigratorCommand::Status { drift, json } => {
            let released = store.released_version().await?;
            let distribution = store.version_distribution().await?;
            let open = store
                .rollouts()
                .await?
                .into_iter()
                .find(|r| r.state.is_open());
            let drifted: Vec<Value> = if drift {
                migrator::drift::scan_fleet(store, &started.keyring, migrations)
                    .await?
                    .into_iter()
                    .map(|tenant| {
                        let report = match tenant.drift {
                            Ok(found) => json!(found),
                            Err(error) => json!({"error": error}),
                        };
                        json!({"slug": tenant.slug, "drift": report})
                    })
                    .collect()
            } else {
                Vec::new()
            };
            if json {
                let open = match &open {
                    Some(rollout) => Some(rollout_json(
                        rollout,
                        &store.stage_counts(rollout.id, None).await?,
                    )),
                    None => None,
                };
                let versions: Vec<Value> = distribution
                    .iter()
                    .map(|(version, tenants)| json!({"version": version, "tenants": tenants}))
                    .collect();
                writeln!(
                    out,
                    "{}",
                    json!({"released_version": released, "known_version": migrations.latest(),
                           "versions": versions, "open_rollout": open,
                           "drift": if drift { Some(drifted.clone()) } else { None }})
                )?;
            } else {
                writeln!(
                    out,
                    "Released version: {}   (this build knows up to {})",
                    released.map_or_else(|| "none".to_owned(), |v| v.to_string()),
                    migrations.latest()
                )?;
                let mut versions = table(&["schema version", "tenants"]);
                for (version, tenants) in &distribution {
                    versions.add_row(vec![
                        version.map_or_else(|| "-".to_owned(), |v| v.to_string()),
                        tenants.to_string(),
                    ]);
                }
                writeln!(out, "{versions}")?;
                match &open {
                    Some(rollout) => {
                        let counts = store.stage_counts(rollout.id, None).await?;
                        writeln!(
                            out,
                            "Open rollout {}: {} to v{}, stage {}/{}, {}/{} done, {} failed{}",
                            rollout.id,
                            rollout.state.as_str(),
                            rollout.target_version,
                            rollout.current_stage + 1,
                            rollout.stages.len(),
                            counts.done(),
                            counts.total,
                            counts.failed,
                            rollout
                                .pause_reason
                                .as_deref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        )?;
                    }
                    None => writeln!(out, "No rollout is open.")?,
                }
                if drift {
                    if drifted.is_empty() {
                        writeln!(
                            out,
                            "No drift: every tenant's history matches the known migrations."
                        )?;
                    } else {
                        for entry in &drifted {
                            writeln!(
                                out,
                                "DRIFT {}: {}",
                                entry["slug"].as_str().unwrap_or("?"),
                                entry["drift"]
                            )?;
                        }
                    }
                }
            }
            Ok(if drifted.is_empty() {
                Exit::Success
            } else {
                Exit::Failed
            })
        }
        MigratorCommand::Plan { stages, json } => {
            validate_stages(&stages.stages)?;
            let plan = store.plan(&stages.stages).await?;
            if json {
                writeln!(out, "{}", json!({"stages": stages.stages, "tenants": plan}))?;
            } else {
                for (index, percent) in stages.stages.iter().enumerate() {
                    let members: Vec<&str> = plan
                        .iter()
                        .filter(|t| usize::try_from(t.stage).ok() == Some(index))
                        .map(|t| t.slug.as_str())
                        .collect();
                    writeln!(
                        out,
                        "Stage {} (up to {percent}%): {} tenants: {}",
                        index + 1,
                        members.len(),
                        members.join(", ")
                    )?;
                }
            }
            Ok(Exit::Success)
        }
        MigratorCommand::Tenant { slug, json } => {
            let tenant = store
                .tenant_by_slug(&slug)
                .await?
                .with_context(|| format!("there is no tenant `{slug}`"))?;
            let mut history = Vec::new();
            let mut drift = None;
            if tenant.sealed_database_url.is_some() {
                let client = migrator::connect_tenant(
                    &started.keyring,
                    tenant.id,
                    tenant.sealed_database_url.as_ref(),
                )
                .await
                .map_err(anyhow::Error::msg)?;
                history = migrator::history(&client)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .map(|applied| json!(applied))
                    .collect();
                drift = Some(migrator::drift::detect(&client, migrations).await?);
            }
            let rollouts: Vec<Value> = store
                .tenant_rollouts(tenant.id)
                .await?
                .into_iter()
                .map(|(id, target, row)| {
                    json!({"rollout_id": id, "target_version": target, "status": row.status,
                        "from_version": row.from_version, "to_version": row.to_version,
                        "attempts": row.attempts, "error": row.error})
                })
                .collect();
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"slug": tenant.slug, "status": tenant.status, "schema_version": tenant.schema_version,
                           "history": history, "drift": drift, "rollouts": rollouts})
                )?;
            } else {
                writeln!(
                    out,
                    "{} ({}), schema version {}",
                    tenant.slug,
                    tenant.status.as_str(),
                    tenant
                        .schema_version
                        .map_or_else(|| "-".to_owned(), |v| v.to_string())
                )?;
                let mut applied = table(&["version", "name", "applied on"]);
                for entry in &history {
                    applied.add_row(vec![
                        entry["version"].to_string(),
                        entry["name"].as_str().unwrap_or_default().to_owned(),
                        entry["applied_on"].as_str().unwrap_or_default().to_owned(),
                    ]);
                }
                writeln!(out, "{applied}")?;
                if let Some(drift) = &drift {
                    if drift.is_empty() {
                        writeln!(out, "No drift.")?;
                    } else {
                        writeln!(out, "DRIFT: {}", json!(drift))?;
                    }
                }
                for rollout in &rollouts {
                    writeln!(out, "rollout {}", rollout)?;
                }
            }
            Ok(if drift.is_some_and(|d| !d.is_empty()) {
                Exit::Failed
            } else {
                Exit::Success
            })
        }
        MigratorCommand::Rollout(command) => {
            rollout_command(started, migrations, command, out).await
        }
    }
}

fn actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned())
    )
}

async fn rollout_command(
    started: &Bootstrapped,
    migrations: &MigrationSet,
    command: RolloutCommand,
    out: &mut dyn Write,
) -> anyhow::Result<Exit> {
    let store = &started.store;
    let (reference, action) = match command {
        RolloutCommand::Start(args) => return start(started, migrations, args, out).await,
        RolloutCommand::Watch(args) => {
            let rollout = resolve_rollout(store, args.reference.id).await?;
            let engine = args
                .local
                .then(|| Engine::new(store.clone(), started.keyring.clone(), migrations.clone()));
            return watch(store, rollout.id, engine, args.reference.json, out).await;
        }
        RolloutCommand::Pause(reference) => (reference, RolloutAction::Pause),
        RolloutCommand::Resume(reference) => (reference, RolloutAction::Resume),
        RolloutCommand::Abort(reference) => (reference, RolloutAction::Abort),
        RolloutCommand::Retry(reference) => (reference, RolloutAction::Retry),
    };
    let rollout = resolve_rollout(store, reference.id).await?;
    let retry_count = if action == RolloutAction::Retry {
        store
            .rollout_tenants(rollout.id, Some("failed"))
            .await?
            .len()
    } else {
        0
    };
    store
        .rollout_action(rollout.id, action, &actor())
        .await
        .map_err(|error| match error {
            StoreError::WrongStatus(state) => anyhow::anyhow!(
                "cannot {} rollout {}: it is {state}",
                action.as_str(),
                rollout.id
            ),
            other => other.into(),
        })?;
    if action == RolloutAction::Retry && !reference.json {
        writeln!(out, "Retrying {retry_count} failed tenants.")?;
    }
    let after = store.rollout(rollout.id).await?;
    let counts = store.stage_counts(after.id, None).await?;
    if reference.json {
        writeln!(out, "{}", rollout_json(&after, &counts))?;
    } else {
        writeln!(out, "Rollout {} is now {}.", after.id, after.state.as_str())?;
    }
    Ok(Exit::Success)
}

async fn start(
    started: &Bootstrapped,
    migrations: &MigrationSet,
    args: StartArgs,
    out: &mut dyn Write,
) -> anyhow::Result<Exit> {
    let store = &started.store;
    validate_stages(&args.stages.stages)?;
    let failure_limit: FailureLimit = args
        .max_failures
        .parse()
        .map_err(|error| anyhow::anyhow!("--max-failures: {error}"))?;
    control_plane::rollout_spec::check_concurrency(args.concurrency)
        .map_err(|error| anyhow::anyhow!("--concurrency: {error}"))?;
    let target = args.to.unwrap_or_else(|| migrations.latest());
    control_plane::rollout_spec::check_target(target, migrations.latest())
        .map_err(|error| anyhow::anyhow!("--to: {error}"))?;
    let plan = store.plan(&args.stages.stages).await?;
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!("starting a rollout needs confirmation: pass --yes when not at a terminal");
        }
        eprintln!(
            "Roll out schema version {target} to {} tenants in stages {:?}? [y/N]",
            plan.len(),
            args.stages.stages
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("not confirmed; nothing was started");
        }
    }
    let spec = RolloutSpec {
        target_version: target,
        stages: args.stages.stages.clone(),
        concurrency_per_host: args.concurrency,
        failure_limit,
        bake: args.bake,
        manual_approval: args.manual_approval,
        verify: args.verify,
        created_by: actor(),
    };
    let id = store.create_rollout(&spec).await?;
    store
        .audit(
            &actor(),
            "rollout.start",
            None,
            json!({"rollout": id, "target_version": target, "stages": spec.stages}),
        )
        .await?;
    if !args.json {
        writeln!(
            out,
            "Started rollout {id} to schema version {target} over {} tenants.",
            plan.len()
        )?;
    }
    if !args.local {
        if args.json {
            let rollout = store.rollout(id).await?;
            writeln!(
                out,
                "{}",
                rollout_json(&rollout, &store.stage_counts(id, None).await?)
            )?;
        } else {
            writeln!(
                out,
                "The workers run it; follow it with `migrator rollout watch {id}`."
            )?;
        }
        return Ok(Exit::Success);
    }
    let engine = Engine::new(store.clone(), started.keyring.clone(), migrations.clone());
    watch(store, id, Some(engine), args.json, out).await
}

/// Follows a rollout until it is no longer running, driving it too when given an engine.
async fn watch(
    store: &Store,
    id: Uuid,
    engine: Option<Engine>,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Exit> {
    let driver = engine.map(|engine| {
        tokio::spawn(async move {
            loop {
                match engine.drive_if_free(id).await {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        })
    });
    let rollout = store.rollout(id).await?;
    let bars = indicatif::MultiProgress::new();
    let style =
        indicatif::ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    let stage_bars: Vec<indicatif::ProgressBar> = rollout
        .stages
        .iter()
        .enumerate()
        .map(|(index, percent)| {
            let bar = bars.add(indicatif::ProgressBar::new(0));
            bar.set_style(style.clone());
            bar.set_prefix(format!("stage {} {percent}%", index + 1));
            bar
        })
        .collect();
    let mut reported = std::collections::HashSet::new();
    let final_state = loop {
        let rollout = store.rollout(id).await?;
        for (index, bar) in stage_bars.iter().enumerate() {
            let counts = store.stage_counts(id, i32::try_from(index).ok()).await?;
            bar.set_length(u64::try_from(counts.total).unwrap_or(0));
            bar.set_position(u64::try_from(counts.done()).unwrap_or(0));
            bar.set_message(format!("{} failed", counts.failed));
        }
        for failed in store.rollout_tenants(id, Some("failed")).await? {
            if reported.insert((failed.tenant_id, failed.attempts)) && !json {
                bars.suspend(|| {
                    let _ = writeln!(
                        out,
                        "FAILED {} (stage {}, attempt {}): {}",
                        failed.slug,
                        failed.stage + 1,
                        failed.attempts,
                        failed.error.as_deref().unwrap_or("unknown error")
                    );
                });
            }
        }
        if rollout.state != RolloutState::Running && rollout.state != RolloutState::Pending {
            break rollout;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for bar in &stage_bars {
        bar.finish();
    }
    if let Some(driver) = driver {
        let _ = driver.await;
    }
    let counts = store.stage_counts(id, None).await?;
    if json {
        writeln!(out, "{}", rollout_json(&final_state, &counts))?;
    } else {
        writeln!(
            out,
            "Rollout {} {}: {} succeeded, {} skipped, {} failed of {}{}",
            final_state.id,
            final_state.state.as_str(),
            counts.succeeded,
            counts.skipped,
            counts.failed,
            counts.total,
            final_state
                .pause_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )?;
    }
    Ok(exit_for(&final_state, counts.failed))
}

/// Loads settings, starts up, runs the command and shuts down; returns the exit code.
pub async fn run(cli: MigratorCli) -> anyhow::Result<Exit> {
    let settings = control_plane::Settings::load(&cli.data_dir, cli.config.as_deref(), |name| {
        std::env::var(name).ok()
    })?;
    let started = crate::bootstrap::bootstrap(settings, &|line| eprintln!("{line}")).await?;
    let mut stdout = std::io::stdout();
    let result = execute(
        &started,
        &MigrationSet::embedded(),
        cli.command,
        &mut stdout,
    )
    .await;
    started.shutdown().await?;
    result
}
