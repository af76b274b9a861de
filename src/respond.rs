//! The one place where an error becomes an HTTP response.
//!
//! Every refusal is one of 400, 401, 403, 404, 502, 503 or 504 with a small
//! JSON body `{"error", "reason", "message"}`. Messages name users, verbs and
//! paths, never a token, and never internal addresses or causes (those go to
//! the log). Nothing here logs.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::authn;
use crate::authz;
use crate::backend::BackendError;
use crate::gate::Error;
use crate::proxy::{self, Body};

/// The response for `err`.
pub fn error_response(err: &Error) -> Response<Body> {
    let status = status(err);
    let mut resp = json(status, err.reason(), &public_message(err));
    let h = resp.headers_mut();
    match err {
        Error::Authn(authn::Error::Backend(b)) | Error::Authz(authz::Error::Backend(b)) => {
            h.insert(RETRY_AFTER, retry_after(b));
        }
        Error::Internal(_) => {
            h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        Error::Authn(e) => {
            h.insert(WWW_AUTHENTICATE, www_authenticate(e));
        }
        Error::BadRequest(_)
        | Error::NoRoute(_)
        | Error::SpoofedIdentity(_)
        | Error::Authz(_)
        | Error::Upstream(_) => {}
    }
    resp
}

/// The status code for `err`.
pub fn status(err: &Error) -> StatusCode {
    match err {
        Error::BadRequest(_) => StatusCode::BAD_REQUEST,
        Error::NoRoute(_) => StatusCode::NOT_FOUND,
        Error::SpoofedIdentity(_) => StatusCode::FORBIDDEN,
        Error::Authn(authn::Error::Backend(_)) | Error::Authz(authz::Error::Backend(_)) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::Authn(_) => StatusCode::UNAUTHORIZED,
        Error::Authz(authz::Error::Denied { .. }) => StatusCode::FORBIDDEN,
        Error::Upstream(proxy::Error::Unavailable { .. }) => StatusCode::BAD_GATEWAY,
        Error::Upstream(proxy::Error::RequestBody(_)) => StatusCode::BAD_REQUEST,
        Error::Upstream(proxy::Error::Timeout { .. }) => StatusCode::GATEWAY_TIMEOUT,
        Error::Internal(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// What the client is told: enough to act on, nothing internal.
fn public_message(err: &Error) -> String {
    match err {
        Error::Authn(authn::Error::Backend(b)) => {
            format!(
                "authentication is unavailable ({}); retry later",
                b.reason()
            )
        }
        Error::Authz(authz::Error::Backend(b)) => {
            format!("authorization is unavailable ({}); retry later", b.reason())
        }
        Error::Upstream(proxy::Error::Unavailable { .. }) => "the upstream is unavailable".into(),
        Error::Upstream(proxy::Error::RequestBody(_)) => "the request body is malformed".into(),
        Error::Upstream(proxy::Error::Timeout { .. }) => {
            "the upstream did not answer in time".into()
        }
        Error::Internal(_) => "internal error; retry later".into(),
        Error::BadRequest(_)
        | Error::NoRoute(_)
        | Error::SpoofedIdentity(_)
        | Error::Authn(_)
        | Error::Authz(_) => err.to_string(),
    }
}

fn www_authenticate(e: &authn::Error) -> HeaderValue {
    match e {
        authn::Error::InvalidToken(_) | authn::Error::TokenRejected => {
            HeaderValue::from_static(r#"Bearer realm="authgate", error="invalid_token""#)
        }
        _ => HeaderValue::from_static(r#"Bearer realm="authgate""#),
    }
}

fn retry_after(b: &BackendError) -> HeaderValue {
    HeaderValue::from(b.retry_after().as_secs().max(1))
}

/// A JSON error response.
pub fn json(status: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({
        "error": status.canonical_reason().unwrap_or("Error"),
        "reason": reason,
        "message": message,
    });
    let mut resp = Response::new(full(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// An empty response with `status`.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

/// A complete body.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::authn::bearer::Malformed;

    fn body_of(resp: Response<Body>) -> serde_json::Value {
        let bytes = futures_util::FutureExt::now_or_never(resp.into_body().collect())
            .unwrap()
            .unwrap()
            .to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn every_error_kind_has_its_status_reason_and_headers() {
        let throttled = BackendError::Throttled {
            backend: "TokenReview",
            retry_after: Some(Duration::from_secs(7)),
        };
        type Case = (
            Error,
            u16,
            &'static str,
            Option<(&'static str, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (Error::BadRequest("x".into()), 400, "bad_request", None),
            (Error::NoRoute("/x".into()), 404, "no_route", None),
            (
                Error::Authn(authn::Error::MissingCredentials),
                401,
                "missing_credentials",
                Some(("www-authenticate", r#"Bearer realm="authgate""#)),
            ),
            (
                Error::Authn(authn::Error::InvalidToken(Malformed::Empty)),
                401,
                "invalid_token",
                Some((
                    "www-authenticate",
                    r#"Bearer realm="authgate", error="invalid_token""#,
                )),
            ),
            (
                Error::Authn(authn::Error::Backend(throttled)),
                503,
                "backend_throttled",
                Some(("retry-after", "7")),
            ),
            (
                Error::Authz(authz::Error::Backend(BackendError::Timeout {
                    backend: "SAR",
                })),
                503,
                "backend_timeout",
                Some(("retry-after", "1")),
            ),
            (
                Error::Authz(authz::Error::Denied {
                    user: "alice".into(),
                    verb: "get".into(),
                    target: "path \"/admin\"".into(),
                    reason: String::new(),
                }),
                403,
                "forbidden",
                None,
            ),
            (
                Error::Upstream(proxy::Error::Unavailable {
                    upstream: "10.0.0.1:80".into(),
                    detail: "refused".into(),
                }),
                502,
                "upstream_error",
                None,
            ),
            (
                Error::Internal("panic"),
                503,
                "internal_error",
                Some(("retry-after", "1")),
            ),
        ];
        for (err, code, reason, header) in cases {
            let resp = error_response(&err);
            assert_eq!(resp.status().as_u16(), code, "{err:?}");
            if let Some((k, v)) = header {
                assert_eq!(resp.headers().get(k).unwrap(), v, "{err:?}");
            }
            let body = body_of(resp);
            assert_eq!(body["reason"], reason);
            assert!(!body["message"].as_str().unwrap().contains("10.0.0.1"));
        }
    }
}
