//! What the caches did for one request, for the access log.

/// Which review cache a lookup went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// TokenReview results.
    Token,
    /// SubjectAccessReview decisions.
    Access,
}

impl Kind {
    /// The API kind, as named in errors.
    pub fn backend(self) -> &'static str {
        match self {
            Self::Token => "TokenReview",
            Self::Access => "SubjectAccessReview",
        }
    }
}

/// What a cache did for one lookup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lookup {
    /// Not consulted.
    #[default]
    None,
    /// Answered from the cache.
    Hit,
    /// Started an API call.
    Miss,
    /// Joined an API call already under way.
    Coalesced,
}

impl Lookup {
    /// The lower-case name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
        }
    }
}

/// The lookups made while serving one request (for the access log).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lookups {
    /// The token cache.
    pub token: Lookup,
    /// The access cache.
    pub access: Lookup,
}

tokio::task_local! {
    static LOOKUPS: std::cell::Cell<Lookups>;
}

/// Runs `f`, recording what the caches did for it.
pub(crate) async fn traced<F: Future>(f: F) -> (F::Output, Lookups) {
    LOOKUPS
        .scope(std::cell::Cell::new(Lookups::default()), async {
            let out = f.await;
            (out, LOOKUPS.with(std::cell::Cell::get))
        })
        .await
}

pub(super) fn note(kind: Kind, lookup: Lookup) {
    let _ = LOOKUPS.try_with(|c| {
        let mut l = c.get();
        match kind {
            Kind::Token => l.token = lookup,
            Kind::Access => l.access = lookup,
        }
        c.set(l);
    });
}
