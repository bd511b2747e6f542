//! The registry's ordering and merge rules, without a bus.

use super::*;

fn registry() -> Registry {
    let mut r = Registry::default();
    r.set_owned(ShardSet::all());
    r
}

fn ev(gateway: &str, seq: u64, event: Event) -> pb::RegistryEvent {
    pb::RegistryEvent { gateway: gateway.into(), seq, at_ms: 0, event: Some(event) }
}

fn record(session: &str, user: &str, channels: &[&str], seq: u64) -> pb::SessionRecord {
    pb::SessionRecord {
        session: session.into(),
        gateway: session.rsplit_once('-').unwrap().0.into(),
        user: user.into(),
        channels: channels.iter().map(|c| c.to_string()).collect(),
        seq,
        ..Default::default()
    }
}

fn connected(seq: u64, session: &str, user: &str, channels: &[&str]) -> pb::RegistryEvent {
    ev("g1", seq, Event::Connected(record(session, user, channels, 0)))
}

fn gone(seq: u64, session: &str) -> pb::RegistryEvent {
    ev("g1", seq, Event::Disconnected(pb::SessionGone { session: session.into(), user: String::new() }))
}

fn change(seq: u64, session: &str, channel: &str, subscribe: bool) -> pb::RegistryEvent {
    let c = pb::ChannelChange { session: session.into(), channel: channel.into(), user: String::new() };
    ev("g1", seq, if subscribe { Event::Subscribed(c) } else { Event::Unsubscribed(c) })
}

/// The channels of `session`, or `None` when the registry does not hold it.
fn channels(r: &Registry, session: &str) -> Option<Vec<String>> {
    r.get(session).map(|rec| {
        let mut c = rec.channels;
        c.sort();
        c
    })
}

