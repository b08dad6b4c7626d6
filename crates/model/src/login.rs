//! Parsing an SQS message body into a [`LoginEvent`].
//!
//! The rules (design, "The message and the row"): the body is a JSON object; `user_id` is a
//! required non-empty string; `device_type`, `locale`, `app_version`, `ip` and `device_id` are
//! strings, null or absent; strings fit their columns (length, and no U+0000, which Postgres
//! text cannot hold); `ip` must be an address; unknown fields are ignored. A broken rule gives
//! a [`Rejection`] whose message never quotes a value, because it travels to the dead-letter
//! queue, logs and metrics.
//!
//! A body that is an SNS notification envelope (an SNS topic delivering to the queue without
//! raw message delivery) is unwrapped: the rules apply to its `Message`. The envelope's own
//! fields, its `MessageAttributes` among them, play no part in the row.

use crate::pii::{MAX_PII_CHARS, Pii, PiiValueError, canonical_device_id, canonical_ip};
use crate::text::{TextError, check_text};

/// Length limits, in characters, matching the `varchar` sizes of `user_logins`.
pub mod limits {
    /// `user_id varchar(128)`.
    pub const USER_ID: usize = 128;
    /// `device_type varchar(32)`.
    pub const DEVICE_TYPE: usize = 32;
    /// `locale varchar(32)`.
    pub const LOCALE: usize = 32;
    /// `app_version_raw varchar(32)`.
    pub const APP_VERSION: usize = 32;
    /// `ip` and `device_id` before tokenizing.
    pub const PII: usize = super::MAX_PII_CHARS;
    /// The SQS MessageId kept in `message_id` (SQS ids are 36 characters; 128 leaves room).
    pub const MESSAGE_ID: usize = 128;
}

/// A valid login message, with its personal values in canonical form.
///
/// `Debug` is safe to print: `ip` and `device_id` are [`Pii`], which prints `<redacted>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginEvent {
    /// The user, as sent.
    pub user_id: String,
    /// e.g. `android`, `ios`.
    pub device_type: Option<String>,
    /// The canonical ip address.
    pub ip: Option<Pii>,
    /// The trimmed device id; an empty or blank device id counts as absent.
    pub device_id: Option<Pii>,
    /// e.g. `RU`.
    pub locale: Option<String>,
    /// The version string as sent, e.g. `2.3.0`.
    pub app_version: Option<String>,
}

/// Why a message body is not a valid login event: one rule, one line, no value quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Nothing but white space.
    #[error("body is empty")]
    EmptyBody,
    /// Not parseable as JSON (or not UTF-8).
    #[error("body is not valid JSON (error at line {line}, column {column})")]
    NotJson {
        /// 1-based line of the first error.
        line: usize,
        /// 1-based column of the first error.
        column: usize,
    },
    /// Valid JSON, but not an object.
    #[error("body is a JSON {found}, not an object")]
    NotAnObject {
        /// The JSON type found, e.g. `array`.
        found: &'static str,
    },
    /// `user_id` is absent or null.
    #[error("field `user_id` is missing")]
    MissingUserId,
    /// `user_id` is an empty or blank string.
    #[error("field `user_id` is empty")]
    EmptyUserId,
    /// A known field holds a JSON type other than string or null.
    #[error("field `{field}` must be a string{nullable}, found a {found}", nullable = if *field == "user_id" { "" } else { " or null" })]
    WrongType {
        /// The field name.
        field: &'static str,
        /// The JSON type found, e.g. `number`.
        found: &'static str,
    },
    /// A string longer than its column allows.
    #[error("field `{field}` is longer than {max} characters")]
    TooLong {
        /// The field name.
        field: &'static str,
        /// The limit, in characters.
        max: usize,
    },
    /// A string holding U+0000, which Postgres text cannot store.
    #[error("field `{field}` holds a NUL character (U+0000)")]
    NulCharacter {
        /// The field name.
        field: &'static str,
    },
    /// `ip` is not an IPv4 or IPv6 address.
    #[error("field `ip` is not a valid IPv4 or IPv6 address")]
    InvalidIp,
}

