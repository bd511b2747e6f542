use std::sync::Mutex;

use super::*;
use crate::outbox::Taken;

#[derive(Default)]
struct Log(Mutex<Vec<(String, bool)>>);

impl Interest for Log {
    fn first_subscriber(&self, channel: &Channel) {
        self.0.lock().unwrap().push((channel.to_string(), true));
    }
    fn last_unsubscribed(&self, channel: &Channel) {
        self.0.lock().unwrap().push((channel.to_string(), false));
    }
}

fn sub(id: u64, encoding: Encoding) -> Arc<Subscriber> {
    Arc::new(Subscriber { id, encoding, outbox: Outbox::new(1 << 20) })
}

fn ch(s: &str) -> Channel {
    Channel::parse(s).unwrap()
}

/// Delivers one publication.
fn deliver1(hub: &Hub, channel: &Channel, offset: u64, epoch: &str, data: &Bytes) -> Delivery {
    hub.deliver(channel, &[Item { offset, epoch, data }])
}

/// Splits a buffer of server frames (short and 16-bit lengths) into their payloads.
fn payloads(mut buf: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (len, head) = match buf[1] {
            126 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            n => (n as usize, 2),
        };
        out.push(&buf[head..head + len]);
        buf = &buf[head + len..];
    }
    out
}

#[test]
fn a_thousand_subscribers_make_one_interest_and_leaving_ends_it() {
    let log = Arc::new(Log::default());
    let hub = Hub::new(log.clone());
    let subs: Vec<_> = (0..1000).map(|i| sub(i, Encoding::Json)).collect();
    for s in &subs {
        assert!(hub.subscribe(&ch("a:b"), s));
    }
    assert!(!hub.subscribe(&ch("a:b"), &subs[0]), "a second subscribe is not new");
    assert_eq!(hub.subscribers(&ch("a:b")), 1000);
    assert_eq!(*log.0.lock().unwrap(), [("a:b".to_string(), true)]);
    for s in &subs {
        assert!(hub.unsubscribe(&ch("a:b"), s.id));
    }
    assert!(!hub.unsubscribe(&ch("a:b"), 0));
    assert_eq!(*log.0.lock().unwrap(), [("a:b".to_string(), true), ("a:b".to_string(), false)]);
    assert_eq!(hub.channels(), 0);
}

