//! Who a request comes from: the [`Identity`] that authentication produces
//! and authorization, the proxy headers and the logs consume.
//!
//! Groups and the shared part of `extra` are interned ([`Groups`], the shape
//! under [`Extra`]), so the ServiceAccounts of a namespace share one group
//! list; each identity is one allocation of its fixed fields and its own
//! text, carrying its keyed fingerprint for the decision cache's key.

mod intern;
mod parts;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use triomphe::{HeaderWithLength, ThinArc};

use crate::cache::{Key, KeyHasher};
use parts::Shape;

pub use intern::held as interned;

/// The shared copy of `s` (interned; for strings many answers repeat, such
/// as an authorizer's reasons).
pub fn shared_str(s: &str) -> Arc<str> {
    intern::string(s)
}
pub use parts::{Extra, ExtraIter, Groups, Values};

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

/// How many credential-unique `extra` values an identity keeps in its own
/// text (a ServiceAccount token has three: credential id, pod name and uid).
const MAX_OWN: usize = 3;

/// The key under which every identity's [`Identity::fingerprint`] is
/// computed, drawn once per process.
static FINGERPRINTS: LazyLock<KeyHasher> = LazyLock::new(KeyHasher::random);

/// Draws the fingerprint key (at startup: see [`crate::cache::KeyHasher::random`]).
pub fn prepare() {
    LazyLock::force(&FINGERPRINTS);
}

/// See [`Identity::fingerprint`]: its own type, so it is never taken for a
/// cache key (both are 16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// The digest's bytes, to feed into a key.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// An authenticated user, in the shape of Kubernetes' `UserInfo`.
///
/// Immutable, cheap to clone (a reference count), and laid out to be small:
/// one allocation holds the fixed fields and the strings unique to this
/// identity (user, uid, and the pod's name and uid and the credential id of
/// a ServiceAccount token); groups and the rest of `extra` are interned and
/// shared with every identity that has them. The token cache, the decision
/// cache and every request of a connection share that one allocation.
#[derive(Clone)]
pub struct Identity(ThinArc<Fixed, u8>);

