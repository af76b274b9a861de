//! The shared, immutable parts of an [`super::Identity`]: its groups and the
//! shape of its `extra` (keys, and the values many identities share, such as
//! a node's name). Both are interned: the ServiceAccounts of a namespace
//! share one group list, the pods of a node one extra shape. The values
//! unique to one credential (pod name and uid, credential id) are not here:
//! they live in the identity's own text, and [`Extra`] reads both.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, LazyLock, Mutex};

use super::intern::{self, GroupList, Pool};

/// The interned extra shapes.
static SHAPES: LazyLock<Mutex<Pool<Shape>>> = LazyLock::new(|| Mutex::new(Pool::new()));

/// `extra` keys whose values are unique to one credential: kept in the
/// identity's own text, not interned (the table would hold one entry per
/// token for nothing).
pub(super) const UNSHARED_VALUES: [&str; 3] = [
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

impl<const N: usize> PartialEq<[&str; N]> for &Groups {
    fn eq(&self, other: &[&str; N]) -> bool {
        **self == *other
    }
}

impl fmt::Debug for Groups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.names.iter()).finish()
    }
}

// === impl Shape ===

/// Where one value of an `extra` key is.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) enum Value {
    /// Held here (interned when many identities carry it).
    Shared(Arc<str>),
    /// The identity's own value number `n` (see [`super::Identity`]).
    Own(u8),
}

/// The interned part of an `extra`: each key (lower-case, in order) with the
/// end of its values in `values`.
#[derive(PartialEq, Eq, Hash)]
pub(super) struct Shape {
    pub(super) keys: Box<[(Arc<str>, u32)]>,
    pub(super) values: Box<[Value]>,
}

impl Shape {
    /// The shape of `map` (keys already lower-case), and the values it
    /// leaves to the identity (at most `max_own`, in order); `None` when
    /// the map is empty.
    pub(super) fn of(
        map: &BTreeMap<String, Vec<String>>,
        max_own: usize,
    ) -> (Option<Arc<Self>>, Vec<&str>) {
        let mut own = Vec::new();
        if map.is_empty() {
            return (None, own);
        }
        let mut keys = Vec::with_capacity(map.len());
        let mut values = Vec::with_capacity(map.values().map(Vec::len).sum());
        for (k, vs) in map {
            for v in vs {
                let value = if !UNSHARED_VALUES.contains(&k.as_str()) {
                    Value::Shared(intern::string(v))
                } else if own.len() < max_own {
                    own.push(v.as_str());
                    Value::Own(u8::try_from(own.len() - 1).unwrap_or(u8::MAX))
                } else {
                    // More credential-unique values than an identity keeps
                    // inline (never from Kubernetes): held here, unshared.
                    Value::Shared(Arc::from(v.as_str()))
                };
                values.push(value);
            }
            let end = u32::try_from(values.len()).unwrap_or(u32::MAX);
            keys.push((intern::string(k), end));
        }
        let shape = Self {
            keys: keys.into(),
            values: values.into(),
        };
        let mut pool = SHAPES.lock().unwrap_or_else(|e| e.into_inner());
        (Some(pool.get(shape)), own)
    }

    /// Heap bytes of a shape held by one identity alone (none when shared).
    fn unshared_bytes(&self) -> usize {
        let unshared = self
            .values
            .iter()
            .filter(|v| matches!(v, Value::Shared(s) if Arc::strong_count(s) == 1))
            .count();
        if unshared == 0 {
            return 0;
        }
        16 + size_of::<Self>()
            + self.keys.len() * size_of::<(Arc<str>, u32)>()
            + self.values.len() * size_of::<Value>()
    }
}

// === impl Extra ===

/// An identity's extra attributes: keys in order, each with its values,
/// read from the interned [`Shape`] and the identity's own values.
#[derive(Clone, Copy)]
pub struct Extra<'a> {
    shape: Option<&'a Shape>,
    own: Own<'a>,
}

/// The identity's own values: `text[ends[n]..ends[n + 1]]` is value `n`.
#[derive(Clone, Copy)]
pub(super) struct Own<'a> {
    pub(super) text: &'a str,
    pub(super) ends: &'a [u32],
}

