//! `pages` — what the back office's server-rendered pages cost beside the same data read as
//! JSON through the API, on one tenant with 10,000 items (warm pool, one client, over
//! loopback). Each row is `--requests` sequential requests; the latency is the whole request
//! as the client sees it on loopback, so it is the server's time plus a loopback round trip.
//!
//! Pairs: the items page (50 a page) against `GET /api/v1/items?limit=50`; the item search page
//! against the API's search; the dashboard (today's sales, low stock, recent purchases) against
//! the API's low-stock read, the nearest single JSON read of the same tables, and against the
//! reads an API client makes for what the dashboard shows: today's sales report, then the low
//! stock (the API has no list of purchases, so the dashboard's third read has no JSON twin).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use control_plane::embedded_postgres::{ClusterOptions, EmbeddedPostgres};
use control_plane::{Keyring, Purpose};
use secrecy::ExposeSecret as _;
use silo::bootstrap::bootstrap;
use silo_bench::{bench_settings, create_tenants, start};

/// Pages benchmark: prints a markdown table of each page beside its JSON read.
#[derive(Debug, Parser)]
struct Args {
    /// Items in the tenant's catalogue.
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Requests per row.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Keep the benchmark cluster directory afterwards.
    #[arg(long)]
    keep: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = ClusterOptions {
        max_connections: 100,
        ephemeral: true,
    };
    silo_bench::on_private_cluster("pages", options, args.keep, async |cluster| {
        run(&args, cluster).await
    })
    .await
}

