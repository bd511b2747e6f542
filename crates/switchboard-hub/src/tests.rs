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

/// A hub whose channel "c" has `n` JSON subscribers, ids `0..n`.
fn json_subscribers_of_c(n: u64) -> (Hub, Vec<Arc<Subscriber>>) {
    let hub = Hub::new(Arc::new(Log::default()));
    let subs: Vec<_> = (0..n).map(|i| sub(i, Encoding::Json)).collect();
    for s in &subs {
        hub.subscribe(&ch("c"), s);
    }
    (hub, subs)
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
    let (hub, subs) = json_subscribers_of_c(3);
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

/// Counts its wake-ups.
struct CountWakes(std::sync::atomic::AtomicUsize);

impl std::task::Wake for CountWakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn a_writer_waiting_on_its_socket_is_woken_by_the_overflow_alone() {
    let outbox = Outbox::new(100);
    // The writer took a frame and waits for its socket: it holds frames, the queue fills.
    outbox.push(Bytes::from(vec![0; 10]));
    outbox.take(&mut Vec::new());
    let wakes = Arc::new(CountWakes(Default::default()));
    let waker = std::task::Waker::from(wakes.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    assert!(outbox.poll_overflow(&mut cx).is_pending());
    for _ in 0..2 {
        assert_eq!(outbox.push(Bytes::from(vec![0; 50])), Push::Queued);
    }
    assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 0, "pushes that fit do not wake it");
    assert_eq!(outbox.push(Bytes::from(vec![0; 1])), Push::Overflow);
    assert_eq!(wakes.0.load(std::sync::atomic::Ordering::SeqCst), 1, "the overflow does");
    assert!(outbox.poll_overflow(&mut cx).is_ready());
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

/// A socket that takes up to `room` bytes (then reports `WouldBlock`), recording them.
struct FakeSocket {
    room: Mutex<usize>,
    written: Mutex<Vec<u8>>,
}

impl FakeSocket {
    fn new(room: usize) -> Arc<Self> {
        Arc::new(FakeSocket { room: Mutex::new(room), written: Mutex::new(Vec::new()) })
    }

    fn written(&self) -> Vec<u8> {
        self.written.lock().unwrap().clone()
    }
}

impl Sink for FakeSocket {
    fn try_write(&self, buf: &[u8]) -> std::io::Result<usize> {
        let mut room = self.room.lock().unwrap();
        let n = buf.len().min(*room);
        if n == 0 {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        *room -= n;
        self.written.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

fn noop_context() -> std::task::Context<'static> {
    std::task::Context::from_waker(std::task::Waker::noop())
}

#[test]
fn an_idle_outbox_writes_directly_and_queues_only_what_the_socket_did_not_take() {
    let socket = FakeSocket::new(5);
    let outbox = Outbox::with_sink(1 << 20, socket.clone());
    assert_eq!(outbox.push(Bytes::from_static(b"abc")), Push::Queued);
    assert_eq!(socket.written(), b"abc", "written at once");
    assert_eq!(outbox.queued_bytes(), 0);
    // The socket takes two more bytes: the rest of the frame waits for the writer, and
    // the next frame goes behind it, not to the socket.
    assert_eq!(outbox.push(Bytes::from_static(b"defg")), Push::Queued);
    assert_eq!(outbox.push(Bytes::from_static(b"h")), Push::Queued);
    assert_eq!(socket.written(), b"abcde");
    let mut writer = Vec::new();
    assert_eq!(outbox.take(&mut writer), Taken::Frames);
    assert_eq!(writer, [Bytes::from_static(b"fg"), Bytes::from_static(b"h")]);
}

#[test]
fn no_direct_write_overtakes_frames_the_writer_holds() {
    let socket = FakeSocket::new(usize::MAX);
    let outbox = Outbox::with_sink(1 << 20, socket.clone());
    outbox.enqueue(Bytes::from_static(b"1"));
    assert_eq!(socket.written(), b"", "enqueue never writes");
    let mut writer = Vec::new();
    assert_eq!(outbox.take(&mut writer), Taken::Frames);
    // The writer has "1" in hand: "2" must queue behind it.
    outbox.push(Bytes::from_static(b"2"));
    assert_eq!(socket.written(), b"");
    writer.clear();
    let mut cx = noop_context();
    assert_eq!(outbox.poll_take(&mut cx, &mut writer), std::task::Poll::Ready(Taken::Frames));
    assert_eq!(writer, [Bytes::from_static(b"2")]);
    // Once the writer has written all it took and finds the queue empty, it is idle again.
    writer.clear();
    assert!(outbox.poll_take(&mut cx, &mut writer).is_pending());
    outbox.push(Bytes::from_static(b"3"));
    assert_eq!(socket.written(), b"3");
    // A closed outbox lets go of the socket and writes nothing.
    outbox.close();
    assert_eq!(Arc::strong_count(&socket), 1);
    assert_eq!(outbox.push(Bytes::from_static(b"4")), Push::Closed);
}

#[test]
fn a_push_wakes_a_waiting_writer_once() {
    struct Count(std::sync::atomic::AtomicUsize);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let count = Arc::new(Count(Default::default()));
    let waker = std::task::Waker::from(count.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let outbox = Outbox::new(1 << 20);
    let mut writer = Vec::new();
    assert!(outbox.poll_take(&mut cx, &mut writer).is_pending());
    outbox.push(Bytes::from_static(b"a"));
    outbox.push(Bytes::from_static(b"b"));
    assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(outbox.poll_take(&mut cx, &mut writer), std::task::Poll::Ready(Taken::Frames));
    assert_eq!(writer.len(), 2);
}

#[test]
fn unsubscribing_from_the_middle_keeps_every_other_subscriber_reachable() {
    let (hub, subs) = json_subscribers_of_c(10);
    // A fan-out in flight keeps its snapshot while the list changes under it.
    let inflight = hub.fanout(&ch("c"), &[Item { offset: 1, epoch: "e", data: &Bytes::from_static(b"1") }]).unwrap();
    for id in [3, 0, 9, 4] {
        assert!(hub.unsubscribe(&ch("c"), id));
    }
    assert!(!hub.subscribe(&ch("c"), &subs[5]), "still subscribed once");
    assert_eq!(inflight.deliver(0..inflight.len(), Write::Queue).queued, 10);
    assert_eq!(deliver1(&hub, &ch("c"), 2, "e", &Bytes::from_static(b"2")).queued, 6);
    for s in &subs {
        let mut v = Vec::new();
        s.outbox.take(&mut v);
        let want = if [3, 0, 9, 4].contains(&s.id) { 1 } else { 2 };
        assert_eq!(v.len(), want, "subscriber {}", s.id);
    }
}

#[test]
fn a_subscriber_joining_from_an_offset_gets_only_what_follows_it_and_then_everything() {
    let (hub, subs) = json_subscribers_of_c(2);
    let late = sub(9, Encoding::Json);
    // Joining from u64::MAX: nothing yet, but it counts as the channel's subscriber.
    assert!(hub.subscribe_from(&ch("c"), &late, u64::MAX));
    assert_eq!(hub.subscribers(&ch("c")), 3);
    let data: Vec<Bytes> = (0..4).map(|i| Bytes::from(format!("{i}"))).collect();
    let batch = |first: u64| -> Vec<Item<'_>> {
        data.iter().enumerate().map(|(i, d)| Item { offset: first + i as u64, epoch: "e", data: d }).collect()
    };
    hub.deliver(&ch("c"), &batch(10));
    let offsets = |s: &Arc<Subscriber>| {
        let mut taken = Vec::new();
        s.outbox.take(&mut taken);
        taken
            .iter()
            .flat_map(|piece| payloads(piece).into_iter().map(|p| p.to_vec()).collect::<Vec<_>>())
            .map(|p| match Encoding::Json.decode_reply(&p).unwrap().reply {
                Some(switchboard_wire::pb::reply::Reply::Pub(p)) => p.offset,
                other => panic!("not a publication: {other:?}"),
            })
            .collect::<Vec<_>>()
    };
    assert!(offsets(&late).is_empty(), "joined from MAX: nothing");
    assert_eq!(offsets(&subs[0]), [10, 11, 12, 13]);
    // It was handed 10..=11 from elsewhere: from 11 on, the cut falls inside a batch.
    assert!(hub.set_from(&ch("c"), late.id, 11));
    hub.deliver(&ch("c"), &batch(10));
    assert_eq!(offsets(&late), [12, 13]);
    assert_eq!(offsets(&subs[1]), [10, 11, 12, 13, 10, 11, 12, 13], "the others get everything");
    // Cleared: batches are one shared piece again.
    assert!(hub.set_from(&ch("c"), late.id, 0));
    hub.deliver(&ch("c"), &batch(14));
    let mut pieces = Vec::new();
    late.outbox.take(&mut pieces);
    assert_eq!(pieces.len(), 1);
    assert!(!hub.set_from(&ch("c"), 77, 5), "not a subscriber");
}

#[test]
fn a_join_push_is_encoded_once_per_encoding_and_skips_a_subscriber_still_resuming() {
    use switchboard_wire::pb;
    let hub = Hub::new(Arc::new(Log::default()));
    let subs: Vec<_> = (0..4).map(|i| sub(i, if i % 2 == 0 { Encoding::Json } else { Encoding::Protobuf })).collect();
    for s in &subs[..3] {
        hub.subscribe(&ch("c"), s);
    }
    hub.subscribe_from(&ch("c"), &subs[3], u64::MAX);
    let client = pb::ClientInfo { session: "s1".into(), user: "alice".into(), info: Bytes::new() };
    let join = pb::Reply {
        id: 0,
        reply: Some(pb::reply::Reply::Join(pb::Join { channel: "c".into(), client: Some(client) })),
    };
    assert_eq!(hub.push(&ch("c"), &join), Delivery { queued: 3, overflowed: 0 });
    let mut frames: Vec<Bytes> = subs[..3]
        .iter()
        .map(|s| {
            let mut v = Vec::new();
            assert_eq!(s.outbox.take(&mut v), Taken::Frames);
            v.pop().unwrap()
        })
        .collect();
    assert_eq!(frames[0].as_ptr(), frames[2].as_ptr(), "same encoding, same allocation");
    assert_eq!(&frames[0][2..], br#"{"join":{"channel":"c","client":{"session":"s1","user":"alice"}}}"#);
    assert_eq!(frames.remove(1)[0], 0x82, "protobuf goes in a binary frame");
    assert_eq!(subs[3].outbox.queued_bytes(), 0, "the resuming subscriber got nothing");
    assert_eq!(hub.push(&ch("other"), &join), Delivery::default());
}
