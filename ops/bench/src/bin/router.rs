//! `router` — what routing through Silo costs an end user, on private clusters, in one run.
//!
//! A closed-loop load generator (in this process, over loopback, keep-alive HTTP) drives the
//! tenant read endpoint `GET /api/v1/health` (resolve the Host, take a pooled connection, read
//! the tenant's schema version from its own database). Phases:
//!
//! 1. cold: the first request of tenants never seen, beside the floor — a bare PostgreSQL
//!    connect (SCRAM) plus the same query, for other never-touched tenants;
//! 2. one tenant at full speed, then `--tenants` tenants round robin (all pools warm): the
//!    multi-tenant tax; router memory per cached idle tenant is measured while warming them.
//!    Beside them, a *single-tenant baseline app*: what a team would write without Silo — one
//!    axum service with one deadpool-postgres pool (as many connections as a Silo tenant's)
//!    answering the same endpoint with the same query from the same database, driven by the
//!    same load generator;
//! 3. a noisy tenant at full speed beside 100 quiet ones, against the quiet ones alone (default
//!    router settings, so the per-tenant rate limit applies);
//! 4. `--crowd` tenants on a second server with `max_connections = 50`, round robin: errors and
//!    the most router connections seen in that server's `pg_stat_activity`.

#![allow(unsafe_code)] // The counting allocator below; nothing else.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use control_plane::embedded_postgres::{ClusterOptions, EmbeddedPostgres};
use control_plane::{Keyring, Purpose};
use secrecy::ExposeSecret as _;
use silo::bootstrap::bootstrap;
use silo_bench::{bench_settings, create_tenants, start};

/// Router benchmark: prints markdown tables of latency and throughput against their floors.
#[derive(Debug, Parser)]
struct Args {
    /// Tenants for the round-robin phase.
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// Tenants on the small server (max_connections = 50).
    #[arg(long, default_value_t = 2000)]
    crowd: usize,
    /// Concurrent requests of the load generator.
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// Seconds per load phase.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Tenants measured in the cold phase (and as many for its floor).
    #[arg(long, default_value_t = 50)]
    cold: usize,
    /// Keep the benchmark cluster directories afterwards.
    #[arg(long)]
    keep: bool,
}

