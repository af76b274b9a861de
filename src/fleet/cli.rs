//! `authgate flush`: adds a flush to the revocation object from outside the
//! fleet, as an operator's kubectl would (same kubeconfig rules).

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use super::object::Written;
use super::write;
use crate::config::{Config, defaults};

/// Deadline of each API call.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What to flush, and where the object is.
#[derive(Debug, Default)]
pub struct FlushArgs {
    /// The user to flush; `None`: everything.
    pub user: Option<String>,
    /// Kubeconfig; `None`: `KUBECONFIG`, `~/.kube/config`, then in-cluster
    /// (or the config file's `kubernetes.kubeconfig`).
    pub kubeconfig: Option<PathBuf>,
    /// The object's namespace; `None`: the config file's, else the
    /// kubeconfig context's (as kubectl).
    pub namespace: Option<String>,
    /// The object's name; `None`: the config file's, else the default.
    pub name: Option<String>,
    /// An authgate config file to take `fleet.revocation_object` and
    /// `kubernetes.kubeconfig` from.
    pub config: Option<PathBuf>,
}

/// Writes the flush of `args`; returns what to print.
pub async fn flush(args: FlushArgs) -> Result<String, Box<dyn std::error::Error>> {
    let FlushArgs {
        user,
        mut kubeconfig,
        mut namespace,
        mut name,
        config,
    } = args;
    if let Some(path) = &config {
        let c = Config::load(path)?;
        let f = c
            .fleet
            .ok_or_else(|| format!("{}: has no fleet section", path.display()))?;
        namespace = namespace.or(f.namespace);
        name = name.or(Some(f.name));
        kubeconfig = kubeconfig.or_else(|| c.kubernetes.and_then(|k| k.kubeconfig));
    }
    let kube_config = match &kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("--kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer().await?,
    };
    let namespace = namespace.unwrap_or_else(|| kube_config.default_namespace.clone());
    let name = name.unwrap_or_else(|| defaults::FLEET_REVOCATION_OBJECT.to_owned());
    let client = kube::Client::try_from(kube_config)?;
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let written = write::request_flush(&api, &name, user.as_deref(), TIMEOUT).await?;
    Ok(match written {
        Written::All { epoch } => {
            format!("flushed every cache: {namespace}/{name} epoch {epoch}")
        }
        Written::User { user, serial } => {
            format!("flushed user {user:?}: {namespace}/{name} users line {serial}")
        }
    })
}
