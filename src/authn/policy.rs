//! The migration policy for an authenticated identity: a pure decision.
//!
//! Which credential a route reads is decided in
//! [`super::Authenticator::authenticate`]; once the identity is known, this
//! refuses the token of an identity pinned to mTLS and marks token use on a
//! `deprecated` route.

use http::HeaderValue;

use super::Error;
use crate::config::{RouteAuth, TokenPolicy};
use crate::identity::{AuthMethod, Identity};

/// The `Warning` value of a token request on a `token: deprecated` route
/// (RFC 9111 code 299, "miscellaneous persistent warning").
pub const DEPRECATED_TOKEN_WARNING: HeaderValue = HeaderValue::from_static(
    "299 authgate \"bearer token authentication is deprecated on this route; use a client certificate\"",
);

/// What the response must carry when the request is admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Nothing.
    None,
    /// A bearer token was used where tokens are deprecated.
    TokenDeprecated,
}

/// Admits `id` on a route with `route` auth, or refuses it. `pinned`: the
/// identity matches `migration.mtls_required`.
pub fn admit(route: RouteAuth, id: &Identity, pinned: bool) -> Result<Notice, Error> {
    match id.method() {
        AuthMethod::Mtls => Ok(Notice::None),
        AuthMethod::Token if pinned => Err(Error::MtlsRequired {
            user: id.user().to_owned(),
        }),
        AuthMethod::Token => match route.token {
            TokenPolicy::Allowed => Ok(Notice::None),
            TokenPolicy::Deprecated => Ok(Notice::TokenDeprecated),
            // The authenticator never reads a token on such a route; should
            // one get here regardless, it is refused.
            TokenPolicy::Forbidden => Err(Error::TokenForbidden),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn id(method: AuthMethod) -> Identity {
        Identity::new("u".into(), None, vec![], BTreeMap::new(), method)
    }

    #[test]
    fn every_policy_and_method_and_pinning() {
        use AuthMethod::{Mtls, Token};
        use TokenPolicy::{Allowed, Deprecated, Forbidden};
        let pinned_err = || Err(Error::MtlsRequired { user: "u".into() });
        for (token, method, pinned, want) in [
            (Allowed, Mtls, false, Ok(Notice::None)),
            (Allowed, Mtls, true, Ok(Notice::None)),
            (Allowed, Token, false, Ok(Notice::None)),
            (Allowed, Token, true, pinned_err()),
            (Deprecated, Mtls, false, Ok(Notice::None)),
            (Deprecated, Token, false, Ok(Notice::TokenDeprecated)),
            (Deprecated, Token, true, pinned_err()),
            (Forbidden, Mtls, true, Ok(Notice::None)),
            (Forbidden, Token, false, Err(Error::TokenForbidden)),
            (Forbidden, Token, true, pinned_err()),
        ] {
            let route = RouteAuth { mtls: true, token };
            assert_eq!(
                admit(route, &id(method), pinned),
                want,
                "{token:?} {method:?} pinned={pinned}"
            );
        }
    }
}
