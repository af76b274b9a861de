//! Path globs: `paths.allow`, `paths.unauthenticated` and `static.allow[].paths`.
//!
//! Globs are matched against the normalised request path (see
//! [`crate::routes::normalize_path`]): it starts with `/`, has no empty, `.`
//! or `..` segment. A glob that cannot match such a path is refused rather
//! than left to match nothing; an unauthenticated list that matches every
//! path a route can serve, or every one but its bare prefix, is refused, as
//! it would switch authentication off for that route.

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::glob;
use crate::config::file::PathsFile;
use crate::config::{Error, PathRules, RouteConfig, defaults};
use crate::routes::RouteTable;

/// Paths below a route prefix of which a glob list must leave at least one
/// guarded, besides the prefix itself (`""`, which alone does not count): a
/// child, a deep path, and shapes real clients send (probes, discovery,
/// metrics, Kubernetes-style API paths).
const PROBE_SUFFIXES: &[&str] = &[
    "",
    "/x",
    "/a/b/c",
    "/metrics",
    "/healthz",
    "/api/v1/namespaces/default/pods/p/log",
    "/.well-known/openid-configuration",
    "/Z9-_.~",
];

/// Validates `paths:`; `routes` are the validated routes, whose prefixes
/// give the paths the unauthenticated list must not cover entirely.
pub(super) fn paths(p: PathsFile, routes: &[RouteConfig]) -> Result<PathRules, Error> {
    let globs = |key: &str, list: &[String]| {
        list.iter()
            .enumerate()
            .map(|(i, g)| path_glob(&format!("{key}[{i}]"), g))
            .collect::<Result<Vec<_>, _>>()
    };
    let unauthenticated = globs("paths.unauthenticated", &p.unauthenticated)?;
    refuse_covering_everything(&unauthenticated, routes)?;
    Ok(PathRules {
        // An allow-list matching everything closes nothing, and is accepted.
        allow: globs("paths.allow", &p.allow)?,
        unauthenticated,
        allow_matrix_params: p
            .allow_matrix_params
            .unwrap_or(defaults::ALLOW_MATRIX_PARAMS),
    })
}

/// A glob over request paths: it must start with `/` and have no `//`, `.`
/// or `..` segment, none of which a normalised path has.
pub(super) fn path_glob(key: &str, pattern: &str) -> Result<Glob, Error> {
    if !pattern.starts_with('/') {
        return Err(Error::invalid(
            key,
            format!("{pattern:?} must start with '/' (request paths do)"),
        ));
    }
    if pattern.contains("//") {
        return Err(Error::invalid(
            key,
            format!("{pattern:?} has '//', which no normalised request path has"),
        ));
    }
    if pattern.split('/').any(|s| s == "." || s == "..") {
        return Err(Error::invalid(
            key,
            format!("{pattern:?} has a dot segment, which no normalised request path has"),
        ));
    }
    glob(key, pattern, true)
}

/// The probe paths below each route that the route serves (a longer route
/// takes its own), the bare prefix left out: a list that leaves only the
/// prefix itself guarded makes the route as public as one that leaves
/// nothing (`/**/?*`, or `[/admin, "/admin/**"]` for a route `/admin`).
fn probes(routes: &[RouteConfig]) -> Vec<(&str, Vec<String>)> {
    let table = RouteTable::new(
        routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.path_prefix.clone(), i))
            .collect(),
    );
    routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let base = r.path_prefix.trim_end_matches('/');
            let below = PROBE_SUFFIXES
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| format!("{base}{s}"))
                .filter(|p| table.select(p) == Some(&i))
                .collect();
            (r.path_prefix.as_str(), below)
        })
        .collect()
}

fn refuse_covering_everything(globs: &[Glob], routes: &[RouteConfig]) -> Result<(), Error> {
    const KEY: &str = "paths.unauthenticated";
    const WHY: &str = "authentication would never run; name the public paths, e.g. /healthz";
    let probes = probes(routes);
    // The prefix of the first route of which `set` matches every probe.
    let covered = |set: &GlobSet| {
        probes
            .iter()
            .find(|(_, below)| !below.is_empty() && below.iter().all(|p| set.is_match(p)))
            .map(|(prefix, _)| *prefix)
    };
    let what = |prefix: &str| {
        format!("every path the route {prefix:?} serves (but at most {prefix:?} itself)")
    };
    for (i, g) in globs.iter().enumerate() {
        if let Some(prefix) = covered(&set(std::slice::from_ref(g))) {
            return Err(Error::invalid(
                format!("{KEY}[{i}]"),
                format!("{:?} matches {}: {WHY}", g.glob(), what(prefix)),
            ));
        }
    }
    if globs.len() > 1
        && let Some(prefix) = covered(&set(globs))
    {
        return Err(Error::invalid(
            KEY,
            format!("together the globs match {}: {WHY}", what(prefix)),
        ));
    }
    Ok(())
}

/// The set the gate builds from the same globs.
fn set(globs: &[Glob]) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(g.clone());
    }
    // Each glob compiled alone; should the set not build, assume it covers
    // everything (refused) rather than nothing.
    b.build().unwrap_or_else(|_| {
        let mut all = GlobSetBuilder::new();
        if let Ok(g) = Glob::new("**") {
            all.add(g);
        }
        all.build().unwrap_or_default()
    })
}