/// One row: `requests` rounds of sequential GETs of `paths` with `auth` (a header), every one
/// `200`; each latency is a whole round.
async fn measure(
    http: &reqwest::Client,
    address: std::net::SocketAddr,
    host: &str,
    paths: &[String],
    auth: (&str, &str),
    requests: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let started = Instant::now();
        for path in paths {
            let response = http
                .get(format!("http://{address}{path}"))
                .header("host", host)
                .header(auth.0, auth.1)
                .send()
                .await?;
            let status = response.status();
            let body = response.bytes().await?;
            anyhow::ensure!(status == 200, "{path} answered {status}");
            anyhow::ensure!(!body.is_empty(), "{path} answered nothing");
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

fn quantile_ms(sorted: &[Duration], quantile: f64) -> f64 {
    let index = ((sorted.len().saturating_sub(1)) as f64 * quantile).round() as usize;
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn run(args: &Args, cluster: &EmbeddedPostgres) -> anyhow::Result<()> {
    let mut settings = bench_settings(cluster)?;
    settings.router.tenant_requests_per_second = 0;
    let started = bootstrap(settings.clone(), &|line| eprintln!("{line}")).await?;
    let (store, keyring) = (started.store.clone(), started.keyring.clone());
    let silo = start(&settings, &store, &keyring).await?;
    let address = silo.address;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let slug = "bench-pharmacy";
    create_tenants(&http, address, &[slug.to_owned()], 1).await?;
    fill(&store, &keyring, slug, args.items).await?;
    // The dashboard's data through the API includes the sales report, which Starter lacks.
    let tenant = store.tenant_by_slug(slug).await?.context("tenant")?;
    store.set_plan(tenant.id, "professional", "bench").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let host = format!("{slug}.localhost");
    let token = sign_in(&http, address, &host, slug).await?;
    let bearer = format!("Bearer {token}");
    let cookie = format!("silo_session={token}");
    let (api, page) = (
        ("authorization", bearer.as_str()),
        ("cookie", cookie.as_str()),
    );
    let probe = format!("Item {:05}", args.items / 2);
    let search_query = probe.replace(' ', "+");
    let today = chrono::Utc::now().date_naive();
    let pairs: [(&str, String, Vec<String>); 4] = [
        (
            "items list, first 50",
            "/items".to_owned(),
            vec!["/api/v1/items?limit=50".to_owned()],
        ),
        (
            "item search",
            format!("/items?q={search_query}"),
            vec![format!("/api/v1/items?limit=50&q={search_query}")],
        ),
        (
            "dashboard",
            "/".to_owned(),
            vec!["/api/v1/stock?low=true".to_owned()],
        ),
        (
            "dashboard, beside its data read through the API",
            "/".to_owned(),
            vec![
                format!("/api/v1/reports/sales?from={today}&to={today}"),
                "/api/v1/stock?low=true".to_owned(),
            ],
        ),
    ];
    // Warm the pool, the caches and both code paths.
    for (_, page_path, api_paths) in &pairs {
        measure(
            &http,
            address,
            &host,
            std::slice::from_ref(page_path),
            page,
            20,
        )
        .await?;
        measure(&http, address, &host, api_paths, api, 20).await?;
    }
    println!(
        "\n### Pages beside JSON ({} items, {} sequential requests per row, one tenant, warm pool)\n",
        args.items, args.requests
    );
    println!("| read | page p50 ms | page p99 ms | JSON p50 ms | JSON p99 ms | page / JSON p50 |");
    println!("|---|---|---|---|---|---|");
    for (name, page_path, api_paths) in &pairs {
        let pages = measure(
            &http,
            address,
            &host,
            std::slice::from_ref(page_path),
            page,
            args.requests,
        )
        .await?;
        let json = measure(&http, address, &host, api_paths, api, args.requests).await?;
        let (page_p50, json_p50) = (quantile_ms(&pages, 0.5), quantile_ms(&json, 0.5));
        let api_shown = api_paths
            .iter()
            .map(|path| format!("`{path}`"))
            .collect::<Vec<_>>()
            .join(" + ");
        println!(
            "| {name} (`{page_path}` vs {api_shown}) | {page_p50:.2} | {:.2} | {json_p50:.2} | {:.2} | {:.2}× |",
            quantile_ms(&pages, 0.99),
            quantile_ms(&json, 0.99),
            page_p50 / json_p50.max(f64::EPSILON),
        );
    }
    let _ = silo.stop.send(());
    let _ = silo.task.await;
    Ok(())
}

/// `items` items (every tenth at or below its reorder level), stock for each in the main
/// branch, and a day of sales, written straight into the tenant's database.
async fn fill(
    store: &control_plane::Store,
    keyring: &Keyring,
    slug: &str,
    items: usize,
) -> anyhow::Result<()> {
    let tenant = store.tenant_by_slug(slug).await?.context("tenant")?;
    let url = keyring.open(
        Purpose::TenantDatabaseUrl,
        tenant.id,
        tenant.sealed_database_url.as_ref().context("sealed")?,
    )?;
    let (client, connection) =
        tokio_postgres::connect(url.expose_secret(), tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let count = i64::try_from(items)?;
    client.batch_execute("SET synchronous_commit = off").await?;
    client
        .execute(
            "INSERT INTO items (sku, name, sale_price_cents, cost_price_cents, reorder_level) \
             SELECT 'SKU' || lpad(n::text, 6, '0'), 'Item ' || lpad(n::text, 5, '0'), \
                    100 + n % 900, 50 + n % 400, CASE WHEN n % 10 = 0 THEN 20 ELSE 0 END \
             FROM generate_series(1, $1::bigint) AS n",
            &[&count],
        )
        .await?;
    client
        .execute(
            "INSERT INTO stock_levels (branch_id, item_id, quantity) \
             SELECT (SELECT min(id) FROM branches), id, 5 + id % 50 FROM items",
            &[],
        )
        .await?;
    client
        .batch_execute(
            "INSERT INTO sales (branch_id, total_cents) \
             SELECT (SELECT min(id) FROM branches), 100 * n FROM generate_series(1, 200) AS n; \
             ANALYZE",
        )
        .await?;
    Ok(())
}

async fn sign_in(
    http: &reqwest::Client,
    address: std::net::SocketAddr,
    host: &str,
    slug: &str,
) -> anyhow::Result<String> {
    let answer: serde_json::Value = http
        .post(format!("http://{address}/api/v1/sessions"))
        .header("host", host)
        .json(&serde_json::json!({
            "email": format!("owner@{slug}.test"),
            "password": "violet tram oyster gravel",
        }))
        .send()
        .await?
        .json()
        .await?;
    Ok(answer["token"]
        .as_str()
        .context("a session token")?
        .to_owned())
}
