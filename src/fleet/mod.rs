//! Fleet-wide revocation: one ConfigMap in authgate's namespace that every
//! replica watches (kube-runtime's watcher) and applies to its caches
//! (token, decision, JWKS) as soon as it changes.
//!
//! - What the object's data means, and how a flush is added to it, is
//!   [`object`] (pure).
//! - [`Fleet::run`] watches it: a list, then a watch from that version,
//!   restarted after each `fleet.watch_timeout` (so a lost permission is
//!   noticed) and from scratch, after a backoff, after any error.
//! - [`Fleet::check`] is the readiness check: ready only while the object
//!   exists and is watched. A replica that cannot learn of revocations
//!   leaves the Service.
//! - [`write::request_flush`] adds a flush to the object (read, modify,
//!   replace at the read `resourceVersion`, again on a conflict): used by
//!   `POST /cache/flush` and `authgate flush`.

pub mod cli;
pub mod object;
pub mod status;
pub mod write;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::unix_now;
use crate::config::FleetConfig;
use object::{Plan, Revocation};
use status::{State, Watch};

/// Where the service account's namespace is mounted in a pod.
pub const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// After the list is applied, a watch that has not failed within this is
/// taken as running (kube-runtime does not report a watch start).
const SETTLE: Duration = Duration::from_secs(1);
/// First wait before a failed watch is started again; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(16);

/// Empties the caches: all entries, or those about a user.
pub type Flusher = Box<dyn Fn(Option<&str>) + Send + Sync>;

/// The fleet could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No namespace configured and none found in the pod.
    #[error(
        "fleet.revocation_object.namespace: not set, and neither POD_NAMESPACE nor {SA_NAMESPACE_FILE} gives the pod's"
    )]
    Namespace,
}

/// One replica's part of the fleet.
pub struct Fleet {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    watch_timeout: Duration,
    /// Deadline of one write (`kubernetes.timeout` per attempt).
    write_timeout: Duration,
    state: Mutex<State>,
    flush: Flusher,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("object", &self.object())
            .finish_non_exhaustive()
    }
}

/// The pod's namespace: `POD_NAMESPACE`, else the service account's file.
pub fn pod_namespace() -> Option<String> {
    let env = std::env::var("POD_NAMESPACE").ok();
    let file = || std::fs::read_to_string(SA_NAMESPACE_FILE).ok();
    env.filter(|s| !s.trim().is_empty())
        .or_else(file)
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

impl Fleet {
    /// The fleet of `cfg` over `client`, applying revocations through `flush`.
    pub fn new(
        cfg: &FleetConfig,
        client: kube::Client,
        write_timeout: Duration,
        flush: Flusher,
    ) -> Result<Self, Error> {
        let namespace = cfg
            .namespace
            .clone()
            .or_else(pod_namespace)
            .ok_or(Error::Namespace)?;
        Ok(Self {
            api: Api::namespaced(client, &namespace),
            namespace,
            name: cfg.name.clone(),
            watch_timeout: cfg.watch_timeout,
            write_timeout,
            state: Mutex::new(State::default()),
            flush,
        })
    }

    /// `namespace/name` of the object.
    pub fn object(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The readiness check at `now`: ok, and what it saw.
    pub fn check(&self, now: i64) -> (bool, String) {
        status::check(&self.lock(), &self.object(), now)
    }

    /// Adds a flush of `user` (or of everything) to the object.
    pub async fn request_flush(&self, user: Option<&str>) -> Result<object::Written, write::Error> {
        write::request_flush(&self.api, &self.name, user, self.write_timeout).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches the object until `stop`, applying every version to the caches.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let reason = tokio::select! {
                () = stop.cancelled() => return,
                r = self.watch_once(&mut backoff) => r,
            };
            // A quiet watch is started again at once, staying ready: a dead
            // connection shows as the new list's error.
            let Some(reason) = reason else { continue };
            // A replica that cannot learn of revocations keeps no cached
            // answer past its next retry (at most `MAX_BACKOFF`): clients
            // still connected to it are reviewed again, not served a flush
            // it missed.
            (self.flush)(None);
            warn!(object = %self.object(), error = %reason, "revocation watch failed; every cache flushed; this replica is not ready until it recovers");
            self.lock().watch = Watch::Broken {
                reason,
                since: unix_now(),
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One watcher, from its list until it fails; returns why it failed.
    /// `backoff` is reset once the watch runs.
    /// `None`: nothing came for a whole watch call's time (kube-runtime
    /// restarts expired watches and eats bookmarks without a word), so the
    /// caller lists again.
    async fn watch_once(&self, backoff: &mut Duration) -> Option<String> {
        let fields = format!("metadata.name={}", self.name);
        let secs = u32::try_from(self.watch_timeout.as_secs()).unwrap_or(u32::MAX);
        let config = watcher::Config::default().fields(&fields).timeout(secs);
        let stream = watcher::watcher(self.api.clone(), config);
        let mut stream = std::pin::pin!(stream);
        // A list or a watch call bounded: the watch ends by its timeout.
        let bound = self.watch_timeout + Duration::from_secs(10);
        let mut listed: Option<ConfigMap> = None;
        loop {
            let settling = self.lock().watch == Watch::Settling;
            let wait = if settling { SETTLE } else { bound };
            let event = match tokio::time::timeout(wait, stream.next()).await {
                Err(_) if settling => {
                    self.lock().watch = Watch::Synced;
                    *backoff = MIN_BACKOFF;
                    continue;
                }
                Err(_) => return None,
                Ok(None) => return Some("the watch stream ended".to_owned()),
                Ok(Some(Err(e))) => return Some(e.to_string()),
                Ok(Some(Ok(event))) => event,
            };
            match event {
                Event::Init => listed = None,
                Event::InitApply(cm) => listed = Some(cm),
                Event::InitDone => {
                    // A list after a quiet restart keeps a running watch ready.
                    let running = self.lock().watch == Watch::Synced;
                    let next = if running {
                        Watch::Synced
                    } else {
                        Watch::Settling
                    };
                    self.observe(listed.take(), next);
                }
                Event::Apply(cm) => self.observe(Some(cm), Watch::Synced),
                Event::Delete(_) => self.observe(None, Watch::Synced),
            }
        }
    }

    /// Applies a version of the object (`None`: it does not exist), then
    /// records `next` as the watch's state.
    fn observe(&self, cm: Option<ConfigMap>, next: Watch) {
        let mut state = self.lock();
        let Some(cm) = cm else {
            state.watch = Watch::Missing;
            drop(state);
            // Nobody can flush this replica through a missing object: as
            // with a broken watch, it keeps nothing cached from before, at
            // each list or delete that finds it missing.
            (self.flush)(None);
            warn!(object = %self.object(), "revocation object missing; every cache flushed; this replica is not ready until it exists");
            return;
        };
        let seen = object::read(
            cm.metadata.uid.clone(),
            cm.metadata.resource_version.clone(),
            &cm.data.unwrap_or_default(),
        );
        let plan = object::plan(state.applied.as_ref(), &seen);
        self.apply(&plan, &seen);
        state.applied = Some(seen);
        state.watch = next;
    }

    fn apply(&self, plan: &Plan, seen: &Revocation) {
        match plan {
            Plan::Nothing => {}
            Plan::All => {
                (self.flush)(None);
                info!(object = %self.object(), epoch = %seen.epoch, "revocation: every cache flushed");
            }
            Plan::Users(users) => {
                for u in users {
                    (self.flush)(Some(u));
                    info!(object = %self.object(), user = %u, "revocation: user's cache entries flushed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
