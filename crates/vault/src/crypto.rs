//! The two cryptographic operations of the vault, on keys already unwrapped.
//!
//! - [`TokenizationKey`]: one version of the tokenization root key. It derives one HMAC-SHA256
//!   key per [`PiiKind`] with HKDF-SHA256, so the same text as an ip and as a device id gives
//!   unrelated tokens, and a token reveals nothing about the value to whoever lacks the key.
//! - [`DataKey`]: one version of the data key, AES-256-GCM with a random 96-bit nonce per
//!   value and the token text as associated data, so a ciphertext copied onto another token's
//!   row fails to decrypt instead of answering with the wrong value.
//!
//! Plaintext key bytes are handed in as [`Zeroizing`] buffers, turned into aws-lc key objects
//! at once and wiped by the caller's buffer on drop; aws-lc cleanses its own copies (HMAC and
//! AEAD contexts, HKDF pseudo-random keys) when they are freed. Nothing here prints key
//! material: the `Debug` impls show versions only.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::{hkdf, hmac};
use fetchreward_model::{MAC_LEN, Pii, PiiKind, Token};
use zeroize::Zeroizing;

use crate::version::KeyVersion;

/// Length in bytes of every key the vault holds: tokenization root keys and data keys.
pub const KEY_LEN: usize = 32;

/// Length in bytes of the authentication tag appended to each ciphertext.
pub const TAG_LEN: usize = 16;

/// HKDF `info` of each kind's HMAC key. Changing one changes every token of that kind.
fn hkdf_info(kind: PiiKind) -> &'static [u8] {
    match kind {
        PiiKind::Ip => b"fetchreward token ip",
        PiiKind::DeviceId => b"fetchreward token dev",
    }
}

/// Errors of the AEAD operations. They never carry a value or key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// aws-lc refused a key or failed to seal (should not happen with 32-byte keys).
    #[error("encryption failed")]
    Seal,
    /// The ciphertext, nonce or associated data do not authenticate under this key.
    #[error("ciphertext does not authenticate under data key v{0}")]
    Open(KeyVersion),
    /// The decrypted bytes are not UTF-8 text.
    #[error("decrypted value under data key v{0} is not text")]
    NotText(KeyVersion),
}

/// One version of the tokenization root key, as the per-kind HMAC keys derived from it.
pub struct TokenizationKey {
    version: KeyVersion,
    ip: hmac::Key,
    device_id: hmac::Key,
    audit: hmac::Key,
    binding: hmac::Key,
}

/// HKDF `info` of the audit chain's key (see [`AuditChain`]).
const AUDIT_CHAIN_INFO: &[u8] = b"fetchreward audit chain";

/// HKDF `info` of the key rows' binding key (see [`KeyBinding`]).
const KEY_BINDING_INFO: &[u8] = b"fetchreward key binding";

impl TokenizationKey {
    /// Derives the per-kind HMAC keys of version `version` from its root key.
    pub fn derive(version: KeyVersion, root: &Zeroizing<[u8; KEY_LEN]>) -> Self {
        // The root key is uniformly random (KMS GenerateDataKey), so an empty salt is as good
        // as any fixed one (RFC 5869 section 3.1); the kind lives in `info`.
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(root.as_slice());
        let derive = |info: &[u8]| -> hmac::Key {
            // The derived bytes pass through a buffer that is wiped on drop, never through an
            // unwiped one (as the `From<Okm>` conversion's would be).
            let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
            prk.expand(&[info], hmac::HMAC_SHA256)
                .and_then(|okm| okm.fill(bytes.as_mut_slice()))
                .expect("32 bytes is far below HKDF-SHA256's output limit");
            hmac::Key::new(hmac::HMAC_SHA256, bytes.as_slice())
        };
        TokenizationKey {
            version,
            ip: derive(hkdf_info(PiiKind::Ip)),
            device_id: derive(hkdf_info(PiiKind::DeviceId)),
            audit: derive(AUDIT_CHAIN_INFO),
            binding: derive(KEY_BINDING_INFO),
        }
    }

