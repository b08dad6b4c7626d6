//! Who may call what.
//!
//! The call layer in front of the gRPC server (`fetchreward_runtime::calls`) authenticates
//! every request and applies the operator's deny-by-default policy (`AUTHZ_TOKENIZE`,
//! `AUTHZ_DETOKENIZE`, `AUTHZ_REVEAL_MASKED`, `AUTHZ_LOOKUP`, `AUTHZ_ADMIN`, `AUTHZ_AUDIT`, and
//! the roles `VAULT_GRANTS` gives people: [`crate::privacy`]; `fetchreward_runtime::authz::Policy`)
//! with the rules of [`Method::RULES`]. A refused Tokenize
//! never reaches the vault; a refused call of an audited method does, as an [`Access`] that is
//! not allowed, so that the vault writes its audit row before refusing it.

use std::fmt;

pub use fetchreward_runtime::calls::Caller;
use fetchreward_runtime::calls::MethodRule;

/// Who calls, and whether the policy lets them: what the call layer decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The caller.
    pub caller: Caller,
    /// Whether the policy allows the call.
    pub allowed: bool,
    /// Whether the caller is an admin (listed in `AUTHZ_ADMIN`): only admins are told that a
    /// token was forgotten rather than never stored.
    pub admin: bool,
}

impl Access {
    /// An allowed call by `caller`, not an admin.
    pub fn allowed(caller: Caller) -> Self {
        Access { caller, allowed: true, admin: false }
    }

    /// An allowed call by an admin.
    pub fn admin(caller: Caller) -> Self {
        Access { caller, allowed: true, admin: true }
    }

    /// A refused call by `caller`.
    pub fn denied(caller: Caller) -> Self {
        Access { caller, allowed: false, admin: false }
    }
}

/// The vault's methods, as authorized and audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Tokenize.
    Tokenize,
    /// Detokenize.
    Detokenize,
    /// RevealMasked: the masked forms of the originals.
    RevealMasked,
    /// Lookup: the tokens of values, nothing stored.
    Lookup,
    /// Forget.
    Forget,
    /// LiftQuota (admin): more reveals today for one caller and purpose.
    LiftQuota,
    /// PlantDecoys (admin): tokens that trip an alert when revealed.
    PlantDecoys,
    /// RotateKeys (admin).
    RotateKeys,
    /// Restore (admin): tombstones that may be stored again.
    Restore,
    /// The retirement of a data key generation (by the vault itself).
    Retire,
    /// Rewrap (admin).
    Rewrap,
    /// ListAudit (auditor).
    ListAudit,
    /// VerifyAudit (auditor).
    VerifyAudit,
}

impl Method {
    /// The methods that write audit rows.
    pub const AUDITED: [Method; 11] = [
        Method::Detokenize,
        Method::RevealMasked,
        Method::Lookup,
        Method::LiftQuota,
        Method::PlantDecoys,
        Method::Forget,
        Method::Restore,
        Method::RotateKeys,
        Method::Rewrap,
        Method::Retire,
        Method::Tokenize,
    ];

    /// The policy groups of the vault and their variables.
    pub const POLICY_GROUPS: [(&'static str, &'static str); 6] = [
        ("tokenize", "AUTHZ_TOKENIZE"),
        ("detokenize", "AUTHZ_DETOKENIZE"),
        ("reveal-masked", "AUTHZ_REVEAL_MASKED"),
        ("lookup", "AUTHZ_LOOKUP"),
        ("admin", "AUTHZ_ADMIN"),
        ("audit", "AUTHZ_AUDIT"),
    ];

    /// How the call layer treats each method: Tokenize and the reading of the audit trail are
    /// refused there; the others are audited, so their refusals reach the vault.
    pub const RULES: [MethodRule; 12] = [
        MethodRule::guarded("Tokenize", "tokenize"),
        MethodRule::audited("Detokenize", "detokenize"),
        MethodRule::audited("RevealMasked", "reveal-masked"),
        MethodRule::audited("Lookup", "lookup"),
        MethodRule::audited("LiftQuota", "admin"),
        MethodRule::audited("PlantDecoys", "admin"),
        MethodRule::audited("Forget", "admin"),
        MethodRule::audited("Restore", "admin"),
        MethodRule::audited("RotateKeys", "admin"),
        MethodRule::audited("Rewrap", "admin"),
        MethodRule::guarded("ListAudit", "audit"),
        MethodRule::guarded("VerifyAudit", "audit"),
    ];

    /// The policy group that decides who may call this method.
    pub fn policy_group(self) -> &'static str {
        Method::RULES
            .iter()
            .find(|rule| rule.method == self.as_str())
            .map_or("admin", |rule| rule.group)
    }

    /// The gRPC method name, as stored in the audit trail and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Tokenize => "Tokenize",
            Method::Detokenize => "Detokenize",
            Method::RevealMasked => "RevealMasked",
            Method::Lookup => "Lookup",
            Method::Forget => "Forget",
            Method::LiftQuota => "LiftQuota",
            Method::PlantDecoys => "PlantDecoys",
            Method::RotateKeys => "RotateKeys",
            Method::Restore => "Restore",
            Method::Retire => "Retire",
            Method::Rewrap => "Rewrap",
            Method::ListAudit => "ListAudit",
            Method::VerifyAudit => "VerifyAudit",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use fetchreward_runtime::authz::Policy;
    use fetchreward_runtime::config::ConfigReader;

    use super::*;

    fn policy(env: &[(&str, &str)], tls: bool) -> Policy {
        let env: HashMap<&str, &str> = env.iter().copied().collect();
        let mut reader = ConfigReader::new(&env);
        let trust_domain = tls.then_some(fetchreward_runtime::tls::DEFAULT_TRUST_DOMAIN);
        let policy = Policy::from_env(&mut reader, &Method::POLICY_GROUPS, trust_domain);
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
                    policy.allows(method.policy_group(), caller.identity()),
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
            assert!(!policy.allows(method.policy_group(), Caller::anonymous().identity()));
        }
    }
}
