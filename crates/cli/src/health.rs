//! `fetchreward health`: whether a service is ready, for container healthchecks and `helm
//! test`. The image holds no shell and no HTTP or gRPC client, so the probe is this command.
//!
//! - [`grpc`] asks the standard `grpc.health.v1.Health` service of the vault or the writer;
//!   health is open to every caller, so with TLS only the CA is needed (no client certificate).
//! - [`http`] asks an operations port (`/readyz`, `/healthz`): the ingestor has no gRPC server.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Asks the health service at `endpoint` about `service` (empty: the server as a whole) and
/// fails unless it answers SERVING. With `ca`, the endpoint must be `https://` and is verified
/// against that CA.
pub async fn grpc(
    endpoint: &str,
    service: &str,
    ca: Option<&Path>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut config = Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("{endpoint} is not a valid endpoint"))?
        .connect_timeout(timeout)
        .timeout(timeout);
    if let Some(ca) = ca {
        if !endpoint.starts_with("https://") {
            anyhow::bail!("with --tls-ca the endpoint must be https://, not {endpoint}");
        }
        let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        config = config.tls_config(tls).context("invalid TLS settings")?;
    }
    let channel = config.connect().await.with_context(|| format!("cannot reach {endpoint}"))?;
    let request = HealthCheckRequest { service: service.to_owned() };
    let status = match HealthClient::new(channel).check(request).await {
        Ok(response) => response.into_inner().status(),
        Err(status) if status.code() == tonic::Code::NotFound => {
            anyhow::bail!("{endpoint} does not serve {service:?}")
        }
        Err(status) => {
            return Err(status)
                .with_context(|| format!("{endpoint} did not answer the health check"));
        }
    };
    if status != ServingStatus::Serving {
        anyhow::bail!("{endpoint} reports {} for {:?}", status.as_str_name(), service);
    }
    Ok(())
}

/// Sends `GET url` (plain `http://`, as the operations ports serve) and fails unless the answer
/// is 2xx.
pub async fn http(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let uri: http::Uri = url.parse().with_context(|| format!("{url} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        anyhow::bail!("{url}: the operations ports serve plain http://");
    }
    let authority = uri.authority().with_context(|| format!("{url} has no host"))?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let ask = async {
        let stream = tokio::net::TcpStream::connect((authority.host(), port))
            .await
            .with_context(|| format!("cannot reach {authority}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("{authority} does not speak HTTP/1.1"))?;
        tokio::spawn(connection);
        let request = http::Request::get(uri.clone())
            .header(http::header::HOST, authority.as_str())
            .body(Empty::<Bytes>::new())
            .context("cannot build the request")?;
        let response = sender.send_request(request).await.with_context(|| format!("GET {url}"))?;
        anyhow::Ok(response.status())
    };
    let status = tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| anyhow::anyhow!("{url} did not answer within {timeout:?}"))??;
    if !status.is_success() {
        anyhow::bail!("{url} answered {status}");
    }
    Ok(())
}
