//! The gRPC face of the vault: translates `fetchreward.vault.v1` messages to and from the
//! domain types of [`crate::vault`], takes the call layer's decision from the request, and
//! maps errors to status codes. Nothing here decides anything.

use std::sync::Arc;

use fetchreward_proto::vault::v1 as proto;
use fetchreward_runtime::authz::Policy;
use fetchreward_runtime::calls::CallInfo;
use proto::vault_service_server::{VaultService, VaultServiceServer};
use tonic::{Code, Request, Response, Status};

use crate::authz::{Access, Method};
use crate::error::VaultError;
use crate::keys::KeyPurpose;
use crate::store::AuditFilter;
use crate::vault::{
    Detokenized, ForgetStatus, ListedAuditRow, LookedUp, RawPii, Recovery, RefusedValue,
    RestoreStatus, Vault,
};

/// The fully qualified gRPC service name, as reported by the health service.
pub const SERVICE_NAME: &str = "fetchreward.vault.v1.VaultService";

/// The tonic service over a [`Vault`].
#[derive(Debug, Clone)]
pub struct VaultGrpc {
    vault: Arc<Vault>,
    /// The policy, to tell admins (who learn that a token was forgotten) from other callers.
    policy: Arc<Policy>,
}

impl VaultGrpc {
    /// A service answering from `vault`, telling admins apart by `policy`.
    pub fn new(vault: Arc<Vault>, policy: Policy) -> Self {
        VaultGrpc { vault, policy: Arc::new(policy) }
    }

    /// The caller of `request`, whether the call layer's policy allows the call, and whether
    /// the caller is an admin.
    fn access_of<T>(&self, request: &Request<T>) -> Access {
        let call = CallInfo::of(request);
        let admin = self.policy.allows(Method::Forget.policy_group(), call.caller.identity());
        Access { caller: call.caller, allowed: call.allowed, admin }
    }

    /// The tonic server, accepting requests up to `max_message_bytes`.
    pub fn into_server(self, max_message_bytes: usize) -> VaultServiceServer<Self> {
        VaultServiceServer::new(self)
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes)
    }
}

/// Maps the outcome to a status, logging server-side failures once, here where they are
/// handled (the call layer records every call's code and duration).
fn finish<T>(method: Method, result: Result<T, VaultError>) -> Result<T, Status> {
    result.map_err(|err| {
        match err.code() {
            Code::Internal | Code::Unavailable | Code::Unknown | Code::DataLoss => {
                tracing::error!(method = method.as_str(), error = %err, "call failed");
            }
            _ => tracing::debug!(method = method.as_str(), error = %err, "call refused"),
        }
        Status::from(err)
    })
}

/// The proto form of a listed audit row.
fn audit_row(row: ListedAuditRow) -> proto::AuditRow {
    let ListedAuditRow { record, chained } = row;
    let count = |n: i32| u32::try_from(n).unwrap_or(0);
    proto::AuditRow {
        id: record.id,
        at_unix_us: record.at_us,
        caller: record.caller,
        method: record.method,
        purpose: record.purpose,
        token_count: count(record.token_count),
        outcome: record.outcome,
        found: count(record.found),
        not_found: count(record.not_found),
        forgotten: count(record.forgotten),
        detail: record.detail.unwrap_or_default(),
        chained,
    }
}

/// The proto form of a Detokenize or RevealMasked answer.
fn detokenize_response(answer: Detokenized) -> proto::DetokenizeResponse {
    let results = answer
        .results
        .into_iter()
        .map(|(token, recovery)| {
            let (status, value) = match recovery {
                Recovery::Found(value) => (proto::TokenStatus::Found, value.into_exposed()),
                Recovery::NotFound => (proto::TokenStatus::NotFound, String::new()),
                Recovery::Forgotten => (proto::TokenStatus::Forgotten, String::new()),
            };
            proto::DetokenizeResult { token: token.to_string(), status: status.into(), value }
        })
        .collect();
    proto::DetokenizeResponse { results, audit_id: answer.audit_id }
}

