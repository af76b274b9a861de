//! The report as a plain-text table, and the timestamp format every view
//! of the report uses.

use std::fmt::Write as _;

use super::report::{Report, Usage};
use super::when::rfc3339_string;

impl Report {
    /// A plain-text table.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{:<48} {:<7} {:>10} {:>10} {:<20} {:<20} {:>12} ROUTES\n",
            "IDENTITY",
            "PINNED",
            "MTLS",
            "TOKEN",
            "TOKEN_FIRST_SEEN",
            "TOKEN_LAST_SEEN",
            "WOULD_REFUSE"
        );
        for r in &self.identities {
            let u = &r.usage;
            let when = |t: Option<i64>| t.map_or_else(|| "-".to_owned(), rfc3339_string);
            let _ = writeln!(
                out,
                "{:<48} {:<7} {:>10} {:>10} {:<20} {:<20} {:>12} {}",
                r.identity,
                pinned(u),
                u.mtls.map_or(0, |s| s.requests),
                u.token.map_or(0, |s| s.requests),
                when(u.token.map(|s| s.first_seen)),
                when(u.token.map(|s| s.last_seen)),
                u.would_refuse,
                u.routes.join(","),
            );
        }
        out
    }
}

/// `yes`, `dry-run` or `no`.
pub fn pinned(u: &Usage) -> &'static str {
    if u.pinned {
        "yes"
    } else if u.pinned_dry_run {
        "dry-run"
    } else {
        "no"
    }
}