/// What an identity holds besides its text, ahead of it in its allocation.
struct Fixed {
    /// `text[..ends[0]]` is the user, `text[ends[0]..ends[1]]` the uid,
    /// and own value `n` is `text[ends[n + 1]..ends[n + 2]]`.
    ends: [u32; 2 + MAX_OWN],
    has_uid: bool,
    method: AuthMethod,
    groups: Groups,
    shape: Option<Arc<Shape>>,
    /// The keyed digest of user, uid, groups and extra, truncated to 128
    /// bits (see [`Identity::fingerprint`]).
    fingerprint: Fingerprint,
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
        let extra: BTreeMap<String, Vec<String>> = extra
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        let (shape, own) = Shape::of(&extra, MAX_OWN);
        let mut text = String::with_capacity(
            user.len()
                + uid.as_ref().map_or(0, String::len)
                + own.iter().map(|v| v.len()).sum::<usize>(),
        );
        let mut ends = [0u32; 2 + MAX_OWN];
        let end = |t: &String| u32::try_from(t.len()).unwrap_or(u32::MAX);
        text.push_str(&user);
        ends[0] = end(&text);
        text.push_str(uid.as_deref().unwrap_or(""));
        ends[1] = end(&text);
        for (n, v) in own.iter().enumerate() {
            text.push_str(v);
            ends[n + 2] = end(&text);
        }
        for n in own.len()..MAX_OWN {
            ends[n + 2] = end(&text);
        }
        let fixed = Fixed {
            ends,
            has_uid: uid.is_some(),
            method,
            groups: Groups::new(&groups),
            shape,
            fingerprint: Fingerprint([0; 16]),
        };
        // Digested before the allocation exists; the 128-bit key is kept whole.
        let view = View {
            text: &text,
            fixed: &fixed,
        };
        let fingerprint = Fingerprint(view.digest(&FINGERPRINTS));
        Self(ThinArc::from_header_and_slice(
            Fixed {
                fingerprint,
                ..fixed
            },
            text.as_bytes(),
        ))
    }

    /// Whether `a` and `b` are one identity, made once and cloned (not
    /// merely equal ones).
    pub fn same(a: &Self, b: &Self) -> bool {
        std::ptr::eq(&*a.0, &*b.0)
    }

    /// The fields, read in place.
    fn view(&self) -> View<'_> {
        View {
            // Built from `String`s: always UTF-8.
            text: std::str::from_utf8(&self.0.slice).unwrap_or(""),
            fixed: &self.0.header.header,
        }
    }

    /// The user name (`X-Remote-User`).
    pub fn user(&self) -> &str {
        let end = self.0.header.header.ends[0] as usize;
        self.0
            .slice
            .get(..end)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// A stable unique id, when the backend knows one (`X-Remote-Uid`).
    pub fn uid(&self) -> Option<&str> {
        self.view().uid()
    }

    /// Group memberships, always including [`AUTHENTICATED_GROUP`].
    pub fn groups(&self) -> &Groups {
        &self.0.header.header.groups
    }

    /// Extra attributes (`X-Remote-Extra-<key>`), keys lower-case.
    pub fn extra(&self) -> Extra<'_> {
        self.view().extra()
    }

    /// The credential that established this identity.
    pub fn method(&self) -> AuthMethod {
        self.0.header.header.method
    }

    /// The keyed digest of every field but the method, computed once when
    /// the identity is made (for the decision cache's key): equal for equal
    /// identities, and under a secret key drawn per process that nothing
    /// outside ever sees a digest of, so unequal ones cannot be aimed at one
    /// another. HMAC-SHA256 truncated to 128 bits (as RFC 2104 allows): two
    /// of a million identities share one with odds of about 10^-27, and the
    /// 16 bytes saved keep an identity in a smaller allocation.
    pub(crate) fn fingerprint(&self) -> &Fingerprint {
        &self.0.header.header.fingerprint
    }

    /// Heap bytes held by this identity alone: its one allocation (count,
    /// fixed fields, length and text), and any `extra` shape nobody shares
    /// (interned strings, group lists and shapes excluded).
    pub fn own_bytes(&self) -> usize {
        size_of::<usize>()
            + size_of::<HeaderWithLength<Fixed>>()
            + self.0.slice.len()
            + self.extra().own_bytes()
    }

    /// Returns the first field that could not travel safely in an HTTP header
    /// or a log line (empty user, control characters), if any.
    ///
    /// Backends call this on what they produce; an identity that fails it is
    /// never used.
    pub fn invalid_field(&self) -> Option<&'static str> {
        let bad = |s: &str| s.chars().any(char::is_control);
        if self.user().is_empty() || bad(self.user()) {
            return Some("user");
        }
        if self.uid().is_some_and(bad) {
            return Some("uid");
        }
        if self.groups().iter().any(|g| g.is_empty() || bad(g)) {
            return Some("groups");
        }
        let extra_bad = self
            .extra()
            .iter()
            .any(|(k, mut vs)| k.is_empty() || bad(k) || vs.any(bad));
        extra_bad.then_some("extra")
    }
}

/// An identity's fields, borrowed: what [`Identity::new`] digests before
/// the identity exists, and what its accessors read.
struct View<'a> {
    text: &'a str,
    fixed: &'a Fixed,
}

