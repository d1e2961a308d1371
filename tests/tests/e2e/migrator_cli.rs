//! The `migrator` command line, run in-process against a real control plane and tenant
//! databases: plan, start --local (pausing on a failure, exit code 3), status, retry, watch
//! --local resuming to completion, tenant history, refusals that change nothing, and drift;
//! the lint before apply: findings with file and line, a refusal that starts nothing, and a
//! rollout that records the risk it was started with.

use clap::Parser as _;
use serde_json::Value;
use silo::bootstrap::Bootstrapped;
use silo::migrator_cli::{Exit, MigratorCli, execute};

use crate::harness::{TestApp, TestOptions, connect, test_settings};

fn extra_migrations() -> migrator::MigrationSet {
    migrator::MigrationSet::with_extra(&[
        (
            "V3__loyalty_cards",
            "CREATE TABLE loyalty_cards (id bigint PRIMARY KEY);",
        ),
        (
            "V4__guarded",
            "DO $$ BEGIN IF EXISTS (SELECT 1 FROM branches WHERE code = 'BROKEN') THEN \
               RAISE EXCEPTION 'branch BROKEN blocks this migration'; END IF; END $$;",
        ),
    ])
    .unwrap()
}

/// An app knowing `migrations` with `slugs` active, its workers stopped (only the CLI drives
/// rollouts then), and what the CLI needs to run against it.
async fn fleet_for_the_cli(
    migrations: &migrator::MigrationSet,
    slugs: &[&str],
) -> (TestApp, Bootstrapped) {
    let mut app = TestApp::spawn_with(TestOptions {
        migrations: Some(migrations.clone()),
        ..Default::default()
    })
    .await;
    for slug in slugs {
        app.active_tenant(slug).await;
    }
    app.stop().await;
    let started = Bootstrapped {
        settings: test_settings(&app.database, &app.keys),
        store: app.store.clone(),
        keyring: app.keyring.clone(),
        embedded: None,
    };
    (app, started)
}

/// Runs `migrator <args>`; returns the exit and what it printed.
async fn migrator(started: &Bootstrapped, args: &str) -> (anyhow::Result<Exit>, String) {
    migrator_with(started, &extra_migrations(), args).await
}

/// Runs `migrator <args>` knowing `migrations`.
async fn migrator_with(
    started: &Bootstrapped,
    migrations: &migrator::MigrationSet,
    args: &str,
) -> (anyhow::Result<Exit>, String) {
    let cli =
        MigratorCli::try_parse_from(std::iter::once("migrator").chain(args.split_whitespace()))
            .unwrap_or_else(|error| panic!("`migrator {args}` parses: {error}"));
    let mut out = Vec::new();
    let exit = execute(started, migrations, cli.command, &mut out).await;
    (exit, String::from_utf8(out).unwrap())
}

async fn json_of(started: &Bootstrapped, args: &str, expected: Exit) -> Value {
    json_with(started, &extra_migrations(), args, expected).await
}

