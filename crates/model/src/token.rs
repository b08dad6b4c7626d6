//! Tokens: `<kind>_v<N>_<base64url, no padding, of a 32-byte HMAC-SHA256>`.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::PiiKind;

/// Length in bytes of a token's MAC (HMAC-SHA256).
pub const MAC_LEN: usize = 32;

/// Length of the base64url text of a MAC.
const MAC_TEXT_LEN: usize = 43;

/// The room base64 asks for to decode a MAC's text: three bytes per started group of four
/// characters.
const MAC_DECODE_LEN: usize = MAC_TEXT_LEN.div_ceil(4) * 3;

/// The longest token text: the longest prefix, `_v`, a `u32` version, `_` and the MAC.
const MAX_TEXT_LEN: usize = "dev".len() + "_v".len() + "4294967295".len() + 1 + MAC_TEXT_LEN;

/// A token: the deterministic pseudonym of one personal value under one key version.
///
/// Tokens are not personal data: they are safe to log, store and print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token {
    kind: PiiKind,
    version: u32,
    mac: [u8; MAC_LEN],
}

/// Why a text is not a well-formed token. Never quotes the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenParseError {
    /// Does not start with `ip_` or `dev_`.
    #[error("does not start with a known kind (`ip_` or `dev_`)")]
    UnknownKind,
    /// The `v<N>_` part is missing or not a positive decimal without leading zeros.
    #[error("has no valid key version (`v<N>_` with N >= 1)")]
    BadVersion,
    /// The MAC is not 43 characters of unpadded base64url encoding 32 bytes.
    #[error("does not end in a 43-character base64url MAC")]
    BadMac,
}

impl Token {
    /// A token from its parts. Version 0 is not a valid key version.
    pub fn new(kind: PiiKind, version: u32, mac: [u8; MAC_LEN]) -> Self {
        debug_assert!(version >= 1, "key versions start at 1");
        Token { kind, version, mac }
    }

    /// The kind of value the token stands for.
    pub fn kind(&self) -> PiiKind {
        self.kind
    }

    /// The version of the tokenization key that made it.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The HMAC of the canonical value.
    pub fn mac(&self) -> &[u8; MAC_LEN] {
        &self.mac
    }

    /// Spells the token into `buf`: no allocation and no formatting machinery, since every row
    /// spells two tokens on each of its hops.
    fn spell<'b>(&self, buf: &'b mut [u8; MAX_TEXT_LEN]) -> &'b str {
        let mut version = itoa::Buffer::new();
        let mut len = 0;
        for part in [self.kind.token_prefix(), "_v", version.format(self.version), "_"] {
            buf[len..len + part.len()].copy_from_slice(part.as_bytes());
            len += part.len();
        }
        len += URL_SAFE_NO_PAD
            .encode_slice(self.mac, &mut buf[len..])
            .expect("MAX_TEXT_LEN holds the longest prefix, version and MAC");
        std::str::from_utf8(&buf[..len]).expect("prefixes, digits and base64url are ASCII")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.spell(&mut [0; MAX_TEXT_LEN]))
    }
}

impl FromStr for Token {
    type Err = TokenParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (prefix, rest) = text.split_once('_').ok_or(TokenParseError::UnknownKind)?;
        let kind = PiiKind::from_token_prefix(prefix).ok_or(TokenParseError::UnknownKind)?;
        let (version, mac_text) = rest
            .strip_prefix('v')
            .and_then(|rest| rest.split_once('_'))
            .ok_or(TokenParseError::BadVersion)?;
        let version = parse_version(version).ok_or(TokenParseError::BadVersion)?;
        if mac_text.len() != MAC_TEXT_LEN {
            return Err(TokenParseError::BadMac);
        }
        // The strict engine refuses non-zero trailing bits, so each token has one spelling.
        let mut decoded = [0u8; MAC_DECODE_LEN];
        let mac = URL_SAFE_NO_PAD
            .decode_slice(mac_text, &mut decoded)
            .ok()
            .and_then(|len| <[u8; MAC_LEN]>::try_from(&decoded[..len]).ok())
            .ok_or(TokenParseError::BadMac)?;
        Ok(Token { kind, version, mac })
    }
}

