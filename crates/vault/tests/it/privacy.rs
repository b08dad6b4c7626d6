//! The privacy team's workflows: people with roles, purpose codes, masked reveals, Lookup, the
//! daily reveal limit and decoy tokens, each with what it leaves in the audit trail.

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use fetchreward_proto::vault::v1::vault_service_client::VaultServiceClient;
use fetchreward_proto::vault::v1::{
    DetokenizeRequest, DetokenizeResponse, LiftQuotaRequest, LookupRequest, PiiKind,
    PlantDecoysRequest, TokenStatus, TokenizeRequest,
};
use fetchreward_testkit::{Spawned, TestPki};
use tonic::Code;
use tonic::transport::Channel;

use crate::authz::connect;
use crate::helpers::{
    ALLOW_ANONYMOUS, ALLOW_ANONYMOUS_ADMIN, Resources, audit_rows, device, ip, spawn_vault_on,
};

const ALICE: &str = "spiffe://fetchreward/person/alice";
const CAROL: &str = "spiffe://fetchreward/person/carol";

fn ask(tokens: &[String], purpose: &str, note: &str) -> DetokenizeRequest {
    DetokenizeRequest { tokens: tokens.to_vec(), purpose: purpose.into(), note: note.into() }
}

async fn reveal(
    client: &mut VaultServiceClient<Channel>,
    request: DetokenizeRequest,
) -> Result<DetokenizeResponse, Code> {
    client.detokenize(request).await.map(tonic::Response::into_inner).map_err(|s| s.code())
}

async fn reveal_masked(
    client: &mut VaultServiceClient<Channel>,
    request: DetokenizeRequest,
) -> Result<DetokenizeResponse, Code> {
    client.reveal_masked(request).await.map(tonic::Response::into_inner).map_err(|s| s.code())
}

