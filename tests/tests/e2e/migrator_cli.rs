//! The `migrator` command line, run in-process against a real control plane and tenant
//! databases: plan, start --local (pausing on a failure, exit code 3), status, retry, watch
//! --local resuming to completion, tenant history, refusals that change nothing, and drift.

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

/// Runs `migrator <args>`; returns the exit and what it printed.
async fn migrator(started: &Bootstrapped, args: &str) -> (anyhow::Result<Exit>, String) {
    let cli =
        MigratorCli::try_parse_from(std::iter::once("migrator").chain(args.split_whitespace()))
            .unwrap_or_else(|error| panic!("`migrator {args}` parses: {error}"));
    let mut out = Vec::new();
    let exit = execute(started, &extra_migrations(), cli.command, &mut out).await;
    (exit, String::from_utf8(out).unwrap())
}

async fn json_of(started: &Bootstrapped, args: &str, expected: Exit) -> Value {
    let (exit, out) = migrator(started, args).await;
    assert_eq!(exit.unwrap(), expected, "`migrator {args}` printed {out}");
    serde_json::from_str(out.lines().last().unwrap())
        .unwrap_or_else(|_| panic!("JSON from {args}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sre_cli_plans_rolls_out_pauses_retries_and_reports() {
    let mut app = TestApp::spawn_with(TestOptions {
        migrations: Some(extra_migrations()),
        ..Default::default()
    })
    .await;
    for slug in ["north", "south", "east", "west"] {
        app.active_tenant(slug).await;
    }
    // Only the CLI drives rollouts from here on.
    app.stop().await;
    let started = Bootstrapped {
        settings: test_settings(&app.database, &app.keys),
        store: app.store.clone(),
        keyring: app.keyring.clone(),
        embedded: None,
    };

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
