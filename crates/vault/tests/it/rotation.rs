//! Key rotation and rewrap: versions that coexist, replicas that switch together, admin-only
//! calls that are always audited.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fetchreward_model::PiiKind;
use fetchreward_proto::vault::v1::vault_service_client::VaultServiceClient;
use fetchreward_proto::vault::v1::{
    DetokenizeRequest, ForgetRequest, KeyTarget, RewrapRequest, RotateKeysRequest, TokenStatus,
};
use fetchreward_vault::Application;
use fetchreward_vault::authz::{Access, Caller};
use fetchreward_vault::vault::RawPii;
use tokio::sync::Barrier;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{
    ALLOW_ANONYMOUS, HeldAtBarrier, Resources, TestVault, audit_rows, device, ip, key_counts,
    spawn_admin_vault_on, spawn_admin_vault_with, spawn_vault_on, stored_tokens,
};

/// Rotations take over at once.
const NO_DELAY: (&str, &str) = ("VAULT_ROTATION_DELAY_SECS", "0");

/// How long two replicas may take to switch after a rotation with a 2 s delay before the test
/// gives up: the delay, a refresh interval and a generous margin for a loaded machine.
const SWITCH_DEADLINE: Duration = Duration::from_secs(20);

fn now_unix_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970");
    i64::try_from(since_epoch.as_millis()).expect("fits")
}

/// The found value of each token, or its status when not found.
async fn recovered(vault: &mut TestVault, tokens: &[String]) -> Vec<String> {
    let answer = vault.detokenize(tokens).await.expect("allowed");
    answer
        .results
        .into_iter()
        .map(|result| match result.status() {
            TokenStatus::Found => result.value,
            status => format!("{status:?}"),
        })
        .collect()
}

#[tokio::test]
async fn after_a_tokenization_rotation_tokens_of_both_versions_detokenize_and_new_ones_are_v2() {
    let resources = Resources::create().await;
    let mut vault = spawn_admin_vault_on(&resources, &[NO_DELAY]).await;
    let before = vault.tokenize(vec![ip("198.51.100.1"), device("device-one")]).await;
    assert!(before[0].starts_with("ip_v1_") && before[1].starts_with("dev_v1_"), "{before:?}");

    let rotated = vault.rotate(KeyTarget::Tokenization).await.expect("allowed");
    assert_eq!(rotated.active_version, 2);
    assert!(rotated.activates_at_unix_ms <= now_unix_ms() + 1_000, "no delay configured");
    assert_eq!(
        key_counts(&resources.db).await,
        [("data".to_owned(), 1), ("tokenization".to_owned(), 2)]
    );

    // A value seen before the rotation, a new one, and the old device again.
    let after =
        vault.tokenize(vec![ip("198.51.100.1"), ip("198.51.100.2"), device("device-one")]).await;
    for token in &after {
        assert!(token.starts_with("ip_v2_") || token.starts_with("dev_v2_"), "{token}");
    }
    assert_ne!(after[0], before[0], "the same value gets another pseudonym under v2");
    assert_ne!(after[2], before[1]);

    let mut all = before.clone();
    all.extend(after.iter().cloned());
    assert_eq!(
        recovered(&mut vault, &all).await,
        ["198.51.100.1", "device-one", "198.51.100.1", "198.51.100.2", "device-one"]
    );
    // The tokenization rotation left the data key alone.
    assert!(stored_tokens(&resources.db).await.iter().all(|row| row.data_key_version == 1));

    let audit = audit_rows(&resources.db).await;
    let rotation = audit.iter().find(|row| row.method == "RotateKeys").expect("audited");
    assert_eq!(rotation.id, rotated.audit_id);
    assert_eq!(
        (rotation.caller.as_str(), rotation.outcome.as_str(), rotation.purpose.as_str()),
        ("anonymous", "allowed", "integration test")
    );
    let detail = rotation.detail.as_deref().unwrap_or_default();
    assert!(detail.starts_with("tokenization key v2, activates at 20"), "{detail}");

    // A restarted vault loads every version: old tokens still detokenize, new ones stay v2.
    vault.running.stop().await.expect("stops cleanly");
    let mut restarted = spawn_admin_vault_on(&resources, &[NO_DELAY]).await;
    assert_eq!(restarted.tokenize(vec![ip("198.51.100.1")]).await[0], after[0]);
    assert_eq!(recovered(&mut restarted, &before).await, ["198.51.100.1", "device-one"]);
}

