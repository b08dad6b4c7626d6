//! Sealing and opening against the local stack's KMS (moto): a body opens only under the
//! attributes it was sealed with, and a data key serves many bodies.

use fetchreward_dlq::{OpenError, Opener, Sealer, looks_sealed};
use fetchreward_testkit::{Stack, create_kms_key};

const BODY: &str = r#"{"user_id": "u1", "ip": "198.51.100.77", "device_id": "593-47-5928"}"#;

#[tokio::test]
async fn a_sealed_body_opens_only_with_the_attributes_it_was_sealed_under() {
    let stack = Stack::from_env();
    let key = create_kms_key(&stack.kms()).await;
    let sealer = Sealer::new(stack.kms(), key);
    let opener = Opener::new(stack.kms());

    let sealed = sealer.seal("m-1", "invalid_ip", BODY).await.expect("seals");
    assert!(looks_sealed(&sealed));
    assert!(!sealed.contains("198.51.100.77") && !sealed.contains("593-47"), "{sealed}");
    assert_eq!(opener.open(&sealed, "m-1", "invalid_ip").await.expect("opens"), BODY);

    // Moved under another message's id, or relabelled with another code: refused.
    for (id, code) in [("m-2", "invalid_ip"), ("m-1", "db_constraint_violation")] {
        let refused = opener.open(&sealed, id, code).await.expect_err("the seal holds");
        assert!(matches!(refused, OpenError::Broken), "{refused:?}");
    }
    // An edited ciphertext: refused.
    let mut envelope: serde_json::Value = serde_json::from_str(&sealed).expect("JSON");
    let ciphertext = envelope["ciphertext"].as_str().expect("text").to_owned();
    let flipped = if ciphertext.starts_with('A') { "B" } else { "A" };
    envelope["ciphertext"] = format!("{flipped}{}", &ciphertext[1..]).into();
    let refused =
        opener.open(&envelope.to_string(), "m-1", "invalid_ip").await.expect_err("edited");
    assert!(matches!(refused, OpenError::Broken), "{refused:?}");

    // A second body reuses the data key (same wrapped key) under a fresh nonce.
    let second = sealer.seal("m-3", "invalid_ip", BODY).await.expect("seals");
    let field = |text: &str, name: &str| {
        serde_json::from_str::<serde_json::Value>(text).expect("JSON")[name].clone()
    };
    assert_eq!(field(&second, "key"), field(&sealed, "key"));
    assert_ne!(field(&second, "nonce"), field(&sealed, "nonce"));
}

#[tokio::test]
async fn without_the_key_nothing_is_sealed_and_the_error_says_why() {
    let stack = Stack::from_env();
    let sealer = Sealer::new(stack.kms(), "alias/fetchreward-no-such-key");
    let refused = sealer.seal("m-1", "invalid_ip", BODY).await.expect_err("no key");
    assert!(!refused.is_transient(), "a missing key is not worth retrying: {refused}");
    assert!(!refused.to_string().contains("198.51"), "{refused}");
}