/// The refusal of a value whose kind is not one the vault knows.
fn unknown_kind(index: usize) -> RefusedValue {
    RefusedValue {
        index,
        code: "unknown_kind",
        reason: "kind must be PII_KIND_IP or PII_KIND_DEVICE_ID".to_owned(),
    }
}

fn refused_value(refused: RefusedValue) -> proto::RefusedValue {
    proto::RefusedValue {
        index: u32::try_from(refused.index).unwrap_or(u32::MAX),
        code: refused.code.to_owned(),
        reason: refused.reason,
    }
}

/// The key a proto target names; `None` for UNSPECIFIED and unknown numbers, which the vault
/// refuses (and audits) once it has checked the caller.
fn key_target(target: i32) -> Option<KeyPurpose> {
    match proto::KeyTarget::try_from(target) {
        Ok(proto::KeyTarget::Tokenization) => Some(KeyPurpose::Tokenization),
        Ok(proto::KeyTarget::Data) => Some(KeyPurpose::Data),
        Ok(proto::KeyTarget::Unspecified) | Err(_) => None,
    }
}

#[tonic::async_trait]
impl VaultService for VaultGrpc {
    async fn tokenize(
        &self,
        request: Request<proto::TokenizeRequest>,
    ) -> Result<Response<proto::TokenizeResponse>, Status> {
        let access = self.access_of(&request);
        let result = async {
            let values = request.into_inner().values;
            let mut refused = Vec::new();
            let mut known = Vec::with_capacity(values.len());
            let mut known_indexes = Vec::with_capacity(values.len());
            for (index, value) in values.into_iter().enumerate() {
                match value.model_kind() {
                    Some(kind) => {
                        known.push(RawPii { kind, value: value.value });
                        known_indexes.push(index);
                    }
                    None => refused.push(unknown_kind(index)),
                }
            }
            let count = known_indexes.len() + refused.len();
            let tokenized = self.vault.tokenize(&access, known).await?;
            let mut tokens = vec![String::new(); count];
            for (token, index) in tokenized.tokens.iter().zip(&known_indexes) {
                if let Some(token) = token {
                    tokens[*index] = token.to_string();
                }
            }
            refused.extend(
                tokenized
                    .refused
                    .into_iter()
                    .map(|value| RefusedValue { index: known_indexes[value.index], ..value }),
            );
            refused.sort_by_key(|value| value.index);
            Ok(proto::TokenizeResponse {
                tokens,
                refused: refused.into_iter().map(refused_value).collect(),
            })
        }
        .await;
        finish(Method::Tokenize, result).map(Response::new)
    }

    async fn detokenize(
        &self,
        request: Request<proto::DetokenizeRequest>,
    ) -> Result<Response<proto::DetokenizeResponse>, Status> {
        let access = self.access_of(&request);
        let proto::DetokenizeRequest { tokens, purpose, note } = request.into_inner();
        let result = self.vault.detokenize(&access, tokens, purpose, note).await;
        finish(Method::Detokenize, result.map(detokenize_response)).map(Response::new)
    }

    async fn reveal_masked(
        &self,
        request: Request<proto::DetokenizeRequest>,
    ) -> Result<Response<proto::DetokenizeResponse>, Status> {
        let access = self.access_of(&request);
        let proto::DetokenizeRequest { tokens, purpose, note } = request.into_inner();
        let result = self.vault.reveal_masked(&access, tokens, purpose, note).await;
        finish(Method::RevealMasked, result.map(detokenize_response)).map(Response::new)
    }

