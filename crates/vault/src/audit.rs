//! What the audit trail records about a Detokenize, Forget, RotateKeys or Rewrap call: who,
//! what, why, how many and how it ended. Never a value, never a token: the trail must be safe
//! to hand to auditors.

use std::fmt;

use crate::authz::{Caller, Method};

/// How an audited call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditOutcome {
    /// The caller was authorized and got an answer.
    Allowed,
    /// The caller was not authorized; nothing was looked up.
    Denied,
    /// The request broke a rule (purpose, size, a malformed token); nothing was looked up.
    Invalid,
    /// The vault failed (database, a key, corrupt data) and returned nothing.
    Failed,
}

impl AuditOutcome {
    /// The name stored in `vault.audit_log.outcome` and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Allowed => "allowed",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Invalid => "invalid",
            AuditOutcome::Failed => "failed",
        }
    }
}

impl fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many requested tokens ended in each status (a token requested twice counts twice, so
/// the counts add up to the request's token count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Values returned (Detokenize).
    pub found: u32,
    /// Tokens the vault never stored.
    pub not_found: u32,
    /// Tokens whose value is forgotten, before or by this call.
    pub forgotten: u32,
}

/// One row of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who called.
    pub caller: Caller,
    /// Which method.
    pub method: Method,
    /// The purpose given, cut to [`crate::vault::MAX_PURPOSE_CHARS`] characters.
    pub purpose: String,
    /// How many tokens the request held.
    pub token_count: u32,
    /// How the call ended.
    pub outcome: AuditOutcome,
    /// Per-status counts when allowed.
    pub counts: StatusCounts,
    /// What an admin call did or tried, e.g. `tokenization key v2, activates 30 s after this
    /// row`; `None` for Detokenize and Forget.
    pub detail: Option<String>,
}