#[tokio::test]
async fn after_a_data_rotation_old_rows_keep_their_key_and_new_rows_use_the_new_one() {
    let resources = Resources::create().await;
    let mut vault = spawn_admin_vault_on(&resources, &[NO_DELAY]).await;
    let old = vault.tokenize(vec![ip("203.0.113.10")]).await;

    let rotated = vault.rotate(KeyTarget::Data).await.expect("allowed");
    assert_eq!(rotated.active_version, 2);
    let new = vault.tokenize(vec![ip("203.0.113.11"), ip("203.0.113.10")]).await;
    assert_eq!(new[1], old[0], "a data rotation does not change tokens");
    assert!(new[0].starts_with("ip_v1_"));

    let versions: HashMap<String, i32> = stored_tokens(&resources.db)
        .await
        .into_iter()
        .map(|row| (row.token, row.data_key_version))
        .collect();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[&old[0]], 1, "an existing row is not re-sealed by Tokenize");
    assert_eq!(versions[&new[0]], 2);
    assert_eq!(
        recovered(&mut vault, &[old[0].clone(), new[0].clone()]).await,
        ["203.0.113.10", "203.0.113.11"]
    );
}

#[tokio::test]
async fn rewrap_moves_every_stored_value_to_the_active_data_key_and_then_has_nothing_to_do() {
    const VALUES: u32 = 1_300;
    let resources = Resources::create().await;
    let mut vault = spawn_admin_vault_on(&resources, &[NO_DELAY]).await;
    let values: Vec<String> = (0..VALUES).map(|i| format!("rewrap-device-{i}")).collect();
    let tokens = vault.tokenize(values.iter().map(|value| device(value)).collect()).await;
    vault
        .client
        .forget(ForgetRequest { tokens: vec![tokens[0].clone()], purpose: "erasure".into() })
        .await
        .expect("allowed");
    let nothing_yet = vault.rewrap(0).await.expect("allowed");
    assert_eq!((nothing_yet.rewrapped, nothing_yet.remaining), (0, 0));

    vault.rotate(KeyTarget::Data).await.expect("allowed");
    let before = stored_tokens(&resources.db).await;

    // More than one chunk, less than everything.
    let first = vault.rewrap(700).await.expect("allowed");
    assert_eq!((first.rewrapped, first.remaining), (700, u64::from(VALUES) - 1 - 700));
    let second = vault.rewrap(0).await.expect("allowed");
    assert_eq!((second.rewrapped, second.remaining), (VALUES - 1 - 700, 0));
    let third = vault.rewrap(0).await.expect("allowed");
    assert_eq!((third.rewrapped, third.remaining), (0, 0), "idempotent");

    let after = stored_tokens(&resources.db).await;
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old.token, new.token);
        if new.token == tokens[0] {
            assert_eq!(new.ciphertext, None, "a forgotten value stays forgotten");
            continue;
        }
        assert_eq!((old.data_key_version, new.data_key_version), (1, 2), "{}", new.token);
        assert_ne!(old.ciphertext, new.ciphertext);
        assert_ne!(old.nonce, new.nonce);
    }
    for (chunk_tokens, chunk_values) in tokens.chunks(1_000).zip(values.chunks(1_000)) {
        let mut expected: Vec<String> = chunk_values.to_vec();
        if chunk_tokens[0] == tokens[0] {
            expected[0] = "Forgotten".to_owned();
        }
        assert_eq!(recovered(&mut vault, chunk_tokens).await, expected);
    }

    let rewraps: Vec<_> = audit_rows(&resources.db)
        .await
        .into_iter()
        .filter(|row| row.method == "Rewrap")
        .map(|row| (row.id, row.outcome, row.detail.unwrap_or_default()))
        .collect();
    assert_eq!(rewraps.len(), 4);
    assert_eq!(rewraps[1].0, first.audit_id);
    assert_eq!(rewraps[1].1, "allowed");
    assert_eq!(rewraps[1].2, "re-encrypt up to 700 stored values under data key v2");
}

