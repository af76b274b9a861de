//! A keyed digest kept with the immutable part it is of.

use std::sync::OnceLock;

use crate::cache::{Key, KeyHasher};

/// A digest of a part's contents under one [`KeyHasher`], kept with the
/// part (contents never change, so it can never go stale).
#[derive(Default)]
pub(super) struct Memo(OnceLock<(u64, Key)>);

impl Memo {
    /// The digest under `keys`: kept from the first hasher that asks,
    /// computed afresh for any other.
    pub(super) fn get(&self, keys: &KeyHasher, compute: impl Fn() -> Key) -> Key {
        match self.0.get_or_init(|| (keys.id(), compute())) {
            (id, key) if *id == keys.id() => *key,
            _ => compute(),
        }
    }
}
