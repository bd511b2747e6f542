use super::*;

/// (name, push, want offset and epoch)
type PositionCase = (&'static str, &'static [u8], Option<(u64, &'static str)>);

#[test]
fn positions_are_read_from_switchboard_pushes() {
    let cases: &[PositionCase] = &[
        (
            "a publication with history",
            br#"{"pub":{"channel":"hist:r-0","offset":42,"epoch":"q7m2x9ka","data":{"t":1,"s":1,"p":""}}}"#,
            Some((42, "q7m2x9ka")),
        ),
        (
            "binary data",
            br#"{"pub":{"channel":"hist:r-0","offset":7,"epoch":"e1","b64data":"AAH+/w=="}}"#,
            Some((7, "e1")),
        ),
        (
            "data that looks like a position does not count",
            br#"{"pub":{"channel":"bench:r-0","data":{"offset":9,"epoch":"no"}}}"#,
            None,
        ),
        ("a live-only publication", br#"{"pub":{"channel":"bench:r-0","data":{"t":1,"s":1}}}"#, None),
    ];
    for (name, push, want) in cases {
        assert_eq!(switchboard_position(push), *want, "{name}");
    }
}

#[test]
fn subscribe_replies_say_whether_they_recovered() {
    let cases: &[(&str, &[u8], SubscribeReply<'_>)] = &[
        (
            "recovered",
            br#"{"id":2,"subscribe":{"offset":63,"epoch":"e","recovered":true,"history":true}}"#,
            SubscribeReply { offset: Some(63), epoch: Some("e"), recovered: true, history: true },
        ),
        (
            "not recovered",
            br#"{"id":2,"subscribe":{"offset":63,"epoch":"f","history":true}}"#,
            SubscribeReply { offset: Some(63), epoch: Some("f"), recovered: false, history: true },
        ),
        ("live-only", br#"{"id":2,"subscribe":{}}"#, SubscribeReply::default()),
    ];
    for (name, reply, want) in cases {
        assert_eq!(SubscribeReply::parse(reply), *want, "{name}");
    }
}

#[test]
fn socketio_offsets_are_the_last_argument_of_an_event() {
    let cases: &[(&str, &[u8], Option<&str>)] = &[
        ("a recoverable event", br#"42["m",{"t":1,"s":1,"p":"xx"},"1733059200000-0"]"#, Some("1733059200000-0")),
        ("an event without recovery", br#"42["m",{"t":1,"s":1,"p":"xx"}]"#, None),
        ("a string payload is no offset", br#"42["m"]"#, None),
        ("an empty offset", br#"42["m",{},""]"#, None),
    ];
    for (name, event, want) in cases {
        assert_eq!(socketio_offset(event), *want, "{name}");
    }
    assert_eq!(json_string(br#"40{"sid":"a","pid":"b-c"}"#, b"\"pid\":\""), Some("b-c"));
}

/// An outcome as a jitter client hands it back after receiving `arrivals`.
fn client(arrivals: &[u64], cuts: u32) -> Outcome {
    let mut stream = Stream::default();
    let mut tally = Tally::default();
    for &s in arrivals {
        tally.count(stream.record(s));
    }
    let stats =
        ClientStats { cuts, reconnects: cuts, reconnect_ns: vec![5_000_000; cuts as usize], ..Default::default() };
    Outcome { connected: true, streams: vec![stream], tally, jitter: Some(stats), ..Outcome::default() }
}

#[test]
fn every_client_is_counted_against_every_publication() {
    let cuts = Cuts { every: Duration::from_secs(3), offline: Duration::from_secs(1) };
    let seq = |r: std::ops::RangeInclusive<u64>| r.collect::<Vec<u64>>();
    // Recovered across two cuts: the seams leave nothing out and repeat nothing.
    let recovered = client(&seq(1..=10), 2);
    // Resubscribed without recovery: 4..=6 were published while it was offline.
    let resubscribed = client(&[seq(1..=3), seq(7..=10)].concat(), 1);
    // A seam that repeated 5 and one that delivered 8 after 9.
    let untidy = client(&[1, 2, 3, 4, 5, 5, 6, 7, 9, 8, 10], 2);
    let never = Outcome { connected: false, ..client(&[], 0) };

    let j = summarize(cuts, 10, &[recovered, resubscribed, untidy, never]);

    assert_eq!(j.clients, 3, "a client that never connected is owed nothing");
    assert!((j.delivery_pct - 27.0 * 100.0 / 30.0).abs() < 1e-9, "{j:?}");
    assert_eq!(j.delivery_pct_per_client, Spread { min: 70.0, mean: 90.0, max: 100.0 });
    assert_eq!(j.lost_per_client, Spread { min: 0.0, mean: 1.0, max: 3.0 });
    assert_eq!(j.duplicated_per_client, Spread { min: 0.0, mean: 1.0 / 3.0, max: 1.0 });
    assert_eq!(j.reordered_per_client, Spread { min: 0.0, mean: 1.0 / 3.0, max: 1.0 });
    assert_eq!(j.clients_complete, 1);
    assert_eq!((j.cuts, j.reconnects), (5, 5));
    assert_eq!(j.reconnect_ms.count, 5);
    assert!((j.reconnect_ms.p50 - 5.0).abs() < 0.01, "{:?}", j.reconnect_ms);
}

#[test]
fn nothing_published_is_full_delivery_and_no_client_is_no_spread() {
    let cuts = Cuts { every: Duration::from_secs(3), offline: Duration::from_secs(1) };
    let j = summarize(cuts, 0, &[client(&[], 1)]);
    assert_eq!((j.delivery_pct, j.clients_complete), (100.0, 1));
    assert_eq!(summarize(cuts, 5, &[]).delivery_pct_per_client, Spread::default());
}