impl Rejection {
    /// A short stable code for the rule, for metric labels and the DLQ's reason-code
    /// attribute.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::EmptyBody => "empty_body",
            Rejection::NotJson { .. } => "not_json",
            Rejection::NotAnObject { .. } => "not_an_object",
            Rejection::MissingUserId => "missing_user_id",
            Rejection::EmptyUserId => "empty_user_id",
            Rejection::WrongType { .. } => "wrong_type",
            Rejection::TooLong { .. } => "too_long",
            Rejection::NulCharacter { .. } => "nul_character",
            Rejection::InvalidIp => "invalid_ip",
        }
    }
}

/// Parses one SQS message body (or the message of an SNS envelope) by the rules of the
/// design.
pub fn parse_login(body: &[u8]) -> Result<LoginEvent, Rejection> {
    let mut fields = json_object(body)?;
    if let Some(message) = fields.notification_message() {
        fields = json_object(message.as_bytes())?;
    }
    login_from_fields(fields)
}

/// The fields of a body that the rules look at, read in one pass: every other field is
/// skipped without being built. A field given twice counts with its last value.
#[derive(Default)]
struct Fields {
    user_id: Field,
    device_type: Field,
    ip: Field,
    device_id: Field,
    locale: Field,
    app_version: Field,
    /// The SNS envelope's `Type`, `TopicArn`, `MessageId` and `Message`.
    envelope_type: Field,
    topic_arn: Field,
    message_id: Field,
    message: Field,
}

/// One field's value as the rules see it.
#[derive(Default)]
enum Field {
    #[default]
    Absent,
    Null,
    Text(String),
    /// Another JSON type: its name, e.g. `number`.
    Other(&'static str),
}

impl Field {
    fn is_text(&self) -> bool {
        matches!(self, Field::Text(_))
    }
}

/// The field names the rules know; any other name is skipped.
#[derive(serde::Deserialize)]
#[serde(field_identifier)]
enum Name {
    #[serde(rename = "user_id")]
    UserId,
    #[serde(rename = "device_type")]
    DeviceType,
    #[serde(rename = "ip")]
    Ip,
    #[serde(rename = "device_id")]
    DeviceId,
    #[serde(rename = "locale")]
    Locale,
    #[serde(rename = "app_version")]
    AppVersion,
    Type,
    TopicArn,
    MessageId,
    Message,
    #[serde(other)]
    Unknown,
}

/// The body: an object's fields, or the JSON type it is instead.
#[allow(
    clippy::large_enum_variant,
    reason = "made once per body and moved out at once: boxing would only add an allocation"
)]
enum Body {
    Object(Fields),
    Other(&'static str),
}

/// Reads any JSON value into what its type says about it: the visitor of both [`Field`] and
/// [`Body`], which differ in what an object and a string become.
struct ValueVisitor<T>(std::marker::PhantomData<T>);

/// What [`ValueVisitor`] makes of each JSON type.
trait FromJson: Sized {
    fn other(type_name: &'static str) -> Self;
    fn null() -> Self {
        Self::other("null")
    }
    fn text(text: String) -> Self {
        drop(text);
        Self::other("string")
    }
    fn borrowed_text(text: &str) -> Self {
        Self::text(text.to_owned())
    }
    fn object<'de, A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<Skipped, Skipped>()?.is_some() {}
        Ok(Self::other("object"))
    }
}

impl FromJson for Field {
    fn other(type_name: &'static str) -> Self {
        Field::Other(type_name)
    }
    fn null() -> Self {
        Field::Null
    }
    fn text(text: String) -> Self {
        Field::Text(text)
    }
}

impl FromJson for Body {
    fn other(type_name: &'static str) -> Self {
        Body::Other(type_name)
    }
    fn object<'de, A: serde::de::MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut fields = Fields::default();
        while let Some(name) = map.next_key::<Name>()? {
            let slot = match name {
                Name::UserId => &mut fields.user_id,
                Name::DeviceType => &mut fields.device_type,
                Name::Ip => &mut fields.ip,
                Name::DeviceId => &mut fields.device_id,
                Name::Locale => &mut fields.locale,
                Name::AppVersion => &mut fields.app_version,
                Name::Type => &mut fields.envelope_type,
                Name::TopicArn => &mut fields.topic_arn,
                Name::MessageId => &mut fields.message_id,
                Name::Message => &mut fields.message,
                Name::Unknown => {
                    map.next_value::<Skipped>()?;
                    continue;
                }
            };
            *slot = map.next_value()?;
        }
        Ok(Body::Object(fields))
    }
}

