//! `authentication:` as the operator writes it: external JWT issuers in the
//! shape of kube-apiserver's structured authentication configuration
//! (`AuthenticationConfiguration`, `apiserver.config.k8s.io/v1beta1` and
//! `v1`, KEP-3331), inline or in a file of that kind.
//!
//! The `jwt[]` items keep the Kubernetes spelling (`claimMappings`,
//! `certificateAuthority`, ...) so an apiserver's file can be used as it is.
//! CEL fields (`expression`, `valueExpression`, `userValidationRules`) are
//! parsed only to be refused by name in validation.

use std::path::PathBuf;

use serde::Deserialize;

use super::HumanDuration;

/// `authentication:`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticationFile {
    /// An `AuthenticationConfiguration` file (YAML or JSON), read at load.
    pub config_file: Option<PathBuf>,
    /// The same `jwt[]` items, inline.
    #[serde(default)]
    pub jwt: Vec<JwtFile>,
    /// How often each issuer's keys are fetched again. Default 60s.
    pub refresh: Option<HumanDuration>,
    /// Key algorithms, from kube-rbac-proxy's `--oidc-sign-alg` only (not
    /// a file key: an `AuthenticationConfiguration` issuer may use any
    /// algorithm authgate verifies).
    #[serde(skip)]
    pub signing_algs: Option<Vec<String>>,
}

/// An `AuthenticationConfiguration` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthenticationConfigurationFile {
    /// `apiserver.config.k8s.io/v1beta1` or `apiserver.config.k8s.io/v1`.
    pub api_version: Option<String>,
    /// `AuthenticationConfiguration`.
    pub kind: Option<String>,
    /// The issuers.
    #[serde(default)]
    pub jwt: Vec<JwtFile>,
    /// Anonymous authentication (refused: authgate has none).
    pub anonymous: Option<serde::de::IgnoredAny>,
}

/// `jwt[]`: one issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtFile {
    /// Who signs the tokens and for whom.
    pub issuer: IssuerFile,
    /// Claims that must hold (only the `{claim, requiredValue}` form).
    #[serde(default)]
    pub claim_validation_rules: Vec<ClaimValidationRuleFile>,
    /// How claims become the identity.
    pub claim_mappings: Option<ClaimMappingsFile>,
    /// CEL rules over the identity (refused).
    #[serde(default)]
    pub user_validation_rules: Vec<serde::de::IgnoredAny>,
}

/// `jwt[].issuer`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssuerFile {
    /// The `iss` of the tokens; `https` only.
    pub url: Option<String>,
    /// Where the discovery document is, when not under `url`.
    #[serde(rename = "discoveryURL")]
    pub discovery_url: Option<String>,
    /// Accepted `aud` values (at least one).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// `MatchAny` (the only policy).
    pub audience_match_policy: Option<String>,
    /// PEM CA bundle for the issuer's TLS; default the system roots.
    pub certificate_authority: Option<String>,
    /// The apiserver's egress selector (refused).
    pub egress_selector_type: Option<String>,
}

/// `jwt[].claimValidationRules[]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClaimValidationRuleFile {
    /// A claim that must be a string equal to `requiredValue`.
    pub claim: Option<String>,
    /// Its value.
    pub required_value: Option<String>,
    /// CEL (refused).
    pub expression: Option<String>,
    /// The message of a CEL rule (refused with it).
    pub message: Option<String>,
}

/// `jwt[].claimMappings`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimMappingsFile {
    /// The username.
    pub username: Option<PrefixedClaimFile>,
    /// The groups.
    pub groups: Option<PrefixedClaimFile>,
    /// The uid.
    pub uid: Option<ClaimFile>,
    /// Extra attributes (CEL only in Kubernetes: refused).
    #[serde(default)]
    pub extra: Vec<ExtraFile>,
}

/// `claimMappings.username` / `claimMappings.groups`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixedClaimFile {
    /// The claim.
    pub claim: Option<String>,
    /// Put before each value; required with `claim` (may be `""`).
    pub prefix: Option<String>,
    /// CEL (refused).
    pub expression: Option<String>,
}

/// `claimMappings.uid`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimFile {
    /// The claim.
    pub claim: Option<String>,
    /// CEL (refused).
    pub expression: Option<String>,
}

/// `claimMappings.extra[]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtraFile {
    /// The extra key.
    pub key: Option<String>,
    /// CEL (refused).
    pub value_expression: Option<String>,
}
