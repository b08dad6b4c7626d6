//! Which identity may call which method: deny by default.
//!
//! A service reads one `AUTHZ_<GROUP>` list per group of methods (e.g. `AUTHZ_DETOKENIZE`,
//! `AUTHZ_WRITE`), each a comma-separated list of SPIFFE ids. A method whose list is empty or
//! unset is refused to everyone. The identity [`ANONYMOUS`] may be listed only when the service
//! runs without TLS (local development): with TLS, every allowed caller must prove its identity
//! with a certificate.

use std::collections::{HashMap, HashSet};

use crate::config::ConfigReader;
use crate::tls::{ANONYMOUS, SPIFFE_SCHEME};

/// The allowed identities of each method group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    allowed: HashMap<&'static str, HashSet<String>>,
}

impl Policy {
    /// Reads one list per group: `groups` pairs a group name (as the service asks for it) with
    /// its variable. `tls` says whether callers are identified by certificates.
    pub fn from_env(
        reader: &mut ConfigReader<'_>,
        groups: &[(&'static str, &str)],
        tls: bool,
    ) -> Policy {
        let mut policy = Policy::default();
        for (group, key) in groups {
            let identities = reader.list(key);
            for identity in &identities {
                if identity == ANONYMOUS {
                    if tls {
                        reader.problem(format!(
                            "{key} lists `{ANONYMOUS}`, which is allowed only without TLS (local development)"
                        ));
                    }
                } else if !identity.starts_with(SPIFFE_SCHEME) {
                    reader.problem(format!(
                        "{key}: identities are SPIFFE ids such as spiffe://fetchreward/ingestor"
                    ));
                }
            }
            policy.allowed.insert(group, identities.into_iter().collect());
        }
        policy
    }

    /// A policy that allows `identities` for `group` (tests and examples).
    pub fn allowing(mut self, group: &'static str, identities: &[&str]) -> Policy {
        self.allowed.entry(group).or_default().extend(identities.iter().map(|i| (*i).to_owned()));
        self
    }

    /// Whether `identity` may call the methods of `group`.
    pub fn allows(&self, group: &str, identity: &str) -> bool {
        self.allowed.get(group).is_some_and(|identities| identities.contains(identity))
    }

    /// Whether any group lets anonymous callers in (worth a warning at start-up).
    pub fn admits_anonymous(&self) -> bool {
        self.allowed.values().any(|identities| identities.contains(ANONYMOUS))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const GROUPS: [(&str, &str); 2] = [("write", "AUTHZ_WRITE"), ("read", "AUTHZ_READ")];

    #[test]
    fn deny_by_default_and_allow_what_is_listed() {
        let env: HashMap<&str, &str> = HashMap::from([(
            "AUTHZ_WRITE",
            "spiffe://fetchreward/ingestor, spiffe://fetchreward/backfill",
        )]);
        let mut reader = ConfigReader::new(&env);
        let policy = Policy::from_env(&mut reader, &GROUPS, true);
        reader.finish().expect("valid");
        assert!(policy.allows("write", "spiffe://fetchreward/ingestor"));
        assert!(policy.allows("write", "spiffe://fetchreward/backfill"));
        assert!(!policy.allows("write", "spiffe://fetchreward/reader"));
        assert!(!policy.allows("read", "spiffe://fetchreward/ingestor"), "unset means nobody");
        assert!(!policy.allows("write", ANONYMOUS));
        assert!(!policy.allows("unknown", "spiffe://fetchreward/ingestor"));
    }

    #[test]
    fn anonymous_is_refused_with_tls_and_allowed_without() {
        let env: HashMap<&str, &str> = HashMap::from([("AUTHZ_WRITE", "anonymous")]);
        let mut with_tls = ConfigReader::new(&env);
        Policy::from_env(&mut with_tls, &GROUPS, true);
        assert!(with_tls.finish().is_err());

        let mut plaintext = ConfigReader::new(&env);
        let policy = Policy::from_env(&mut plaintext, &GROUPS, false);
        plaintext.finish().expect("valid without TLS");
        assert!(policy.allows("write", ANONYMOUS));
        assert!(policy.admits_anonymous());
    }

    #[test]
    fn identities_must_be_spiffe_ids() {
        let env: HashMap<&str, &str> = HashMap::from([("AUTHZ_READ", "CN=reader")]);
        let mut reader = ConfigReader::new(&env);
        Policy::from_env(&mut reader, &GROUPS, true);
        assert!(reader.finish().expect_err("invalid").to_string().contains("SPIFFE ids"));
    }
}