impl<'de, T: FromJson> serde::de::Visitor<'de> for ValueVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::null())
    }
    fn visit_bool<E>(self, _: bool) -> Result<T, E> {
        Ok(T::other("boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<T, E> {
        Ok(T::other("number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<T, E> {
        Ok(T::other("number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<T, E> {
        Ok(T::other("number"))
    }
    fn visit_str<E>(self, text: &str) -> Result<T, E> {
        Ok(T::borrowed_text(text))
    }
    fn visit_string<E>(self, text: String) -> Result<T, E> {
        Ok(T::text(text))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
        while seq.next_element::<Skipped>()?.is_some() {}
        Ok(T::other("array"))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::object(map)
    }
}

/// A value read and dropped. Unlike serde's `IgnoredAny` it is read through
/// `deserialize_any`, so JSON nested deeper than serde_json's recursion limit is still
/// refused as not JSON, wherever it is.
struct Skipped;

impl FromJson for Skipped {
    fn other(_: &'static str) -> Self {
        Skipped
    }
    fn borrowed_text(_: &str) -> Self {
        Skipped
    }
}

/// `Deserialize` for each [`FromJson`] type, through [`ValueVisitor`].
macro_rules! deserialize_from_json {
    ($($kind:ty),*) => {$(
        impl<'de> serde::Deserialize<'de> for $kind {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_any(ValueVisitor(std::marker::PhantomData))
            }
        }
    )*};
}

deserialize_from_json!(Skipped, Field, Body);

/// The body as a JSON object.
fn json_object(body: &[u8]) -> Result<Fields, Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Rejection::EmptyBody);
    }
    let body: Body = serde_json::from_slice(body)
        .map_err(|err| Rejection::NotJson { line: err.line(), column: err.column() })?;
    match body {
        Body::Object(fields) => Ok(fields),
        Body::Other(found) => Err(Rejection::NotAnObject { found }),
    }
}

impl Fields {
    /// The `Message` of an SNS notification envelope, taken out of it; `None` for anything
    /// else.
    ///
    /// An envelope is recognised by `"Type": "Notification"` with a string `TopicArn`,
    /// `MessageId` and `Message`: fields a login event does not have.
    fn notification_message(&mut self) -> Option<String> {
        let notification = matches!(&self.envelope_type, Field::Text(kind) if kind == "Notification")
            && self.topic_arn.is_text()
            && self.message_id.is_text()
            && self.message.is_text();
        match (notification, std::mem::take(&mut self.message)) {
            (true, Field::Text(message)) => Some(message),
            _ => None,
        }
    }
}

/// The event of a parsed JSON object.
fn login_from_fields(mut fields: Fields) -> Result<LoginEvent, Rejection> {
    let user_id = match std::mem::take(&mut fields.user_id) {
        Field::Absent | Field::Null => return Err(Rejection::MissingUserId),
        Field::Text(user_id) => user_id,
        Field::Other(found) => return Err(Rejection::WrongType { field: "user_id", found }),
    };
    if user_id.trim().is_empty() {
        return Err(Rejection::EmptyUserId);
    }
    check_field("user_id", &user_id, limits::USER_ID)?;

    let device_type = optional_string(fields.device_type, "device_type", limits::DEVICE_TYPE)?;
    let ip = optional_string(fields.ip, "ip", limits::PII)?
        .map(|raw| canonical_ip(&raw))
        .transpose()
        .map_err(|err| pii_rejection("ip", err))?;
    let device_id = match optional_string(fields.device_id, "device_id", limits::PII)? {
        None => None,
        Some(raw) => match canonical_device_id(&raw) {
            Ok(id) => Some(id),
            Err(PiiValueError::Empty) => None,
            Err(err) => return Err(pii_rejection("device_id", err)),
        },
    };
    let locale = optional_string(fields.locale, "locale", limits::LOCALE)?;
    let app_version = optional_string(fields.app_version, "app_version", limits::APP_VERSION)?;

    Ok(LoginEvent { user_id, device_type, ip, device_id, locale, app_version })
}

/// A field that may be a string, null or absent.
fn optional_string(
    value: Field,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, Rejection> {
    match value {
        Field::Absent | Field::Null => Ok(None),
        Field::Text(text) => {
            check_field(field, &text, max)?;
            Ok(Some(text))
        }
        Field::Other(found) => Err(Rejection::WrongType { field, found }),
    }
}

fn check_field(field: &'static str, text: &str, max: usize) -> Result<(), Rejection> {
    check_text(text, max).map_err(|err| match err {
        TextError::NulCharacter => Rejection::NulCharacter { field },
        TextError::TooLong { max } => Rejection::TooLong { field, max },
    })
}

fn pii_rejection(field: &'static str, err: PiiValueError) -> Rejection {
    match err {
        PiiValueError::InvalidIp => Rejection::InvalidIp,
        PiiValueError::NulCharacter => Rejection::NulCharacter { field },
        PiiValueError::TooLong | PiiValueError::Empty => {
            Rejection::TooLong { field, max: MAX_PII_CHARS }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FETCH_EXAMPLE: &str = r#"{"user_id": "424cdd21-063a-43a7-b91b-7ca1a833afae", "app_version": "2.3.0", "device_type": "android", "ip": "199.172.111.135", "locale": "RU", "device_id": "593-47-5928"}"#;

    fn parse(body: &str) -> Result<LoginEvent, Rejection> {
        parse_login(body.as_bytes())
    }

    fn exposed(pii: &Option<Pii>) -> Option<&str> {
        pii.as_ref().map(Pii::expose)
    }

    #[test]
    fn fetch_example_is_accepted_with_every_field() {
        let event = parse(FETCH_EXAMPLE).expect("valid");
        assert_eq!(event.user_id, "424cdd21-063a-43a7-b91b-7ca1a833afae");
        assert_eq!(event.app_version.as_deref(), Some("2.3.0"));
        assert_eq!(event.device_type.as_deref(), Some("android"));
        assert_eq!(exposed(&event.ip), Some("199.172.111.135"));
        assert_eq!(event.locale.as_deref(), Some("RU"));
        assert_eq!(exposed(&event.device_id), Some("593-47-5928"));
    }

    #[test]
    fn only_user_id_is_required_and_null_means_absent() {
        let event = parse(r#"{"user_id": "u1"}"#).expect("valid");
        assert_eq!(
            event,
            LoginEvent {
                user_id: "u1".into(),
                device_type: None,
                ip: None,
                device_id: None,
                locale: None,
                app_version: None,
            }
        );
        let nulls = r#"{"user_id":"u1","device_type":null,"ip":null,"device_id":null,"locale":null,"app_version":null}"#;
        assert_eq!(parse(nulls).expect("valid"), event);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let event = parse(r#"{"user_id": "u1", "foo": [1, {"bar": null}], "ip": "10.0.0.1"}"#)
            .expect("valid");
        assert_eq!(exposed(&event.ip), Some("10.0.0.1"));
    }

    #[test]
    fn a_field_given_twice_counts_with_its_last_value() {
        let event = parse(r#"{"user_id": "u1", "ip": 7, "ip": "10.0.0.2"}"#).expect("valid");
        assert_eq!(exposed(&event.ip), Some("10.0.0.2"));
        assert_eq!(
            parse(r#"{"user_id": "u1", "ip": "10.0.0.2", "ip": [1]}"#),
            Err(Rejection::WrongType { field: "ip", found: "array" })
        );
        // An escaped name is the same name.
        let event = parse(r#"{"user\u005fid": "u1", "\u0069p": "10.0.0.3"}"#).expect("valid");
        assert_eq!((event.user_id.as_str(), exposed(&event.ip)), ("u1", Some("10.0.0.3")));
    }

    #[test]
    fn the_body_must_be_a_json_object() {
        assert_eq!(parse(""), Err(Rejection::EmptyBody));
        assert_eq!(parse(" \n"), Err(Rejection::EmptyBody));
        assert!(matches!(parse("not json"), Err(Rejection::NotJson { line: 1, .. })));
        assert!(matches!(parse(r#"{"user_id": "u1""#), Err(Rejection::NotJson { .. })));
        assert!(matches!(parse_login(b"\xff\xfe"), Err(Rejection::NotJson { .. })));
        assert_eq!(parse("[1]"), Err(Rejection::NotAnObject { found: "array" }));
        assert_eq!(parse(r#""u1""#), Err(Rejection::NotAnObject { found: "string" }));
        assert_eq!(parse("null"), Err(Rejection::NotAnObject { found: "null" }));
        assert_eq!(parse("42"), Err(Rejection::NotAnObject { found: "number" }));
    }

    #[test]
    fn deeply_nested_json_is_rejected_not_a_crash() {
        let body =
            format!(r#"{{"user_id": "u1", "x": {}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(parse(&body), Err(Rejection::NotJson { .. })));
    }

    #[test]
    fn user_id_is_a_required_non_empty_string_of_at_most_128_characters() {
        assert_eq!(parse("{}"), Err(Rejection::MissingUserId));
        assert_eq!(parse(r#"{"user_id": null}"#), Err(Rejection::MissingUserId));
        assert_eq!(parse(r#"{"user_id": ""}"#), Err(Rejection::EmptyUserId));
        assert_eq!(parse(r#"{"user_id": "  "}"#), Err(Rejection::EmptyUserId));
        assert_eq!(
            parse(r#"{"user_id": 7}"#),
            Err(Rejection::WrongType { field: "user_id", found: "number" })
        );
        let longest = format!(r#"{{"user_id": "{}"}}"#, "é".repeat(128));
        assert!(parse(&longest).is_ok(), "128 two-byte characters fit varchar(128)");
        let too_long = format!(r#"{{"user_id": "{}"}}"#, "u".repeat(129));
        assert_eq!(parse(&too_long), Err(Rejection::TooLong { field: "user_id", max: 128 }));
    }

    #[test]
    fn fields_of_the_wrong_type_are_rejected() {
        for (field, value, found) in [
            ("device_type", "1", "number"),
            ("ip", "3232235777", "number"),
            ("device_id", "[\"a\"]", "array"),
            ("locale", "true", "boolean"),
            ("app_version", "2.3", "number"),
            ("app_version", "{}", "object"),
        ] {
            let body = format!(r#"{{"user_id": "u1", "{field}": {value}}}"#);
            assert_eq!(parse(&body), Err(Rejection::WrongType { field, found }), "{body}");
        }
    }

    #[test]
    fn over_long_strings_are_rejected() {
        for (field, max) in
            [("device_type", 32), ("locale", 32), ("app_version", 32), ("device_id", 256)]
        {
            let fits = format!(r#"{{"user_id": "u1", "{field}": "{}"}}"#, "a".repeat(max));
            assert!(parse(&fits).is_ok(), "{field} of {max}");
            let body = format!(r#"{{"user_id": "u1", "{field}": "{}"}}"#, "a".repeat(max + 1));
            assert_eq!(parse(&body), Err(Rejection::TooLong { field, max }), "{field}");
        }
        let ip = format!(r#"{{"user_id": "u1", "ip": "{}"}}"#, "1".repeat(257));
        assert_eq!(parse(&ip), Err(Rejection::TooLong { field: "ip", max: 256 }));
    }

    #[test]
    fn a_nul_character_in_any_string_field_is_rejected() {
        for field in ["user_id", "device_type", "ip", "device_id", "locale", "app_version"] {
            let body = format!(r#"{{"user_id": "u1", "{field}": "a\u0000b"}}"#);
            assert_eq!(parse(&body), Err(Rejection::NulCharacter { field }), "{field}");
            assert_eq!(parse(&body).expect_err("rejected").code(), "nul_character");
        }
        // Other control characters are text Postgres stores.
        assert!(parse(r#"{"user_id": "u\u0001", "locale": "R\u007fU"}"#).is_ok());
    }

    #[test]
    fn an_sns_envelope_is_unwrapped_and_its_message_parsed() {
        let envelope = serde_json::json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:logins",
            "Message": FETCH_EXAMPLE,
            "Timestamp": "2024-01-01T00:00:00.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "MessageAttributes": {"source": {"Type": "String", "Value": "web"}},
        });
        assert_eq!(parse(&envelope.to_string()), parse(FETCH_EXAMPLE));
        let mut broken = envelope.clone();
        broken["Message"] = serde_json::Value::String(r#"{"ip": "10.0.0.1"}"#.into());
        assert_eq!(parse(&broken.to_string()), Err(Rejection::MissingUserId));
        // Only one level is unwrapped: an envelope inside an envelope is not a login.
        let mut nested = envelope.clone();
        nested["Message"] = serde_json::Value::String(envelope.to_string());
        assert_eq!(parse(&nested.to_string()), Err(Rejection::MissingUserId));
    }

    #[test]
    fn a_login_that_merely_has_a_type_field_is_not_an_envelope() {
        let event = parse(r#"{"user_id": "u1", "Type": "Notification", "Message": "x"}"#)
            .expect("valid: no TopicArn, so not an envelope");
        assert_eq!(event.user_id, "u1");
    }

    #[test]
    fn ip_must_parse_and_is_canonicalized() {
        assert_eq!(parse(r#"{"user_id": "u1", "ip": "300.1.1.1"}"#), Err(Rejection::InvalidIp));
        assert_eq!(parse(r#"{"user_id": "u1", "ip": ""}"#), Err(Rejection::InvalidIp));
        let v6 = parse(r#"{"user_id": "u1", "ip": "2001:DB8::0:1"}"#).expect("valid");
        assert_eq!(exposed(&v6.ip), Some("2001:db8::1"));
        let mapped = parse(r#"{"user_id": "u1", "ip": "::ffff:10.1.2.3"}"#).expect("valid");
        assert_eq!(exposed(&mapped.ip), Some("10.1.2.3"));
    }

    #[test]
    fn device_id_is_trimmed_and_blank_means_absent() {
        let event = parse(r#"{"user_id": "u1", "device_id": " 593-47-5928 "}"#).expect("valid");
        assert_eq!(exposed(&event.device_id), Some("593-47-5928"));
        let blank = parse(r#"{"user_id": "u1", "device_id": "   "}"#).expect("valid");
        assert_eq!(blank.device_id, None);
    }

    #[test]
    fn the_string_none_is_a_string_not_null() {
        let event = parse(r#"{"user_id": "u1", "locale": "None"}"#).expect("valid");
        assert_eq!(event.locale.as_deref(), Some("None"));
    }

    #[test]
    fn fetch_malformed_message_is_rejected_for_its_missing_user_id() {
        let rejection =
            parse(r#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#).expect_err("invalid");
        assert_eq!(rejection, Rejection::MissingUserId);
        assert_eq!(rejection.code(), "missing_user_id");
    }

    #[test]
    fn rejection_messages_never_quote_the_value() {
        let secret = "198.51.100.77-secret";
        let bodies = [
            format!(r#"{{"user_id": "u1", "ip": "{secret}"}}"#),
            format!(r#"{{"user_id": "u1", "device_id": "{}"}}"#, secret.repeat(20)),
            format!(r#"{{"user_id": "u1", "ip": ["{secret}"]}}"#),
            format!(r#"{{"user_id": "u1", "ip": "{secret}""#),
            format!(r#"["{secret}"]"#),
        ];
        for body in bodies {
            let rejection = parse(&body).expect_err("invalid");
            let text = rejection.to_string();
            assert!(!text.contains("198.51"), "{text}");
            assert!(!format!("{rejection:?}").contains("198.51"));
            assert!(!text.contains('\n'));
        }
    }
}
