//! The load generator behind `switchboard bench`: opens many WebSocket connections to a
//! gateway (or to a peer system, for comparison), publishes timestamped, numbered payloads,
//! and reports deliveries per second, latency percentiles, lost, duplicated and reordered
//! messages, connect rate, and what the server spent (RSS per connection, CPU per delivery)
//! read from `/proc`.
//!
//! ```text
//! switchboard bench broadcast --url ws://127.0.0.1:8080/ws --grpc http://127.0.0.1:50051 \
//!     --subscribers 1000 --rate 100 --duration 30s --payload 100 --server-pid 1234 --json out.json
//! ```
//!
//! Code map: `run.rs` plans a scenario and drives its phases (`run/count.rs` adds up the
//! outcomes, `progress.rs` prints the progress line); `conn.rs` is one connection
//! (one task each); `proto.rs` is what each target speaks; `ws.rs` the client side of RFC
//! 6455; `publish.rs` the publishers that are not subscriber connections; `payload.rs` the
//! stamp every payload carries; `accounting.rs` loss, duplicate and reorder counting and the
//! latency histogram; `jitter.rs` the jitter scenario's subscriber, cut and resumed over and
//! over; `sysinfo.rs` reads `/proc`; `report.rs` the JSON and the table.

mod accounting;
mod conn;
mod jitter;
mod payload;
mod progress;
mod proto;
mod publish;
mod report;
mod run;
mod sysinfo;
mod ws;

use std::path::PathBuf;
use std::time::Duration;

pub use report::Report;
pub use run::run;

/// `switchboard bench`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// The system under test: a Switchboard gateway, NATS's own WebSocket listener, or
    /// Socket.IO (Engine.IO v4 over WebSocket).
    #[arg(long, value_enum, default_value = "switchboard")]
    pub target: Target,
    /// WebSocket URLs, comma-separated; connections are spread over them in turn. For
    /// Socket.IO a URL without a path gets `/socket.io/?EIO=4&transport=websocket`.
    #[arg(long, env = "SWITCHBOARD_URL", value_delimiter = ',', default_value = "ws://127.0.0.1:8080/ws")]
    pub url: Vec<String>,
    /// gRPC API URL (Switchboard with `--publish-via grpc`).
    #[arg(long, env = "SWITCHBOARD_GRPC", default_value = "http://127.0.0.1:50051")]
    pub grpc: String,
    /// NATS URL the publisher uses with `--target nats-ws` (plain NATS over TCP).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Subscriber connections (for `idle` and `connect`: connections).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Publications per second in all, spread over the publishers; 0 publishes as fast as
    /// the path allows.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// How long to publish (`idle`: how long to hold the connections). `250ms`, `30s`, `2m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Payload size in bytes (the stamp padded with `x`).
    #[arg(long, default_value_t = 100)]
    pub payload: usize,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Connections opened per second; 0 opens them as fast as `--connect-concurrency` allows.
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// Connection attempts in flight at once.
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,
    /// How Switchboard publications are sent: the gRPC API (one call after another per
    /// publisher), one gRPC `PublishStream` per publisher (without waiting for each answer;
    /// the server keeps each channel's order), or client connections (each publisher its own
    /// connection, writing at its rate without waiting for replies).
    #[arg(long, value_enum, default_value = "grpc")]
    pub publish_via: PublishVia,
    /// Server process ids, comma-separated: their RSS and CPU time are read from /proc and
    /// summed (for a cluster, every process of it).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Spread connection source addresses over 127.0.0.1 … 127.0.0.N, so that more
    /// connections than one address's ephemeral ports can be opened.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub sources: u8,
    /// `rooms`: members per room (each member publishes with `--publish-via client`).
    #[arg(long, default_value_t = 10)]
    pub rooms_size: usize,
    /// `broadcast` and `fanin`: publishers into the one channel, each with its own sequence
    /// (default 1 for `broadcast`, 100 for `fanin`). gRPC publishers wait for each call's
    /// answer before the next, so several keep more publications in flight.
    #[arg(long)]
    pub publishers: Option<usize>,
    /// After publishing stops, how long to wait for deliveries still in flight.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Time between connecting and measuring, for the server to settle.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Switchboard: the namespace of the run's channels (`NAME:…`). What the namespace keeps
    /// (history or live-only delivery) is the server's configuration
    /// (`[channels.namespaces.NAME]`), so this picks the path that is measured.
    #[arg(long, default_value = "bench")]
    pub namespace: String,
    /// A name for the system under test in the report (default: the target's name).
    #[arg(long)]
    pub label: Option<String>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// `jitter`: how often each subscriber's connection is cut (each subscriber's first cut at
    /// a random point within the first interval).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub cut_every: Duration,
    /// `jitter`: how long a cut subscriber stays offline before it reconnects.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub offline: Duration,
    /// A connect token every Switchboard connection sends (the gateway verifies it on each
    /// connect: `connect` measures the cost of a token check); mint one with `switchboard token`.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

