//! Hot reload of the serving certificate, key, client CA and CRLs (and,
//! through [`Reload`], of anything else loaded from files).
//!
//! Three triggers, one path: a change in a watched directory (cert-manager
//! and kubelet swap a `..data` symlink, so directories are watched, never
//! single files; events are debounced), a poll every `tls.reload_interval`
//! (the backstop when events are missed), and SIGHUP. Each trigger reloads
//! only if the files' fingerprint changed (SIGHUP always does). A reload
//! that fails for any reason keeps the material in service, is logged and
//! counted, and never stops the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Acceptor, Error, directories, fingerprint, load};
use crate::clock::unix_now;
use crate::config::TlsConfig;
use crate::metrics::{Metrics, ResultLabel};

/// Quiet time after a file event before reloading (a Secret update touches
/// several files).
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Reloads the TLS material of one listener.
pub struct Reloader {
    cfg: TlsConfig,
    acceptor: Arc<Acceptor>,
    metrics: Metrics,
    /// The listener's name, in logs and metrics.
    listener: String,
    /// Whether this is the first listener, whose material the unlabelled
    /// `authgate_serving_certificate_*`/`tls_reload_last_*` gauges show.
    primary: bool,
    /// When this listener's material last loaded (Unix seconds).
    last_success: AtomicI64,
    /// When a reload of this listener last failed (0: never).
    last_failure: AtomicI64,
    /// The last reload failed: the files on disk are not in service.
    failing: AtomicBool,
}

impl Reloader {
    /// A reloader installing into `acceptor`, of the only (or first) listener.
    pub fn new(cfg: TlsConfig, acceptor: Arc<Acceptor>, metrics: Metrics) -> Self {
        Self::for_listener("main", true, cfg, acceptor, metrics)
    }

    /// A reloader of the listener `name` (`primary`: the first one).
    pub fn for_listener(
        name: &str,
        primary: bool,
        cfg: TlsConfig,
        acceptor: Arc<Acceptor>,
        metrics: Metrics,
    ) -> Self {
        let r = Self {
            last_success: AtomicI64::new(acceptor.status().loaded_at),
            last_failure: AtomicI64::new(0),
            failing: AtomicBool::new(false),
            cfg,
            acceptor,
            metrics,
            listener: name.to_owned(),
            primary,
        };
        r.publish_status();
        r
    }

    /// The listener's name.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// The material in service.
    pub fn acceptor(&self) -> &Arc<Acceptor> {
        &self.acceptor
    }

    /// Whether the last reload that found changed files failed (what is
    /// served is not what is on disk).
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// When this listener's material last loaded, and when a reload of it
    /// last failed (0: never), in Unix seconds.
    pub fn last_reloads(&self) -> (i64, i64) {
        (
            self.last_success.load(Ordering::Relaxed),
            self.last_failure.load(Ordering::Relaxed),
        )
    }

    /// Reloads when the files changed, or always with `force`. `Ok(true)`:
    /// new material is in service. `Err`: the old material stays.
    pub fn reload(&self, force: bool) -> Result<bool, Error> {
        let result = self.try_reload(force);
        match &result {
            // The files on disk are the ones in service (again).
            Ok(false) => self.failing.store(false, Ordering::Relaxed),
            Ok(true) => {
                let s = self.acceptor.status();
                info!(listener = %self.listener, serial = %s.serving_serial, not_after = s.serving_not_after, crls = s.crls, "TLS material reloaded");
                self.metrics
                    .reloads
                    .get_or_create(&ResultLabel { result: "success" })
                    .inc();
                self.last_success.store(unix_now(), Ordering::Relaxed);
                self.failing.store(false, Ordering::Relaxed);
                self.publish_status();
            }
            Err(e) => {
                warn!(listener = %self.listener, error = %e, "TLS reload failed; keeping the material in service");
                self.metrics
                    .reloads
                    .get_or_create(&ResultLabel { result: "failure" })
                    .inc();
                self.last_failure.store(unix_now(), Ordering::Relaxed);
                self.failing.store(true, Ordering::Relaxed);
                if self.primary {
                    self.metrics.reload_last_failure.set(unix_now());
                }
            }
        }
        result
    }