impl<'a> View<'a> {
    fn user(&self) -> &'a str {
        self.text.get(..self.fixed.ends[0] as usize).unwrap_or("")
    }

    fn uid(&self) -> Option<&'a str> {
        let ends = &self.fixed.ends;
        self.fixed
            .has_uid
            .then(|| self.text.get(ends[0] as usize..ends[1] as usize))
            .flatten()
    }

    fn extra(&self) -> Extra<'a> {
        let own = parts::Own {
            text: self.text,
            ends: &self.fixed.ends[1..],
        };
        Extra::new(self.fixed.shape.as_deref(), own)
    }

    /// Every field but the method, length-prefixed, under `keys`.
    fn digest(&self, keys: &KeyHasher) -> Key {
        let mut k = keys.builder();
        k.part(b"identity").part(self.user().as_bytes());
        match self.uid() {
            Some(uid) => k.part(b"uid").part(uid.as_bytes()),
            None => k.part(b"no uid"),
        };
        let groups = &self.fixed.groups;
        k.part(&(groups.len() as u64).to_be_bytes());
        for g in groups {
            k.part(g.as_bytes());
        }
        let extra = self.extra();
        k.part(&(extra.len() as u64).to_be_bytes());
        for (name, values) in extra {
            k.part(name.as_bytes())
                .part(&(values.len() as u64).to_be_bytes());
            for v in values {
                k.part(v.as_bytes());
            }
        }
        k.finish()
    }
}

impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.method() == other.method()
            && self.user() == other.user()
            && self.uid() == other.uid()
            && self.groups() == other.groups()
            && self.extra() == other.extra()
    }
}

impl Eq for Identity {}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("user", &self.user())
            .field("uid", &self.uid())
            .field("groups", self.groups())
            .field("extra", &self.extra())
            .field("method", &self.method())
            .finish()
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
        assert_eq!(*id.groups(), ["dev", AUTHENTICATED_GROUP]);
        assert!(id.extra().contains_key("scopes"));
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

    fn sa(pod: &str, uid: Option<&str>, groups: &[&str]) -> Identity {
        let extra = BTreeMap::from([
            (CREDENTIAL_ID_KEY.to_owned(), vec!["JTI=1".to_owned()]),
            (
                "authentication.kubernetes.io/node-name".to_owned(),
                vec!["n1".to_owned()],
            ),
            (
                "authentication.kubernetes.io/pod-name".to_owned(),
                vec![pod.to_owned()],
            ),
            (
                "authentication.kubernetes.io/pod-uid".to_owned(),
                vec!["p-uid".to_owned()],
            ),
        ]);
        Identity::new(
            "system:serviceaccount:ns:bot".into(),
            uid.map(str::to_owned),
            groups.iter().map(|g| (*g).to_owned()).collect(),
            extra,
            AuthMethod::Token,
        )
    }

    #[test]
    fn every_field_reads_back_from_the_one_text() {
        let id = sa("web-1", Some("u-1"), &["system:serviceaccounts"]);
        assert_eq!(id.user(), "system:serviceaccount:ns:bot");
        assert_eq!(id.uid(), Some("u-1"));
        assert_eq!(id.extra().to_map()[CREDENTIAL_ID_KEY], ["JTI=1"]);
        let pod: Vec<&str> = id
            .extra()
            .get("authentication.kubernetes.io/pod-name")
            .expect("pod-name")
            .collect();
        assert_eq!(pod, ["web-1"]);
        assert_eq!(id.extra().len(), 4);
        assert_eq!(sa("web-1", None, &[]).uid(), None);
        assert_eq!(sa("web-1", Some(""), &[]).uid(), Some(""));
    }

    #[test]
    fn fingerprints_are_equal_for_equal_identities_and_differ_with_any_field() {
        let base = sa("web-1", Some("u-1"), &["g"]);
        assert_eq!(
            base.fingerprint(),
            sa("web-1", Some("u-1"), &["g"]).fingerprint()
        );
        assert_eq!(base, sa("web-1", Some("u-1"), &["g"]));
        let others = [
            sa("web-2", Some("u-1"), &["g"]),
            sa("web-1", None, &["g"]),
            sa("web-1", Some(""), &["g"]),
            sa("web-1", Some("u-1"), &["g", "h"]),
            sa("web-1", Some("u-1"), &[]),
        ];
        for other in &others {
            assert_ne!(base.fingerprint(), other.fingerprint(), "{other:?}");
            assert_ne!(&base, other);
        }
        // A value moved across the user/uid boundary is another identity.
        let a = Identity::new(
            "ab".into(),
            Some("c".into()),
            vec![],
            BTreeMap::new(),
            AuthMethod::Mtls,
        );
        let b = Identity::new(
            "a".into(),
            Some("bc".into()),
            vec![],
            BTreeMap::new(),
            AuthMethod::Mtls,
        );
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn pods_of_one_node_share_one_extra_shape() {
        let (a, b) = (sa("web-1", None, &[]), sa("web-2", None, &[]));
        let (sa_, sb) = (
            a.0.header.header.shape.as_ref().expect("shape"),
            b.0.header.header.shape.as_ref().expect("shape"),
        );
        assert!(Arc::ptr_eq(sa_, sb));
        assert!(a.own_bytes() < 200, "{}", a.own_bytes());
        // A thin pointer to one allocation: count, 64 bytes of fixed
        // fields and length, then the text.
        assert_eq!(size_of::<Identity>(), size_of::<usize>());
        let fixed = size_of::<HeaderWithLength<Fixed>>();
        assert!(fixed <= 64, "{fixed}");
        assert_eq!(a.own_bytes(), 8 + fixed + a.0.slice.len());
    }
}

