//! Identities that `migration.mtls_required` globs are tried against, and
//! the way the runtime pins them (`migration::pinned`, which `config` cannot
//! import; a test in `policy` holds the two together).

use std::collections::BTreeMap;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::identity::{AUTHENTICATED_GROUP, AuthMethod, Identity};

/// A person, a mail-address user, a one-letter user, an admin.
const PEOPLE: &[(&str, &[&str])] = &[
    ("alice", &["dev"]),
    ("bob@example.com", &[]),
    ("x", &[]),
    ("kubernetes-admin", &["system:masters"]),
];

/// A ServiceAccount, a node, a control-plane component.
const SYSTEM: &[(&str, &[&str])] = &[
    (
        "system:serviceaccount:monitoring:prometheus",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:monitoring",
        ],
    ),
    ("system:node:worker-1", &["system:nodes"]),
    ("system:kube-controller-manager", &[]),
];

fn build(list: &[(&str, &[&str])]) -> Vec<Identity> {
    list.iter()
        .map(|(user, groups)| {
            Identity::new(
                (*user).to_owned(),
                None,
                groups.iter().map(|g| (*g).to_owned()).collect(),
                BTreeMap::new(),
                AuthMethod::Token,
            )
        })
        .collect()
}

/// Every probe identity.
pub(super) fn identities() -> Vec<Identity> {
    let mut all = build(PEOPLE);
    all.extend(build(SYSTEM));
    all
}

/// The probe identities whose user starts with `system:`.
pub(super) fn system_identities() -> Vec<Identity> {
    build(SYSTEM)
}

/// Whether `globs` together pin each of `ids`.
pub(super) fn pins_all(globs: &[Glob], ids: &[Identity]) -> bool {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(g.clone());
    }
    // Should the set not build, the runtime pins everyone: so would this.
    b.build()
        .map_or(true, |set| ids.iter().all(|id| pinned(&set, id)))
}

/// Whether `set` pins `id`: its user or a group other than
/// `system:authenticated` matches.
pub(super) fn pinned(set: &GlobSet, id: &Identity) -> bool {
    set.is_match(id.user())
        || id
            .groups()
            .iter()
            .any(|g| &**g != AUTHENTICATED_GROUP && set.is_match(&**g))
}
