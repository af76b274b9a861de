//! A [`Refusal`] becomes a response, and nothing else happens here.
//!
//! The body is a small JSON object `{"error", "reason", "message"}`; the
//! headers are the refusal's challenge and `Retry-After`. What the status,
//! reason and message are was decided in [`super::error`]. Nothing here logs.

use http::Response;
use http::header::{CONNECTION, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};

use super::error::Refusal;
use crate::body::{self, Body};

/// The response for `refusal`.
pub fn refusal(refusal: &Refusal) -> Response<Body> {
    let json = serde_json::json!({
        "error": refusal.status.canonical_reason().unwrap_or("Error"),
        "reason": refusal.reason.as_str(),
        "message": refusal.message,
    });
    let mut resp = body::with_type(
        refusal.status,
        json.to_string(),
        Some(HeaderValue::from_static("application/json")),
    );
    let h = resp.headers_mut();
    if let Some(c) = &refusal.challenge {
        h.insert(WWW_AUTHENTICATE, c.clone());
    }
    if let Some(secs) = refusal.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if refusal.close {
        // HTTP/2 drops connection headers; its connection gets a GOAWAY.
        h.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::gate::error::Error;

    fn body_of(resp: Response<Body>) -> serde_json::Value {
        let bytes = futures_util::FutureExt::now_or_never(resp.into_body().collect())
            .unwrap()
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn the_response_carries_the_refusal_and_nothing_else() {
        let r = Error::Authn(crate::authn::Error::MissingCredentials).refusal();
        let resp = refusal(&r);
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()[WWW_AUTHENTICATE],
            r#"Bearer realm="authgate""#
        );
        assert!(resp.headers().get(RETRY_AFTER).is_none());
        assert_eq!(resp.headers()["content-type"], "application/json");
        let body = body_of(resp);
        assert_eq!(body["error"], "Unauthorized");
        assert_eq!(body["reason"], "missing_credentials");
        assert_eq!(body["message"], r.message);

        let r = Error::Internal("request handler panicked").refusal();
        let resp = refusal(&r);
        assert_eq!(resp.status(), 500);
        assert!(resp.headers().get(RETRY_AFTER).is_none());
        assert_eq!(body_of(resp)["reason"], "internal_error");
    }
}
