//! `edges` — whether abuse at the HTTP edge reaches the users it must not, on a private cluster,
//! in one run. Default settings except the header timeout (`--header-timeout`).
//!
//! Two probes run through every phase, paced (open loop), each over its own keep-alive client:
//! a *quiet tenant*'s owner reading `GET /api/v1/me` 50 times a second (its latency), and a
//! *signed-in owner* of the tenant under attack doing the same 10 times a second (its success
//! rate). Phases, each `--seconds` long:
//!
//! 1. alone: the probes only (the floor for the quiet tenant's p99);
//! 2. slow-loris: `--slow-sockets` connections that send half a request head and then a byte a
//!    second; each must be closed within the header timeout;
//! 3. slow bodies: `--slow-bodies` sign-ins over `--tenants` tenants that send their headers and
//!    half their body, then nothing;
//! 4. anonymous flood: `--flood-rate` anonymous requests a second at the attacked tenant;
//! 5. bad logins: `--bad-logins` concurrent wrong-password sign-ins over `--tenants` tenants,
//!    again as soon as each is answered — sent by a second process (this binary, re-run as the
//!    generator), so the server's runtime does not also run the 100 login loops (earlier runs
//!    ran them in this process).
//!
//! Memory is this process's resident set (Silo runs in it, beside the load generator).
//! Targets: quiet p99 within 1.5× of alone, every signed-in request answered 200, memory within
//! +100 MB, every slow socket closed within the header timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use control_plane::embedded_postgres::{ClusterOptions, EmbeddedPostgres};
use silo::bootstrap::bootstrap;
use silo_bench::{bench_settings, create_tenants, start};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Edges benchmark: prints a markdown table, one row per phase.
#[derive(Debug, Parser)]
struct Args {
    /// Tenants the slow bodies and bad logins are spread over.
    #[arg(long, default_value_t = 25)]
    tenants: usize,
    /// Slow-loris sockets.
    #[arg(long, default_value_t = 1000)]
    slow_sockets: usize,
    /// Half-sent sign-in bodies.
    #[arg(long, default_value_t = 100)]
    slow_bodies: usize,
    /// Anonymous requests per second at the attacked tenant.
    #[arg(long, default_value_t = 2000)]
    flood_rate: u64,
    /// Concurrent wrong-password sign-ins.
    #[arg(long, default_value_t = 100)]
    bad_logins: usize,
    /// Seconds per phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The server's header-read timeout, in seconds (its default is 10).
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Keep the benchmark cluster directory afterwards.
    #[arg(long)]
    keep: bool,
    /// (Internal) run only as the bad-login generator against `--target`: these tenant hosts,
    /// for `--seconds`; prints the answers by status as JSON.
    #[arg(long, hide = true, value_delimiter = ',')]
    generate_bad_logins: Option<Vec<String>>,
    /// (Internal) the server the generator sends to.
    #[arg(long, hide = true)]
    target: Option<std::net::SocketAddr>,
}

const PASSWORD: &str = "violet tram oyster gravel";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let (Some(victims), Some(address)) = (&args.generate_bad_logins, args.target) {
        return generate_bad_logins(&args, address, victims).await;
    }
    let options = ClusterOptions {
        max_connections: 200,
        ephemeral: true,
    };
    silo_bench::on_private_cluster("edges", options, args.keep, async |cluster| {
        run(&args, cluster).await
    })
    .await
}

/// Where the load goes.
struct Target {
    address: std::net::SocketAddr,
    quiet_host: String,
    quiet_token: String,
    attacked_host: String,
    attacked_token: String,
    victims: Vec<String>,
}

/// What the probes saw during one phase.
struct Probed {
    quiet: Vec<Duration>,
    quiet_failed: u64,
    signed_in_ok: u64,
    signed_in_total: u64,
    peak_rss_mb: f64,
}

