//! Detokenize, Forget and Restore: round trips, authorization, the audit trail, tombstones and
//! erasure receipts.

use diesel_async::RunQueryDsl;
use fetchreward_model::{PiiKind, Token};
use fetchreward_proto::vault::v1::{
    DetokenizeRequest, ForgetRequest, ForgetResponse, RestoreRequest, TokenStatus,
};
use tonic::Code;

use crate::helpers::{
    ALLOW_ANONYMOUS, ALLOW_ANONYMOUS_ADMIN, Resources, TestVault, audit_rows, device, ip,
    spawn_vault, spawn_vault_on, stored_tokens,
};

/// A well-formed token the vault never issued.
fn unknown_token() -> String {
    Token::new(PiiKind::Ip, 1, [7; 32]).to_string()
}

#[tokio::test]
async fn tokenize_then_detokenize_returns_the_canonical_values() {
    let (mut vault, resources) = spawn_vault().await;
    let tokens = vault.tokenize(vec![ip("2001:DB8::0:1"), device(" 593-47-5928 ")]).await;
    let mut asked = tokens.clone();
    asked.push(unknown_token());
    asked.push(tokens[0].clone());

    let answer = vault.detokenize(&asked).await.expect("allowed");
    let summary: Vec<(String, TokenStatus, String)> =
        answer.results.iter().map(|r| (r.token.clone(), r.status(), r.value.clone())).collect();
    assert_eq!(
        summary,
        vec![
            (tokens[0].clone(), TokenStatus::Found, "2001:db8::1".to_owned()),
            (tokens[1].clone(), TokenStatus::Found, "593-47-5928".to_owned()),
            (unknown_token(), TokenStatus::NotFound, String::new()),
            (tokens[0].clone(), TokenStatus::Found, "2001:db8::1".to_owned()),
        ]
    );

    let audit = audit_rows(&resources.db).await;
    assert_eq!(audit.len(), 1);
    let row = &audit[0];
    assert_eq!(row.id, answer.audit_id);
    assert_eq!(
        (row.caller.as_str(), row.method.as_str(), row.purpose.as_str(), row.outcome.as_str()),
        ("anonymous", "Detokenize", "integration test", "allowed")
    );
    assert_eq!((row.token_count, row.found, row.not_found, row.forgotten), (4, 3, 1, 0));
}

/// Forgets `tokens` for a test purpose.
async fn forget(vault: &mut TestVault, tokens: Vec<String>, purpose: &str) -> ForgetResponse {
    vault
        .client
        .forget(ForgetRequest { tokens, purpose: purpose.into() })
        .await
        .expect("allowed")
        .into_inner()
}

#[tokio::test]
async fn forget_destroys_the_value_for_good_and_issues_a_dated_receipt() {
    let (mut vault, resources) = spawn_vault().await;
    let tokens = vault.tokenize(vec![ip("198.51.100.61"), device("kept")]).await;

    let forgotten =
        forget(&mut vault, vec![tokens[0].clone(), unknown_token()], "erasure request 42").await;
    let statuses: Vec<TokenStatus> = forgotten.results.iter().map(|r| r.status()).collect();
    assert_eq!(statuses, [TokenStatus::Forgotten, TokenStatus::NotFound]);
    // The receipt: the generation that held the value, and a date after which no copy opens.
    assert_eq!(forgotten.generations, [1]);
    assert!(forgotten.forgotten_at_unix_ms > 0);
    let week_ms = 7 * 86_400_000;
    assert!(
        forgotten.erasure_final_by_unix_ms > forgotten.forgotten_at_unix_ms + week_ms,
        "a generation of a week, a day to retire it, a week of backups: {forgotten:?}"
    );
    assert!(forgotten.erasure.contains("generation v1 until 20"), "{}", forgotten.erasure);

    let rows = stored_tokens(&resources.db).await;
    let shredded = rows.iter().find(|r| r.token == tokens[0]).expect("the row stays");
    assert_eq!((shredded.nonce.as_ref(), shredded.ciphertext.as_ref()), (None, None));

    let answer = vault.detokenize(&tokens).await.expect("allowed");
    assert_eq!(answer.results[0].status(), TokenStatus::Forgotten, "the admin is told");
    assert_eq!(answer.results[0].value, "");
    assert_eq!(answer.results[1].status(), TokenStatus::Found);

    // Forgetting again is harmless, still answers FORGOTTEN and keeps the first time.
    let again = forget(&mut vault, vec![tokens[0].clone()], "retry").await;
    assert_eq!(again.results[0].status(), TokenStatus::Forgotten);
    assert_eq!(again.forgotten_at_unix_ms, forgotten.forgotten_at_unix_ms);

    // The value comes back in a later message: the same token, and still nothing stored.
    let later = vault.tokenize(vec![ip("198.51.100.61")]).await;
    assert_eq!(later[0], tokens[0]);
    let answer = vault.detokenize(&later).await.expect("allowed");
    assert_eq!(answer.results[0].status(), TokenStatus::Forgotten);
    let row = stored_tokens(&resources.db).await.into_iter().find(|r| r.token == tokens[0]);
    assert_eq!(row.and_then(|r| r.ciphertext), None, "a tombstone is not filled again");

    let audit = audit_rows(&resources.db).await;
    let forgets: Vec<_> = audit.iter().filter(|r| r.method == "Forget").collect();
    assert_eq!(forgets.len(), 2);
    assert_eq!(forgets[0].id, forgotten.audit_id);
    assert_eq!(forgets[0].purpose, "erasure request 42");
    assert_eq!((forgets[0].token_count, forgets[0].forgotten, forgets[0].not_found), (2, 1, 1));
}

