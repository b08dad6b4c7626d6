//! [`MaskedLogin`]: a login event with tokens in place of personal values.

use chrono::{DateTime, NaiveDate, Utc};

use crate::login::limits;
use crate::text::{TextError, check_text};
use crate::{LoginEvent, PiiKind, Token, TokenParseError, app_version_number};

/// One row of `user_logins`, before the writer derives its computed columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaskedLogin {
    /// The SQS MessageId: the idempotency key of the row.
    pub message_id: String,
    /// The user, as sent.
    pub user_id: String,
    /// As sent.
    pub device_type: Option<String>,
    /// The token of the ip.
    pub masked_ip: Option<Token>,
    /// The token of the device id.
    pub masked_device_id: Option<Token>,
    /// As sent.
    pub locale: Option<String>,
    /// The version string as sent.
    pub app_version: Option<String>,
    /// When SQS received the message (its `SentTimestamp`).
    pub sent_at: DateTime<Utc>,
}

/// Why a row sent to the writer is refused. Names the field and the rule, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskedLoginError {
    /// A required field is empty or blank.
    #[error("field `{0}` is required")]
    Missing(&'static str),
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
    /// A masked field that is not a well-formed token: possibly raw PII.
    #[error("field `{field}` is not a well-formed token: it {reason}")]
    NotAToken {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        reason: TokenParseError,
    },
    /// A well-formed token of the other kind (a device token in `masked_ip`, say).
    #[error("field `{field}` holds a token of the wrong kind")]
    WrongTokenKind {
        /// The field name.
        field: &'static str,
    },
    /// A `SentTimestamp` whose date Postgres' `date` type cannot hold.
    #[error("field `sent_timestamp_ms` is out of range")]
    BadTimestamp,
}

impl MaskedLoginError {
    /// A short stable code for the rule, for refusals and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            MaskedLoginError::Missing(_) => "missing_field",
            MaskedLoginError::TooLong { .. } => "too_long",
            MaskedLoginError::NulCharacter { .. } => "nul_character",
            MaskedLoginError::NotAToken { .. } => "not_a_token",
            MaskedLoginError::WrongTokenKind { .. } => "wrong_token_kind",
            MaskedLoginError::BadTimestamp => "bad_timestamp",
        }
    }
}

/// The earliest date of Postgres' `date` type: 4714-11-24 BC (Julian day 0). Its latest,
/// 5874897-12-31, is beyond anything a timestamp in milliseconds reaches here.
fn earliest_postgres_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(-4713, 11, 24).expect("a valid proleptic Gregorian date")
}

impl MaskedLogin {
    /// The row of a parsed event whose personal values the vault has tokenized. Only the
    /// event's fields that are not personal are copied.
    pub fn from_event(
        message_id: String,
        sent_at: DateTime<Utc>,
        event: &LoginEvent,
        masked_ip: Option<Token>,
        masked_device_id: Option<Token>,
    ) -> Self {
        MaskedLogin {
            message_id,
            user_id: event.user_id.clone(),
            device_type: event.device_type.clone(),
            masked_ip,
            masked_device_id,
            locale: event.locale.clone(),
            app_version: event.app_version.clone(),
            sent_at,
        }
    }

    /// `app_version` as an integer (`major*10000 + minor*100 + patch`), when it has that shape.
    pub fn app_version_number(&self) -> Option<i32> {
        self.app_version.as_deref().and_then(app_version_number)
    }

    /// The UTC date of `sent_at`: the row's `create_date`.
    pub fn create_date(&self) -> NaiveDate {
        self.sent_at.date_naive()
    }
}

