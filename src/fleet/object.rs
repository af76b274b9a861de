//! The revocation object's data, read and written: pure functions, no I/O.
//!
//! The ConfigMap holds two keys:
//!
//! - `epoch`: a number. Any change of it flushes every cache (token,
//!   decision, JWKS) on every replica.
//! - `users`: one flush per line, `<serial> <user name>` (the name is the
//!   rest of the line, spaces included). A line that is new, or whose serial
//!   changed, flushes that user's entries on every replica, once: a replica
//!   remembers the serials it applied, so the line does not refuse the user
//!   forever, and entries cached after the flush are kept.
//!
//! Writers ([`updated`]) give a flushed user the next serial of the whole
//! list, and a full flush raises `epoch` and empties `users` (the full flush
//! covers them). Past [`MAX_USERS`] lines, a user flush becomes a full one,
//! as the caches' own per-user flush marks do, so the object stays small.

use std::collections::BTreeMap;

/// User lines kept in the object; one more turns the flush into a full one.
pub const MAX_USERS: usize = 256;

/// Users changed in one update that are flushed one by one; more flush all.
pub const MAX_USER_FLUSHES: usize = 64;

/// The data key of the full-flush counter.
pub const EPOCH_KEY: &str = "epoch";
/// The data key of the per-user flushes.
pub const USERS_KEY: &str = "users";

/// What one version of the object asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// `metadata.uid`: a deleted and re-created object is another one.
    pub uid: Option<String>,
    /// `epoch` as written (empty when absent).
    pub epoch: String,
    /// User name to serial.
    pub users: BTreeMap<String, u64>,
    /// Why the data could not be read in full, if it could not: every
    /// change of such an object flushes everything.
    pub malformed: Option<String>,
    /// `metadata.resourceVersion`, telling changes of a malformed object apart.
    pub resource_version: Option<String>,
}

/// What a replica does when it sees a version of the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Flush every cache.
    All,
    /// Flush these users' entries.
    Users(Vec<String>),
    /// Already applied.
    Nothing,
}

/// The data could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// `epoch` is not a number.
    #[error("data.epoch {0:?} is not a number")]
    Epoch(String),
    /// A `users` line is not `<serial> <user>`.
    #[error("data.users line {0} is not `<serial> <user name>`")]
    UserLine(usize),
}

/// Reads the object's `data`.
pub fn read(
    uid: Option<String>,
    resource_version: Option<String>,
    data: &BTreeMap<String, String>,
) -> Revocation {
    let epoch = data.get(EPOCH_KEY).map_or("", |e| e.trim()).to_owned();
    let mut malformed = None;
    if !epoch.is_empty() && epoch.parse::<u64>().is_err() {
        malformed = Some(Malformed::Epoch(epoch.clone()).to_string());
    }
    let users = match parse_users(data.get(USERS_KEY).map_or("", String::as_str)) {
        Ok(u) => u,
        Err(e) => {
            malformed.get_or_insert_with(|| e.to_string());
            BTreeMap::new()
        }
    };
    Revocation {
        uid,
        epoch,
        users,
        malformed,
        resource_version,
    }
}

/// `users`: `<serial> <user>` lines; blank lines are skipped. A user named
/// twice keeps the highest serial.
fn parse_users(text: &str) -> Result<BTreeMap<String, u64>, Malformed> {
    let mut users = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let (serial, user) = line
            .trim_start()
            .split_once(' ')
            .ok_or(Malformed::UserLine(i + 1))?;
        let serial = serial
            .parse::<u64>()
            .map_err(|_| Malformed::UserLine(i + 1))?;
        if user.is_empty() {
            return Err(Malformed::UserLine(i + 1));
        }
        let e = users.entry(user.to_owned()).or_insert(serial);
        *e = (*e).max(serial);
    }
    Ok(users)
}

