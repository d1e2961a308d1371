//! `Application`: binds its listener (port 0 in tests), reports its address, serves the apex and
//! tenant routers (following tenant changes), and optionally runs provisioning and offboarding
//! workers, until a shutdown future resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use control_plane::{Keyring, Settings, Store};
use provisioner::Provisioner;
use tenant_router::RouterState;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// File uploads (item imports) whose bodies the edge reads at once; each may hold up to
/// `tenant_app::MAX_UPLOAD_BYTES` in memory until whole.
const UPLOADS_AT_ONCE: usize = 4;

/// What an application is built from.
#[derive(Debug, Clone)]
pub struct ApplicationOptions {
    pub settings: Settings,
    pub store: Store,
    pub keyring: Arc<Keyring>,
    /// Serve HTTP (control plane and router).
    pub serve_http: bool,
    /// Run provisioning workers in this process.
    pub run_workers: bool,
    /// The tenant-schema migrations this process knows (the embedded ones, except in tests).
    pub migrations: migrator::MigrationSet,
}

pub struct Application {
    listener: Option<TcpListener>,
    address: Option<SocketAddr>,
    options: ApplicationOptions,
}

impl Application {
    /// Binds the HTTP listener (if serving HTTP); nothing runs until [`Application::run_until`].
    pub async fn build(options: ApplicationOptions) -> anyhow::Result<Self> {
        // A rule name no lint rule has stops the start, naming the setting.
        migrator::lint::LintConfig::from_settings(&options.settings.migrations)?;
        let (listener, address) = if options.serve_http {
            let listener = TcpListener::bind(options.settings.http_addr)
                .await
                .map_err(|error| {
                    anyhow::anyhow!("cannot listen on {}: {error}", options.settings.http_addr)
                })?;
            let address = listener.local_addr()?;
            (Some(listener), Some(address))
        } else {
            (None, None)
        };
        Ok(Self {
            listener,
            address,
            options,
        })
    }

    /// The bound HTTP address, when serving HTTP.
    pub fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// Runs until `shutdown` resolves, then stops taking requests and jobs and returns.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_sender, stop_receiver) = watch::channel(false);
        let mut background = Background {
            tasks: tokio::task::JoinSet::new(),
            stop: stop_receiver.clone(),
        };
        let stopped = background.stopped_fn();
        let options = self.options;

