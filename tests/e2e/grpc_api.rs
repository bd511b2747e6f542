//! The backend gRPC API: Broadcast, status codes, health and reflection.

use bytes::Bytes;
use switchboard_tests::{client, gateway_config, grpc, start_dev};
use switchboard_wire::Encoding;
use switchboard_wire::pb;
use tonic::Code;

#[tokio::test]
async fn broadcast_reaches_the_subscribers_of_every_listed_channel() {
    let node = start_dev(gateway_config()).await;
    let mut a = client(node.http, Encoding::Json).await;
    let mut b = client(node.http, Encoding::Protobuf).await;
    a.subscribe("b:one").await.unwrap();
    b.subscribe("b:two").await.unwrap();
    let mut api = grpc(node.grpc).await;
    let resp = api
        .broadcast(pb::BroadcastRequest {
            channels: vec!["b:one".into(), "b:two".into()],
            data: Bytes::from_static(b"42"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.results.len(), 2);
    for r in &resp.results {
        assert!(matches!(r.result, Some(pb::broadcast_result::Result::Ok(_))), "{r:?}");
    }
    for (c, channel) in [(&mut a, "b:one"), (&mut b, "b:two")] {
        let p = tokio::time::timeout(switchboard_tests::DEADLINE, c.next_publication()).await.unwrap().unwrap();
        assert_eq!((p.channel.as_str(), &p.data[..]), (channel, &b"42"[..]));
    }
}

#[tokio::test]
async fn bad_requests_get_invalid_argument() {
    let node = start_dev(gateway_config()).await;
    let mut api = grpc(node.grpc).await;
    let cases = [
        api.publish(pb::PublishApiRequest { channel: "".into(), data: Bytes::new() }).await.map(|_| ()),
        api.publish(pb::PublishApiRequest { channel: "a b".into(), data: Bytes::new() }).await.map(|_| ()),
        api.publish(pb::PublishApiRequest { channel: "news.>".into(), data: Bytes::new() }).await.map(|_| ()),
        api.broadcast(pb::BroadcastRequest { channels: vec![], data: Bytes::new() }).await.map(|_| ()),
        api.broadcast(pb::BroadcastRequest { channels: vec!["ok".into(), "not ok".into()], data: Bytes::new() })
            .await
            .map(|_| ()),
    ];
    for (i, r) in cases.into_iter().enumerate() {
        assert_eq!(r.unwrap_err().code(), Code::InvalidArgument, "case {i}");
    }
}

#[tokio::test]
async fn health_reports_serving_and_reflection_lists_the_api() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let node = start_dev(gateway_config()).await;
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", node.grpc)).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "switchboard.v1.SwitchboardApi"] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }

    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection.server_reflection_info(tokio_stream::once(req)).await.unwrap().into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else { panic!("{resp:?}") };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"switchboard.v1.SwitchboardApi"), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health"), "{names:?}");
}
