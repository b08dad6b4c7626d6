//! Vault commands: detokenize, forget, restore, rotate keys, rewrap, the audit trail.

use std::time::Duration;

use anyhow::Context;
use fetchreward_proto::vault::v1::vault_service_client::VaultServiceClient;
use fetchreward_proto::vault::v1::{
    AuditRow, DetokenizeRequest, ForgetRequest, KeyTarget, ListAuditRequest, RestoreRequest,
    RewrapRequest, RotateKeysRequest, TokenStatus, VerifyAuditRequest, VerifyAuditResponse,
};
use fetchreward_runtime::tls::TlsFiles;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// How long [`rewrap_all`] waits before asking again when a call moved nothing although rows
/// remain (another rewrap holds them).
const REWRAP_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Calls in a row that may move nothing before [`rewrap_all`] gives up.
const REWRAP_MAX_IDLE_CALLS: u32 = 30;

/// Connects to the vault at `endpoint`.
///
/// With `tls`, the vault is verified against its CA and the certificate in `tls` is presented:
/// that certificate's SPIFFE id is the identity the vault authorizes and audits.
pub async fn connect(
    endpoint: &str,
    tls: Option<&TlsFiles>,
) -> anyhow::Result<VaultServiceClient<Channel>> {
    let mut endpoint_config = Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("{endpoint} is not a valid endpoint"))?;
    if let Some(files) = tls {
        if !endpoint.starts_with("https://") {
            anyhow::bail!(
                "with client certificates the vault endpoint must be https://, not {endpoint}"
            );
        }
        let config = files.client_config().context("cannot load the client certificate")?;
        endpoint_config = endpoint_config.tls_config(config).context("invalid TLS settings")?;
    }
    let channel = endpoint_config.connect().await.with_context(|| {
        format!(
            "cannot reach the vault at {endpoint} (a refused client certificate also ends the \
             connection: check that it is issued by the vault's CA and not expired)"
        )
    })?;
    Ok(VaultServiceClient::new(channel))
}

/// A refused or failed call, said plainly.
pub fn explain(status: Status) -> anyhow::Error {
    match status.code() {
        Code::PermissionDenied => anyhow::anyhow!(
            "the vault refused: {} (this identity is not authorized for that method; the refusal is audited)",
            status.message()
        ),
        Code::InvalidArgument => {
            anyhow::anyhow!("the vault rejected the request: {}", status.message())
        }
        Code::Unavailable => anyhow::anyhow!("the vault is unavailable: {}", status.message()),
        Code::FailedPrecondition => {
            anyhow::anyhow!("the vault cannot do that yet: {}", status.message())
        }
        Code::Aborted => anyhow::anyhow!("the vault aborted the call: {}", status.message()),
        Code::ResourceExhausted => {
            anyhow::anyhow!("the vault refused, over a limit: {}", status.message())
        }
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

/// How much of each value a reveal returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reveal {
    /// The value (Detokenize).
    Full,
    /// Its masked form (RevealMasked).
    Masked,
}

/// Recovers the values (or the masked forms) that `request` asks for; returns (token, status,
/// value) rows and the audit id.
pub async fn detokenize(
    client: &mut VaultServiceClient<Channel>,
    request: DetokenizeRequest,
    reveal: Reveal,
) -> anyhow::Result<(Vec<[String; 3]>, i64)> {
    let reply = match reveal {
        Reveal::Full => client.detokenize(request).await,
        Reveal::Masked => client.reveal_masked(request).await,
    }
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

/// The answer to a Forget call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// (token, status) per requested token.
    pub rows: Vec<[String; 2]>,
    /// The audit row of the call.
    pub audit_id: i64,
    /// When the values left the live table (Unix milliseconds); 0 when none was stored.
    pub forgotten_at_unix_ms: i64,
    /// When no copy anywhere can be decrypted (Unix milliseconds); 0 when no date is promised.
    pub final_by_unix_ms: i64,
    /// The data key generations that held the values.
    pub generations: Vec<u32>,
    /// The guarantee in words.
    pub erasure: String,
}

/// Destroys the stored values of `tokens`, with the vault's erasure receipt.
pub async fn forget(
    client: &mut VaultServiceClient<Channel>,
    tokens: Vec<String>,
    purpose: String,
) -> anyhow::Result<Forgotten> {
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
    Ok(Forgotten {
        rows,
        audit_id: reply.audit_id,
        forgotten_at_unix_ms: reply.forgotten_at_unix_ms,
        final_by_unix_ms: reply.erasure_final_by_unix_ms,
        generations: reply.generations,
        erasure: reply.erasure,
    })
}

/// Lets the tombstones among `tokens` be stored again; returns (token, outcome) rows and the
/// audit id.
pub async fn restore(
    client: &mut VaultServiceClient<Channel>,
    tokens: Vec<String>,
    purpose: String,
) -> anyhow::Result<(Vec<[String; 2]>, i64)> {
    let reply =
        client.restore(RestoreRequest { tokens, purpose }).await.map_err(explain)?.into_inner();
    let rows = reply
        .results
        .into_iter()
        .map(|result| {
            let outcome = if result.restored {
                "restored: stored again when next tokenized"
            } else {
                "unchanged: not a tombstone"
            };
            [result.token, outcome.to_owned()]
        })
        .collect();
    Ok((rows, reply.audit_id))
}

/// A key version made by a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The new version.
    pub version: u32,
    /// When it takes over, in Unix milliseconds (the vault's database clock).
    pub activates_at_unix_ms: i64,
    /// The audit row of the call.
    pub audit_id: i64,
}

