//! Translation between the writer's gRPC API and [`LoginStore`].

use fetchreward_model::MaskedLoginFields;
use fetchreward_proto::writer::v1::writer_service_server::{WriterService, WriterServiceServer};
use fetchreward_proto::writer::v1::{MaskedLogin, WriteLoginsRequest, WriteLoginsResponse};
use fetchreward_runtime::authz::{self, Policy};
use fetchreward_runtime::grpc::MAX_MESSAGE_BYTES;
use fetchreward_runtime::tls;
use tonic::{Request, Response, Status};

use crate::config::WRITE;
use crate::{LoginStore, WriteError};

/// The name the health service reports.
pub(crate) const SERVICE_NAME: &str = "fetchreward.writer.v1.WriterService";

/// The tonic service of the writer.
pub(crate) fn service(store: LoginStore, policy: Policy) -> WriterServiceServer<WriterGrpc> {
    WriterServiceServer::new(WriterGrpc { store, policy })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Implements `fetchreward.writer.v1.WriterService`.
pub(crate) struct WriterGrpc {
    store: LoginStore,
    policy: Policy,
}

#[tonic::async_trait]
impl WriterService for WriterGrpc {
    #[tracing::instrument(skip_all, fields(rows))]
    async fn write_logins(
        &self,
        request: Request<WriteLoginsRequest>,
    ) -> Result<Response<WriteLoginsResponse>, Status> {
        let caller = tls::caller_identity(&request);
        if !self.policy.allows(WRITE, &caller) {
            authz::count_denial("writer", "WriteLogins");
            tracing::warn!(caller, "WriteLogins refused");
            return Err(Status::permission_denied(format!("{caller} may not call WriteLogins")));
        }
        let rows = request.into_inner().rows;
        tracing::Span::current().record("rows", rows.len());
        let outcome = async {
            let rows = rows
                .into_iter()
                .enumerate()
                .map(|(index, row)| {
                    fields(row).check().map_err(|source| WriteError::InvalidRow { index, source })
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.store.write(rows).await
        }
        .await;
        let label = match &outcome {
            Ok(_) => "ok",
            Err(WriteError::TooManyRows { .. } | WriteError::InvalidRow { .. }) => "invalid",
            Err(WriteError::Database(_)) => "database_error",
        };
        metrics::counter!("fetchreward_writer_batches_total", "outcome" => label).increment(1);
        match outcome {
            Ok(outcome) => Ok(Response::new(WriteLoginsResponse {
                inserted: u32::try_from(outcome.inserted).unwrap_or(u32::MAX),
                already_present_message_ids: outcome.already_present,
            })),
            Err(err) => {
                tracing::warn!(error = %err, "batch refused");
                Err(err.into())
            }
        }
    }
}

fn fields(row: MaskedLogin) -> MaskedLoginFields {
    MaskedLoginFields {
        message_id: row.message_id,
        user_id: row.user_id,
        device_type: row.device_type,
        masked_ip: row.masked_ip,
        masked_device_id: row.masked_device_id,
        locale: row.locale,
        app_version: row.app_version,
        sent_timestamp_ms: row.sent_timestamp_ms,
    }
}