        if let Some(listener) = self.listener {
            let router_state = RouterState::new(
                options.store.clone(),
                options.keyring.clone(),
                options.settings.router.clone(),
                &options.settings.base_domain,
            );
            let base_domain: Arc<str> = options.settings.base_domain.as_str().into();
            let apex = apex::router(apex::ApexState {
                store: options.store.clone(),
                base_domain: base_domain.clone(),
                signup_limiter: Arc::new(web::ClientRateLimiter::new(
                    options.settings.signups_per_client_per_minute,
                )),
                billing: Arc::new(options.settings.billing.clone()),
                lifecycle: options.settings.lifecycle(),
            });
            let admin = admin::router(
                admin::AdminState::new(
                    options.store.clone(),
                    options.keyring.clone(),
                    options.settings.lifecycle(),
                    options.migrations.clone(),
                )
                .with_lint(migrator::lint::LintConfig::from_settings(
                    &options.settings.migrations,
                )?)
                .with_domain_resolver(domain_resolver(&options.settings.domains)),
            );
            let api_key_validation = apex::api_key_validation_router(apex::ApiKeyValidationState {
                store: options.store.clone(),
                limiter: Arc::new(web::ClientRateLimiter::new(
                    apex::API_KEY_VALIDATIONS_PER_CLIENT_PER_MINUTE,
                )),
            });
            let apex = apex
                .merge(api_key_validation)
                .merge(admin)
                .merge(tenant_router::apex_router(router_state.clone()))
                .merge(crate::openapi::router())
                .layer(axum::middleware::from_fn(web::observe::trace_route));
            let tenant_app = tenant_app::router(tenant_app::AppState {
                router: router_state.clone(),
                stripe: control_plane::stripe::StripeClient::new(&options.settings.billing),
            });
            let tenant = tenant_router::serve(tenant_app, router_state.clone());
            let probes = crate::dispatch::Probes {
                store: options.store.clone(),
                draining: Arc::new(AtomicBool::new(false)),
            };
            let draining = probes.draining.clone();
            background.until_stopped(|stop| async move {
                stop.await;
                draining.store(true, Ordering::Release);
            });
            let app = crate::dispatch::host_dispatch(base_domain, apex, tenant, probes)
                // The edge reads each body whole (bounded in size and time) before the host is
                // dispatched, so no handler or extractor of any surface runs on half a request.
                .layer(axum::middleware::from_fn_with_state(
                    web::edge::EdgeLimits {
                        max_body_bytes: web::edge::MAX_BODY_BYTES,
                        uploads: Some(web::edge::Uploads::new(
                            tenant_app::UPLOAD_PATHS,
                            tenant_app::MAX_UPLOAD_BYTES,
                            UPLOADS_AT_ONCE,
                        )),
                        body_read_timeout: options.settings.http.body_read_timeout,
                        request_timeout: options.settings.http.request_timeout,
                    },
                    web::edge::guard_request,
                ))
                // A cross-site request is refused before its body is read. Refusals are errors like
                // any other, so they too become pages for browsers: both run inside the negotiation.
                .layer(axum::middleware::from_fn(
                    web::same_origin::refuse_cross_site,
                ))
                .layer(axum::middleware::from_fn(web::negotiate::html_errors))
                .layer(axum::middleware::from_fn(web::headers::security_headers))
                // Who the client is and which host it addressed, read once through the trusted
                // proxies, for every per-address limit and every choice of host after it.
                .layer(axum::middleware::from_fn_with_state(
                    web::client::TrustedProxies::new(
                        options.settings.http.trusted_proxies.clone(),
                        options.settings.router.trust_forwarded_host,
                    ),
                    web::client::identify_client,
                ))
                .layer(tower_http_trace());
            // This router joins the fleet before it serves, so it never takes more than its
            // share of a host (it leaves once its last request is answered), and knows every
            // ended session, so it never takes a signed-out one.
            router_state.join_fleet().await;
            router_state.load_ended_sessions().await;
            let stop = stopped();
            let http = options.settings.http.clone();
            let (served, served_seen) = tokio::sync::oneshot::channel::<()>();
            background.tasks.spawn(async move {
                let result = crate::http_server::serve(listener, app, http, stop).await;
                let _ = served.send(());
                result
            });
            let fleet = router_state.clone();
            background.tasks.spawn(async move {
                fleet
                    .follow_fleet(async {
                        let _ = served_seen.await;
                    })
                    .await;
                Ok(())
            });
            let meter = router_state.clone();
            background.every(options.settings.usage.flush_interval, move || {
                let meter = meter.clone();
                async move {
                    meter.flush_usage().await;
                }
            });
            // What was counted since the last flush is not lost on shutdown.
            let meter = router_state.clone();
            background.until_stopped(|stop| async move {
                stop.await;
                meter.flush_usage().await;
            });
            let follower = router_state.clone();
            background.until_stopped(|stop| async move { follower.follow_changes(stop).await });
            background.every(Duration::from_secs(1), move || {
                let router_state = router_state.clone();
                async move { router_state.run_cache_maintenance().await }
            });
        }