#[tokio::test]
async fn a_row_its_data_key_does_not_open_is_reported_and_skipped_not_retried_for_ever() {
    use diesel_async::RunQueryDsl;

    let resources = Resources::create().await;
    let mut vault = spawn_admin_vault_on(&resources, &[NO_DELAY]).await;
    let tokens = vault.tokenize(vec![ip("192.0.2.91"), ip("192.0.2.92"), ip("192.0.2.93")]).await;
    // A damaged row: one bit of its ciphertext flipped.
    let mut conn = resources.db.connect().await;
    diesel::sql_query(
        "UPDATE vault.pii_tokens SET ciphertext = set_byte(ciphertext, 0, get_byte(ciphertext, 0) # 1) \
         WHERE token = $1",
    )
    .bind::<diesel::sql_types::Text, _>(&tokens[1])
    .execute(&mut conn)
    .await
    .expect("damages the row");

    vault.rotate(KeyTarget::Data).await.expect("allowed");
    let first = vault.rewrap(0).await.expect("a damaged row does not fail the call");
    assert_eq!((first.rewrapped, first.remaining), (2, 0));
    assert_eq!(first.unreadable, [tokens[1].clone()]);
    let again = vault.rewrap(0).await.expect("allowed");
    assert_eq!(
        (again.rewrapped, again.remaining, again.unreadable.len()),
        (0, 0, 0),
        "not retried"
    );
    let after = stored_tokens(&resources.db).await;
    let versions: Vec<i32> = tokens
        .iter()
        .map(|token| after.iter().find(|row| &row.token == token).expect("stored").data_key_version)
        .collect();
    assert_eq!(versions, [2, 1, 2], "the damaged row stays as it was");
    assert_eq!(
        recovered(&mut vault, &[tokens[0].clone(), tokens[2].clone()]).await,
        ["192.0.2.91", "192.0.2.93"]
    );
}

