//! Counting and judging for `xtask rotation` (pure: no sockets, no clock).
//!
//! Every request is filed under the phase it started in and under whether
//! the client's certificate was valid *at that moment*: valid when the
//! material authgate has in service admits it (its CA is in the bundle, its
//! serial on no CRL). Between writing new files and seeing authgate's reload
//! counter move, a certificate whose validity the new files change is
//! `Switching`: counted, shown, not judged.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A client certificate, as far as trust goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CertId {
    /// The CA that signed it (`old`, `new`, ...).
    pub(crate) ca: &'static str,
    /// Its serial.
    pub(crate) serial: u64,
}

/// What a set of TLS files trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Trust {
    /// CAs in the client bundle.
    pub(crate) cas: Vec<&'static str>,
    /// Serials on the CRLs.
    pub(crate) revoked: Vec<u64>,
}

impl Trust {
    fn admits(&self, c: CertId) -> bool {
        self.cas.contains(&c.ca) && !self.revoked.contains(&c.serial)
    }
}

/// Whether a certificate was valid when a request was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Validity {
    /// Admitted by the material in service, before and after the request.
    Valid,
    /// Refused by it, before and after.
    Invalid,
    /// New files are written but not yet seen in service, and they change
    /// this certificate's validity (or the request spanned the change).
    Switching,
}

impl Validity {
    fn label(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Switching => "switching",
        }
    }

    /// The validity of a request that started at `self` and ended at `end`.
    pub(crate) fn through(self, end: Self) -> Self {
        if self == end { self } else { Self::Switching }
    }
}

/// How one request ended, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 200.
    Ok,
    /// Any other HTTP answer: status and authgate's `reason`.
    Refused(u16, String),
    /// No HTTP answer: `connect`, `tls alert`, `closed`, `timeout`, ...
    Transport(&'static str),
}

impl Outcome {
    fn label(&self) -> String {
        match self {
            Self::Ok => "200".to_owned(),
            Self::Refused(s, r) => format!("{s} {r}"),
            Self::Transport(k) => (*k).to_owned(),
        }
    }
}

/// The counts of one (phase, validity).
#[derive(Clone, Debug, Default)]
pub(crate) struct Cell {
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// Failures by kind; `(new conn)` marks the first request of a connection.
    pub(crate) kinds: BTreeMap<String, u64>,
    /// Requests on a new connection that got an HTTP answer (any status).
    pub(crate) fresh_answered: u64,
    /// Requests on a new connection that failed below HTTP (TLS alert, close).
    pub(crate) fresh_refused_tls: u64,
}

/// What the trust material in service and the files on disk say, and the
/// counts so far.
#[derive(Debug, Default)]
pub(crate) struct Board {
    /// Index into `phases`.
    pub(crate) phase: usize,
    pub(crate) phases: Vec<String>,
    pub(crate) in_service: Trust,
    /// Written, not yet seen in service.
    pub(crate) pending: Option<Trust>,
    pub(crate) cells: BTreeMap<(usize, Validity), Cell>,
    /// After an HTTP refusal, the next request on the same connection
    /// was answered again (the connection stayed open) ...
    pub(crate) open_after_refusal: u64,
    /// ... or failed because the connection was closed.
    pub(crate) closed_after_refusal: u64,
    pub(crate) stop: bool,
}

impl Board {
    /// The validity of `c` now.
    pub(crate) fn validity(&self, c: CertId) -> Validity {
        let now = self.in_service.admits(c);
        match &self.pending {
            Some(p) if p.admits(c) != now => Validity::Switching,
            _ if now => Validity::Valid,
            _ => Validity::Invalid,
        }
    }

    /// Files one request.
    pub(crate) fn record(&mut self, phase: usize, v: Validity, out: &Outcome, fresh: bool) {
        let cell = self.cells.entry((phase, v)).or_default();
        match out {
            Outcome::Ok => cell.ok += 1,
            _ => {
                cell.failed += 1;
                let mut k = out.label();
                if fresh {
                    k.push_str(" (new conn)");
                }
                *cell.kinds.entry(k).or_default() += 1;
            }
        }
        if fresh {
            match out {
                Outcome::Ok | Outcome::Refused(..) => cell.fresh_answered += 1,
                Outcome::Transport(_) => cell.fresh_refused_tls += 1,
            }
        }
    }

