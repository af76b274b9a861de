//! The migration policy for an authenticated identity: a pure decision.
//!
//! Which credential a route reads is decided in
//! [`super::Authenticator::authenticate`]; once the identity is known, this
//! refuses the token of an identity pinned to mTLS and marks token use on a
//! `deprecated` route.
//!
//! Every lever (a `migration.mtls_required` entry, a route closed to
//! tokens) may be a dry run (`enforce: false`). [`admit`] computes the
//! refusal the same way either way; [`Decision::enforce`] is the one place
//! where the lever's `enforce` turns it into a refusal or a served request
//! to be counted.

use http::HeaderValue;

use super::Error;
use crate::config::{RouteAuth, TokenPolicy};
use crate::identity::{AuthMethod, Identity};
use crate::migration::Pin;

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

/// A lever's refusal, and whether the lever is enforced.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    /// Why the lever refuses.
    pub error: Error,
    /// `false`: a dry run; the request is served and counted instead.
    pub enforced: bool,
}

/// What the migration levers make of an identity on a route.
#[derive(Debug, PartialEq)]
pub struct Decision {
    /// What the response carries if it is served.
    pub notice: Notice,
    /// The refusal of a lever, if one refuses it.
    pub refusal: Option<Refusal>,
}

impl Decision {
    /// The one place where a lever's `enforce` decides: an enforced refusal
    /// is the error; a dry-run one is served, and handed back to be counted
    /// as the refusal enforcing it would be.
    pub fn enforce(self) -> Result<(Notice, Option<Error>), Error> {
        match self.refusal {
            Some(Refusal {
                error,
                enforced: true,
            }) => Err(error),
            Some(Refusal {
                error,
                enforced: false,
            }) => Ok((self.notice, Some(error))),
            None => Ok((self.notice, None)),
        }
    }
}

/// Admits `id` on a route with `route` auth (as configured, dry run or
/// not), or refuses it. `pin`: whether a `migration.mtls_required` entry
/// matches the identity. An enforced refusal wins over a dry-run one; of
/// two, the reason is the one enforcing both would give (a closed route
/// refuses a token before the identity is known).
pub fn admit(route: RouteAuth, id: &Identity, pin: Pin) -> Decision {
    let refuse = |error, enforced| Some(Refusal { error, enforced });
    let pinned = || Error::MtlsRequired {
        user: id.user().to_owned(),
    };
    match id.method() {
        AuthMethod::Mtls => Decision {
            notice: Notice::None,
            refusal: None,
        },
        AuthMethod::Token => {
            let closed = route.token == TokenPolicy::Forbidden;
            let refusal = match pin {
                Pin::Enforced => refuse(pinned(), true),
                // The authenticator never reads a token on an enforced
                // closed route; should one get here regardless, it is refused.
                _ if closed && route.enforce => refuse(Error::TokenForbidden, true),
                // Enforced, the route refuses the token before anyone asks
                // whose it is: the same reason first here.
                Pin::DryRun | Pin::No if closed => refuse(Error::TokenForbidden, false),
                Pin::DryRun => refuse(pinned(), false),
                Pin::No => None,
            };
            Decision {
                notice: match route.token {
                    TokenPolicy::Deprecated => Notice::TokenDeprecated,
                    TokenPolicy::Allowed | TokenPolicy::Forbidden => Notice::None,
                },
                refusal,
            }
        }
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
            let route = RouteAuth {
                mtls: true,
                token,
                enforce: true,
            };
            let pin = if pinned { Pin::Enforced } else { Pin::No };
            assert_eq!(
                admit(route, &id(method), pin).enforce(),
                want.map(|n| (n, None)),
                "{token:?} {method:?} pinned={pinned}"
            );
        }
    }

    /// A dry run computes the very refusal enforcing would make, and serves.
    #[test]
    fn a_dry_run_serves_what_enforcing_refuses_and_says_why() {
        use AuthMethod::{Mtls, Token};
        let closed = |enforce| RouteAuth {
            mtls: true,
            token: TokenPolicy::Forbidden,
            enforce,
        };
        let open = RouteAuth::default();
        let pinned = || Error::MtlsRequired { user: "u".into() };
        for (route, method, pin) in [
            (closed(false), Token, Pin::No),
            (closed(false), Token, Pin::DryRun),
            (closed(false), Mtls, Pin::DryRun),
            (open, Token, Pin::DryRun),
            (open, Token, Pin::No),
            (open, Mtls, Pin::DryRun),
        ] {
            let enforced_route = RouteAuth {
                enforce: true,
                ..route
            };
            let enforced_pin = if pin == Pin::DryRun {
                Pin::Enforced
            } else {
                pin
            };
            let dry = admit(route, &id(method), pin).enforce();
            let enforced = admit(enforced_route, &id(method), enforced_pin).enforce();
            let ctx = format!("{route:?} {method:?} {pin:?}");
            match enforced {
                Ok((notice, None)) => assert_eq!(dry, Ok((notice, None)), "{ctx}"),
                Err(_) => {
                    // The reason enforcing gives: the route refuses first.
                    let want = if route.token == TokenPolicy::Forbidden {
                        Error::TokenForbidden
                    } else {
                        pinned()
                    };
                    assert_eq!(dry, Ok((Notice::None, Some(want))), "{ctx}");
                }
                Ok(other) => panic!("{ctx}: {other:?}"),
            }
        }
        // Enforced levers win over dry-run ones.
        assert_eq!(
            admit(closed(false), &id(Token), Pin::Enforced).enforce(),
            Err(pinned())
        );
        assert_eq!(
            admit(closed(true), &id(Token), Pin::DryRun).enforce(),
            Err(Error::TokenForbidden)
        );
    }
}
