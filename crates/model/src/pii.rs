//! Personal values: their kinds, their canonical forms, and a wrapper that hides them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The longest `ip` or `device_id` accepted, in characters.
pub const MAX_PII_CHARS: usize = 256;

/// Which personal field a value comes from.
///
/// Each kind has its own tokenization key, so the same text as an ip and as a device id gives
/// unrelated tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    /// An IPv4 or IPv6 address.
    Ip,
    /// A device identifier.
    DeviceId,
}

impl PiiKind {
    /// Both kinds, in a fixed order.
    pub const ALL: [PiiKind; 2] = [PiiKind::Ip, PiiKind::DeviceId];

    /// The prefix of this kind's tokens: `ip` or `dev`.
    pub fn token_prefix(self) -> &'static str {
        match self {
            PiiKind::Ip => "ip",
            PiiKind::DeviceId => "dev",
        }
    }

    /// The kind whose tokens start with `prefix`.
    pub fn from_token_prefix(prefix: &str) -> Option<Self> {
        match prefix {
            "ip" => Some(PiiKind::Ip),
            "dev" => Some(PiiKind::DeviceId),
            _ => None,
        }
    }

    /// The name of the message field this kind comes from: `ip` or `device_id`.
    pub fn field_name(self) -> &'static str {
        match self {
            PiiKind::Ip => "ip",
            PiiKind::DeviceId => "device_id",
        }
    }

    /// Puts a raw value of this kind into its canonical form.
    pub fn canonicalize(self, raw: &str) -> Result<Pii, PiiValueError> {
        match self {
            PiiKind::Ip => canonical_ip(raw),
            PiiKind::DeviceId => canonical_device_id(raw),
        }
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field_name())
    }
}

/// Why a raw personal value cannot be tokenized. Never carries the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PiiValueError {
    /// Longer than `MAX_PII_CHARS` (256) characters.
    #[error("is longer than {MAX_PII_CHARS} characters")]
    TooLong,
    /// Not an IPv4 or IPv6 address.
    #[error("is not a valid IPv4 or IPv6 address")]
    InvalidIp,
    /// Empty, or only white space.
    #[error("is empty")]
    Empty,
    /// Holds U+0000, which Postgres text cannot store.
    #[error("holds a NUL character (U+0000)")]
    NulCharacter,
}

impl PiiValueError {
    /// A short stable code for the rule, for refusals and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            PiiValueError::TooLong => "too_long",
            PiiValueError::InvalidIp => "invalid_ip",
            PiiValueError::Empty => "empty_value",
            PiiValueError::NulCharacter => "nul_character",
        }
    }
}

/// A personal value in canonical form.
///
/// `Debug` and `Display` print `<redacted>`: the value is reachable only through
/// [`Pii::expose`], which makes every place that reads it easy to find.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pii(String);

impl Pii {
    /// Wraps a value that is already canonical (for example one decrypted by the vault).
    pub fn from_canonical(value: String) -> Self {
        Pii(value)
    }

    /// The value itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The value itself, consuming the wrapper. Never log it.
    pub fn into_exposed(self) -> String {
        self.0
    }
}

impl fmt::Debug for Pii {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pii(<redacted>)")
    }
}

/// Canonical form of an ip: IPv4 in dotted decimal, IPv6 in RFC 5952 form (lowercase, the
/// longest run of zero groups shortened to `::`), and an IPv4-mapped IPv6 address as its IPv4
/// address, so `::ffff:192.0.2.1` and `192.0.2.1` give one token.
///
/// The text must be an address and nothing else: no surrounding space, no zone (`%eth0`), no
/// prefix length, no leading zeros in IPv4 octets (ambiguous: octal to some parsers).
pub fn canonical_ip(raw: &str) -> Result<Pii, PiiValueError> {
    if raw.chars().count() > MAX_PII_CHARS {
        return Err(PiiValueError::TooLong);
    }
    let canonical = match IpAddr::from_str(raw).map_err(|_| PiiValueError::InvalidIp)? {
        // The parser takes IPv4 only as four decimals without leading zeros: the text is
        // already the address's one spelling.
        IpAddr::V4(_) => return Ok(Pii(raw.to_owned())),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
    };
    Ok(Pii(canonical.to_string()))
}

