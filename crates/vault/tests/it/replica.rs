//! A vault with a streaming replica (`DATABASE_READ_URL`) on clusters of the test's own: a
//! primary and a hot standby made by `pg_basebackup -R`.

use std::time::Duration;

use fetchreward_proto::vault::v1::{ForgetRequest, TokenizeRequest};
use fetchreward_testkit::{PgCluster, Stack, TestDatabase, create_kms_key, unique_name};

use crate::helpers::{
    ALLOW_ANONYMOUS, ALLOW_ANONYMOUS_ADMIN, Resources, audit_rows, device, ip, spawn_vault_on,
};

const CATCH_UP: Duration = Duration::from_secs(30);

#[tokio::test]
async fn detokenize_answers_from_the_replica_while_the_primary_is_down() {
    let mut primary = PgCluster::start("primary");
    let standby = PgCluster::standby_of(&primary, "standby");
    let name = unique_name("vault");
    let url = primary.create_database(&name).await;
    let stack = Stack::from_env();
    let kms_key_id = create_kms_key(&stack.kms()).await;
    let db = TestDatabase { name: name.clone(), url };
    let resources = Resources { stack, db: db.clone(), kms_key_id };
    let spool_dir = tempfile::tempdir().unwrap();
    let spool = spool_dir.path().join("audit.spool");
    let read_url = standby.url(&name);
    let mut vault = spawn_vault_on(
        &resources,
        &[
            ALLOW_ANONYMOUS,
            ALLOW_ANONYMOUS_ADMIN,
            ("DATABASE_READ_URL", &read_url),
            ("VAULT_AUDIT_SPOOL_FILE", spool.to_str().unwrap()),
        ],
    )
    .await;

    let tokens = vault.tokenize(vec![ip("66.194.53.215"), device("593-47-5928")]).await;
    standby.wait_for(&name, "SELECT count(*) FROM vault.pii_tokens", "2", CATCH_UP).await;

    // A token the replica does not have yet is found on the primary.
    standby.sql(&name, "SELECT pg_wal_replay_pause()").await;
    let fresh = vault.tokenize(vec![ip("10.20.30.40")]).await;
    let answer = vault.detokenize(&fresh).await.expect("falls back to the primary");
    assert_eq!(answer.results[0].value, "10.20.30.40");
    assert!(answer.audit_id > 0);
    standby.sql(&name, "SELECT pg_wal_replay_resume()").await;
    standby.wait_for(&name, "SELECT count(*) FROM vault.pii_tokens", "3", CATCH_UP).await;

    // Once Forget has answered, the replica no longer has the value either.
    vault
        .client
        .forget(ForgetRequest { tokens: fresh.clone(), purpose: "erasure request".into() })
        .await
        .expect("forgotten");
    let gone = standby
        .sql(&name, &format!("SELECT count(*) FROM vault.pii_tokens WHERE token = '{}' AND ciphertext IS NOT NULL", fresh[0]))
        .await;
    assert_eq!(gone, ["0"], "the erasure is on the replica when Forget answers");
    let answer = vault.detokenize(&fresh).await.expect("answers");
    assert_eq!(answer.results[0].value, "", "a forgotten value is not read from the replica");

    primary.stop();

    // Replicated tokens are still revealed; the audit row waits in the spool.
    let answer = vault.detokenize(&tokens).await.expect("answers from the replica");
    let values: Vec<&str> = answer.results.iter().map(|result| result.value.as_str()).collect();
    assert_eq!(values, ["66.194.53.215", "593-47-5928"]);
    assert_eq!(answer.audit_id, 0, "spooled: numbered when it reaches the trail");
    let spooled = std::fs::read_to_string(&spool).expect("the spool file");
    assert_eq!(spooled.lines().count(), 1);
    assert!(spooled.contains("\"Detokenize\"") && !spooled.contains("66.194.53.215"), "{spooled}");

    // Writes fail cleanly: an unavailable error, no value in it.
    let err = vault
        .client
        .tokenize(TokenizeRequest { values: vec![ip("192.0.2.77")] })
        .await
        .expect_err("the primary is down");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(!err.message().contains("192.0.2.77"), "{}", err.message());

    // The primary comes back: the spooled row joins the trail, the spool empties.
    primary.start_again();
    let started = std::time::Instant::now();
    loop {
        let detokenized: Vec<_> = audit_rows(&db)
            .await
            .into_iter()
            .filter(|row| row.method == "Detokenize" && row.outcome == "allowed")
            .collect();
        if detokenized.len() == 3 {
            assert_eq!(detokenized[2].found, 2);
            break;
        }
        assert!(
            started.elapsed() < CATCH_UP,
            "the spooled row did not reach the trail: {detokenized:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(std::fs::read_to_string(&spool).unwrap().lines().count(), 0);
    vault.running.stop().await.expect("the vault stops cleanly");
}
