//! `s3://bucket/prefix` and `--older-than 13mo`.

use std::fmt;

use anyhow::{Context, bail};
use chrono::{Days, Months, NaiveDate};

/// An S3 bucket and a key prefix (without slashes at either end; possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveTarget {
    /// The bucket.
    pub bucket: String,
    /// The prefix under which `user_logins/month=…/` lives.
    pub prefix: String,
}

impl ArchiveTarget {
    /// The full key of `relative` under the prefix.
    pub fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }
}

impl std::str::FromStr for ArchiveTarget {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<ArchiveTarget> {
        let rest = text
            .strip_prefix("s3://")
            .with_context(|| format!("{text:?} is not an S3 URL: write s3://bucket/prefix"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            bail!(
                "{bucket:?} is not an S3 bucket name (3 to 63 lower-case letters, digits, '-' and '.')"
            );
        }
        Ok(ArchiveTarget { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() })
    }
}

impl fmt::Display for ArchiveTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// An age: `13mo` (months), `2y` (years) or `400d` (days).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OlderThan {
    /// Calendar months.
    Months(u32),
    /// Days.
    Days(u64),
}

impl OlderThan {
    /// The day before which a month must end to be archived, counted back from `today`.
    pub fn cutoff(self, today: NaiveDate) -> NaiveDate {
        match self {
            OlderThan::Months(months) => today - Months::new(months),
            OlderThan::Days(days) => today - Days::new(days),
        }
    }
}

impl std::str::FromStr for OlderThan {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<OlderThan> {
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let wrong = || format!("{text:?} is not an age: write e.g. 13mo, 2y or 400d");
        let number: u32 = number.parse().ok().with_context(wrong)?;
        match unit {
            "mo" => Ok(OlderThan::Months(number)),
            "y" => Ok(OlderThan::Months(number.checked_mul(12).with_context(wrong)?)),
            "d" => Ok(OlderThan::Days(u64::from(number))),
            _ => Err(anyhow::anyhow!(wrong())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_read_with_or_without_a_prefix() {
        let target: ArchiveTarget = "s3://fetchreward-archive/prod/logins/".parse().unwrap();
        assert_eq!(target.bucket, "fetchreward-archive");
        assert_eq!(target.key("user_logins/x"), "prod/logins/user_logins/x");
        assert_eq!(target.to_string(), "s3://fetchreward-archive/prod/logins");
        let bare: ArchiveTarget = "s3://bucket".parse().unwrap();
        assert_eq!(bare.key("user_logins/x"), "user_logins/x");
        assert!("https://bucket/x".parse::<ArchiveTarget>().is_err());
        assert!("s3://Bad_Bucket/x".parse::<ArchiveTarget>().is_err());
    }

    #[test]
    fn ages_count_back_in_calendar_months_or_days() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 2).unwrap();
        let age: OlderThan = "13mo".parse().unwrap();
        assert_eq!(age.cutoff(today), NaiveDate::from_ymd_opt(2025, 11, 2).unwrap());
        assert_eq!("2y".parse::<OlderThan>().unwrap(), OlderThan::Months(24));
        let days: OlderThan = "30d".parse().unwrap();
        assert_eq!(days.cutoff(today), NaiveDate::from_ymd_opt(2026, 11, 2).unwrap());
        for wrong in ["13", "mo", "13 months", "-1mo"] {
            assert!(wrong.parse::<OlderThan>().is_err(), "{wrong}");
        }
    }
}