/// What to flush on seeing `seen`, when `applied` was the last version
/// applied (`None`: none yet, so whatever was cached before is flushed).
pub fn plan(applied: Option<&Revocation>, seen: &Revocation) -> Plan {
    let Some(applied) = applied else {
        return Plan::All;
    };
    if applied.uid != seen.uid || applied.epoch != seen.epoch {
        return Plan::All;
    }
    if seen.malformed.is_some() || applied.malformed.is_some() {
        // What it asks is unknown: any change may be a revocation.
        return if applied.resource_version == seen.resource_version
            && applied.malformed == seen.malformed
        {
            Plan::Nothing
        } else {
            Plan::All
        };
    }
    let changed: Vec<String> = seen
        .users
        .iter()
        .filter(|(u, s)| applied.users.get(*u) != Some(*s))
        .map(|(u, _)| u.clone())
        .collect();
    match changed.len() {
        0 => Plan::Nothing,
        n if n > MAX_USER_FLUSHES => Plan::All,
        _ => Plan::Users(changed),
    }
}

/// Why a flush cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadFlush {
    /// The user name is empty or spans lines.
    #[error("the user to flush must be one non-empty line")]
    User,
    /// The object's `users` cannot be read, so a line cannot be added;
    /// a full flush (no user) rewrites it.
    #[error("{0}; fix it, or flush everything (which rewrites it)")]
    Malformed(Malformed),
}

/// What a written flush was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Everything, as `epoch`.
    All {
        /// The new epoch.
        epoch: u64,
    },
    /// One user, with its serial.
    User {
        /// The user.
        user: String,
        /// Its new serial.
        serial: u64,
    },
}

/// The data after a flush of `user` (or of everything) is added to `data`.
pub fn updated(
    data: &BTreeMap<String, String>,
    user: Option<&str>,
) -> Result<(BTreeMap<String, String>, Written), BadFlush> {
    let mut out = data.clone();
    let epoch_text = data.get(EPOCH_KEY).map_or("", |e| e.trim());
    let epoch = match epoch_text {
        "" => Some(0),
        t => t.parse::<u64>().ok(),
    };
    let users = parse_users(data.get(USERS_KEY).map_or("", String::as_str));
    let full = |out: &mut BTreeMap<String, String>| {
        // A malformed epoch is replaced: 1 differs from it, which is all a
        // replica looks for.
        let next = epoch.map_or(1, |e| e.wrapping_add(1).max(1));
        out.insert(EPOCH_KEY.to_owned(), next.to_string());
        out.insert(USERS_KEY.to_owned(), String::new());
        Written::All { epoch: next }
    };
    let Some(user) = user else {
        let w = full(&mut out);
        return Ok((out, w));
    };
    if user.is_empty() || user.contains(['\n', '\r']) {
        return Err(BadFlush::User);
    }
    if epoch.is_none() {
        return Err(BadFlush::Malformed(Malformed::Epoch(epoch_text.to_owned())));
    }
    let mut users = users.map_err(BadFlush::Malformed)?;
    let next = users.values().copied().max().unwrap_or(0).checked_add(1);
    // Past the list's bound, or past the serials' (an edited line): a full
    // flush, which starts the list again.
    let Some(serial) = next.filter(|_| users.contains_key(user) || users.len() < MAX_USERS) else {
        let w = full(&mut out);
        return Ok((out, w));
    };
    users.insert(user.to_owned(), serial);
    out.insert(USERS_KEY.to_owned(), render_users(&users));
    Ok((
        out,
        Written::User {
            user: user.to_owned(),
            serial,
        },
    ))
}

/// `users` lines in serial order (oldest first), one per user.
fn render_users(users: &BTreeMap<String, u64>) -> String {
    let mut lines: Vec<(&u64, &String)> = users.iter().map(|(u, s)| (s, u)).collect();
    lines.sort();
    lines
        .into_iter()
        .map(|(s, u)| format!("{s} {u}\n"))
        .collect()
}