#[tokio::test]
async fn an_admin_restores_a_tombstone_and_the_value_is_stored_again_audited() {
    let (mut vault, resources) = spawn_vault().await;
    let tokens = vault.tokenize(vec![ip("198.51.100.62"), ip("198.51.100.63")]).await;
    forget(&mut vault, vec![tokens[0].clone()], "erasure request 43").await;

    let restored = vault
        .client
        .restore(RestoreRequest {
            tokens: vec![tokens[0].clone(), tokens[1].clone(), unknown_token()],
            purpose: "erasure request 43 withdrawn".into(),
        })
        .await
        .expect("allowed")
        .into_inner();
    let flags: Vec<bool> = restored.results.iter().map(|r| r.restored).collect();
    assert_eq!(flags, [true, false, false], "only the tombstone changes");

    vault.tokenize(vec![ip("198.51.100.62")]).await;
    let answer = vault.detokenize(&tokens[..1]).await.expect("allowed");
    assert_eq!(answer.results[0].status(), TokenStatus::Found);
    assert_eq!(answer.results[0].value, "198.51.100.62");

    let audit = audit_rows(&resources.db).await;
    let row = audit.iter().find(|r| r.method == "Restore").expect("audited");
    assert_eq!((row.id, row.outcome.as_str()), (restored.audit_id, "allowed"));
    assert_eq!(row.purpose, "erasure request 43 withdrawn");
    assert_eq!(row.token_count, 3);
}

#[tokio::test]
async fn with_the_refill_mode_a_forgotten_value_that_comes_back_is_stored_again() {
    let resources = Resources::create().await;
    let mut vault = spawn_vault_on(
        &resources,
        &[ALLOW_ANONYMOUS, ALLOW_ANONYMOUS_ADMIN, ("VAULT_FORGET_MODE", "refill")],
    )
    .await;
    let tokens = vault.tokenize(vec![ip("198.51.100.64")]).await;
    let forgotten = forget(&mut vault, tokens.clone(), "erasure request 44").await;
    assert!(forgotten.erasure.contains("stored again"), "{}", forgotten.erasure);

    let later = vault.tokenize(vec![ip("198.51.100.64")]).await;
    assert_eq!(later, tokens);
    let answer = vault.detokenize(&later).await.expect("allowed");
    assert_eq!(answer.results[0].status(), TokenStatus::Found);
    assert_eq!(answer.results[0].value, "198.51.100.64");
}

#[tokio::test]
async fn only_an_admin_learns_that_a_value_was_forgotten_rather_than_never_stored() {
    let (mut admin, resources) = spawn_vault().await;
    let tokens = admin.tokenize(vec![ip("198.51.100.65"), ip("198.51.100.66")]).await;
    forget(&mut admin, vec![tokens[0].clone()], "erasure request 45").await;

    let mut reader = spawn_vault_on(&resources, &[ALLOW_ANONYMOUS]).await;
    let asked = [tokens[0].clone(), unknown_token(), tokens[1].clone()];
    let answer = reader.detokenize(&asked).await.expect("allowed");
    let statuses: Vec<TokenStatus> = answer.results.iter().map(|r| r.status()).collect();
    assert_eq!(statuses, [TokenStatus::NotFound, TokenStatus::NotFound, TokenStatus::Found]);
    // The audit row still tells the truth.
    let audit = audit_rows(&resources.db).await;
    let row = audit.iter().find(|r| r.id == answer.audit_id).expect("audited");
    assert_eq!((row.found, row.not_found, row.forgotten), (1, 1, 1));
}

