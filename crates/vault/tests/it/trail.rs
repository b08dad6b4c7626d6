//! The audit trail: append-only for the vault's runtime role, tamper-evident for everyone.

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use fetchreward_proto::vault::v1::{
    DetokenizeRequest, ListAuditRequest, VerifyAuditRequest, VerifyAuditResponse,
};
use fetchreward_testkit::http_get;
use tonic::Code;

use crate::helpers::{
    ALLOW_ANONYMOUS, ALLOW_ANONYMOUS_ADMIN, Resources, TestVault, audit_rows, ip, runtime_role,
    spawn_vault, spawn_vault_on,
};

/// Lets the anonymous test client read the trail.
const ALLOW_ANONYMOUS_AUDIT: (&str, &str) = ("AUTHZ_AUDIT", "anonymous");

async fn execute(conn: &mut AsyncPgConnection, statement: &str) -> Result<usize, String> {
    diesel::sql_query(statement).execute(conn).await.map_err(|err| err.to_string())
}

async fn verify(vault: &mut TestVault) -> VerifyAuditResponse {
    vault.client.verify_audit(VerifyAuditRequest {}).await.expect("verifies").into_inner()
}

/// `calls` allowed Detokenize calls, each with its own purpose (`ticket <i>`).
async fn some_audited_calls(vault: &mut TestVault, tokens: &[String], calls: usize) {
    for i in 0..calls {
        vault
            .client
            .detokenize(DetokenizeRequest {
                tokens: tokens.to_vec(),
                purpose: format!("ticket {i}"),
                note: String::new(),
            })
            .await
            .expect("detokenizes");
    }
}

#[tokio::test]
async fn the_runtime_role_may_append_to_the_audit_trail_but_never_change_it() {
    let resources = Resources::create().await;
    let runtime_url = runtime_role(&resources).await;
    let mut owner = resources.db.connect().await;
    let owner_url = resources.db.url.clone();
    let mut vault = spawn_vault_on(
        &resources,
        &[
            ("DATABASE_URL", &runtime_url),
            ("DATABASE_MIGRATION_URL", &owner_url),
            ALLOW_ANONYMOUS,
            ALLOW_ANONYMOUS_AUDIT,
        ],
    )
    .await;
    let tokens = vault.tokenize(vec![ip("192.0.2.80")]).await;
    some_audited_calls(&mut vault, &tokens, 2).await;
    assert_eq!(audit_rows(&resources.db).await.len(), 2, "the runtime role appends");

    let mut runtime = AsyncPgConnection::establish(&runtime_url).await.expect("connects");
    for statement in [
        "UPDATE vault.audit_log SET purpose = 'nothing happened'",
        "DELETE FROM vault.audit_log",
        "TRUNCATE vault.audit_log",
        "DROP TRIGGER audit_log_no_update_or_delete ON vault.audit_log",
    ] {
        let refused = execute(&mut runtime, statement).await.expect_err(statement);
        let denied = refused.contains("permission denied") || refused.contains("must be owner");
        assert!(denied, "{statement}: {refused}");
    }
    // Nor may it pass a key row off as legacy (trusted without a binding), change what a row's
    // binding covers, or remove a row.
    for statement in [
        "UPDATE vault.keys SET legacy = true",
        "UPDATE vault.keys SET kms_key_id = 'another key', deployment = 'another'",
        "UPDATE vault.keys SET own_master = true",
        "INSERT INTO vault.keys (purpose, version, wrapped, kms_key_id, legacy) \
         VALUES ('data', 99, '\\x00', 'k', true)",
        "DELETE FROM vault.keys",
    ] {
        let refused = execute(&mut runtime, statement).await.expect_err(statement);
        assert!(refused.contains("permission denied"), "{statement}: {refused}");
    }
    // The owner (here a superuser, whom privileges do not stop) meets the trigger.
    for statement in ["UPDATE vault.audit_log SET purpose = 'x'", "DELETE FROM vault.audit_log"] {
        let refused = execute(&mut owner, statement).await.expect_err(statement);
        assert!(refused.contains("vault.audit_log is append-only"), "{statement}: {refused}");
    }
    assert_eq!(audit_rows(&resources.db).await.len(), 2);
    assert!(verify(&mut vault).await.intact);
}

