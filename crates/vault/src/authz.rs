//! Who may call what.
//!
//! Every request carries a [`Caller`]: the SPIFFE id of its verified client certificate, or
//! `anonymous`. An [`Authorizer`] decides per method; in the service it is the operator's
//! deny-by-default [`Policy`] (`AUTHZ_TOKENIZE`, `AUTHZ_DETOKENIZE`, `AUTHZ_ADMIN`).

use std::fmt;

use fetchreward_runtime::authz::Policy;

/// The identity of whoever sent a request (from its client certificate).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Caller(String);

impl Caller {
    /// The identity of a caller that presented none.
    pub const ANONYMOUS: &'static str = "anonymous";

    /// A caller without a verified identity.
    pub fn anonymous() -> Self {
        Caller(Self::ANONYMOUS.to_owned())
    }

    /// A caller with a verified identity, e.g. a certificate's subject name.
    pub fn identified(identity: impl Into<String>) -> Self {
        Caller(identity.into())
    }

    /// The identity, as written to the audit trail.
    pub fn identity(&self) -> &str {
        &self.0
    }

    /// Whether the caller presented no identity.
    pub fn is_anonymous(&self) -> bool {
        self.0 == Self::ANONYMOUS
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The vault's methods, as authorized and audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Tokenize.
    Tokenize,
    /// Detokenize.
    Detokenize,
    /// Forget.
    Forget,
    /// RotateKeys (admin).
    RotateKeys,
    /// Rewrap (admin).
    Rewrap,
}

impl Method {
    /// The policy groups of the vault and their variables.
    pub const POLICY_GROUPS: [(&'static str, &'static str); 3] = [
        ("tokenize", "AUTHZ_TOKENIZE"),
        ("detokenize", "AUTHZ_DETOKENIZE"),
        ("admin", "AUTHZ_ADMIN"),
    ];

    /// The policy group that decides who may call this method.
    pub fn policy_group(self) -> &'static str {
        match self {
            Method::Tokenize => "tokenize",
            Method::Detokenize => "detokenize",
            Method::Forget | Method::RotateKeys | Method::Rewrap => "admin",
        }
    }

    /// The gRPC method name, as stored in the audit trail and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Tokenize => "Tokenize",
            Method::Detokenize => "Detokenize",
            Method::Forget => "Forget",
            Method::RotateKeys => "RotateKeys",
            Method::Rewrap => "Rewrap",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Decides whether a caller may call a method.
pub trait Authorizer: Send + Sync + fmt::Debug + 'static {
    /// Whether `caller` may call `method`.
    fn allows(&self, caller: &Caller, method: Method) -> bool;
}

/// The operator's policy (`AUTHZ_*`) decides, method by method.
impl Authorizer for Policy {
    fn allows(&self, caller: &Caller, method: Method) -> bool {
        Policy::allows(self, method.policy_group(), caller.identity())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use fetchreward_runtime::config::ConfigReader;

    use super::*;

    fn policy(env: &[(&str, &str)], tls: bool) -> Policy {
        let env: HashMap<&str, &str> = env.iter().copied().collect();
        let mut reader = ConfigReader::new(&env);
        let policy = Policy::from_env(&mut reader, &Method::POLICY_GROUPS, tls);
        reader.finish().expect("a valid policy");
        policy
    }

    #[test]
    fn each_method_belongs_to_its_listed_identities_only() {
        let policy = policy(
            &[
                ("AUTHZ_TOKENIZE", "spiffe://fetchreward/ingestor"),
                ("AUTHZ_DETOKENIZE", "spiffe://fetchreward/reader"),
                ("AUTHZ_ADMIN", "spiffe://fetchreward/admin"),
            ],
            true,
        );
        let ingestor = Caller::identified("spiffe://fetchreward/ingestor");
        let reader = Caller::identified("spiffe://fetchreward/reader");
        let admin = Caller::identified("spiffe://fetchreward/admin");
        let expected = [
            (Method::Tokenize, &ingestor),
            (Method::Detokenize, &reader),
            (Method::Forget, &admin),
            (Method::RotateKeys, &admin),
            (Method::Rewrap, &admin),
        ];
        for (method, allowed) in expected {
            for caller in [&ingestor, &reader, &admin, &Caller::anonymous()] {
                assert_eq!(
                    Authorizer::allows(&policy, caller, method),
                    caller == allowed,
                    "{caller} calling {method}"
                );
            }
        }
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let policy = policy(&[], false);
        for method in [Method::Tokenize, Method::Detokenize, Method::Forget, Method::RotateKeys] {
            assert!(!Authorizer::allows(&policy, &Caller::anonymous(), method));
        }
    }
}
