//! Conversions between the proto messages and the model's types, each written once here and
//! used by both ends of a call.

use fetchreward_model::MaskedLoginFields;

use crate::writer::v1 as writer;

impl From<writer::MaskedLogin> for MaskedLoginFields {
    fn from(row: writer::MaskedLogin) -> Self {
        MaskedLoginFields {
            message_id: row.message_id,
            user_id: row.user_id,
            device_type: row.device_type,
            masked_ip: row.masked_ip,
            masked_device_id: row.masked_device_id,
            locale: row.locale,
            app_version: row.app_version,
            sent_timestamp_ms: row.sent_timestamp_ms,
        }
    }
}

impl From<MaskedLoginFields> for writer::MaskedLogin {
    fn from(fields: MaskedLoginFields) -> Self {
        writer::MaskedLogin {
            message_id: fields.message_id,
            user_id: fields.user_id,
            device_type: fields.device_type,
            masked_ip: fields.masked_ip,
            masked_device_id: fields.masked_device_id,
            locale: fields.locale,
            app_version: fields.app_version,
            sent_timestamp_ms: fields.sent_timestamp_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_survives_the_round_trip() {
        let row = writer::MaskedLogin {
            message_id: "m-1".into(),
            user_id: "u-1".into(),
            device_type: Some("ios".into()),
            masked_ip: Some("ip_v1_x".into()),
            masked_device_id: None,
            locale: Some("RU".into()),
            app_version: Some("2.3.0".into()),
            sent_timestamp_ms: 1_700_000_000_000,
        };
        let fields = MaskedLoginFields::from(row.clone());
        assert_eq!(fields.message_id, "m-1");
        assert_eq!(writer::MaskedLogin::from(fields), row);
    }
}
