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

/// One row of the audit trail as stored, with what its chain link covers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// Its sequence number.
    pub id: i64,
    /// When it was written, in microseconds since the Unix epoch (database clock).
    pub at_us: i64,
    /// Who called.
    pub caller: String,
    /// Which method.
    pub method: String,
    /// The purpose given.
    pub purpose: String,
    /// Tokens in the request.
    pub token_count: i32,
    /// `allowed`, `denied`, `invalid` or `failed`.
    pub outcome: String,
    /// Values returned.
    pub found: i32,
    /// Tokens never stored.
    pub not_found: i32,
    /// Tokens whose value is forgotten.
    pub forgotten: i32,
    /// What an admin call did.
    pub detail: Option<String>,
}

impl AuditRecord {
    /// The stored form of `entry`, as row `id` written at `at_us`.
    pub fn of(entry: &AuditEntry, id: i64, at_us: i64) -> Self {
        let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        AuditRecord {
            id,
            at_us,
            caller: entry.caller.identity().to_owned(),
            method: entry.method.as_str().to_owned(),
            purpose: entry.purpose.clone(),
            token_count: count(entry.token_count),
            outcome: entry.outcome.as_str().to_owned(),
            found: count(entry.counts.found),
            not_found: count(entry.counts.not_found),
            forgotten: count(entry.counts.forgotten),
            detail: entry.detail.clone(),
        }
    }

    /// The bytes the row's chain link covers: every column in order, numbers big-endian, texts
    /// length-prefixed, so that no two different rows encode alike.
    pub fn chain_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.purpose.len());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.at_us.to_be_bytes());
        let text = |out: &mut Vec<u8>, text: &str| {
            out.extend_from_slice(&(text.len() as u64).to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        };
        text(&mut out, &self.caller);
        text(&mut out, &self.method);
        text(&mut out, &self.purpose);
        for n in [self.token_count, self.found, self.not_found, self.forgotten] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        text(&mut out, &self.outcome);
        match &self.detail {
            None => out.push(0),
            Some(detail) => {
                out.push(1);
                text(&mut out, detail);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        AuditRecord {
            id: 7,
            at_us: 1_700_000_000_000_000,
            caller: "spiffe://fetchreward/reader".into(),
            method: "Detokenize".into(),
            purpose: "ticket 1".into(),
            token_count: 2,
            outcome: "allowed".into(),
            found: 1,
            not_found: 1,
            forgotten: 0,
            detail: None,
        }
    }

    #[test]
    fn every_field_changes_the_bytes_a_link_covers() {
        let base = record().chain_bytes();
        let edits: [fn(&mut AuditRecord); 7] = [
            |r| r.id += 1,
            |r| r.at_us += 1,
            |r| r.purpose.push('!'),
            |r| r.found += 1,
            |r| r.outcome = "denied".into(),
            |r| r.detail = Some(String::new()),
            // Moving text from one field to the next is a different row too.
            |r| {
                r.caller.push('D');
                r.method.remove(0);
            },
        ];
        for edit in edits {
            let mut edited = record();
            edit(&mut edited);
            assert_ne!(edited.chain_bytes(), base, "{edited:?}");
        }
    }
}
