//! Final erasure: the vault's keeper rotates the data key on schedule, moves live values to the
//! new generation and retires the old one, so that the ciphertext of a forgotten value, as a
//! backup taken before the Forget holds it, opens under no key the database still holds; with a
//! KMS key per generation, that key is scheduled for deletion too.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{Binary, Bool, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;
use fetchreward_proto::vault::v1::{ForgetRequest, ForgetResponse, TokenStatus};
use fetchreward_testkit::TestDatabase;
use fetchreward_vault::crypto::DataKey;
use fetchreward_vault::keys::{KeyLabel, KeyProvider, KeyPurpose};
use fetchreward_vault::kms::KmsKeyProvider;
use fetchreward_vault::vault::KEEPER;
use fetchreward_vault::version::KeyVersion;

use crate::helpers::{
    ALLOW_ANONYMOUS, ALLOW_ANONYMOUS_ADMIN, Resources, TestVault, audit_rows, ip, runtime_role,
    serve,
};

/// A row of `vault.keys`, as a dump of the database shows it.
#[derive(Debug, Clone, QueryableByName)]
struct DumpedKey {
    #[diesel(sql_type = Integer)]
    version: i32,
    #[diesel(sql_type = Nullable<Binary>)]
    wrapped: Option<Vec<u8>>,
    #[diesel(sql_type = Text)]
    kms_key_id: String,
    #[diesel(sql_type = Bool)]
    retired: bool,
    #[diesel(sql_type = Bool)]
    deletion_scheduled: bool,
    #[diesel(sql_type = Nullable<diesel::sql_types::BigInt>)]
    kms_deletion_at_unix_ms: Option<i64>,
}

/// A row of `vault.pii_tokens`, as a dump shows it.
#[derive(Debug, Clone, QueryableByName)]
struct DumpedValue {
    #[diesel(sql_type = Text)]
    token: String,
    #[diesel(sql_type = Integer)]
    data_key_version: i32,
    #[diesel(sql_type = Nullable<Binary>)]
    nonce: Option<Vec<u8>>,
    #[diesel(sql_type = Nullable<Binary>)]
    ciphertext: Option<Vec<u8>>,
}

/// The data key rows of the database now.
async fn dump_keys(db: &TestDatabase) -> Vec<DumpedKey> {
    let mut conn = db.connect().await;
    diesel::sql_query(
        "SELECT version, wrapped, kms_key_id, retired_at IS NOT NULL AS retired, \
         kms_deletion_at IS NOT NULL AS deletion_scheduled, \
         (extract(epoch FROM kms_deletion_at) * 1000)::bigint AS kms_deletion_at_unix_ms \
         FROM vault.keys WHERE purpose = 'data' ORDER BY version",
    )
    .load(&mut conn)
    .await
    .expect("reads vault.keys")
}

/// The stored value of `token` now.
async fn dump_value(db: &TestDatabase, token: &str) -> DumpedValue {
    let mut conn = db.connect().await;
    diesel::sql_query(
        "SELECT token, data_key_version, nonce, ciphertext FROM vault.pii_tokens WHERE token = $1",
    )
    .bind::<Text, _>(token)
    .get_result(&mut conn)
    .await
    .expect("reads vault.pii_tokens")
}

