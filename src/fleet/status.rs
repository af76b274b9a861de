//! The state of one replica's watch of the revocation object, and the
//! readiness check it gives (pure: the caller passes the time).

use super::object::Revocation;

/// Where the watch stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watch {
    /// Not listed yet.
    Starting,
    /// Listed and applied; the watch call is being started.
    Settling,
    /// Listed, applied, and watching.
    Synced,
    /// The API says the object does not exist.
    Missing,
    /// The list or the watch failed at `since` (Unix seconds); it is being
    /// retried.
    Broken {
        /// What failed (kube's error; never a token).
        reason: String,
        /// When.
        since: i64,
    },
}

/// A replica's view of the object.
#[derive(Debug)]
pub struct State {
    /// The watch.
    pub watch: Watch,
    /// The last version applied to the caches.
    pub applied: Option<Revocation>,
}

impl Default for State {
    /// Nothing seen yet.
    fn default() -> Self {
        Self {
            watch: Watch::Starting,
            applied: None,
        }
    }
}

/// Readiness of `state` for the object `object` (`ns/name`) at `now`:
/// ready only while the object is watched and has been applied.
pub fn check(state: &State, object: &str, now: i64) -> (bool, String) {
    match &state.watch {
        Watch::Starting => (false, format!("waiting for the first list of {object}")),
        Watch::Settling => (false, format!("{object} listed; starting its watch")),
        Watch::Missing => (
            false,
            format!(
                "the revocation object {object} does not exist (kubectl apply -k deploy/base creates it)"
            ),
        ),
        Watch::Broken { reason, since } => (
            false,
            format!(
                "the watch of {object} failed {}s ago and is retried: {reason}",
                now - since
            ),
        ),
        Watch::Synced => {
            let detail = match &state.applied {
                Some(r) => {
                    let epoch = if r.epoch.is_empty() { "0" } else { &r.epoch };
                    let mut d = format!(
                        "watching {object} (epoch {epoch}, {} user flushes)",
                        r.users.len()
                    );
                    if let Some(m) = &r.malformed {
                        d.push_str(&format!("; {m}: every change flushes everything"));
                    }
                    d
                }
                None => format!("watching {object}"),
            };
            (true, detail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn only_a_synced_watch_is_ready_and_every_other_state_says_why() {
        let mut s = State::default();
        let cases = [
            (Watch::Starting, false, "waiting for the first list"),
            (Watch::Settling, false, "starting its watch"),
            (Watch::Missing, false, "does not exist"),
            (
                Watch::Broken {
                    reason: "forbidden".into(),
                    since: 90,
                },
                false,
                "failed 10s ago and is retried: forbidden",
            ),
            (Watch::Synced, true, "watching ns/rev"),
        ];
        for (watch, ok, detail) in cases {
            s.watch = watch.clone();
            let (got_ok, got) = check(&s, "ns/rev", 100);
            assert_eq!(got_ok, ok, "{watch:?}");
            assert!(got.contains(detail), "{watch:?}: {got}");
        }
        let data = BTreeMap::from([("users".to_owned(), "nonsense".to_owned())]);
        s.applied = Some(super::super::object::read(None, None, &data));
        let (ok, got) = check(&s, "ns/rev", 100);
        assert!(ok);
        assert!(got.contains("every change flushes everything"), "{got}");
    }
}
