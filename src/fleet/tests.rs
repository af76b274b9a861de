use super::object::*;
use std::collections::BTreeMap;

fn data(epoch: &str, users: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (EPOCH_KEY.to_owned(), epoch.to_owned()),
        (USERS_KEY.to_owned(), users.to_owned()),
    ])
}

fn rev(uid: &str, epoch: &str, users: &str) -> Revocation {
    read(Some(uid.into()), Some("1".into()), &data(epoch, users))
}

#[test]
fn user_lines_keep_spaces_and_colons_in_names() {
    let r = rev(
        "u",
        "2",
        "3 alice\n\n4 system:serviceaccount:ns:sa\r\n5 Jane Doe\n",
    );
    assert_eq!(r.malformed, None);
    assert_eq!(r.users.get("alice"), Some(&3));
    assert_eq!(r.users.get("system:serviceaccount:ns:sa"), Some(&4));
    assert_eq!(r.users.get("Jane Doe"), Some(&5));
}

#[test]
fn malformed_data_is_reported_by_line_never_ignored() {
    for (epoch, users, want) in [
        ("x", "", "data.epoch \"x\" is not a number"),
        ("1", "alice", "data.users line 1"),
        ("1", "1 bob\nseven alice", "data.users line 2"),
        ("1", "3 ", "data.users line 1"),
    ] {
        let r = rev("u", epoch, users);
        let m = r.malformed.expect(users);
        assert!(m.starts_with(want), "{m}");
    }
}

#[test]
fn the_first_version_seen_flushes_everything() {
    assert_eq!(plan(None, &rev("u", "0", "")), Plan::All);
}

#[test]
fn a_user_line_flushes_once_and_then_never_again() {
    let before = rev("u", "1", "1 bob\n");
    let after = rev("u", "1", "1 bob\n2 alice\n");
    assert_eq!(
        plan(Some(&before), &after),
        Plan::Users(vec!["alice".into()])
    );
    // The same version again (a re-list after a reconnect): nothing.
    assert_eq!(plan(Some(&after), &after), Plan::Nothing);
    // alice flushed again: a new serial.
    let again = rev("u", "1", "1 bob\n3 alice\n");
    assert_eq!(
        plan(Some(&after), &again),
        Plan::Users(vec!["alice".into()])
    );
    // A line removed: nothing to flush.
    assert_eq!(plan(Some(&again), &before), Plan::Nothing);
}

#[test]
fn an_epoch_change_in_either_direction_or_a_new_object_flushes_everything() {
    let a = rev("u", "5", "1 bob\n");
    assert_eq!(plan(Some(&a), &rev("u", "6", "1 bob\n")), Plan::All);
    // Lower: an object re-created by hand starts again at 0.
    assert_eq!(plan(Some(&a), &rev("u", "0", "1 bob\n")), Plan::All);
    assert_eq!(plan(Some(&a), &rev("other", "5", "1 bob\n")), Plan::All);
}

#[test]
fn every_change_of_a_malformed_object_flushes_everything() {
    let ok = rev("u", "1", "");
    let bad = read(Some("u".into()), Some("2".into()), &data("1", "garbage"));
    assert_eq!(plan(Some(&ok), &bad), Plan::All);
    assert_eq!(plan(Some(&bad), &bad), Plan::Nothing);
    let bad2 = read(Some("u".into()), Some("3".into()), &data("1", "garbage"));
    assert_eq!(plan(Some(&bad), &bad2), Plan::All);
    assert_eq!(plan(Some(&bad2), &ok), Plan::All);
}

#[test]
fn many_users_at_once_flush_everything() {
    let before = rev("u", "1", "");
    let lines: String = (1..=MAX_USER_FLUSHES + 1)
        .map(|i| format!("{i} user{i}\n"))
        .collect();
    assert_eq!(plan(Some(&before), &rev("u", "1", &lines)), Plan::All);
}

#[test]
fn a_user_flush_takes_the_next_serial_of_the_list() {
    let (d, w) = updated(&data("2", "4 bob\n"), Some("alice")).expect("ok");
    assert_eq!(
        w,
        Written::User {
            user: "alice".into(),
            serial: 5
        }
    );
    assert_eq!(d[USERS_KEY], "4 bob\n5 alice\n");
    assert_eq!(d[EPOCH_KEY], "2");
    let (d, _) = updated(&d, Some("bob")).expect("ok");
    assert_eq!(d[USERS_KEY], "5 alice\n6 bob\n");
    // Every write is seen as a change by a replica that applied the last.
    let r0 = read(None, None, &data("2", "4 bob\n"));
    let r1 = read(None, None, &d);
    assert!(matches!(plan(Some(&r0), &r1), Plan::Users(_)));
}