#[tokio::test]
async fn an_edited_or_removed_audit_row_is_found_and_named() {
    let resources = Resources::create().await;
    let mut vault = spawn_vault_on(
        &resources,
        &[ALLOW_ANONYMOUS, ALLOW_ANONYMOUS_ADMIN, ALLOW_ANONYMOUS_AUDIT],
    )
    .await;
    let tokens = vault.tokenize(vec![ip("192.0.2.81")]).await;
    some_audited_calls(&mut vault, &tokens, 5).await;
    let intact = verify(&mut vault).await;
    assert!(intact.intact, "{intact:?}");
    assert_eq!(intact.rows_checked, 5);

    // Someone with the owner's rights switches the trigger off and rewrites a row.
    let mut owner = resources.db.connect().await;
    let ids: Vec<i64> = audit_rows(&resources.db).await.iter().map(|row| row.id).collect();
    execute(&mut owner, "ALTER TABLE vault.audit_log DISABLE TRIGGER USER").await.expect("off");
    let edit =
        format!("UPDATE vault.audit_log SET purpose = 'routine check' WHERE id = {}", ids[2]);
    execute(&mut owner, &edit).await.expect("edits");
    let edited = verify(&mut vault).await;
    assert!(!edited.intact);
    assert_eq!(edited.broken_id, ids[2]);
    assert!(edited.problem.contains("edited"), "{}", edited.problem);

    // Putting it back makes the chain whole; removing a row breaks it at the next one.
    let undo = format!("UPDATE vault.audit_log SET purpose = 'ticket 2' WHERE id = {}", ids[2]);
    execute(&mut owner, &undo).await.expect("undoes");
    assert!(verify(&mut vault).await.intact);
    execute(&mut owner, &format!("DELETE FROM vault.audit_log WHERE id = {}", ids[1]))
        .await
        .expect("deletes");
    assert_eq!(verify(&mut vault).await.broken_id, ids[2]);
    // And the newest row removed is seen from the chain's head.
    let resources2 = Resources::create().await;
    let mut other = spawn_vault_on(&resources2, &[ALLOW_ANONYMOUS, ALLOW_ANONYMOUS_AUDIT]).await;
    let tokens = other.tokenize(vec![ip("192.0.2.82")]).await;
    some_audited_calls(&mut other, &tokens, 3).await;
    let mut owner = resources2.db.connect().await;
    execute(&mut owner, "ALTER TABLE vault.audit_log DISABLE TRIGGER USER").await.expect("off");
    execute(
        &mut owner,
        "DELETE FROM vault.audit_log WHERE id = (SELECT max(id) FROM vault.audit_log)",
    )
    .await
    .expect("deletes the newest");
    let truncated = verify(&mut other).await;
    assert!(!truncated.intact);
    assert!(truncated.problem.contains("removed from the end"), "{}", truncated.problem);
}

#[tokio::test]
async fn the_trail_is_listed_with_filters() {
    let resources = Resources::create().await;
    let mut vault = spawn_vault_on(&resources, &[ALLOW_ANONYMOUS_AUDIT]).await;
    let tokens = vault.tokenize(vec![ip("192.0.2.83")]).await;
    // Nobody may detokenize: each call is denied and audited.
    for purpose in ["first", "second"] {
        let refused = vault
            .client
            .detokenize(DetokenizeRequest {
                tokens: tokens.clone(),
                purpose: purpose.into(),
                note: String::new(),
            })
            .await
            .expect_err("denied");
        assert_eq!(refused.code(), Code::PermissionDenied);
    }
    let list = |request: ListAuditRequest| {
        let mut client = vault.client.clone();
        async move { client.list_audit(request).await.expect("lists").into_inner().rows }
    };
    let denied = list(ListAuditRequest { outcome: "denied".into(), ..Default::default() }).await;
    let purposes: Vec<&str> = denied.iter().map(|row| row.purpose.as_str()).collect();
    assert_eq!(purposes, ["first", "second"]);
    assert!(denied.iter().all(|row| row.chained && row.caller == "anonymous"));
    let after = list(ListAuditRequest { after_id: denied[0].id, ..Default::default() }).await;
    assert_eq!(after.len(), 1);
    let none = list(ListAuditRequest { method: "Forget".into(), ..Default::default() }).await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_purpose_with_a_control_character_is_refused_before_anything_and_counted() {
    let (mut vault, resources) = spawn_vault().await;
    let tokens = vault.tokenize(vec![ip("192.0.2.84")]).await;
    for purpose in ["ticket\u{0}7", "ticket\n7"] {
        let refused = vault
            .client
            .detokenize(DetokenizeRequest {
                tokens: tokens.clone(),
                purpose: purpose.into(),
                note: String::new(),
            })
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(refused.message().contains("control character"), "{}", refused.message());
    }
    assert!(audit_rows(&resources.db).await.is_empty(), "nothing was written");
    let metrics = http_get(vault.http_addr, "/metrics").await;
    assert!(
        metrics.contains(
            r#"fetchreward_vault_unaudited_calls_total{method="Detokenize",reason="control_character"} 2"#
        ),
        "{metrics}"
    );
}