async fn json_with(
    started: &Bootstrapped,
    migrations: &migrator::MigrationSet,
    args: &str,
    expected: Exit,
) -> Value {
    let (exit, out) = migrator_with(started, migrations, args).await;
    assert_eq!(exit.unwrap(), expected, "`migrator {args}` printed {out}");
    serde_json::from_str(out.lines().last().unwrap())
        .unwrap_or_else(|_| panic!("JSON from {args}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sre_cli_plans_rolls_out_pauses_retries_and_reports() {
    // Only the CLI drives rollouts from here on.
    let (app, started) =
        fleet_for_the_cli(&extra_migrations(), &["north", "south", "east", "west"]).await;

    let plan = json_of(&started, "plan --stages 50,100 --json", Exit::Success).await;
    assert_eq!(plan["tenants"].as_array().unwrap().len(), 4);
    let first_stage = plan["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["stage"] == 0)
        .count();
    assert_eq!(first_stage, 2);
    for (args, complaint) in [
        ("plan --stages 50,40", "--stages"),
        ("rollout start --to 9 --yes", "versions 1 to 4"),
        ("rollout start --max-failures lots --yes", "--max-failures"),
    ] {
        let (exit, _) = migrator(&started, args).await;
        let error = exit.unwrap_err().to_string();
        assert!(error.contains(complaint), "`{args}`: {error}");
    }
    assert!(
        app.store.rollouts().await.unwrap().is_empty(),
        "refusals start nothing"
    );

    connect(&app.tenant_url("east").await)
        .await
        .unwrap()
        .batch_execute("INSERT INTO branches (code, name) VALUES ('BROKEN', 'Blocks V4')")
        .await
        .unwrap();
    let paused = json_of(
        &started,
        "rollout start --to 4 --stages 100 --concurrency 2 --max-failures 0 --local --yes --json",
        Exit::Paused,
    )
    .await;
    assert_eq!(paused["state"], "paused");
    assert_eq!(paused["counts"]["failed"], 1);
    let status = json_of(&started, "status --json", Exit::Success).await;
    assert_eq!(status["released_version"], 2);
    assert_eq!(status["known_version"], 4);
    assert_eq!(status["open_rollout"]["state"], "paused");
    let (exit, text) = migrator(&started, "status").await;
    assert_eq!(exit.unwrap(), Exit::Success);
    assert!(
        text.contains("Open rollout") && text.contains("1 failed"),
        "{text}"
    );

    // Resume is refused while it is not paused; retry after a fix, then watch it finish.
    connect(&app.tenant_url("east").await)
        .await
        .unwrap()
        .batch_execute("DELETE FROM branches WHERE code = 'BROKEN'")
        .await
        .unwrap();
    let (exit, text) = migrator(&started, "rollout retry").await;
    assert_eq!(exit.unwrap(), Exit::Success);
    assert!(text.contains("Retrying 1 failed"), "{text}");
    let (exit, _) = migrator(&started, "rollout resume").await;
    assert!(exit.unwrap_err().to_string().contains("it is running"));
    let (exit, text) = migrator(&started, "rollout watch --local").await;
    assert_eq!(exit.unwrap(), Exit::Success, "{text}");
    assert!(text.contains("completed"), "{text}");
    assert_eq!(app.store.released_version().await.unwrap(), Some(4));

    let east = json_of(&started, "tenant east --json", Exit::Success).await;
    assert_eq!(east["schema_version"], 4);
    assert_eq!(east["history"].as_array().unwrap().len(), 4);
    assert_eq!(east["rollouts"][0]["status"], "succeeded");
    assert_eq!(east["rollouts"][0]["attempts"], 2);
    let (exit, _) = migrator(&started, "rollout abort").await;
    assert!(exit.unwrap_err().to_string().contains("completed"));

    // Drift is reported (exit 2), never repaired.
    connect(&app.tenant_url("west").await)
        .await
        .unwrap()
        .batch_execute("UPDATE silo_schema_history SET checksum = '1' WHERE version = 3")
        .await
        .unwrap();
    let (exit, text) = migrator(&started, "status --drift").await;
    assert_eq!(exit.unwrap(), Exit::Failed);
    assert!(
        text.contains("DRIFT west") && text.contains("\"changed\":[3]"),
        "{text}"
    );
    app.finish().await;
}

/// A V3 that builds an index without CONCURRENTLY (writes to `items` wait for the whole build).
fn risky_migrations() -> migrator::MigrationSet {
    migrator::MigrationSet::with_extra(&[(
        "V3__items_by_name",
        "-- Find items by name.\nCREATE INDEX items_name_idx ON items (name);\n",
    )])
    .unwrap()
}

const INDEX_RULE: &str = "require-concurrent-index-creation";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_risky_migration_is_reported_and_starts_only_with_its_risk_accepted() {
    let risky = risky_migrations();
    let (app, _) = fleet_for_the_cli(&risky, &["north", "south"]).await;
    let bootstrapped = |settings| Bootstrapped {
        settings,
        store: app.store.clone(),
        keyring: app.keyring.clone(),
        embedded: None,
    };
    let started = bootstrapped(test_settings(&app.database, &app.keys));

    // `migrator lint` names the file, the line, the rule and its level, and exits 2.
    let lint = json_with(&started, &risky, "lint --json", Exit::Failed).await;
    assert_eq!(lint["from_version"], 2, "{lint}");
    assert_eq!(lint["errors"], 1, "{lint}");
    let finding = &lint["findings"][0];
    assert_eq!(finding["file"], "V3__items_by_name.sql");
    assert_eq!(finding["line"], 2);
    assert_eq!(finding["rule"], INDEX_RULE);
    assert_eq!(finding["level"], "error");
    assert!(
        finding["message"].as_str().unwrap().contains("blocked"),
        "{finding}"
    );
    let (exit, text) = migrator_with(&started, &risky, "lint").await;
    assert_eq!(exit.unwrap(), Exit::Failed);
    assert!(
        text.contains(&format!("V3__items_by_name.sql:2: error {INDEX_RULE}:")),
        "{text}"
    );
    // The shipped migrations alone are clean.
    let (exit, text) =
        migrator_with(&started, &migrator::MigrationSet::embedded(), "lint --all").await;
    assert_eq!(exit.unwrap(), Exit::Success, "{text}");

    // The plan shows the findings of what it would apply.
    let plan = json_with(&started, &risky, "plan --stages 100 --json", Exit::Success).await;
    assert_eq!(plan["lint"]["error_rules"], serde_json::json!([INDEX_RULE]));
    let (_, text) = migrator_with(&started, &risky, "plan --stages 100").await;
    assert!(
        text.contains(&format!("--accept-risk {INDEX_RULE}")),
        "{text}"
    );

    // Start refuses without the rule accepted, with a wrong one, or with one too many.
    for (accept, complaint) in [
        ("", format!("--accept-risk {INDEX_RULE}")),
        (
            " --accept-risk ban-drop-column",
            format!("--accept-risk {INDEX_RULE}"),
        ),
        (
            &format!(" --accept-risk {INDEX_RULE},ban-drop-column"),
            "ban-drop-column match no error-level finding".to_owned(),
        ),
        (" --accept-risk no-such-rule", "not a lint rule".to_owned()),
    ] {
        let args = format!("rollout start --stages 100 --local --yes{accept}");
        let (exit, text) = migrator_with(&started, &risky, &args).await;
        let error = exit.unwrap_err().to_string();
        assert!(error.contains(&complaint), "`{args}`: {error}");
        if !accept.contains("no-such-rule") {
            assert!(
                text.contains("V3__items_by_name.sql:2"),
                "`{args}` shows the findings: {text}"
            );
        }
    }
    assert!(
        app.store.rollouts().await.unwrap().is_empty(),
        "a refused start creates no rollout"
    );
    assert_eq!(app.store.released_version().await.unwrap(), Some(2));

    // Settings can make the rule a warning (then nothing needs accepting) or switch it off.
    let mut settings = test_settings(&app.database, &app.keys);
    settings.migrations.lint_warn = vec![INDEX_RULE.to_owned()];
    let lenient = bootstrapped(settings);
    let lint = json_with(&lenient, &risky, "lint --json", Exit::Success).await;
    assert_eq!(
        (lint["errors"].clone(), lint["warnings"].clone()),
        (0.into(), 1.into())
    );
    let mut settings = test_settings(&app.database, &app.keys);
    settings.migrations.lint_allow = vec![INDEX_RULE.to_owned()];
    let lint = json_with(
        &bootstrapped(settings),
        &risky,
        "lint --json",
        Exit::Success,
    )
    .await;
    assert_eq!(lint["findings"], serde_json::json!([]));
    let mut settings = test_settings(&app.database, &app.keys);
    settings.migrations.lint_allow = vec!["not-a-rule".to_owned()];
    let (exit, _) = migrator_with(&bootstrapped(settings), &risky, "lint").await;
    assert!(exit.unwrap_err().to_string().contains("lint_allow"));

    // Accepted, it runs, and the rollout and its audit row record the accepted rule.
    let done = json_with(
        &started,
        &risky,
        &format!("rollout start --stages 100 --local --yes --json --accept-risk {INDEX_RULE}"),
        Exit::Success,
    )
    .await;
    assert_eq!(done["state"], "completed", "{done}");
    assert_eq!(done["accepted_risks"], serde_json::json!([INDEX_RULE]));
    let rollout = app.store.rollouts().await.unwrap().remove(0);
    assert_eq!(rollout.accepted_risks, [INDEX_RULE]);
    let control = app.control_plane().await;
    let audited: String = control
        .query_one(
            "SELECT detail::text FROM audit_log WHERE action = 'rollout.start' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let audited: Value = serde_json::from_str(&audited).unwrap();
    assert_eq!(audited["accepted_risks"], serde_json::json!([INDEX_RULE]));
    // Nothing is pending any more: the lint is clean.
    let lint = json_with(&started, &risky, "lint --json", Exit::Success).await;
    assert_eq!(lint["from_version"], 3);
    app.finish().await;
}

/// A rollback needs a revert script for every migration it undoes: `plan` says which can be
/// undone, and `rollout start` refuses (`revert_missing`) before creating anything; one that
/// has its scripts runs, and a plan where every tenant is already at the target says it does
/// nothing. So does `--on-failure revert` forwards over a migration without a revert script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_refused_where_a_revert_script_is_missing() {
    // V3 has no revert script; V4 has one.
    let set = extra_migrations()
        .with_reverts(&[(4, "SELECT 1;")])
        .unwrap();
    let (app, started) = fleet_for_the_cli(&set, &["north", "south"]).await;
    // Forwards with `--on-failure revert` over V3 (no script): refused before anything starts.
    let (exit, _) = migrator_with(
        &started,
        &set,
        "rollout start --to 4 --stages 100 --on-failure revert --local --yes",
    )
    .await;
    let error = exit.unwrap_err().to_string();
    assert!(
        error.contains("revert_missing") && error.contains("V3"),
        "{error}"
    );
    assert!(app.store.rollouts().await.unwrap().is_empty());

    let done = json_with(
        &started,
        &set,
        "rollout start --to 4 --stages 100 --local --yes --json",
        Exit::Success,
    )
    .await;
    assert_eq!(
        (done["state"].clone(), done["direction"].clone()),
        ("completed".into(), "forward".into())
    );

    let plan = json_with(
        &started,
        &set,
        "plan --to 2 --stages 100 --json",
        Exit::Success,
    )
    .await;
    assert_eq!(plan["direction"], "back");
    assert_eq!(plan["does_nothing"], false);
    assert_eq!(
        plan["migrations"],
        serde_json::json!([
            {"version": 4, "file": "V4__guarded.revert.sql", "available": true},
            {"version": 3, "file": "V3__loyalty_cards.revert.sql", "available": false},
        ])
    );
    assert_eq!(plan["can_start"]["code"], "revert_missing");
    let (_, text) = migrator_with(&started, &set, "plan --to 2 --stages 100").await;
    assert!(
        text.contains("V3: CANNOT be rolled back: no V3__loyalty_cards.revert.sql"),
        "{text}"
    );
    let rollouts_before = app.store.rollouts().await.unwrap().len();
    let (exit, _) = migrator_with(&started, &set, "rollout start --to 2 --stages 100 --yes").await;
    let error = exit.unwrap_err().to_string();
    assert!(
        error.contains("revert_missing") && error.contains("V3__loyalty_cards.revert.sql"),
        "{error}"
    );
    assert_eq!(app.store.rollouts().await.unwrap().len(), rollouts_before);

    // V4 has its script: back to 3 runs, and releases 3.
    let back = json_with(
        &started,
        &set,
        "rollout start --to 3 --stages 50,100 --local --yes --json",
        Exit::Success,
    )
    .await;
    assert_eq!(
        (back["state"].clone(), back["direction"].clone()),
        ("completed".into(), "back".into())
    );
    assert_eq!(back["counts"]["succeeded"], 2);
    assert_eq!(app.store.released_version().await.unwrap(), Some(3));
    let noop = json_with(
        &started,
        &set,
        "plan --to 3 --stages 100 --json",
        Exit::Success,
    )
    .await;
    assert_eq!(noop["does_nothing"], true);
    let (_, text) = migrator_with(&started, &set, "plan --to 3 --stages 100").await;
    assert!(text.contains("This rollout does nothing"), "{text}");
    app.finish().await;
}
