//! Which identity may call which method: deny by default.
//!
//! A service reads one `AUTHZ_<GROUP>` list per group of methods (e.g. `AUTHZ_DETOKENIZE`,
//! `AUTHZ_WRITE`), each a comma-separated list of SPIFFE ids. A method whose list is empty or
//! unset is refused to everyone. With TLS, every identity listed must be a SPIFFE id of the
//! service's trust domain (an id of another domain could never be proven, so listing one is a
//! mistake), and [`ANONYMOUS`] may be listed only without TLS (local development).

use std::collections::{HashMap, HashSet};

use crate::config::ConfigReader;
use crate::tls::{ANONYMOUS, SPIFFE_SCHEME, is_spiffe_id_in};

/// The allowed identities of each method group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    allowed: HashMap<&'static str, HashSet<String>>,
}

impl Policy {
    /// Reads one list per group: `groups` pairs a group name (as the service asks for it) with
    /// its variable. `trust_domain` is that of the callers' certificates, `None` without TLS.
    pub fn from_env(
        reader: &mut ConfigReader<'_>,
        groups: &[(&'static str, &str)],
        trust_domain: Option<&str>,
    ) -> Policy {
        let mut policy = Policy::default();
        for (group, key) in groups {
            let identities = reader.list(key);
            for identity in &identities {
                if identity == ANONYMOUS {
                    if trust_domain.is_some() {
                        reader.problem(format!(
                            "{key} lists `{ANONYMOUS}`, which is allowed only without TLS (local development)"
                        ));
                    }
                } else if let Some(domain) = trust_domain
                    && !is_spiffe_id_in(identity, domain)
                {
                    reader.problem(format!(
                        "{key}: {identity} is not a SPIFFE id in trust domain {domain} \
                         (spiffe://{domain}/<name>; see TLS_TRUST_DOMAIN)"
                    ));
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

    /// The identities `group` allows.
    pub fn members(&self, group: &str) -> impl Iterator<Item = &str> {
        self.allowed.get(group).into_iter().flatten().map(String::as_str)
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
        let policy = Policy::from_env(&mut reader, &GROUPS, Some("fetchreward"));
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
        Policy::from_env(&mut with_tls, &GROUPS, Some("fetchreward"));
        assert!(with_tls.finish().is_err());

        let mut plaintext = ConfigReader::new(&env);
        let policy = Policy::from_env(&mut plaintext, &GROUPS, None);
        plaintext.finish().expect("valid without TLS");
        assert!(policy.allows("write", ANONYMOUS));
        assert!(policy.admits_anonymous());
    }

    #[test]
    fn identities_must_be_spiffe_ids() {
        let env: HashMap<&str, &str> = HashMap::from([("AUTHZ_READ", "CN=reader")]);
        let mut reader = ConfigReader::new(&env);
        Policy::from_env(&mut reader, &GROUPS, Some("fetchreward"));
        assert!(reader.finish().expect_err("invalid").to_string().contains("SPIFFE id"));
    }

    #[test]
    fn with_tls_every_identity_is_of_the_trust_domain() {
        let env: HashMap<&str, &str> = HashMap::from([(
            "AUTHZ_READ",
            "spiffe://fetchreward/reader, spiffe://elsewhere/reader",
        )]);
        let mut reader = ConfigReader::new(&env);
        Policy::from_env(&mut reader, &GROUPS, Some("fetchreward"));
        let problems = reader.finish().expect_err("a foreign id").to_string();
        assert!(
            problems.contains(
                "spiffe://elsewhere/reader is not a SPIFFE id in trust domain fetchreward"
            ),
            "{problems}"
        );
        assert!(!problems.contains("fetchreward/reader is"), "{problems}");
    }
}
