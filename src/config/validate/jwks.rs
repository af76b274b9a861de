//! `token_review.jwks` -> [`JwksConfig`]: local JWT verification settings.

use std::time::Duration;

use super::duration;
use crate::config::file::JwksFile;
use crate::config::{Error, JwksConfig, defaults};

/// Keys are fetched at most this often by the periodic refresh.
const MIN_REFRESH: Duration = Duration::from_secs(10);

/// Validates `token_review.jwks` of an enabled `token_review`. `audiences`
/// are `token_review.audiences` (the default) and `max_entries` the size of
/// `token_review.cache`, which the verified tokens share.
pub(super) fn jwks(
    j: JwksFile,
    audiences: &[String],
    max_entries: u64,
) -> Result<Option<JwksConfig>, Error> {
    if let Some(iss) = &j.issuer
        && (iss.is_empty() || iss.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(Error::invalid(
            "token_review.jwks.issuer",
            "must be a non-empty string without spaces or control characters",
        ));
    }
    if j.audiences.iter().any(String::is_empty) {
        return Err(Error::invalid(
            "token_review.jwks.audiences",
            "must not contain an empty audience",
        ));
    }
    let refresh = duration(
        "token_review.jwks.refresh",
        j.refresh,
        defaults::JWKS_REFRESH,
    )?;
    if refresh < MIN_REFRESH {
        return Err(Error::invalid(
            "token_review.jwks.refresh",
            "must be at least 10s",
        ));
    }
    let revalidate_after = duration(
        "token_review.jwks.revalidate_after",
        j.revalidate_after,
        defaults::JWKS_REVALIDATE_AFTER,
    )?;
    if !j.enabled.unwrap_or(false) {
        return Ok(None);
    }
    if max_entries == 0 {
        return Err(Error::invalid(
            "token_review.jwks.enabled",
            "needs token_review.cache.max_entries above 0 (revalidate_after tracks cached tokens)",
        ));
    }
    let audiences = audiences_within_token_review(j.audiences, audiences)?;
    Ok(Some(JwksConfig {
        issuer: j.issuer,
        audiences,
        refresh,
        revalidate_after,
        review_bad_signatures: j
            .review_bad_signatures
            .unwrap_or(defaults::JWKS_REVIEW_BAD_SIGNATURES),
    }))
}

/// Local verification may not accept an audience TokenReview would refuse.
/// With `token_review.audiences` set, `jwks.audiences` must be among them
/// (default: all of them). Without, TokenReview checks the apiserver's own
/// API audiences (`--api-audiences`), which authgate cannot see, so
/// `jwks.audiences` is refused and the issuer is required (empty here),
/// which is kube-apiserver's default API audience.
fn audiences_within_token_review(
    jwks: Vec<String>,
    token_review: &[String],
) -> Result<Vec<String>, Error> {
    const KEY: &str = "token_review.jwks.audiences";
    if token_review.is_empty() {
        if jwks.is_empty() {
            return Ok(Vec::new());
        }
        return Err(Error::invalid(
            KEY,
            "needs token_review.audiences (without them TokenReview checks the API server's own audiences, which may not include these); list them there too, or leave both unset to accept the issuer",
        ));
    }
    if let Some(extra) = jwks.iter().find(|a| !token_review.contains(a)) {
        return Err(Error::invalid(
            KEY,
            format!("{extra:?} is not in token_review.audiences"),
        ));
    }
    Ok(if jwks.is_empty() {
        token_review.to_vec()
    } else {
        jwks
    })
}

