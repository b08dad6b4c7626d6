//! Property tests of the parsing rules: no input makes them panic, no rejection quotes a
//! personal value, and nothing the table would refuse passes them.

use fetchreward_model::{
    LoginEvent, PiiKind, Rejection, Token, app_version_number, canonical_ip, check_text, limits,
    parse_login,
};
use proptest::prelude::*;

/// The known fields with their column limits.
const LIMITS: [(&str, usize); 6] = [
    ("user_id", limits::USER_ID),
    ("device_type", limits::DEVICE_TYPE),
    ("ip", limits::PII),
    ("device_id", limits::PII),
    ("locale", limits::LOCALE),
    ("app_version", limits::APP_VERSION),
];

/// A valid body with `value` (already JSON) in `field`.
fn body_with(field: &str, value: &str) -> String {
    let mut fields: Vec<(String, String)> = [
        ("user_id", "\"u-1\""),
        ("device_type", "\"android\""),
        ("ip", "\"10.1.2.3\""),
        ("device_id", "\"593-47-5928\""),
        ("locale", "\"RU\""),
        ("app_version", "\"2.3.0\""),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (name, old) in &mut fields {
        if name == field {
            *old = value.to_owned();
        }
    }
    let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// Every string of an accepted event fits its column: nothing the table refuses is accepted.
fn fits_the_table(event: &LoginEvent) -> bool {
    let strings = [
        (Some(event.user_id.as_str()), limits::USER_ID),
        (event.device_type.as_deref(), limits::DEVICE_TYPE),
        (event.ip.as_ref().map(|v| v.expose()), limits::PII),
        (event.device_id.as_ref().map(|v| v.expose()), limits::PII),
        (event.locale.as_deref(), limits::LOCALE),
        (event.app_version.as_deref(), limits::APP_VERSION),
    ];
    strings.iter().all(|(text, max)| text.is_none_or(|text| check_text(text, *max).is_ok()))
}

/// A JSON object with one of `values` for each of [`FIELDS`].
fn object_of(values: &[serde_json_value::Value]) -> String {
    let members: Vec<String> = FIELDS
        .iter()
        .zip(values)
        .map(|(field, value)| format!("{}: {}", serde_json_value::quote(field), value.to_json()))
        .collect();
    format!("{{{}}}", members.join(", "))
}

/// The same body as an SNS notification envelope would carry it.
fn sns_envelope(body: &str) -> String {
    format!(
        r#"{{"Type": "Notification", "MessageId": "5f3c", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Message": {}, "Timestamp": "2024-01-01T00:00:00Z"}}"#,
        serde_json_value::quote(body)
    )
}

/// A JSON value of any type, with strings drawn from `text`.
fn json_value(
    text: impl Strategy<Value = String> + Clone,
) -> impl Strategy<Value = serde_json_value::Value> {
    use serde_json_value::Value;
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        text.prop_map(Value::Str),
        Just(Value::Array),
        Just(Value::Object),
    ]
}

/// A tiny JSON writer, so the properties do not depend on how the parser's own library
/// serialises.
mod serde_json_value {
    #[derive(Debug, Clone)]
    pub enum Value {
        Null,
        Bool(bool),
        Int(i64),
        Str(String),
        Array,
        Object,
    }

    pub fn quote(text: &str) -> String {
        let mut out = String::from('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    impl Value {
        pub fn to_json(&self) -> String {
            match self {
                Value::Null => "null".into(),
                Value::Bool(b) => b.to_string(),
                Value::Int(i) => i.to_string(),
                Value::Str(s) => quote(s),
                Value::Array => "[1, \"x\"]".into(),
                Value::Object => "{\"k\": 1}".into(),
            }
        }
    }
}

const FIELDS: [&str; 7] =
    ["user_id", "device_type", "ip", "device_id", "locale", "app_version", "extra"];

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_login(&body);
    }

    #[test]
    fn arbitrary_objects_never_panic_and_never_leak(
        values in proptest::collection::vec(json_value("[a-zA-Z0-9:. _-]{0,300}".prop_map(String::from)), FIELDS.len()),
        canary in "[a-z]{12}",
    ) {
        // Every string value carries the canary; a rejection must never contain it.
        let body = FIELDS
            .iter()
            .zip(&values)
            .map(|(field, value)| {
                let value = match value {
                    serde_json_value::Value::Str(s) => serde_json_value::Value::Str(format!("{canary}{s}")),
                    other => other.clone(),
                };
                format!("{}: {}", serde_json_value::quote(field), value.to_json())
            })
            .collect::<Vec<_>>()
            .join(", ");
        let body = format!("{{{body}}}");
        match parse_login(body.as_bytes()) {
            Ok(event) => prop_assert!(!event.user_id.is_empty()),
            Err(rejection) => {
                prop_assert!(!rejection.to_string().contains(&canary));
                let debug = format!("{:?}", rejection);
                prop_assert!(!debug.contains(&canary));
            }
        }
    }

    #[test]
    fn accepted_events_always_fit_the_table(
        values in proptest::collection::vec(
            json_value(prop_oneof![
                "\\PC{0,40}".prop_map(String::from),
                "[a-z\u{0}\u{e9}\u{1f600}]{0,300}".prop_map(String::from),
            ]),
            FIELDS.len(),
        ),
    ) {
        if let Ok(event) = parse_login(object_of(&values).as_bytes()) {
            prop_assert!(fits_the_table(&event), "{event:?}");
        }
    }

    #[test]
    fn a_nul_character_in_any_field_is_rejected_with_its_own_code(
        field_index in 0..LIMITS.len(),
        before in "[a-z0-9]{1,10}",
        after in "[a-z0-9]{0,10}",
    ) {
        let (field, _) = LIMITS[field_index];
        let value = serde_json_value::quote(&format!("{before}\u{0}{after}"));
        let rejection = parse_login(body_with(field, &value).as_bytes()).expect_err("refused");
        prop_assert_eq!(rejection.code(), "nul_character");
        prop_assert_eq!(rejection, Rejection::NulCharacter { field });
    }

    #[test]
    fn a_value_over_its_column_limit_is_rejected_as_too_long(
        field_index in 0..LIMITS.len(),
        extra in 1usize..40,
        wide in any::<bool>(),
    ) {
        let (field, max) = LIMITS[field_index];
        // Characters, not bytes, are counted: two-byte characters do not halve the limit.
        let unit = if wide { "\u{e9}" } else { "7" };
        let fits = serde_json_value::quote(&unit.repeat(max));
        let long = serde_json_value::quote(&unit.repeat(max + extra));
        if field != "ip" {
            prop_assert!(parse_login(body_with(field, &fits).as_bytes()).is_ok());
        }
        let rejection = parse_login(body_with(field, &long).as_bytes()).expect_err("refused");
        prop_assert_eq!(rejection, Rejection::TooLong { field, max });
    }

    #[test]
    fn an_sns_envelope_parses_as_its_message(
        values in proptest::collection::vec(json_value("\\PC{0,40}".prop_map(String::from)), FIELDS.len()),
    ) {
        let body = object_of(&values);
        prop_assert_eq!(parse_login(sns_envelope(&body).as_bytes()), parse_login(body.as_bytes()));
    }

    #[test]
    fn canonical_ips_are_fixed_points(octets in any::<[u8; 16]>(), v4 in any::<bool>()) {
        let addr: std::net::IpAddr = if v4 {
            std::net::Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]).into()
        } else {
            std::net::Ipv6Addr::from(octets).into()
        };
        let once = canonical_ip(&addr.to_string()).expect("an address").into_exposed();
        let twice = canonical_ip(&once).expect("still an address").into_exposed();
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn an_accepted_ipv4_text_is_the_spelling_of_its_address(
        text in "[0-9]{1,4}\\.[0-9]{1,4}\\.[0-9]{1,4}\\.[0-9]{1,4}",
    ) {
        let reference = text.parse::<std::net::Ipv4Addr>().map(|addr| addr.to_string());
        let canonical = canonical_ip(&text).map(|pii| pii.into_exposed());
        prop_assert_eq!(canonical.ok(), reference.ok());
    }

    #[test]
    fn token_parsing_never_panics(text in "\\PC{0,80}") {
        let _ = text.parse::<Token>();
    }

    #[test]
    fn tokens_round_trip(mac in any::<[u8; 32]>(), version in 1u32.., device in any::<bool>()) {
        let kind = if device { PiiKind::DeviceId } else { PiiKind::Ip };
        let token = Token::new(kind, version, mac);
        prop_assert_eq!(token.to_string().parse::<Token>(), Ok(token));
    }

    #[test]
    fn app_version_numbers_follow_the_formula(major in 0u32..200_000, minor in 0u32..100, patch in 0u32..100) {
        let expected = i32::try_from(u64::from(major) * 10_000 + u64::from(minor) * 100 + u64::from(patch)).ok();
        prop_assert_eq!(app_version_number(&format!("{major}.{minor}.{patch}")), expected);
    }

    #[test]
    fn app_version_never_panics(text in "\\PC{0,40}") {
        let _ = app_version_number(&text);
    }
}
