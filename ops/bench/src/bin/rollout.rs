//! `rollout` — how fast a small DDL migration reaches N tenant databases, beside what a deploy
//! script and a bare parallel loop achieve on the same server, in one run on a private cluster.
//!
//! Phases over the same N tenants (made through the real signup API, from the template): (1) a
//! serial loop running one `psql -f` per tenant; (2) the floor: the same statement over a fresh
//! connection per tenant, `--concurrency` at a time, no framework; (3) the rollout engine (one
//! stage of 100 %, the same concurrency): advisory lock, refinery history, control-plane
//! bookkeeping; (4) a no-op rollout to the same version; (5) a rollback over the same tenants
//! through the same engine (the revert script undoes the DDL, the history row goes); (6) the
//! lint of 100 typical migrations. Between the first phases the DDL is undone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use control_plane::Purpose;
use control_plane::embedded_postgres::{ClusterOptions, EmbeddedPostgres};
use control_plane::rollouts::{
    FailureLimit, OnFailure, RolloutDirection, RolloutSpec, RolloutState,
};
use futures::StreamExt as _;
use migrator::MigrationSet;
use migrator::rollout::Engine;
use secrecy::{ExposeSecret as _, SecretString};
use silo::bootstrap::bootstrap;
use silo_bench::{bench_settings, create_tenants, start};

const DDL: &str = "CREATE TABLE bench_notes (id bigint PRIMARY KEY, note text NOT NULL);";
const UNDO: &str = "DROP TABLE IF EXISTS bench_notes;";

