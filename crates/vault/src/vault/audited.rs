//! The one path every audited call takes: Detokenize, Forget, RotateKeys, Rewrap.
//!
//! 1. A call the policy refuses is audited as `denied`, then refused.
//! 2. A request that breaks a rule is audited as `invalid`, then refused.
//! 3. The action runs. It writes its own `allowed` row: before it answers (Detokenize, Rewrap)
//!    or in the transaction of its change (Forget, RotateKeys), so nothing changes or is
//!    returned unaudited.
//! 4. An action that fails is audited as `failed` (best effort: the call fails anyway); one
//!    that fails because its own audit row could not be written is not audited twice.
//!
//! Every audit write that must succeed fails the call when it does not (fail closed).

use crate::audit::{AuditEntry, AuditOutcome, StatusCounts};
use crate::authz::{Access, Caller, Method};
use crate::error::VaultError;
use crate::metrics;
use crate::store::AuditedWriteFailure;
use crate::vault::Vault;

/// Longest purpose of an audited call, in characters.
pub const MAX_PURPOSE_CHARS: usize = 512;

/// What an audited call records besides its outcome.
pub(super) struct AuditedCall<'a> {
    /// Who calls, and whether the policy allows it.
    pub(super) access: &'a Access,
    /// The method.
    pub(super) method: Method,
    /// The purpose, as given.
    pub(super) purpose: &'a str,
    /// The free text beside a purpose code, as given (empty: none).
    pub(super) note: &'a str,
    /// How many tokens the request names (Detokenize, Forget).
    pub(super) token_count: usize,
    /// What an admin call asks for, recorded when it is denied, invalid or fails.
    pub(super) asked: Option<String>,
}

impl AuditedCall<'_> {
    /// The audit row of this call for `outcome`, with `counts` and `detail` (the call's own
    /// `asked` when `None`).
    pub(super) fn entry(
        &self,
        outcome: AuditOutcome,
        counts: StatusCounts,
        detail: Option<String>,
    ) -> AuditEntry {
        AuditEntry {
            caller: self.access.caller.clone(),
            method: self.method,
            // An over-long purpose is refused, but its refusal is still audited with what fits.
            purpose: self.purpose.chars().take(MAX_PURPOSE_CHARS).collect(),
            token_count: u32::try_from(self.token_count).unwrap_or(u32::MAX),
            outcome,
            counts,
            detail: with_note(detail.or_else(|| self.asked.clone()), self.note),
        }
    }

    /// The row of an allowed call.
    pub(super) fn allowed(&self, counts: StatusCounts, detail: Option<String>) -> AuditEntry {
        self.entry(AuditOutcome::Allowed, counts, detail)
    }
}

/// How an audited action failed.
pub(super) struct Failure {
    /// `invalid` (the request cannot be served in the vault's state) or `failed`.
    outcome: AuditOutcome,
    /// What the caller is told.
    error: VaultError,
    /// What the audit row says it did, when not the call's `asked`.
    detail: Option<String>,
}

impl Failure {
    /// The vault failed.
    pub(super) fn failed(error: VaultError) -> Self {
        Failure { outcome: AuditOutcome::Failed, error, detail: None }
    }

    /// The caller is refused for a reason only the vault's state shows (a quota used up, a
    /// decoy asked for), which `detail` records.
    pub(super) fn denied(error: VaultError, detail: String) -> Self {
        Failure { outcome: AuditOutcome::Denied, error, detail: Some(detail) }
    }

    /// The vault failed after doing what `detail` says.
    pub(super) fn failed_after(error: VaultError, detail: String) -> Self {
        Failure { outcome: AuditOutcome::Failed, error, detail: Some(detail) }
    }

    /// The request cannot be served in the vault's current state, which `detail` says.
    pub(super) fn invalid(error: VaultError, detail: String) -> Self {
        Failure { outcome: AuditOutcome::Invalid, error, detail: Some(detail) }
    }
}

impl From<VaultError> for Failure {
    fn from(error: VaultError) -> Self {
        Failure::failed(error)
    }
}