/// Waits until data key v1 satisfies `done`, reading the keys twice a second for a minute.
async fn wait_for_v1(db: &TestDatabase, what: &str, done: fn(&DumpedKey) -> bool) -> DumpedKey {
    for _ in 0..120 {
        let keys = dump_keys(db).await;
        if let Some(v1) = keys.iter().find(|key| key.version == 1 && done(key)) {
            return v1.clone();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("data key v1 not {what} within a minute: {:?}", dump_keys(db).await);
}

/// Whether any data key in `keys` that `provider` unwraps opens `value`'s ciphertext.
async fn opens_under_any(
    provider: &Arc<dyn KeyProvider>,
    keys: &[DumpedKey],
    value: &DumpedValue,
) -> bool {
    let (Some(nonce), Some(ciphertext)) = (&value.nonce, &value.ciphertext) else {
        panic!("the backup holds the ciphertext");
    };
    for key in keys {
        let Some(wrapped) = &key.wrapped else { continue };
        let version = KeyVersion::from_db(key.version).expect("a version");
        let label = KeyLabel::new(KeyPurpose::Data, version);
        let Ok(bytes) = provider.unwrap_key(&key.kms_key_id, label, wrapped).await else {
            continue;
        };
        if DataKey::new(version, &bytes).open(&value.token, nonce, ciphertext).is_ok() {
            return true;
        }
    }
    false
}

/// A vault whose generations last 3 s, switch at once and are kept every second, on the
/// runtime role (the keeper needs no more than it may), and the key provider it uses.
async fn keeping_vault(
    resources: &Resources,
    extra: &[(&str, &str)],
) -> (TestVault, Arc<dyn KeyProvider>) {
    let runtime_url = runtime_role(resources).await;
    let mut settings = vec![
        ALLOW_ANONYMOUS,
        ALLOW_ANONYMOUS_ADMIN,
        ("DATABASE_URL", runtime_url.as_str()),
        ("DATABASE_MIGRATION_URL", resources.db.url.as_str()),
        ("VAULT_GENERATION_SECS", "3"),
        ("VAULT_ROTATION_DELAY_SECS", "0"),
        ("VAULT_KEY_REFRESH_SECS", "1"),
    ];
    settings.extend_from_slice(extra);
    let config = resources.config(&settings);
    let provider: Arc<dyn KeyProvider> = Arc::new(KmsKeyProvider::from_sdk_config(
        &resources.stack.aws_config(&resources.stack.kms_endpoint),
        config.kms.clone(),
    ));
    let app = fetchreward_vault::Application::build(config, provider.clone())
        .await
        .expect("the vault starts");
    (serve(app).await, provider)
}

/// Tokenizes two values, dumps the database (the backup), forgets the first value.
async fn tokenize_back_up_and_forget(
    vault: &mut TestVault,
    db: &TestDatabase,
) -> (Vec<String>, Vec<DumpedKey>, DumpedValue, ForgetResponse) {
    let tokens = vault.tokenize(vec![ip("203.0.113.70"), ip("203.0.113.71")]).await;
    let backup_keys = dump_keys(db).await;
    let backup_value = dump_value(db, &tokens[0]).await;
    let forgotten = vault
        .client
        .forget(ForgetRequest { tokens: tokens[..1].to_vec(), purpose: "erasure request 7".into() })
        .await
        .expect("forgets")
        .into_inner();
    assert_eq!(forgotten.results[0].status(), TokenStatus::Forgotten);
    (tokens, backup_keys, backup_value, forgotten)
}

/// What must hold once v1 is retired, whatever destroys its key: the live value moved on and
/// still opens, the forgotten one opens under no key the database holds, each step audited.
async fn check_retired(
    vault: &mut TestVault,
    resources: &Resources,
    provider: &Arc<dyn KeyProvider>,
    tokens: &[String],
    backup_value: &DumpedValue,
) {
    let answer = vault.detokenize(tokens).await.expect("detokenizes");
    assert_eq!(answer.results[1].status(), TokenStatus::Found);
    assert_eq!(answer.results[1].value, "203.0.113.71");
    let live = dump_value(&resources.db, &tokens[1]).await;
    assert!(live.data_key_version > 1, "the live value moved off v1: {live:?}");

    let now = dump_keys(&resources.db).await;
    assert!(now.iter().find(|key| key.version == 1).is_some_and(|v1| v1.wrapped.is_none()));
    assert!(
        !opens_under_any(provider, &now, backup_value).await,
        "no data key left in the database opens the forgotten value's old ciphertext"
    );

    let keeper: Vec<_> = audit_rows(&resources.db)
        .await
        .into_iter()
        .filter(|row| row.caller == KEEPER && row.outcome == "allowed")
        .collect();
    for method in ["RotateKeys", "Rewrap", "Retire"] {
        assert!(keeper.iter().any(|row| row.method == method), "{method} audited: {keeper:?}");
    }
    let retired = keeper.iter().find(|row| row.method == "Retire").expect("audited");
    assert!(retired.detail.as_deref().is_some_and(|d| d.starts_with("data key v1 retired")));
}

#[tokio::test]
async fn the_keeper_retires_a_forgotten_values_generation_and_no_remaining_key_opens_it() {
    let resources = Resources::create().await;
    let (mut vault, provider) = keeping_vault(&resources, &[]).await;
    let (tokens, backup_keys, backup_value, forgotten) =
        tokenize_back_up_and_forget(&mut vault, &resources.db).await;
    assert_eq!(backup_value.data_key_version, 1);
    assert_eq!(forgotten.generations, [1]);
    assert!(forgotten.erasure.contains("backups holding its wrapped key expire"));

    let v1 = wait_for_v1(&resources.db, "retired", |key| key.retired).await;
    assert!(!v1.deletion_scheduled, "one KMS key for all generations is never deleted");
    check_retired(&mut vault, &resources, &provider, &tokens, &backup_value).await;
    // With one KMS key for every generation, the backup's own copy of v1 still opens the
    // value until that backup expires: VAULT_BACKUP_RETENTION_DAYS is part of the receipt's
    // date, and production uses a KMS key per generation.
    assert!(opens_under_any(&provider, &backup_keys, &backup_value).await);
}

#[tokio::test]
async fn with_a_kms_key_per_generation_the_retired_generations_key_is_scheduled_for_deletion() {
    let resources = Resources::create().await;
    let mut policy = tempfile::NamedTempFile::new().expect("a policy file");
    policy.write_all(br#"{"Version": "2012-10-17", "Statement": []}"#).expect("writes the policy");
    let policy_path = policy.path().to_str().expect("a UTF-8 path").to_owned();
    let (mut vault, provider) = keeping_vault(
        &resources,
        &[
            ("VAULT_GENERATION_KMS_KEYS", "true"),
            ("VAULT_GENERATION_KEY_POLICY_FILE", &policy_path),
            ("VAULT_KMS_DELETION_WINDOW_DAYS", "7"),
        ],
    )
    .await;
    let (tokens, backup_keys, backup_value, forgotten) =
        tokenize_back_up_and_forget(&mut vault, &resources.db).await;
    assert!(forgotten.erasure.contains("its KMS key is deleted 7 days after"));
    let v1 = backup_keys.iter().find(|key| key.version == 1).expect("v1 in the backup");
    assert!(!v1.kms_key_id.ends_with(&resources.kms_key_id), "v1 has a KMS key of its own");

    let v1 =
        wait_for_v1(&resources.db, "scheduled for deletion", |key| key.deletion_scheduled).await;
    check_retired(&mut vault, &resources, &provider, &tokens, &backup_value).await;
    let described = resources
        .stack
        .kms()
        .describe_key()
        .key_id(&v1.kms_key_id)
        .send()
        .await
        .expect("describes the key");
    let metadata = described.key_metadata.expect("metadata");
    assert_eq!(metadata.key_state, Some(aws_sdk_kms::types::KeyState::PendingDeletion));
    let deletion = v1.kms_deletion_at_unix_ms.expect("the deletion date is recorded");
    assert!(
        deletion <= forgotten.erasure_final_by_unix_ms,
        "the key is gone by the receipt's date: {deletion} > {}",
        forgotten.erasure_final_by_unix_ms
    );
    // KMS refuses Decrypt under a key pending deletion, so from now on the backup's copy of v1
    // unwraps nowhere; the emulator (moto) does not enforce key states, so that last step is
    // KMS's promise, not something this test can watch.
    let audit = audit_rows(&resources.db).await;
    assert!(audit.iter().any(|row| row.caller == KEEPER
        && row.method == "Retire"
        && row.detail.as_deref().is_some_and(|d| d.contains("scheduled for deletion"))));
}