/// Rollout benchmark: prints a markdown table of the serial loop, the floor and the engine.
#[derive(Debug, Parser)]
struct Args {
    /// Tenant databases to create and migrate.
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// Tenants migrated at once (the floor's and the engine's per-host concurrency).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Keep the benchmark cluster directory afterwards.
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("silo-bench-rollout-{}", std::process::id()));
    eprintln!("starting a private PostgreSQL cluster in {}", dir.display());
    let cluster_dir = dir.clone();
    let cluster = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(
            &cluster_dir,
            ClusterOptions {
                max_connections: 200,
                ..ClusterOptions::default()
            },
        )
    })
    .await??;
    let result = run(&args, &cluster).await;
    let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn run(args: &Args, cluster: &EmbeddedPostgres) -> anyhow::Result<()> {
    let mut settings = bench_settings(cluster)?;
    settings.provisioning.concurrency = 8;
    let started = bootstrap(settings.clone(), &|line| eprintln!("{line}")).await?;
    let (store, keyring) = (started.store.clone(), started.keyring.clone());

    eprintln!("creating {} tenants through the signup API", args.tenants);
    let silo = start(&settings, &store, &keyring).await?;
    let http = reqwest::Client::new();
    let slugs: Vec<String> = (0..args.tenants)
        .map(|index| format!("t{index:05}"))
        .collect();
    let took = create_tenants(&http, silo.address, &slugs, 8).await?;
    eprintln!(
        "{} tenants active in {:.1} s",
        args.tenants,
        took.as_secs_f64()
    );
    let _ = silo.stop.send(());
    silo.task.await??;

    let urls: Vec<SecretString> = store
        .tenants()
        .await?
        .iter()
        .map(|tenant| {
            let sealed = tenant.sealed_database_url.as_ref().context("sealed URL")?;
            Ok(keyring.open(Purpose::TenantDatabaseUrl, tenant.id, sealed)?)
        })
        .collect::<anyhow::Result<_>>()?;
    let urls = Arc::new(urls);

    eprintln!("serial: one psql -f per tenant");
    let serial = tokio::task::block_in_place(|| serial_psql(&urls))?;
    undo(&urls, args.concurrency).await?;

    eprintln!(
        "floor: fresh connection per tenant, {} at a time",
        args.concurrency
    );
    let floor = timed(|| apply_parallel(&urls, args.concurrency, DDL)).await?;
    undo(&urls, args.concurrency).await?;

    eprintln!(
        "engine: a one-stage rollout, {} at a time",
        args.concurrency
    );
    let set = MigrationSet::with_extra(&[("V3__bench_notes", DDL)])?.with_reverts(&[(3, UNDO)])?;
    let engine = Engine::new(store.clone(), keyring.clone(), set);
    let spec = |concurrency: usize| RolloutSpec {
        target_version: 3,
        stages: vec![100],
        concurrency_per_host: i32::try_from(concurrency).unwrap_or(8),
        failure_limit: FailureLimit::Count(0),
        bake: Duration::ZERO,
        manual_approval: false,
        verify: false,
        direction: RolloutDirection::Forward,
        on_failure: OnFailure::Pause,
        accepted_risks: Vec::new(),
        created_by: "bench".to_owned(),
    };
    let id = store.create_rollout(&spec(args.concurrency)).await?;
    let began = Instant::now();
    let state = engine
        .drive_if_free(id)
        .await?
        .context("the engine took the rollout")?;
    let engine_time = began.elapsed();
    anyhow::ensure!(
        state == RolloutState::Completed,
        "the rollout ended {state:?}"
    );
    let counts = store.stage_counts(id, None).await?;
    anyhow::ensure!(counts.succeeded == args.tenants as i64, "{counts:?}");

    eprintln!("no-op: the same version again");
    let noop_id = store.create_rollout(&spec(args.concurrency)).await?;
    let began = Instant::now();
    engine.drive_if_free(noop_id).await?;
    let noop = began.elapsed();
    let noop_counts = store.stage_counts(noop_id, None).await?;
    anyhow::ensure!(
        noop_counts.skipped == args.tenants as i64,
        "{noop_counts:?}"
    );

    eprintln!("rollback: back to version 2 through the same engine");
    let back_id = store
        .create_rollout(&RolloutSpec {
            target_version: 2,
            direction: RolloutDirection::Back,
            ..spec(args.concurrency)
        })
        .await?;
    let began = Instant::now();
    let state = engine
        .drive_if_free(back_id)
        .await?
        .context("the engine took the rollback")?;
    let rollback = began.elapsed();
    anyhow::ensure!(
        state == RolloutState::Completed,
        "the rollback ended {state:?}"
    );
    let back_counts = store.stage_counts(back_id, None).await?;
    anyhow::ensure!(
        back_counts.succeeded == args.tenants as i64,
        "{back_counts:?}"
    );
    started.shutdown().await?;

    eprintln!("lint: 100 migrations");
    let migrations: Vec<String> = (0..100).map(typical_migration).collect();
    let config = migrator::lint::LintConfig::default();
    let began = Instant::now();
    let mut findings = 0;
    for (index, sql) in migrations.iter().enumerate() {
        let version = i32::try_from(index).unwrap_or(0) + 3;
        let file = format!("V{version}__bench.sql");
        findings += migrator::lint::lint_sql(version, &file, sql, &config).len();
    }
    let lint = began.elapsed();

    let n = args.tenants as f64;
    let rate = |elapsed: Duration| n / elapsed.as_secs_f64().max(f64::EPSILON);
    println!(
        "\n### Rollout benchmark ({} tenant databases, one host, concurrency {})\n",
        args.tenants, args.concurrency
    );
    println!("| run | seconds | tenants per second | note |\n|---|---|---|---|");
    println!(
        "| serial psql -f | {:.2} | {:.0} | one psql process per tenant, one after another |",
        serial.as_secs_f64(),
        rate(serial)
    );
    println!(
        "| floor: parallel fresh connections | {:.2} | {:.0} | the DDL over a new connection per tenant, {} at a time |",
        floor.as_secs_f64(),
        rate(floor),
        args.concurrency
    );
    println!(
        "| rollout engine | {:.2} | {:.0} | advisory lock, refinery history, control-plane bookkeeping |",
        engine_time.as_secs_f64(),
        rate(engine_time)
    );
    println!(
        "| no-op rollout | {:.3} | {:.0} | every tenant already at the target: skipped without connecting |",
        noop.as_secs_f64(),
        rate(noop)
    );
    println!(
        "| rollback | {:.2} | {:.0} | the same engine back to v2: revert script, history row removed, control-plane bookkeeping |",
        rollback.as_secs_f64(),
        rate(rollback)
    );
    println!(
        "| lint of 100 migrations | {:.3} | - | squawk's parser and rules, {} statements, {findings} findings |",
        lint.as_secs_f64(),
        migrations
            .iter()
            .map(|sql| sql.matches(';').count())
            .sum::<usize>()
    );
    println!("\n| target | measured | met |\n|---|---|---|");
    let vs_serial = rate(engine_time) / rate(serial);
    let vs_floor = rate(engine_time) / rate(floor);
    println!(
        "| engine ≥ 8× serial | {vs_serial:.1}× | {} |",
        if vs_serial >= 8.0 { "yes" } else { "no" }
    );
    println!(
        "| engine ≥ 70 % of floor | {:.0} % | {} |",
        vs_floor * 100.0,
        if vs_floor >= 0.7 { "yes" } else { "no" }
    );
    println!(
        "| no-op < 1 s | {:.3} s | {} |",
        noop.as_secs_f64(),
        if noop < Duration::from_secs(1) {
            "yes"
        } else {
            "no"
        }
    );
    let vs_forward = rollback.as_secs_f64() / engine_time.as_secs_f64().max(f64::EPSILON);
    println!(
        "| rollback ≤ 1.2× forward | {vs_forward:.2}× | {} |",
        if vs_forward <= 1.2 { "yes" } else { "no" }
    );
    println!(
        "| lint of 100 migrations < 1 s | {:.3} s | {} |",
        lint.as_secs_f64(),
        if lint < Duration::from_secs(1) {
            "yes"
        } else {
            "no"
        }
    );
    Ok(())
}

