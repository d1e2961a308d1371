//! Shared pieces of the benchmark programs: a private cluster, a Silo on port 0, and statistics.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use silo::{Application, ApplicationOptions};

/// Latency percentiles of a sample, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub max_ms: f64,
    pub per_second: f64,
}

/// Summarises latencies measured over `elapsed` of wall time.
pub fn summarise(mut samples: Vec<Duration>, elapsed: Duration) -> Summary {
    samples.sort();
    let at = |quantile: f64| {
        if samples.is_empty() {
            return 0.0;
        }
        let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
        samples[index].as_secs_f64() * 1000.0
    };
    Summary {
        count: samples.len(),
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        max_ms: at(1.0),
        per_second: samples.len() as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
    }
}

/// One row of a markdown table.
pub fn row(name: &str, summary: &Summary, note: &str) -> String {
    format!(
        "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {note} |",
        summary.count, summary.p50_ms, summary.p95_ms, summary.max_ms, summary.per_second
    )
}

pub const TABLE_HEADER: &str =
    "| run | n | p50 ms | p95 ms | max ms | per second | note |\n|---|---|---|---|---|---|---|";

/// Starts a private PostgreSQL cluster under the temporary folder (`silo-bench-<name>-<pid>`),
/// runs `run` on it, then stops it and, unless `keep`, removes it — whether `run` succeeded or not.
pub async fn on_private_cluster(
    name: &str,
    options: control_plane::embedded_postgres::ClusterOptions,
    keep: bool,
    run: impl AsyncFnOnce(&control_plane::embedded_postgres::EmbeddedPostgres) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("silo-bench-{name}-{}", std::process::id()));
    eprintln!(
        "starting a private PostgreSQL cluster under {}",
        dir.display()
    );
    let cluster_dir = dir.clone();
    let cluster = tokio::task::spawn_blocking(move || {
        control_plane::embedded_postgres::EmbeddedPostgres::start(&cluster_dir, options)
    })
    .await??;
    let result = run(&cluster).await;
    let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Settings for a Silo on `cluster` (control plane in database `silo`), on port 0, with a fresh
/// master key and no signup rate limit.
pub fn bench_settings(
    cluster: &control_plane::embedded_postgres::EmbeddedPostgres,
) -> anyhow::Result<control_plane::Settings> {
    Ok(control_plane::Settings {
        database_url: Some(cluster.superuser_url("silo")),
        master_keys: Some(control_plane::Keyring::generate_entry("bench")),
        http_addr: "127.0.0.1:0".parse()?,
        signups_per_client_per_minute: 1_000_000,
        ..control_plane::Settings::default()
    })
}

pub struct Running {
    pub address: std::net::SocketAddr,
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts Silo (HTTP and workers) on the given control plane.
pub async fn start(
    settings: &control_plane::Settings,
    store: &control_plane::Store,
    keyring: &Arc<control_plane::Keyring>,
) -> anyhow::Result<Running> {
    let application = Application::build(ApplicationOptions {
        settings: settings.clone(),
        store: store.clone(),
        keyring: keyring.clone(),
        serve_http: true,
        run_workers: true,
        migrations: migrator::MigrationSet::embedded(),
    })
    .await?;
    let address = application.address().context("serving HTTP")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(application.run_until(async {
        let _ = stopped.await;
    }));
    Ok(Running {
        address,
        stop,
        task,
    })
}

/// Signs up `slug` and polls its status until it leaves `provisioning`; returns the latency.
pub async fn signup(
    http: &reqwest::Client,
    address: std::net::SocketAddr,
    slug: &str,
) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    let response = http
        .post(format!("http://{address}/api/v1/signups"))
        .header("host", "localhost")
        .json(&serde_json::json!({
            "company_name": slug, "subdomain": slug,
            "admin_email": format!("owner@{slug}.test"), "admin_password": "violet tram oyster gravel"
        }))
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 202,
        "signup of {slug} answered {}",
        response.status()
    );
    let accepted: serde_json::Value = response.json().await?;
    let status_url = format!(
        "http://{address}{}",
        accepted["status_url"].as_str().context("status_url")?
    );
    loop {
        let status: serde_json::Value = http
            .get(&status_url)
            .header("host", "localhost")
            .send()
            .await?
            .json()
            .await?;
        match status["status"].as_str() {
            Some("active") => return Ok(started.elapsed()),
            Some("provisioning") => tokio::time::sleep(Duration::from_millis(1)).await,
            other => anyhow::bail!("{slug} ended {other:?}: {}", status["reason"]),
        }
    }
}

/// Signs up `slugs` through the API, `concurrency` at a time, until every one is active.
pub async fn create_tenants(
    http: &reqwest::Client,
    address: std::net::SocketAddr,
    slugs: &[String],
    concurrency: usize,
) -> anyhow::Result<Duration> {
    use futures::StreamExt as _;
    let started = std::time::Instant::now();
    let results: Vec<anyhow::Result<Duration>> = futures::stream::iter(slugs)
        .map(|slug| signup(http, address, slug))
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for result in results {
        result?;
    }
    Ok(started.elapsed())
}
