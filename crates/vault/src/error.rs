//! The vault's errors and their gRPC status codes.
//!
//! No error carries a personal value: validation messages name the index and the rule, and
//! database or KMS messages are about connections and statements, never about bound values.

use fetchreward_runtime::postgres::PgError;
use tonic::{Code, Status};

use crate::authz::Method;
use crate::crypto::CryptoError;
use crate::keys::{KeyError, KeyPurpose};
use crate::version::KeyVersion;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The request breaks a rule stated on its fields; the message names the index and rule.
    #[error("{0}")]
    InvalidArgument(String),
    /// The caller may not call the method.
    #[error("caller {caller} may not call {method}")]
    PermissionDenied {
        /// The caller's identity.
        caller: String,
        /// The refused method.
        method: Method,
    },
    /// A database statement failed.
    #[error("{0}")]
    Database(#[from] PgError),
    /// The audit row could not be written, so nothing was returned (fail closed).
    #[error("cannot write the audit trail: {0}")]
    AuditUnavailable(PgError),
    /// A key could not be loaded (a data key version unknown to this replica).
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// A stored row names a data key version that does not exist.
    #[error("token {token} is sealed under data key v{version}, which the vault does not hold")]
    UnknownDataKey {
        /// The token (not personal data).
        token: String,
        /// The missing version.
        version: i32,
    },
    /// Sealing or opening failed: a bug, or a stored row that was tampered with.
    #[error("token {token}: {source}")]
    Crypto {
        /// The token (not personal data).
        token: String,
        /// What failed.
        source: CryptoError,
    },
    /// A blocking task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(String),
    /// The request is well-formed but cannot be served in the vault's current state; the
    /// message says what to wait for.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The data key a Tokenize batch was sealed under was retired meanwhile; nothing was
    /// stored, and the keys were reloaded, so a retry succeeds.
    #[error("data key v{0} was retired during the call; nothing was stored, retry")]
    KeyRetired(KeyVersion),
    /// The caller tokenized more values than its rate limit allows; nothing was done.
    #[error(
        "caller {caller} is over its Tokenize rate limit ({rate} values a second, {burst} at \
         once); nothing was done, retry in {} ms",
        retry_after.as_millis()
    )]
    RateLimited {
        /// The caller's identity.
        caller: String,
        /// Values a second.
        rate: u32,
        /// Values at once.
        burst: u32,
        /// When the call would pass.
        retry_after: std::time::Duration,
    },
    /// The purpose is a configured code, but none of the caller's roles may give it.
    #[error("caller {caller} holds no role that may give purpose `{purpose}` (roles: {roles})")]
    PurposeNotGranted {
        /// The caller's identity.
        caller: String,
        /// The purpose code.
        purpose: String,
        /// The roles that may give it.
        roles: String,
    },
    /// The call would take the caller past its daily reveal limit for the purpose.
    #[error(
        "caller {caller} has revealed {used} of its {limit} values for this purpose today; this \
         call asks for {asked} more and was refused (an admin may lift the limit)"
    )]
    QuotaExceeded {
        /// The caller's identity.
        caller: String,
        /// Values revealed today.
        used: u64,
        /// Today's limit, lifts included.
        limit: u64,
        /// Tokens the call asked for.
        asked: usize,
    },
    /// The caller looked up more values than its rate limit allows; nothing was done.
    #[error(
        "caller {caller} is over its Lookup rate limit ({per_minute} values a minute); nothing \
         was done, retry in {} s",
        retry_after.as_secs().max(1)
    )]
    LookupRateLimited {
        /// The caller's identity.
        caller: String,
        /// Values a minute.
        per_minute: u32,
        /// When the call would pass.
        retry_after: std::time::Duration,
    },
    /// The call names a token the caller may not reveal (a planted decoy); it says no more.
    #[error("caller {caller} may not reveal one of these tokens; the call is audited")]
    Tripwire {
        /// The caller's identity.
        caller: String,
    },
    /// A concurrent rotation of the same key created the version this one was making; this
    /// call created nothing.
    #[error(
        "another rotation of the {purpose} key created v{version} at the same time; this call \
         created nothing (check the key versions before rotating again)"
    )]
    RotationConflict {
        /// The rotated key.
        purpose: KeyPurpose,
        /// The version both rotations made.
        version: KeyVersion,
    },
}

