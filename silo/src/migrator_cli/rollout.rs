//! `migrator rollout …`: start (with its confirmation and plan), watch (progress bars or JSON
//! lines), pause, resume, abort and retry.

use std::io::{IsTerminal as _, Write};
use std::time::Duration;

use anyhow::bail;
use control_plane::Store;
use control_plane::rollouts::{FailureLimit, RolloutAction, RolloutSpec, RolloutState};
use control_plane::store::StoreError;
use migrator::MigrationSet;
use migrator::rollout::Engine;
use uuid::Uuid;

use super::*;
use crate::bootstrap::Bootstrapped;
use crate::cli::actor;

pub(super) async fn rollout_command(
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
            StoreError::WrongStatus(state) | StoreError::RolloutNotAllowed { state, .. } => {
                anyhow::anyhow!(
                    "cannot {} rollout {}: it is {state}",
                    action.as_str(),
                    rollout.id
                )
            }
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
    let target = checked_target(args.to, migrations)?;
    let plan = store.plan(&args.stages.stages).await?;
    // The lint decides before anyone is asked: a refusal changes nothing.
    let linted = Linted::pending(store, &started.settings, migrations, target).await?;
    if !args.json && !linted.findings.is_empty() {
        linted.write_text(out)?;
    }
    let accepted_risks = migrator::lint::check_accepted(&linted.findings, &args.accept_risk)
        .map_err(|refusal| anyhow::anyhow!("not started: {refusal}"))?;
    // A rollback (or `--on-failure revert`) needs a revert script for every migration it may
    // undo: refused before anyone is asked, and nothing is created.
    let reach = migrator::reach::Reach::of(store, migrations, target).await?;
    let on_failure = control_plane::rollouts::OnFailure::from(args.on_failure);
    reach.check(on_failure).map_err(|refusal| {
        anyhow::anyhow!(
            "not started ({}): {refusal}",
            migrator::reach::RevertMissing::CODE
        )
    })?;
    if !args.json && reach.does_nothing() {
        writeln!(
            out,
            "This rollout does nothing: every tenant is already at version {target}."
        )?;
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!("starting a rollout needs confirmation: pass --yes when not at a terminal");
        }
        let way = match reach.direction {
            control_plane::rollouts::RolloutDirection::Forward => "Roll out",
            control_plane::rollouts::RolloutDirection::Back => "Roll back to",
        };
        eprintln!(
            "{way} schema version {target} over {} tenants ({} would move) in stages {:?}? [y/N]",
            plan.len(),
            reach.moves,
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
        direction: reach.direction,
        on_failure,
        accepted_risks,
        created_by: actor(),
    };
    let id = store.create_rollout(&spec).await?;
    if !args.json {
        writeln!(
            out,
            "Started rollout {id} ({}) to schema version {target} over {} tenants.",
            reach.direction.as_str(),
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
        if !matches!(
            rollout.state,
            RolloutState::Running | RolloutState::Pending | RolloutState::Reverting
        ) {
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
            "Rollout {} {}: {} succeeded, {} skipped, {} failed, {} moved back of {}{}",
            final_state.id,
            final_state.state.as_str(),
            counts.succeeded,
            counts.skipped,
            counts.failed,
            counts.reverted,
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
