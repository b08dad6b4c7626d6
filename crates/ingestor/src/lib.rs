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

use std::net::SocketAddr;
use std::sync::Arc;

use aws_config::SdkConfig;
use fetchreward_telemetry::{OpsServer, Readiness, ReadinessCheck};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

use crate::clients::{GrpcVault, GrpcWriter, channel};
use crate::consumer::ConsumerSettings;
use crate::pipeline::{Health, Pipeline, RetryPolicy};
use crate::queue::sqs::SqsQueue;

pub use config::IngestorConfig;

/// The service name the ingestor's binary, logs and traces use.
pub const SERVICE: &str = "fetchreward-ingestor";

/// Why the ingestor could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The operations listener could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// An endpoint is not a valid URI, or its TLS settings are unusable.
    #[error("invalid endpoint: {0}")]
    Endpoint(#[from] tonic::transport::Error),
    /// The TLS files cannot be read.
    #[error(transparent)]
    Tls(#[from] fetchreward_runtime::tls::TlsError),
}

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
        let queue =
            SqsQueue::new(aws_sdk_sqs::Client::new(aws), &config.queue_url, &config.dlq_url);
        let tls = config.tls.as_ref().map(|files| files.client_config()).transpose()?;
        let vault_endpoint = Endpoint::from_shared(config.vault_endpoint.clone())?;
        let vault = GrpcVault::new(channel(vault_endpoint, tls.clone())?);
        let writer_endpoint = Endpoint::from_shared(config.writer_endpoint.clone())?;
        let writer = GrpcWriter::new(channel(writer_endpoint, tls)?);
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
        let ops = OpsServer::bind(config.common.http_addr, readiness(pipeline.health()))
            .await
            .map_err(|err| StartError::Bind(config.common.http_addr, err))?;
        let settings = ConsumerSettings {
            pollers: config.pollers,
            workers: config.workers,
            max_batch: config.max_batch,
            receive_wait: config.receive_wait,
            visibility: config.visibility,
            grace: config.common.grace,
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
        // The pipeline's own token cuts retries short once shutdown begins.
        let forward = shutdown.clone();
        tokio::spawn(async move {
            forward.cancelled().await;
            pipeline_shutdown.cancel();
        });
        tracing::info!(
            pollers = settings.pollers,
            workers = settings.workers,
            "ingestor consuming"
        );
        consumer::run(pipeline, settings, shutdown).await;
        let _ = ops.await;
        Ok(())
    }
}

fn readiness(health: Arc<Health>) -> ReadinessCheck {
    Arc::new(move || {
        let problem = health.problem();
        Box::pin(async move {
            match problem {
                None => Readiness::Ready,
                Some(problem) => Readiness::NotReady(problem.to_owned()),
            }
        })
    })
}
