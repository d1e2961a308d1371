//! The apalis worker that runs provisioning jobs from the control-plane queue.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_postgres::{Config, PostgresStorage, Pubsub};
use control_plane::model::{PROVISION_QUEUE, ProvisionTenant};

use crate::Provisioner;

async fn handle(
    job: ProvisionTenant,
    provisioner: Data<Arc<Provisioner>>,
) -> Result<(), BoxDynError> {
    provisioner.provision(job.tenant_id).await?;
    Ok(())
}

/// The control-plane queue `queue` as a worker's backend: a job is noticed at once through
/// LISTEN/NOTIFY, with a one-second poll as a safety net; a worker that misses three heartbeats
/// is presumed dead and its jobs are taken up by another.
pub fn queue_backend<Job>(
    pool: &apalis_postgres::PgPool,
    queue: &str,
    heartbeat: Duration,
) -> PollWith<PostgresStorage<Job>, Strategy> {
    let config = Config::default()
        .queue(queue)
        .heartbeat_interval(heartbeat)
        .missed_heartbeats(3);
    let strategy = Strategy::new()
        .stream(Pubsub::new(pool.clone(), queue.to_owned()))
        .interval(Duration::from_secs(1));
    PostgresStorage::<Job>::new(pool)
        .with_config(config)
        .poll_with_strategy(strategy)
}

/// Runs a provisioning worker until `shutdown` resolves. New jobs are noticed at once through
/// LISTEN/NOTIFY, with a one-second poll as a safety net.
pub async fn run_worker(
    provisioner: Arc<Provisioner>,
    pool: apalis_postgres::PgPool,
    concurrency: usize,
    heartbeat: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let backend = queue_backend::<ProvisionTenant>(&pool, PROVISION_QUEUE, heartbeat);
    let name = format!("provisioner-{}", uuid::Uuid::new_v4().simple());
    WorkerBuilder::new(name)
        .backend(backend)
        .concurrency(concurrency)
        .data(provisioner)
        .build(handle)
        .run_until(async move {
            shutdown.await;
            Ok::<(), std::io::Error>(())
        })
        .await
}
