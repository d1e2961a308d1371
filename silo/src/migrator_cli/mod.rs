//! The `migrator` command line for SREs: fleet status and drift, plans, and rollouts (start,
//! watch, pause, resume, abort, retry), one tenant's history. It reads the same settings as
//! `silo`. Every command takes `--json`. Exit codes: 0 success, 1 error, 2 the rollout failed
//! (aborted, or finished with failed tenants) or the lint found an error-level risk, 3 the
//! rollout is paused.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use control_plane::Store;
use control_plane::rollouts::{RolloutRecord, RolloutState};
use migrator::MigrationSet;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::bootstrap::Bootstrapped;

mod lint;
mod rollout;
use lint::Linted;
use rollout::rollout_command;

/// migrator: roll tenant-schema migrations out across every tenant database, in stages.
///
/// Reads the same settings as `silo` (data dir, SILO_DATABASE_URL, SILO_MASTER_KEYS, …).
/// Exit codes: 0 success, 1 error, 2 the rollout failed (aborted, or finished with failed
/// tenants) or `lint` found an error-level risk, 3 the rollout is paused.
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
    /// Which tenants each stage of a rollout would take, which way it goes, whether it does
    /// anything, which migrations it could undo, and the lint findings of the migrations it
    /// would apply. Changes nothing.
    Plan {
        /// The schema version to plan for (default: the newest this build knows).
        #[arg(long)]
        to: Option<i32>,
        #[command(flatten)]
        stages: StagesArg,
        #[arg(long)]
        json: bool,
    },
    /// Check the pending migrations (above the oldest tenant's version) for changes that hurt a
    /// live database: locks, rewrites, renames and drops. Exit 2 on an error-level finding.
    Lint {
        /// Every migration this build knows, without connecting to any database (for CI).
        #[arg(long)]
        all: bool,
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
    /// When a stage passes its failure limit: `pause` for the operator, or `revert` — move the
    /// tenants this rollout already moved back to their version before it, and end it aborted.
    #[arg(long, value_enum, default_value = "pause", value_name = "pause|revert")]
    pub on_failure: OnFailureArg,
    /// Start although the lint found these error-level rules (comma-separated; every error
    /// rule found must be named). Recorded on the rollout and in its audit row.
    #[arg(long, value_delimiter = ',', value_name = "RULE,…")]
    pub accept_risk: Vec<String>,
    /// Start without asking (required when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
    #[arg(long)]
    pub json: bool,
}

/// What a stage that passes its failure limit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnFailureArg {
    /// Pause; fix and `retry`, or `abort`.
    Pause,
    /// Move every tenant the rollout moved back, then abort (needs revert scripts).
    Revert,
}

impl From<OnFailureArg> for control_plane::rollouts::OnFailure {
    fn from(value: OnFailureArg) -> Self {
        match value {
            OnFailureArg::Pause => Self::Pause,
            OnFailureArg::Revert => Self::Revert,
        }
    }
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
           "direction": rollout.direction, "on_failure": rollout.on_failure,
           "stages": rollout.stages, "current_stage": rollout.current_stage + 1,
           "pause_reason": rollout.pause_reason, "created_by": rollout.created_by,
           "accepted_risks": rollout.accepted_risks, "counts": counts})
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
        MigratorCommand::Plan { to, stages, json } => {
            validate_stages(&stages.stages)?;
            let target = checked_target(to, migrations)?;
            let plan = store.plan(&stages.stages).await?;
            let linted = Linted::pending(store, &started.settings, migrations, target).await?;
            let reach = migrator::reach::Reach::of(store, migrations, target).await?;
            if json {
                writeln!(
                    out,
                    "{}",
                    json!({"target_version": target, "stages": stages.stages, "tenants": plan,
                           "lint": linted.json(), "direction": reach.direction,
                           "does_nothing": reach.does_nothing(), "moves": reach.moves,
                           "migrations": reach.migrations,
                           "can_start": reach.check(control_plane::rollouts::OnFailure::Pause)
                               .map_err(|refusal| json!({"code": migrator::reach::RevertMissing::CODE,
                                                         "message": refusal.to_string()}))
                               .err()})
                )?;
            } else {
                write_reach(&reach, out)?;
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
                linted.write_text(out)?;
            }
            Ok(Exit::Success)
        }
        MigratorCommand::Lint { all, json } => {
            let to = migrations.latest();
            let from = if all {
                0
            } else {
                migrator::lint::fleet_floor(store).await?
            };
            lint_and_report(&started.settings, migrations, from, to, json, out)
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

/// Which way a rollout goes, whether it does anything, and what it could undo, in words.
fn write_reach(reach: &migrator::reach::Reach, out: &mut dyn Write) -> anyhow::Result<()> {
    use control_plane::rollouts::RolloutDirection;
    let way = match reach.direction {
        RolloutDirection::Forward => "forward",
        RolloutDirection::Back => "back (a rollback: revert scripts run, newest first)",
    };
    writeln!(
        out,
        "Direction: {way}; {} of {} tenants would move to version {}.",
        reach.moves, reach.tenants, reach.target
    )?;
    if reach.does_nothing() {
        writeln!(
            out,
            "This rollout does nothing: every tenant is already at version {}.",
            reach.target
        )?;
    }
    for migration in &reach.migrations {
        writeln!(
            out,
            "  V{}: {} {}",
            migration.version,
            if migration.available {
                "can be rolled back by"
            } else {
                "CANNOT be rolled back: no"
            },
            migration.file
        )?;
    }
    if let Err(refusal) = reach.check(control_plane::rollouts::OnFailure::Pause) {
        writeln!(
            out,
            "Cannot start ({}): {refusal}",
            migrator::reach::RevertMissing::CODE
        )?;
    }
    Ok(())
}

/// The target a rollout or plan names (default: the newest known), checked against the build.
fn checked_target(to: Option<i32>, migrations: &MigrationSet) -> anyhow::Result<i32> {
    let target = to.unwrap_or_else(|| migrations.latest());
    control_plane::rollout_spec::check_target(target, migrations.latest())
        .map_err(|error| anyhow::anyhow!("--to: {error}"))?;
    Ok(target)
}

/// Lints the migrations above `from` up to `to` and prints the findings.
fn lint_and_report(
    settings: &control_plane::Settings,
    migrations: &MigrationSet,
    from: i32,
    to: i32,
    json: bool,
    out: &mut dyn Write,
) -> anyhow::Result<Exit> {
    let linted = Linted::new(migrations, &lint::lint_config(settings)?, from, to);
    if json {
        writeln!(out, "{}", linted.json())?;
    } else {
        linted.write_text(out)?;
    }
    Ok(if linted.error_rules().is_empty() {
        Exit::Success
    } else {
        Exit::Failed
    })
}

/// Loads settings, starts up, runs the command and shuts down; returns the exit code.
pub async fn run(cli: MigratorCli) -> anyhow::Result<Exit> {
    let settings = control_plane::Settings::load(&cli.data_dir, cli.config.as_deref(), |name| {
        std::env::var(name).ok()
    })?;
    if let MigratorCommand::Lint { all: true, json } = cli.command {
        // Linting what the build knows needs no database: CI runs it before any deploy.
        let migrations = MigrationSet::embedded();
        let latest = migrations.latest();
        return lint_and_report(
            &settings,
            &migrations,
            0,
            latest,
            json,
            &mut std::io::stdout(),
        );
    }
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
