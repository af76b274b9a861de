//! Verified claims of an external issuer -> [`Identity`] (pure), as
//! kube-apiserver's JWT authenticator maps them without CEL.
//!
//! - username: the claim, a string, with its prefix; for the `email` claim,
//!   an `email_verified` claim, when present, must be `true`;
//! - groups: the claim, a string or an array of strings, each prefixed;
//!   absent: no groups;
//! - uid: the claim, a string (absent: refused, as there);
//! - `claimValidationRules {claim, requiredValue}`: a string claim with
//!   that value.
//!
//! Beyond the apiserver: an empty username, and a username or group that
//! starts with `system:`, are refused (an external issuer never speaks for
//! Kubernetes' own identities), as are values a header cannot carry.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::config::issuers::IssuerConfig;
use crate::identity::{AuthMethod, Identity};

/// Claims as JSON.
pub type Claims = Map<String, Value>;

/// Why verified claims make no identity (the metric/log reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmapped {
    /// The username claim is absent, not a string, or empty.
    Username,
    /// `email_verified` is present and not `true`.
    EmailNotVerified,
    /// The groups claim is neither a string nor an array of strings.
    Groups,
    /// The uid claim is absent or not a string.
    Uid,
    /// A `claimValidationRules` claim is absent or has another value.
    RequiredClaim,
    /// The username or a group is in the `system:` namespace.
    SystemName,
    /// A value has control characters.
    BadCharacters,
}

impl Unmapped {
    /// The metric/log label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Username => "username",
            Self::EmailNotVerified => "email_not_verified",
            Self::Groups => "groups",
            Self::Uid => "uid",
            Self::RequiredClaim => "required_claim",
            Self::SystemName => "system_name",
            Self::BadCharacters => "bad_characters",
        }
    }
}

