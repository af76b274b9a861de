//! kube-rbac-proxy's `authorization.rewrites` (in `--config-file`), as
//! `routes[0].rewrites`.
//!
//! kube-rbac-proxy templates `resourceAttributes` with every value of the
//! query parameter and of the header, asks one SubjectAccessReview per
//! value and forwards the request as sent; authgate does the same checks
//! and then pins the parameter to the authorized values (`consume: pin`),
//! or with `insecurePassthrough: true` keeps it as sent (`consume: keep`,
//! still refusing non-canonical spellings).

use serde::Deserialize;

use super::Error;
use super::file::RewritesFile;

/// `authorization.rewrites`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct KrpRewrites {
    by_query_parameter: Option<KrpName>,
    #[serde(rename = "byHttpHeader")]
    by_http_header: Option<KrpName>,
    #[serde(default)]
    insecure_passthrough: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KrpName {
    name: Option<String>,
}

impl KrpRewrites {
    /// The route's `rewrites`; `templated` says whether the file has
    /// `resourceAttributes` to template.
    pub(super) fn translate(self, templated: bool) -> Result<RewritesFile, Error> {
        const KEY: &str = "--config-file authorization.rewrites";
        // kube-rbac-proxy ignores an empty name, as if the source were unset.
        let name = |n: Option<KrpName>| n.and_then(|n| n.name).filter(|n| !n.is_empty());
        let (query_parameter, header) = (name(self.by_query_parameter), name(self.by_http_header));
        if query_parameter.is_none() && header.is_none() {
            return Err(Error::invalid(
                KEY,
                "needs byQueryParameter.name or byHttpHeader.name",
            ));
        }
        if !templated {
            // kube-rbac-proxy then ignores the rewrites and checks the path.
            return Err(Error::invalid(
                KEY,
                "needs authorization.resourceAttributes with {{ .Value }} in a field \
                 (kube-rbac-proxy would ignore the rewrites and check the path); remove one or add the other",
            ));
        }
        Ok(RewritesFile {
            query_parameter,
            header,
            consume: Some(
                if self.insecure_passthrough {
                    "keep"
                } else {
                    "pin"
                }
                .to_owned(),
            ),
        })
    }
}
