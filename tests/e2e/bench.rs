//! `switchboard bench` against a dev node and against the floor (`bench-floor`): the
//! generator's own accounting, end to end.

use switchboard_bench::{BenchArgs, Report};
use switchboard_tests::procs::Proc;
use switchboard_tests::{free_port, gateway_config, start_dev, workspace_binary};

/// Nothing lost, duplicated or reordered, every subscriber got every publication.
fn assert_complete(report: &Report, subscribers: u64) {
    let table = report.table();
    assert_eq!((report.lost, report.duplicated, report.reordered), (0, 0, 0), "{table}");
    assert_eq!(report.slow_consumer_disconnects + report.other_disconnects, 0, "{table}");
    assert!(report.publications > 0, "{table}");
    assert_eq!(report.deliveries, subscribers * report.publications, "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_broadcast_through_grpc_delivers_every_publication_once_and_in_order() {
    let node = start_dev(gateway_config()).await;
    let line = format!(
        "broadcast --url ws://{http}/ws --grpc http://{grpc} --publish-via grpc --subscribers 50 --rate 20 \
         --duration 2s --payload 100 --settle 100ms --server-pid {pid} --quiet",
        http = node.http,
        grpc = node.grpc,
        pid = std::process::id(),
    );
    let args = BenchArgs::from_args(line.split_whitespace()).expect("valid flags");

    let report = switchboard_bench::run(args).await.expect("the bench runs");

    let table = report.table();
    assert_eq!((report.connections, report.connect_failures), (50, 0), "{table}");
    assert_eq!((report.lost, report.duplicated, report.reordered), (0, 0, 0), "{table}");
    assert_eq!(report.slow_consumer_disconnects + report.other_disconnects, 0, "{table}");
    assert!((30..=50).contains(&report.publications), "about 40 publications in 2 s at 20/s: {table}");
    assert_eq!(report.deliveries, 50 * report.publications, "{table}");
    assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.max >= report.latency_ms.p99, "{table}");
    assert!(report.server_cpu_us_per_delivery.is_some(), "{table}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_grpc_publishers_a_publish_stream_and_a_client_publisher_keep_every_sequence() {
    let node = start_dev(gateway_config()).await;
    let vias = [
        "--publish-via grpc --publishers 3",
        "--publish-via grpc-stream --publishers 3",
        "--publish-via client --publishers 2",
    ];
    for via in vias {
        let line = format!(
            "broadcast --url ws://{http}/ws --grpc http://{grpc} {via} --subscribers 30 --rate 60 --duration 1s \
             --payload 100 --settle 100ms --quiet",
            http = node.http,
            grpc = node.grpc,
        );
        let report = switchboard_bench::run(BenchArgs::from_args(line.split_whitespace()).unwrap()).await.unwrap();
        assert_complete(&report, 30);
        assert!(report.publications >= 30, "{via}: {}", report.table());
    }
    node.shutdown().await;
}

/// Above 1,024 subscribers a direct fan-out is split over the two worker threads; a second
/// run with several publishers makes bursts that are queued instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_fanout_split_over_threads_or_queued_keeps_every_sequence() {
    let node = start_dev(gateway_config()).await;
    for (rate, publishers) in [(5, 1), (40, 3)] {
        let line = format!(
            "broadcast --url ws://{http}/ws --grpc http://{grpc} --subscribers 1100 --rate {rate} \
             --publishers {publishers} --duration 1s --payload 100 --settle 100ms --quiet",
            http = node.http,
            grpc = node.grpc,
        );
        let report = switchboard_bench::run(BenchArgs::from_args(line.split_whitespace()).unwrap()).await.unwrap();
        assert_complete(&report, 1100);
    }
    node.shutdown().await;
}

/// The floor writes every message to every other connection, publishers included: what a
/// publishing connection receives is no delivery, and must neither be counted nor end the
/// drain before the subscribers got everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_broadcasts_every_message_to_every_other_connection() {
    let port = free_port();
    let floor = Proc::spawn_program(
        "bench-floor",
        workspace_binary("switchboard-bench", "bench-floor"),
        vec!["--listen".into(), format!("127.0.0.1:{port}")],
        port,
    );
    // (publishing connections, publications per second in all)
    for (publishers, rate) in [(1, 50), (4, 200)] {
        let line = format!(
            "broadcast --target floor --url ws://{addr}/ --subscribers 40 --publishers {publishers} --rate {rate} \
             --duration 1s --payload 100 --settle 100ms --quiet",
            addr = floor.addr(),
        );
        let report = switchboard_bench::run(BenchArgs::from_args(line.split_whitespace()).unwrap()).await.unwrap();
        assert_eq!(
            (report.connections, report.connect_failures),
            (40 + publishers, 0),
            "40 subscribers and the publishers"
        );
        assert_complete(&report, 40);
    }
}

/// `switchboard bench jitter`: every subscriber's socket is reset every 1.5 s and stays away
/// 400 ms while publications flow. On a namespace with history each reconnect subscribes
/// with `recover`, and every client ends with every publication once and in order; on a
/// live-only namespace the same cuts lose what was published while a client was away, which
/// the run must count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_with_recovery_delivers_everything_and_without_history_counts_the_losses() {
    let node = start_dev(gateway_config()).await;
    let run = |namespace: &str| {
        let line = format!(
            "jitter --url ws://{http}/ws --grpc http://{grpc} --namespace {namespace} --subscribers 8 --rate 50 \
             --duration 4s --cut-every 1500ms --offline 400ms --drain 3s --payload 100 --settle 100ms --quiet",
            http = node.http,
            grpc = node.grpc,
        );
        switchboard_bench::run(BenchArgs::from_args(line.split_whitespace()).unwrap())
    };

    let recovered = run("chat").await.expect("the bench runs");
    let table = recovered.table();
    let j = recovered.jitter.as_ref().expect("a jitter report");
    assert!(recovered.publications >= 150, "about 200 publications in 4 s at 50/s: {table}");
    assert!(j.cuts >= 8 * 2, "every client cut at least twice: {table}");
    assert_eq!((j.clients, j.reconnects, j.not_recovered, j.failed_attempts), (8, j.cuts, 0, 0), "{table}");
    assert_eq!((recovered.lost, recovered.duplicated, recovered.reordered), (0, 0, 0), "{table}");
    assert_eq!((j.delivery_pct, j.delivery_pct_per_client.min, j.clients_complete), (100.0, 100.0, 8), "{table}");
    assert_eq!(j.lost_per_client.max, 0.0, "{table}");
    assert!(j.reconnect_ms.count == j.reconnects && j.reconnect_ms.max > 0.0, "{table}");

    let live_only = run("bench").await.expect("the bench runs");
    let table = live_only.table();
    let j = live_only.jitter.as_ref().expect("a jitter report");
    assert!(j.cuts >= 8 * 2 && j.not_recovered == j.reconnects, "nothing to recover from: {table}");
    assert!(live_only.lost > 0 && j.delivery_pct < 100.0, "what was published while away is lost: {table}");
    assert!(j.lost_per_client.min > 0.0, "every client was away while publications flowed: {table}");
    assert!(live_only.warnings.iter().any(|w| w.contains("keeps no history")), "{table}");
    node.shutdown().await;
}
