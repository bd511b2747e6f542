//! Logs and metrics of the server roles: the log format, the Prometheus recorder with the
//! histogram buckets, `switchboard_build_info`, and the recorder's upkeep.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const BUILD_INFO: &str = "switchboard_build_info";

/// The commit this binary was built from (see `build.rs`), or "unknown".
pub const COMMIT: &str = env!("SWITCHBOARD_COMMIT");

/// Buckets of every `…_duration_seconds` histogram: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The log filter when neither `--log`, `SWITCHBOARD_LOG`, the file's `log.level` nor
/// `RUST_LOG` says one: the NATS client's own messages are kept to warnings, since
/// switchboard logs its connection events itself, with the servers named.
pub const DEFAULT_LOG_FILTER: &str = "info,async_nats=warn";

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event, coloured at a terminal.
    Text,
    /// One JSON object per event, with its span (`connect`, `grpc`, …) and fields.
    Json,
}

/// Whether `filter` is a valid log filter (tracing's `EnvFilter` syntax); the error says why.
pub fn check_log_filter(filter: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::try_new(filter).map(drop).map_err(|e| e.to_string())
}

/// Sends logs to stderr, filtered by `filter` (tracing's `EnvFilter` syntax; a filter that
/// does not parse gives `info`, and a warning says so).
pub fn init_logs(filter: &str, format: LogFormat) {
    let given = filter;
    let parsed = tracing_subscriber::EnvFilter::try_new(given);
    let bad = parsed.as_ref().err().map(|e| e.to_string());
    let filter = parsed.unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        // Colour only for a person at a terminal, not in log files (`make run > log 2>&1`).
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
    if let Some(why) = bad {
        tracing::warn!(filter = given, error = %why, "the log filter does not parse; logging at info");
    }
}

/// Installs the Prometheus recorder, sets `switchboard_build_info`, and keeps the recorder
/// tidy in the background (a histogram's samples would otherwise pile up until a scrape).
/// Call once, inside the runtime, before describing the roles' metrics.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_duration_seconds".into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    metrics::describe_gauge!(BUILD_INFO, "Always 1; the labels say which version and commit this process runs.");
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "commit" => COMMIT).set(1.0);
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}