/// The fields of a masked row as text, as a client sends them; [`MaskedLoginFields::check`]
/// turns them into a [`MaskedLogin`] or says which rule they break.
#[derive(Debug, Clone, Default)]
pub struct MaskedLoginFields {
    /// See [`MaskedLogin::message_id`].
    pub message_id: String,
    /// See [`MaskedLogin::user_id`].
    pub user_id: String,
    /// See [`MaskedLogin::device_type`].
    pub device_type: Option<String>,
    /// Must be an ip token when present.
    pub masked_ip: Option<String>,
    /// Must be a device token when present.
    pub masked_device_id: Option<String>,
    /// See [`MaskedLogin::locale`].
    pub locale: Option<String>,
    /// See [`MaskedLogin::app_version`].
    pub app_version: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub sent_timestamp_ms: i64,
}

impl MaskedLoginFields {
    /// Checks every rule of a row: required fields, lengths, and that masked fields hold
    /// tokens of their own kind (so raw PII can never reach the table).
    pub fn check(self) -> Result<MaskedLogin, MaskedLoginError> {
        required("message_id", &self.message_id, limits::MESSAGE_ID)?;
        required("user_id", &self.user_id, limits::USER_ID)?;
        optional("device_type", &self.device_type, limits::DEVICE_TYPE)?;
        optional("locale", &self.locale, limits::LOCALE)?;
        optional("app_version", &self.app_version, limits::APP_VERSION)?;
        let masked_ip = token_of("masked_ip", PiiKind::Ip, self.masked_ip.as_deref())?;
        let masked_device_id =
            token_of("masked_device_id", PiiKind::DeviceId, self.masked_device_id.as_deref())?;
        let sent_at = DateTime::<Utc>::from_timestamp_millis(self.sent_timestamp_ms)
            .filter(|at| at.date_naive() >= earliest_postgres_date())
            .ok_or(MaskedLoginError::BadTimestamp)?;
        Ok(MaskedLogin {
            message_id: self.message_id,
            user_id: self.user_id,
            device_type: self.device_type,
            masked_ip,
            masked_device_id,
            locale: self.locale,
            app_version: self.app_version,
            sent_at,
        })
    }
}

impl From<MaskedLogin> for MaskedLoginFields {
    fn from(row: MaskedLogin) -> Self {
        MaskedLoginFields {
            message_id: row.message_id,
            user_id: row.user_id,
            device_type: row.device_type,
            masked_ip: row.masked_ip.map(|t| t.to_string()),
            masked_device_id: row.masked_device_id.map(|t| t.to_string()),
            locale: row.locale,
            app_version: row.app_version,
            sent_timestamp_ms: row.sent_at.timestamp_millis(),
        }
    }
}

fn required(field: &'static str, text: &str, max: usize) -> Result<(), MaskedLoginError> {
    if text.trim().is_empty() {
        return Err(MaskedLoginError::Missing(field));
    }
    fits(field, text, max)
}

fn optional(
    field: &'static str,
    text: &Option<String>,
    max: usize,
) -> Result<(), MaskedLoginError> {
    match text {
        Some(text) => fits(field, text, max),
        None => Ok(()),
    }
}

fn fits(field: &'static str, text: &str, max: usize) -> Result<(), MaskedLoginError> {
    check_text(text, max).map_err(|err| match err {
        TextError::NulCharacter => MaskedLoginError::NulCharacter { field },
        TextError::TooLong { max } => MaskedLoginError::TooLong { field, max },
    })
}