/// `token_review.jwks.enabled` when TokenReview itself is off: refused, since
/// every token that cannot be verified locally falls back to TokenReview.
pub(super) fn refuse_without_token_review(j: &JwksFile) -> Result<(), Error> {
    if j.enabled == Some(true) {
        return Err(Error::invalid(
            "token_review.jwks.enabled",
            "needs token_review.enabled (tokens that fail local verification go to TokenReview)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;

    const BASE: &str = "tls: {cert_file: c.crt, key_file: k.key}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:8080\"}]\nkubernetes: {kubeconfig: k.yaml}\n";

    fn load(extra: &str) -> Result<Config, String> {
        Config::from_yaml(&format!("{BASE}{extra}")).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_off_then_sixty_seconds_each() {
        let c = load("").unwrap();
        let tr = c.kubernetes.unwrap().token_review.unwrap();
        assert!(tr.jwks.is_none());

        let c = load("token_review: {audiences: [a], jwks: {enabled: true}}\n").unwrap();
        let j = c.kubernetes.unwrap().token_review.unwrap().jwks.unwrap();
        assert_eq!(j.issuer, None);
        assert_eq!(j.audiences, ["a"]);
        assert_eq!(j.refresh, Duration::from_secs(60));
        assert_eq!(j.revalidate_after, Duration::from_secs(60));
        assert!(!j.review_bad_signatures);

        let c = load(
            "token_review:\n  audiences: [a, b]\n  jwks: {enabled: true, issuer: \"https://k\", audiences: [b], refresh: 5m, revalidate_after: 1s}\n",
        )
        .unwrap();
        let j = c.kubernetes.unwrap().token_review.unwrap().jwks.unwrap();
        assert_eq!(j.issuer.as_deref(), Some("https://k"));
        assert_eq!(j.audiences, ["b"]);
        assert_eq!(j.refresh, Duration::from_secs(300));
        assert_eq!(j.revalidate_after, Duration::from_secs(1));
    }

    /// Local verification accepts no audience TokenReview would refuse:
    /// within `token_review.audiences`, or, without them, the issuer only
    /// (kube-apiserver's default API audience).
    #[test]
    fn jwks_audiences_stay_within_what_token_review_accepts() {
        let jwks = |yaml: &str| {
            let c = load(yaml).unwrap();
            c.kubernetes.unwrap().token_review.unwrap().jwks.unwrap()
        };
        let j = jwks("token_review: {jwks: {enabled: true}}\n");
        assert!(j.audiences.is_empty(), "empty: the discovered issuer");
        let j = jwks("token_review: {audiences: [a, b], jwks: {enabled: true}}\n");
        assert_eq!(j.audiences, ["a", "b"]);
        let j = jwks("token_review: {audiences: [a, b], jwks: {enabled: true, audiences: [b]}}\n");
        assert_eq!(j.audiences, ["b"]);
        let j = jwks("token_review: {jwks: {enabled: true, review_bad_signatures: true}}\n");
        assert!(j.review_bad_signatures);
        for yaml in [
            "token_review: {jwks: {enabled: true, audiences: [\"https://kubernetes.default.svc\"]}}\n",
            "token_review: {audiences: [], jwks: {enabled: true, audiences: [x]}}\n",
        ] {
            let got = load(yaml).unwrap_err();
            assert!(
                got.starts_with("token_review.jwks.audiences: needs token_review.audiences"),
                "{yaml}: {got}"
            );
        }
        let got = load("token_review: {audiences: [a], jwks: {enabled: true, audiences: [b]}}\n")
            .unwrap_err();
        assert!(
            got.contains("\"b\" is not in token_review.audiences"),
            "{got}"
        );
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let cases = [
            (
                "token_review: {jwks: {enabled: true, refresh: 0s}}\n",
                "token_review.jwks.refresh: must be greater than zero",
            ),
            (
                "token_review: {jwks: {enabled: true, refresh: 5s}}\n",
                "token_review.jwks.refresh: must be at least 10s",
            ),
            (
                "token_review: {jwks: {enabled: true, revalidate_after: 0s}}\n",
                "token_review.jwks.revalidate_after: must be greater than zero",
            ),
            (
                "token_review: {jwks: {enabled: true, issuer: \"\"}}\n",
                "token_review.jwks.issuer:",
            ),
            (
                "token_review: {jwks: {enabled: true, audiences: [\"\"]}}\n",
                "token_review.jwks.audiences: must not contain an empty audience",
            ),
            (
                "token_review: {cache: {max_entries: 0}, jwks: {enabled: true}}\n",
                "token_review.jwks.enabled: needs token_review.cache.max_entries above 0",
            ),
            (
                "token_review: {enabled: false, jwks: {enabled: true}}\n",
                "token_review.jwks.enabled: needs token_review.enabled",
            ),
            (
                "token_review: {audiences: [a], jwks: {enabled: true, audiences: [a, b]}}\n",
                "token_review.jwks.audiences: \"b\" is not in token_review.audiences",
            ),
            (
                "token_review: {jwks: {enabled: true, audiences: [\"https://authgate\"]}}\n",
                "token_review.jwks.audiences: needs token_review.audiences",
            ),
            ("token_review: {jwks: {enable: true}}\n", "unknown field"),
        ];
        for (yaml, want) in cases {
            let got = load(yaml).unwrap_err();
            assert!(got.contains(want), "{yaml}: {got}");
        }
        let no_kube = "tls: {cert_file: c.crt, key_file: k.key}\nroutes: [{path_prefix: /, upstream: \"http://127.0.0.1:8080\"}]\ntoken_review: {jwks: {enabled: true}}\n";
        let got = Config::from_yaml(no_kube).unwrap_err().to_string();
        assert!(
            got.contains("token_review.jwks.enabled: needs a kubernetes section"),
            "{got}"
        );
    }
}