/// A migration of the kind teams write: a table, a column, a concurrent index (with the
/// marker), and a backfill; some raise findings, as real ones do.
fn typical_migration(index: usize) -> String {
    format!(
        "-- silo:no-transaction\n\
         CREATE TABLE IF NOT EXISTS bench_{index} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());\n\
         ALTER TABLE items ADD COLUMN IF NOT EXISTS note_{index} text;\n\
         CREATE INDEX CONCURRENTLY IF NOT EXISTS bench_{index}_name_idx ON bench_{index} (name);\n\
         UPDATE items SET note_{index} = name WHERE note_{index} IS NULL;\n\
         ALTER TABLE items ALTER COLUMN note_{index} SET DEFAULT '';\n"
    )
}

async fn timed<F, Fut>(work: F) -> anyhow::Result<Duration>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let began = Instant::now();
    work().await?;
    Ok(began.elapsed())
}

/// Runs `sql` on every tenant over a fresh connection each, `concurrency` at a time.
async fn apply_parallel(
    urls: &Arc<Vec<SecretString>>,
    concurrency: usize,
    sql: &'static str,
) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(urls.iter().cloned())
        .map(|url| async move {
            let (client, connection) =
                tokio_postgres::connect(url.expose_secret(), tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            client.batch_execute(sql).await?;
            Ok(())
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn undo(urls: &Arc<Vec<SecretString>>, concurrency: usize) -> anyhow::Result<()> {
    apply_parallel(urls, concurrency, UNDO).await
}

fn serial_psql(urls: &[SecretString]) -> anyhow::Result<Duration> {
    let psql = control_plane::embedded_postgres::find_tool("psql")?;
    let file = std::env::temp_dir().join(format!("silo-bench-ddl-{}.sql", std::process::id()));
    std::fs::write(&file, DDL)?;
    let began = Instant::now();
    for url in urls {
        let config: tokio_postgres::Config = url.expose_secret().parse()?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let status = std::process::Command::new(&psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(&file)
            .env("PGHOST", host)
            .env(
                "PGPORT",
                config
                    .get_ports()
                    .first()
                    .copied()
                    .unwrap_or(5432)
                    .to_string(),
            )
            .env("PGUSER", config.get_user().unwrap_or_default())
            .env(
                "PGPASSWORD",
                String::from_utf8_lossy(config.get_password().unwrap_or_default()).as_ref(),
            )
            .env("PGDATABASE", config.get_dbname().unwrap_or_default())
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "psql failed");
    }
    let elapsed = began.elapsed();
    let _ = std::fs::remove_file(&file);
    Ok(elapsed)
}