#[tokio::test]
async fn people_reveal_by_their_roles_and_purposes_and_the_audit_names_them() {
    let pki = TestPki::new();
    let resources = Resources::create().await;
    let server = pki.identity("vault");
    let grants = format!("{ALICE}=privacy-officer; {CAROL}=support");
    let mut settings: Vec<(&str, &str)> = server.env().to_vec();
    settings.extend([
        ("AUTHZ_TOKENIZE", "spiffe://fetchreward/ingestor"),
        ("VAULT_GRANTS", grants.as_str()),
        ("VAULT_PURPOSES", "dsar=privacy-officer; support=support,privacy-officer"),
    ]);
    let app = fetchreward_vault::Application::build(resources.config(&settings), resources.kms())
        .await
        .expect("the vault starts");
    let port = app.grpc_addr().port();
    let running = Spawned::new(|shutdown| app.run_until_stopped(shutdown));

    let mut ingestor =
        connect(port, pki.identity("ingestor").client_tls()).await.expect("connects");
    let tokens = ingestor
        .tokenize(TokenizeRequest { values: vec![ip("66.194.53.215"), device("593-47-5928")] })
        .await
        .expect("tokenizes")
        .into_inner()
        .tokens;
    let mut alice = connect(port, pki.person("alice").client_tls()).await.expect("connects");
    let mut carol = connect(port, pki.person("carol").client_tls()).await.expect("connects");

    // The privacy officer reveals for a data-subject request; the row names her, the code and
    // the note.
    let full = reveal(&mut alice, ask(&tokens, "dsar", "DSAR-42")).await.expect("allowed");
    let values: Vec<&str> = full.results.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(values, ["66.194.53.215", "593-47-5928"]);

    // Support sees only the masked forms, and only for its own purpose.
    let masked = reveal_masked(&mut carol, ask(&tokens, "support", "")).await.expect("allowed");
    let values: Vec<&str> = masked.results.iter().map(|r| r.value.as_str()).collect();
    assert_eq!(values, ["66.194.53.x", "***-**-5928"]);
    assert!(masked.results.iter().all(|r| r.status() == TokenStatus::Found));
    assert_eq!(
        reveal(&mut carol, ask(&tokens, "support", "")).await.err(),
        Some(Code::PermissionDenied),
        "the full reveal is a stronger permission"
    );
    assert_eq!(
        reveal_masked(&mut carol, ask(&tokens, "dsar", "")).await.err(),
        Some(Code::PermissionDenied),
        "support was not given dsar"
    );
    let unknown = alice.detokenize(ask(&tokens, "curiosity", "")).await.expect_err("no such code");
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(unknown.message().contains("dsar, support"), "{}", unknown.message());

    let rows = audit_rows(&resources.db).await;
    let of = |method: &str, caller: &str| {
        rows.iter()
            .filter(|r| r.method == method && r.caller == caller)
            .map(|r| (r.purpose.as_str(), r.outcome.as_str(), r.found, r.detail.as_deref()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of("Detokenize", ALICE),
        [("dsar", "allowed", 2, Some("note: DSAR-42")), ("curiosity", "invalid", 0, None)]
    );
    assert_eq!(of("Detokenize", CAROL).len(), 1);
    assert_eq!(of("Detokenize", CAROL)[0].1, "denied");
    let masked_rows = of("RevealMasked", CAROL);
    assert_eq!(masked_rows.len(), 2);
    assert_eq!((masked_rows[0].0, masked_rows[0].1, masked_rows[0].2), ("support", "allowed", 2));
    assert_eq!((masked_rows[1].0, masked_rows[1].1), ("dsar", "denied"));
    assert!(masked_rows[1].3.is_some_and(|d| d.contains("privacy-officer")), "{masked_rows:?}");
    running.stop().await.expect("stops cleanly");
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn stored_tokens(resources: &Resources) -> i64 {
    let mut conn = resources.db.connect().await;
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM vault.pii_tokens")
        .get_result(&mut conn)
        .await
        .expect("counts");
    count.n
}

#[tokio::test]
async fn lookup_finds_the_tokens_of_a_value_and_stores_nothing() {
    let resources = Resources::create().await;
    let mut vault =
        spawn_vault_on(&resources, &[("AUTHZ_LOOKUP", "anonymous"), ("VAULT_LOOKUP_RATE", "3")])
            .await;
    let seen = vault.tokenize(vec![ip("66.194.53.215")]).await;
    let before = stored_tokens(&resources).await;
    let lookup = |values| LookupRequest { values, purpose: "DSAR-7".into(), note: String::new() };
    let answer = vault
        .client
        .lookup(lookup(vec![ip("66.194.53.215"), ip("203.0.113.9"), ip("not an address")]))
        .await
        .expect("looks up")
        .into_inner();
    assert_eq!(answer.results[0].tokens, seen, "the token Tokenize gave");
    assert!(answer.results[0].stored);
    assert_eq!(answer.results[1].tokens.len(), 1);
    assert!(!answer.results[1].stored, "an unseen value is not stored");
    assert_eq!(answer.results[2].refused, "invalid_ip");
    assert_eq!(stored_tokens(&resources).await, before, "Lookup stores nothing");

    // Three values a minute: the next one is refused, and audited.
    let limited = vault.client.lookup(lookup(vec![ip("203.0.113.10")])).await.expect_err("limited");
    assert_eq!(limited.code(), Code::ResourceExhausted);
    let rows: Vec<_> =
        audit_rows(&resources.db).await.into_iter().filter(|r| r.method == "Lookup").collect();
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].outcome.as_str(), rows[0].found, rows[0].not_found), ("allowed", 1, 2));
    assert_eq!(rows[1].outcome, "denied");
    vault.running.stop().await.expect("stops");
}