/// The identity `cfg` gives these (verified) claims.
pub fn identity(cfg: &IssuerConfig, claims: &Claims) -> Result<Identity, Unmapped> {
    for (claim, want) in &cfg.required_claims {
        if claims.get(claim).and_then(Value::as_str) != Some(want.as_str()) {
            return Err(Unmapped::RequiredClaim);
        }
    }
    let name = claims
        .get(&cfg.username.claim)
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or(Unmapped::Username)?;
    if cfg.username.claim == "email"
        && let Some(verified) = claims.get("email_verified")
        && verified != &Value::Bool(true)
    {
        return Err(Unmapped::EmailNotVerified);
    }
    let user = format!("{}{name}", cfg.username.prefix);
    let groups = match &cfg.groups {
        None => Vec::new(),
        Some(g) => match claims.get(&g.claim) {
            None => Vec::new(),
            Some(Value::String(s)) => vec![format!("{}{s}", g.prefix)],
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(|s| format!("{}{s}", g.prefix)))
                .collect::<Option<Vec<_>>>()
                .ok_or(Unmapped::Groups)?,
            Some(_) => return Err(Unmapped::Groups),
        },
    };
    let uid = match &cfg.uid_claim {
        None => None,
        Some(c) => {
            let uid = claims.get(c).and_then(Value::as_str).ok_or(Unmapped::Uid)?;
            Some(uid.to_owned()).filter(|u| !u.is_empty())
        }
    };
    if user.starts_with("system:") || groups.iter().any(|g| g.starts_with("system:")) {
        return Err(Unmapped::SystemName);
    }
    let id = Identity::new(user, uid, groups, BTreeMap::new(), AuthMethod::Token);
    match id.invalid_field() {
        Some(_) => Err(Unmapped::BadCharacters),
        None => Ok(id),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::config::issuers::{PrefixedClaim, SigningAlg};

    fn cfg(username: (&str, &str), groups: Option<(&str, &str)>) -> IssuerConfig {
        let p = |(claim, prefix): (&str, &str)| PrefixedClaim {
            claim: claim.into(),
            prefix: prefix.into(),
        };
        IssuerConfig {
            key: "jwt[0]".into(),
            url: "https://idp".into(),
            discovery_url: "https://idp/.well-known/openid-configuration".into(),
            audiences: vec!["a".into()],
            certificate_authority: None,
            username: p(username),
            groups: groups.map(p),
            uid_claim: None,
            required_claims: Vec::new(),
            algorithms: SigningAlg::ALL.to_vec(),
            refresh: Duration::from_secs(60),
        }
    }

    fn claims(v: Value) -> Claims {
        v.as_object().expect("an object").clone()
    }

    #[test]
    fn username_and_groups_get_their_prefixes() {
        let c = cfg(("sub", "idp:"), Some(("groups", "idp:")));
        let id = identity(
            &c,
            &claims(json!({"sub": "alice", "groups": ["dev", "ops"]})),
        )
        .expect("maps");
        assert_eq!(id.user(), "idp:alice");
        assert_eq!(id.groups(), ["idp:dev", "idp:ops", "system:authenticated"]);
        assert_eq!(id.uid(), None);
        // A single string is one group; an absent claim, none.
        let id = identity(&c, &claims(json!({"sub": "a", "groups": "dev"}))).expect("maps");
        assert_eq!(id.groups(), ["idp:dev", "system:authenticated"]);
        let id = identity(&c, &claims(json!({"sub": "a"}))).expect("maps");
        assert_eq!(id.groups(), ["system:authenticated"]);
    }

    #[test]
    fn email_needs_email_verified_true_when_present() {
        let c = cfg(("email", ""), None);
        let ok = |v| identity(&c, &claims(v)).map(|id| id.user().to_owned());
        assert_eq!(ok(json!({"email": "a@x"})), Ok("a@x".into()));
        assert_eq!(
            ok(json!({"email": "a@x", "email_verified": true})),
            Ok("a@x".into())
        );
        for v in [json!(false), json!("true"), json!(null)] {
            assert_eq!(
                ok(json!({"email": "a@x", "email_verified": v})),
                Err(Unmapped::EmailNotVerified),
                "{v}"
            );
        }
        // Another username claim does not look at email_verified.
        let c = cfg(("sub", "p:"), None);
        assert!(identity(&c, &claims(json!({"sub": "a", "email_verified": false}))).is_ok());
    }

    #[test]
    fn bad_claims_make_no_identity() {
        let mut c = cfg(("sub", ""), Some(("groups", "")));
        c.uid_claim = Some("oid".into());
        c.required_claims = vec![("tenant".into(), "t1".into())];
        let good = json!({"sub": "a", "oid": "u-1", "tenant": "t1", "groups": ["g"]});
        let id = identity(&c, &claims(good.clone())).expect("maps");
        assert_eq!(id.uid(), Some("u-1"));
        let with = |k: &str, v: Value| {
            let mut x = good.clone();
            x[k] = v;
            identity(&c, &claims(x))
        };
        let without = |k: &str| {
            let mut x = good.clone();
            x.as_object_mut().expect("object").remove(k);
            identity(&c, &claims(x))
        };
        let cases = [
            (with("sub", json!(7)), Unmapped::Username),
            (with("sub", json!("")), Unmapped::Username),
            (without("sub"), Unmapped::Username),
            (with("groups", json!([1])), Unmapped::Groups),
            (with("groups", json!({"a": 1})), Unmapped::Groups),
            (without("oid"), Unmapped::Uid),
            (with("oid", json!(1)), Unmapped::Uid),
            (without("tenant"), Unmapped::RequiredClaim),
            (with("tenant", json!("t2")), Unmapped::RequiredClaim),
            (with("sub", json!("system:admin")), Unmapped::SystemName),
            (
                with("groups", json!(["system:masters"])),
                Unmapped::SystemName,
            ),
            (with("sub", json!("a\nb")), Unmapped::BadCharacters),
        ];
        for (i, (got, want)) in cases.into_iter().enumerate() {
            assert_eq!(got.map(|id| id.user().to_owned()), Err(want), "case {i}");
        }
    }
}