impl<'a> Own<'a> {
    fn get(self, n: u8) -> &'a str {
        let n = usize::from(n);
        match (self.ends.get(n), self.ends.get(n + 1)) {
            (Some(&a), Some(&b)) => self.text.get(a as usize..b as usize).unwrap_or(""),
            _ => "",
        }
    }
}

impl<'a> Extra<'a> {
    pub(super) fn new(shape: Option<&'a Shape>, own: Own<'a>) -> Self {
        Self { shape, own }
    }

    /// As a map (for an API request).
    pub fn to_map(&self) -> BTreeMap<String, Vec<String>> {
        self.iter()
            .map(|(k, vs)| (k.to_owned(), vs.map(str::to_owned).collect()))
            .collect()
    }

    /// The values of `key`.
    pub fn get(&self, key: &str) -> Option<Values<'a>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, vs)| vs)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.iter().map(|(k, _)| k)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.shape.map_or(0, |s| s.keys.len())
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each key with its values, in key order.
    pub fn iter(&self) -> ExtraIter<'a> {
        ExtraIter {
            extra: *self,
            next: 0,
        }
    }

    /// Heap bytes of the shape when this identity alone holds it.
    pub(super) fn own_bytes(&self) -> usize {
        self.shape.map_or(0, Shape::unshared_bytes)
    }
}

/// The iterator of [`Extra::iter`].
pub struct ExtraIter<'a> {
    extra: Extra<'a>,
    next: usize,
}

impl<'a> Iterator for ExtraIter<'a> {
    type Item = (&'a str, Values<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let shape = self.extra.shape?;
        let (key, end) = shape.keys.get(self.next)?;
        let start = self
            .next
            .checked_sub(1)
            .map_or(0, |p| shape.keys[p].1 as usize);
        self.next += 1;
        let values = shape.values.get(start..*end as usize).unwrap_or(&[]);
        Some((
            key,
            Values {
                own: self.extra.own,
                values: values.iter(),
            },
        ))
    }
}

impl<'a> IntoIterator for Extra<'a> {
    type Item = (&'a str, Values<'a>);
    type IntoIter = ExtraIter<'a>;

    fn into_iter(self) -> ExtraIter<'a> {
        self.iter()
    }
}

/// The values of one `extra` key, in order.
#[derive(Clone)]
pub struct Values<'a> {
    own: Own<'a>,
    values: std::slice::Iter<'a, Value>,
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        self.values.next().map(|v| match v {
            Value::Shared(s) => &**s,
            Value::Own(n) => self.own.get(*n),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.values.size_hint()
    }
}

impl ExactSizeIterator for Values<'_> {}

impl PartialEq for Extra<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .zip(other.iter())
                .all(|((k, a), (l, b))| k == l && a.eq(b))
    }
}

impl Eq for Extra<'_> {}

impl fmt::Debug for Extra<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, vs)| (k, vs.collect::<Vec<_>>())))
            .finish()
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

    fn concat(own: &[&str]) -> (String, Vec<u32>) {
        let mut ends = vec![0];
        let mut text = String::new();
        for v in own {
            text.push_str(v);
            ends.push(u32::try_from(text.len()).unwrap());
        }
        (text, ends)
    }

    #[test]
    fn extra_keeps_every_key_and_value_in_either_layout() {
        let cases: [&[(&str, &[&str])]; 5] = [
            &[("a", &["1"]), ("b", &["2"])],
            &[("a", &["1", "2"]), ("b", &[]), ("c", &["3"])],
            &[
                (super::super::CREDENTIAL_ID_KEY, &["JTI=1", "JTI=2"]),
                ("authentication.kubernetes.io/pod-name", &["p"]),
                ("authentication.kubernetes.io/pod-uid", &["u", "v", "w"]),
                ("authentication.kubernetes.io/node-name", &["n"]),
            ],
            &[("a", &[])],
            &[],
        ];
        for case in cases {
            let m = map(case);
            for max_own in [0, 1, 4] {
                let (shape, own) = Shape::of(&m, max_own);
                let (text, ends) = concat(&own);
                let extra = Extra::new(
                    shape.as_deref(),
                    Own {
                        text: &text,
                        ends: &ends,
                    },
                );
                assert_eq!(extra.to_map(), m);
                assert_eq!(extra.len(), m.len());
                for (k, vs) in &m {
                    let got: Vec<&str> = extra.get(k).unwrap().collect();
                    assert_eq!(got, *vs);
                }
            }
        }
    }
}