fn token_of(
    field: &'static str,
    kind: PiiKind,
    text: Option<&str>,
) -> Result<Option<Token>, MaskedLoginError> {
    let Some(text) = text else { return Ok(None) };
    let token: Token =
        text.parse().map_err(|reason| MaskedLoginError::NotAToken { field, reason })?;
    if token.kind() != kind {
        return Err(MaskedLoginError::WrongTokenKind { field });
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAC_LEN;

    fn token(kind: PiiKind) -> Token {
        Token::new(kind, 1, [7u8; MAC_LEN])
    }

    fn fields() -> MaskedLoginFields {
        MaskedLoginFields {
            message_id: "5b6f0c8e-0000-4000-8000-000000000001".into(),
            user_id: "u1".into(),
            device_type: Some("ios".into()),
            masked_ip: Some(token(PiiKind::Ip).to_string()),
            masked_device_id: Some(token(PiiKind::DeviceId).to_string()),
            locale: None,
            app_version: Some("2.3.4".into()),
            sent_timestamp_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn well_formed_fields_make_a_row_with_derived_columns() {
        let row = fields().check().expect("valid");
        assert_eq!(row.masked_ip, Some(token(PiiKind::Ip)));
        assert_eq!(row.app_version_number(), Some(20304));
        assert_eq!(row.create_date(), NaiveDate::from_ymd_opt(2023, 11, 14).expect("date"));
        assert_eq!(MaskedLoginFields::from(row.clone()).check(), Ok(row));
    }

    #[test]
    fn create_date_is_the_utc_date() {
        let mut late = fields();
        late.sent_timestamp_ms = 1_700_006_399_999; // 2023-11-14T23:59:59.999Z
        assert_eq!(late.check().expect("valid").create_date().to_string(), "2023-11-14");
        let mut next = fields();
        next.sent_timestamp_ms = 1_700_006_400_000;
        assert_eq!(next.check().expect("valid").create_date().to_string(), "2023-11-15");
    }

    #[test]
    fn raw_pii_in_a_masked_field_is_refused() {
        let mut raw_ip = fields();
        raw_ip.masked_ip = Some("203.0.113.9".into());
        assert_eq!(
            raw_ip.check(),
            Err(MaskedLoginError::NotAToken {
                field: "masked_ip",
                reason: TokenParseError::UnknownKind
            })
        );
        let mut raw_device = fields();
        raw_device.masked_device_id = Some("593-47-5928".into());
        assert!(matches!(raw_device.check(), Err(MaskedLoginError::NotAToken { .. })));
    }

    #[test]
    fn a_token_of_the_other_kind_is_refused() {
        let mut swapped = fields();
        swapped.masked_ip = Some(token(PiiKind::DeviceId).to_string());
        assert_eq!(swapped.check(), Err(MaskedLoginError::WrongTokenKind { field: "masked_ip" }));
    }

    #[test]
    fn required_fields_and_lengths_are_enforced() {
        let mut no_id = fields();
        no_id.message_id.clear();
        assert_eq!(no_id.check(), Err(MaskedLoginError::Missing("message_id")));
        let mut long_locale = fields();
        long_locale.locale = Some("x".repeat(33));
        assert_eq!(
            long_locale.check(),
            Err(MaskedLoginError::TooLong { field: "locale", max: 32 })
        );
        let mut bad_time = fields();
        bad_time.sent_timestamp_ms = i64::MAX;
        assert_eq!(bad_time.check(), Err(MaskedLoginError::BadTimestamp));
        let mut blank_user = fields();
        blank_user.user_id = "  ".into();
        assert_eq!(blank_user.check(), Err(MaskedLoginError::Missing("user_id")));
    }

    #[test]
    fn what_postgres_would_refuse_is_refused_with_its_own_code() {
        let mut nul = fields();
        nul.device_type = Some("and\0roid".into());
        let err = nul.check().expect_err("refused");
        assert_eq!(err, MaskedLoginError::NulCharacter { field: "device_type" });
        assert_eq!(err.code(), "nul_character");
        let mut nul_id = fields();
        nul_id.message_id = "id\0".into();
        assert_eq!(nul_id.check(), Err(MaskedLoginError::NulCharacter { field: "message_id" }));
        // 4714-11-24 BC is Postgres' first date; the day before is refused.
        let first_day_ms = -210_866_803_200_000;
        let mut earliest = fields();
        earliest.sent_timestamp_ms = first_day_ms;
        assert!(earliest.check().is_ok());
        let mut before = fields();
        before.sent_timestamp_ms = first_day_ms - 1;
        assert_eq!(before.check().map_err(|e| e.code()), Err("bad_timestamp"));
    }
}
