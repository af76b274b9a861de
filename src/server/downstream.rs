//! What keeps an accepted connection counted: its slot under the connection
//! cap, its share of its address's cap, its drain token, and the tokens that
//! end it (a stale certificate, the drain deadline).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// One accepted connection: who it is from, and what keeps it counted. A
/// tunnel that outlives the HTTP exchange (an upgrade) holds a [`Hold`], so
/// it keeps its connection slot, is waited for by the shutdown drain, and
/// is closed at the drain deadline.
#[derive(Clone, Debug)]
pub struct Downstream {
    /// The client's address.
    pub peer: SocketAddr,
    /// When the connection was accepted (its age limit counts from here).
    pub opened: std::time::Instant,
    /// The generation of the client verifier in service when the handshake
    /// began (read before it, so a reload during it errs towards a re-check).
    pub verified_in: u64,
    pub(super) hold: Option<Arc<Held>>,
    /// Cancelled to end the connection gracefully after the response under
    /// way (HTTP/1 closes, HTTP/2 sends GOAWAY).
    pub(super) close: CancellationToken,
}

#[derive(Debug)]
pub(super) struct Held {
    pub(super) _slot: OwnedSemaphorePermit,
    pub(super) _per_ip: IpSlot,
    pub(super) _drain: TaskTrackerToken,
    /// Cancelled when the drain deadline passes.
    pub(super) stop: CancellationToken,
}

/// Connections open per client address.
#[derive(Debug, Default)]
pub(super) struct PerIp(std::sync::Mutex<HashMap<IpAddr, usize>>);

/// One connection counted against its address's share; released on drop.
#[derive(Debug)]
pub(super) struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    /// A slot for `ip` (counted as [`crate::peer::counted_as`]: IPv6 per
    /// /64), unless it already holds `cap` connections.
    pub(super) fn take(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<IpSlot> {
        let ip = crate::peer::counted_as(ip);
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = t.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut t = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = t.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

/// Keeps a connection counted while a tunnel of it runs.
#[derive(Clone, Debug)]
pub struct Hold(Option<Arc<Held>>);

impl Downstream {
    /// A connection the accept loop does not count (in-memory tests).
    pub fn detached(peer: SocketAddr) -> Self {
        Self {
            peer,
            opened: std::time::Instant::now(),
            verified_in: 0,
            hold: None,
            close: CancellationToken::new(),
        }
    }

    /// Ends the connection once the response under way is written.
    pub fn close(&self) {
        self.close.cancel();
    }

    /// What a tunnel of this connection holds while it runs.
    pub fn hold(&self) -> Hold {
        Hold(self.hold.clone())
    }
}

impl Hold {
    /// Resolves when the tunnel must close (the drain deadline passed).
    pub async fn stopped(&self) {
        match &self.0 {
            Some(h) => h.stop.cancelled().await,
            None => std::future::pending().await,
        }
    }
}
