//! The ingestor's two dependencies, behind traits: the vault (tokens) and the writer (rows).
//!
//! Both answer for each item: the vault tokenizes a value or refuses it, the writer commits a
//! row or refuses it, each refusal with a code and a reason. A call fails as a whole only when
//! the dependency is unavailable, refuses the call itself, or breaks its contract.
//!
//! The gRPC implementations translate to and from the proto types; unit tests use fakes.

use std::future::Future;
use std::time::Duration;

use fetchreward_model::{MaskedLogin, MaskedLoginFields, Pii, PiiKind, Token};
use fetchreward_proto::vault::v1 as vault;
use fetchreward_proto::vault::v1::vault_service_client::VaultServiceClient;
use fetchreward_proto::writer::v1 as writer;
use fetchreward_proto::writer::v1::writer_service_client::WriterServiceClient;
use fetchreward_runtime::calls::code_label;
use fetchreward_runtime::grpc::MAX_MESSAGE_BYTES;
use fetchreward_telemetry::propagation;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use crate::refusal::Refusal;

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
    /// The call was refused as a whole (invalid argument, internal error, permission):
    /// retrying the same call will not help.
    #[error("{service} refused the call: {code:?}: {message}")]
    Refused {
        /// `vault` or `writer`.
        service: &'static str,
        /// The status code.
        code: Code,
        /// What the service said (its messages never quote values).
        message: String,
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

    /// Whether the failure may come from the content of the call (one bad row among good
    /// ones): an invalid argument, an internal error, a broken contract. A refused identity,
    /// an unknown method or a missing resource is about the set-up, and every call fails
    /// alike.
    pub fn may_be_caused_by_content(&self) -> bool {
        match self {
            DependencyError::Unavailable { .. } => false,
            DependencyError::Contract { .. } => true,
            DependencyError::Refused { code, .. } => matches!(
                code,
                Code::InvalidArgument | Code::OutOfRange | Code::Internal | Code::DataLoss
            ),
        }
    }

    /// The refusal of one message that this failure was isolated to.
    pub fn refusal(&self) -> Refusal {
        let (code, reason) = match self {
            DependencyError::Unavailable { detail, .. } => ("unavailable", detail.clone()),
            DependencyError::Refused { code, message, .. } => (code_label(*code), message.clone()),
            DependencyError::Contract { detail, .. } => ("contract", detail.clone()),
        };
        Refusal {
            refused_by: self.service(),
            code: format!("{}_{code}", self.service()),
            reason: reason.lines().next().unwrap_or_default().to_owned(),
        }
    }

    fn from_status(service: &'static str, status: Status) -> Self {
        match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Cancelled
            | Code::Unknown => DependencyError::Unavailable {
                service,
                detail: format!("{:?}: {}", status.code(), status.message()),
            },
            code @ (Code::Ok
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Internal
            | Code::DataLoss
            | Code::Unauthenticated) => {
                DependencyError::Refused { service, code, message: status.message().to_owned() }
            }
        }
    }

    fn contract(service: &'static str, detail: impl Into<String>) -> Self {
        DependencyError::Contract { service, detail: detail.into() }
    }
}

/// Turns personal values into tokens.
pub trait Tokenizer: Send + Sync + 'static {
    /// One entry per value, in order: its token, or why it was refused.
    fn tokenize(
        &self,
        values: Vec<(PiiKind, Pii)>,
    ) -> impl Future<Output = Result<Vec<Result<Token, Refusal>>, DependencyError>> + Send;
}

