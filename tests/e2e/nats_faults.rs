//! NATS missing or frozen, as a newcomer or an operator meets it: processes that cannot
//! reach NATS say why and exit within their bound, and a node that stops answering is
//! noticed within the ping bound and left for another.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use switchboard_tests::nats::{NatsCluster, NatsServer};
use switchboard_tests::procs::{self, user_client, wait_ready};
use switchboard_tests::{DEADLINE, binary, eventually, free_port, grpc, http_get, readyz};
use switchboard_wire::pb;

/// Runs `switchboard ARGS` to its end (at most `DEADLINE`), returning status, stderr, time.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String, Duration) {
    let (code, err, took, _) = run_to_exit_probing(args, "", || {});
    (code, err, took)
}

/// [`run_to_exit`], calling `probe` every 20 ms once stderr contains `after` (from the
/// start when empty) until the process exits; also returns how many probes were followed
/// by the process still running, i.e. certainly ran while it was alive.
fn run_to_exit_probing(args: &[&str], after: &str, mut probe: impl FnMut()) -> (Option<i32>, String, Duration, u32) {
    use std::sync::{Arc, Mutex};
    let started = Instant::now();
    let mut child = Command::new(binary()).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // Read as it comes, so that the probes can wait for a line.
    let err = Arc::new(Mutex::new(String::new()));
    let reader = {
        let (err, mut stderr) = (err.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n @ 1..) = std::io::Read::read(&mut stderr, &mut buf) {
                err.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let mut alive_probes = 0;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            reader.join().unwrap();
            let err = err.lock().unwrap().clone();
            return (status.code(), err, started.elapsed(), alive_probes);
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("switchboard {args:?} still running after {DEADLINE:?}");
        }
        if err.lock().unwrap().contains(after) {
            probe();
            if child.try_wait().unwrap().is_none() {
                alive_probes += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn control_and_gateway_exit_naming_the_url_when_nats_is_unreachable() {
    let dead = format!("nats://127.0.0.1:{}", free_port());
    let (grpc, http) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let cases: [(&str, Vec<&str>); 2] = [
        (
            "control",
            vec![
                "control",
                "--nats",
                &dead,
                "--grpc-listen",
                &grpc,
                "--nats-connect-timeout",
                "1s",
                "--allow-unauthenticated-api",
            ],
        ),
        (
            "gateway",
            vec!["gateway", "--allow-anonymous", "--nats", &dead, "--listen", &http, "--nats-connect-timeout", "1s"],
        ),
    ];
    for (role, args) in cases {
        // While it waits for NATS (from its "connecting to nats" line until it gives up),
        // control must not accept gRPC connections that would hang: checked every 20 ms.
        let grpc_refused =
            || assert!(std::net::TcpStream::connect(&grpc).is_err(), "{role}: something accepts on the gRPC port");
        let (code, err, took, probes) = run_to_exit_probing(&args, "connecting to nats", grpc_refused);
        assert_eq!(code, Some(1), "{role}: {err}");
        assert!(err.contains(&format!("{dead}: connection refused")), "{role} names the url and the error: {err}");
        assert!(took < Duration::from_secs(5), "{role} took {took:?}");
        assert!(!err.contains("\x1b["), "{role}: no colour when stderr is not a terminal: {err}");
        // The 1 s wait leaves room for ~50 probes; one is enough to have looked in time.
        assert!(probes > 0, "{role}: the gRPC port was never checked while the process waited for NATS: {err}");
    }
}

#[test]
fn invalid_nats_settings_exit_64_before_any_connection_attempt() {
    let port = free_port();
    // Nothing listens on the port, and no attempt is made: the exit comes at once.
    let url = format!("nats://127.0.0.1:{port}");
    let cases: [&[&str]; 4] = [
        &["control", "--nats", &url, "--gateway-lease", "20s"],
        &["control", "--nats", &url, "--nats-ping-interval", "10ms"],
        &["gateway", "--allow-anonymous", "--nats", &url, "--nats-max-missed-pongs", "0"],
        &["gateway", "--allow-anonymous", "--nats", &url, "--max-user-id-len", "5000"],
    ];
    for args in cases {
        let (code, err, took) = run_to_exit(args);
        assert_eq!(code, Some(64), "{args:?}: {err}");
        assert!(took < Duration::from_secs(2), "{args:?} took {took:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_nats_node_is_noticed_within_the_ping_bound_and_left_for_another() {
    let nats = NatsCluster::start(3);
    // 500 ms pings, 2 missed: a frozen node is noticed within 1.5 s.
    let fast_pings = ["--nats-ping-interval", "500ms", "--nats-max-missed-pongs", "2"];
    let g1 = procs::gateway("g1", &nats.urls(), &fast_pings);
    let mut on = None;
    eventually("g1 is connected to a NATS node", || {
        on = nats.node_of("g1");
        futures_util::future::ready(on.is_some())
    })
    .await;
    let frozen = on.unwrap();
    let others: Vec<String> = (0..3).filter(|&i| i != frozen).map(|i| nats.url(i)).collect();
    let c1 = procs::control("c1", &others, &[]);
    wait_ready(c1.addr(), 1, 1).await;
    let mut a = user_client(&g1, "a").await;
    a.subscribe("f:x").await.unwrap();
    let mut api = grpc(c1.addr()).await;
    let publish = |api: &mut switchboard_wire::pb::switchboard_api_client::SwitchboardApiClient<_>, n: u32| {
        let req =
            pb::PublishApiRequest { channel: "f:x".into(), data: Bytes::from(n.to_string()), ..Default::default() };
        let mut api = api.clone();
        async move { api.publish(req).await.map(|_| ()) }
    };
    publish(&mut api, 0).await.unwrap();
    assert_eq!(tokio::time::timeout(DEADLINE, a.next_publication()).await.unwrap().unwrap().data, "0");

    nats.node(frozen).freeze();
    let frozen_at = Instant::now();
    eventually("g1 reports not ready", || readyz(g1.addr()).map(|r| !r)).await;
    let noticed = frozen_at.elapsed();
    println!("frozen node noticed after {noticed:?}");
    // 3 x 500 ms at most, with room for a loaded machine.
    assert!(noticed < Duration::from_secs(4), "noticed after {noticed:?}");
    eventually("g1 is ready again on another node", || readyz(g1.addr())).await;
    let back = frozen_at.elapsed();
    println!("g1 back on another node after {back:?}");
    assert_ne!(nats.node_of("g1"), Some(frozen), "g1 left the frozen node");
    // Publications reach the subscriber again: its subscription followed it.
    for n in 1.. {
        publish(&mut api, n).await.unwrap();
        if let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(500), a.next_publication()).await {
            assert_eq!(p.channel, "f:x");
            break;
        }
        assert!(frozen_at.elapsed() < DEADLINE * 2, "no delivery after the freeze");
    }
    nats.node(frozen).thaw();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_is_unready_and_its_api_unavailable_at_once_while_its_nats_node_is_frozen() {
    let nats = NatsServer::start();
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin_flag = admin.to_string();
    // 500 ms pings, 2 missed: a frozen node is noticed within 1.5 s.
    let flags = ["--nats-ping-interval", "500ms", "--nats-max-missed-pongs", "2", "--admin-listen", &admin_flag];
    let c1 = procs::control("c1", &[nats.url()], &flags);
    wait_ready(c1.addr(), 0, 1).await;
    // The admin port is what the chart's readiness probe asks.
    eventually("control's /readyz answers 200", || readyz(admin)).await;
    let mut api = grpc(c1.addr()).await;
    let publish = pb::PublishApiRequest { channel: "f:x".into(), data: Bytes::from_static(b"1"), ..Default::default() };
    // The standard gRPC health check, overall and for the API, as a gRPC probe asks it.
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", c1.addr())).unwrap().connect().await.unwrap();
    let health = || {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let channel = channel.clone();
        async move {
            let mut statuses = Vec::new();
            for service in ["", "switchboard.v1.SwitchboardApi"] {
                let request = HealthCheckRequest { service: service.into() };
                statuses.push(HealthClient::new(channel.clone()).check(request).await.unwrap().into_inner().status());
            }
            statuses
        }
    };
    use tonic_health::pb::health_check_response::ServingStatus::{NotServing, Serving};
    assert_eq!(health().await, [Serving, Serving]);

    nats.freeze();
    let frozen_at = Instant::now();
    let mut answer = None;
    eventually("control's /readyz fails", async || {
        answer = http_get(admin, "/readyz").await;
        answer.as_ref().is_some_and(|(status, _)| *status != 200)
    })
    .await;
    let noticed = frozen_at.elapsed();
    println!("control noticed the frozen node after {noticed:?}");
    // 3 x 500 ms at most, with room for a loaded machine.
    assert!(noticed < Duration::from_secs(4), "noticed after {noticed:?}");
    let (status, body) = answer.unwrap();
    assert_eq!((status, body.as_str()), (503, "bus unavailable\n"), "the reason is in the body");

    // The API answers at once meanwhile, rather than leaving the caller to its deadline
    // (`switchboard pub --timeout`, 5 s by default).
    let asked = Instant::now();
    let e = api.publish(publish.clone()).await.unwrap_err();
    let took = asked.elapsed();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(took < Duration::from_secs(1), "UNAVAILABLE after {took:?}");
    // `Info` is the one call that needs no bus: the server itself still serves.
    api.info(pb::InfoRequest {}).await.expect("Info answers without the bus");
    eventually("the gRPC health check says NOT_SERVING", async || health().await == [NotServing, NotServing]).await;

    nats.thaw();
    eventually("control's /readyz answers 200 again", || readyz(admin)).await;
    eventually("the gRPC health check says SERVING again", async || health().await == [Serving, Serving]).await;
    println!("control ready again {:?} after the freeze", frozen_at.elapsed());
    eventually("publishing works again", || {
        let (mut api, publish) = (api.clone(), publish.clone());
        async move { api.publish(publish).await.is_ok() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_is_not_ready_until_a_control_replica_serves() {
    let nats = NatsServer::start();
    let g1 = procs::gateway("g1", &[nats.url()], &[]);
    // Its bus connects first: from then on, the only thing it waits for is control.
    let mut answer = None;
    eventually("g1 says it waits for a control replica", async || {
        answer = http_get(g1.addr(), "/readyz").await;
        answer.as_ref().is_some_and(|(_, body)| body.starts_with("waiting for a control replica"))
    })
    .await;
    assert_eq!(answer.unwrap().0, 503);
    let c1 = procs::control("c1", &[nats.url()], &[]);
    eventually("g1 is ready once c1 heartbeats", || readyz(g1.addr())).await;
    wait_ready(c1.addr(), 1, 1).await;
}
