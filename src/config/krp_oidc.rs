//! kube-rbac-proxy's `--oidc-*` flags (v0.21), mapped onto one
//! `authentication.jwt[]` issuer.
//!
//! kube-rbac-proxy builds the apiserver's JWT authenticator from them:
//! `issuer.url` = `--oidc-issuer`, `audiences` = [`--oidc-clientID`],
//! `claimMappings.username` = {`--oidc-username-claim` (default `email`),
//! `--oidc-username-prefix` (default none)}, `claimMappings.groups` =
//! {`--oidc-groups-claim` (default `groups`), `--oidc-groups-prefix`}, the
//! issuer's TLS trusted by `--oidc-ca-file` (default the system roots),
//! keys limited to `--oidc-sign-alg` (default RS256). With an OIDC issuer,
//! kube-rbac-proxy authenticates tokens with it *instead of* TokenReview,
//! so the mapping turns `token_review` off too: a token of another issuer
//! is refused, as there.

use std::path::PathBuf;

use clap::Args;

use super::Error;
use super::file::File;
use super::file::authn::{ClaimMappingsFile, IssuerFile, JwtFile, PrefixedClaimFile};

/// The `--oidc-*` flags.
#[derive(Args, Debug, Default, Clone)]
pub struct KrpOidcFlags {
    /// `authentication.jwt[0].issuer.url` (https).
    #[arg(long = "oidc-issuer", value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// `authentication.jwt[0].issuer.audiences[0]`.
    #[arg(long = "oidc-clientID", value_name = "ID")]
    pub oidc_client_id: Option<String>,
    /// `authentication.jwt[0].issuer.certificateAuthority` (the file's PEM).
    #[arg(long = "oidc-ca-file", value_name = "FILE")]
    pub oidc_ca_file: Option<PathBuf>,
    /// `claimMappings.username.claim` (default `email`).
    #[arg(long = "oidc-username-claim", value_name = "CLAIM")]
    pub oidc_username_claim: Option<String>,
    /// `claimMappings.groups.claim` (default `groups`).
    #[arg(long = "oidc-groups-claim", value_name = "CLAIM")]
    pub oidc_groups_claim: Option<String>,
    /// `claimMappings.username.prefix` (default none).
    #[arg(long = "oidc-username-prefix", value_name = "PREFIX")]
    pub oidc_username_prefix: Option<String>,
    /// `claimMappings.groups.prefix` (default none).
    #[arg(long = "oidc-groups-prefix", value_name = "PREFIX")]
    pub oidc_groups_prefix: Option<String>,
    /// Accepted key algorithms, repeatable: RS256 (default) or ES256.
    #[arg(long = "oidc-sign-alg", value_name = "ALG")]
    pub oidc_sign_alg: Vec<String>,
}

impl KrpOidcFlags {
    /// Whether any `--oidc-*` flag was given.
    pub fn any(&self) -> bool {
        self.oidc_issuer.is_some()
            || self.oidc_client_id.is_some()
            || self.oidc_ca_file.is_some()
            || self.oidc_username_claim.is_some()
            || self.oidc_groups_claim.is_some()
            || self.oidc_username_prefix.is_some()
            || self.oidc_groups_prefix.is_some()
            || !self.oidc_sign_alg.is_empty()
    }

