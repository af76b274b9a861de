//! Failures of a remote decision backend (the Kubernetes API), shared by the
//! token and access reviewers. These always end in 503: the request is
//! neither allowed nor denied, and the client may retry.

use std::time::Duration;

/// Why a backend could not give an answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// No answer within the configured timeout (including waiting for a free
    /// API-call slot).
    #[error("{backend} did not answer in time")]
    Timeout {
        /// Which backend, e.g. `TokenReview`.
        backend: &'static str,
    },
    /// The API answered 429 (or the client-side rate limit is exhausted).
    #[error("{backend} is throttled")]
    Throttled {
        /// Which backend.
        backend: &'static str,
        /// How long the API asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The API could not be reached or answered with a server error.
    #[error("{backend} is unreachable: {detail}")]
    Unreachable {
        /// Which backend.
        backend: &'static str,
        /// Token-free cause.
        detail: String,
    },
    /// The API answered something that is not a usable review.
    #[error("{backend} gave an unusable answer: {detail}")]
    BadResponse {
        /// Which backend.
        backend: &'static str,
        /// Token-free cause.
        detail: String,
    },
}

impl BackendError {
    /// How long the client should wait before retrying: the API's own
    /// `Retry-After` when it gave one, within 1 s..60 s (an API asking for
    /// an hour must not park every client that long), else 1 s.
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Throttled {
                retry_after: Some(d),
                ..
            } => (*d).clamp(Duration::from_secs(1), Duration::from_secs(60)),
            _ => Duration::from_secs(1),
        }
    }
}
