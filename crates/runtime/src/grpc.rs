//! Serving a tonic service with what every Fetchreward gRPC server carries: the standard
//! health service, reflection over the project's descriptor set, TCP_NODELAY, a message-size
//! limit, and graceful shutdown on a cancellation token.

use std::time::Duration;

use fetchreward_telemetry::OpsServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::ServingStatus;

/// Largest request or response a service accepts: a batch of 10,000 rows with room to spare.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Errors serving gRPC.
#[derive(Debug, thiserror::Error)]
pub enum GrpcServeError {
    /// The reflection service cannot read the descriptor set.
    #[error("reflection set-up failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed (bad TLS settings, accept errors).
    #[error("gRPC transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `routes` on `listener` until `shutdown` is cancelled, then drains in-flight calls.
///
/// `service_name` is the fully qualified name reported as SERVING by the health service, e.g.
/// `fetchreward.writer.v1.WriterService`; it turns NOT_SERVING as soon as shutdown begins, so
/// clients stop sending new calls while the last ones finish.
pub async fn serve(
    listener: TcpListener,
    service_name: &'static str,
    routes: Routes,
    tls: Option<ServerTlsConfig>,
    shutdown: CancellationToken,
) -> Result<(), GrpcServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status(service_name, ServingStatus::Serving).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fetchreward_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    server
        .add_routes(routes)
        .add_service(health_service)
        .add_service(reflection)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.cancelled().await;
            health.set_service_status(service_name, ServingStatus::NotServing).await;
        })
        .await?;
    Ok(())
}

/// Runs a gRPC service and its operations server until `shutdown` is cancelled: in-flight calls
/// then get `grace` to finish, while `/readyz` and `/metrics` keep answering; then both stop.
pub async fn serve_with_ops(
    listener: TcpListener,
    service_name: &'static str,
    routes: Routes,
    tls: Option<ServerTlsConfig>,
    ops: OpsServer,
    shutdown: CancellationToken,
    grace: Duration,
) -> Result<(), GrpcServeError> {
    let ops = tokio::spawn(ops.serve(shutdown.clone()));
    let grpc = serve(listener, service_name, routes, tls, shutdown.clone());
    let served = crate::shutdown::with_grace(grpc, &shutdown, grace).await;
    shutdown.cancel();
    match ops.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "the operations server failed"),
        Err(err) => tracing::warn!(error = %err, "the operations server task failed"),
    }
    served.unwrap_or(Ok(()))
}