async fn run(args: &Args, cluster: &EmbeddedPostgres) -> anyhow::Result<()> {
    let mut settings = bench_settings(cluster)?;
    settings.http.header_read_timeout = Duration::from_secs(args.header_timeout);
    let started = bootstrap(settings.clone(), &|line| eprintln!("{line}")).await?;
    let silo = start(&settings, &started.store, &started.keyring).await?;
    let address = silo.address;
    let http = client()?;
    let mut slugs = vec!["edge-quiet".to_owned(), "edge-attacked".to_owned()];
    slugs.extend((0..args.tenants).map(|index| format!("edge-victim-{index:02}")));
    eprintln!("signing up {} tenants", slugs.len());
    create_tenants(&http, address, &slugs, 4).await?;
    let host = |slug: &str| format!("{slug}.localhost");
    let target = Arc::new(Target {
        address,
        quiet_host: host("edge-quiet"),
        quiet_token: sign_in(&http, address, "edge-quiet").await?,
        attacked_host: host("edge-attacked"),
        attacked_token: sign_in(&http, address, "edge-attacked").await?,
        victims: slugs[2..].iter().map(|slug| host(slug)).collect(),
    });
    let phase = Duration::from_secs(args.seconds);
    let header_timeout = Duration::from_secs(args.header_timeout);
    // Warm the probes' pools and code paths.
    probe(&target, Duration::from_secs(2)).await?;
    let rss_before = rss_mb();

    println!(
        "\n### Edges under abuse ({}s a phase; quiet tenant probed 50/s, signed-in owner of the attacked tenant 10/s)\n",
        args.seconds
    );
    println!(
        "| phase | quiet p50 ms | quiet p99 ms | p99 / alone | signed-in 200s | peak RSS MB (Δ) | note |"
    );
    println!("|---|---|---|---|---|---|---|");
    let alone = probe(&target, phase).await?;
    let alone_p99 = quantile_ms(&alone.quiet, 0.99);
    let print = |name: &str, probed: &Probed, note: String| {
        let p99 = quantile_ms(&probed.quiet, 0.99);
        println!(
            "| {name} | {:.2} | {p99:.2} | {:.2}× | {}/{} | {:.0} ({:+.0}) | {note}{} |",
            quantile_ms(&probed.quiet, 0.5),
            p99 / alone_p99.max(f64::EPSILON),
            probed.signed_in_ok,
            probed.signed_in_total,
            probed.peak_rss_mb,
            probed.peak_rss_mb - rss_before,
            if probed.quiet_failed > 0 {
                format!("; {} quiet requests failed", probed.quiet_failed)
            } else {
                String::new()
            },
        );
    };
    print("alone", &alone, String::new());

    // Slow-loris: the sockets open as the phase starts; each records when the server closed it.
    let sockets = (0..args.slow_sockets)
        .map(|_| tokio::spawn(slow_loris(address, header_timeout * 3)))
        .collect::<Vec<_>>();
    let probed = probe(&target, phase).await?;
    let mut closed_within = 0;
    let mut slowest = Duration::ZERO;
    for socket in sockets {
        if let Ok(Some(lived)) = socket.await {
            slowest = slowest.max(lived);
            if lived <= header_timeout + Duration::from_millis(500) {
                closed_within += 1;
            }
        }
    }
    print(
        &format!("{} slow-loris sockets", args.slow_sockets),
        &probed,
        format!(
            "{closed_within}/{} closed within the {}s header timeout (+0.5s); slowest {:.1}s",
            args.slow_sockets,
            args.header_timeout,
            slowest.as_secs_f64()
        ),
    );

    // Half-sent sign-in bodies, held open through the phase.
    let mut held = Vec::new();
    for index in 0..args.slow_bodies {
        let victim = &target.victims[index % target.victims.len()];
        held.push(half_sent_sign_in(address, victim).await?);
    }
    let probed = probe(&target, phase).await?;
    drop(held);
    print(
        &format!(
            "{} half-sent sign-ins over {} tenants",
            args.slow_bodies,
            target.victims.len()
        ),
        &probed,
        String::new(),
    );

    // The anonymous flood at the attacked tenant.
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flood = tokio::spawn(flood(
        target.clone(),
        args.flood_rate,
        stop.clone(),
        sent.clone(),
        refused.clone(),
    ));
    let probed = probe(&target, phase).await?;
    stop.store(true, Ordering::Release);
    let _ = flood.await;
    print(
        &format!("{} anonymous requests/s at one tenant", args.flood_rate),
        &probed,
        format!(
            "{} sent, {} answered 429",
            sent.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed)
        ),
    );

    // Wrong-password sign-ins, each again as soon as it is answered: from another process.
    let generator = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--generate-bad-logins")
        .arg(target.victims.join(","))
        .arg("--target")
        .arg(target.address.to_string())
        .arg("--seconds")
        .arg(args.seconds.to_string())
        .arg("--bad-logins")
        .arg(args.bad_logins.to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let probed = probe(&target, phase).await?;
    let output = generator.wait_with_output().await?;
    let counted: std::collections::BTreeMap<u16, u64> =
        serde_json::from_slice(&output.stdout).context("the generator's answers")?;
    print(
        &format!(
            "{} concurrent bad logins (from another process)",
            args.bad_logins
        ),
        &probed,
        format!("answers: {}", answers_text(&counted)),
    );

    let _ = silo.stop.send(());
    let _ = silo.task.await;
    Ok(())
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?)
}