    async fn lookup(
        &self,
        request: Request<proto::LookupRequest>,
    ) -> Result<Response<proto::LookupResponse>, Status> {
        let access = self.access_of(&request);
        let proto::LookupRequest { values, purpose, note } = request.into_inner();
        let values = values
            .into_iter()
            .map(|value| value.model_kind().map(|kind| RawPii { kind, value: value.value }))
            .collect();
        let result = self.vault.lookup(&access, values, purpose, note).await.map(|answer| {
            let results = answer
                .results
                .into_iter()
                .map(|looked_up| match looked_up {
                    LookedUp::Tokens { tokens, stored } => proto::LookupResult {
                        tokens: tokens.iter().map(ToString::to_string).collect(),
                        stored,
                        refused: String::new(),
                    },
                    LookedUp::Refused(code) => {
                        proto::LookupResult { refused: code.to_owned(), ..Default::default() }
                    }
                })
                .collect();
            proto::LookupResponse { results, audit_id: answer.audit_id }
        });
        finish(Method::Lookup, result).map(Response::new)
    }

    async fn lift_quota(
        &self,
        request: Request<proto::LiftQuotaRequest>,
    ) -> Result<Response<proto::LiftQuotaResponse>, Status> {
        let access = self.access_of(&request);
        let proto::LiftQuotaRequest { caller, quota_purpose, values, purpose } =
            request.into_inner();
        let result =
            self.vault.lift_quota(&access, caller, quota_purpose, values, purpose).await.map(
                |lifted| proto::LiftQuotaResponse {
                    limit: lifted.limit,
                    used: lifted.used,
                    audit_id: lifted.audit_id,
                },
            );
        finish(Method::LiftQuota, result).map(Response::new)
    }

    async fn plant_decoys(
        &self,
        request: Request<proto::PlantDecoysRequest>,
    ) -> Result<Response<proto::PlantDecoysResponse>, Status> {
        let access = self.access_of(&request);
        let request = request.into_inner();
        let kind = proto::PiiKind::model_kind(request.kind);
        let result = self.vault.plant_decoys(&access, kind, request.count, request.purpose).await;
        let result = result.map(|planted| proto::PlantDecoysResponse {
            tokens: planted.tokens.iter().map(ToString::to_string).collect(),
            audit_id: planted.audit_id,
        });
        finish(Method::PlantDecoys, result).map(Response::new)
    }

    async fn forget(
        &self,
        request: Request<proto::ForgetRequest>,
    ) -> Result<Response<proto::ForgetResponse>, Status> {
        let access = self.access_of(&request);
        let proto::ForgetRequest { tokens, purpose } = request.into_inner();
        let result = self.vault.forget(&access, tokens, purpose).await.map(|answer| {
            let results = answer
                .results
                .into_iter()
                .map(|(token, status)| {
                    let status = match status {
                        ForgetStatus::Forgotten => proto::TokenStatus::Forgotten,
                        ForgetStatus::NotFound => proto::TokenStatus::NotFound,
                    };
                    proto::ForgetResult { token: token.to_string(), status: status.into() }
                })
                .collect();
            let receipt = answer.receipt;
            proto::ForgetResponse {
                results,
                audit_id: answer.audit_id,
                forgotten_at_unix_ms: receipt.forgotten_at_unix_ms,
                erasure_final_by_unix_ms: receipt.final_by_unix_ms.unwrap_or(0),
                generations: receipt
                    .generations
                    .iter()
                    .map(|v| u32::try_from(*v).unwrap_or(0))
                    .collect(),
                erasure: receipt.statement,
            }
        });
        finish(Method::Forget, result).map(Response::new)
    }

    async fn restore(
        &self,
        request: Request<proto::RestoreRequest>,
    ) -> Result<Response<proto::RestoreResponse>, Status> {
        let access = self.access_of(&request);
        let proto::RestoreRequest { tokens, purpose } = request.into_inner();
        let result = self.vault.restore(&access, tokens, purpose).await.map(|answer| {
            let results = answer
                .results
                .into_iter()
                .map(|(token, status)| proto::RestoreResult {
                    token: token.to_string(),
                    restored: status == RestoreStatus::Restored,
                })
                .collect();
            proto::RestoreResponse { results, audit_id: answer.audit_id }
        });
        finish(Method::Restore, result).map(Response::new)
    }

