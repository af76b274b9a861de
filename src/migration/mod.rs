//! The move from bearer tokens to client certificates: which identities are
//! pinned to mTLS (`migration.mtls_required`), and who used which credential
//! on which route (the `/migration` report and
//! `authgate_identity_requests_total`).
//!
//! The decisions here are pure; the only state is the bounded usage
//! [`report::Tracker`].

pub mod check;
pub mod export;
pub mod page;
pub mod report;
pub mod text;
pub mod when;

use std::sync::Arc;

use globset::{GlobSet, GlobSetBuilder};

use crate::config::{MigrationConfig, RouteConfig};
use crate::identity::Identity;
use report::Tracker;

/// The group every identity carries; never a pinning criterion.
const AUTHENTICATED: &str = "system:authenticated";

/// Whether an identity is pinned to client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pin {
    /// No `migration.mtls_required` entry matches it.
    No,
    /// Only `enforce: false` entries match: its tokens are served, and
    /// counted as would-refuse.
    DryRun,
    /// An enforced entry matches: its tokens are refused.
    Enforced,
}

/// Pinned identities and the usage tracker (clones share the tracker).
#[derive(Clone, Debug)]
pub struct Migration {
    pinned: Option<GlobSet>,
    dry_run: Option<GlobSet>,
    tracker: Arc<Tracker>,
}

impl Migration {
    /// From the validated `migration:` settings.
    pub fn new(cfg: &MigrationConfig) -> Self {
        for g in &cfg.mtls_required_dry_run {
            tracing::warn!(
                glob = g.glob(),
                "migration.mtls_required entry with enforce: false: its tokens are served, and only counted"
            );
        }
        Self {
            pinned: pin_set(&cfg.mtls_required),
            dry_run: pin_set(&cfg.mtls_required_dry_run),
            tracker: Arc::new(Tracker::new(cfg.max_identities, cfg.track_identities)),
        }
    }

    /// Whether `id` must authenticate with a client certificate, or only
    /// would under a dry-run entry. An enforced entry wins.
    pub fn pin(&self, id: &Identity) -> Pin {
        if self.pinned.as_ref().is_some_and(|set| pinned(set, id)) {
            Pin::Enforced
        } else if self.dry_run.as_ref().is_some_and(|set| pinned(set, id)) {
            Pin::DryRun
        } else {
            Pin::No
        }
    }

    /// Gives each route its series before its first request, and warns of
    /// the routes whose closing to tokens is only a dry run.
    pub fn declare_routes(&self, routes: &[RouteConfig]) {
        for r in routes.iter().filter(|r| !r.auth.enforce) {
            tracing::warn!(
                route = r.path_prefix.as_str(),
                "routes[].auth with enforce: false: tokens are served on this route, and only counted"
            );
        }
        self.tracker
            .declare_routes(routes.iter().map(|r| r.path_prefix.as_str()));
    }

    /// The usage tracker (report and metric).
    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }
}

fn pin_set(globs: &[globset::Glob]) -> Option<GlobSet> {
    (!globs.is_empty()).then(|| {
        let mut b = GlobSetBuilder::new();
        for g in globs {
            b.add(g.clone());
        }
        // Every glob compiled during validation. Should the set still not
        // build, pin everyone: a pinned token is refused (or, in a dry run,
        // counted), never admitted unseen.
        b.build().unwrap_or_else(|_| pin_everyone())
    })
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
    set.is_match(id.user())
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
