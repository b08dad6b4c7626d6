//! Masked forms of personal values, for tasks that need only part of one: the network of an
//! address (`66.194.53.x`), the end of a device id (`***-**-5928`).
//!
//! A [`MaskRule`] is written as the operator configures it:
//!
//! - `keep-groups:N` keeps the first `N` groups of a value split at `.` and `:` (an address's
//!   octets or hextets) and writes every later group as `x`: `66.194.53.215` with
//!   `keep-groups:3` is `66.194.53.x`, `2001:db8:85a3::8a2e:370:7334` is `2001:db8:85a3::x:x:x`.
//! - `keep-last:N` keeps the last `N` letters and digits and writes every earlier one as `*`,
//!   leaving the separators between them: `593-47-5928` with `keep-last:4` is `***-**-5928`.
//! - `hide` shows nothing of the value, not even its length: `****`.
//!
//! A masked form never holds more of the value than its rule says: a value too short for its
//! rule (fewer groups or characters than it keeps) is hidden whole, since keeping all of it
//! would reveal it.

use std::fmt;
use std::str::FromStr;

use crate::pii::PiiKind;

/// What a fully hidden value shows.
pub const HIDDEN: &str = "****";

/// How a personal value is masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskRule {
    /// The first `N` groups kept, later ones written `x`.
    KeepGroups(usize),
    /// The last `N` letters and digits kept, earlier ones written `*`.
    KeepLast(usize),
    /// Nothing shown.
    Hide,
}

impl MaskRule {
    /// The rule of `kind` when the operator sets none: an address's first three groups, a
    /// device id's last four characters.
    pub fn default_for(kind: PiiKind) -> MaskRule {
        match kind {
            PiiKind::Ip => MaskRule::KeepGroups(3),
            PiiKind::DeviceId => MaskRule::KeepLast(4),
        }
    }

    /// The masked form of `value`.
    pub fn apply(self, value: &str) -> String {
        match self {
            MaskRule::Hide => HIDDEN.to_owned(),
            MaskRule::KeepGroups(keep) => keep_groups(value, keep),
            MaskRule::KeepLast(keep) => keep_last(value, keep),
        }
    }
}

fn keep_groups(value: &str, keep: usize) -> String {
    const SEPARATORS: [char; 2] = ['.', ':'];
    let groups = value.split(SEPARATORS).filter(|group| !group.is_empty()).count();
    if groups <= keep {
        return HIDDEN.to_owned();
    }
    let mut masked = String::with_capacity(value.len());
    let mut seen = 0;
    for piece in value.split_inclusive(SEPARATORS) {
        let group = piece.strip_suffix(SEPARATORS).unwrap_or(piece);
        if !group.is_empty() {
            seen += 1;
            masked.push_str(if seen <= keep { group } else { "x" });
        }
        masked.push_str(&piece[group.len()..]);
    }
    masked
}

fn keep_last(value: &str, keep: usize) -> String {
    let characters = value.chars().filter(|c| c.is_alphanumeric()).count();
    if characters <= keep {
        return HIDDEN.to_owned();
    }
    let hide = characters - keep;
    let mut seen = 0;
    value
        .chars()
        .map(|c| {
            if !c.is_alphanumeric() {
                return c;
            }
            seen += 1;
            if seen <= hide { '*' } else { c }
        })
        .collect()
}

impl fmt::Display for MaskRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskRule::KeepGroups(n) => write!(f, "keep-groups:{n}"),
            MaskRule::KeepLast(n) => write!(f, "keep-last:{n}"),
            MaskRule::Hide => f.write_str("hide"),
        }
    }
}

/// A mask rule that is not one of `keep-groups:N`, `keep-last:N` or `hide`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a mask rule is keep-groups:N, keep-last:N (N from 1) or hide")]
pub struct MaskRuleError;

impl FromStr for MaskRule {
    type Err = MaskRuleError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "hide" {
            return Ok(MaskRule::Hide);
        }
        let (name, count) = text.split_once(':').ok_or(MaskRuleError)?;
        let count: usize = count.parse().map_err(|_| MaskRuleError)?;
        if count == 0 {
            return Err(MaskRuleError);
        }
        match name {
            "keep-groups" => Ok(MaskRule::KeepGroups(count)),
            "keep-last" => Ok(MaskRule::KeepLast(count)),
            _ => Err(MaskRuleError),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_keep_an_addresss_network_and_a_device_ids_end() {
        let ip = MaskRule::default_for(PiiKind::Ip);
        let device = MaskRule::default_for(PiiKind::DeviceId);
        assert_eq!(ip.apply("66.194.53.215"), "66.194.53.x");
        assert_eq!(ip.apply("2001:db8:85a3::8a2e:370:7334"), "2001:db8:85a3::x:x:x");
        assert_eq!(device.apply("593-47-5928"), "***-**-5928");
    }

    #[test]
    fn a_value_too_short_for_its_rule_is_hidden_whole() {
        assert_eq!(MaskRule::KeepGroups(3).apply("::1"), HIDDEN);
        assert_eq!(MaskRule::KeepLast(4).apply("59-28"), HIDDEN);
        assert_eq!(MaskRule::KeepLast(4).apply(""), HIDDEN);
    }

    #[test]
    fn hide_shows_neither_the_value_nor_its_length() {
        assert_eq!(MaskRule::Hide.apply("593-47-5928"), HIDDEN);
        assert_eq!(MaskRule::Hide.apply("1"), HIDDEN);
    }

    #[test]
    fn rules_read_back_as_written_and_bad_ones_are_refused() {
        for rule in [MaskRule::KeepGroups(2), MaskRule::KeepLast(6), MaskRule::Hide] {
            assert_eq!(rule.to_string().parse::<MaskRule>(), Ok(rule));
        }
        for bad in ["", "keep-last", "keep-last:0", "keep-last:x", "keep-first:3", "show"] {
            assert_eq!(bad.parse::<MaskRule>(), Err(MaskRuleError), "{bad:?}");
        }
    }
}