/// A case name, the events applied in order, and the session's channels afterwards.
type EventCase = (&'static str, Vec<pb::RegistryEvent>, Option<Vec<String>>);
/// Per channel: name, sessions, users.
type Counts = Vec<(&'static str, u32, u32)>;

#[test]
fn events_at_or_below_the_held_seq_are_ignored() {
    let now = Instant::now();
    let some = |c: &[&str]| Some(c.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let cases: Vec<EventCase> = vec![
        ("connect then subscribe", vec![connected(1, "g1-a", "u", &[]), change(2, "g1-a", "x", true)], some(&["x"])),
        (
            "a replayed subscribe after an unsubscribe",
            vec![connected(1, "g1-a", "u", &[]), change(2, "g1-a", "x", true), change(3, "g1-a", "x", false), {
                change(2, "g1-a", "x", true)
            }],
            some(&[]),
        ),
        ("a late connect after the disconnect", vec![gone(5, "g1-a"), connected(4, "g1-a", "u", &["x"])], None),
        ("a disconnect at the same seq", vec![connected(3, "g1-a", "u", &[]), gone(3, "g1-a")], some(&[])),
        ("a subscribe for an unknown session", vec![change(1, "g1-a", "x", true)], None),
        (
            "a newer connect replaces the record",
            vec![connected(1, "g1-a", "u", &["x"]), connected(2, "g1-a", "u", &["y"])],
            { some(&["y"]) },
        ),
    ];
    for (name, events, want) in cases {
        let mut r = registry();
        for e in &events {
            r.apply(e, now);
        }
        assert_eq!(channels(&r, "g1-a"), want, "{name}");
    }
}

#[test]
fn a_stale_snapshot_does_not_resurrect_a_disconnected_session() {
    let now = Instant::now();
    let mut r = registry();
    r.apply(&connected(1, "g1-a", "u", &[]), now);
    r.apply(&gone(5, "g1-a"), now);
    // Taken at seq 3, before the disconnect, delivered after it.
    let applied = r.merge_snapshot("g1", vec![record("g1-a", "u", &[], 1)], &ShardSet::all());
    assert_eq!(applied, 0);
    assert_eq!(r.remove_absent("g1", &ShardSet::all(), &["g1-a".to_string()].into(), 3, now), 0);
    assert_eq!(r.get("g1-a"), None);
    assert!(r.user_sessions("u").is_empty());
}

#[test]
fn a_newer_event_is_not_overwritten_by_an_older_snapshot_record() {
    let now = Instant::now();
    let mut r = registry();
    r.apply(&connected(1, "g1-a", "u", &[]), now);
    r.apply(&change(6, "g1-a", "news", true), now);
    r.merge_snapshot("g1", vec![record("g1-a", "u", &[], 4)], &ShardSet::all());
    assert_eq!(channels(&r, "g1-a"), Some(vec!["news".to_string()]));
    assert_eq!(r.presence("news").len(), 1);
}

#[test]
fn sessions_missing_from_a_complete_snapshot_are_removed_unless_changed_after_it() {
    let now = Instant::now();
    let mut r = registry();
    for (seq, s) in [(1, "g1-old"), (8, "g1-new"), (2, "g1-listed")] {
        r.apply(&connected(seq, s, "u", &[]), now);
    }
    r.apply(&ev("g2", 1, Event::Connected(record("g2-other", "u", &[], 0))), now);
    let not_requested = (0..256u16).find(|s| *s != shard("g1-old") && *s != shard("g1-new")).unwrap();
    r.apply(&connected(3, &key_in_shard("g1-", not_requested), "u", &[]), now);
    let requested: ShardSet = (0..256u16).filter(|s| *s != not_requested).collect();

    r.merge_snapshot("g1", vec![record("g1-listed", "u", &[], 2)], &requested);
    let removed = r.remove_absent("g1", &requested, &["g1-listed".to_string()].into(), 5, now);
    assert_eq!(removed, 1);
    let mut left: Vec<String> = r.user_sessions("u").into_iter().map(|r| r.session).collect();
    left.sort();
    let mut want =
        vec!["g1-listed".to_string(), "g1-new".into(), "g2-other".into(), key_in_shard("g1-", not_requested)];
    want.sort();
    assert_eq!(left, want);
    // The removal leaves a tombstone: the old connect event arriving late stays ignored.
    assert!(!r.apply(&connected(1, "g1-old", "u", &[]), now));
}

#[test]
fn losing_shards_and_gateways_drops_their_records() {
    let now = Instant::now();
    let mut r = registry();
    let (a, b) = ("g1-a", "g2-b");
    r.apply(&connected(1, a, "u", &["x"]), now);
    r.apply(&ev("g2", 1, Event::Connected(record(b, "u", &["x"], 0))), now);
    assert_eq!(r.drop_gateway("g2"), 1);
    assert_eq!((r.len(), r.presence("x").len()), (1, 1));
    let keep: ShardSet = (0..256u16).filter(|s| *s != shard(a)).collect();
    assert_eq!(r.set_owned(keep), 1);
    assert_eq!((r.len(), r.channels("").len()), (0, 0));
    assert!(!r.apply(&connected(2, a, "u", &[]), now), "events of shards not owned are ignored");
}

#[test]
fn channel_counts_follow_the_pattern_and_count_distinct_users() {
    let now = Instant::now();
    let mut r = registry();
    r.apply(&connected(1, "g1-a", "alice", &["chat:1", "chat:2", "news"]), now);
    r.apply(&connected(2, "g1-b", "alice", &["chat:1"]), now);
    r.apply(&connected(3, "g1-c", "", &["chat:1"]), now);
    let counts = |p: &str| -> Vec<(String, u32, u32)> {
        r.channels(p).into_iter().map(|c| (c.channel, c.sessions, c.users)).collect()
    };
    let cases: [(&str, Counts); 5] = [
        ("", vec![("chat:1", 3, 1), ("chat:2", 1, 1), ("news", 1, 1)]),
        ("chat:*", vec![("chat:1", 3, 1), ("chat:2", 1, 1)]),
        ("*2", vec![("chat:2", 1, 1)]),
        ("n*w*s", vec![("news", 1, 1)]),
        ("chat", vec![]),
    ];
    for (pattern, want) in cases {
        let want: Vec<(String, u32, u32)> = want.into_iter().map(|(c, s, u)| (c.to_string(), s, u)).collect();
        assert_eq!(counts(pattern), want, "pattern {pattern:?}");
    }
}

#[test]
fn glob_stars_match_any_run() {
    for (p, t, want) in [
        ("*", "", true),
        ("*", "abc", true),
        ("a*c", "abbbc", true),
        ("a*c", "abcd", false),
        ("*b*", "abc", true),
        ("a**", "a", true),
        ("ab", "abc", false),
        ("abc", "ab", false),
    ] {
        assert_eq!(glob(p, t), want, "{p} ~ {t}");
    }
}

/// A session id with `prefix` whose shard is `target`.
fn key_in_shard(prefix: &str, target: u16) -> String {
    (0..).map(|i| format!("{prefix}{i:x}")).find(|k| shard(k) == target).unwrap()
}

#[test]
fn a_channel_change_that_arrives_before_the_sessions_snapshot_record_is_kept_for_it() {
    let now = Instant::now();
    let mut r = registry();
    // The snapshot was taken at seq 2; the subscribe numbered 3 overtook it.
    assert!(!r.apply(&change(3, "g1-a", "news", true), now));
    r.merge_snapshot("g1", vec![record("g1-a", "u", &[], 2)], &ShardSet::all());
    assert_eq!(channels(&r, "g1-a"), Some(vec!["news".to_string()]));
    assert_eq!(r.presence("news").len(), 1);
    // A change older than the record is not replayed.
    r.apply(&change(1, "g1-b", "old", true), now);
    r.merge_snapshot("g1", vec![record("g1-b", "u", &[], 2)], &ShardSet::all());
    assert_eq!(channels(&r, "g1-b"), Some(vec![]));
}

#[test]
fn gained_shards_count_as_complete_only_once_their_snapshot_is_done() {
    let mut r = Registry::default();
    let (a, b): (ShardSet, ShardSet) = ([1, 2].into_iter().collect(), [2, 3].into_iter().collect());
    r.set_owned(a);
    let first = r.gaining(a);
    assert!(r.complete().is_empty());
    r.mark_complete(a, first);
    assert_eq!(r.complete(), a);
    // Shard 2 is kept, 3 gained; a stale completion of an older epoch marks nothing new.
    r.set_owned(b);
    let second = r.gaining([3].into_iter().collect());
    r.mark_complete(b, first);
    assert_eq!(r.complete().iter().collect::<Vec<_>>(), [2]);
    r.mark_complete(b, second);
    assert_eq!(r.complete(), b);
}

#[test]
fn a_restarted_gateway_is_forgotten_tombstones_included() {
    let now = Instant::now();
    let mut r = registry();
    r.apply(&connected(1, "g1-a", "u", &[]), now);
    r.apply(&gone(9, "g1-a"), now);
    r.apply(&connected(10, "g1-b", "u", &[]), now);
    assert_eq!(r.forget_gateway("g1"), 1);
    // The new life numbers from 1 again: its records are not held against the old ones.
    assert_eq!(r.merge_snapshot("g1", vec![record("g1-a", "u", &[], 2)], &ShardSet::all()), 1);
}