impl VaultError {
    /// Whether the error refuses the caller (audited as `denied`) rather than the request.
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            VaultError::PermissionDenied { .. }
                | VaultError::PurposeNotGranted { .. }
                | VaultError::QuotaExceeded { .. }
                | VaultError::LookupRateLimited { .. }
                | VaultError::Tripwire { .. }
        )
    }

    /// The gRPC code of the error.
    pub fn code(&self) -> Code {
        match self {
            VaultError::InvalidArgument(_) => Code::InvalidArgument,
            VaultError::PermissionDenied { .. }
            | VaultError::PurposeNotGranted { .. }
            | VaultError::Tripwire { .. } => Code::PermissionDenied,
            VaultError::QuotaExceeded { .. } | VaultError::LookupRateLimited { .. } => {
                Code::ResourceExhausted
            }
            VaultError::Database(err) => {
                if err.is_transient() {
                    Code::Unavailable
                } else {
                    Code::Internal
                }
            }
            VaultError::AuditUnavailable(_) | VaultError::KeyRetired(_) => Code::Unavailable,
            VaultError::Keys(err) => {
                if err.is_transient() {
                    Code::Unavailable
                } else {
                    Code::Internal
                }
            }
            VaultError::UnknownDataKey { .. } | VaultError::Crypto { .. } | VaultError::Task(_) => {
                Code::Internal
            }
            VaultError::FailedPrecondition(_) => Code::FailedPrecondition,
            VaultError::RotationConflict { .. } => Code::Aborted,
            VaultError::RateLimited { .. } => Code::ResourceExhausted,
        }
    }

    /// The message sent to the client: precise for request errors, generic for server-side
    /// failures (whose details go to the vault's log instead).
    pub fn client_message(&self) -> String {
        match self {
            VaultError::InvalidArgument(_)
            | VaultError::PermissionDenied { .. }
            | VaultError::PurposeNotGranted { .. }
            | VaultError::QuotaExceeded { .. }
            | VaultError::LookupRateLimited { .. }
            | VaultError::Tripwire { .. }
            | VaultError::FailedPrecondition(_)
            | VaultError::KeyRetired(_)
            | VaultError::RateLimited { .. }
            | VaultError::RotationConflict { .. } => self.to_string(),
            VaultError::Database(err) => {
                if err.is_transient() {
                    "the vault's database is unavailable; retry later".to_owned()
                } else {
                    "the vault's database failed; see the vault's log".to_owned()
                }
            }
            VaultError::AuditUnavailable(_) => {
                "the audit trail cannot be written, so nothing is returned; retry later".to_owned()
            }
            VaultError::Keys(err) => {
                if err.is_transient() {
                    "the vault cannot reach KMS or its database to load a key; retry later"
                        .to_owned()
                } else {
                    "the vault cannot load a key; see the vault's log".to_owned()
                }
            }
            VaultError::UnknownDataKey { .. } | VaultError::Crypto { .. } | VaultError::Task(_) => {
                "internal error; see the vault's log".to_owned()
            }
        }
    }
}

impl From<VaultError> for Status {
    fn from(err: VaultError) -> Self {
        Status::new(err.code(), err.client_message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_keep_their_message_and_server_errors_hide_details() {
        let invalid = Status::from(VaultError::InvalidArgument(
            "values[3]: ip is not a valid IPv4 or IPv6 address".into(),
        ));
        assert_eq!(invalid.code(), Code::InvalidArgument);
        assert_eq!(invalid.message(), "values[3]: ip is not a valid IPv4 or IPv6 address");

        let down = Status::from(VaultError::Database(PgError::Unavailable("timed out".into())));
        assert_eq!(down.code(), Code::Unavailable);
        assert!(!down.message().contains("timed out"));

        let audit = Status::from(VaultError::AuditUnavailable(PgError::Migration("x".into())));
        assert_eq!(audit.code(), Code::Unavailable);

        let denied = Status::from(VaultError::PermissionDenied {
            caller: "anonymous".into(),
            method: Method::Detokenize,
        });
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert_eq!(denied.message(), "caller anonymous may not call Detokenize");

        let conflict = Status::from(VaultError::RotationConflict {
            purpose: KeyPurpose::Tokenization,
            version: KeyVersion::of(3),
        });
        assert_eq!(conflict.code(), Code::Aborted);
        assert!(
            conflict.message().starts_with("another rotation of the tokenization key created v3")
        );
    }
}
