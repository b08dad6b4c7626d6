//! The privacy team's rules: which roles exist and what each may do, which people hold them,
//! which purposes a reveal may give and who may give each, how a masked value looks, and how
//! many values one person may reveal a day.
//!
//! - **Roles** (`VAULT_ROLES`, else [`BUILT_IN_ROLES`]) name sets of permissions:
//!   `detokenize` (the full value), `reveal-masked` (its masked form) and `lookup` (a value's
//!   tokens, for finding a subject).
//! - **Grants** (`VAULT_GRANTS`) give roles to identities, usually people
//!   (`spiffe://fetchreward/person/alice`). A grant adds the identity to the policy groups of
//!   its roles' permissions, beside the identities `AUTHZ_*` lists directly. The full reveal
//!   includes the masked one: whoever may detokenize may reveal masked.
//! - **Purposes** (`VAULT_PURPOSES`): when set, every reveal and lookup names one of these codes
//!   as its purpose, and the caller must hold one of the code's roles; free text goes into the
//!   call's note. Unset, a purpose is free text, as before.
//! - **Masks** (`VAULT_MASK_IP`, `VAULT_MASK_DEVICE_ID`): [`MaskRule`]s.
//! - **The daily reveal limit** (`VAULT_DAILY_REVEAL_LIMIT`): values one caller may detokenize
//!   for one purpose in one UTC day, counted from the audit trail, plus what admins lifted it
//!   by that day.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::num::NonZeroU32;

use fetchreward_model::{MaskRule, PiiKind};
use fetchreward_runtime::authz::Policy;
use fetchreward_runtime::config::ConfigReader;
use fetchreward_runtime::tls::is_spiffe_id_in;

use crate::authz::Caller;
use crate::error::VaultError;

/// The permissions a role may hold: the policy groups of the reveal and lookup methods.
pub const PERMISSIONS: [&str; 3] = ["detokenize", "reveal-masked", "lookup"];

/// The roles when `VAULT_ROLES` is unset.
pub const BUILT_IN_ROLES: [(&str, &[&str]); 4] = [
    ("privacy-officer", &["detokenize", "reveal-masked", "lookup"]),
    ("fraud-analyst", &["reveal-masked", "lookup"]),
    ("support", &["reveal-masked"]),
    ("reader", &["detokenize"]),
];

/// Values one caller may detokenize per purpose per UTC day when `VAULT_DAILY_REVEAL_LIMIT` is
/// unset.
pub const DEFAULT_DAILY_REVEAL_LIMIT: u32 = 10_000;

/// Lookup values per minute per caller when `VAULT_LOOKUP_RATE` is unset.
pub const DEFAULT_LOOKUP_RATE: u32 = 60;

/// The privacy rules of a vault; see the module's header.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivacySettings {
    /// Each role's permissions.
    roles: BTreeMap<String, BTreeSet<&'static str>>,
    /// Each identity's roles.
    grants: HashMap<String, BTreeSet<String>>,
    /// Each purpose code's roles; empty when purposes are free text.
    purposes: BTreeMap<String, BTreeSet<String>>,
    /// How an address is masked.
    pub mask_ip: MaskRule,
    /// How a device id is masked.
    pub mask_device_id: MaskRule,
    /// Values one caller may detokenize per purpose per UTC day; `None`: no limit.
    pub daily_reveal_limit: Option<NonZeroU32>,
    /// Lookup values per minute per caller.
    pub lookup_rate: NonZeroU32,
}

impl fmt::Debug for PrivacySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivacySettings")
            .field("roles", &self.roles)
            .field("granted_identities", &self.grants.len())
            .field("purposes", &self.purposes.keys().collect::<Vec<_>>())
            .field("mask_ip", &self.mask_ip)
            .field("mask_device_id", &self.mask_device_id)
            .field("daily_reveal_limit", &self.daily_reveal_limit)
            .field("lookup_rate", &self.lookup_rate)
            .finish()
    }
}