fn cluster_at(dir: std::path::PathBuf, max_connections: u32) -> anyhow::Result<EmbeddedPostgres> {
    Ok(EmbeddedPostgres::start(
        &dir,
        ClusterOptions {
            max_connections,
            // fsync off: the phases measure reads; it only speeds up creating the tenants.
            ephemeral: true,
        },
    )?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("silo-bench-router-{}", std::process::id()));
    eprintln!(
        "starting two private PostgreSQL clusters under {}",
        dir.display()
    );
    let (big_dir, small_dir) = (dir.join("big"), dir.join("small"));
    // Big enough for every tenant of the round-robin phase to keep a warm connection.
    let big_connections = u32::try_from(args.tenants + 200).unwrap_or(u32::MAX);
    let big = tokio::task::spawn_blocking(move || cluster_at(big_dir, big_connections)).await??;
    let small = tokio::task::spawn_blocking(move || cluster_at(small_dir, 50)).await??;
    let result = run(&args, &big, &small).await;
    for cluster in [big, small] {
        let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
    }
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Latencies and answers of one load phase.
#[derive(Debug, Default)]
struct Load {
    latencies: Vec<Duration>,
    statuses: BTreeMap<u16, usize>,
    elapsed: Duration,
}

impl Load {
    fn quantile_ms(&self, quantile: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        if sorted.is_empty() {
            return 0.0;
        }
        let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
        sorted[index].as_secs_f64() * 1000.0
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn errors(&self) -> usize {
        self.statuses
            .iter()
            .filter(|(status, _)| **status != 200)
            .map(|(_, count)| count)
            .sum()
    }

    fn row(&self, name: &str, note: &str) -> String {
        format!(
            "| {name} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {note} |",
            self.latencies.len(),
            self.per_second(),
            self.quantile_ms(0.5),
            self.quantile_ms(0.99),
            self.quantile_ms(1.0),
            self.errors(),
        )
    }
}

const LOAD_HEADER: &str = "| run | requests | per second | p50 ms | p99 ms | max ms | non-200 | note |\n|---|---|---|---|---|---|---|---|";

/// `workers` closed loops for `duration`, each call of `request` (given a running count, for
/// round robin) answering a status (0: no answer).
async fn closed_loop<F, Fut>(workers: usize, duration: Duration, request: F) -> Load
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = u16> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (request, next) = (request.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut load = Load::default();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let status = request(next.fetch_add(1, Ordering::Relaxed)).await;
                load.latencies.push(sent.elapsed());
                *load.statuses.entry(status).or_default() += 1;
            }
            load
        }));
    }
    let mut total = Load::default();
    for task in tasks {
        if let Ok(load) = task.await {
            total.latencies.extend(load.latencies);
            for (status, count) in load.statuses {
                *total.statuses.entry(status).or_default() += count;
            }
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// The tenant read endpoint through Silo, round robin over `hosts`.
async fn drive(
    http: &reqwest::Client,
    address: std::net::SocketAddr,
    hosts: Arc<Vec<String>>,
    workers: usize,
    duration: Duration,
) -> Load {
    let http = http.clone();
    closed_loop(workers, duration, move |count| {
        let (http, hosts) = (http.clone(), hosts.clone());
        async move {
            let host = &hosts[count % hosts.len()];
            match http
                .get(format!("http://{address}/api/v1/health"))
                .header("host", host)
                .send()
                .await
            {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let _ = response.bytes().await;
                    status
                }
                Err(_) => 0,
            }
        }
    })
    .await
}

/// The floor of phase 2: the same query over bare connections (no HTTP, no router), round
/// robin over `clients`.
async fn drive_bare(
    clients: Arc<Vec<tokio_postgres::Client>>,
    workers: usize,
    duration: Duration,
) -> Load {
    closed_loop(workers, duration, move |count| {
        let clients = clients.clone();
        async move {
            match clients[count % clients.len()]
                .query_one(HEALTH_QUERY, &[])
                .await
            {
                Ok(_) => 200,
                Err(_) => 0,
            }
        }
    })
    .await
}

const HEALTH_QUERY: &str = "SELECT coalesce(max(version), 0) FROM silo_schema_history";

/// The single-tenant baseline app (see the module's doc) on a loopback port, until `stop` is
/// sent or dropped.
async fn single_tenant_app(
    url: &secrecy::SecretString,
    pool_size: usize,
) -> anyhow::Result<(std::net::SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    use axum::http::StatusCode;
    use axum::response::IntoResponse as _;
    let config: tokio_postgres::Config = url.expose_secret().parse()?;
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(pool_size)
        .build()?;
    let health = |axum::extract::State(pool): axum::extract::State<deadpool_postgres::Pool>| async move {
        let Ok(client) = pool.get().await else {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        };
        match client.query_one(HEALTH_QUERY, &[]).await {
            Ok(row) => axum::Json(serde_json::json!({
                "tenant": "baseline",
                "schema_version": row.get::<_, i32>(0),
            }))
            .into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    };
    let app = axum::Router::new()
        .route("/api/v1/health", axum::routing::get(health))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((address, stop))
}

/// A tenant's own database URL, opened from the control plane.
async fn tenant_url(
    store: &control_plane::Store,
    keyring: &Keyring,
    slug: &str,
) -> anyhow::Result<secrecy::SecretString> {
    let tenant = store.tenant_by_slug(slug).await?.context("tenant")?;
    Ok(keyring.open(
        Purpose::TenantDatabaseUrl,
        tenant.id,
        tenant.sealed_database_url.as_ref().context("sealed")?,
    )?)
}

/// Bare connections to `slugs`' databases, `each` per tenant.
async fn bare_clients(
    store: &control_plane::Store,
    keyring: &Keyring,
    slugs: &[String],
    each: usize,
) -> anyhow::Result<Vec<tokio_postgres::Client>> {
    let mut clients = Vec::new();
    for slug in slugs {
        let url = tenant_url(store, keyring, slug).await?;
        for _ in 0..each {
            let (client, connection) =
                tokio_postgres::connect(url.expose_secret(), tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            clients.push(client);
        }
    }
    Ok(clients)
}

/// The system allocator, counting the bytes live on the heap: resident memory cannot measure a
/// few kilobytes per tenant (the allocator reuses what earlier phases freed).
struct CountingAllocator;

static LIVE_HEAP_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            LIVE_HEAP_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed on unchanged.
        unsafe { System.dealloc(pointer, layout) };
        LIVE_HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            LIVE_HEAP_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Bytes live on this process's heap.
fn heap_bytes() -> u64 {
    LIVE_HEAP_BYTES.load(Ordering::Relaxed) as u64
}

async fn run(args: &Args, big: &EmbeddedPostgres, small: &EmbeddedPostgres) -> anyhow::Result<()> {
    let mut defaults = bench_settings(big)?;
    defaults.provisioning.concurrency = 8;
    // The throughput phases measure routing, not the rate limit; every pool may stay warm.
    let mut settings = defaults.clone();
    settings.router.tenant_requests_per_second = 0;
    settings.router.connection_budget = Some(u32::try_from(args.tenants + 100).unwrap_or(u32::MAX));
    let started = bootstrap(settings.clone(), &|line| eprintln!("{line}")).await?;
    let (store, keyring) = (started.store.clone(), started.keyring.clone());
    // Room for every tenant of this run on the big server (the default host holds 1000).
    let (client, connection) = tokio_postgres::connect(
        big.superuser_url("silo").expose_secret(),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(connection);
    client
        .execute("UPDATE database_hosts SET capacity = 1000000", &[])
        .await?;
    drop(client);
    let silo = start(&settings, &store, &keyring).await?;
    let address = silo.address;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.workers * 2)
        .build()?;

    let round_robin: Vec<String> = (0..args.tenants).map(|i| format!("r{i:05}")).collect();
    let cold: Vec<String> = (0..args.cold * 2).map(|i| format!("c{i:05}")).collect();
    let quiet: Vec<String> = (0..100).map(|i| format!("q{i:05}")).collect();
    let mut everyone = round_robin.clone();
    everyone.extend(cold.iter().cloned());
    everyone.extend(quiet.iter().cloned());
    everyone.push("noisy".to_owned());
    eprintln!("creating {} tenants through the signup API", everyone.len());
    let took = create_tenants(&http, address, &everyone, 8).await?;
    eprintln!("created in {:.1} s", took.as_secs_f64());
    let host_of = |slug: &str| format!("{slug}.localhost");

    // 1. Cold first requests against bare connects, each on tenants never touched before.
    eprintln!("cold: first requests and bare connects");
    let (floor_slugs, cold_slugs) = cold.split_at(args.cold);
    let mut floor = Vec::new();
    for slug in floor_slugs {
        let url = tenant_url(&store, &keyring, slug).await?;
        let connected = Instant::now();
        let (client, connection) =
            tokio_postgres::connect(url.expose_secret(), tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        client
            .query_one(
                "SELECT coalesce(max(version), 0) FROM silo_schema_history",
                &[],
            )
            .await?;
        floor.push(connected.elapsed());
    }
    let mut first = Vec::new();
    for slug in cold_slugs {
        let sent = Instant::now();
        let response = http
            .get(format!("http://{address}/api/v1/health"))
            .header("host", host_of(slug))
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "cold {slug}: {}",
            response.status()
        );
        first.push(sent.elapsed());
    }
    let median = |samples: &mut Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2].as_secs_f64() * 1000.0
    };
    let (floor_ms, cold_ms) = (median(&mut floor), median(&mut first));

    // 2. One tenant, then many round robin (every pool warmed first, memory measured meanwhile).
    eprintln!("one tenant at full speed");
    let duration = Duration::from_secs(args.seconds);
    let one = Arc::new(vec![host_of(&round_robin[0])]);
    drive(
        &http,
        address,
        one.clone(),
        args.workers,
        Duration::from_secs(1),
    )
    .await;
    let single = drive(&http, address, one, args.workers, duration).await;
    eprintln!("warming {} tenants", round_robin.len());
    let hosts: Arc<Vec<String>> = Arc::new(round_robin.iter().map(|s| host_of(s)).collect());
    let before = heap_bytes();
    for host in hosts.iter() {
        let response = http
            .get(format!("http://{address}/api/v1/health"))
            .header("host", host)
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == 200,
            "warming {host}: {}",
            response.status()
        );
    }
    let per_tenant = (heap_bytes().saturating_sub(before)) as f64 / round_robin.len() as f64;
    eprintln!("{} tenants round robin", round_robin.len());
    let many = drive(&http, address, hosts, args.workers, duration).await;

    let _ = silo.stop.send(());
    silo.task.await??;

    // The floor of phase 2: bare connections, one tenant (as many connections as its pool) and
    // every tenant (one each), same workers, no router.
    eprintln!(
        "floor: bare connections, one tenant then {} round robin",
        round_robin.len()
    );
    let pool_size = defaults.router.pool_max_size;
    let one_bare = Arc::new(bare_clients(&store, &keyring, &round_robin[..1], pool_size).await?);
    let single_floor = drive_bare(one_bare, args.workers, duration).await;
    eprintln!("single-tenant baseline app");
    let (baseline_address, baseline_stop) = single_tenant_app(
        &tenant_url(&store, &keyring, &round_robin[0]).await?,
        pool_size,
    )
    .await?;
    let only = Arc::new(vec![host_of(&round_robin[0])]);
    drive(
        &http,
        baseline_address,
        only.clone(),
        args.workers,
        Duration::from_secs(1),
    )
    .await;
    let baseline = drive(&http, baseline_address, only, args.workers, duration).await;
    let _ = baseline_stop.send(());
    let all_bare = Arc::new(bare_clients(&store, &keyring, &round_robin, 1).await?);
    let many_floor = drive_bare(all_bare.clone(), args.workers, duration).await;
    drop(all_bare);

    // 3. Noisy neighbour, on a router with default settings (per-tenant rate limit on).
    eprintln!("noisy neighbour");
    let fair = start(&defaults, &store, &keyring).await?;
    let quiet_hosts: Arc<Vec<String>> = Arc::new(quiet.iter().map(|s| host_of(s)).collect());
    let quiet_workers = (args.workers / 4).max(2);
    drive(
        &http,
        fair.address,
        quiet_hosts.clone(),
        quiet_workers,
        Duration::from_secs(1),
    )
    .await;
    let alone = drive(
        &http,
        fair.address,
        quiet_hosts.clone(),
        quiet_workers,
        duration,
    )
    .await;
    let noisy_hosts = Arc::new(vec![host_of("noisy")]);
    let (beside, noise) = tokio::join!(
        drive(&http, fair.address, quiet_hosts, quiet_workers, duration),
        drive(&http, fair.address, noisy_hosts, args.workers, duration),
    );
    let _ = fair.stop.send(());
    fair.task.await??;

    // 4. A crowd of tenants on a server with max_connections = 50.
    eprintln!(
        "crowd: {} tenants on a server with max_connections = 50",
        args.crowd
    );
    store
        .add_host(
            &keyring,
            "small",
            &small.superuser_url("postgres"),
            1_000_000,
            "bench",
        )
        .await?;
    for host in store.hosts().await? {
        if host.name != "small" {
            store
                .set_host_status(&host.name, "draining", "bench")
                .await?;
        }
    }
    let crowd_silo = start(&defaults, &store, &keyring).await?;
    let crowd: Vec<String> = (0..args.crowd).map(|i| format!("m{i:05}")).collect();
    let took = create_tenants(&http, crowd_silo.address, &crowd, 8).await?;
    eprintln!("crowd created in {:.1} s", took.as_secs_f64());
    let _ = crowd_silo.stop.send(());
    crowd_silo.task.await??;
    // A fresh router (no pools yet), default budget: half of the server's usable connections.
    let router = start(&defaults, &store, &keyring).await?;
    let watching = Arc::new(AtomicBool::new(true));
    let most = Arc::new(AtomicI64::new(0));
    let watcher = {
        let (watching, most) = (watching.clone(), most.clone());
        let (client, connection) = tokio_postgres::connect(
            small.superuser_url("postgres").expose_secret(),
            tokio_postgres::NoTls,
        )
        .await?;
        tokio::spawn(connection);
        tokio::spawn(async move {
            while watching.load(Ordering::Relaxed) {
                if let Ok(row) = client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'silo-router'",
                        &[],
                    )
                    .await
                {
                    most.fetch_max(row.get(0), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let crowd_hosts: Arc<Vec<String>> = Arc::new(crowd.iter().map(|s| host_of(s)).collect());
    let crowded = drive(
        &http,
        router.address,
        crowd_hosts,
        args.workers,
        duration * 2,
    )
    .await;
    watching.store(false, Ordering::Relaxed);
    let _ = watcher.await;
    let metrics = http
        .get(format!("http://{}/metrics", router.address))
        .header("host", "localhost")
        .send()
        .await?
        .text()
        .await?;
    let _ = router.stop.send(());
    router.task.await??;
    let budget = metrics
        .lines()
        .filter(|line| line.starts_with("silo_router_host_connection_budget{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, f64::max);

    // The report.
    let tenants = round_robin.len();
    println!(
        "\n### Router benchmark (release build, {} load workers over loopback, {} s per phase)\n",
        args.workers, args.seconds
    );
    println!("{LOAD_HEADER}");
    println!(
        "{}",
        single_floor.row(
            "floor: 1 tenant, bare connections",
            "same query, no HTTP, no router"
        )
    );
    println!(
        "{}",
        baseline.row(
            "baseline: a single-tenant app",
            "axum + one deadpool pool, same query, same database, no Silo"
        )
    );
    println!("{}", single.row("1 tenant", "one warm pool"));
    println!(
        "{}",
        many_floor.row(
            &format!("floor: {tenants} tenants, bare connections"),
            "one connection each, round robin"
        )
    );
    println!(
        "{}",
        many.row(&format!("{tenants} tenants round robin"), "every pool warm")
    );
    println!(
        "{}",
        alone.row(
            "100 quiet tenants alone",
            "default settings (Starter plan: 50 req/s per tenant)"
        )
    );
    println!(
        "{}",
        beside.row("100 quiet tenants beside a noisy one", "same load")
    );
    println!(
        "{}",
        noise.row("the noisy tenant", "full speed; 429s above its rate")
    );
    println!(
        "{}",
        crowded.row(
            &format!("{} tenants on one server, max_connections 50", args.crowd),
            "fresh router, default budget"
        )
    );
    println!("\n| measure | value |\n|---|---|");
    println!(
        "| bare connect + query (floor), median of {} | {floor_ms:.2} ms |",
        args.cold
    );
    println!(
        "| cold first request through Silo, median of {} | {cold_ms:.2} ms |",
        args.cold
    );
    println!(
        "| router heap per cached idle tenant (live heap growth / {tenants}: entry, pool, one idle connection) | {:.1} KB |",
        per_tenant / 1024.0
    );
    println!(
        "| crowd: most router connections in pg_stat_activity | {} (budget {budget}) |",
        most.load(Ordering::Relaxed)
    );
    let ratio = |a: f64, b: f64| a / b.max(f64::EPSILON);
    let throughput = ratio(many.per_second(), single.per_second());
    let p99 = ratio(many.quantile_ms(0.99), single.quantile_ms(0.99));
    let cold_ratio = ratio(cold_ms, floor_ms);
    let quiet_ratio = ratio(beside.quantile_ms(0.99), alone.quantile_ms(0.99));
    let yes = |met: bool| if met { "yes" } else { "no" };
    let floor_throughput = ratio(many_floor.per_second(), single_floor.per_second());
    let floor_p99 = ratio(many_floor.quantile_ms(0.99), single_floor.quantile_ms(0.99));
    println!(
        "\nThe same step on bare connections (PostgreSQL alone): {tenants} tenants give \
         {floor_throughput:.2}× one tenant's throughput and {floor_p99:.2}× its p99."
    );
    println!("\n| target | measured | met |\n|---|---|---|");
    let against_baseline = ratio(single.per_second(), baseline.per_second());
    let against_floor = ratio(many.per_second(), many_floor.per_second());
    let p99_against_floor = ratio(many.quantile_ms(0.99), many_floor.quantile_ms(0.99));
    println!(
        "| 1 tenant ≥ 0.85× the single-tenant baseline app | {against_baseline:.2}× | {} |",
        yes(against_baseline >= 0.85)
    );
    println!(
        "| {tenants} tenants ≥ 0.8× the bare {tenants}-connection floor, p99 ≤ 1.5× the floor's | {against_floor:.2}×, p99 {p99_against_floor:.2}× | {} |",
        yes(against_floor >= 0.8 && p99_against_floor <= 1.5)
    );
    println!(
        "| {tenants} tenants ≥ 0.9× one tenant's throughput | {throughput:.2}× | {} |",
        yes(throughput >= 0.9)
    );
    println!(
        "| {tenants} tenants p99 ≤ 1.5× one tenant's | {p99:.2}× | {} |",
        yes(p99 <= 1.5)
    );
    println!(
        "| cold first request ≤ 2× bare connect | {cold_ratio:.2}× | {} |",
        yes(cold_ratio <= 2.0)
    );
    println!(
        "| crowd: zero errors, never over budget | {} errors, max {} of {budget} | {} |",
        crowded.errors(),
        most.load(Ordering::Relaxed),
        yes(crowded.errors() == 0 && (most.load(Ordering::Relaxed) as f64) <= budget)
    );
    println!(
        "| quiet p99 beside a noisy tenant ≤ 1.5× alone | {quiet_ratio:.2}× | {} |",
        yes(quiet_ratio <= 1.5)
    );
    println!(
        "| memory per cached idle tenant ≤ 16 KB | {:.1} KB | {} |",
        per_tenant / 1024.0,
        yes(per_tenant <= 16.0 * 1024.0)
    );
    Ok(())
}