async fn sign_in(
    http: &reqwest::Client,
    address: std::net::SocketAddr,
    slug: &str,
) -> anyhow::Result<String> {
    let answer: serde_json::Value = http
        .post(format!("http://{address}/api/v1/auth/login"))
        .header("host", format!("{slug}.localhost"))
        .json(&serde_json::json!({"email": format!("owner@{slug}.test"), "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    Ok(answer["token"]
        .as_str()
        .context("a session token")?
        .to_owned())
}

/// Runs both probes for `length`: the quiet tenant at 50/s, the attacked tenant's owner at 10/s.
async fn probe(target: &Arc<Target>, length: Duration) -> anyhow::Result<Probed> {
    let deadline = Instant::now() + length;
    let spawn_probe = |quiet: bool, per_second: u64| {
        let target = target.clone();
        tokio::spawn(async move {
            let (host, token) = if quiet {
                (&target.quiet_host, &target.quiet_token)
            } else {
                (&target.attacked_host, &target.attacked_token)
            };
            paced(&target, host, token, per_second, deadline).await
        })
    };
    let quiet = spawn_probe(true, 50);
    let signed_in = spawn_probe(false, 10);
    let mut peak_rss_mb = rss_mb();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        peak_rss_mb = peak_rss_mb.max(rss_mb());
    }
    let (quiet, quiet_failed) = quiet.await??;
    let (signed_in, signed_in_failed) = signed_in.await??;
    let signed_in_ok = signed_in.len() as u64;
    Ok(Probed {
        quiet,
        quiet_failed,
        signed_in_ok,
        signed_in_total: signed_in_ok + signed_in_failed,
        peak_rss_mb,
    })
}

/// `GET /api/v1/me` `per_second` times a second until `deadline`, each on time whatever the
/// last one took (open loop, so a slow server cannot slow the probe): latencies of the 200s,
/// and how many were not 200.
async fn paced(
    target: &Target,
    host: &str,
    token: &str,
    per_second: u64,
    deadline: Instant,
) -> anyhow::Result<(Vec<Duration>, u64)> {
    let http = client()?;
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / per_second));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = tokio::task::JoinSet::new();
    while Instant::now() < deadline {
        ticks.tick().await;
        let request = http
            .get(format!("http://{}/api/v1/me", target.address))
            .header("host", host)
            .bearer_auth(token);
        requests.spawn(async move {
            let started = Instant::now();
            let ok = match request.send().await {
                Ok(response) => response.status() == 200 && response.bytes().await.is_ok(),
                Err(_) => false,
            };
            (ok, started.elapsed())
        });
    }
    let (mut latencies, mut failed) = (Vec::new(), 0);
    while let Some(joined) = requests.join_next().await {
        match joined? {
            (true, latency) => latencies.push(latency),
            (false, _) => failed += 1,
        }
    }
    latencies.sort();
    Ok((latencies, failed))
}