#[test]
fn a_publication_is_encoded_once_per_encoding_and_shared() {
    let hub = Hub::new(Arc::new(Log::default()));
    let subs: Vec<_> = (0..6).map(|i| sub(i, if i % 2 == 0 { Encoding::Json } else { Encoding::Protobuf })).collect();
    for s in &subs {
        hub.subscribe(&ch("c"), s);
    }
    let d = deliver1(&hub, &ch("c"), 7, "ep", &Bytes::from_static(b"{\"a\":1}"));
    assert_eq!(d, Delivery { queued: 6, overflowed: 0 });
    let frames: Vec<Bytes> = subs
        .iter()
        .map(|s| {
            let mut v = Vec::new();
            assert_eq!(s.outbox.take(&mut v), Taken::Frames);
            assert_eq!(v.len(), 1);
            v.pop().unwrap()
        })
        .collect();
    // Same encoding, same allocation.
    assert_eq!(frames[0].as_ptr(), frames[2].as_ptr());
    assert_eq!(frames[1].as_ptr(), frames[5].as_ptr());
    assert_ne!(frames[0].as_ptr(), frames[1].as_ptr());
    assert_eq!(&frames[0][2..], br#"{"pub":{"channel":"c","offset":7,"epoch":"ep","data":{"a":1}}}"#);
    assert_eq!(frames[1][0], 0x82, "protobuf goes in a binary frame");
}

#[test]
fn a_batch_is_queued_as_one_shared_piece_in_offset_order() {
    let hub = Hub::new(Arc::new(Log::default()));
    let subs: Vec<_> = (0..3).map(|i| sub(i, Encoding::Json)).collect();
    for s in &subs {
        hub.subscribe(&ch("c"), s);
    }
    let data: Vec<Bytes> = (0..3).map(|i| Bytes::from(format!("{i}"))).collect();
    let items: Vec<Item<'_>> =
        data.iter().enumerate().map(|(i, d)| Item { offset: 10 + i as u64, epoch: "e", data: d }).collect();
    assert_eq!(hub.deliver(&ch("c"), &items), Delivery { queued: 9, overflowed: 0 });
    let mut first = Vec::new();
    subs[0].outbox.take(&mut first);
    assert_eq!(first.len(), 1, "one piece per subscriber");
    let want: Vec<String> =
        (0..3).map(|i| format!(r#"{{"pub":{{"channel":"c","offset":{},"epoch":"e","data":{i}}}}}"#, 10 + i)).collect();
    let got: Vec<&[u8]> = payloads(&first[0]);
    assert_eq!(got, want.iter().map(|w| w.as_bytes()).collect::<Vec<_>>());
    let mut second = Vec::new();
    subs[1].outbox.take(&mut second);
    assert_eq!(second[0].as_ptr(), first[0].as_ptr(), "the piece is shared");
}

#[test]
fn a_large_batch_is_split_into_pieces_of_bounded_size() {
    let hub = Hub::new(Arc::new(Log::default()));
    let s = sub(1, Encoding::Json);
    hub.subscribe(&ch("c"), &s);
    let data = Bytes::from(format!("\"{}\"", "x".repeat(10_000)));
    let items: Vec<Item<'_>> = (0..20).map(|i| Item { offset: i, epoch: "e", data: &data }).collect();
    assert_eq!(hub.deliver(&ch("c"), &items).queued, 20);
    let mut pieces = Vec::new();
    s.outbox.take(&mut pieces);
    assert!(pieces.len() >= 3, "{} pieces", pieces.len());
    assert!(pieces.iter().all(|p| p.len() < BATCH_BYTES + 11_000));
    let frames: usize = pieces.iter().map(|p| payloads(p).len()).sum();
    assert_eq!(frames, 20);
}

#[test]
fn delivery_reaches_only_the_channel_subscribers() {
    let hub = Hub::new(Arc::new(Log::default()));
    let (a, b) = (sub(1, Encoding::Json), sub(2, Encoding::Json));
    hub.subscribe(&ch("x"), &a);
    hub.subscribe(&ch("y"), &b);
    deliver1(&hub, &ch("x"), 1, "e", &Bytes::from_static(b"1"));
    let (mut va, mut vb) = (Vec::new(), Vec::new());
    a.outbox.take(&mut va);
    b.outbox.take(&mut vb);
    assert_eq!((va.len(), vb.len()), (1, 0));
    assert_eq!(deliver1(&hub, &ch("z"), 1, "e", &Bytes::new()), Delivery::default());
}

#[test]
fn an_outbox_over_its_limit_overflows_and_refuses_more() {
    let outbox = Outbox::new(100);
    assert_eq!(outbox.push(Bytes::from(vec![0; 60])), Push::Queued);
    assert_eq!(outbox.push(Bytes::from(vec![0; 40])), Push::Queued);
    assert_eq!(outbox.queued_bytes(), 100);
    assert_eq!(outbox.push(Bytes::from(vec![0; 1])), Push::Overflow);
    assert_eq!(outbox.push(Bytes::from(vec![0; 1])), Push::Closed);
    assert_eq!(outbox.take(&mut Vec::new()), Taken::Overflowed);
}

#[test]
fn take_swaps_buffers_in_order_and_trim_frees_a_quiet_queue() {
    let outbox = Outbox::new(1 << 20);
    let mut writer = Vec::new();
    for round in 0..3u8 {
        for i in 0..10u8 {
            assert_eq!(outbox.push(Bytes::from(vec![round, i])), Push::Queued);
        }
        assert_eq!(outbox.take(&mut writer), Taken::Frames);
        let got: Vec<Vec<u8>> = writer.iter().map(|b| b.to_vec()).collect();
        assert_eq!(got, (0..10u8).map(|i| vec![round, i]).collect::<Vec<_>>());
        assert_eq!(outbox.queued_bytes(), 0);
        writer.clear();
    }
    // From the second round on, the queue reuses the writer's old buffer.
    assert!(outbox.capacity() >= 10);
    // A writer that still holds frames gets the new ones appended after them.
    outbox.push(Bytes::from_static(b"a"));
    writer.push(Bytes::from_static(b"z"));
    outbox.take(&mut writer);
    assert_eq!(writer, [Bytes::from_static(b"z"), Bytes::from_static(b"a")]);
    outbox.trim();
    assert_eq!(outbox.capacity(), 0);
    // Trim leaves queued frames alone.
    outbox.push(Bytes::from_static(b"b"));
    outbox.trim();
    assert_eq!(outbox.queued_bytes(), 1);
}

#[test]
fn a_frame_larger_than_the_limit_passes_an_empty_outbox() {
    let outbox = Outbox::new(10);
    assert_eq!(outbox.push(Bytes::from(vec![0; 50])), Push::Queued);
    let mut v = Vec::new();
    assert_eq!(outbox.take(&mut v), Taken::Frames);
    assert_eq!(v.len(), 1);
    assert_eq!(outbox.queued_bytes(), 0);
}

#[test]
fn a_slow_subscriber_overflows_without_affecting_its_neighbours() {
    let hub = Hub::new(Arc::new(Log::default()));
    let slow = Arc::new(Subscriber { id: 1, encoding: Encoding::Json, outbox: Outbox::new(200) });
    let fast = sub(2, Encoding::Json);
    hub.subscribe(&ch("c"), &slow);
    hub.subscribe(&ch("c"), &fast);
    let mut overflowed = 0;
    let mut drained = Vec::new();
    for i in 0..20 {
        overflowed += deliver1(&hub, &ch("c"), i, "e", &Bytes::from_static(b"\"0123456789\"")).overflowed;
        fast.outbox.take(&mut drained);
    }
    assert_eq!(overflowed, 1);
    assert_eq!(drained.len(), 20);
}