    /// Files what happened to the request after an HTTP refusal.
    pub(crate) fn after_refusal(&mut self, out: &Outcome) {
        match out {
            Outcome::Transport(_) => self.closed_after_refusal += 1,
            _ => self.open_after_refusal += 1,
        }
    }

    fn sum(&self, v: Validity, f: impl Fn(&Cell) -> u64) -> u64 {
        self.cells
            .iter()
            .filter(|((_, w), _)| *w == v)
            .map(|(_, c)| f(c))
            .sum()
    }
}

/// What a scenario must show.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Expect {
    /// The refusal a client whose certificate became invalid gets on its
    /// open connection, e.g. `401 cert_untrusted`.
    pub(crate) refusal: &'static str,
    /// Successful valid-certificate requests every phase must have (the
    /// load really ran).
    pub(crate) min_ok_per_phase: u64,
}

/// One check: what, and whether it held.
pub(crate) type Check = (String, bool);

/// The checks of a scenario.
pub(crate) fn judge(b: &Board, e: Expect) -> Vec<Check> {
    let mut out = Vec::new();
    let failed = b.sum(Validity::Valid, |c| c.failed);
    out.push((
        format!("requests with a valid certificate that failed: {failed} (want 0)"),
        failed == 0,
    ));
    for (i, name) in b.phases.iter().enumerate() {
        let ok = b.cells.get(&(i, Validity::Valid)).map_or(0, |c| c.ok);
        out.push((
            format!(
                "phase {name:?}: {ok} valid requests served (want >= {})",
                e.min_ok_per_phase
            ),
            ok >= e.min_ok_per_phase,
        ));
    }
    let served = b.sum(Validity::Invalid, |c| c.ok);
    let tried = b.sum(Validity::Invalid, |c| c.ok + c.failed);
    out.push((
        format!("requests with an invalid certificate served: {served} of {tried} (want 0 of > 0)"),
        served == 0 && tried > 0,
    ));
    let on_open = |v| b.sum(v, |c| c.kinds.get(e.refusal).copied().unwrap_or(0));
    let refusals = on_open(Validity::Invalid) + on_open(Validity::Switching);
    out.push((
        format!(
            "`{}` on an already open connection: {refusals} (want > 0)",
            e.refusal
        ),
        refusals > 0,
    ));
    out.push((
        format!(
            "after a refusal the connection was closed {} times, answered again {} times (want > 0, 0)",
            b.closed_after_refusal, b.open_after_refusal
        ),
        b.closed_after_refusal > 0 && b.open_after_refusal == 0,
    ));
    let fresh_tls = b.sum(Validity::Invalid, |c| c.fresh_refused_tls);
    let fresh_http = b.sum(Validity::Invalid, |c| c.fresh_answered);
    out.push((
        format!(
            "new connections with an invalid certificate: {fresh_tls} failed in TLS, {fresh_http} got an HTTP answer (want > 0, 0)"
        ),
        fresh_tls > 0 && fresh_http == 0,
    ));
    out
}

