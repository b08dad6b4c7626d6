//! Translation between the writer's gRPC API and [`LoginStore`].

use fetchreward_model::MaskedLoginFields;
use fetchreward_proto::writer::v1::writer_service_server::{WriterService, WriterServiceServer};
use fetchreward_proto::writer::v1::{
    MaskedLogin, RefusedRow, WriteLoginsRequest, WriteLoginsResponse,
};
use fetchreward_runtime::grpc::MAX_MESSAGE_BYTES;
use tonic::{Request, Response, Status};

use crate::store::MAX_BATCH_ROWS;
use crate::{LoginStore, WriteError};

/// The name the health service reports.
pub(crate) const SERVICE_NAME: &str = "fetchreward.writer.v1.WriterService";

/// The tonic service of the writer. Who may call it is the call layer's business
/// (`fetchreward_runtime::calls`): a request that reaches it is allowed.
pub(crate) fn service(store: LoginStore) -> WriterServiceServer<WriterGrpc> {
    WriterServiceServer::new(WriterGrpc { store })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Implements `fetchreward.writer.v1.WriterService`.
pub(crate) struct WriterGrpc {
    store: LoginStore,
}

#[tonic::async_trait]
impl WriterService for WriterGrpc {
    #[tracing::instrument(skip_all, fields(rows))]
    async fn write_logins(
        &self,
        request: Request<WriteLoginsRequest>,
    ) -> Result<Response<WriteLoginsResponse>, Status> {
        let rows = request.into_inner().rows;
        tracing::Span::current().record("rows", rows.len());
        let outcome = self.write(rows).await;
        let label = match &outcome {
            Ok(_) => "ok",
            Err(WriteError::TooManyRows { .. }) => "invalid",
            Err(WriteError::Database(_)) => "database_error",
        };
        metrics::counter!("fetchreward_writer_batches_total", "outcome" => label).increment(1);
        match outcome {
            Ok(response) => Ok(Response::new(response)),
            Err(err) => {
                tracing::warn!(error = %err, "batch failed");
                Err(err.into())
            }
        }
    }
}

impl WriterGrpc {
    /// Checks every row by the model's rules, writes the acceptable ones, and reports the rows
    /// refused by either, by their index in the request.
    async fn write(&self, rows: Vec<MaskedLogin>) -> Result<WriteLoginsResponse, WriteError> {
        if rows.len() > MAX_BATCH_ROWS {
            return Err(WriteError::TooManyRows { max: MAX_BATCH_ROWS, len: rows.len() });
        }
        let mut refused = Vec::new();
        let mut accepted = Vec::with_capacity(rows.len());
        let mut accepted_indexes = Vec::with_capacity(rows.len());
        for (index, row) in rows.into_iter().enumerate() {
            match MaskedLoginFields::from(row).check() {
                Ok(row) => {
                    accepted.push(row);
                    accepted_indexes.push(index);
                }
                Err(err) => refused.push(refusal(index, err.code(), err.to_string())),
            }
        }
        let outcome = self.store.write(accepted).await?;
        refused.extend(
            outcome
                .refused
                .into_iter()
                .map(|(position, db)| refusal(accepted_indexes[position], db.code(), db.reason())),
        );
        refused.sort_by_key(|row| row.index);
        Ok(WriteLoginsResponse {
            inserted: u32::try_from(outcome.inserted).unwrap_or(u32::MAX),
            already_present_message_ids: outcome.already_present,
            refused,
        })
    }
}

/// A refused row, counted by its code.
fn refusal(index: usize, code: &'static str, reason: String) -> RefusedRow {
    metrics::counter!("fetchreward_writer_rows_refused_total", "code" => code).increment(1);
    tracing::debug!(index, code, "row refused");
    RefusedRow { index: u32::try_from(index).unwrap_or(u32::MAX), code: code.to_owned(), reason }
}
