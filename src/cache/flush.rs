//! What flushes happened, for the entries of reviews launched before them:
//! every flush starts a generation; an entry of an older generation counts
//! only if no later flush covers it.

use std::sync::Arc;

/// Per-user flushes kept for the read check; more collapse into a full one.
pub(super) const MAX_FLUSH_MARKS: usize = 64;

/// A flush predicate, applied to entries older than its generation.
pub(super) type Doomed<V> = Arc<dyn Fn(&V) -> bool + Send + Sync>;

/// What flushes happened, for entries of older generations.
pub(super) struct Flushes<V> {
    /// Entries of a generation below this were flushed whole.
    pub(super) valid_from: u64,
    /// Per-user flushes: entries below the generation that match are gone.
    pub(super) marks: Vec<(u64, Doomed<V>)>,
}

impl<V> Flushes<V> {
    /// None yet.
    pub(super) fn new() -> Self {
        Self {
            valid_from: 0,
            marks: Vec::new(),
        }
    }

    /// Whether an entry of `generation` holding `value` survived them.
    pub(super) fn spare(&self, generation: u64, value: &V) -> bool {
        generation >= self.valid_from
            && !self
                .marks
                .iter()
                .any(|(g, doomed)| generation < *g && doomed(value))
    }

    /// Records the flush that starts `generation`: of what `doomed` is
    /// true for, or of everything.
    pub(super) fn record(&mut self, generation: u64, doomed: Option<Doomed<V>>) {
        match doomed {
            Some(d) if self.marks.len() < MAX_FLUSH_MARKS => self.marks.push((generation, d)),
            _ => {
                self.valid_from = generation;
                self.marks.clear();
            }
        }
    }
}