impl Vault {
    /// Runs an audited call: authorize, validate, act, each refusal and failure audited (see
    /// the module's header). `act` writes the row of its success.
    pub(super) async fn audited<V, T>(
        &self,
        call: &AuditedCall<'_>,
        validate: impl FnOnce() -> Result<V, VaultError>,
        act: impl AsyncFnOnce(V) -> Result<T, Failure>,
    ) -> Result<T, VaultError> {
        let none = StatusCounts::default();
        if call.purpose.chars().chain(call.note.chars()).any(char::is_control) {
            // Postgres text cannot hold a NUL, and no purpose needs a control character: such a
            // call is refused before anything, its audit row included, is written.
            unaudited(call.method, "control_character");
            return Err(VaultError::InvalidArgument(
                "purpose or note holds a control character; nothing was done".to_owned(),
            ));
        }
        if !call.access.allowed {
            let entry = call.entry(AuditOutcome::Denied, none, None);
            self.write_audit(&entry).await.inspect_err(|_| unaudited(call.method, "denied"))?;
            return Err(denied(&call.access.caller, call.method));
        }
        let valid = match validate() {
            Ok(valid) => valid,
            Err(err) => {
                let (outcome, detail) = if err.is_denial() {
                    (AuditOutcome::Denied, Some(err.to_string()))
                } else {
                    (AuditOutcome::Invalid, None)
                };
                let entry = call.entry(outcome, none, detail);
                self.write_audit(&entry)
                    .await
                    .inspect_err(|_| unaudited(call.method, outcome.as_str()))?;
                return Err(err);
            }
        };
        match act(valid).await {
            Ok(done) => Ok(done),
            Err(Failure { error: error @ VaultError::AuditUnavailable(_), .. }) => Err(error),
            Err(Failure {
                outcome: outcome @ (AuditOutcome::Invalid | AuditOutcome::Denied),
                error,
                detail,
            }) => {
                self.write_audit(&call.entry(outcome, none, detail)).await?;
                Err(error)
            }
            Err(Failure { outcome, error, detail }) => {
                let entry = call.entry(outcome, none, detail);
                if let Err(err) = self.write_audit(&entry).await {
                    tracing::error!(method = call.method.as_str(), error = %err, "failed call not audited");
                }
                Err(error)
            }
        }
    }

    /// Writes an audit row; a failure fails the call. A Detokenize row the primary cannot take
    /// for being unreachable goes to the audit spool instead, when there is one: its id is
    /// then 0, and it gets one when it is moved into the trail ([`crate::spool`]).
    pub(super) async fn write_audit(&self, entry: &AuditEntry) -> Result<i64, VaultError> {
        let err = match self.store.audit(entry, &self.chain).await {
            Ok(id) => {
                count_audited(entry.method, entry.outcome);
                return Ok(id);
            }
            Err(err) => err,
        };
        if let Some(spool) = &self.spool
            && entry.method == Method::Detokenize
            && err.is_transient()
        {
            match spool.append(entry).await {
                Ok(()) => {
                    tracing::warn!(error = %err, spool = %spool.path().display(), "the primary is unreachable: the audit row is spooled");
                    count_audited(entry.method, entry.outcome);
                    return Ok(0);
                }
                Err(spool_err) => {
                    tracing::error!(error = %spool_err, spool = %spool.path().display(), "the audit spool cannot be written");
                }
            }
        }
        audit_write_failed(entry.method);
        Err(VaultError::AuditUnavailable(err))
    }
}

/// `detail` with the call's note after it, cut so that the note holds at most
/// [`MAX_PURPOSE_CHARS`] characters.
fn with_note(detail: Option<String>, note: &str) -> Option<String> {
    let note = note.trim();
    if note.is_empty() {
        return detail;
    }
    let note: String = note.chars().take(MAX_PURPOSE_CHARS).collect();
    Some(match detail {
        Some(detail) => format!("{detail}; note: {note}"),
        None => format!("note: {note}"),
    })
}

/// Checks the note beside a purpose (control characters are refused earlier).
pub(super) fn validate_note(note: &str) -> Result<(), VaultError> {
    if note.chars().count() > MAX_PURPOSE_CHARS {
        return Err(VaultError::InvalidArgument(format!(
            "note is longer than {MAX_PURPOSE_CHARS} characters"
        )));
    }
    Ok(())
}

/// Checks the purpose of an audited call (control characters are refused earlier, in
/// [`Vault::audited`]).
pub(super) fn validate_purpose(purpose: &str) -> Result<(), VaultError> {
    if purpose.trim().is_empty() {
        return Err(VaultError::InvalidArgument(format!(
            "purpose is required (1 to {MAX_PURPOSE_CHARS} characters)"
        )));
    }
    if purpose.chars().count() > MAX_PURPOSE_CHARS {
        return Err(VaultError::InvalidArgument(format!(
            "purpose is longer than {MAX_PURPOSE_CHARS} characters"
        )));
    }
    Ok(())
}