#[tokio::test]
async fn without_the_development_setting_recovery_is_refused_and_audited() {
    let resources = Resources::create().await;
    let mut vault = spawn_vault_on(&resources, &[]).await;
    let tokens = vault.tokenize(vec![ip("192.0.2.77")]).await;

    let status = vault.detokenize(&tokens).await.expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = vault
        .client
        .forget(ForgetRequest { tokens: tokens.clone(), purpose: "erasure".into() })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::PermissionDenied);

    let audit = audit_rows(&resources.db).await;
    let summary: Vec<(&str, &str, &str, i32)> = audit
        .iter()
        .map(|r| (r.caller.as_str(), r.method.as_str(), r.outcome.as_str(), r.token_count))
        .collect();
    assert_eq!(
        summary,
        [("anonymous", "Detokenize", "denied", 1), ("anonymous", "Forget", "denied", 1)]
    );
    let rows = stored_tokens(&resources.db).await;
    assert!(rows[0].ciphertext.is_some(), "a refused Forget destroys nothing");
}

#[tokio::test]
async fn malformed_recovery_requests_are_refused_by_index_and_audited() {
    let (mut vault, resources) = spawn_vault().await;
    let cases = [
        (vec![unknown_token(), "203.0.113.5".to_owned()], "ticket", "tokens[1]: does not start"),
        (vec![unknown_token()], "  ", "purpose is required"),
        (vec![unknown_token(); 1_001], "ticket", "tokens: at most 1000 tokens per call"),
    ];
    for (tokens, purpose, expected) in cases {
        let status = vault
            .client
            .detokenize(DetokenizeRequest { tokens, purpose: purpose.into(), note: String::new() })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with(expected), "{}", status.message());
        assert!(!status.message().contains("203.0.113.5"));
    }
    let outcomes: Vec<String> =
        audit_rows(&resources.db).await.into_iter().map(|r| r.outcome).collect();
    assert_eq!(outcomes, ["invalid", "invalid", "invalid"]);
}

#[tokio::test]
async fn when_the_audit_row_cannot_be_written_nothing_is_returned() {
    let (mut vault, resources) = spawn_vault().await;
    let tokens = vault.tokenize(vec![ip("192.0.2.88")]).await;
    let mut conn = resources.db.connect().await;
    for statement in [
        "CREATE FUNCTION vault.refuse_audit() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'audit store is read-only'; END $$",
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON vault.audit_log \
         FOR EACH ROW EXECUTE FUNCTION vault.refuse_audit()",
    ] {
        diesel::sql_query(statement).execute(&mut conn).await.expect("installs the trigger");
    }

    let status = vault.detokenize(&tokens).await.expect_err("fails closed");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(!status.message().contains("192.0.2.88"));

    let status = vault
        .client
        .forget(ForgetRequest { tokens: tokens.clone(), purpose: "erasure".into() })
        .await
        .expect_err("fails closed");
    assert_eq!(status.code(), Code::Unavailable);
    let rows = stored_tokens(&resources.db).await;
    assert!(rows[0].ciphertext.is_some(), "an unaudited Forget is rolled back");
    assert!(audit_rows(&resources.db).await.is_empty());
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_token_fails_instead_of_answering() {
    let (mut vault, resources) = spawn_vault().await;
    let tokens = vault.tokenize(vec![ip("192.0.2.1"), ip("192.0.2.2")]).await;
    let mut conn = resources.db.connect().await;
    diesel::sql_query(
        "UPDATE vault.pii_tokens AS b SET nonce = a.nonce, ciphertext = a.ciphertext \
         FROM vault.pii_tokens AS a WHERE a.token = $1 AND b.token = $2",
    )
    .bind::<diesel::sql_types::Text, _>(&tokens[0])
    .bind::<diesel::sql_types::Text, _>(&tokens[1])
    .execute(&mut conn)
    .await
    .expect("swaps the ciphertext");

    let status = vault.detokenize(&tokens[1..]).await.expect_err("refused");
    assert_eq!(status.code(), Code::Internal);
    assert!(!status.message().contains("192.0.2"));
    let audit = audit_rows(&resources.db).await;
    assert_eq!(audit.last().map(|r| r.outcome.as_str()), Some("failed"));
}