/// Commits masked rows.
pub trait RowSink: Send + Sync + 'static {
    /// Commits every row it does not refuse, in one transaction, and returns the refused ones
    /// by position, with why. Rows already present count as committed.
    fn write(
        &self,
        rows: Vec<MaskedLogin>,
    ) -> impl Future<Output = Result<Vec<(usize, Refusal)>, DependencyError>> + Send;
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
    #[tracing::instrument(
        name = "grpc.client",
        skip_all,
        fields(
            otel.name = "fetchreward.vault.v1.VaultService/Tokenize",
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = "fetchreward.vault.v1.VaultService",
            rpc.method = "Tokenize",
        )
    )]
    async fn tokenize(
        &self,
        values: Vec<(PiiKind, Pii)>,
    ) -> Result<Vec<Result<Token, Refusal>>, DependencyError> {
        let count = values.len();
        let request = vault::TokenizeRequest {
            values: values
                .into_iter()
                .map(|(kind, value)| vault::PiiValue {
                    kind: vault::PiiKind::from(kind).into(),
                    value: value.into_exposed(),
                })
                .collect(),
        };
        let response = self
            .client
            .clone()
            .tokenize(propagation::traced_request(request))
            .await
            .map_err(|status| DependencyError::from_status("vault", status))?
            .into_inner();
        if response.tokens.len() != count {
            let detail = format!("{} tokens for {count} values", response.tokens.len());
            return Err(DependencyError::contract("vault", detail));
        }
        let mut answers: Vec<Option<Result<Token, Refusal>>> = vec![None; count];
        for refused in response.refused {
            let slot = usize::try_from(refused.index).ok().and_then(|i| answers.get_mut(i));
            let Some(slot) = slot else {
                return Err(DependencyError::contract("vault", "a refusal names no value"));
            };
            let refusal =
                Refusal { refused_by: "vault", code: refused.code, reason: refused.reason };
            *slot = Some(Err(refusal));
        }
        answers
            .into_iter()
            .zip(&response.tokens)
            .map(|(answer, text)| match answer {
                Some(refused) => Ok(refused),
                None => text.parse::<Token>().map(Ok).map_err(|err| {
                    DependencyError::contract("vault", format!("a returned token {err}"))
                }),
            })
            .collect()
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
    #[tracing::instrument(
        name = "grpc.client",
        skip_all,
        fields(
            otel.name = "fetchreward.writer.v1.WriterService/WriteLogins",
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = "fetchreward.writer.v1.WriterService",
            rpc.method = "WriteLogins",
        )
    )]
    async fn write(
        &self,
        rows: Vec<MaskedLogin>,
    ) -> Result<Vec<(usize, Refusal)>, DependencyError> {
        let count = rows.len();
        let request = writer::WriteLoginsRequest {
            rows: rows
                .into_iter()
                .map(|row| writer::MaskedLogin::from(MaskedLoginFields::from(row)))
                .collect(),
        };
        let response = self
            .client
            .clone()
            .write_logins(propagation::traced_request(request))
            .await
            .map_err(|status| DependencyError::from_status("writer", status))?
            .into_inner();
        response
            .refused
            .into_iter()
            .map(|refused| match usize::try_from(refused.index) {
                Ok(index) if index < count => Ok((
                    index,
                    Refusal { refused_by: "writer", code: refused.code, reason: refused.reason },
                )),
                _ => Err(DependencyError::contract("writer", "a refusal names no row")),
            })
            .collect()
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

    #[test]
    fn only_failures_that_content_can_cause_are_worth_isolating() {
        for status in [Status::internal("bug"), Status::invalid_argument("rows[3]")] {
            assert!(DependencyError::from_status("writer", status).may_be_caused_by_content());
        }
        for status in
            [Status::permission_denied("no"), Status::unimplemented("no"), Status::unavailable("")]
        {
            assert!(!DependencyError::from_status("writer", status).may_be_caused_by_content());
        }
    }

    #[test]
    fn an_isolated_failure_becomes_a_refusal_with_the_services_code() {
        let err = DependencyError::from_status(
            "writer",
            Status::internal("database error; nothing was written\nsecond line"),
        );
        assert_eq!(
            err.refusal(),
            Refusal {
                refused_by: "writer",
                code: "writer_internal".to_owned(),
                reason: "database error; nothing was written".to_owned(),
            }
        );
    }
}
