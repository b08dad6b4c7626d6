//! Diesel's view of the `vault` schema (see `migrations/`).

diesel::table! {
    /// Wrapped keys, one row per purpose and version.
    vault.keys (purpose, version) {
        /// `tokenization` or `data`.
        purpose -> Text,
        /// From 1.
        version -> Integer,
        /// The key encrypted by KMS; NULL once the generation is retired.
        wrapped -> Nullable<Binary>,
        /// The KMS key that wrapped it.
        kms_key_id -> Text,
        /// When it was created.
        created_at -> Timestamptz,
        /// From when new tokens or ciphertexts use it (database clock).
        activates_at -> Timestamptz,
        /// The deployment that made it; NULL for legacy rows.
        deployment -> Nullable<Text>,
        /// HMAC over its fields under a key derived from tokenization key v1.
        binding -> Nullable<Binary>,
        /// Made before rows were bound to their deployment.
        legacy -> Bool,
        /// Whether `kms_key_id` was made for this generation alone.
        own_master -> Bool,
        /// When the data key generation was retired.
        retired_at -> Nullable<Timestamptz>,
        /// When KMS deletes its own master key, once scheduled.
        kms_deletion_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// Issued tokens and their encrypted originals.
    vault.pii_tokens (token) {
        /// The token text.
        token -> Text,
        /// `ip` or `dev`.
        kind -> Text,
        /// The data key version of the ciphertext.
        data_key_version -> Integer,
        /// AES-GCM nonce; NULL once forgotten.
        nonce -> Nullable<Binary>,
        /// AES-GCM ciphertext and tag; NULL once forgotten.
        ciphertext -> Nullable<Binary>,
        /// When the token was first stored.
        created_at -> Timestamptz,
        /// When its value was destroyed, if it was.
        forgotten_at -> Nullable<Timestamptz>,
        /// A forgotten token that Tokenize does not fill again.
        tombstone -> Bool,
        /// When Rewrap found that its data key does not open it.
        unreadable_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    /// The audit trail of Detokenize, Forget, RotateKeys and Rewrap.
    vault.audit_log (id) {
        /// Sequence number, returned to the caller.
        id -> BigInt,
        /// When the call was answered.
        at -> Timestamptz,
        /// The caller's identity.
        caller -> Text,
        /// `Detokenize`, `Forget`, `RotateKeys` or `Rewrap`.
        method -> Text,
        /// The purpose the caller gave.
        purpose -> Text,
        /// Tokens in the request.
        token_count -> Integer,
        /// `allowed`, `denied`, `invalid` or `failed`.
        outcome -> Text,
        /// Tokens found.
        found -> Integer,
        /// Tokens never stored.
        not_found -> Integer,
        /// Tokens whose value was forgotten.
        forgotten -> Integer,
        /// What an admin call did, e.g. the key version it created.
        detail -> Nullable<Text>,
        /// The row's link in the hash chain; NULL for rows older than the chain.
        link -> Nullable<Binary>,
    }
}