/// Rotates a key: a new version that takes over after the vault's rotation delay.
pub async fn rotate(
    client: &mut VaultServiceClient<Channel>,
    target: KeyTarget,
    purpose: String,
) -> anyhow::Result<Rotation> {
    let reply = client
        .rotate_keys(RotateKeysRequest { target: target.into(), purpose })
        .await
        .map_err(explain)?
        .into_inner();
    Ok(Rotation {
        version: reply.active_version,
        activates_at_unix_ms: reply.activates_at_unix_ms,
        audit_id: reply.audit_id,
    })
}

/// The answer to one Rewrap call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapStep {
    /// Stored values re-encrypted by the call.
    pub rewrapped: u32,
    /// Stored values still under older data key versions after it.
    pub remaining: u64,
    /// The data key version they were re-encrypted under.
    pub data_key_version: u32,
    /// The audit row of the call.
    pub audit_id: i64,
    /// Tokens whose stored value did not open under its data key: marked and skipped.
    pub unreadable: Vec<String>,
}

/// Re-encrypts up to `max_rows` stored values under the active data key (0: the vault's
/// default batch).
pub async fn rewrap(
    client: &mut VaultServiceClient<Channel>,
    purpose: String,
    max_rows: u32,
) -> anyhow::Result<RewrapStep> {
    let reply =
        client.rewrap(RewrapRequest { purpose, max_rows }).await.map_err(explain)?.into_inner();
    Ok(RewrapStep {
        rewrapped: reply.rewrapped,
        remaining: reply.remaining,
        data_key_version: reply.data_key_version,
        audit_id: reply.audit_id,
        unreadable: reply.unreadable,
    })
}

/// Calls Rewrap until no stored value needs an older data key, handing each step and the
/// running total to `progress`; returns the total. A call that moves nothing while values
/// remain (another rewrap holds them) is retried after a pause, a bounded number of times.
pub async fn rewrap_all(
    client: &mut VaultServiceClient<Channel>,
    purpose: String,
    max_rows: u32,
    mut progress: impl FnMut(&RewrapStep, u64),
) -> anyhow::Result<u64> {
    let mut total = 0u64;
    let mut idle_calls = 0;
    loop {
        let step = rewrap(client, purpose.clone(), max_rows).await?;
        total += u64::from(step.rewrapped);
        progress(&step, total);
        if step.remaining == 0 {
            return Ok(total);
        }
        if step.rewrapped > 0 {
            idle_calls = 0;
            continue;
        }
        idle_calls += 1;
        if idle_calls >= REWRAP_MAX_IDLE_CALLS {
            anyhow::bail!(
                "{} stored values remain under older data keys, but {idle_calls} calls in a row \
                 could not take any: another rewrap or a long transaction holds them; run the \
                 command again once it has finished",
                step.remaining
            );
        }
        tokio::time::sleep(REWRAP_RETRY_PAUSE).await;
    }
}

/// Every audit row matching `filter` (its `after_id` and `limit` are set here), oldest first,
/// page after page.
pub async fn list_audit(
    client: &mut VaultServiceClient<Channel>,
    filter: ListAuditRequest,
    max: usize,
) -> anyhow::Result<Vec<AuditRow>> {
    let mut rows: Vec<AuditRow> = Vec::new();
    loop {
        let after_id = rows.last().map_or(0, |row| row.id);
        let page = client
            .list_audit(ListAuditRequest { after_id, limit: 0, ..filter.clone() })
            .await
            .map_err(explain)?
            .into_inner()
            .rows;
        let done = page.is_empty();
        rows.extend(page);
        if done || rows.len() >= max {
            rows.truncate(max);
            return Ok(rows);
        }
    }
}

/// Walks the audit trail's hash chain in the vault.
pub async fn verify_audit(
    client: &mut VaultServiceClient<Channel>,
) -> anyhow::Result<VerifyAuditResponse> {
    Ok(client.verify_audit(VerifyAuditRequest {}).await.map_err(explain)?.into_inner())
}