/// Adversarial review (review-a): boundaries of the one text and the
/// overflow path (these hold).
#[cfg(test)]
mod review_a {
    use super::*;

    fn with(extra: &[(&str, &[&str])], uid: Option<&str>) -> Identity {
        let extra = extra
            .iter()
            .map(|(k, vs)| {
                (
                    (*k).to_owned(),
                    vs.iter().map(|v| (*v).to_owned()).collect(),
                )
            })
            .collect();
        Identity::new(
            "u".into(),
            uid.map(str::to_owned),
            vec![],
            extra,
            AuthMethod::Token,
        )
    }

    #[test]
    fn review_a_own_values_keep_their_boundaries_and_overflow_reads_back() {
        const POD: &str = "authentication.kubernetes.io/pod-name";
        const PUID: &str = "authentication.kubernetes.io/pod-uid";
        let a = with(&[(POD, &["ab"]), (PUID, &["c"])], Some("x"));
        let b = with(&[(POD, &["a"]), (PUID, &["bc"])], Some("x"));
        let c = with(&[(POD, &["ab"]), (PUID, &["c"])], Some("xab"));
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint(), c.fingerprint());
        // A uid moved into an own value.
        let d = with(&[(POD, &["xab"]), (PUID, &["c"])], Some(""));
        assert_ne!(c.fingerprint(), d.fingerprint());
        assert_ne!(
            with(&[], None).fingerprint(),
            with(&[], Some("")).fingerprint()
        );
        // More own values than MAX_OWN: every one reads back, in order.
        let many = with(
            &[
                (CREDENTIAL_ID_KEY, &["1", "2", "3", "4", "5"]),
                (POD, &["p"]),
            ],
            None,
        );
        assert_eq!(
            many.extra().to_map()[CREDENTIAL_ID_KEY],
            ["1", "2", "3", "4", "5"]
        );
        assert_eq!(many.extra().to_map()[POD], ["p"]);
        let other = with(
            &[
                (CREDENTIAL_ID_KEY, &["1", "2", "3", "4", "6"]),
                (POD, &["p"]),
            ],
            None,
        );
        assert_ne!(many.fingerprint(), other.fingerprint());
        // Equal inputs give equal fingerprints whichever shape was interned first.
        assert_eq!(
            many.fingerprint(),
            with(
                &[
                    (CREDENTIAL_ID_KEY, &["1", "2", "3", "4", "5"]),
                    (POD, &["p"])
                ],
                None
            )
            .fingerprint()
        );
    }
}
