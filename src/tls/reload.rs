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
}

impl Reloader {
    /// A reloader installing into `acceptor`.
    pub fn new(cfg: TlsConfig, acceptor: Arc<Acceptor>, metrics: Metrics) -> Self {
        let r = Self {
            cfg,
            acceptor,
            metrics,
        };
        r.publish_status();
        r
    }

    /// Reloads when the files changed, or always with `force`. `Ok(true)`:
    /// new material is in service. `Err`: the old material stays.
    pub fn reload(&self, force: bool) -> Result<bool, Error> {
        let result = self.try_reload(force);
        match &result {
            Ok(false) => {}
            Ok(true) => {
                let s = self.acceptor.status();
                info!(serial = %s.serving_serial, not_after = s.serving_not_after, crls = s.crls, "TLS material reloaded");
                self.metrics
                    .reloads
                    .get_or_create(&ResultLabel { result: "success" })
                    .inc();
                self.metrics.reload_last_success.set(unix_now());
                self.publish_status();
            }
            Err(e) => {
                warn!(error = %e, "TLS reload failed; keeping the material in service");
                self.metrics
                    .reloads
                    .get_or_create(&ResultLabel { result: "failure" })
                    .inc();
                self.metrics.reload_last_failure.set(unix_now());
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