#[test]
fn a_full_flush_raises_the_epoch_and_empties_the_users() {
    let (d, w) = updated(&data("2", "4 bob\n"), None).expect("ok");
    assert_eq!(w, Written::All { epoch: 3 });
    assert_eq!(d[EPOCH_KEY], "3");
    assert_eq!(d[USERS_KEY], "");
    let (d, w) = updated(&BTreeMap::new(), None).expect("ok");
    assert_eq!(w, Written::All { epoch: 1 });
    assert_eq!(d[EPOCH_KEY], "1");
}

#[test]
fn a_full_flush_repairs_a_malformed_object_and_a_user_flush_refuses_it() {
    let bad = data("x", "garbage");
    assert!(matches!(
        updated(&bad, Some("alice")),
        Err(BadFlush::Malformed(_))
    ));
    let (d, _) = updated(&bad, None).expect("full flush rewrites");
    assert_eq!(read(None, None, &d).malformed, None);
    let bad = data("1", "garbage");
    assert!(matches!(
        updated(&bad, Some("alice")),
        Err(BadFlush::Malformed(_))
    ));
}

#[test]
fn hostile_user_names_are_refused() {
    for user in ["", "alice\n99 bob", "a\rb"] {
        assert_eq!(
            updated(&BTreeMap::new(), Some(user)),
            Err(BadFlush::User),
            "{user:?}"
        );
    }
}

#[test]
fn past_max_users_a_user_flush_becomes_a_full_one() {
    let lines: String = (1..=MAX_USERS).map(|i| format!("{i} user{i}\n")).collect();
    let (d, w) = updated(&data("7", &lines), Some("newcomer")).expect("ok");
    assert_eq!(w, Written::All { epoch: 8 });
    assert_eq!(d[USERS_KEY], "");
    // A user already listed still gets a line of its own.
    let (_, w) = updated(&data("7", &lines), Some("user3")).expect("ok");
    assert!(matches!(w, Written::User { .. }));
}

/// review-b: a hand-edited serial at `u64::MAX` (kubectl edit) makes the next
/// writer's `max + 1` overflow: a panic in a debug build, and in release
/// (no overflow checks) serial 0 for every later flush, so a second flush
/// of the same user writes the same line again and no replica applies it,
/// while `POST /cache/flush` / `authgate flush` report success.
#[test]
fn review_b_a_repeated_user_flush_after_a_huge_serial_is_still_applied() {
    let start = data("1", &format!("{} mallory\n", u64::MAX));
    let once = std::panic::catch_unwind(|| updated(&start, Some("alice")));
    let (after_first, _) = once
        .expect("no overflow panic writing a flush")
        .expect("written");
    let (after_second, _) = updated(&after_first, Some("alice")).expect("written");
    let first = read(Some("u".into()), Some("2".into()), &after_first);
    let second = read(Some("u".into()), Some("3".into()), &after_second);
    assert_eq!(
        plan(Some(&first), &second),
        Plan::Users(vec!["alice".into()]),
        "the second flush of alice is applied by no replica"
    );
}

/// Review: a missing object flushes every cache, as a broken watch does.
#[tokio::test]
async fn a_missing_object_flushes_everything() {
    use std::sync::{Arc, Mutex};
    let flushed: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let seen = flushed.clone();
    // Never contacted: `observe` is what the watch calls with each version.
    let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
    let client = kube::Client::try_from(config).expect("client");
    let cfg = crate::config::FleetConfig {
        namespace: Some("ns".into()),
        name: "authgate-revocation".into(),
        watch_timeout: std::time::Duration::from_secs(60),
    };
    let flush: super::Flusher = Box::new(move |u| {
        seen.lock().expect("lock").push(u.map(str::to_owned));
    });
    let fleet =
        super::Fleet::new(&cfg, client, std::time::Duration::from_secs(1), flush).expect("fleet");
    fleet.observe(None, super::Watch::Synced);
    assert_eq!(*flushed.lock().expect("lock"), [None]);
    assert!(!fleet.check(0).0, "not ready while missing");
}