impl Default for PrivacySettings {
    /// The built-in roles, no grants, free-text purposes, the default masks and limits.
    fn default() -> Self {
        PrivacySettings {
            roles: BUILT_IN_ROLES
                .iter()
                .map(|(role, permissions)| {
                    ((*role).to_owned(), permissions.iter().copied().collect())
                })
                .collect(),
            grants: HashMap::new(),
            purposes: BTreeMap::new(),
            mask_ip: MaskRule::default_for(PiiKind::Ip),
            mask_device_id: MaskRule::default_for(PiiKind::DeviceId),
            daily_reveal_limit: NonZeroU32::new(DEFAULT_DAILY_REVEAL_LIMIT),
            lookup_rate: NonZeroU32::new(DEFAULT_LOOKUP_RATE).expect("not zero"),
        }
    }
}

/// `name=item,item;name=item` as a map of names to items, each problem reported as `key`'s.
fn assignments(reader: &mut ConfigReader<'_>, key: &str) -> Vec<(String, Vec<String>)> {
    let Some(raw) = reader.raw(key) else { return Vec::new() };
    let mut parsed = Vec::new();
    for entry in raw.split(';').map(str::trim).filter(|entry| !entry.is_empty()) {
        let Some((name, items)) = entry.split_once('=') else {
            reader.problem(format!("{key}: `{entry}` is not NAME=ITEM,ITEM"));
            continue;
        };
        let items: Vec<String> = items
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect();
        if items.is_empty() {
            reader.problem(format!("{key}: {} lists nothing", name.trim()));
            continue;
        }
        parsed.push((name.trim().to_owned(), items));
    }
    parsed
}

