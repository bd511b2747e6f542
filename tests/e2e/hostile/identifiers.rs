//! Identifiers that become part of bus subjects: a user id or session id too long for NATS
//! is refused where it enters, and the gateway stays on its bus for everyone else.

use std::time::{Duration, Instant};

use bytes::Bytes;
use switchboard_tests::nats::NatsServer;
use switchboard_tests::procs::{self, token, user_client, wait_ready};
use switchboard_tests::{DEADLINE, RawWs, grpc};
use switchboard_wire::pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_too_long_for_a_subject_are_refused_and_the_gateway_stays_on_nats() {
    let nats = NatsServer::start();
    let urls = vec![nats.url()];
    let c1 = procs::control("c1", &urls, &[]);
    let g1 = procs::gateway("g1", &urls, &[]);
    wait_ready(c1.addr(), 1, 1).await;
    let mut bystander = user_client(&g1, "bystander").await;
    bystander.subscribe("ids:news").await.unwrap();

    // Connect tokens whose `sub` would make the user's subject longer than NATS carries.
    for sub in [".".repeat(1400), "a".repeat(4096), "b".repeat(257)] {
        let mut ws = RawWs::connect(g1.addr(), None).await;
        ws.text(&serde_json::json!({"id": 1, "connect": {"token": token(&sub)}}).to_string()).await;
        ws.expect_close(4501).await;
    }
    // 256 bytes is the documented maximum, and works.
    let longest = user_client(&g1, &"c".repeat(256)).await;
    longest.ping().await.unwrap();

    // From the API side, ids too long are refused at once.
    let mut api = grpc(c1.addr()).await;
    let started = Instant::now();
    let huge = "u".repeat(5000);
    let send_user =
        api.send_to_user(pb::SendToUserRequest { user: huge.clone(), data: Bytes::from_static(b"1") }).await;
    assert_eq!(send_user.unwrap_err().code(), Code::InvalidArgument);
    let disconnect = api
        .disconnect(pb::DisconnectRequest {
            target: Some(pb::disconnect_request::Target::User(huge.clone())),
            code: 0,
            reason: String::new(),
        })
        .await;
    assert_eq!(disconnect.unwrap_err().code(), Code::InvalidArgument);
    let send_session =
        api.send_to_session(pb::SendToSessionRequest { session: huge, data: Bytes::from_static(b"1") }).await;
    assert_eq!(send_session.unwrap_err().code(), Code::InvalidArgument);
    assert!(started.elapsed() < Duration::from_secs(1), "refused at once, not after a timeout");

    // The gateway never left NATS: the bystander receives every publication.
    for n in 0..200u32 {
        api.publish(pb::PublishApiRequest {
            channel: "ids:news".into(),
            data: Bytes::from(n.to_string()),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    for n in 0..200u64 {
        let p = tokio::time::timeout(DEADLINE, bystander.next_publication()).await.unwrap().unwrap();
        assert_eq!(p.data, n.to_string(), "publication {n}");
    }
    assert!(!g1.log().contains("maximum control line exceeded"), "{}", g1.log());
}
