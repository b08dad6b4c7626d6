//! A data subject's rows found, exported revealed and erased, on rows the pipeline wrote.

use std::time::Duration;

use fetchreward_cli::subject::{self, SubjectValue, Why};
use fetchreward_e2e::Pipeline;
use fetchreward_runtime::postgres::{self, PgConfig};

fn login(user: u32, ip: &str, device: &str) -> String {
    serde_json::json!({
        "user_id": format!("user-{user}"),
        "app_version": "2.3.0",
        "device_type": "android",
        "ip": ip,
        "locale": "RU",
        "device_id": device,
    })
    .to_string()
}

#[tokio::test]
async fn a_subjects_rows_are_found_exported_exactly_and_forgotten() {
    let subject_ip = "66.194.53.215";
    let bodies = vec![
        login(1, subject_ip, "593-47-5928"),
        login(2, "10.1.1.1", "111-11-1111"),
        login(3, subject_ip, "222-22-2222"),
        login(4, "10.2.2.2", "593-47-5928"),
        login(5, subject_ip, "593-47-5928"),
    ];
    let mut pipeline = Pipeline::start().await;
    let ids = pipeline.send(&bodies).await;
    pipeline.start_ingestor(&[]).await;
    pipeline.wait_drained(Duration::from_secs(60)).await;
    pipeline.stop_ingestor().await;

    let mut vault =
        fetchreward_cli::vault::connect(&format!("http://{}", pipeline.vault_addr), None)
            .await
            .expect("connects");
    let pool = postgres::client_pool(&PgConfig::plain(pipeline.db.url.clone())).expect("a pool");
    let db = postgres::client(&pool).await.expect("connects");
    let why = Why { purpose: "DSAR-42".into(), note: String::new() };
    let value = SubjectValue::Ip(subject_ip.into());

    let found = subject::lookup(&mut vault, &value, &why).await.expect("found");
    assert!(found.stored);
    let months = subject::rows_by_month(&db, &value, &found.tokens).await.expect("counted");
    assert_eq!(months.values().sum::<i64>(), 3, "{months:?}");

    let (rows, audit_id) =
        subject::export(&mut vault, &db, &value, &found.tokens, &why).await.expect("exported");
    assert!(audit_id > 0);
    let mut exported: Vec<(String, String, String)> = rows
        .iter()
        .map(|row| {
            (
                row.message_id.clone().expect("id"),
                row.ip.clone().expect("ip"),
                row.device_id.clone().expect("device"),
            )
        })
        .collect();
    exported.sort();
    let mut expected: Vec<(String, String, String)> =
        [(0, "593-47-5928"), (2, "222-22-2222"), (4, "593-47-5928")]
            .into_iter()
            .map(|(i, device)| (ids[i].clone(), subject_ip.to_owned(), device.to_owned()))
            .collect();
    expected.sort();
    assert_eq!(exported, expected, "exactly the subject's rows, revealed");

    // Unseen: nothing found, nothing stored.
    let unseen = SubjectValue::Ip("203.0.113.77".into());
    let nothing = subject::lookup(&mut vault, &unseen, &why).await.expect("looked up");
    assert!(!nothing.stored);
    assert!(
        subject::rows_by_month(&db, &unseen, &nothing.tokens).await.expect("counted").is_empty()
    );

    let forgotten =
        fetchreward_cli::vault::forget(&mut vault, found.tokens.clone(), "DSAR-42 erasure".into())
            .await
            .expect("forgotten");
    assert_eq!(forgotten.rows[0][1], "forgotten");
    let after = subject::lookup(&mut vault, &value, &why).await.expect("looked up");
    assert!(!after.stored, "the value is gone from the vault");
    assert_eq!(after.tokens, found.tokens, "the token stays a pseudonym");
}