/// Whether `name` is a usable role or purpose name: lowercase letters, digits and `-`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl PrivacySettings {
    /// Reads the privacy rules; `trust_domain` is that of the callers' certificates (`None`
    /// without TLS), which every granted identity must belong to.
    pub fn from_env(reader: &mut ConfigReader<'_>, trust_domain: Option<&str>) -> Self {
        let mut settings = PrivacySettings::default();
        let roles = assignments(reader, "VAULT_ROLES");
        if !roles.is_empty() {
            settings.roles.clear();
        }
        for (role, permissions) in roles {
            if !is_name(&role) {
                reader.problem(format!(
                    "VAULT_ROLES: role `{role}` must be lowercase letters, digits and `-`"
                ));
            }
            let mut granted = BTreeSet::new();
            for permission in permissions {
                match PERMISSIONS.iter().find(|known| **known == permission) {
                    Some(known) => {
                        granted.insert(*known);
                    }
                    None => reader.problem(format!(
                        "VAULT_ROLES: {role}: `{permission}` is not a permission (one of {})",
                        PERMISSIONS.join(", ")
                    )),
                }
            }
            settings.roles.insert(role, granted);
        }
        for (identity, roles) in assignments(reader, "VAULT_GRANTS") {
            let valid = match trust_domain {
                Some(domain) => is_spiffe_id_in(&identity, domain),
                None => identity.starts_with(fetchreward_runtime::tls::SPIFFE_SCHEME),
            };
            if !valid {
                reader.problem(format!(
                    "VAULT_GRANTS: `{identity}` is not a SPIFFE id{} such as \
                     spiffe://fetchreward/person/alice",
                    trust_domain.map(|d| format!(" in trust domain {d}")).unwrap_or_default()
                ));
            }
            settings.check_roles(reader, "VAULT_GRANTS", &identity, &roles);
            settings.grants.entry(identity).or_default().extend(roles);
        }
        for (code, roles) in assignments(reader, "VAULT_PURPOSES") {
            if !is_name(&code) {
                reader.problem(format!(
                    "VAULT_PURPOSES: code `{code}` must be lowercase letters, digits and `-`"
                ));
            }
            settings.check_roles(reader, "VAULT_PURPOSES", &code, &roles);
            settings.purposes.entry(code).or_default().extend(roles);
        }
        settings.mask_ip = mask(reader, "VAULT_MASK_IP", settings.mask_ip);
        settings.mask_device_id = mask(reader, "VAULT_MASK_DEVICE_ID", settings.mask_device_id);
        let limit: u32 = reader.or_default(
            "VAULT_DAILY_REVEAL_LIMIT",
            DEFAULT_DAILY_REVEAL_LIMIT,
            "a number of values per caller, purpose and day (0: no limit)",
        );
        settings.daily_reveal_limit = NonZeroU32::new(limit);
        let rate: u32 =
            reader.or_default("VAULT_LOOKUP_RATE", DEFAULT_LOOKUP_RATE, "values per minute");
        match NonZeroU32::new(rate) {
            Some(rate) => settings.lookup_rate = rate,
            None => reader.problem("VAULT_LOOKUP_RATE must be at least 1 value per minute"),
        }
        settings
    }

    /// Reports the roles of `roles` that no role definition names.
    fn check_roles(&self, reader: &mut ConfigReader<'_>, key: &str, of: &str, roles: &[String]) {
        for role in roles {
            if !self.roles.contains_key(role) {
                let known: Vec<&str> = self.roles.keys().map(String::as_str).collect();
                reader.problem(format!(
                    "{key}: {of}: no role `{role}` (roles: {})",
                    known.join(", ")
                ));
            }
        }
    }

    /// `policy` with every granted identity added to the groups of its roles' permissions,
    /// then every identity that may detokenize added to `reveal-masked`.
    pub fn extend(&self, mut policy: Policy) -> Policy {
        for (identity, roles) in &self.grants {
            for permission in roles.iter().filter_map(|role| self.roles.get(role)).flatten() {
                policy = policy.allowing(permission, &[identity.as_str()]);
            }
        }
        let detokenizers: Vec<String> = policy.members("detokenize").map(str::to_owned).collect();
        let detokenizers: Vec<&str> = detokenizers.iter().map(String::as_str).collect();
        policy.allowing("reveal-masked", &detokenizers)
    }

    /// Whether purposes are codes (`VAULT_PURPOSES` is set).
    pub fn has_purpose_codes(&self) -> bool {
        !self.purposes.is_empty()
    }

    /// What the daily reveal limit of a call for `purpose` is counted over: the purpose code,
    /// or, with free-text purposes, every purpose together (`None`).
    pub fn quota_scope<'a>(&self, purpose: &'a str) -> Option<&'a str> {
        self.has_purpose_codes().then_some(purpose)
    }

    /// Checks the purpose whose limit a LiftQuota raises: one of the codes, or empty when
    /// purposes are free text.
    pub fn check_quota_purpose(&self, code: &str) -> Result<(), VaultError> {
        let problem = match (self.has_purpose_codes(), code.is_empty()) {
            (true, true) => "quota_purpose: the purpose code whose limit is lifted",
            (true, false) if !self.purposes.contains_key(code) => {
                "quota_purpose is not one of the vault's purpose codes"
            }
            (false, false) => {
                "quota_purpose must be empty: without purpose codes one limit covers every purpose"
            }
            _ => return Ok(()),
        };
        Err(VaultError::InvalidArgument(problem.to_owned()))
    }

    /// The roles `caller` holds.
    pub fn roles_of(&self, caller: &Caller) -> Vec<&str> {
        self.grants
            .get(caller.identity())
            .map(|roles| roles.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Checks that `purpose` is a configured code that one of `caller`'s roles may give: an
    /// unknown code is invalid (the answer lists the codes), a known one that none of the
    /// caller's roles may use is a denial. Free-text purposes pass.
    pub fn check_purpose(&self, caller: &Caller, purpose: &str) -> Result<(), VaultError> {
        if self.purposes.is_empty() {
            return Ok(());
        }
        let Some(allowed) = self.purposes.get(purpose) else {
            let codes: Vec<&str> = self.purposes.keys().map(String::as_str).collect();
            return Err(VaultError::InvalidArgument(format!(
                "purpose must be one of the codes {} (free text goes into the note)",
                codes.join(", ")
            )));
        };
        if self.roles_of(caller).iter().any(|role| allowed.contains(*role)) {
            return Ok(());
        }
        Err(VaultError::PurposeNotGranted {
            caller: caller.identity().to_owned(),
            purpose: purpose.to_owned(),
            roles: allowed.iter().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// The mask rule of `kind`.
    pub fn mask(&self, kind: PiiKind) -> MaskRule {
        match kind {
            PiiKind::Ip => self.mask_ip,
            PiiKind::DeviceId => self.mask_device_id,
        }
    }
}

/// The mask rule of `key`, or `default`.
fn mask(reader: &mut ConfigReader<'_>, key: &str, default: MaskRule) -> MaskRule {
    reader.or_default(key, default, "keep-groups:N, keep-last:N or hide")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const ALICE: &str = "spiffe://fetchreward/person/alice";
    const CAROL: &str = "spiffe://fetchreward/person/carol";

    fn settings(env: &[(&str, &str)]) -> Result<PrivacySettings, String> {
        let env: HashMap<&str, &str> = env.iter().copied().collect();
        let mut reader = ConfigReader::new(&env);
        let settings = PrivacySettings::from_env(&mut reader, Some("fetchreward"));
        reader.finish().map(|()| settings).map_err(|err| err.to_string())
    }

    fn office() -> PrivacySettings {
        settings(&[
            ("VAULT_GRANTS", &format!("{ALICE}=privacy-officer; {CAROL}=support")),
            ("VAULT_PURPOSES", "dsar=privacy-officer; support=support,privacy-officer"),
        ])
        .expect("valid")
    }

    #[test]
    fn grants_put_people_in_the_groups_of_their_roles() {
        let reader = Policy::default().allowing("detokenize", &["spiffe://fetchreward/reader"]);
        let policy = office().extend(reader);
        for group in PERMISSIONS {
            assert!(policy.allows(group, ALICE), "alice: {group}");
        }
        assert!(policy.allows("reveal-masked", CAROL));
        assert!(!policy.allows("detokenize", CAROL));
        assert!(!policy.allows("lookup", CAROL));
        assert!(
            policy.allows("reveal-masked", "spiffe://fetchreward/reader"),
            "full includes masked"
        );
        assert!(!policy.allows("admin", ALICE));
    }

    #[test]
    fn a_purpose_is_a_code_one_of_the_callers_roles_may_give() {
        let office = office();
        let alice = Caller::identified(ALICE);
        let carol = Caller::identified(CAROL);
        assert!(office.check_purpose(&alice, "dsar").is_ok());
        assert!(office.check_purpose(&carol, "support").is_ok());
        let refused = office.check_purpose(&carol, "dsar").expect_err("not her role");
        assert!(matches!(refused, VaultError::PurposeNotGranted { .. }), "{refused:?}");
        assert!(refused.to_string().contains("privacy-officer"), "{refused}");
        let unknown = office.check_purpose(&alice, "curiosity").expect_err("no such code");
        assert_eq!(
            unknown.to_string(),
            "purpose must be one of the codes dsar, support (free text goes into the note)"
        );
        let nobody = Caller::identified("spiffe://fetchreward/reader");
        assert!(office.check_purpose(&nobody, "dsar").is_err(), "no role, no purpose");
        let free = PrivacySettings::default();
        assert!(free.check_purpose(&nobody, "ticket 7").is_ok(), "free text without codes");
    }

    #[test]
    fn every_mistake_is_listed() {
        let problems = settings(&[
            ("VAULT_ROLES", "auditor=detokenize,peek; Boss=lookup"),
            ("VAULT_GRANTS", "alice=auditor; spiffe://elsewhere/person/bob=support"),
            ("VAULT_PURPOSES", "dsar=privacy-officer; fraud"),
            ("VAULT_MASK_IP", "keep-some"),
            ("VAULT_LOOKUP_RATE", "0"),
        ])
        .expect_err("invalid");
        for expected in [
            "`peek` is not a permission",
            "role `Boss`",
            "`alice` is not a SPIFFE id",
            "spiffe://elsewhere/person/bob",
            "no role `support`",
            "no role `privacy-officer`",
            "`fraud` is not NAME=ITEM,ITEM",
            "VAULT_MASK_IP",
            "VAULT_LOOKUP_RATE",
        ] {
            assert!(problems.contains(expected), "{expected} missing from: {problems}");
        }
    }

    #[test]
    fn masks_and_limits_are_read() {
        let read = settings(&[
            ("VAULT_MASK_IP", "keep-groups:2"),
            ("VAULT_MASK_DEVICE_ID", "hide"),
            ("VAULT_DAILY_REVEAL_LIMIT", "0"),
        ])
        .expect("valid");
        assert_eq!(read.mask(PiiKind::Ip).apply("66.194.53.215"), "66.194.x.x");
        assert_eq!(read.mask(PiiKind::DeviceId), MaskRule::Hide);
        assert_eq!(read.daily_reveal_limit, None);
        let defaults = PrivacySettings::default();
        assert_eq!(defaults.mask(PiiKind::DeviceId).apply("593-47-5928"), "***-**-5928");
        assert_eq!(defaults.daily_reveal_limit.map(NonZeroU32::get), Some(10_000));
    }
}
