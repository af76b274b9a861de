//! The shared, immutable parts of an [`super::Identity`]: its groups and its
//! `extra`. Both are one `Arc` each, so cloning an identity or keeping it in
//! two caches copies no strings, and each carries the keyed digest of its
//! contents, computed once, for the decision cache's key.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use super::intern::{self, GroupList};
use super::memo::Memo;
use crate::cache::{Key, KeyHasher};

/// `extra` keys whose values are unique to one credential: not interned
/// (the table would hold one entry per token for nothing).
const UNSHARED_VALUES: [&str; 3] = [
    super::CREDENTIAL_ID_KEY,
    "authentication.kubernetes.io/pod-uid",
    "authentication.kubernetes.io/pod-name",
];

// === impl Groups ===

/// Group memberships: an interned list of interned names.
#[derive(Clone)]
pub struct Groups(Arc<GroupList>);

impl Groups {
    /// The interned list of `names`, in order.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Self {
        Self(intern::list(
            names.iter().map(|n| intern::string(n.as_ref())).collect(),
        ))
    }

    /// The names as owned strings (for an API request).
    pub fn to_strings(&self) -> Vec<String> {
        self.0.names.iter().map(|g| g.to_string()).collect()
    }

    /// The keyed digest of the list, computed once per list and hasher.
    pub fn digest(&self, keys: &KeyHasher) -> Key {
        self.0.digest.get(keys, || {
            let mut k = keys.builder();
            k.part(b"groups")
                .part(&(self.0.names.len() as u64).to_be_bytes());
            for g in self.0.names.iter() {
                k.part(g.as_bytes());
            }
            k.finish()
        })
    }
}

impl Deref for Groups {
    type Target = [Arc<str>];

    fn deref(&self) -> &[Arc<str>] {
        &self.0.names
    }
}

impl<'a> IntoIterator for &'a Groups {
    type Item = &'a Arc<str>;
    type IntoIter = std::slice::Iter<'a, Arc<str>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.names.iter()
    }
}

impl PartialEq for Groups {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.names == other.0.names
    }
}

impl Eq for Groups {}

impl<const N: usize> PartialEq<[&str; N]> for Groups {
    fn eq(&self, other: &[&str; N]) -> bool {
        self.0.names.len() == N && self.0.names.iter().zip(other).all(|(a, b)| &**a == *b)
    }
}

impl fmt::Debug for Groups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.names.iter()).finish()
    }
}

// === impl Extra ===

/// Extra attributes: keys in order, each with its values. Keys and the
/// values of shared attributes (a node's name) are interned.
#[derive(Clone, Default)]
pub struct Extra(Option<Arc<ExtraList>>);

struct ExtraList {
    layout: Layout,
    digest: Memo,
}

/// How the keys and values are laid out: one value per key (every `extra`
/// Kubernetes sets) in one allocation, or any number in two.
enum Layout {
    /// Each key with its one value.
    Single(Box<[(Arc<str>, Arc<str>)]>),
    /// Each key with the end of its values in `values`.
    Many {
        keys: Box<[(Arc<str>, u32)]>,
        values: Box<[Arc<str>]>,
    },
}

impl Layout {
    fn len(&self) -> usize {
        match self {
            Self::Single(pairs) => pairs.len(),
            Self::Many { keys, .. } => keys.len(),
        }
    }

    /// Heap bytes of the boxes.
    fn bytes(&self) -> usize {
        match self {
            Self::Single(pairs) => pairs.len() * size_of::<(Arc<str>, Arc<str>)>(),
            Self::Many { keys, values } => {
                keys.len() * size_of::<(Arc<str>, u32)>() + values.len() * size_of::<Arc<str>>()
            }
        }
    }

    fn at(&self, i: usize) -> Option<(&Arc<str>, &[Arc<str>])> {
        match self {
            Self::Single(pairs) => pairs.get(i).map(|(k, v)| (k, std::slice::from_ref(v))),
            Self::Many { keys, values } => {
                let (key, end) = keys.get(i)?;
                let start = i.checked_sub(1).map_or(0, |p| keys[p].1 as usize);
                Some((key, &values[start..*end as usize]))
            }
        }
    }
}

impl Extra {
    /// From a map whose keys are already lower-case.
    pub fn from_map(map: BTreeMap<String, Vec<String>>) -> Self {
        if map.is_empty() {
            return Self(None);
        }
        let value = |k: &str, v: &str| {
            if UNSHARED_VALUES.contains(&k) {
                Arc::from(v)
            } else {
                intern::string(v)
            }
        };
        let layout = if map.values().all(|vs| vs.len() == 1) {
            let pairs = map
                .iter()
                .map(|(k, vs)| (intern::string(k), value(k, &vs[0])));
            Layout::Single(pairs.collect())
        } else {
            let mut keys = Vec::with_capacity(map.len());
            let mut values = Vec::with_capacity(map.values().map(Vec::len).sum());
            for (k, vs) in &map {
                values.extend(vs.iter().map(|v| value(k, v)));
                let end = u32::try_from(values.len()).unwrap_or(u32::MAX);
                keys.push((intern::string(k), end));
            }
            Layout::Many {
                keys: keys.into(),
                values: values.into(),
            }
        };
        Self(Some(Arc::new(ExtraList {
            layout,
            digest: Memo::default(),
        })))
    }