/// Canonical form of a device id: the text without surrounding white space.
///
/// A device id that is empty after trimming is not a value; the message parser treats it as
/// absent.
pub fn canonical_device_id(raw: &str) -> Result<Pii, PiiValueError> {
    if raw.contains('\0') {
        return Err(PiiValueError::NulCharacter);
    }
    let trimmed = raw.trim();
    if trimmed.chars().count() > MAX_PII_CHARS {
        return Err(PiiValueError::TooLong);
    }
    if trimmed.is_empty() {
        return Err(PiiValueError::Empty);
    }
    Ok(Pii(trimmed.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(raw: &str) -> Result<String, PiiValueError> {
        canonical_ip(raw).map(Pii::into_exposed)
    }

    #[test]
    fn ipv4_is_kept_as_dotted_decimal() {
        assert_eq!(ip("199.172.111.135").as_deref(), Ok("199.172.111.135"));
        assert_eq!(ip("0.0.0.0").as_deref(), Ok("0.0.0.0"));
    }

    #[test]
    fn ipv6_takes_rfc_5952_form() {
        assert_eq!(ip("2001:DB8:0:0:0:0:0:1").as_deref(), Ok("2001:db8::1"));
        assert_eq!(
            ip("2001:0db8:0000:0000:0001:0000:0000:0001").as_deref(),
            Ok("2001:db8::1:0:0:1")
        );
        assert_eq!(ip("2001:db8:0:1:1:1:1:1").as_deref(), Ok("2001:db8:0:1:1:1:1:1"));
        assert_eq!(ip("0:0:0:0:0:0:0:1").as_deref(), Ok("::1"));
    }

    #[test]
    fn ipv4_mapped_ipv6_equals_its_ipv4_address() {
        assert_eq!(ip("::ffff:192.0.2.1").as_deref(), Ok("192.0.2.1"));
        assert_eq!(ip("::FFFF:c000:0201").as_deref(), Ok("192.0.2.1"));
    }

    #[test]
    fn anything_but_an_address_is_rejected() {
        for raw in [
            "",
            " 192.0.2.1",
            "192.0.2.1 ",
            "192.0.2",
            "192.0.2.256",
            "192.000.002.001",
            "192.0.2.1/24",
            "fe80::1%eth0",
            "2001:db8:::1",
            "localhost",
            "None",
        ] {
            assert_eq!(ip(raw), Err(PiiValueError::InvalidIp), "{raw:?}");
        }
        assert_eq!(ip(&"1".repeat(300)), Err(PiiValueError::TooLong));
    }

    #[test]
    fn device_id_is_trimmed() {
        let id = canonical_device_id("  593-47-5928\t").map(Pii::into_exposed);
        assert_eq!(id.as_deref(), Ok("593-47-5928"));
        assert_eq!(canonical_device_id(" \n "), Err(PiiValueError::Empty));
        assert_eq!(canonical_device_id(&"x".repeat(257)), Err(PiiValueError::TooLong));
        assert!(canonical_device_id(&format!("  {}  ", "x".repeat(256))).is_ok());
        assert_eq!(canonical_device_id("593\0-47"), Err(PiiValueError::NulCharacter));
        assert_eq!(ip("10.0.0.1\0"), Err(PiiValueError::InvalidIp));
    }

    #[test]
    fn debug_hides_the_value() {
        let pii = canonical_ip("203.0.113.9").expect("valid");
        assert_eq!(format!("{pii:?}"), "Pii(<redacted>)");
    }

    #[test]
    fn token_prefixes_round_trip() {
        for kind in PiiKind::ALL {
            assert_eq!(PiiKind::from_token_prefix(kind.token_prefix()), Some(kind));
        }
        assert_eq!(PiiKind::from_token_prefix("ssn"), None);
    }
}
