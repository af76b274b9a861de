//! The body type of every response authgate sends, and constructors for the
//! responses it writes itself.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// The body of every response: an upstream's streamed body, or one of ours.
pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

/// A complete body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty response with `status`.
pub(crate) fn empty(status: StatusCode) -> Response<Body> {
    with_type(status, Bytes::new(), None)
}

/// A `text/plain` response.
pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    with_type(
        status,
        body.into(),
        Some(HeaderValue::from_static("text/plain; charset=utf-8")),
    )
}

/// A response with `body` and, when given, its `Content-Type`.
pub(crate) fn with_type(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: Option<HeaderValue>,
) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    if let Some(t) = content_type {
        resp.headers_mut().insert(CONTENT_TYPE, t);
    }
    resp
}