    /// The key rows' binding key derived from this version's root (the vault uses version
    /// 1's, the anchor every ring keeps).
    pub fn key_binding(&self) -> KeyBinding {
        KeyBinding { key: self.binding.clone() }
    }

    /// The audit chain's key derived from this version's root (the vault uses version 1's,
    /// which every ring keeps).
    pub fn audit_chain(&self) -> AuditChain {
        AuditChain { key: self.audit.clone() }
    }

    /// The key version, written into every token it makes.
    pub fn version(&self) -> KeyVersion {
        self.version
    }

    /// The token of a canonical value: `HMAC-SHA256(key of kind, canonical UTF-8 bytes)`.
    pub fn token(&self, kind: PiiKind, value: &Pii) -> Token {
        let key = match kind {
            PiiKind::Ip => &self.ip,
            PiiKind::DeviceId => &self.device_id,
        };
        let tag = hmac::sign(key, value.expose().as_bytes());
        let mac: [u8; MAC_LEN] =
            tag.as_ref().try_into().expect("HMAC-SHA256 tags are 32 bytes long");
        Token::new(kind, self.version.get(), mac)
    }
}

impl fmt::Debug for TokenizationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenizationKey").field("version", &self.version).finish_non_exhaustive()
    }
}

/// The key of the audit trail's hash chain: each row's link is
/// `HMAC-SHA256(key, previous link ‖ the row's fields)`, so only the vault can write a link,
/// and a row edited or removed afterwards breaks the chain from there on.
#[derive(Clone)]
pub struct AuditChain {
    key: hmac::Key,
}

impl AuditChain {
    /// The link of a row whose canonical fields are `row`, after the link `previous`.
    pub fn link(&self, previous: &[u8], row: &[u8]) -> Vec<u8> {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(&(previous.len() as u64).to_be_bytes());
        context.update(previous);
        context.update(row);
        context.sign().as_ref().to_vec()
    }

    /// Whether `link` is the link of `row` after `previous` (in constant time).
    pub fn verify(&self, previous: &[u8], row: &[u8], link: &[u8]) -> bool {
        let mut message = Vec::with_capacity(8 + previous.len() + row.len());
        message.extend_from_slice(&(previous.len() as u64).to_be_bytes());
        message.extend_from_slice(previous);
        message.extend_from_slice(row);
        hmac::verify(&self.key, &message, link).is_ok()
    }
}

/// The key that binds a row of `vault.keys` to the vault that made it: each row carries
/// `HMAC-SHA256(key, its fields)`, which nobody without tokenization key v1 can compute, so a
/// row inserted by someone with database and KMS rights but not the vault's keys is refused.
#[derive(Clone)]
pub struct KeyBinding {
    key: hmac::Key,
}

impl KeyBinding {
    /// The binding of a row with these fields.
    pub fn bind(&self, fields: &[&[u8]]) -> Vec<u8> {
        hmac::sign(&self.key, &length_prefixed(fields)).as_ref().to_vec()
    }

    /// Whether `binding` is that of a row with these fields (in constant time).
    pub fn verify(&self, fields: &[&[u8]], binding: &[u8]) -> bool {
        hmac::verify(&self.key, &length_prefixed(fields), binding).is_ok()
    }
}

impl fmt::Debug for KeyBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyBinding").finish_non_exhaustive()
    }
}

/// Fields joined unambiguously: each preceded by its length.
fn length_prefixed(fields: &[&[u8]]) -> Vec<u8> {
    let mut message = Vec::with_capacity(fields.iter().map(|field| 8 + field.len()).sum());
    for field in fields {
        message.extend_from_slice(&(field.len() as u64).to_be_bytes());
        message.extend_from_slice(field);
    }
    message
}

impl fmt::Debug for AuditChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditChain").finish_non_exhaustive()
    }
}