/// One slow-loris socket: half a request head, then a byte a second, until the server closes
/// it (how long it lived since its first bytes were sent — when the header timeout starts) or
/// `give_up` passes (`None`).
async fn slow_loris(address: std::net::SocketAddr, give_up: Duration) -> Option<Duration> {
    let mut socket = TcpStream::connect(address).await.ok()?;
    socket
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: edge-quiet.localhost\r\n")
        .await
        .ok()?;
    let opened = Instant::now();
    let mut buffer = [0_u8; 1024];
    while opened.elapsed() < give_up {
        tokio::select! {
            read = socket.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return Some(opened.elapsed()),
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if socket.write_all(b"X").await.is_err() {
                    return Some(opened.elapsed());
                }
            }
        }
    }
    None
}

/// A sign-in whose headers and half its body are sent, and then nothing.
async fn half_sent_sign_in(address: std::net::SocketAddr, host: &str) -> anyhow::Result<TcpStream> {
    let mut socket = TcpStream::connect(address).await?;
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: 200\r\n\r\n{{\"email\":"
    );
    socket.write_all(head.as_bytes()).await?;
    Ok(socket)
}

/// Anonymous `GET /api/v1/branding` at the attacked tenant, `per_second` a second, until `stop`.
async fn flood(
    target: Arc<Target>,
    per_second: u64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
) {
    let Ok(http) = client() else { return };
    // Ticks of 10 ms, each sending its share, so the rate holds without a timer per request.
    let per_tick = (per_second / 100).max(1);
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    let mut requests = tokio::task::JoinSet::new();
    while !stop.load(Ordering::Acquire) {
        ticks.tick().await;
        for _ in 0..per_tick {
            let request = http
                .get(format!("http://{}/api/v1/branding", target.address))
                .header("host", &target.attacked_host);
            let refused = refused.clone();
            requests.spawn(async move {
                if let Ok(response) = request.send().await
                    && response.status() == 429
                {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            });
            sent.fetch_add(1, Ordering::Relaxed);
        }
        while requests.try_join_next().is_some() {}
    }
    while requests.join_next().await.is_some() {}
}

fn answers_text(answers: &std::collections::BTreeMap<u16, u64>) -> String {
    answers
        .iter()
        .map(|(status, count)| format!("{count}× {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The generator process: `--bad-logins` loops of wrong-password sign-ins over `victims` at
/// `address` for `--seconds`, then the answers by status as JSON on stdout.
async fn generate_bad_logins(
    args: &Args,
    address: std::net::SocketAddr,
    victims: &[String],
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let logins = (0..args.bad_logins)
        .map(|index| {
            tokio::spawn(bad_logins(
                address,
                victims[index % victims.len()].clone(),
                stop.clone(),
                answers.clone(),
            ))
        })
        .collect::<Vec<_>>();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Release);
    for login in logins {
        let _ = login.await;
    }
    let answers = answers
        .lock()
        .map(|answers| answers.clone())
        .unwrap_or_default();
    println!("{}", serde_json::to_string(&answers)?);
    Ok(())
}

/// Wrong-password sign-ins at `host`, one after another, until `stop`; counts answers by status.
async fn bad_logins(
    address: std::net::SocketAddr,
    host: String,
    stop: Arc<AtomicBool>,
    answers: Arc<std::sync::Mutex<std::collections::BTreeMap<u16, u64>>>,
) {
    let Ok(http) = client() else { return };
    let slug = host.trim_end_matches(".localhost");
    while !stop.load(Ordering::Acquire) {
        let status = http
            .post(format!("http://{address}/api/v1/auth/login"))
            .header("host", &host)
            .json(&serde_json::json!({
                "email": format!("owner@{slug}.test"),
                "password": "not the password at all",
            }))
            .send()
            .await
            .map_or(0, |response| response.status().as_u16());
        if let Ok(mut answers) = answers.lock() {
            *answers.entry(status).or_default() += 1;
        }
        if status == 429 || status == 503 {
            // Refused: wait as a client told to would, briefly.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn quantile_ms(sorted: &[Duration], quantile: f64) -> f64 {
    let index = ((sorted.len().saturating_sub(1)) as f64 * quantile).round() as usize;
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// This process's resident set, in MB (Linux).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
