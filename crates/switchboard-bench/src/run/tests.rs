use clap::Parser;

use super::*;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

fn args(line: &str) -> BenchArgs {
    Cli::try_parse_from(std::iter::once("bench").chain(line.split_whitespace())).unwrap().bench
}

/// (subscribing connections, publishing connections, channels, external streams, multi)
type Shape = (usize, usize, usize, usize, bool);

fn shape(plan: &Plan) -> Shape {
    (
        plan.roles.iter().filter(|r| r.subscribe.is_some()).count(),
        plan.roles.iter().filter(|r| r.publish.is_some()).count(),
        plan.channels.len(),
        plan.external.len(),
        plan.multi,
    )
}

#[test]
fn each_scenario_plans_its_connections_channels_and_publishers() {
    let cases: &[(&str, &str, Shape)] = &[
        ("broadcast subscribes everyone to one channel", "broadcast --subscribers 50", (50, 0, 1, 1, false)),
        ("broadcast through several gRPC publishers", "broadcast --subscribers 50 --publishers 4", (50, 0, 1, 4, true)),
        (
            "broadcast through a client publishes from a connection",
            "broadcast --subscribers 50 --publish-via client",
            (50, 1, 1, 0, false),
        ),
        (
            "socket.io publishes through a connection",
            "broadcast --subscribers 5 --target socketio",
            (5, 1, 1, 0, false),
        ),
        ("rooms through gRPC publish once per room", "rooms --subscribers 25 --rooms-size 10", (25, 0, 3, 3, false)),
        (
            "rooms through clients make every member publish",
            "rooms --subscribers 25 --rooms-size 10 --publish-via client",
            (25, 25, 3, 0, true),
        ),
        ("fan-in through gRPC", "fanin --publishers 7", (1, 0, 1, 7, true)),
        ("fan-in through clients", "fanin --publishers 7 --publish-via client", (1, 7, 1, 0, true)),
        ("idle subscribes and never publishes", "idle --subscribers 9", (9, 0, 1, 0, false)),
        ("connect only connects", "connect --subscribers 4", (0, 0, 1, 0, false)),
    ];
    for (name, line, want) in cases {
        let plan = plan(&args(line), "r").unwrap();
        assert_eq!(shape(&plan), *want, "{name}");
    }
}

#[test]
fn the_last_room_holds_the_remainder() {
    let plan = plan(&args("rooms --subscribers 25 --rooms-size 10 --publish-via client --rate 50"), "r").unwrap();
    assert_eq!(plan.publishers_per_channel, [10, 10, 5]);
    let last = plan.roles[24];
    assert_eq!(last.subscribe, Some(2));
    let p = last.publish.unwrap();
    assert_eq!((p.channel, p.k), (2, 4));
    assert!((p.rate - 2.0).abs() < 1e-9, "the rate is shared by every member");
}

#[test]
fn channel_names_follow_each_targets_grammar() {
    let cases: &[(&str, &str)] = &[
        ("broadcast", "bench:r-0"),
        ("broadcast --target nats-ws", "bench.r.0"),
        ("broadcast --target socketio", "r-0"),
        ("broadcast --namespace hist", "hist:r-0"),
    ];
    for (line, want) in cases {
        assert_eq!(plan(&args(line), "r").unwrap().channels[0], *want, "{line}");
    }
}

#[test]
fn peers_refuse_the_scenarios_they_do_not_run() {
    for line in ["rooms --target nats-ws", "fanin --target socketio"] {
        assert!(check(&args(line)).is_err(), "{line}");
    }
    assert!(check(&args("broadcast --target nats-ws")).is_ok());
}

#[test]
fn the_namespace_must_be_a_switchboard_namespace() {
    assert!(check(&args("broadcast --namespace hist_1-a")).is_ok());
    for line in
        ["broadcast --namespace a:b", "broadcast --namespace a.b", "broadcast --target nats-ws --namespace hist"]
    {
        assert!(check(&args(line)).is_err(), "{line}");
    }
}