        if options.run_workers {
            let provisioning = options.settings.provisioning.clone();
            let provisioner = Arc::new(
                Provisioner::new(
                    options.store.clone(),
                    options.keyring.clone(),
                    provisioning.clone(),
                )
                .with_migrations(options.migrations.clone()),
            );
            let engine = migrator::rollout::Engine::new(
                options.store.clone(),
                options.keyring.clone(),
                options.migrations.clone(),
            );
            background.until_stopped(|stop| migrator::rollout::run_rollouts(engine, stop));
            if provisioning.warm_pool > 0 {
                let (store, keyring, settings) = (
                    options.store.clone(),
                    options.keyring.clone(),
                    provisioning.clone(),
                );
                background.until_stopped(|stop| {
                    provisioner::run_warm_pool(store, keyring, settings, stop)
                });
            }
            let (store, keyring) = (options.store.clone(), options.keyring.clone());
            let (export_dir, offboarding) = (
                options.settings.export_dir(),
                options.settings.offboarding.clone(),
            );
            background.until_stopped(|stop| {
                provisioner::offboarding::run_offboarding(
                    store,
                    keyring,
                    export_dir,
                    offboarding,
                    stop,
                )
            });
            let (store, keyring) = (options.store.clone(), options.keyring.clone());
            let sample_interval = options.settings.usage.sample_interval;
            background.until_stopped(|stop| {
                provisioner::usage::run_usage_sampler(store, keyring, sample_interval, stop)
            });
            let (store, lifecycle) = (options.store.clone(), options.settings.lifecycle());
            let billing_interval = options.settings.billing.check_interval;
            background.until_stopped(|stop| {
                control_plane::subscriptions::run_billing_clock(
                    store,
                    lifecycle,
                    billing_interval,
                    stop,
                )
            });
            let pool = options.store.pool().clone();
            background.tasks.spawn(supervise(
                "provisioning",
                stop_receiver.clone(),
                move |stopped| {
                    provisioner::run_worker(
                        provisioner.clone(),
                        pool.clone(),
                        provisioning.concurrency,
                        provisioning.heartbeat_interval,
                        stopped,
                    )
                },
            ));
            let importer = Arc::new(crate::imports::Importer::new(
                options.store.clone(),
                options.keyring.clone(),
            ));
            let pool = options.store.pool().clone();
            let heartbeat = options.settings.provisioning.heartbeat_interval;
            let imports_at_once = options.settings.imports.concurrency;
            background.tasks.spawn(supervise(
                "imports",
                stop_receiver.clone(),
                move |stopped| {
                    crate::imports::run_import_worker(
                        importer.clone(),
                        pool.clone(),
                        imports_at_once,
                        heartbeat,
                        stopped,
                    )
                },
            ));
            let mailer = Arc::new(mailer(&options, self.address)?);
            let pool = options.store.pool().clone();
            let mail = provisioner::mail::MailWorkerSettings {
                concurrency: options.settings.mail.concurrency,
                max_attempts: options.settings.mail.max_attempts,
                retry_max_backoff: options.settings.mail.retry_max_backoff,
                heartbeat: options.settings.provisioning.heartbeat_interval,
            };
            background
                .tasks
                .spawn(supervise("mail", stop_receiver.clone(), move |stopped| {
                    provisioner::mail::run_mail_worker(
                        mailer.clone(),
                        pool.clone(),
                        mail.clone(),
                        stopped,
                    )
                }));
        }

        // Run until asked to stop, or until a part stops on its own (which is a failure).
        let early_exit = tokio::select! {
            () = shutdown => None,
            Some(result) = background.tasks.join_next() => Some(result),
        };
        let _ = stop_sender.send(true);
        let mut outcome: anyhow::Result<()> = match early_exit {
            None => Ok(()),
            Some(Ok(Ok(()))) => Err(anyhow::anyhow!(
                "a part of the application stopped unexpectedly"
            )),
            Some(Ok(Err(error))) => Err(error),
            Some(Err(join_error)) => Err(join_error.into()),
        };
        while let Some(result) = background.tasks.join_next().await {
            if let Err(error) = result.map_err(anyhow::Error::from).and_then(|inner| inner)
                && outcome.is_ok()
            {
                outcome = Err(error);
            }
        }
        outcome
    }
}

/// The mail worker's sender: SMTP if configured, else `.eml` files in the data dir; links to
/// workspaces on the public URL (by default this process's own port on the base domain).
fn mailer(
    options: &ApplicationOptions,
    address: Option<SocketAddr>,
) -> anyhow::Result<provisioner::mail::Mailer> {
    let settings = &options.settings;
    let outbox = provisioner::mail::Outbox::new(
        settings.mail.smtp_url.as_ref(),
        &settings.mail_outbox_dir(),
    )?;
    if let provisioner::mail::Outbox::Files { folder, .. } = &outbox {
        tracing::info!(folder = %folder.display(), "no SMTP configured (SILO_SMTP_URL): mails are written as .eml files");
    }
    let port = address.map_or(settings.http_addr.port(), |address| address.port());
    let public_url = settings
        .mail
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}:{port}", settings.base_domain));
    provisioner::mail::Mailer::new(
        options.store.clone(),
        options.keyring.clone(),
        outbox,
        &settings.mail_from(),
        &public_url,
    )
    .map_err(anyhow::Error::msg)
}

