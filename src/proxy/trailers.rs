//! Request trailers are dropped before a request goes upstream.
//!
//! A trailer is a header field that arrives after the body (HTTP/2
//! HEADERS at the end of a stream, or HTTP/1.1 chunked trailers, which
//! hyper turns into the same frame). Nothing authgate strips from the
//! header map is stripped there, so a client could send `X-Remote-User` or
//! `Authorization` as a trailer and an HTTP/2 upstream that merges trailers
//! into its headers would believe it. None of the protocols authgate
//! carries need request trailers (gRPC uses response trailers, which pass),
//! so they are dropped whole, not filtered: there is no spelling to miss.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use hyper::body::{Body, Frame, SizeHint};

/// `B` without its trailers.
#[derive(Debug)]
pub struct NoTrailers<B>(pub B);

impl<B: Body + Unpin> Body for NoTrailers<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        loop {
            match ready!(Pin::new(&mut self.0).poll_frame(cx)) {
                Some(Ok(frame)) if frame.is_trailers() => {}
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::HeaderMap;
    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    #[tokio::test]
    async fn data_passes_and_trailers_do_not() {
        let mut t = HeaderMap::new();
        t.insert("x-remote-user", "admin".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::trailers(t)),
            Ok(Frame::data(Bytes::from_static(b"b"))),
        ];
        let body = NoTrailers(StreamBody::new(futures_util::stream::iter(frames)));
        let got = body.collect().await.unwrap();
        assert!(got.trailers().is_none());
        assert_eq!(got.to_bytes(), Bytes::from_static(b"ab"));
    }
}