#[tokio::test]
async fn the_daily_reveal_limit_refuses_until_an_admin_lifts_it() {
    let resources = Resources::create().await;
    let mut vault = spawn_vault_on(
        &resources,
        &[ALLOW_ANONYMOUS, ALLOW_ANONYMOUS_ADMIN, ("VAULT_DAILY_REVEAL_LIMIT", "3")],
    )
    .await;
    let tokens = vault.tokenize(vec![ip("198.51.100.1"), ip("198.51.100.2")]).await;
    reveal(&mut vault.client, ask(&tokens, "ticket 1", "")).await.expect("2 of 3");
    assert_eq!(
        reveal(&mut vault.client, ask(&tokens, "ticket 2", "")).await.err(),
        Some(Code::ResourceExhausted),
        "4 of 3: refused"
    );
    // Masked reveals do not count.
    reveal_masked(&mut vault.client, ask(&tokens, "ticket 2", "")).await.expect("masked");
    let lifted = vault
        .client
        .lift_quota(LiftQuotaRequest {
            caller: "anonymous".into(),
            quota_purpose: String::new(),
            values: 5,
            purpose: "ticket 2 needs both".into(),
        })
        .await
        .expect("lifted")
        .into_inner();
    assert_eq!((lifted.limit, lifted.used), (8, 2));
    reveal(&mut vault.client, ask(&tokens, "ticket 2", "")).await.expect("4 of 8");

    let rows = audit_rows(&resources.db).await;
    let outcomes: Vec<(&str, &str)> = rows
        .iter()
        .filter(|r| r.method != "Tokenize")
        .map(|r| (r.method.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("Detokenize", "allowed"),
            ("Detokenize", "denied"),
            ("RevealMasked", "allowed"),
            ("LiftQuota", "allowed"),
            ("Detokenize", "allowed")
        ]
    );
    let refused = rows.iter().find(|r| r.outcome == "denied").expect("the refusal");
    assert_eq!(refused.detail.as_deref(), Some("daily reveal limit: 2 of 3 used, 2 asked"));
    let metrics = fetchreward_testkit::http_get(vault.http_addr, "/metrics").await;
    assert!(
        metrics.contains("fetchreward_vault_quota_refusals_total{method=\"Detokenize\"} 1"),
        "{metrics}"
    );
    vault.running.stop().await.expect("stops");
}

#[tokio::test]
async fn a_decoy_is_refused_counted_and_audited_as_a_hit() {
    let resources = Resources::create().await;
    let mut vault = spawn_vault_on(&resources, &[ALLOW_ANONYMOUS, ALLOW_ANONYMOUS_ADMIN]).await;
    let real = vault.tokenize(vec![ip("192.0.2.80")]).await;
    let decoys = vault
        .client
        .plant_decoys(PlantDecoysRequest {
            kind: PiiKind::Ip.into(),
            count: 2,
            purpose: "tripwires".into(),
        })
        .await
        .expect("planted")
        .into_inner()
        .tokens;
    assert_eq!(decoys.len(), 2);
    assert!(
        decoys.iter().all(|t| t.starts_with("ip_v1_") && t.len() == real[0].len()),
        "{decoys:?}"
    );

    let mixed = vec![real[0].clone(), decoys[1].clone()];
    let refused = vault.client.detokenize(ask(&mixed, "browsing", "")).await.expect_err("refused");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(!refused.message().contains("decoy"), "the caller is not told: {}", refused.message());
    let masked = vault.client.reveal_masked(ask(&decoys[..1], "browsing", "")).await;
    assert_eq!(masked.expect_err("refused").code(), Code::PermissionDenied);
    reveal(&mut vault.client, ask(&real, "ticket 9", "")).await.expect("real tokens still reveal");

    let rows = audit_rows(&resources.db).await;
    let hits: Vec<_> = rows
        .iter()
        .filter(|r| r.detail.as_deref().is_some_and(|d| d.starts_with("decoy hit")))
        .map(|r| (r.method.as_str(), r.outcome.as_str(), r.found))
        .collect();
    assert_eq!(hits, [("Detokenize", "denied", 0), ("RevealMasked", "denied", 0)]);
    assert!(rows.iter().any(|r| r.method == "PlantDecoys" && r.outcome == "allowed"));
    let metrics = fetchreward_testkit::http_get(vault.http_addr, "/metrics").await;
    for method in ["Detokenize", "RevealMasked"] {
        let line = format!("fetchreward_vault_decoy_hits_total{{method=\"{method}\"}} 1");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    vault.running.stop().await.expect("stops");
}
