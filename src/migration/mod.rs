//! The move from bearer tokens to client certificates: which identities are
//! pinned to mTLS (`migration.mtls_required`), and who used which credential
//! on which route (the `/migration` report and
//! `authgate_identity_requests_total`).
//!
//! The decisions here are pure; the only state is the bounded usage
//! [`report::Tracker`].

pub mod report;

use std::sync::Arc;

use globset::{GlobSet, GlobSetBuilder};

use crate::config::MigrationConfig;
use crate::identity::Identity;
use report::Tracker;

/// The group every identity carries; never a pinning criterion.
const AUTHENTICATED: &str = "system:authenticated";

/// Pinned identities and the usage tracker.
#[derive(Debug)]
pub struct Migration {
    pinned: Option<GlobSet>,
    tracker: Arc<Tracker>,
}

impl Migration {
    /// From the validated `migration:` settings.
    pub fn new(cfg: &MigrationConfig) -> Self {
        let pinned = (!cfg.mtls_required.is_empty()).then(|| {
            let mut b = GlobSetBuilder::new();
            for g in &cfg.mtls_required {
                b.add(g.clone());
            }
            // Every glob compiled during validation. Should the set still not
            // build, pin everyone: a pinned token is refused, never admitted.
            b.build().unwrap_or_else(|_| pin_everyone())
        });
        Self {
            pinned,
            tracker: Arc::new(Tracker::new(cfg.max_identities, cfg.track_identities)),
        }
    }

    /// Whether `id` must authenticate with a client certificate.
    pub fn is_pinned(&self, id: &Identity) -> bool {
        self.pinned.as_ref().is_some_and(|set| pinned(set, id))
    }

    /// The usage tracker (report and metric).
    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }
}

fn pin_everyone() -> GlobSet {
    let mut b = GlobSetBuilder::new();
    if let Ok(g) = globset::Glob::new("*") {
        b.add(g);
    }
    b.build().unwrap_or_else(|_| GlobSet::empty())
}

/// `id` is pinned when its user or one of its groups (other than
/// `system:authenticated`) matches a glob of `set`.
pub fn pinned(set: &GlobSet, id: &Identity) -> bool {
    set.is_match(&id.user())
        || id
            .groups()
            .iter()
            .any(|g| &**g != AUTHENTICATED && set.is_match(&**g))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::identity::AuthMethod;

    fn id(user: &str, groups: &[&str]) -> Identity {
        Identity::new(
            user.into(),
            None,
            groups.iter().map(|g| (*g).to_owned()).collect(),
            BTreeMap::new(),
            AuthMethod::Token,
        )
    }

    fn set(globs: &[&str]) -> GlobSet {
        let mut b = GlobSetBuilder::new();
        for g in globs {
            b.add(globset::Glob::new(g).unwrap());
        }
        b.build().unwrap()
    }

    #[test]
    fn users_and_groups_pin_but_the_authenticated_group_does_not() {
        let s = set(&[
            "system:serviceaccount:monitoring:*",
            "team-payments",
            "system:authenticated",
        ]);
        assert!(pinned(
            &s,
            &id("system:serviceaccount:monitoring:prometheus", &[])
        ));
        assert!(!pinned(
            &s,
            &id("system:serviceaccount:monitoring-2:prometheus", &[])
        ));
        assert!(pinned(&s, &id("alice", &["team-payments"])));
        assert!(!pinned(&s, &id("bob", &["team-billing", AUTHENTICATED])));
    }
}