/// The counts as a table, one row per (phase, validity).
pub(crate) fn table(scenario: &str, b: &Board) -> String {
    let mut t = format!(
        "{:<9} {:<40} {:<10} {:>8} {:>8}  failures\n",
        "scenario", "phase", "cert", "ok", "failed"
    );
    for ((phase, v), c) in &b.cells {
        let kinds = c
            .kinds
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let name = b.phases.get(*phase).map_or("?", String::as_str);
        let _ = writeln!(
            t,
            "{scenario:<9} {name:<40} {:<10} {:>8} {:>8}  {kinds}",
            v.label(),
            c.ok,
            c.failed
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: CertId = CertId {
        ca: "old",
        serial: 1,
    };
    const NEW: CertId = CertId {
        ca: "new",
        serial: 2,
    };

    fn trust(cas: &[&'static str], revoked: &[u64]) -> Trust {
        Trust {
            cas: cas.to_vec(),
            revoked: revoked.to_vec(),
        }
    }

    #[test]
    fn validity_follows_the_material_in_service_and_is_unknown_while_switching() {
        let mut b = Board {
            in_service: trust(&["old"], &[]),
            ..Board::default()
        };
        assert_eq!(b.validity(OLD), Validity::Valid);
        assert_eq!(b.validity(NEW), Validity::Invalid);
        b.pending = Some(trust(&["old", "new"], &[]));
        assert_eq!(b.validity(OLD), Validity::Valid, "unchanged by the files");
        assert_eq!(b.validity(NEW), Validity::Switching);
        b.in_service = trust(&["new"], &[2]);
        b.pending = None;
        assert_eq!(b.validity(NEW), Validity::Invalid, "revoked");
        assert_eq!(
            Validity::Valid.through(Validity::Invalid),
            Validity::Switching
        );
        assert_eq!(
            Validity::Invalid.through(Validity::Invalid),
            Validity::Invalid
        );
    }

    const EXPECT: Expect = Expect {
        refusal: "401 cert_untrusted",
        min_ok_per_phase: 2,
    };

    /// A run that shows everything: two phases of valid traffic, then an
    /// invalid client refused on its connection, closed, and refused in TLS.
    fn good() -> Board {
        let mut b = Board {
            phases: vec!["one".into(), "two".into()],
            ..Board::default()
        };
        for phase in [0, 1] {
            for _ in 0..2 {
                b.record(phase, Validity::Valid, &Outcome::Ok, false);
            }
        }
        let refused = Outcome::Refused(401, "cert_untrusted".into());
        b.record(1, Validity::Invalid, &refused, false);
        let closed = Outcome::Transport("closed");
        b.record(1, Validity::Invalid, &closed, false);
        b.after_refusal(&closed);
        b.record(1, Validity::Invalid, &Outcome::Transport("tls alert"), true);
        b
    }

    fn failing(b: &Board) -> Vec<String> {
        judge(b, EXPECT)
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(what, _)| what)
            .collect()
    }

    #[test]
    fn a_run_that_shows_everything_passes() {
        assert_eq!(failing(&good()), Vec::<String>::new());
        let t = table("A", &good());
        assert!(t.contains("401 cert_untrusted: 1"), "{t}");
        assert!(t.contains("tls alert (new conn): 1"), "{t}");
    }

    #[test]
    fn each_missing_proof_fails_its_own_check() {
        type Spoil = fn(&mut Board);
        let cases: [(&str, Spoil); 7] = [
            ("a valid certificate that failed", |b| {
                b.record(0, Validity::Valid, &Outcome::Transport("timeout"), false);
            }),
            ("phase \"two\"", |b| {
                b.cells.remove(&(1, Validity::Valid));
            }),
            ("invalid certificate served: 1", |b| {
                b.record(1, Validity::Invalid, &Outcome::Ok, false);
            }),
            (
                "`401 cert_untrusted` on an already open connection: 0",
                |b| {
                    let c = b.cells.get_mut(&(1, Validity::Invalid)).unwrap();
                    c.kinds.remove("401 cert_untrusted");
                },
            ),
            ("answered again 1 times", |b| {
                b.after_refusal(&Outcome::Refused(401, "cert_untrusted".into()));
            }),
            ("got an HTTP answer", |b| {
                let refused = Outcome::Refused(401, "cert_untrusted".into());
                b.record(1, Validity::Invalid, &refused, true);
            }),
            ("0 failed in TLS", |b| {
                b.cells
                    .get_mut(&(1, Validity::Invalid))
                    .unwrap()
                    .fresh_refused_tls = 0;
            }),
        ];
        for (want, spoil) in cases {
            let mut b = good();
            spoil(&mut b);
            let f = failing(&b);
            assert_eq!(f.len(), 1, "{want}: {f:?}");
            assert!(f[0].contains(want), "{want}: {f:?}");
        }
    }

    #[test]
    fn switching_requests_are_shown_but_not_judged() {
        let mut b = good();
        b.record(1, Validity::Switching, &Outcome::Ok, false);
        b.record(1, Validity::Switching, &Outcome::Transport("closed"), true);
        assert_eq!(failing(&b), Vec::<String>::new());
        assert!(table("A", &b).contains("switching"));
    }
}
