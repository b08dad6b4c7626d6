//! Tokenize: determinism, separation of kinds, keyed tokens, encrypted storage, validation.

use aws_lc_rs::{digest, hmac};
use fetchreward_model::Token;
use fetchreward_proto::vault::v1::{PiiKind, PiiValue, TokenizeRequest};
use tonic::Code;

use crate::helpers::{
    Resources, audit_rows, device, ip, spawn_vault, spawn_vault_on, stored_tokens,
};

#[tokio::test]
async fn the_same_value_gets_the_same_token_from_two_vaults_sharing_a_database() {
    let resources = Resources::create().await;
    let mut first = spawn_vault_on(&resources, &[]).await;
    let mut second = spawn_vault_on(&resources, &[]).await;
    let values = || vec![ip("198.51.100.23"), device("593-47-5928")];

    let from_first = first.tokenize(values()).await;
    let from_second = second.tokenize(values()).await;
    assert_eq!(from_first, from_second);
    assert!(from_first[0].starts_with("ip_v1_"), "{}", from_first[0]);
    assert!(from_first[1].starts_with("dev_v1_"), "{}", from_first[1]);
    assert_eq!(stored_tokens(&resources.db).await.len(), 2);
}

#[tokio::test]
async fn equal_canonical_forms_share_a_token_and_are_stored_once() {
    let (mut vault, resources) = spawn_vault().await;
    let tokens = vault
        .tokenize(vec![
            ip("192.0.2.1"),
            ip("::ffff:192.0.2.1"),
            ip("2001:DB8:0:0:0:0:0:1"),
            ip("2001:db8::1"),
            device("  abc-123 "),
            device("abc-123"),
        ])
        .await;
    assert_eq!(tokens[0], tokens[1]);
    assert_eq!(tokens[2], tokens[3]);
    assert_eq!(tokens[4], tokens[5]);
    assert_eq!(stored_tokens(&resources.db).await.len(), 3);
}

#[tokio::test]
async fn the_same_text_as_ip_and_as_device_id_gets_unrelated_tokens() {
    let (mut vault, _resources) = spawn_vault().await;
    let tokens = vault.tokenize(vec![ip("10.1.2.3"), device("10.1.2.3")]).await;
    let as_ip: Token = tokens[0].parse().expect("a token");
    let as_device: Token = tokens[1].parse().expect("a token");
    assert_ne!(as_ip.mac(), as_device.mac());
}

#[tokio::test]
async fn a_token_is_not_an_unkeyed_hash_of_the_value() {
    let (mut vault, _resources) = spawn_vault().await;
    let value = "203.0.113.77";
    let tokens = vault.tokenize(vec![ip(value), device(value)]).await;
    let sha256 = digest::digest(&digest::SHA256, value.as_bytes());
    let empty_key_hmac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &[]), value.as_bytes());
    for token in tokens {
        let token: Token = token.parse().expect("a token");
        assert_ne!(token.mac().as_slice(), sha256.as_ref());
        assert_ne!(token.mac().as_slice(), empty_key_hmac.as_ref());
    }
}

#[tokio::test]
async fn the_stored_ciphertext_does_not_contain_the_value() {
    let (mut vault, resources) = spawn_vault().await;
    let values = ["198.51.100.200", "device-ABCDEF-0123456789"];
    vault.tokenize(vec![ip(values[0]), device(values[1])]).await;
    let rows = stored_tokens(&resources.db).await;
    assert_eq!(rows.len(), 2);
    for row in rows {
        let ciphertext = row.ciphertext.expect("stored");
        let nonce = row.nonce.expect("stored");
        assert_eq!(nonce.len(), 12);
        assert_eq!(row.data_key_version, 1);
        let value = if row.kind == "ip" { values[0] } else { values[1] };
        assert_eq!(ciphertext.len(), value.len() + 16, "ciphertext and GCM tag");
        // No 4-byte run of the value survives: it is encrypted, not encoded.
        for window in value.as_bytes().windows(4) {
            assert!(!ciphertext.windows(4).any(|w| w == window), "{}", row.token);
        }
    }
}

#[tokio::test]
async fn an_existing_token_is_never_rewritten() {
    let resources = Resources::create().await;
    // Without the cache every call goes to the database.
    let mut vault = spawn_vault_on(&resources, &[("VAULT_TOKEN_CACHE_CAPACITY", "0")]).await;
    vault.tokenize(vec![ip("192.0.2.9")]).await;
    let before = stored_tokens(&resources.db).await;
    vault.tokenize(vec![ip("192.0.2.9")]).await;
    let after = stored_tokens(&resources.db).await;
    assert_eq!(before[0].ciphertext, after[0].ciphertext);
    assert_eq!(before[0].nonce, after[0].nonce);
}

