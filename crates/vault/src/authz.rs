//! Who may call what.
//!
//! Every request carries a [`Caller`]; an [`Authorizer`] decides per method. Until the vault
//! serves mutual TLS, no request has a verified identity: every caller is
//! [`Caller::anonymous`], and the [`DevelopmentPolicy`] lets anonymous callers tokenize but
//! recover or forget values only when the operator has explicitly allowed it for local
//! development. The mTLS work replaces the policy without touching the methods.

use std::fmt;

/// The identity of whoever sent a request (from its client certificate, once there is one).
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

/// The policy while no caller can prove an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevelopmentPolicy {
    /// Whether anonymous callers may Detokenize and Forget
    /// (`VAULT_ALLOW_ANONYMOUS_DETOKENIZE=true`, local development only).
    pub allow_anonymous_recovery: bool,
}

impl Authorizer for DevelopmentPolicy {
    fn allows(&self, caller: &Caller, method: Method) -> bool {
        match method {
            // Tokenizing reveals nothing: anyone who can reach the vault may do it.
            Method::Tokenize => true,
            Method::Detokenize | Method::Forget => {
                caller.is_anonymous() && self.allow_anonymous_recovery
            }
            Method::RotateKeys | Method::Rewrap => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_is_refused_unless_explicitly_allowed() {
        let anonymous = Caller::anonymous();
        let strict = DevelopmentPolicy { allow_anonymous_recovery: false };
        assert!(strict.allows(&anonymous, Method::Tokenize));
        assert!(!strict.allows(&anonymous, Method::Detokenize));
        assert!(!strict.allows(&anonymous, Method::Forget));
        assert!(!strict.allows(&anonymous, Method::RotateKeys));

        let development = DevelopmentPolicy { allow_anonymous_recovery: true };
        assert!(development.allows(&anonymous, Method::Detokenize));
        assert!(development.allows(&anonymous, Method::Forget));
        assert!(!development.allows(&anonymous, Method::RotateKeys));
        assert!(!development.allows(&anonymous, Method::Rewrap));
    }

    #[test]
    fn an_identified_caller_gets_nothing_from_the_development_policy() {
        let development = DevelopmentPolicy { allow_anonymous_recovery: true };
        let someone = Caller::identified("spiffe://fetchreward/analyst");
        assert!(!someone.is_anonymous());
        assert!(!development.allows(&someone, Method::Detokenize));
    }
}
