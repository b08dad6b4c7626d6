//! `fetchreward health` against a real operations server and a real gRPC health service.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fetchreward_cli::health;
use fetchreward_telemetry::ops::{OpsServer, Readiness, ReadinessCheck};
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;

const TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn http_follows_the_readiness_of_an_operations_port() {
    let ready = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ready);
    let check: ReadinessCheck = Arc::new(move || {
        let ready = flag.load(Ordering::SeqCst);
        Box::pin(async move {
            if ready {
                Readiness::Ready
            } else {
                Readiness::NotReady("the database does not answer")
            }
        })
    });
    let server = OpsServer::bind("127.0.0.1:0".parse().unwrap(), check).await.unwrap();
    let addr = server.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(server.serve(shutdown.clone()));

    let url = format!("http://{addr}/readyz");
    let refused = health::http(&url, TIMEOUT).await.expect_err("not ready yet");
    assert!(refused.to_string().contains("503"), "{refused}");
    ready.store(true, Ordering::SeqCst);
    health::http(&url, TIMEOUT).await.expect("ready");
    health::http(&format!("http://{addr}/healthz"), TIMEOUT).await.expect("alive");
    assert!(health::http(&format!("http://{addr}/nowhere"), TIMEOUT).await.is_err());
    assert!(health::http(&format!("https://{addr}/readyz"), TIMEOUT).await.is_err());
    shutdown.cancel();
    assert!(health::http(&url, TIMEOUT).await.is_err(), "a stopped server is not ready");
}

#[tokio::test]
async fn grpc_needs_the_named_service_serving() {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_service_status("fetchreward.vault.v1.VaultService", ServingStatus::Serving).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let endpoint = format!("http://{addr}");
    health::grpc(&endpoint, "fetchreward.vault.v1.VaultService", None, TIMEOUT)
        .await
        .expect("serving");
    health::grpc(&endpoint, "", None, TIMEOUT).await.expect("the server as a whole");
    let unknown = health::grpc(&endpoint, "fetchreward.writer.v1.WriterService", None, TIMEOUT)
        .await
        .expect_err("not served here");
    assert!(format!("{unknown:#}").contains("does not serve"), "{unknown:#}");

    reporter
        .set_service_status("fetchreward.vault.v1.VaultService", ServingStatus::NotServing)
        .await;
    let draining = health::grpc(&endpoint, "fetchreward.vault.v1.VaultService", None, TIMEOUT)
        .await
        .expect_err("not serving");
    assert!(draining.to_string().contains("NOT_SERVING"), "{draining}");

    let plain = health::grpc(&endpoint, "", Some(std::path::Path::new("ca.pem")), TIMEOUT).await;
    assert!(plain.expect_err("TLS needs https").to_string().contains("https://"));
}
