//! Adding a flush to the revocation object: get, modify, replace at the
//! `resourceVersion` read (optimistic concurrency, as `kubectl edit` does),
//! again on a 409 Conflict. Needs `get` and `update` on the one object.

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;

use super::object::{self, BadFlush, Written};

/// Attempts before a run of conflicts is given up on.
const ATTEMPTS: usize = 5;

/// Why a flush could not be written to the object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object does not exist (authgate does not create it: `create`
    /// cannot be limited to one name by RBAC).
    #[error("the revocation object {0} does not exist (kubectl apply -k deploy/base creates it)")]
    Missing(String),
    /// The flush or the object's data is unusable.
    #[error("{0}")]
    Bad(#[from] BadFlush),
    /// Other writers kept changing the object.
    #[error("the revocation object kept changing under {ATTEMPTS} attempts (409 Conflict)")]
    Conflicts,
    /// No answer in time.
    #[error("the API did not answer within {0:?}")]
    Timeout(Duration),
    /// The API refused or failed (RBAC, down).
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// Adds a flush of `user` (or of everything) to the ConfigMap `name` of
/// `api`, each call bounded by `timeout`.
pub async fn request_flush(
    api: &Api<ConfigMap>,
    name: &str,
    user: Option<&str>,
    timeout: Duration,
) -> Result<Written, Error> {
    for _ in 0..ATTEMPTS {
        let mut cm = match bounded(timeout, api.get(name)).await? {
            Ok(cm) => cm,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let ns = api.namespace().unwrap_or_default();
                return Err(Error::Missing(format!("{ns}/{name}")));
            }
            Err(e) => return Err(e.into()),
        };
        let (data, written) = object::updated(&cm.data.take().unwrap_or_default(), user)?;
        cm.data = Some(data);
        match bounded(timeout, api.replace(name, &PostParams::default(), &cm)).await? {
            Ok(_) => return Ok(written),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Conflicts)
}

async fn bounded<T>(timeout: Duration, f: impl Future<Output = T>) -> Result<T, Error> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| Error::Timeout(timeout))
}
