//! `provision` — signup → `active` latency and throughput, beside the floor of doing the same work
//! by hand with psql on the same server, in one run on a private cluster it starts and removes.
//!
//! Phases: (1) floor: one psql process per tenant running CREATE ROLE, CREATE DATABASE … TEMPLATE
//! (Silo's template), connect, INSERT the admin row; (2) CREATE DATABASE strategy: WAL_LOG
//! against FILE_COPY from the same template; (3) Silo cold: signups one after another through the
//! real HTTP API, no warm pool; (4) Silo warm: the same with a warm pool of N per host, filled first.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use control_plane::embedded_postgres::{ClusterOptions, EmbeddedPostgres};
use secrecy::ExposeSecret as _;
use silo::bootstrap::bootstrap;
use silo_bench::{Summary, TABLE_HEADER, bench_settings, row, signup, start, summarise};

/// Provisioning benchmark: prints a markdown table of the floor and Silo's latencies.
#[derive(Debug, Parser)]
struct Args {
    /// Tenants per phase.
    #[arg(long, default_value_t = 200)]
    tenants: usize,
    /// Databases per strategy in the WAL_LOG / FILE_COPY comparison.
    #[arg(long, default_value_t = 50)]
    strategy_samples: usize,
    /// Keep the benchmark cluster (and its disk) afterwards.
    #[arg(long)]
    keep: bool,
}

async fn silo_phase(
    http: &reqwest::Client,
    address: std::net::SocketAddr,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut samples = Vec::with_capacity(count);
    for index in 0..count {
        samples.push(signup(http, address, &format!("{prefix}{index:04}")).await?);
    }
    Ok(summarise(samples, started.elapsed()))
}

fn floor_phase(
    cluster: &EmbeddedPostgres,
    template: &str,
    count: usize,
) -> anyhow::Result<Summary> {
    let psql = control_plane::embedded_postgres::find_tool("psql")?;
    let url = cluster.superuser_url("postgres");
    let config: tokio_postgres::Config = url.expose_secret().parse()?;
    let password = String::from_utf8(config.get_password().context("password")?.to_vec())?;
    let started = Instant::now();
    let mut samples = Vec::with_capacity(count);
    for index in 0..count {
        let name = format!("floor_{index:04}");
        let script = format!(
            "CREATE ROLE {name} LOGIN PASSWORD 'floor-password';\n\
             CREATE DATABASE {name} OWNER {name} TEMPLATE \"{template}\";\n\
             \\c {name}\n\
             INSERT INTO users (email, password_hash, role) VALUES ('owner@floor.test', 'x', 'owner');\n"
        );
        let start_one = Instant::now();
        let mut child = std::process::Command::new(&psql)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &cluster.port().to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-X"])
            .env("PGPASSWORD", &password)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .context("stdin")?
                .write_all(script.as_bytes())?;
        }
        let status = child.wait()?;
        anyhow::ensure!(status.success(), "psql failed for {name}");
        samples.push(start_one.elapsed());
    }
    Ok(summarise(samples, started.elapsed()))
}