    /// As a map (for an API request).
    pub fn to_map(&self) -> BTreeMap<String, Vec<String>> {
        self.iter()
            .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
            .collect()
    }

    /// The values of `key`.
    pub fn get(&self, key: &str) -> Option<&[Arc<str>]> {
        self.iter().find(|(k, _)| &***k == key).map(|(_, vs)| vs)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &Arc<str>> {
        self.iter().map(|(k, _)| k)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |l| l.layout.len())
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Each key with its values, in key order.
    pub fn iter(&self) -> ExtraIter<'_> {
        ExtraIter {
            list: self.0.as_deref(),
            next: 0,
        }
    }

    /// The keyed digest of every key and value, computed once per identity
    /// and hasher.
    pub fn digest(&self, keys: &KeyHasher) -> Key {
        let compute = || {
            let mut k = keys.builder();
            k.part(b"extra").part(&(self.len() as u64).to_be_bytes());
            for (name, values) in self {
                k.part(name.as_bytes())
                    .part(&(values.len() as u64).to_be_bytes());
                for v in values {
                    k.part(v.as_bytes());
                }
            }
            k.finish()
        };
        match &self.0 {
            Some(l) => l.digest.get(keys, compute),
            None => compute(),
        }
    }

    /// Heap bytes held by this identity alone (interned strings excluded).
    pub(crate) fn own_bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |l| {
            let unshared: usize = self
                .iter()
                .filter(|(k, _)| UNSHARED_VALUES.contains(&&***k))
                .flat_map(|(_, vs)| vs.iter())
                .map(|v| 16 + v.len())
                .sum();
            size_of::<ExtraList>() + 16 + l.layout.bytes() + unshared
        })
    }
}

/// The iterator of [`Extra::iter`].
pub struct ExtraIter<'a> {
    list: Option<&'a ExtraList>,
    next: usize,
}

impl<'a> Iterator for ExtraIter<'a> {
    type Item = (&'a Arc<str>, &'a [Arc<str>]);

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.list?.layout.at(self.next)?;
        self.next += 1;
        Some(item)
    }
}

impl<'a> IntoIterator for &'a Extra {
    type Item = (&'a Arc<str>, &'a [Arc<str>]);
    type IntoIter = ExtraIter<'a>;

    fn into_iter(self) -> ExtraIter<'a> {
        self.iter()
    }
}

impl std::ops::Index<&str> for Extra {
    type Output = [Arc<str>];

    /// The values of `key` (empty when absent).
    fn index(&self, key: &str) -> &[Arc<str>] {
        self.get(key).unwrap_or(&[])
    }
}

impl PartialEq for Extra {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) if Arc::ptr_eq(a, b) => true,
            _ => self.len() == other.len() && self.iter().eq(other.iter()),
        }
    }
}

impl Eq for Extra {}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, vs)| {
                (
                    (*k).to_owned(),
                    vs.iter().map(|v| (*v).to_owned()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn extra_keeps_every_key_and_value_in_either_layout() {
        let cases: [&[(&str, &[&str])]; 4] = [
            &[("a", &["1"]), ("b", &["2"])],
            &[("a", &["1", "2"]), ("b", &[]), ("c", &["3"])],
            &[("a", &[])],
            &[],
        ];
        for case in cases {
            let m = map(case);
            let extra = Extra::from_map(m.clone());
            assert_eq!(extra.to_map(), m);
            assert_eq!(extra.len(), m.len());
            for (k, vs) in &m {
                let got: Vec<&str> = extra.get(k).unwrap().iter().map(|v| &**v).collect();
                assert_eq!(got, *vs);
            }
        }
    }

    #[test]
    fn digests_differ_with_any_change_and_are_kept_per_hasher() {
        let keys = KeyHasher::random();
        let d = |pairs: &[(&str, &[&str])]| Extra::from_map(map(pairs)).digest(&keys);
        let base = d(&[("a", &["1"]), ("b", &["2"])]);
        assert_eq!(base, d(&[("a", &["1"]), ("b", &["2"])]));
        assert_ne!(base, d(&[("a", &["1", "2"])]));
        assert_ne!(base, d(&[("a", &["1"]), ("b", &["2"]), ("c", &[])]));
        assert_ne!(base, d(&[("a", &["12"]), ("b", &[])]));
        assert_ne!(base, d(&[("ab", &["1"]), ("b", &["2"])]));
        let e = Extra::from_map(map(&[("a", &["1"])]));
        let other = KeyHasher::random();
        assert_eq!(e.digest(&keys), e.digest(&keys));
        assert_ne!(e.digest(&keys), e.digest(&other));
        assert_eq!(
            e.digest(&other),
            Extra::from_map(map(&[("a", &["1"])])).digest(&other)
        );
        let g = Groups::new(&["x", "y"]);
        assert_ne!(g.digest(&keys), Groups::new(&["xy"]).digest(&keys));
        assert_eq!(g.digest(&keys), Groups::new(&["x", "y"]).digest(&keys));
    }
}
