//! `authentication.jwt[]` validated: the external JWT issuers whose tokens
//! authgate verifies itself, never through TokenReview.

use std::time::Duration;

/// A signature algorithm an issuer's keys may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigningAlg {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
}

impl SigningAlg {
    /// Both: what an `AuthenticationConfiguration` issuer may use here.
    pub const ALL: &[Self] = &[Self::Rs256, Self::Es256];

    /// By its JOSE name (`RS256`, `ES256`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "RS256" => Some(Self::Rs256),
            "ES256" => Some(Self::Es256),
            _ => None,
        }
    }
}

/// `claimMappings.username` / `groups`: a claim and the prefix put before
/// each of its values (empty: none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixedClaim {
    /// The claim.
    pub claim: String,
    /// The prefix.
    pub prefix: String,
}

/// One external issuer.
#[derive(Clone, Debug)]
pub struct IssuerConfig {
    /// `jwt[i]`, for logs and errors.
    pub key: String,
    /// The exact `iss` its tokens carry (`https`).
    pub url: String,
    /// The discovery document (`<url>/.well-known/openid-configuration`
    /// unless `discoveryURL`).
    pub discovery_url: String,
    /// Accepted `aud` values: a token must carry at least one (MatchAny).
    pub audiences: Vec<String>,
    /// The issuer's TLS trust: PEM certificates (validated), or `None` for
    /// the system roots.
    pub certificate_authority: Option<String>,
    /// The username claim and its prefix.
    pub username: PrefixedClaim,
    /// The groups claim and its prefix, if mapped.
    pub groups: Option<PrefixedClaim>,
    /// The uid claim, if mapped.
    pub uid_claim: Option<String>,
    /// `claimValidationRules[] {claim, requiredValue}`: string claims that
    /// must have these values.
    pub required_claims: Vec<(String, String)>,
    /// Key algorithms accepted.
    pub algorithms: Vec<SigningAlg>,
    /// Key refresh interval (`authentication.refresh`).
    pub refresh: Duration,
}