async fn strategy_phase(
    cluster: &EmbeddedPostgres,
    template: &str,
    strategy: &str,
    count: usize,
) -> anyhow::Result<Summary> {
    let (admin, connection) = tokio_postgres::connect(
        cluster.superuser_url("postgres").expose_secret(),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(connection);
    let started = Instant::now();
    let mut samples = Vec::with_capacity(count);
    for index in 0..count {
        let one = Instant::now();
        admin
            .batch_execute(&format!(
                "CREATE DATABASE strategy_{}_{index:04} TEMPLATE \"{template}\" STRATEGY {strategy}",
                strategy.to_lowercase()
            ))
            .await?;
        samples.push(one.elapsed());
    }
    Ok(summarise(samples, started.elapsed()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("silo-bench-provision-{}", std::process::id()));
    eprintln!("starting a private PostgreSQL cluster in {}", dir.display());
    let cluster_dir = dir.clone();
    let cluster = tokio::task::spawn_blocking(move || {
        EmbeddedPostgres::start(&cluster_dir, ClusterOptions::default())
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
    settings.provisioning.retry_backoff = Duration::from_millis(50);
    let started = bootstrap(settings.clone(), &|line| eprintln!("{line}")).await?;
    let (store, keyring) = (started.store.clone(), started.keyring.clone());
    let http = reqwest::Client::new();

    let silo = start(&settings, &store, &keyring).await?;
    eprintln!("warm-up signup (builds the host's template)");
    signup(&http, silo.address, "warmup").await?;
    let host = store.hosts().await?.remove(0);
    let template = store
        .template(host.id, tenant_schema_version(&store, host.id).await?)
        .await?
        .context("the template was built")?;

    eprintln!(
        "floor: {} × psql (CREATE ROLE, CREATE DATABASE … TEMPLATE, connect, INSERT)",
        args.tenants
    );
    let floor = tokio::task::block_in_place(|| floor_phase(cluster, &template, args.tenants))?;

    eprintln!(
        "argon2id: {} admin-password hashes (work every signup does, the floor does not)",
        args.strategy_samples
    );
    let argon2 = tokio::task::block_in_place(|| {
        let started = Instant::now();
        let samples = (0..args.strategy_samples)
            .map(|_| {
                let one = Instant::now();
                control_plane::passwords::hash(&secrecy::SecretString::from(
                    "violet tram oyster gravel",
                ));
                one.elapsed()
            })
            .collect();
        summarise(samples, started.elapsed())
    });

    eprintln!("CREATE DATABASE strategies: {} each", args.strategy_samples);
    let wal_log = strategy_phase(cluster, &template, "WAL_LOG", args.strategy_samples).await?;
    let file_copy = strategy_phase(cluster, &template, "FILE_COPY", args.strategy_samples).await?;

    eprintln!("Silo cold: {} signups, one after another", args.tenants);
    let cold = silo_phase(&http, silo.address, "cold", args.tenants).await?;
    let _ = silo.stop.send(());
    silo.task.await??;

    eprintln!("Silo warm: filling a warm pool of {}", args.tenants);
    settings.provisioning.warm_pool = u32::try_from(args.tenants)?;
    let silo = start(&settings, &store, &keyring).await?;
    let fill_started = Instant::now();
    loop {
        let ready = store
            .warm_databases(host.id)
            .await?
            .iter()
            .filter(|warm| warm.ready)
            .count();
        if ready >= args.tenants {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fill = fill_started.elapsed();
    eprintln!(
        "warm pool filled in {:.1} s; signing up {}",
        fill.as_secs_f64(),
        args.tenants
    );
    let warm = silo_phase(&http, silo.address, "warm", args.tenants).await?;
    let _ = silo.stop.send(());
    silo.task.await??;
    started.shutdown().await?;

    println!(
        "\n### Provisioning benchmark ({} tenants per phase, one at a time)\n",
        args.tenants
    );
    println!("{TABLE_HEADER}");
    println!(
        "{}",
        row(
            "floor: psql by hand",
            &floor,
            "CREATE ROLE + CREATE DATABASE … TEMPLATE + connect + INSERT"
        )
    );
    println!(
        "{}",
        row(
            "argon2id password hash",
            &argon2,
            "part of every signup (default parameters)"
        )
    );
    println!(
        "{}",
        row(
            "CREATE DATABASE WAL_LOG",
            &wal_log,
            "from the schema-holding template"
        )
    );
    println!(
        "{}",
        row(
            "CREATE DATABASE FILE_COPY",
            &file_copy,
            "from the schema-holding template"
        )
    );
    println!(
        "{}",
        row(
            "Silo cold",
            &cold,
            "signup → active over HTTP, no warm pool"
        )
    );
    println!(
        "{}",
        row(
            "Silo warm pool",
            &warm,
            "signup → active, claiming a pre-created database"
        )
    );
    println!();
    println!("| target | measured | met |\n|---|---|---|");
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let cold_ratio = ratio(cold.p50_ms, floor.p50_ms);
    let warm_ratio = ratio(warm.p50_ms, floor.p50_ms);
    let throughput_ratio = ratio(cold.per_second, floor.per_second);
    println!(
        "| cold p50 ≤ 2× floor p50 | {cold_ratio:.2}× | {} |",
        if cold_ratio <= 2.0 { "yes" } else { "no" }
    );
    println!(
        "| warm p50 ≤ 0.5× floor p50 | {warm_ratio:.2}× | {} |",
        if warm_ratio <= 0.5 { "yes" } else { "no" }
    );
    println!(
        "| cold throughput ≥ 0.7× floor | {throughput_ratio:.2}× | {} |",
        if throughput_ratio >= 0.7 { "yes" } else { "no" }
    );
    println!(
        "\nFaster strategy here: {} (WAL_LOG p50 {:.1} ms, FILE_COPY p50 {:.1} ms). Warm pool of {} filled in {:.1} s.",
        if wal_log.p50_ms <= file_copy.p50_ms {
            "WAL_LOG"
        } else {
            "FILE_COPY"
        },
        wal_log.p50_ms,
        file_copy.p50_ms,
        args.tenants,
        fill.as_secs_f64()
    );
    Ok(())
}

async fn tenant_schema_version(
    store: &control_plane::Store,
    host_id: uuid::Uuid,
) -> anyhow::Result<i32> {
    let templates = store.templates_of(host_id).await?;
    templates
        .iter()
        .map(|(version, _)| *version)
        .max()
        .context("a template exists")
}
