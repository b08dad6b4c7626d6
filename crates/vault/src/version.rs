//! [`KeyVersion`]: the version of a key, from 1, the one type for it from the database to the
//! token text.

use std::fmt;

/// The version of a tokenization or data key: 1, 2, and so on.
///
/// It is a Postgres `integer` in `vault.keys` and `vault.pii_tokens`, the `N` of a token's
/// `v<N>`, and part of the KMS encryption context of the wrapped key, so it lives between 1
/// and `i32::MAX`; conversions to and from those forms are here and nowhere else.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyVersion(u32);

impl KeyVersion {
    /// The first version of every key.
    pub const FIRST: KeyVersion = KeyVersion::of(1);

    /// Version `n`, for a literal: panics outside 1 to `i32::MAX`.
    pub const fn of(n: u32) -> KeyVersion {
        assert!(n >= 1 && n <= i32::MAX as u32, "a key version is between 1 and i32::MAX");
        KeyVersion(n)
    }

    /// Version `n`; `None` outside 1 to `i32::MAX`.
    pub fn new(n: u32) -> Option<KeyVersion> {
        (1..=i32::MAX.unsigned_abs()).contains(&n).then_some(KeyVersion(n))
    }

    /// The version after this one.
    pub fn next(self) -> KeyVersion {
        KeyVersion::new(self.0 + 1).expect("key versions stay far below 2^31")
    }

    /// The number, as a token and the API write it.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The number as Postgres stores it.
    pub fn to_db(self) -> i32 {
        i32::try_from(self.0).expect("a KeyVersion fits an i32 by construction")
    }

    /// A stored number; `None` for one that is not a version (0, negative).
    pub fn from_db(n: i32) -> Option<KeyVersion> {
        u32::try_from(n).ok().and_then(KeyVersion::new)
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The bare number, as a list of versions reads best: `[1, 2]`.
impl fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl PartialEq<u32> for KeyVersion {
    fn eq(&self, other: &u32) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_live_between_one_and_the_largest_postgres_integer() {
        assert_eq!(KeyVersion::new(0), None);
        assert_eq!(KeyVersion::new(1), Some(KeyVersion::FIRST));
        assert!(KeyVersion::new(i32::MAX as u32).is_some());
        assert_eq!(KeyVersion::new(i32::MAX as u32 + 1), None);
        assert_eq!(KeyVersion::from_db(-3), None);
        assert_eq!(KeyVersion::from_db(7).map(KeyVersion::to_db), Some(7));
        assert_eq!(KeyVersion::FIRST.next(), 2);
        assert_eq!(format!("v{}", KeyVersion::FIRST.next()), "v2");
    }
}