#[tokio::test]
async fn two_vaults_on_one_database_switch_to_a_rotated_version_together() {
    let resources = Resources::create().await;
    let timing = [("VAULT_ROTATION_DELAY_SECS", "2"), ("VAULT_KEY_REFRESH_SECS", "1")];
    let mut first = spawn_admin_vault_on(&resources, &timing).await;
    let mut second = spawn_admin_vault_on(&resources, &timing).await;
    let seen = vec![ip("192.0.2.150")];
    let v1 = first.tokenize(seen.clone()).await;
    assert_eq!(second.tokenize(seen.clone()).await, v1);

    let rotated = first.rotate(KeyTarget::Tokenization).await.expect("allowed");
    assert_eq!(rotated.active_version, 2);
    let delay = rotated.activates_at_unix_ms - now_unix_ms();
    assert!((0..=2_000).contains(&delay), "activates {delay} ms from now");

    // Neither issues the new version before its time, and both issue it soon after.
    let deadline = tokio::time::Instant::now() + SWITCH_DEADLINE;
    let mut switched = [false, false];
    let mut probe = 0u32;
    while switched != [true, true] {
        assert!(tokio::time::Instant::now() < deadline, "not both switched: {switched:?}");
        for (index, vault) in [&mut first, &mut second].into_iter().enumerate() {
            probe += 1;
            let token = vault.tokenize(vec![device(&format!("probe-{probe}"))]).await;
            let answered_at = now_unix_ms();
            if token[0].starts_with("dev_v2_") {
                // A replica may switch a query's latency early, never a refresh interval early.
                assert!(
                    answered_at >= rotated.activates_at_unix_ms - 100,
                    "vault {index} issued v2 {} ms early",
                    rotated.activates_at_unix_ms - answered_at
                );
                switched[index] = true;
            } else {
                assert!(token[0].starts_with("dev_v1_"), "{}", token[0]);
                assert!(!switched[index], "vault {index} went back to v1");
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let from_first = first.tokenize(seen.clone()).await;
    assert!(from_first[0].starts_with("ip_v2_"), "{}", from_first[0]);
    assert_eq!(second.tokenize(seen).await, from_first, "one pseudonym on every replica");
}

#[tokio::test]
async fn rotate_and_rewrap_by_a_caller_that_is_not_an_admin_are_refused_and_audited() {
    let resources = Resources::create().await;
    // Even with the development setting that lets anonymous callers detokenize.
    let mut vault = spawn_vault_on(&resources, &[ALLOW_ANONYMOUS]).await;
    let status = vault.rotate(KeyTarget::Tokenization).await.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "caller anonymous may not call RotateKeys");
    let status = vault.rewrap(10).await.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied);

    assert_eq!(
        key_counts(&resources.db).await,
        [("data".to_owned(), 1), ("tokenization".to_owned(), 1)]
    );
    let audit: Vec<_> = audit_rows(&resources.db)
        .await
        .into_iter()
        .map(|row| (row.caller, row.method, row.outcome, row.detail.unwrap_or_default()))
        .collect();
    assert_eq!(
        audit,
        [
            (
                "anonymous".to_owned(),
                "RotateKeys".to_owned(),
                "denied".to_owned(),
                "rotate the tokenization key".to_owned()
            ),
            (
                "anonymous".to_owned(),
                "Rewrap".to_owned(),
                "denied".to_owned(),
                "re-encrypt up to 10 stored values under data key v1".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn malformed_admin_requests_are_refused_and_audited_as_invalid() {
    let resources = Resources::create().await;
    let mut vault = spawn_admin_vault_on(&resources, &[NO_DELAY]).await;
    let status = vault
        .client
        .rotate_keys(RotateKeysRequest {
            target: KeyTarget::Unspecified.into(),
            purpose: "x".into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "target must be KEY_TARGET_TOKENIZATION or KEY_TARGET_DATA");
    let status = vault
        .client
        .rotate_keys(RotateKeysRequest { target: KeyTarget::Data.into(), purpose: " ".into() })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("purpose is required"), "{}", status.message());
    let status = vault
        .client
        .rewrap(RewrapRequest { purpose: "x".into(), max_rows: 10_001 })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "max_rows: at most 10000 rows per call, got 10001");

    let outcomes: Vec<(String, String)> =
        audit_rows(&resources.db).await.into_iter().map(|row| (row.method, row.outcome)).collect();
    let invalid = |method: &str| (method.to_owned(), "invalid".to_owned());
    assert_eq!(outcomes, [invalid("RotateKeys"), invalid("RotateKeys"), invalid("Rewrap")]);
    assert_eq!(
        key_counts(&resources.db).await,
        [("data".to_owned(), 1), ("tokenization".to_owned(), 1)]
    );
}

#[tokio::test]
async fn two_concurrent_rotations_do_not_both_create_the_same_version() {
    let resources = Resources::create().await;
    // Rotated versions (2 and up) wait for each other, so both rotations read the same
    // highest version first.
    let provider = Arc::new(HeldAtBarrier {
        inner: resources.kms(),
        barrier: Arc::new(Barrier::new(2)),
        hold: |label| label.version > fetchreward_vault::version::KeyVersion::FIRST,
    });
    let vault = spawn_admin_vault_with(&resources, &[NO_DELAY], provider).await;
    let rotate = |mut client: VaultServiceClient<Channel>| async move {
        client
            .rotate_keys(RotateKeysRequest {
                target: KeyTarget::Tokenization.into(),
                purpose: "racing".into(),
            })
            .await
    };
    let (a, b) = tokio::join!(rotate(vault.client.clone()), rotate(vault.client.clone()));
    let (won, lost) = match (a, b) {
        (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won.into_inner(), lost),
        other => panic!("expected one rotation to win and one to abort: {other:?}"),
    };
    assert_eq!(won.active_version, 2);
    assert_eq!(lost.code(), Code::Aborted);
    assert!(
        lost.message().starts_with("another rotation of the tokenization key created v2"),
        "{}",
        lost.message()
    );
    assert_eq!(
        key_counts(&resources.db).await,
        [("data".to_owned(), 1), ("tokenization".to_owned(), 2)]
    );
    let mut outcomes: Vec<String> =
        audit_rows(&resources.db).await.into_iter().map(|row| row.outcome).collect();
    outcomes.sort();
    assert_eq!(outcomes, ["allowed", "failed"]);
}

#[tokio::test]
async fn a_detokenize_on_a_replica_that_missed_a_data_rotation_loads_the_new_key() {
    let resources = Resources::create().await;
    // The second replica would refresh only after ten minutes: it learns of the new data key
    // from the row that names it.
    let slow = [NO_DELAY, ("VAULT_KEY_REFRESH_SECS", "600"), ALLOW_ANONYMOUS];
    let mut first = spawn_admin_vault_on(&resources, &[NO_DELAY]).await;
    let mut second = spawn_vault_on(&resources, &slow).await;
    first.rotate(KeyTarget::Data).await.expect("allowed");
    let tokens = first.tokenize(vec![ip("198.51.100.99")]).await;
    assert_eq!(stored_tokens(&resources.db).await[0].data_key_version, 2);
    let answer = second
        .client
        .detokenize(DetokenizeRequest { tokens, purpose: "ticket".into(), note: String::new() })
        .await
        .expect("allowed")
        .into_inner();
    assert_eq!(answer.results[0].value, "198.51.100.99");
}

#[tokio::test]
async fn a_replica_whose_key_refresh_did_not_run_reloads_before_issuing_old_tokens() {
    let resources = Resources::create().await;
    let timing = [("VAULT_ROTATION_DELAY_SECS", "2"), ("VAULT_KEY_REFRESH_SECS", "1")];
    let mut serving = spawn_admin_vault_on(&resources, &timing).await;
    // Built but never run, so its background refresh never starts: its ring only ages.
    let idle = Application::build(resources.config(&timing), resources.kms())
        .await
        .expect("the vault starts");
    let rotated = serving.rotate(KeyTarget::Tokenization).await.expect("allowed");

    let deadline = tokio::time::Instant::now() + SWITCH_DEADLINE;
    let mut probe = 0u32;
    loop {
        assert!(tokio::time::Instant::now() < deadline, "the serving vault never switched");
        probe += 1;
        let token = serving.tokenize(vec![device(&format!("probe-{probe}"))]).await;
        if token[0].starts_with("dev_v2_") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(now_unix_ms() >= rotated.activates_at_unix_ms - 100);

    let value = RawPii { kind: PiiKind::Ip, value: "192.0.2.7".into() };
    let tokens = idle
        .vault()
        .tokenize(&Access::allowed(Caller::anonymous()), vec![value])
        .await
        .expect("tokenized");
    let token = tokens.tokens[0].expect("a valid value");
    assert_eq!(token.version(), 2, "the idle replica reloaded its keys first");
}

#[tokio::test]
async fn rewrap_waits_until_a_rotated_data_key_has_taken_over() {
    let resources = Resources::create().await;
    let timing = [("VAULT_ROTATION_DELAY_SECS", "2"), ("VAULT_KEY_REFRESH_SECS", "1")];
    let mut vault = spawn_admin_vault_on(&resources, &timing).await;
    vault.tokenize(vec![ip("198.51.100.70"), ip("198.51.100.71")]).await;
    vault.rotate(KeyTarget::Data).await.expect("allowed");

    // Right after the rotation the new key is pending: "nothing remaining under older keys"
    // would be true of v1 and misleading, so the call is refused instead.
    let status = vault.rewrap(0).await.expect_err("refused while v2 is pending");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().starts_with("data key v2 has not taken over yet"), "{status:?}");
    assert!(stored_tokens(&resources.db).await.iter().all(|row| row.data_key_version == 1));

    let deadline = tokio::time::Instant::now() + SWITCH_DEADLINE;
    let done = loop {
        assert!(tokio::time::Instant::now() < deadline, "v2 never took over");
        match vault.rewrap(0).await {
            Ok(done) => break done,
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The generation keeper (every refresh interval) moves values off a replaced generation
    // too, so it may have moved some or all of them before this call did.
    assert_eq!((done.remaining, done.data_key_version), (0, 2));
    assert!(done.rewrapped <= 2, "{done:?}");
    assert!(stored_tokens(&resources.db).await.iter().all(|row| row.data_key_version == 2));
    let rows: Vec<_> = audit_rows(&resources.db)
        .await
        .into_iter()
        .filter(|row| row.caller == "anonymous")
        .map(|row| (row.method, row.outcome))
        .collect();
    let expected = [("RotateKeys", "allowed"), ("Rewrap", "invalid")];
    for (row, (method, outcome)) in rows.iter().zip(expected) {
        assert_eq!((row.0.as_str(), row.1.as_str()), (method, outcome), "{rows:?}");
    }
    assert_eq!(
        rows.last().map(|(m, o)| (m.as_str(), o.as_str())),
        Some(("Rewrap", "allowed")),
        "the rewrap that ran: {rows:?}"
    );
}
