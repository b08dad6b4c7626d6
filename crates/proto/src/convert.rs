//! Conversions between the proto messages and the model's types, each written once here and
//! used by both ends of a call.

use fetchreward_model::{MaskedLoginFields, PiiKind};

use crate::vault::v1 as vault;
use crate::writer::v1 as writer;

impl From<PiiKind> for vault::PiiKind {
    fn from(kind: PiiKind) -> Self {
        match kind {
            PiiKind::Ip => vault::PiiKind::Ip,
            PiiKind::DeviceId => vault::PiiKind::DeviceId,
        }
    }
}

impl vault::PiiKind {
    /// The model's kind of a `PiiKind` field's number; `None` for UNSPECIFIED and numbers no
    /// version of the API knows.
    pub fn model_kind(number: i32) -> Option<PiiKind> {
        match vault::PiiKind::try_from(number) {
            Ok(vault::PiiKind::Ip) => Some(PiiKind::Ip),
            Ok(vault::PiiKind::DeviceId) => Some(PiiKind::DeviceId),
            Ok(vault::PiiKind::Unspecified) | Err(_) => None,
        }
    }
}

impl vault::PiiValue {
    /// The model's kind of this value ([`vault::PiiKind::model_kind`]).
    pub fn model_kind(&self) -> Option<PiiKind> {
        vault::PiiKind::model_kind(self.kind)
    }
}

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
    fn kinds_map_both_ways_and_unspecified_is_none() {
        for kind in PiiKind::ALL {
            let value =
                vault::PiiValue { kind: vault::PiiKind::from(kind).into(), value: String::new() };
            assert_eq!(value.model_kind(), Some(kind));
        }
        for number in [vault::PiiKind::Unspecified as i32, 42] {
            let value = vault::PiiValue { kind: number, value: String::new() };
            assert_eq!(value.model_kind(), None);
        }
    }

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
