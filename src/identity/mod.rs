//! Who a request comes from: the [`Identity`] that authentication produces
//! and authorization, the proxy headers and the logs consume.
//!
//! Groups and `extra` are shared, immutable parts ([`Groups`], [`Extra`]):
//! interned, so the ServiceAccounts of a namespace share one group list,
//! and carrying their own keyed digest for the decision cache's key.

mod intern;
mod memo;
mod parts;

use std::collections::BTreeMap;
use std::fmt;

pub use intern::held as interned;

/// The shared copy of `s` (interned; for strings many answers repeat, such
/// as an authorizer's reasons).
pub fn shared_str(s: &str) -> std::sync::Arc<str> {
    intern::string(s)
}
pub use parts::{Extra, ExtraIter, Groups};

/// The group every authenticated identity belongs to, as in Kubernetes.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// The `extra` key under which Kubernetes records which credential was used.
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";

/// How the client proved who it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// A client certificate verified during the TLS handshake.
    Mtls,
    /// An `Authorization: Bearer` token accepted by a token backend.
    Token,
}

impl AuthMethod {
    /// The lower-case name used in logs, metrics and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mtls => "mtls",
            Self::Token => "token",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An authenticated user, in the shape of Kubernetes' `UserInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user name (`X-Remote-User`).
    pub user: String,
    /// A stable unique id, when the backend knows one (`X-Remote-Uid`).
    pub uid: Option<String>,
    /// Group memberships, always including [`AUTHENTICATED_GROUP`].
    pub groups: Groups,
    /// Extra attributes (`X-Remote-Extra-<key>`), keys lower-case.
    pub extra: Extra,
    /// The credential that established this identity.
    pub method: AuthMethod,
}

impl Identity {
    /// Builds an identity, adding [`AUTHENTICATED_GROUP`] once and lower-casing
    /// extra keys (header names are case-insensitive, so keys must be too).
    pub fn new(
        user: String,
        uid: Option<String>,
        mut groups: Vec<String>,
        extra: BTreeMap<String, Vec<String>>,
        method: AuthMethod,
    ) -> Self {
        if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            groups.push(AUTHENTICATED_GROUP.to_owned());
        }
        let extra = extra
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Self {
            user,
            uid,
            groups: Groups::new(&groups),
            extra: Extra::from_map(extra),
            method,
        }
    }

    /// Heap bytes held by this identity alone: its struct, user, uid and
    /// `extra` (interned strings and group lists, shared, excluded).
    pub fn own_bytes(&self) -> usize {
        size_of::<Self>()
            + 16
            + self.user.capacity()
            + self.uid.as_ref().map_or(0, String::capacity)
            + self.extra.own_bytes()
    }

    /// Returns the first field that could not travel safely in an HTTP header
    /// or a log line (empty user, control characters), if any.
    ///
    /// Backends call this on what they produce; an identity that fails it is
    /// never used.
    pub fn invalid_field(&self) -> Option<&'static str> {
        let bad = |s: &str| s.chars().any(char::is_control);
        if self.user.is_empty() || bad(&self.user) {
            return Some("user");
        }
        if self.uid.as_deref().is_some_and(bad) {
            return Some("uid");
        }
        if self.groups.iter().any(|g| g.is_empty() || bad(g)) {
            return Some("groups");
        }
        let extra_bad = self
            .extra
            .iter()
            .any(|(k, vs)| k.is_empty() || bad(k) || vs.iter().any(|v| bad(v)));
        extra_bad.then_some("extra")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_adds_authenticated_group_once_and_lowercases_extra_keys() {
        let extra = BTreeMap::from([("Scopes".to_owned(), vec!["a".to_owned()])]);
        let id = Identity::new(
            "alice".into(),
            None,
            vec!["dev".into(), AUTHENTICATED_GROUP.into()],
            extra,
            AuthMethod::Token,
        );
        assert_eq!(id.groups, ["dev", AUTHENTICATED_GROUP]);
        assert!(id.extra.contains_key("scopes"));
    }

    #[test]
    fn control_characters_make_an_identity_invalid() {
        let cases = [
            ("alice", vec!["dev"], None),
            ("", vec![], Some("user")),
            ("al\nice", vec![], Some("user")),
            ("alice", vec!["d\0ev"], Some("groups")),
            ("alice", vec![""], Some("groups")),
        ];
        for (user, groups, want) in cases {
            let groups = groups.into_iter().map(String::from).collect();
            let id = Identity::new(user.into(), None, groups, BTreeMap::new(), AuthMethod::Mtls);
            assert_eq!(id.invalid_field(), want, "{user:?}");
        }
    }
}
