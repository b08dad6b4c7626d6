//! The ingestor's two dependencies, behind traits: the vault (tokens) and the writer (rows).
//!
//! The gRPC implementations translate to and from the proto types; unit tests use fakes.

use std::future::Future;
use std::time::Duration;

use fetchreward_model::{MaskedLogin, MaskedLoginFields, Pii, PiiKind, Token};
use fetchreward_proto::vault::v1 as vault;
use fetchreward_proto::vault::v1::vault_service_client::VaultServiceClient;
use fetchreward_proto::writer::v1 as writer;
use fetchreward_proto::writer::v1::writer_service_client::WriterServiceClient;
use fetchreward_runtime::grpc::MAX_MESSAGE_BYTES;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

/// A failed call to the vault or the writer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DependencyError {
    /// Down, overloaded, timed out: the batch is retried, then left for redelivery.
    #[error("{service} unavailable: {detail}")]
    Unavailable {
        /// `vault` or `writer`.
        service: &'static str,
        /// What the transport or the service said.
        detail: String,
    },
    /// The call was refused (invalid argument, permission): retrying the same call will not
    /// help; the messages stay in the queue and its redrive policy takes over.
    #[error("{service} refused the call: {detail}")]
    Refused {
        /// `vault` or `writer`.
        service: &'static str,
        /// What the service said (its messages never quote values).
        detail: String,
    },
    /// The service answered something that breaks its contract.
    #[error("{service} answered out of contract: {detail}")]
    Contract {
        /// `vault` or `writer`.
        service: &'static str,
        /// What is wrong.
        detail: String,
    },
}

impl DependencyError {
    /// Whether retrying may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, DependencyError::Unavailable { .. })
    }

    /// The dependency, for metric labels.
    pub fn service(&self) -> &'static str {
        match self {
            DependencyError::Unavailable { service, .. }
            | DependencyError::Refused { service, .. }
            | DependencyError::Contract { service, .. } => service,
        }
    }

    fn from_status(service: &'static str, status: Status) -> Self {
        let detail = format!("{:?}: {}", status.code(), status.message());
        match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled
            | Code::Unknown => DependencyError::Unavailable { service, detail },
            Code::Ok
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Internal
            | Code::DataLoss
            | Code::Unauthenticated => DependencyError::Refused { service, detail },
        }
    }
}

/// Turns personal values into tokens.
pub trait Tokenizer: Send + Sync + 'static {
    /// One token per value, in order.
    fn tokenize(
        &self,
        values: Vec<(PiiKind, Pii)>,
    ) -> impl Future<Output = Result<Vec<Token>, DependencyError>> + Send;
}

/// Commits masked rows.
pub trait RowSink: Send + Sync + 'static {
    /// Commits every row (or none); rows already present count as committed.
    fn write(
        &self,
        rows: Vec<MaskedLogin>,
    ) -> impl Future<Output = Result<(), DependencyError>> + Send;
}

/// How long one call to the vault or the writer may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A lazily connected channel: the ingestor starts while its dependencies are still down.
/// With `tls`, the server is verified and the ingestor's certificate presented.
pub fn channel(
    endpoint: Endpoint,
    tls: Option<ClientTlsConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let endpoint = match tls {
        Some(tls) => endpoint.tls_config(tls)?,
        None => endpoint,
    };
    Ok(endpoint
        .connect_timeout(Duration::from_secs(2))
        .timeout(CALL_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .connect_lazy())
}

/// The vault over gRPC.
#[derive(Clone)]
pub struct GrpcVault {
    client: VaultServiceClient<Channel>,
}

impl GrpcVault {
    /// A client on `channel`.
    pub fn new(channel: Channel) -> Self {
        let client = VaultServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        GrpcVault { client }
    }
}

impl Tokenizer for GrpcVault {
    async fn tokenize(&self, values: Vec<(PiiKind, Pii)>) -> Result<Vec<Token>, DependencyError> {
        let count = values.len();
        let request = vault::TokenizeRequest {
            values: values
                .into_iter()
                .map(|(kind, value)| vault::PiiValue {
                    kind: match kind {
                        PiiKind::Ip => vault::PiiKind::Ip,
                        PiiKind::DeviceId => vault::PiiKind::DeviceId,
                    }
                    .into(),
                    value: value.into_exposed(),
                })
                .collect(),
        };
        let tokens = self
            .client
            .clone()
            .tokenize(request)
            .await
            .map_err(|status| DependencyError::from_status("vault", status))?
            .into_inner()
            .tokens;
        if tokens.len() != count {
            return Err(DependencyError::Contract {
                service: "vault",
                detail: format!("{} tokens for {count} values", tokens.len()),
            });
        }
        tokens.iter().map(|text| text.parse::<Token>()).collect::<Result<Vec<_>, _>>().map_err(
            |err| DependencyError::Contract {
                service: "vault",
                detail: format!("a returned token {err}"),
            },
        )
    }
}

/// The writer over gRPC.
#[derive(Clone)]
pub struct GrpcWriter {
    client: WriterServiceClient<Channel>,
}

impl GrpcWriter {
    /// A client on `channel`.
    pub fn new(channel: Channel) -> Self {
        let client = WriterServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        GrpcWriter { client }
    }
}

impl RowSink for GrpcWriter {
    async fn write(&self, rows: Vec<MaskedLogin>) -> Result<(), DependencyError> {
        let request = writer::WriteLoginsRequest {
            rows: rows
                .into_iter()
                .map(|row| {
                    let fields = MaskedLoginFields::from(row);
                    writer::MaskedLogin {
                        message_id: fields.message_id,
                        user_id: fields.user_id,
                        device_type: fields.device_type,
                        masked_ip: fields.masked_ip,
                        masked_device_id: fields.masked_device_id,
                        locale: fields.locale,
                        app_version: fields.app_version,
                        sent_timestamp_ms: fields.sent_timestamp_ms,
                    }
                })
                .collect(),
        };
        self.client
            .clone()
            .write_logins(request)
            .await
            .map_err(|status| DependencyError::from_status("writer", status))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transport_and_load_failures_are_transient() {
        let unavailable = DependencyError::from_status("vault", Status::unavailable("down"));
        assert!(unavailable.is_transient());
        let deadline = DependencyError::from_status("writer", Status::deadline_exceeded("slow"));
        assert!(deadline.is_transient());
        let invalid = DependencyError::from_status("writer", Status::invalid_argument("rows[3]"));
        assert!(!invalid.is_transient());
        let denied = DependencyError::from_status("vault", Status::permission_denied("no"));
        assert!(!denied.is_transient());
        assert_eq!(denied.service(), "vault");
    }
}
