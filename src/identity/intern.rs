//! The process-wide interner of identity strings, group lists and `extra`
//! shapes: every ServiceAccount of a namespace shares one allocation of its
//! groups, the pods of a node one shape of their `extra`, and an `extra` key
//! (or a node's name) is held once however many identities carry it.
//!
//! Entries nobody else holds any more are dropped whenever the table has
//! doubled since it was last pruned, so strings of identities long gone do
//! not stay (the table is at most about twice what live identities share).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex};

/// Tables below this size are never pruned (pruning is a full scan).
const MIN_PRUNE: usize = 1024;

/// The shared body of [`Groups`] (the interner holds one per distinct list).
pub(super) struct GroupList {
    pub(super) names: Box<[Arc<str>]>,
}

impl GroupList {
    pub(super) fn new(names: Vec<Arc<str>>) -> Self {
        Self {
            names: names.into(),
        }
    }
}

struct Tables {
    strings: HashSet<Arc<str>>,
    lists: HashSet<ListKey>,
    /// Sizes after the last prune (or `MIN_PRUNE`).
    strings_floor: usize,
    lists_floor: usize,
}

/// A shared group list, hashed and compared by its names.
struct ListKey(Arc<GroupList>);

impl PartialEq for ListKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.names == other.0.names
    }
}

impl Eq for ListKey {}

impl Hash for ListKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.names.hash(state);
    }
}

impl std::borrow::Borrow<[Arc<str>]> for ListKey {
    fn borrow(&self) -> &[Arc<str>] {
        &self.0.names
    }
}

static TABLES: LazyLock<Mutex<Tables>> = LazyLock::new(|| {
    Mutex::new(Tables {
        strings: HashSet::new(),
        lists: HashSet::new(),
        strings_floor: MIN_PRUNE,
        lists_floor: MIN_PRUNE,
    })
});

fn tables() -> std::sync::MutexGuard<'static, Tables> {
    TABLES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shared copy of `s`.
pub(crate) fn string(s: &str) -> Arc<str> {
    let mut t = tables();
    if let Some(hit) = t.strings.get(s) {
        return hit.clone();
    }
    if t.strings.len() >= 2 * t.strings_floor {
        t.strings.retain(|s| Arc::strong_count(s) > 1);
        t.strings_floor = t.strings.len().max(MIN_PRUNE);
    }
    let shared: Arc<str> = Arc::from(s);
    t.strings.insert(shared.clone());
    shared
}

/// The shared copy of the list `names` (whose names are already interned).
pub(super) fn list(names: Vec<Arc<str>>) -> Arc<GroupList> {
    let mut t = tables();
    if let Some(hit) = t.lists.get(names.as_slice()) {
        return hit.0.clone();
    }
    if t.lists.len() >= 2 * t.lists_floor {
        t.lists.retain(|l| Arc::strong_count(&l.0) > 1);
        t.lists_floor = t.lists.len().max(MIN_PRUNE);
    }
    let shared = Arc::new(GroupList::new(names));
    t.lists.insert(ListKey(shared.clone()));
    shared
}

/// A table of shared values of one type, pruned like the strings.
pub(super) struct Pool<T> {
    held: HashSet<Arc<T>>,
    floor: usize,
}

impl<T: Hash + Eq> Pool<T> {
    /// An empty pool.
    pub(super) fn new() -> Self {
        Self {
            held: HashSet::new(),
            floor: MIN_PRUNE,
        }
    }

    /// The shared copy of `value`.
    pub(super) fn get(&mut self, value: T) -> Arc<T> {
        if let Some(hit) = self.held.get(&value) {
            return hit.clone();
        }
        if self.held.len() >= 2 * self.floor {
            self.held.retain(|v| Arc::strong_count(v) > 1);
            self.floor = self.held.len().max(MIN_PRUNE);
        }
        let shared = Arc::new(value);
        self.held.insert(shared.clone());
        shared
    }
}

/// Strings and lists held (for tests and the memory benchmark).
pub fn held() -> (usize, usize) {
    let t = tables();
    (t.strings.len(), t.lists.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_and_lists_share_one_allocation() {
        let (a, b) = (
            string("system:serviceaccounts:ns"),
            string("system:serviceaccounts:ns"),
        );
        assert!(Arc::ptr_eq(&a, &b));
        let (x, y) = (list(vec![a.clone()]), list(vec![b]));
        assert!(Arc::ptr_eq(&x, &y));
        assert!(!Arc::ptr_eq(&x, &list(vec![a, string("other")])));
    }

    #[test]
    fn strings_nobody_holds_are_pruned() {
        for i in 0..4 * MIN_PRUNE {
            drop(string(&format!("prune-test-{i}")));
        }
        let kept = string("prune-test-kept");
        for i in 0..4 * MIN_PRUNE {
            drop(string(&format!("prune-test-again-{i}")));
        }
        let (strings, _) = held();
        assert!(strings < 4 * MIN_PRUNE, "{strings}");
        assert!(Arc::ptr_eq(&kept, &string("prune-test-kept")));
    }
}