// === impl BenchArgs ===

impl BenchArgs {
    /// Parses the flags as `switchboard bench` would (the scenario first), for tests and
    /// programs that build a run without a command line of their own.
    pub fn from_args<I, T>(args: I) -> Result<BenchArgs, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{Args as _, FromArgMatches as _};
        let command = BenchArgs::augment_args(clap::Command::new("bench").no_binary_name(true));
        BenchArgs::from_arg_matches(&command.try_get_matches_from(args)?)
    }
}

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Every subscriber on one channel; one publisher.
    Broadcast,
    /// Rooms of `--rooms-size` members; a publisher per room (gRPC) or every member
    /// publishing (client): chat.
    Rooms,
    /// `--publishers` publishers into one channel, one subscriber.
    Fanin,
    /// Connect, subscribe one channel and hold: memory per connection.
    Idle,
    /// Connects per second and connect latency.
    Connect,
    /// Every subscriber on one channel, one publisher; each subscriber's connection is cut
    /// every `--cut-every` (its phase random) for `--offline`, then it reconnects and resumes
    /// as its system's recovery allows: delivery under network drops.
    Jitter,
}

/// The system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// A Switchboard gateway (protocol v1, JSON).
    Switchboard,
    /// NATS's own WebSocket listener; publications through plain NATS.
    NatsWs,
    /// Socket.IO 4 (`sub` with an ack joins a room, `pub` emits `m` to it).
    Socketio,
    /// `bench-floor`, the minimal broadcaster: every message a connection sends goes to all
    /// the others.
    Floor,
}

// === impl Target ===

impl Target {
    fn subprotocol(self) -> Option<&'static str> {
        match self {
            Target::Switchboard => Some("switchboard.v1.json"),
            Target::NatsWs | Target::Socketio | Target::Floor => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Target::Switchboard => "switchboard",
            Target::NatsWs => "nats-ws",
            Target::Socketio => "socketio",
            Target::Floor => "floor",
        }
    }
}

/// How Switchboard publications are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishVia {
    Grpc,
    /// One gRPC `PublishStream` per publisher: sent without waiting for each answer, each
    /// channel's order kept by the server, so one publisher measures the ordered rate.
    #[serde(rename = "grpc-stream")]
    GrpcStream,
    Client,
}

/// Parses `250ms`, `30s`, `2m`, `1h`, or plain seconds: every duration on the command line
/// (the binary's flags use it too).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().map_err(|_| format!("not a duration: {s:?} (e.g. 250ms, 30s, 2m)"))?;
    let seconds = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn durations_parse_in_every_unit() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("250ms", Some(Duration::from_millis(250))),
            ("30s", Some(Duration::from_secs(30))),
            ("2m", Some(Duration::from_secs(120))),
            ("1h", Some(Duration::from_secs(3600))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("5", Some(Duration::from_secs(5))),
            ("5d", None),
            ("", None),
            ("s", None),
            ("10x", None),
            ("-1s", None),
            ("ten", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).ok(), *want, "{text}");
        }
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    #[test]
    fn the_documented_command_line_parses() {
        let cli = Cli::try_parse_from([
            "bench",
            "broadcast",
            "--url",
            "ws://a/ws,ws://b/ws",
            "--grpc",
            "http://g",
            "--subscribers",
            "5000",
            "--rate",
            "50",
            "--duration",
            "30s",
            "--payload",
            "100",
            "--json",
            "out.json",
            "--server-pid",
            "1,2",
            "--sources",
            "4",
        ])
        .unwrap();
        let b = cli.bench;
        assert_eq!(b.scenario, Scenario::Broadcast);
        assert_eq!(b.url, ["ws://a/ws", "ws://b/ws"]);
        assert_eq!((b.subscribers, b.rate, b.payload, b.sources), (5000, 50.0, 100, 4));
        assert_eq!(b.server_pid, [1, 2]);
        assert_eq!(b.duration, Duration::from_secs(30));
        assert!(Cli::try_parse_from(["bench", "broadcast", "--sources", "0"]).is_err());
        let direct = BenchArgs::from_args(["idle", "--subscribers", "7"]).unwrap();
        assert_eq!((direct.scenario, direct.subscribers), (Scenario::Idle, 7));
        assert!(BenchArgs::from_args(["nonsense"]).is_err());
        let jitter = BenchArgs::from_args(["jitter", "--cut-every", "3s", "--offline", "500ms"]).unwrap();
        assert_eq!(
            (jitter.scenario, jitter.cut_every, jitter.offline),
            (Scenario::Jitter, Duration::from_secs(3), Duration::from_millis(500))
        );
        let defaults = BenchArgs::from_args(["jitter"]).unwrap();
        assert_eq!((defaults.cut_every, defaults.offline), (Duration::from_secs(15), Duration::from_secs(2)));
    }
}
