//! Generated gRPC types of the Fetchreward services.
//!
//! This is the only crate that runs protoc. It re-exports `tonic` and `prost` so that every
//! service builds against the same versions, and exposes the descriptor set for gRPC
//! reflection. Business logic never works on these types directly: each service converts them
//! to `fetchreward-model` types at its edge, with the conversions written once here.

mod convert;

pub use prost;
pub use tonic;

/// `fetchreward.vault.v1`: tokenize, detokenize, forget, rotate keys.
pub mod vault {
    /// The encoded `FileDescriptorSet` of the vault's protos, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/vault_descriptor.bin"));

    /// Version 1 of the vault API.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("fetchreward.vault.v1");
    }
}

/// `fetchreward.writer.v1`: idempotent batch writes of masked rows.
pub mod writer {
    /// The encoded `FileDescriptorSet` of the writer's protos, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/writer_descriptor.bin"));

    /// Version 1 of the writer API.
    pub mod v1 {
        #![allow(missing_docs, clippy::all)]
        tonic::include_proto!("fetchreward.writer.v1");
    }
}

// The two messages below carry personal values; their `Debug` shows everything but the value.

impl std::fmt::Debug for vault::v1::PiiValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PiiValue")
            .field("kind", &self.kind())
            .field("value", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for vault::v1::DetokenizeResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetokenizeResult")
            .field("token", &self.token)
            .field("status", &self.status())
            .field("value", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::vault::v1::{DetokenizeResult, PiiKind, PiiValue, TokenStatus};

    #[test]
    fn debug_of_personal_values_is_redacted() {
        let value = PiiValue { kind: PiiKind::Ip.into(), value: "203.0.113.77".into() };
        let result = DetokenizeResult {
            token: "ip_v1_x".into(),
            status: TokenStatus::Found.into(),
            value: "203.0.113.77".into(),
        };
        for printed in [format!("{value:?}"), format!("{result:?}")] {
            assert!(!printed.contains("203.0.113.77"), "{printed}");
            assert!(printed.contains("<redacted>"), "{printed}");
        }
    }

    #[test]
    fn each_descriptor_set_names_its_own_service_only() {
        assert_eq!(
            file_names(super::vault::FILE_DESCRIPTOR_SET),
            ["fetchreward/vault/v1/vault.proto"]
        );
        assert_eq!(
            file_names(super::writer::FILE_DESCRIPTOR_SET),
            ["fetchreward/writer/v1/writer.proto"]
        );
    }

    /// The file names of a descriptor set (field 1 of each FileDescriptorProto, field 1 of the
    /// set), decoded without prost-types.
    fn file_names(bytes: &[u8]) -> Vec<String> {
        use prost::Message;
        #[derive(Clone, PartialEq, prost::Message)]
        struct File {
            #[prost(string, tag = "1")]
            name: String,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        struct Set {
            #[prost(message, repeated, tag = "1")]
            file: Vec<File>,
        }
        Set::decode(bytes)
            .expect("descriptor set decodes")
            .file
            .into_iter()
            .map(|f| f.name)
            .collect()
    }
}
