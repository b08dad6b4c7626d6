//! Serving a tonic service with what every Fetchreward gRPC server carries: the call layer
//! ([`crate::calls`]), the standard health service, TCP_NODELAY, a message-size limit, mutual
//! TLS, the operations server beside it, and a graceful shutdown with a grace period.
//! Reflection over the service's own descriptor set is off unless `GRPC_REFLECTION=true`: it
//! tells any peer the whole API, which a production server has no reason to.

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
use crate::config::{CommonConfig, ConfigReader};
use crate::service::StartError;
use crate::tls::{DEFAULT_TRUST_DOMAIN, TlsFiles};

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

/// Where a gRPC server listens and what it offers besides its API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcSettings {
    /// The listen address (`GRPC_ADDR`).
    pub addr: SocketAddr,
    /// Whether gRPC reflection is served (`GRPC_REFLECTION`, default false).
    pub reflection: bool,
}

impl GrpcSettings {
    /// Reads `GRPC_ADDR` (default `default_addr`) and `GRPC_REFLECTION`.
    pub fn from_env(reader: &mut ConfigReader<'_>, default_addr: &str) -> GrpcSettings {
        GrpcSettings {
            addr: reader.addr("GRPC_ADDR", default_addr),
            reflection: reader.flag("GRPC_REFLECTION"),
        }
    }
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
    trust_domain: String,
    reflection: bool,
    grace: Duration,
}

impl GrpcServer {
    /// Loads the TLS files, then binds the gRPC address of `settings` and the operations server
    /// of `common` (port 0 picks a free port), whose `/readyz` asks `readiness`.
    pub async fn bind(
        settings: &GrpcSettings,
        common: &CommonConfig,
        files: Option<&TlsFiles>,
        readiness: ReadinessCheck,
    ) -> Result<Self, StartError> {
        let grpc_addr = settings.addr;
        let tls = files.map(TlsFiles::server_config).transpose()?;
        let trust_domain = files.map_or(DEFAULT_TRUST_DOMAIN, |files| &files.trust_domain);
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
        Ok(GrpcServer {
            listener,
            ops,
            tls,
            trust_domain: trust_domain.to_owned(),
            reflection: settings.reflection,
            grace: common.grace,
        })
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
        let GrpcServer { listener, ops, tls, trust_domain, reflection, grace } = self;
        let ops = tokio::spawn(ops.serve(shutdown.clone()));
        let layer = CallLayer::new(api.calls, &trust_domain);
        let api = Served { name: api.name, routes: api.routes, descriptor_set: api.descriptor_set };
        let grpc = serve_grpc(listener, api, layer, tls, reflection, shutdown.clone());
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

/// An [`Api`] whose policy has become the call layer.
struct Served {
    name: &'static str,
    routes: Routes,
    descriptor_set: &'static [u8],
}

async fn serve_grpc(
    listener: TcpListener,
    api: Served,
    layer: CallLayer,
    tls: Option<ServerTlsConfig>,
    reflection: bool,
    shutdown: CancellationToken,
) -> Result<(), GrpcServeError> {
    let Served { name, routes, descriptor_set } = api;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status(name, ServingStatus::Serving).await;
    let reflection = if reflection {
        tracing::info!(service = name, "serving gRPC reflection (GRPC_REFLECTION)");
        Some(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(descriptor_set)
                .build_v1()?,
        )
    } else {
        None
    };

    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    server
        .layer(layer)
        .add_routes(routes)
        .add_service(health_service)
        .add_optional_service(reflection)
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.cancelled().await;
            health.set_service_status(name, ServingStatus::NotServing).await;
        })
        .await?;
    Ok(())
}
