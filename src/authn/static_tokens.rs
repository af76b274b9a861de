//! The embedded token backend: tokens listed in the config (as the
//! apiserver's `--token-auth-file`), held only as SHA-256 digests.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use sha2::{Digest, Sha256};

use super::bearer::BearerToken;
use super::{TokenAnswer, TokenAuthenticator};
use crate::BoxFuture;
use crate::config::StaticToken;
use crate::identity::{AuthMethod, Identity};

/// Tokens from `static.tokens`.
#[derive(Debug, Default)]
pub struct StaticTokens {
    by_digest: HashMap<[u8; 32], Identity>,
}

impl StaticTokens {
    /// Builds the table from validated config entries.
    pub fn new(tokens: &[StaticToken]) -> Self {
        let by_digest = tokens
            .iter()
            .map(|t| {
                let id = Identity::new(
                    t.user.clone(),
                    t.uid.clone(),
                    t.groups.clone(),
                    BTreeMap::new(),
                    AuthMethod::Token,
                );
                (t.sha256, id)
            })
            .collect();
        Self { by_digest }
    }

    /// Whether no tokens are configured.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The identity of `token`, if listed.
    pub fn lookup(&self, token: &BearerToken<'_>) -> Option<Identity> {
        let digest: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
        self.by_digest.get(&digest).cloned()
    }
}

impl TokenAuthenticator for StaticTokens {
    fn authenticate<'a>(
        &'a self,
        token: &'a BearerToken<'_>,
        _: IpAddr,
    ) -> BoxFuture<'a, TokenAnswer> {
        let found = self.lookup(token);
        Box::pin(std::future::ready(Ok(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn listed_tokens_map_to_their_identity_and_others_to_none() {
        let yaml = r#"
tls: {cert_file: c, key_file: k}
routes: [{path_prefix: /, upstream: "http://127.0.0.1:1"}]
static:
  tokens:
    - {token: alpha, user: alice, uid: "42", groups: [dev]}
    - {token_sha256: "a6a97b8f1aabd7f4e7a9f5a5d9b1e3a1e8c0d1f2a3b4c5d6e7f8091a2b3c4d5e", user: bob}
"#;
        let cfg = Config::from_yaml(yaml).unwrap();
        let st = StaticTokens::new(&cfg.static_backend.tokens);
        let id = st.lookup(&BearerToken::from("alpha")).unwrap();
        assert_eq!(id.user(), "alice");
        assert_eq!(id.uid(), Some("42"));
        assert_eq!(id.groups(), ["dev", "system:authenticated"]);
        assert_eq!(id.method(), AuthMethod::Token);
        assert!(st.lookup(&BearerToken::from("alphA")).is_none());
    }

    #[test]
    fn hashed_entries_match_their_preimage() {
        let digest = hex::encode(Sha256::digest(b"beta"));
        let yaml = format!(
            "tls: {{cert_file: c, key_file: k}}\nroutes: [{{path_prefix: /, upstream: \"http://127.0.0.1:1\"}}]\nstatic: {{tokens: [{{token_sha256: \"{digest}\", user: bob}}]}}\n"
        );
        let cfg = Config::from_yaml(&yaml).unwrap();
        let st = StaticTokens::new(&cfg.static_backend.tokens);
        assert_eq!(st.lookup(&BearerToken::from("beta")).unwrap().user(), "bob");
    }
}