/// Runs an apalis worker until the application stops. A worker stops with an error when the
/// control-plane database goes away; it is restarted (backing off) rather than taking the whole
/// process down.
async fn supervise<Run, Running, Failure>(
    what: &'static str,
    mut stop_watch: watch::Receiver<bool>,
    run: Run,
) -> anyhow::Result<()>
where
    Run: Fn(Pin<Box<dyn Future<Output = ()> + Send>>) -> Running,
    Running: Future<Output = Result<(), Failure>>,
    Failure: std::fmt::Display,
{
    let mut backoff = Duration::from_millis(500);
    loop {
        let mut receiver = stop_watch.clone();
        let result = run(Box::pin(async move {
            let _ = receiver.wait_for(|stopped| *stopped).await;
        }))
        .await;
        if *stop_watch.borrow() {
            return Ok(());
        }
        match result {
            Ok(()) => tracing::warn!(worker = what, "worker stopped; restarting"),
            Err(error) => tracing::warn!(worker = what, %error, "worker failed; restarting"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {},
            _ = stop_watch.wait_for(|stopped| *stopped) => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// How a request's span is made.
type MakeSpan = fn(&axum::http::Request<axum::body::Body>) -> tracing::Span;

/// Request tracing, with [`request_span`].
fn tower_http_trace() -> tower_http::trace::TraceLayer<
    tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
    MakeSpan,
> {
    tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span as MakeSpan)
}

/// A request's span names its method and path only: a query string may carry a one-time
/// sign-in token or a signup's landing key, which never reach the logs.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// The application's background tasks and the signal that stops them.
struct Background {
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    stop: watch::Receiver<bool>,
}

impl Background {
    /// A function making futures that resolve once the application is asked to stop.
    fn stopped_fn(&self) -> impl Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + use<> {
        let receiver = self.stop.clone();
        move || {
            let mut receiver = receiver.clone();
            Box::pin(async move {
                let _ = receiver.wait_for(|stopped| *stopped).await;
            })
        }
    }

    /// Runs `task(stop)`, which must return once `stop` resolves.
    fn until_stopped<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let running = task((self.stopped_fn())());
        self.tasks.spawn(async move {
            running.await;
            Ok(())
        });
    }

    /// Runs `tick` every `interval` until the application is asked to stop.
    fn every<F, Fut>(&mut self, interval: Duration, tick: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send,
    {
        self.until_stopped(move |stop| async move {
            let ticking = async {
                loop {
                    tokio::time::sleep(interval).await;
                    tick().await;
                }
            };
            tokio::select! {
                () = ticking => {},
                () = stop => {},
            }
        });
    }
}

/// The resolver domain verification asks (`[domains] resolver`, else the system's); `None`,
/// logged, when none can be set up — verification then answers `dns_unavailable`.
fn domain_resolver(
    settings: &control_plane::settings::DomainSettings,
) -> Option<control_plane::dns::TxtResolver> {
    control_plane::dns::TxtResolver::new(settings.resolver, settings.lookup_timeout)
        .inspect_err(|error| tracing::warn!(%error, "domain verification has no DNS resolver"))
        .ok()
}

#[cfg(test)]
mod tests {
    use crate::logging::Captured;

    #[test]
    fn the_request_span_names_the_path_but_never_the_query() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let request = axum::http::Request::get("/sign-in/link?token=very-secret-token")
                .body(axum::body::Body::empty())
                .expect("a request");
            let span = super::request_span(&request);
            let _entered = span.enter();
            tracing::debug!("handled");
        });
        let logged = captured.text();
        assert!(logged.contains("/sign-in/link"), "{logged}");
        assert!(!logged.contains("very-secret-token"), "{logged}");
    }
}
