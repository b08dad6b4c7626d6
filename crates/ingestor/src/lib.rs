//! The ingestor: a stateless consumer that turns login messages into committed rows.
//!
//! It long-polls the login queue, parses each message by the model's rules, sends invalid ones
//! to the dead-letter queue with their reason, tokenizes the personal values of the valid ones
//! through the vault, writes the masked rows through the writer, and deletes exactly the
//! messages whose rows are committed. See [`pipeline`] for one batch and [`consumer`] for the
//! flow around it.

pub mod clients;
pub mod config;
pub mod consumer;
pub mod pipeline;
pub mod queue;
pub mod refusal;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use aws_config::SdkConfig;
use fetchreward_dlq::Sealer;
use fetchreward_runtime::config::{CommonConfig, ConfigErrors, EnvSource};
use fetchreward_runtime::service::Service;
use fetchreward_telemetry::{OpsServer, Readiness, ReadinessCheck};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use crate::clients::{GrpcVault, GrpcWriter, channel};
use crate::consumer::ConsumerSettings;
use crate::pipeline::{Health, Pipeline, RetryPolicy};
use crate::queue::sqs::SqsQueue;

pub use config::IngestorConfig;
pub use fetchreward_runtime::service::StartError;

/// The service name the ingestor's binary, logs and traces use.
pub const SERVICE: &str = "fetchreward-ingestor";

/// An ingestor with its listener bound, ready to consume.
pub struct Application {
    ops: OpsServer,
    pipeline: Arc<Pipeline<SqsQueue, GrpcVault, GrpcWriter>>,
    settings: ConsumerSettings,
    shutdown: CancellationToken,
}

impl Application {
    /// Prepares the consumer. `aws` carries the SQS endpoint, region and credentials.
    /// Connections to the vault and the writer are made lazily, so the ingestor starts (and
    /// reports not ready) while they are still down.
    pub async fn build(config: IngestorConfig, aws: &SdkConfig) -> Result<Self, StartError> {
        fetchreward_telemetry::metrics::record_build_info(SERVICE);
        let mut kms = aws_sdk_kms::config::Builder::from(aws);
        if let Some(endpoint) = &config.kms_endpoint {
            kms = kms.endpoint_url(endpoint);
        }
        let sealer =
            Sealer::new(aws_sdk_kms::Client::from_conf(kms.build()), &config.dlq_kms_key_id);
        // A batch's deletes run as many calls at once as there are pollers: then each worker
        // deletes as fast as all the pollers receive, whatever the latency of SQS, while the
        // connections to it stay a few dozen instead of one per 10 messages in flight.
        let queue = SqsQueue::new(
            aws_sdk_sqs::Client::new(aws),
            &config.queue_url,
            &config.dlq_url,
            Arc::new(sealer),
        )
        .with_delete_concurrency(config.pollers);
        let tls = config.tls.as_ref().map(|files| files.client_config()).transpose()?;
        let endpoint = |uri: &str| {
            let endpoint = Endpoint::from_shared(uri.to_owned()).map_err(StartError::own)?;
            channel(endpoint, tls.clone()).map_err(StartError::own)
        };
        let vault = GrpcVault::new(endpoint(&config.vault_endpoint)?);
        let writer = GrpcWriter::new(endpoint(&config.writer_endpoint)?);
        let retry = RetryPolicy { give_up_after: config.retry_give_up, ..RetryPolicy::default() };
        let shutdown = CancellationToken::new();
        let pipeline = Arc::new(Pipeline::new(
            Arc::new(queue),
            vault,
            writer,
            retry,
            config.visibility,
            shutdown.clone(),
        ));
        let http_addr = config.common.http_addr;
        let ops =
            OpsServer::bind(http_addr, readiness(pipeline.health())).await.map_err(|source| {
                StartError::Bind { what: "the operations server", addr: http_addr, source }
            })?;
        let settings = ConsumerSettings {
            pollers: config.pollers,
            workers: config.workers,
            max_batch: config.max_batch,
            prefetch: config.prefetch,
            receive_wait: config.receive_wait,
            visibility: config.visibility,
            grace: config.common.grace,
            queue_metrics: config.queue_metrics,
        };
        Ok(Application { ops, pipeline, settings, shutdown })
    }

    /// The address of the operations server.
    pub fn http_addr(&self) -> SocketAddr {
        self.ops.local_addr().expect("a bound listener has an address")
    }

    /// Consumes until `shutdown` is cancelled, then finishes or releases in-flight messages.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let Application { ops, pipeline, settings, shutdown: pipeline_shutdown } = self;
        let ops = tokio::spawn(ops.serve(shutdown.clone()));
        let watcher = (!settings.queue_metrics.is_zero()).then(|| {
            let pipeline = pipeline.clone();
            let (interval, shutdown) = (settings.queue_metrics, shutdown.clone());
            tokio::spawn(async move {
                watch::watch(pipeline.queue(), pipeline.received_ages(), interval, shutdown).await;
            })
        });
        // The pipeline's own token cuts retries short once shutdown begins.
        let forward = shutdown.clone();
        tokio::spawn(async move {
            forward.cancelled().await;
            pipeline_shutdown.cancel();
        });
        tracing::info!(
            pollers = settings.pollers,
            workers = settings.workers,
            max_batch = settings.max_batch,
            prefetch = settings.prefetch,
            "ingestor consuming"
        );
        consumer::run(pipeline, settings, shutdown).await;
        if let Some(watcher) = watcher {
            let _ = watcher.await;
        }
        match ops.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "the operations server failed"),
            Err(err) => tracing::warn!(error = %err, "the operations server task failed"),
        }
        Ok(())
    }
}

impl Service for Application {
    const NAME: &'static str = SERVICE;
    type Config = IngestorConfig;

    fn read_config(env: &dyn EnvSource) -> Result<IngestorConfig, ConfigErrors> {
        IngestorConfig::from_env(env)
    }

    fn common(config: &IngestorConfig) -> &CommonConfig {
        &config.common
    }

    /// Region, credentials and an `AWS_ENDPOINT_URL_SQS` override from the standard chain.
    async fn start(config: IngestorConfig) -> Result<Self, StartError> {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Application::build(config, &aws).await
    }

    async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        Application::run_until_stopped(self, shutdown).await
    }
}

fn readiness(health: Arc<Health>) -> ReadinessCheck {
    Arc::new(move || {
        let problem = health.problem();
        Box::pin(async move {
            match problem {
                None => Readiness::Ready,
                Some(problem) => Readiness::NotReady(problem),
            }
        })
    })
}
