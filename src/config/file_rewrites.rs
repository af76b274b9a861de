//! The file shapes of `routes[].resource` (one object or a list) and
//! `routes[].rewrites`, re-exported by `super::file`.

use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// One object or a list of them (`routes[].resource`: checks that must all
/// allow).
#[derive(Debug)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> From<T> for OneOrMany<T> {
    fn from(one: T) -> Self {
        Self(vec![one])
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object, or a list of them")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<OneOrMany<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(OneOrMany::from)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<OneOrMany<T>, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(OneOrMany)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `routes[].rewrites`: resource checks templated with a value the request
/// carries (kube-rbac-proxy's `authorization.rewrites`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewritesFile {
    /// The query parameter whose values fill `{{ .Value }}` in
    /// `routes[].resource` (kube-rbac-proxy's `byQueryParameter.name`).
    pub query_parameter: Option<String>,
    /// The header whose values fill `{{ .Value }}` (kube-rbac-proxy's
    /// `byHttpHeader.name`).
    pub header: Option<String>,
    /// `pin` (default: the upstream gets exactly the authorized values),
    /// `remove` (it gets none) or `keep` (as sent, when spelled canonically).
    pub consume: Option<String>,
}
