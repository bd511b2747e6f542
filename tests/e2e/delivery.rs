//! Publications reach exactly the subscribers of their channel, once, in order.

use bytes::Bytes;
use switchboard_client::Client;
use switchboard_tests::{client, gateway_config, grpc, start_dev};
use switchboard_wire::Encoding;
use switchboard_wire::pb;

async fn publish(api: &mut switchboard_tests::Api, channel: &str, data: &str) -> pb::PublishApiResponse {
    api.publish(pb::PublishApiRequest {
        channel: channel.into(),
        data: Bytes::from(data.to_owned()),
        ..Default::default()
    })
    .await
    .expect("publish succeeds")
    .into_inner()
}

async fn collect(client: &mut Client, n: usize) -> Vec<pb::Publication> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let p = tokio::time::timeout(switchboard_tests::DEADLINE, client.next_publication())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} publications arrived", got.len()))
            .expect("connection open");
        got.push(p);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_publish_reaches_every_subscriber_once_in_order_and_no_one_else() {
    let node = start_dev(gateway_config()).await;
    let mut room: Vec<Client> = Vec::new();
    for _ in 0..40 {
        let c = client(node.http, Encoding::Json).await;
        c.subscribe("chat:room").await.unwrap();
        room.push(c);
    }
    let mut others: Vec<Client> = Vec::new();
    for _ in 0..10 {
        let c = client(node.http, Encoding::Json).await;
        c.subscribe("chat:other").await.unwrap();
        others.push(c);
    }
    let mut api = grpc(node.grpc).await;
    let mut acks = Vec::new();
    for i in 0..25 {
        acks.push(publish(&mut api, "chat:room", &format!("{{\"n\":{i}}}")).await);
    }
    assert!(acks.windows(2).all(|w| w[1].offset > w[0].offset), "offsets go up: {acks:?}");
    assert!(acks.iter().all(|a| a.epoch == acks[0].epoch));
    for c in &mut room {
        let got = collect(c, 25).await;
        for (i, p) in got.iter().enumerate() {
            assert_eq!(p.channel, "chat:room");
            assert_eq!(p.data, Bytes::from(format!("{{\"n\":{i}}}")), "publication {i} out of order");
            assert_eq!((p.offset, &p.epoch), (acks[i].offset, &acks[i].epoch));
        }
    }
    // A marker on the other channel: it arrives after anything misdelivered would have.
    publish(&mut api, "chat:other", "\"marker\"").await;
    for c in &mut others {
        let got = collect(c, 1).await;
        assert_eq!(got[0].data, Bytes::from_static(b"\"marker\""), "a chat:room publication leaked to chat:other");
    }
    // And nothing more reaches the room after its 25: a final marker comes next.
    publish(&mut api, "chat:room", "\"end\"").await;
    for c in &mut room {
        assert_eq!(collect(c, 1).await[0].data, Bytes::from_static(b"\"end\""), "a duplicate was delivered");
    }
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let node = start_dev(gateway_config()).await;
    let mut a = client(node.http, Encoding::Json).await;
    let mut b = client(node.http, Encoding::Json).await;
    for c in [&a, &b] {
        c.subscribe("news:x").await.unwrap();
        c.subscribe("news:marker").await.unwrap();
    }
    let mut api = grpc(node.grpc).await;
    publish(&mut api, "news:x", "1").await;
    assert_eq!(collect(&mut a, 1).await[0].data, "1");
    assert_eq!(collect(&mut b, 1).await[0].data, "1");
    a.unsubscribe("news:x").await.unwrap();
    publish(&mut api, "news:x", "2").await;
    publish(&mut api, "news:marker", "3").await;
    assert_eq!(collect(&mut b, 2).await.iter().map(|p| p.data.clone()).collect::<Vec<_>>(), ["2", "3"]);
    let next = collect(&mut a, 1).await;
    assert_eq!(
        (next[0].channel.as_str(), &next[0].data[..]),
        ("news:marker", &b"3"[..]),
        "delivered after unsubscribe"
    );
    let err = a.unsubscribe("news:x").await.unwrap_err();
    assert_eq!(err.code(), Some(108));
}

#[tokio::test]
async fn client_publish_reaches_the_other_subscribers() {
    let node = start_dev(gateway_config()).await;
    let publisher = client(node.http, Encoding::Json).await;
    let mut subs = Vec::new();
    for _ in 0..5 {
        let c = client(node.http, Encoding::Json).await;
        c.subscribe("chat:c").await.unwrap();
        subs.push(c);
    }
    let r1 = publisher.publish("chat:c", Bytes::from_static(br#"{"text":"hi"}"#)).await.unwrap();
    let r2 = publisher.publish("chat:c", Bytes::from_static(br#"{"text":"again"}"#)).await.unwrap();
    assert!(r2.offset > r1.offset);
    for c in &mut subs {
        let got = collect(c, 2).await;
        assert_eq!(got[0].data, Bytes::from_static(br#"{"text":"hi"}"#));
        assert_eq!((got[0].offset, got[1].offset), (r1.offset, r2.offset));
    }
}

#[tokio::test]
async fn protobuf_and_json_clients_receive_the_same_publication() {
    let node = start_dev(gateway_config()).await;
    let mut json = client(node.http, Encoding::Json).await;
    let mut proto = client(node.http, Encoding::Protobuf).await;
    json.subscribe("mixed:c").await.unwrap();
    proto.subscribe("mixed:c").await.unwrap();
    let mut api = grpc(node.grpc).await;
    let ack = publish(&mut api, "mixed:c", r#"{"a":[1,2,3]}"#).await;
    // A protobuf client may publish bytes that are not JSON; JSON clients get them as base64.
    let raw = proto.publish("mixed:c", Bytes::from_static(b"\x00\x01binary")).await.unwrap();
    let (j, p) = (collect(&mut json, 2).await, collect(&mut proto, 2).await);
    assert_eq!(j, p, "both encodings decode to the same publications");
    assert_eq!((j[0].offset, &j[0].epoch, &j[0].data[..]), (ack.offset, &ack.epoch, &br#"{"a":[1,2,3]}"#[..]));
    assert_eq!((j[1].offset, &j[1].data[..]), (raw.offset, &b"\x00\x01binary"[..]));
}
