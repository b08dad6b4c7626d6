//! The operations HTTP server: `/metrics`, `/healthz`, `/readyz`.
//!
//! `/healthz` answers 200 while the process serves requests at all (a liveness probe);
//! `/readyz` asks the service's [`ReadinessCheck`] and answers 200 or 503 with the reason, so
//! a load balancer sends traffic only to replicas that can do their work.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The answer of a readiness check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// The service can do its work.
    Ready,
    /// It cannot: a fixed phrase naming the dependency that is down. Never an error's text,
    /// which can carry a host name, a user or a server's message to whoever asks.
    NotReady(&'static str),
}

/// A boxed future of a readiness answer.
pub type ReadinessFuture = Pin<Box<dyn Future<Output = Readiness> + Send>>;

/// What `/readyz` asks: a cheap check of the service's dependencies.
pub type ReadinessCheck = Arc<dyn Fn() -> ReadinessFuture + Send + Sync>;

/// The operations server of one service, bound to its own listener.
pub struct OpsServer {
    listener: TcpListener,
    router: Router,
}

impl OpsServer {
    /// Binds `addr` (port 0 picks a free port) and prepares the routes.
    pub async fn bind(addr: SocketAddr, readiness: ReadinessCheck) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        crate::metrics::handle();
        let router = Router::new()
            .route(
                "/metrics",
                get(|| async {
                    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render())
                }),
            )
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(readiness);
        Ok(OpsServer { listener, router })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn serve(self, shutdown: CancellationToken) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    }
}

async fn readyz(State(check): State<ReadinessCheck>) -> impl IntoResponse {
    match check().await {
        Readiness::Ready => (StatusCode::OK, "ready\n".to_owned()),
        Readiness::NotReady(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connects");
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("writes");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("reads");
        response
    }

    #[tokio::test]
    async fn serves_health_readiness_and_metrics_until_shut_down() {
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let check: ReadinessCheck = Arc::new(move || {
            let ready = flag.load(Ordering::SeqCst);
            Box::pin(async move {
                if ready { Readiness::Ready } else { Readiness::NotReady("database unreachable") }
            })
        });
        let server =
            OpsServer::bind("127.0.0.1:0".parse().expect("addr"), check).await.expect("binds");
        let addr = server.local_addr().expect("bound");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve(shutdown.clone()));

        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let not_ready = get(addr, "/readyz").await;
        assert!(not_ready.starts_with("HTTP/1.1 503"), "{not_ready}");
        assert!(not_ready.contains("not ready: database unreachable"));
        ready.store(true, Ordering::SeqCst);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));

        metrics::counter!("fetchreward_ops_test_total").increment(1);
        let metrics = get(addr, "/metrics").await;
        assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
        assert!(metrics.contains("fetchreward_ops_test_total 1"), "{metrics}");

        shutdown.cancel();
        task.await.expect("joins").expect("serves cleanly");
    }
}
