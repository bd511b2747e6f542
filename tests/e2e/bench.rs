//! `switchboard bench` against a dev node: the generator's own accounting, end to end.

use switchboard_bench::BenchArgs;
use switchboard_tests::{gateway_config, start_dev};

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
