//! Serving a tonic service with what every Fetchreward gRPC server carries: the call layer
//! ([`crate::calls`]), the standard health service, reflection over the service's descriptor
//! set, TCP_NODELAY, a message-size limit, mutual TLS, the operations server beside it, and a
//! graceful shutdown with a grace period.

use std::net::SocketAddr;
use std::time::Duration;

use fetchreward_telemetry::{OpsServer, ReadinessCheck};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::ServingStatus;

use crate::calls::{CallLayer, CallPolicy};
use crate::config::CommonConfig;
use crate::service::StartError;
use crate::tls::TlsFiles;

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

/// What a service serves over gRPC.
pub struct Api {
    /// The fully qualified service name, reported SERVING by the health service, e.g.
    /// `fetchreward.writer.v1.WriterService`.
    pub name: &'static str,
    /// The service's routes.
    pub routes: Routes,
    /// The encoded descriptor set reflection answers from: the service's own protos only.
    pub descriptor_set: &'static [u8],
    /// Who may call which method.
    pub calls: CallPolicy,
}

/// A gRPC listener and the operations server beside it, bound, with the TLS files loaded:
/// what a service's `build` makes, so that a bad port or an unreadable certificate stops it
/// before it claims to have started.
pub struct GrpcServer {
    listener: TcpListener,
    ops: OpsServer,
    tls: Option<ServerTlsConfig>,
    grace: Duration,
}

impl GrpcServer {
    /// Loads the TLS files, then binds `grpc_addr` and the operations server of `common` (port
    /// 0 picks a free port), whose `/readyz` asks `readiness`.
    pub async fn bind(
        grpc_addr: SocketAddr,
        common: &CommonConfig,
        tls: Option<&TlsFiles>,
        readiness: ReadinessCheck,
    ) -> Result<Self, StartError> {
        let tls = tls.map(TlsFiles::server_config).transpose()?;
        if tls.is_none() {
            tracing::warn!(
                "serving gRPC without TLS: callers are anonymous (local development only)"
            );
        }
        let listener = TcpListener::bind(grpc_addr).await.map_err(|source| StartError::Bind {
            what: "gRPC",
            addr: grpc_addr,
            source,
        })?;
        let ops = OpsServer::bind(common.http_addr, readiness).await.map_err(|source| {
            StartError::Bind { what: "the operations server", addr: common.http_addr, source }
        })?;
        Ok(GrpcServer { listener, ops, tls, grace: common.grace })
    }

    /// The bound gRPC address (the real port when configured with port 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The bound address of the operations server.
    pub fn http_addr(&self) -> SocketAddr {
        self.ops.local_addr().expect("a bound listener has an address")
    }

    /// Serves `api` until `shutdown` is cancelled. The health service then reports NOT_SERVING
    /// at once, so clients stop sending new calls; in-flight calls get the grace period to
    /// finish, while `/readyz` and `/metrics` keep answering; then both servers stop.
    pub async fn serve(self, api: Api, shutdown: CancellationToken) -> Result<(), StartError> {
        let GrpcServer { listener, ops, tls, grace } = self;
        let ops = tokio::spawn(ops.serve(shutdown.clone()));
        let grpc = serve_grpc(listener, api, tls, shutdown.clone());
        let served = crate::shutdown::with_grace(grpc, &shutdown, grace).await;
        shutdown.cancel();
        match ops.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "the operations server failed"),
            Err(err) => tracing::warn!(error = %err, "the operations server task failed"),
        }
        Ok(served.unwrap_or(Ok(()))?)
    }
}

async fn serve_grpc(
    listener: TcpListener,
    api: Api,
    tls: Option<ServerTlsConfig>,
    shutdown: CancellationToken,
) -> Result<(), GrpcServeError> {
    let Api { name, routes, descriptor_set, calls } = api;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status(name, ServingStatus::Serving).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(descriptor_set)
        .build_v1()?;

    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    server
        .layer(CallLayer::new(calls))
        .add_routes(routes)
        .add_service(health_service)
        .add_service(reflection)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.cancelled().await;
            health.set_service_status(name, ServingStatus::NotServing).await;
        })
        .await?;
    Ok(())
}
