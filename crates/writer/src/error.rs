//! The writer's errors and their gRPC status codes.

use fetchreward_runtime::postgres::PgError;
use tonic::Status;

/// Why a batch was not written. Nothing of a failed batch is committed. (A row refused for
/// its own content is not a failure of the batch: see `WriteOutcome::refused`.)
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// More rows than one call may carry.
    #[error("a batch holds at most {max} rows, this one holds {len}")]
    TooManyRows {
        /// The limit.
        max: usize,
        /// The batch's size.
        len: usize,
    },
    /// The database failed; nothing was committed.
    #[error(transparent)]
    Database(#[from] PgError),
}

impl From<WriteError> for Status {
    fn from(err: WriteError) -> Self {
        match &err {
            WriteError::TooManyRows { .. } => Status::invalid_argument(err.to_string()),
            // Database messages can quote the data, so the caller gets only the category.
            WriteError::Database(db) if db.is_transient() => {
                Status::unavailable("database unavailable; nothing was written")
            }
            WriteError::Database(_) => Status::internal("database error; nothing was written"),
        }
    }
}
