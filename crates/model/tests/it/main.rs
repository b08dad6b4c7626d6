//! Property tests of the parsing rules: no input makes them panic, and no rejection quotes a
//! personal value.

use fetchreward_model::{PiiKind, Token, app_version_number, canonical_ip, parse_login};
use proptest::prelude::*;

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