/// A value encrypted under a data key, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The random 96-bit nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Ciphertext is not secret, but its bytes help nobody reading a log.
        f.debug_struct("Sealed").field("ciphertext_len", &self.ciphertext.len()).finish()
    }
}

/// One version of the data key.
pub struct DataKey {
    version: KeyVersion,
    key: RandomizedNonceKey,
}

impl DataKey {
    /// An AES-256-GCM key of version `version`.
    pub fn new(version: KeyVersion, bytes: &Zeroizing<[u8; KEY_LEN]>) -> Self {
        let key = RandomizedNonceKey::new(&AES_256_GCM, bytes.as_slice())
            .expect("AES-256-GCM accepts any 32-byte key");
        DataKey { version, key }
    }

    /// The key version, stored beside every ciphertext it makes.
    pub fn version(&self) -> KeyVersion {
        self.version
    }

    /// Encrypts `value` with a fresh random nonce, bound to `token`.
    ///
    /// Random 96-bit nonces stay safe for up to 2^32 encryptions under one key (NIST SP
    /// 800-38D); each value is encrypted once per token, so a data key covers billions of
    /// distinct values before it needs rotating.
    pub fn seal(&self, token: &str, value: &Pii) -> Result<Sealed, CryptoError> {
        let mut in_out = value.expose().as_bytes().to_vec();
        in_out.reserve_exact(TAG_LEN);
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(token.as_bytes()), &mut in_out)
            .map_err(|_| CryptoError::Seal)?;
        Ok(Sealed { nonce: *nonce.as_ref(), ciphertext: in_out })
    }

    /// Decrypts what [`DataKey::seal`] made for `token`.
    pub fn open(&self, token: &str, nonce: &[u8], ciphertext: &[u8]) -> Result<Pii, CryptoError> {
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open(self.version))?;
        let mut in_out = Zeroizing::new(ciphertext.to_vec());
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(token.as_bytes()), in_out.as_mut_slice())
            .map_err(|_| CryptoError::Open(self.version))?;
        let text =
            std::str::from_utf8(plaintext).map_err(|_| CryptoError::NotText(self.version))?;
        Ok(Pii::from_canonical(text.to_owned()))
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey").field("version", &self.version).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::digest;
    use fetchreward_model::canonical_ip;

    use super::*;

    fn key_bytes(fill: u8) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new([fill; KEY_LEN])
    }

    fn ip(text: &str) -> Pii {
        canonical_ip(text).expect("valid ip")
    }

    #[test]
    fn tokens_are_deterministic_per_key_and_version() {
        let key = TokenizationKey::derive(KeyVersion::of(1), &key_bytes(7));
        let again = TokenizationKey::derive(KeyVersion::of(1), &key_bytes(7));
        let value = ip("198.51.100.7");
        assert_eq!(key.token(PiiKind::Ip, &value), again.token(PiiKind::Ip, &value));
        assert_eq!(key.token(PiiKind::Ip, &value).version(), 1);

        let other_root = TokenizationKey::derive(KeyVersion::of(1), &key_bytes(8));
        assert_ne!(key.token(PiiKind::Ip, &value), other_root.token(PiiKind::Ip, &value));
        let other_version = TokenizationKey::derive(KeyVersion::of(2), &key_bytes(7));
        assert_eq!(other_version.token(PiiKind::Ip, &value).to_string()[..6], *"ip_v2_");
    }

    #[test]
    fn derivation_matches_rfc_5869_and_2104_computed_independently() {
        // HKDF-SHA256 with an empty salt, then HMAC-SHA256, computed with Python's hashlib:
        // a change in derivation would change every token ever issued.
        let key = TokenizationKey::derive(KeyVersion::of(1), &key_bytes(7));
        let mac: String = key
            .token(PiiKind::Ip, &ip("198.51.100.7"))
            .mac()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(mac, "0ad01dccd31906e490a5347ae95cbdd91611fa2efc10f0f4a6d3bd57eba1cd7d");
        let link: String =
            key.audit_chain().link(b"", b"row").iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(link, "4d504e1f9f5ed256e05d5dc84026e79b8e23ecd6972ad20929755b67be0af02d");
    }

    #[test]
    fn kinds_have_unrelated_keys() {
        let key = TokenizationKey::derive(KeyVersion::of(1), &key_bytes(7));
        let text = Pii::from_canonical("10.0.0.1".into());
        let as_ip = key.token(PiiKind::Ip, &text);
        let as_device = key.token(PiiKind::DeviceId, &text);
        assert_ne!(as_ip.mac(), as_device.mac());
        assert!(as_ip.to_string().starts_with("ip_v1_"));
        assert!(as_device.to_string().starts_with("dev_v1_"));
    }

    #[test]
    fn the_mac_is_not_an_unkeyed_hash_of_the_value() {
        let key = TokenizationKey::derive(KeyVersion::of(1), &key_bytes(7));
        let value = ip("198.51.100.7");
        let mac = *key.token(PiiKind::Ip, &value).mac();
        let sha = digest::digest(&digest::SHA256, value.expose().as_bytes());
        assert_ne!(mac.as_slice(), sha.as_ref());
        let empty_key = hmac::Key::new(hmac::HMAC_SHA256, &[]);
        assert_ne!(mac.as_slice(), hmac::sign(&empty_key, value.expose().as_bytes()).as_ref());
    }

    #[test]
    fn seal_then_open_round_trips_and_hides_the_value() {
        let key = DataKey::new(KeyVersion::of(3), &key_bytes(1));
        let value = ip("2001:db8::1");
        let sealed = key.seal("ip_v1_x", &value).expect("seals");
        assert_eq!(sealed.ciphertext.len(), value.expose().len() + TAG_LEN);
        assert!(!sealed.ciphertext.windows(3).any(|w| w == b"db8"));
        let opened = key.open("ip_v1_x", &sealed.nonce, &sealed.ciphertext).expect("opens");
        assert_eq!(opened, value);
    }

    #[test]
    fn nonces_are_fresh_for_every_seal() {
        let key = DataKey::new(KeyVersion::of(1), &key_bytes(1));
        let value = ip("192.0.2.1");
        let first = key.seal("t", &value).expect("seals");
        let second = key.seal("t", &value).expect("seals");
        assert_ne!(first.nonce, second.nonce);
        assert_ne!(first.ciphertext, second.ciphertext);
    }

    #[test]
    fn a_ciphertext_moved_to_another_token_does_not_open() {
        let key = DataKey::new(KeyVersion::of(1), &key_bytes(1));
        let sealed = key.seal("ip_v1_a", &ip("192.0.2.1")).expect("seals");
        assert_eq!(
            key.open("ip_v1_b", &sealed.nonce, &sealed.ciphertext),
            Err(CryptoError::Open(KeyVersion::of(1)))
        );
        let other = DataKey::new(KeyVersion::of(2), &key_bytes(2));
        assert_eq!(
            other.open("ip_v1_a", &sealed.nonce, &sealed.ciphertext),
            Err(CryptoError::Open(KeyVersion::of(2)))
        );
        let mut tampered = sealed.ciphertext.clone();
        tampered[0] ^= 1;
        assert!(key.open("ip_v1_a", &sealed.nonce, &tampered).is_err());
        assert!(key.open("ip_v1_a", &sealed.nonce[..8], &sealed.ciphertext).is_err());
    }

    #[test]
    fn debug_shows_versions_only() {
        let tokenization = TokenizationKey::derive(KeyVersion::of(4), &key_bytes(0xAB));
        let data = DataKey::new(KeyVersion::of(5), &key_bytes(0xAB));
        let printed = format!("{tokenization:?} {data:?}");
        assert_eq!(printed, "TokenizationKey { version: 4, .. } DataKey { version: 5, .. }");
    }
}