    async fn rotate_keys(
        &self,
        request: Request<proto::RotateKeysRequest>,
    ) -> Result<Response<proto::RotateKeysResponse>, Status> {
        let access = self.access_of(&request);
        let proto::RotateKeysRequest { target, purpose } = request.into_inner();
        let result =
            self.vault.rotate_keys(&access, key_target(target), purpose).await.map(|rotated| {
                proto::RotateKeysResponse {
                    active_version: rotated.version.get(),
                    audit_id: rotated.audit_id,
                    activates_at_unix_ms: rotated.activates_at_unix_ms,
                }
            });
        finish(Method::RotateKeys, result).map(Response::new)
    }

    async fn rewrap(
        &self,
        request: Request<proto::RewrapRequest>,
    ) -> Result<Response<proto::RewrapResponse>, Status> {
        let access = self.access_of(&request);
        let proto::RewrapRequest { purpose, max_rows } = request.into_inner();
        let result = self.vault.rewrap(&access, purpose, max_rows).await.map(|answer| {
            proto::RewrapResponse {
                rewrapped: answer.rewrapped,
                remaining: answer.remaining,
                audit_id: answer.audit_id,
                data_key_version: answer.data_key_version.get(),
                unreadable: answer.unreadable,
            }
        });
        finish(Method::Rewrap, result).map(Response::new)
    }

    async fn list_audit(
        &self,
        request: Request<proto::ListAuditRequest>,
    ) -> Result<Response<proto::ListAuditResponse>, Status> {
        let access = self.access_of(&request);
        let proto::ListAuditRequest {
            caller,
            method,
            outcome,
            since_unix_ms,
            until_unix_ms,
            after_id,
            limit,
        } = request.into_inner();
        let given = |text: String| (!text.is_empty()).then_some(text);
        let micros = |ms: i64| (ms != 0).then(|| ms.saturating_mul(1000));
        let filter = AuditFilter {
            caller: given(caller),
            method: given(method),
            outcome: given(outcome),
            since_us: micros(since_unix_ms),
            until_us: micros(until_unix_ms),
        };
        let result = self.vault.list_audit(&access, &filter, after_id, limit).await.map(|rows| {
            let rows = rows.into_iter().map(audit_row).collect();
            proto::ListAuditResponse { rows }
        });
        finish(Method::ListAudit, result).map(Response::new)
    }

    async fn verify_audit(
        &self,
        request: Request<proto::VerifyAuditRequest>,
    ) -> Result<Response<proto::VerifyAuditResponse>, Status> {
        let access = self.access_of(&request);
        let result = self.vault.verify_audit(&access).await.map(|verified| {
            let (broken_id, problem) =
                verified.broken.as_ref().map_or((0, String::new()), |b| (b.id, b.problem.clone()));
            proto::VerifyAuditResponse {
                intact: verified.broken.is_none(),
                rows_checked: verified.rows_checked,
                unchained: verified.unchained,
                broken_id,
                problem,
            }
        });
        finish(Method::VerifyAudit, result).map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_of_an_unknown_kind_is_refused_by_its_index() {
        let refused = unknown_kind(7);
        assert_eq!((refused.index, refused.code), (7, "unknown_kind"));
    }

    #[test]
    fn key_targets_map_to_purposes_and_unspecified_is_none() {
        assert_eq!(
            key_target(proto::KeyTarget::Tokenization.into()),
            Some(KeyPurpose::Tokenization)
        );
        assert_eq!(key_target(proto::KeyTarget::Data.into()), Some(KeyPurpose::Data));
        assert_eq!(key_target(proto::KeyTarget::Unspecified.into()), None);
        assert_eq!(key_target(9), None);
    }
}
