//! Vault commands: detokenize, forget, rotate keys.

use anyhow::Context;
use fetchreward_proto::vault::v1::vault_service_client::VaultServiceClient;
use fetchreward_proto::vault::v1::{
    DetokenizeRequest, ForgetRequest, KeyTarget, RotateKeysRequest, TokenStatus,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Connects to the vault at `endpoint`.
pub async fn connect(endpoint: &str) -> anyhow::Result<VaultServiceClient<Channel>> {
    let channel = Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("{endpoint} is not a valid endpoint"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach the vault at {endpoint}"))?;
    Ok(VaultServiceClient::new(channel))
}

/// A refused or failed call, said plainly.
fn explain(status: Status) -> anyhow::Error {
    match status.code() {
        Code::PermissionDenied => anyhow::anyhow!(
            "the vault refused: {} (this identity is not authorized for that method; the refusal is audited)",
            status.message()
        ),
        Code::InvalidArgument => {
            anyhow::anyhow!("the vault rejected the request: {}", status.message())
        }
        Code::Unavailable => anyhow::anyhow!("the vault is unavailable: {}", status.message()),
        _ => anyhow::anyhow!("the vault answered {:?}: {}", status.code(), status.message()),
    }
}

fn status_name(status: TokenStatus) -> &'static str {
    match status {
        TokenStatus::Found => "found",
        TokenStatus::NotFound => "not found",
        TokenStatus::Forgotten => "forgotten",
        TokenStatus::Unspecified => "unknown",
    }
}

/// Recovers the values of `tokens`; returns (token, status, value) rows and the audit id.
pub async fn detokenize(
    client: &mut VaultServiceClient<Channel>,
    tokens: Vec<String>,
    purpose: String,
) -> anyhow::Result<(Vec<[String; 3]>, i64)> {
    let reply = client
        .detokenize(DetokenizeRequest { tokens, purpose })
        .await
        .map_err(explain)?
        .into_inner();
    let rows = reply
        .results
        .into_iter()
        .map(|result| {
            let status = status_name(result.status());
            [result.token, status.to_owned(), result.value]
        })
        .collect();
    Ok((rows, reply.audit_id))
}

/// Destroys the stored values of `tokens`; returns (token, status) rows and the audit id.
pub async fn forget(
    client: &mut VaultServiceClient<Channel>,
    tokens: Vec<String>,
    purpose: String,
) -> anyhow::Result<(Vec<[String; 2]>, i64)> {
    let reply =
        client.forget(ForgetRequest { tokens, purpose }).await.map_err(explain)?.into_inner();
    let rows = reply
        .results
        .into_iter()
        .map(|result| {
            let status = status_name(result.status());
            [result.token, status.to_owned()]
        })
        .collect();
    Ok((rows, reply.audit_id))
}

/// Rotates a key; returns the new active version and the audit id.
pub async fn rotate(
    client: &mut VaultServiceClient<Channel>,
    target: KeyTarget,
    purpose: String,
) -> anyhow::Result<(u32, i64)> {
    let reply = client
        .rotate_keys(RotateKeysRequest { target: target.into(), purpose })
        .await
        .map_err(explain)?
        .into_inner();
    Ok((reply.active_version, reply.audit_id))
}