    fn try_reload(&self, force: bool) -> Result<bool, Error> {
        if !force && fingerprint(&self.cfg)? == self.acceptor.fingerprint() {
            return Ok(false);
        }
        let material = load(&self.cfg)?;
        if !force && material.fingerprint == self.acceptor.fingerprint() {
            return Ok(false);
        }
        self.acceptor.install(material);
        Ok(true)
    }

    fn publish_status(&self) {
        // Every listener's, labelled: `metrics::listeners`.
        if !self.primary {
            return;
        }
        let s = self.acceptor.status();
        self.metrics.serving_cert_not_after.set(s.serving_not_after);
        if let Some(ca) = s.client_ca_not_after {
            self.metrics.client_ca_not_after.set(ca);
        }
        self.metrics.reload_last_success.set(s.loaded_at);
    }

    /// Watches, polls every `interval` and listens for SIGHUP until `stop`.
    pub async fn run(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        run(self, interval, stop).await;
    }
}

impl crate::metrics::listeners::ListenerSource for Reloader {
    fn listener_status(&self) -> crate::metrics::listeners::ListenerStatus {
        let s = self.acceptor.status();
        let (last_success, last_failure) = self.last_reloads();
        crate::metrics::listeners::ListenerStatus {
            name: self.listener.clone(),
            serving_not_after: s.serving_not_after,
            client_ca_not_after: s.client_ca_not_after,
            last_success,
            last_failure,
        }
    }
}

/// Material loaded from files and swapped while serving: the serving
/// [`Reloader`], and the client certificates authgate presents upstream
/// (`crate::proxy::upstream`). All share one trigger loop ([`run`]).
pub trait Reload: Send + Sync + 'static {
    /// The directories to watch.
    fn watched(&self) -> Vec<std::path::PathBuf>;
    /// Reloads when the files changed (always with `force`); a failure
    /// keeps what is in service, and is logged and counted by the
    /// implementation.
    fn reload_files(&self, force: bool);
}

impl Reload for Reloader {
    fn watched(&self) -> Vec<std::path::PathBuf> {
        directories(&self.cfg)
    }

    fn reload_files(&self, force: bool) {
        let _ = self.reload(force);
    }
}

/// Reloads `r` on a file event in its directories (debounced), every
/// `interval`, and (forced) on SIGHUP, until `stop`.
pub async fn run<R: Reload + ?Sized>(r: Arc<R>, interval: Duration, stop: CancellationToken) {
    let (tx, mut events) = mpsc::channel::<()>(1);
    let _watcher = watch(&r.watched(), tx);
    let mut poll = tokio::time::interval(interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await;
    let mut hup = hangups();
    loop {
        let force = tokio::select! {
            () = stop.cancelled() => return,
            _ = poll.tick() => false,
            Some(()) = events.recv() => {
                tokio::time::sleep(DEBOUNCE).await;
                while events.try_recv().is_ok() {}
                false
            }
            Some(()) = hup.recv() => {
                info!("SIGHUP: reloading TLS material");
                true
            }
        };
        let this = r.clone();
        // File reads and parsing are blocking; keep them off the reactor.
        let _ = tokio::task::spawn_blocking(move || this.reload_files(force)).await;
    }
}

/// A directory watcher that signals `tx`; `None` (polling only) if the
/// platform cannot watch.
fn watch(dirs: &[std::path::PathBuf], tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let handler = move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !matches!(ev.kind, EventKind::Access(_))
        {
            // A full channel already means "reload pending".
            let _ = tx.try_send(());
        }
    };
    let mut w = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            warn!(error = %e, "cannot watch TLS files; polling only");
            return None;
        }
    };
    for d in dirs {
        if let Err(e) = w.watch(d, RecursiveMode::NonRecursive) {
            warn!(dir = %d.display(), error = %e, "cannot watch directory; polling only");
        }
    }
    Some(w)
}

/// SIGHUP notifications (never, off Unix).
fn hangups() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while s.recv().await.is_some() {
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    #[cfg(not(unix))]
    drop(tx);
    rx
}
