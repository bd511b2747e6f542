use std::sync::Arc;

use bytes::Bytes;
use switchboard_bus::{Bus, MemoryBroker};
use switchboard_wire::Encoding;
use tokio::net::{TcpListener, TcpStream};

use super::{Session, run};
use crate::socket::Socket;
use crate::{Gateway, GatewayConfig};

type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// Bytes of the session task's future before its first poll (what an idle session's task
/// holds besides its heap parts) and of `Session`, in a debug build on x86_64, as they
/// were before commands waited beside the loop rather than in it (8e63d4a: 1,360 and
/// 432; after: 1,352 and 432). An idle session must not grow.
const RUN_FUTURE_BYTES: usize = 1360;
const SESSION_BYTES: usize = 432;

#[tokio::test]
async fn an_idle_session_task_is_no_larger_than_before() {
    let broker = MemoryBroker::new();
    let gateway = Gateway::new(GatewayConfig::default(), None, |deliver| async move {
        Ok::<_, AnyError>(Arc::new(broker.connect(deliver)) as Arc<dyn Bus>)
    })
    .await
    .unwrap();
    let shared = gateway.shared.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_client, accepted) = tokio::join!(TcpStream::connect(listener.local_addr().unwrap()), listener.accept());
    let (tcp, peer) = accepted.unwrap();
    let client = shared.limits.admit_upgrade(peer.ip(), &Default::default()).unwrap_or_else(|_| panic!("admitted"));
    let task = run(shared, Socket::Plain(tcp), Bytes::new(), Encoding::Json, client, None);
    let (task_bytes, session_bytes) = (size_of_val(&task), size_of::<Session>());
    eprintln!("run future: {task_bytes} bytes, Session: {session_bytes} bytes");
    assert!(task_bytes <= RUN_FUTURE_BYTES, "the session task grew to {task_bytes} bytes");
    assert!(session_bytes <= SESSION_BYTES, "Session grew to {session_bytes} bytes");
}