/// A positive decimal without sign or leading zeros.
fn parse_version(text: &str) -> Option<u32> {
    if text.is_empty() || text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kind: PiiKind, version: u32) -> Token {
        let mut mac = [0u8; MAC_LEN];
        for (i, byte) in mac.iter_mut().enumerate() {
            *byte = (i as u8).wrapping_mul(37).wrapping_add(251);
        }
        Token::new(kind, version, mac)
    }

    #[test]
    fn format_then_parse_round_trips() {
        for kind in PiiKind::ALL {
            for version in [1, 2, 17, u32::MAX] {
                let token = sample(kind, version);
                let text = token.to_string();
                assert!(text.starts_with(&format!("{}_v{version}_", kind.token_prefix())));
                assert_eq!(text.parse::<Token>(), Ok(token), "{text}");
            }
        }
    }

    #[test]
    fn the_spelling_is_prefix_version_and_base64url_of_the_mac() {
        for kind in PiiKind::ALL {
            for (version, seed) in
                [(1u32, 0u8), (9, 1), (10, 77), (4_000_000_000, 200), (u32::MAX, 255)]
            {
                let mac: [u8; MAC_LEN] =
                    std::array::from_fn(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed));
                let expected =
                    format!("{}_v{version}_{}", kind.token_prefix(), URL_SAFE_NO_PAD.encode(mac));
                assert_eq!(Token::new(kind, version, mac).to_string(), expected);
            }
        }
    }

    #[test]
    fn text_has_the_documented_shape() {
        let text = sample(PiiKind::DeviceId, 3).to_string();
        let mac = text.strip_prefix("dev_v3_").expect("prefix");
        assert_eq!(mac.len(), 43);
        assert!(mac.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn malformed_tokens_are_rejected_with_the_rule() {
        let good = sample(PiiKind::Ip, 1).to_string();
        let mac = &good["ip_v1_".len()..];
        let cases = [
            ("".to_string(), TokenParseError::UnknownKind),
            ("203.0.113.9".to_string(), TokenParseError::UnknownKind),
            (format!("ssn_v1_{mac}"), TokenParseError::UnknownKind),
            (format!("IP_v1_{mac}"), TokenParseError::UnknownKind),
            (format!("ip_1_{mac}"), TokenParseError::BadVersion),
            (format!("ip_v0_{mac}"), TokenParseError::BadVersion),
            (format!("ip_v01_{mac}"), TokenParseError::BadVersion),
            (format!("ip_v-1_{mac}"), TokenParseError::BadVersion),
            (format!("ip_v4294967296_{mac}"), TokenParseError::BadVersion),
            ("ip_v1".to_string(), TokenParseError::BadVersion),
            (format!("ip_v1_{}", &mac[1..]), TokenParseError::BadMac),
            (format!("ip_v1_{mac}="), TokenParseError::BadMac),
            (format!("ip_v1_{}+", &mac[1..]), TokenParseError::BadMac),
            (format!("ip_v1_{} ", &mac[1..]), TokenParseError::BadMac),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<Token>(), Err(expected), "{text:?}");
        }
    }

    #[test]
    fn a_mac_with_nonzero_trailing_bits_is_not_a_second_spelling() {
        let good = sample(PiiKind::Ip, 1).to_string();
        // The last base64 character carries 4 padding bits; flipping the lowest one changes
        // the text but not the decoded bytes under a lenient decoder.
        let mut bytes = good.into_bytes();
        let last = bytes.last_mut().expect("non-empty");
        *last = if *last == b'A' { b'B' } else { b'A' };
        let text = String::from_utf8(bytes).expect("ascii");
        let parsed = text.parse::<Token>();
        assert!(parsed.is_err() || parsed.expect("ok").to_string() == text);
    }
}
