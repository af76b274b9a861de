//! What `/cache/flush` did, for identities whose check began before it
//! (pure but for the clock of the last flush).

use std::time::Instant;

use super::Entry;

/// Per-user flushes kept for the read check; more collapse into a full one.
pub(super) const MAX_FLUSH_MARKS: usize = 64;

/// What flushes happened, for identities checked before them.
#[derive(Default)]
pub(super) struct Flushes {
    /// Identities checked in a generation below this were flushed whole.
    valid_from: u64,
    /// Per-user flushes: that user's identities checked below the
    /// generation are gone.
    marks: Vec<(u64, String)>,
    /// The last flush: for `revalidate_after` after it, a token verified
    /// locally must also pass TokenReview (the flush is the emergency
    /// revocation; a still-valid signature must not undo it).
    pub(super) last: Option<Instant>,
}

impl Flushes {
    /// Records the flush that started `generation`: of everyone, or of `user`.
    pub(super) fn record(&mut self, generation: u64, user: Option<&str>) {
        self.last = Some(Instant::now());
        match user {
            Some(u) if self.marks.len() < MAX_FLUSH_MARKS => {
                self.marks.push((generation, u.to_owned()));
            }
            _ => {
                self.valid_from = generation;
                self.marks.clear();
            }
        }
    }

    /// Whether a flush after `e`'s check began drops it. (Rejection markers
    /// are kept apart and never dropped: a flush must not let a signature
    /// undo them.)
    pub(super) fn cover(&self, e: &Entry) -> bool {
        e.generation < self.valid_from
            || self
                .marks
                .iter()
                .any(|(g, u)| e.generation < *g && *u == e.id.user())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::identity::{AuthMethod, Identity};

    #[test]
    fn a_flush_covers_identities_checked_before_it() {
        let entry = |user: &str, generation| Entry {
            id: Identity::new(
                user.into(),
                None,
                vec![],
                BTreeMap::new(),
                AuthMethod::Token,
            ),
            exp: jsonwebtoken::get_current_timestamp() + 600,
            checked: Instant::now(),
            generation,
        };
        let mut f = Flushes::default();
        assert!(!f.cover(&entry("a", 0)), "no flush yet");

        // A flush of `a` starts generation 1.
        f.record(1, Some("a"));
        assert!(f.last.is_some());
        assert!(f.cover(&entry("a", 0)));
        assert!(!f.cover(&entry("b", 0)), "another user");
        assert!(!f.cover(&entry("a", 1)), "checked after the flush");

        // A full flush starts generation 2.
        f.record(2, None);
        assert!(f.cover(&entry("b", 1)));
        assert!(!f.cover(&entry("b", 2)));

        // Too many per-user flushes collapse into a full one.
        for g in 3..3 + MAX_FLUSH_MARKS as u64 {
            f.record(g, Some("a"));
        }
        assert_eq!(f.marks.len(), MAX_FLUSH_MARKS);
        let last = 3 + MAX_FLUSH_MARKS as u64;
        f.record(last, Some("a"));
        assert!(f.marks.is_empty());
        assert!(f.cover(&entry("b", last - 1)), "collapsed: everyone");
        assert!(!f.cover(&entry("a", last)));
    }
}
