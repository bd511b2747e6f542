//! The backend gRPC API: Broadcast, status codes, health and reflection (v1 and v1alpha).

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
            ..Default::default()
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
        api.publish(pb::PublishApiRequest { channel: "".into(), data: Bytes::new(), ..Default::default() })
            .await
            .map(|_| ()),
        api.publish(pb::PublishApiRequest { channel: "a b".into(), data: Bytes::new(), ..Default::default() })
            .await
            .map(|_| ()),
        api.publish(pb::PublishApiRequest { channel: "news.>".into(), data: Bytes::new(), ..Default::default() })
            .await
            .map(|_| ()),
        api.broadcast(pb::BroadcastRequest { channels: vec![], data: Bytes::new(), ..Default::default() })
            .await
            .map(|_| ()),
        api.broadcast(pb::BroadcastRequest {
            channels: vec!["ok".into(), "not ok".into()],
            data: Bytes::new(),
            ..Default::default()
        })
        .await
        .map(|_| ()),
    ];
    for (i, r) in cases.into_iter().enumerate() {
        assert_eq!(r.unwrap_err().code(), Code::InvalidArgument, "case {i}");
    }
}

#[tokio::test]
async fn health_reports_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let node = start_dev(gateway_config()).await;
    let mut health = HealthClient::new(channel(node.grpc).await);
    for service in ["", "switchboard.v1.SwitchboardApi"] {
        let r = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
}

/// Lists services through both reflection versions: v1, and v1alpha that grpcurl before
/// 1.8.8 and Python's grpcio-reflection speak.
#[tokio::test]
async fn reflection_lists_the_api_in_both_versions() {
    let node = start_dev(gateway_config()).await;
    let channel = channel(node.grpc).await;
    let cases = [("v1", list_services_v1(channel.clone()).await), ("v1alpha", list_services_v1alpha(channel).await)];
    for (version, names) in cases {
        for service in [
            "switchboard.v1.SwitchboardApi",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ] {
            assert!(names.iter().any(|n| n == service), "{version} lacks {service}: {names:?}");
        }
    }
}

/// Reflection describes every method of the API, the ones added since included: what
/// `grpcurl describe` and `grpcurl list switchboard.v1.SwitchboardApi` show.
#[tokio::test]
async fn reflection_describes_every_api_method() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let node = start_dev(gateway_config()).await;
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol("switchboard.v1.SwitchboardApi".into())),
    };
    let mut client = ServerReflectionClient::new(channel(node.grpc).await);
    let mut stream = client.server_reflection_info(tokio_stream::once(req)).await.unwrap().into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = resp.message_response else { panic!("{resp:?}") };
    let bytes: Vec<u8> = files.file_descriptor_proto.concat();
    for method in switchboard_control::metrics::METHODS {
        // A method's name is a length-prefixed string of the descriptor.
        let field = [&[method.len() as u8][..], method.as_bytes()].concat();
        assert!(bytes.windows(field.len()).any(|w| w == field), "reflection lacks {method}");
    }
}

async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

/// The services that reflection version `$v` (`v1` or `v1alpha`) lists on `$channel`: the
/// two versions have the same messages in different generated modules.
macro_rules! list_services {
    ($v:ident, $channel:expr) => {{
        use tokio_stream::StreamExt;
        use tonic_reflection::pb::$v::ServerReflectionRequest;
        use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut client = ServerReflectionClient::new($channel);
        let mut stream = client.server_reflection_info(tokio_stream::once(req)).await.unwrap().into_inner();
        let resp = stream.next().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else { panic!("{resp:?}") };
        list.service.into_iter().map(|s| s.name).collect::<Vec<String>>()
    }};
}

async fn list_services_v1(channel: tonic::transport::Channel) -> Vec<String> {
    list_services!(v1, channel)
}

async fn list_services_v1alpha(channel: tonic::transport::Channel) -> Vec<String> {
    list_services!(v1alpha, channel)
}

#[tokio::test]
async fn a_request_over_the_size_limit_gets_resource_exhausted_and_the_api_goes_on() {
    let node = start_dev(gateway_config()).await;
    // A client that would send anything: the server's 4 MiB limit is what refuses it.
    let mut api = grpc(node.grpc).await.max_encoding_message_size(usize::MAX);
    let huge =
        pb::PublishApiRequest { channel: "big:x".into(), data: Bytes::from(vec![b'1'; 5 << 20]), ..Default::default() };
    let status = api.publish(huge).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let ok = api
        .publish(pb::PublishApiRequest {
            channel: "big:x".into(),
            data: Bytes::from_static(b"1"),
            ..Default::default()
        })
        .await;
    assert!(ok.is_ok(), "{ok:?}");
}
