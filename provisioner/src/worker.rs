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

/// Runs a provisioning worker until `shutdown` resolves. New jobs are noticed at once through
/// LISTEN/NOTIFY, with a one-second poll as a safety net.
pub async fn run_worker(
    provisioner: Arc<Provisioner>,
    pool: apalis_postgres::PgPool,
    concurrency: usize,
    heartbeat: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let config = Config::default()
        .queue(PROVISION_QUEUE)
        .heartbeat_interval(heartbeat)
        .missed_heartbeats(3);
    let strategy = Strategy::new()
        .stream(Pubsub::new(pool.clone(), PROVISION_QUEUE.to_owned()))
        .interval(Duration::from_secs(1));
    let backend = PostgresStorage::<ProvisionTenant>::new(&pool)
        .with_config(config)
        .poll_with_strategy(strategy);
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
