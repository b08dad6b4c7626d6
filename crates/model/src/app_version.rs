//! The integer form of `app_version` kept in Fetch's `user_logins.app_version integer` column.

/// `major*10000 + minor*100 + patch` for a version string `M`, `M.m` or `M.m.p` of decimal
/// digits with minor and patch below 100; `None` for anything else (pre-release suffixes,
/// letters, four parts, a value that does not fit a Postgres `integer`). Missing parts count
/// as zero, so `"2"`, `"2.0"` and `"2.0.0"` all give 20000.
///
/// The original string is always kept beside it (`app_version_raw`), so nothing is lost when
/// this returns `None`.
pub fn app_version_number(raw: &str) -> Option<i32> {
    let mut parts = raw.split('.');
    let major = digits(parts.next()?)?;
    let minor = parts.next().map_or(Some(0), digits)?;
    let patch = parts.next().map_or(Some(0), digits)?;
    if parts.next().is_some() || minor >= 100 || patch >= 100 {
        return None;
    }
    let number = major.checked_mul(10_000)?.checked_add(minor * 100 + patch)?;
    i32::try_from(number).ok()
}

/// A non-empty run of ASCII digits, as a number (`None` on overflow).
fn digits(part: &str) -> Option<u64> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::app_version_number;

    #[test]
    fn well_formed_versions_map_to_integers() {
        assert_eq!(app_version_number("2.3.0"), Some(20300));
        assert_eq!(app_version_number("2.3.4"), Some(20304));
        assert_eq!(app_version_number("0.96"), Some(9600));
        assert_eq!(app_version_number("2"), Some(20000));
        assert_eq!(app_version_number("10.99.99"), Some(109_999));
        assert_eq!(app_version_number("02.03.04"), Some(20304));
        assert_eq!(app_version_number("214748.36.47"), Some(i32::MAX));
    }

    #[test]
    fn anything_else_maps_to_none() {
        for raw in [
            "",
            "2.",
            ".2",
            "2..3",
            "2.3.4.5",
            "2.100.0",
            "2.3.100",
            "v2.3.0",
            "2.3.0-beta",
            "2.3.a",
            " 2.3.0",
            "2.3.0 ",
            "-2.3.0",
            "+2",
            "214748.36.48",
            "99999999999999999999",
        ] {
            assert_eq!(app_version_number(raw), None, "{raw:?}");
        }
    }
}