/// The error of a change written together with its audit row.
pub(super) fn audited_write_error(method: Method) -> impl Fn(AuditedWriteFailure) -> VaultError {
    move |err| match err {
        AuditedWriteFailure::Write(err) => VaultError::Database(err),
        AuditedWriteFailure::Audit(err) => {
            audit_write_failed(method);
            VaultError::AuditUnavailable(err)
        }
    }
}

/// Counts an audit row of `method` that could not be written.
pub(super) fn audit_write_failed(method: Method) {
    ::metrics::counter!(metrics::AUDIT_WRITE_FAILURES, "method" => method.as_str()).increment(1);
}

/// Records a refusal that left no audit row: an error line and
/// `fetchreward_vault_unaudited_calls_total{method, reason}`, to alert on.
fn unaudited(method: Method, reason: &'static str) {
    ::metrics::counter!(metrics::UNAUDITED_CALLS, "method" => method.as_str(), "reason" => reason)
        .increment(1);
    tracing::error!(method = method.as_str(), reason, "a refused call left no audit row");
}

/// Counts an audited call by method and outcome.
pub(super) fn count_audited(method: Method, outcome: AuditOutcome) {
    ::metrics::counter!(
        metrics::AUDITED_CALLS,
        "method" => method.as_str(),
        "outcome" => outcome.as_str()
    )
    .increment(1);
}

/// The refusal of `method` to `caller` (the call layer counted and logged it).
pub(super) fn denied(caller: &Caller, method: Method) -> VaultError {
    VaultError::PermissionDenied { caller: caller.identity().to_owned(), method }
}

/// Counts the per-token results of a Detokenize or Forget.
pub(super) fn record_results(method: Method, counts: StatusCounts) {
    for (status, n) in
        [("found", counts.found), ("not_found", counts.not_found), ("forgotten", counts.forgotten)]
    {
        if n > 0 {
            ::metrics::counter!(metrics::TOKEN_RESULTS, "method" => method.as_str(), "status" => status)
                .increment(u64::from(n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audited_purposes_are_cut_to_the_limit() {
        let access = Access::denied(Caller::anonymous());
        let call = AuditedCall {
            access: &access,
            method: Method::Detokenize,
            purpose: &"é".repeat(600),
            note: "",
            token_count: 3,
            asked: None,
        };
        let entry = call.entry(AuditOutcome::Invalid, StatusCounts::default(), None);
        assert_eq!(entry.purpose.chars().count(), MAX_PURPOSE_CHARS);
        assert_eq!(entry.token_count, 3);
    }

    #[test]
    fn an_admin_calls_request_is_its_detail_unless_the_action_says_more() {
        let access = Access::allowed(Caller::anonymous());
        let call = AuditedCall {
            access: &access,
            method: Method::RotateKeys,
            purpose: "yearly",
            note: "",
            token_count: 0,
            asked: Some("rotate the data key".into()),
        };
        let none = StatusCounts::default();
        assert_eq!(
            call.entry(AuditOutcome::Denied, none, None).detail.as_deref(),
            Some("rotate the data key")
        );
        let done = call.allowed(none, Some("data key v2, activates at …".into()));
        assert_eq!(done.detail.as_deref(), Some("data key v2, activates at …"));
    }

    #[test]
    fn a_note_follows_the_detail() {
        assert_eq!(with_note(None, " "), None);
        assert_eq!(with_note(None, "DSAR-42").as_deref(), Some("note: DSAR-42"));
        assert_eq!(
            with_note(Some("decoy hit".into()), "DSAR-42").as_deref(),
            Some("decoy hit; note: DSAR-42")
        );
        assert!(validate_note(&"n".repeat(MAX_PURPOSE_CHARS + 1)).is_err());
    }

    #[test]
    fn purposes_must_be_given_and_short_enough() {
        assert!(validate_purpose(" ").is_err());
        assert!(validate_purpose(&"p".repeat(MAX_PURPOSE_CHARS + 1)).is_err());
        assert!(validate_purpose(&"p".repeat(MAX_PURPOSE_CHARS)).is_ok());
    }
}