#[tokio::test]
async fn an_invalid_value_is_refused_alone_by_index_and_the_others_tokenized() {
    let (mut vault, resources) = spawn_vault().await;
    let reply = vault
        .client
        .tokenize(TokenizeRequest {
            values: vec![
                ip("192.0.2.1"),
                device("ok"),
                ip("300.1.2.3"),
                device("   "),
                PiiValue { kind: PiiKind::Unspecified.into(), value: "x".into() },
                device(&"x".repeat(257)),
                device("593\0-47"),
            ],
        })
        .await
        .expect("answered")
        .into_inner();
    let tokenized: Vec<bool> = reply.tokens.iter().map(|t| !t.is_empty()).collect();
    assert_eq!(tokenized, [true, true, false, false, false, false, false]);
    assert!(reply.tokens[0].parse::<Token>().is_ok());
    let refused: Vec<(u32, &str, &str)> =
        reply.refused.iter().map(|r| (r.index, r.code.as_str(), r.reason.as_str())).collect();
    assert_eq!(
        refused,
        [
            (2, "invalid_ip", "ip is not a valid IPv4 or IPv6 address"),
            (3, "empty_value", "device_id is empty"),
            (4, "unknown_kind", "kind must be PII_KIND_IP or PII_KIND_DEVICE_ID"),
            (5, "too_long", "device_id is longer than 256 characters"),
            (6, "nul_character", "device_id holds a NUL character (U+0000)"),
        ]
    );
    assert!(reply.refused.iter().all(|r| !r.reason.contains("300.1.2.3")));
    assert_eq!(stored_tokens(&resources.db).await.len(), 2, "the accepted values are stored");
}

#[tokio::test]
async fn too_many_values_refuse_the_call() {
    let (mut vault, _resources) = spawn_vault().await;
    let status = vault
        .client
        .tokenize(TokenizeRequest { values: vec![device("x"); 10_001] })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "values: at most 10000 values per call, got 10001");
}

#[tokio::test]
async fn a_full_batch_of_ten_thousand_values_is_stored_in_one_call() {
    let (mut vault, resources) = spawn_vault().await;
    let values: Vec<PiiValue> = (0..10_000u32)
        .map(|i| ip(&std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string()))
        .collect();
    let tokens = vault.tokenize(values).await;
    assert_eq!(tokens.len(), 10_000);
    assert_eq!(stored_tokens(&resources.db).await.len(), 10_000);
}

/// `n` distinct IPv4 values from 10.`prefix`.0.0 on.
fn addresses(prefix: u8, n: u32) -> Vec<PiiValue> {
    (0..n).map(|i| ip(&format!("10.{prefix}.{}.{}", i / 256, i % 256))).collect()
}

#[tokio::test]
async fn tokenize_past_the_callers_rate_limit_is_refused_and_the_volume_is_audited() {
    let resources = Resources::create().await;
    let limit = [("VAULT_TOKENIZE_RATE", "1"), ("VAULT_TOKENIZE_BURST", "10000")];
    let mut vault = spawn_vault_on(&resources, &limit).await;

    // A /16 is 65,536 values: the first 6,000 pass, the next call finds the bucket too low.
    vault.tokenize(addresses(1, 6_000)).await;
    let refused = vault
        .client
        .tokenize(TokenizeRequest { values: addresses(2, 6_000) })
        .await
        .expect_err("over the limit");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains(
            "caller anonymous is over its Tokenize rate limit (1 values a second, 10000 at once)"
        ),
        "{}",
        refused.message()
    );
    assert_eq!(stored_tokens(&resources.db).await.len(), 6_000, "the refused call stored nothing");
    // Another vault replica has its own bucket.
    let mut other = spawn_vault_on(&resources, &limit).await;
    other.tokenize(addresses(1, 10)).await;

    // The volume row of each replica is written every minute and when it stops.
    vault.running.stop().await.expect("stops cleanly");
    let rows = audit_rows(&resources.db).await;
    let volume: Vec<_> = rows.iter().filter(|row| row.method == "Tokenize").collect();
    assert_eq!(volume.len(), 1, "{rows:?}");
    assert_eq!((volume[0].caller.as_str(), volume[0].token_count), ("anonymous", 6_000));
    assert_eq!(
        volume[0].detail.as_deref(),
        Some(
            "6000 values tokenized, 6000 of them new, 6000 refused by the rate limit, in the last 60 s or less"
        )
    );
}