    /// Adds the issuer to `f` (and turns TokenReview off), or refuses the
    /// flags by name.
    pub fn apply(&self, f: &mut File) -> Result<(), Error> {
        let Some(url) = self.oidc_issuer.clone() else {
            if self.any() {
                return Err(Error::invalid(
                    "--oidc-issuer",
                    "is required by the other --oidc-* flags",
                ));
            }
            return Ok(());
        };
        let client_id = self
            .oidc_client_id
            .clone()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                Error::invalid("--oidc-clientID", "must be set when --oidc-issuer is set")
            })?;
        if f.authentication.config_file.is_some() || !f.authentication.jwt.is_empty() {
            return Err(Error::invalid(
                "--oidc-issuer",
                "cannot be combined with authentication.jwt or authentication.config_file in the file",
            ));
        }
        let certificate_authority = match &self.oidc_ca_file {
            None => None,
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                Error::invalid(
                    "--oidc-ca-file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?),
        };
        let prefixed = |claim: &Option<String>, default: &str, prefix: &Option<String>| {
            Some(PrefixedClaimFile {
                claim: Some(claim.clone().unwrap_or_else(|| default.to_owned())),
                prefix: Some(prefix.clone().unwrap_or_default()),
                expression: None,
            })
        };
        f.authentication.jwt.push(JwtFile {
            issuer: IssuerFile {
                url: Some(url),
                discovery_url: None,
                audiences: vec![client_id],
                audience_match_policy: None,
                certificate_authority,
                egress_selector_type: None,
            },
            claim_validation_rules: Vec::new(),
            claim_mappings: Some(ClaimMappingsFile {
                username: prefixed(
                    &self.oidc_username_claim,
                    "email",
                    &self.oidc_username_prefix,
                ),
                groups: prefixed(&self.oidc_groups_claim, "groups", &self.oidc_groups_prefix),
                uid: None,
                extra: Vec::new(),
            }),
            user_validation_rules: Vec::new(),
        });
        f.authentication.signing_algs = Some(if self.oidc_sign_alg.is_empty() {
            vec!["RS256".to_owned()]
        } else {
            self.oidc_sign_alg.clone()
        });
        // kube-rbac-proxy: the OIDC authenticator replaces TokenReview.
        f.token_review.enabled = Some(false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::issuers::SigningAlg;

    fn flags(args: &[&str]) -> KrpOidcFlags {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            oidc: KrpOidcFlags,
        }
        let all = std::iter::once("x").chain(args.iter().copied());
        <Cli as clap::Parser>::try_parse_from(all)
            .expect("flags parse")
            .oidc
    }

    const BASE: &str = "tls: {cert_file: c.crt, key_file: k.key}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:8080\"}]\nkubernetes: {kubeconfig: k.yaml}\n";

    fn config(args: &[&str]) -> Result<Config, String> {
        let mut f = crate::config::parse_yaml(BASE).expect("base parses");
        flags(args).apply(&mut f).map_err(|e| e.to_string())?;
        Config::try_from(f).map_err(|e| e.to_string())
    }

    #[test]
    fn the_oidc_flags_become_one_issuer_and_token_review_goes_off() {
        let c =
            config(&["--oidc-issuer=https://idp.example", "--oidc-clientID=app"]).expect("valid");
        let i = &c.issuers[0];
        assert_eq!(c.issuers.len(), 1);
        assert_eq!(i.url, "https://idp.example");
        assert_eq!(
            i.discovery_url,
            "https://idp.example/.well-known/openid-configuration"
        );
        assert_eq!(i.audiences, ["app"]);
        assert_eq!(
            (i.username.claim.as_str(), i.username.prefix.as_str()),
            ("email", "")
        );
        let g = i.groups.as_ref().expect("groups");
        assert_eq!((g.claim.as_str(), g.prefix.as_str()), ("groups", ""));
        assert_eq!(i.algorithms, [SigningAlg::Rs256]);
        assert!(i.certificate_authority.is_none());
        let k = c.kubernetes.expect("kubernetes");
        assert!(
            k.token_review.is_none(),
            "no TokenReview, as kube-rbac-proxy"
        );

        let c = config(&[
            "--oidc-issuer=https://idp.example",
            "--oidc-clientID=app",
            "--oidc-username-claim=sub",
            "--oidc-username-prefix=oidc:",
            "--oidc-groups-claim=roles",
            "--oidc-groups-prefix=oidc:",
            "--oidc-sign-alg=ES256",
            "--oidc-sign-alg",
            "RS256",
        ])
        .expect("valid");
        let i = &c.issuers[0];
        assert_eq!(
            (i.username.claim.as_str(), i.username.prefix.as_str()),
            ("sub", "oidc:")
        );
        let g = i.groups.as_ref().expect("groups");
        assert_eq!((g.claim.as_str(), g.prefix.as_str()), ("roles", "oidc:"));
        assert_eq!(i.algorithms, [SigningAlg::Es256, SigningAlg::Rs256]);
    }

    #[test]
    fn bad_oidc_flags_are_refused_by_name() {
        let cases: [(&[&str], &str); 6] = [
            (&["--oidc-clientID=app"], "--oidc-issuer: is required"),
            (
                &["--oidc-issuer=https://idp.example"],
                "--oidc-clientID: must be set",
            ),
            (
                &["--oidc-issuer=http://idp.example", "--oidc-clientID=a"],
                "authentication.jwt[0].issuer.url: \"http://idp.example\": URL scheme must be https",
            ),
            (
                &[
                    "--oidc-issuer=https://i",
                    "--oidc-clientID=a",
                    "--oidc-sign-alg=HS256",
                ],
                "--oidc-sign-alg: \"HS256\" is not supported",
            ),
            (
                &[
                    "--oidc-issuer=https://i",
                    "--oidc-clientID=a",
                    "--oidc-ca-file=/nonexistent/ca",
                ],
                "--oidc-ca-file: cannot read /nonexistent/ca",
            ),
            (
                &[
                    "--oidc-issuer=https://i",
                    "--oidc-clientID=a",
                    "--oidc-groups-prefix=system:",
                ],
                "authentication.jwt[0].claimMappings.groups.prefix: must not start with system:",
            ),
        ];
        for (args, want) in cases {
            let got = config(args).expect_err("refused");
            assert!(got.starts_with(want), "{args:?}: {got}");
        }
    }
}
