//! The result of a run: a JSON document for scripts and a table for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::accounting::Percentiles;
use crate::jitter::{JitterReport, Spread};
use crate::run::{Counts, Plan};
use crate::sysinfo::{self, Machine};
use crate::{BenchArgs, Scenario, Target};

/// The generator counts as its own bottleneck from this fraction of one core.
const GENERATOR_SATURATED: f64 = 0.9;

/// Everything a run measured. Serialized as the `--json` file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The system under test, as named by `--label` or the target.
    pub label: String,
    pub scenario: Scenario,
    pub target: Target,
    /// The generator's command line.
    pub command: String,
    pub git_commit: String,
    pub machine: Machine,
    pub pinning: Pinning,
    pub urls: Vec<String>,
    /// The namespace of the channels (Switchboard only).
    pub namespace: Option<String>,
    pub payload_bytes: usize,
    /// Requested publications per second (0: as fast as possible).
    pub rate: f64,
    /// Connections established.
    pub connections: u64,
    pub connect_failures: u64,
    pub connect: ConnectStats,
    /// How long publishing lasted.
    pub duration_s: f64,
    pub publications: u64,
    pub publications_per_sec: f64,
    pub publish_errors: u64,
    /// Messages received, duplicates included.
    pub deliveries: u64,
    /// Publications owed to the subscribers that stayed connected.
    pub expected_deliveries: u64,
    pub deliveries_per_sec: f64,
    /// Never delivered to a subscriber that stayed connected.
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Not delivered to subscribers that were disconnected during the run.
    pub lost_after_disconnect: u64,
    /// Connections the server closed as slow consumers (4002, NATS "Slow Consumer").
    pub slow_consumer_disconnects: u64,
    pub other_disconnects: u64,
    /// Disconnects by close code (or `eof`, `error`).
    pub disconnect_codes: BTreeMap<String, u64>,
    /// Publish-to-receive latency.
    pub latency_ms: Percentiles,
    pub server: Option<ServerCost>,
    /// Server RSS growth from before connecting to after settling, per connection.
    pub server_rss_bytes_per_connection: Option<f64>,
    /// Server CPU time while publishing and draining, per delivery.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// Server CPU time while connecting, per connection.
    pub server_cpu_us_per_connection: Option<f64>,
    /// The generator's own CPU time over the measured phase.
    pub generator_cpu_seconds: f64,
    /// That time over the phase's wall time: 1.0 is one core busy throughout.
    pub generator_cpu_fraction: f64,
    /// `jitter`: delivery, loss, duplicates and reorders per client, cuts and reconnects.
    pub jitter: Option<JitterReport>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectStats {
    /// Connections completed per second (dial, upgrade, hello, subscribe).
    pub per_sec: f64,
    pub latency_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pinning {
    /// `Cpus_allowed_list` of the generator.
    pub generator_cpus: String,
    /// The generator may not use every CPU (e.g. `taskset`).
    pub generator_pinned: bool,
    pub server: Vec<ServerProcess>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerProcess {
    pub pid: u32,
    /// `Cpus_allowed_list` of the process.
    pub cpus: String,
    pub command: String,
}

/// The server processes' memory and CPU, summed over `--server-pid`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerCost {
    pub processes: Vec<ServerProcess>,
    pub rss_bytes_before: u64,
    pub rss_bytes_connected: u64,
    pub rss_bytes_end: u64,
    pub cpu_seconds_connecting: f64,
    pub cpu_seconds_measured: f64,
}

/// What a run hands to [`Report::build`].
pub struct Inputs<'a> {
    pub args: &'a BenchArgs,
    pub plan: &'a Plan,
    pub warnings: Vec<String>,
    pub connected: u64,
    pub connect_failures: u64,
    pub connect_seconds: f64,
    pub connect_latency: Percentiles,
    pub latency: Percentiles,
    pub publications: u64,
    pub publish_errors: u64,
    pub publish_seconds: f64,
    pub counts: Counts,
    pub server: Option<ServerCost>,
    pub generator_cpu: f64,
    pub generator_wall: f64,
    pub jitter: Option<JitterReport>,
}

// === impl Report ===

impl Report {
    pub fn build(i: Inputs<'_>) -> Report {
        let per_sec = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        let deliveries = i.counts.tally.received;
        let mut warnings = i.warnings;
        let generator_cpus = sysinfo::cpus_allowed(None).unwrap_or_default();
        let machine = sysinfo::machine();
        let generator_pinned = cpu_count(&generator_cpus) < machine.nproc;
        let generator_cpu_fraction = if i.generator_wall > 0.0 { i.generator_cpu / i.generator_wall } else { 0.0 };
        if generator_cpu_fraction >= GENERATOR_SATURATED {
            warnings.push(format!(
                "the generator used {:.0}% of a core: it may have measured itself rather than the server",
                generator_cpu_fraction * 100.0
            ));
        }
        match &i.server {
            None => warnings.push("no --server-pid: server memory and CPU not measured".into()),
            Some(s) => {
                for p in &s.processes {
                    if overlaps(&p.cpus, &generator_cpus) && generator_pinned {
                        warnings.push(format!(
                            "server pid {} (cpus {}) shares cpus with the generator ({generator_cpus})",
                            p.pid, p.cpus
                        ));
                    }
                }
            }
        }
        if i.publish_errors > 0 {
            warnings.push(format!("{} publications failed", i.publish_errors));
        }
        let c = &i.counts;
        if c.slow_consumer + c.other_disconnects > 0 {
            warnings.push(format!(
                "{} connections closed during the run ({} as slow consumers): {:?}",
                c.slow_consumer + c.other_disconnects,
                c.slow_consumer,
                c.disconnect_codes
            ));
        }
        let server_rss_bytes_per_connection = i
            .server
            .as_ref()
            .filter(|_| i.connected > 0)
            .map(|s| (s.rss_bytes_connected as f64 - s.rss_bytes_before as f64) / i.connected as f64);
        let server_cpu_us_per_delivery =
            i.server.as_ref().filter(|_| deliveries > 0).map(|s| s.cpu_seconds_measured * 1e6 / deliveries as f64);
        let server_cpu_us_per_connection =
            i.server.as_ref().filter(|_| i.connected > 0).map(|s| s.cpu_seconds_connecting * 1e6 / i.connected as f64);
        Report {
            label: i.args.label.clone().unwrap_or_else(|| i.args.target.name().to_owned()),
            scenario: i.args.scenario,
            target: i.args.target,
            command: sysinfo::own_command(),
            git_commit: sysinfo::git_commit(),
            machine,
            pinning: Pinning {
                generator_cpus,
                generator_pinned,
                server: i.server.as_ref().map(|s| s.processes.clone()).unwrap_or_default(),
            },
            urls: i.args.url.clone(),
            namespace: (i.args.target == Target::Switchboard).then(|| i.args.namespace.clone()),
            payload_bytes: i.args.payload,
            rate: i.args.rate,
            connections: i.connected,
            connect_failures: i.connect_failures,
            connect: ConnectStats { per_sec: per_sec(i.connected, i.connect_seconds), latency_ms: i.connect_latency },
            duration_s: i.publish_seconds,
            publications: i.publications,
            publications_per_sec: per_sec(i.publications, i.publish_seconds),
            publish_errors: i.publish_errors,
            deliveries,
            expected_deliveries: c.expected,
            deliveries_per_sec: per_sec(deliveries, i.publish_seconds),
            lost: c.lost,
            duplicated: c.tally.duplicated,
            reordered: c.tally.reordered,
            lost_after_disconnect: c.lost_after_disconnect,
            slow_consumer_disconnects: c.slow_consumer,
            other_disconnects: c.other_disconnects,
            disconnect_codes: c.disconnect_codes.clone(),
            latency_ms: i.latency,
            server: i.server,
            server_rss_bytes_per_connection,
            server_cpu_us_per_delivery,
            server_cpu_us_per_connection,
            generator_cpu_seconds: i.generator_cpu,
            generator_cpu_fraction,
            jitter: i.jitter,
            warnings,
        }
    }

    /// The report as a table for a terminal.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let row = |t: &mut String, k: &str, v: String| {
            let _ = writeln!(t, "  {k:<22} {v}");
        };
        let _ = writeln!(t, "switchboard bench {:?} against {} ({})", self.scenario, self.label, self.urls.join(", "));
        row(&mut t, "connections", format!("{} ({} failed)", self.connections, self.connect_failures));
        let cl = &self.connect.latency_ms;
        row(
            &mut t,
            "connect",
            format!("{:.0}/s, latency ms p50 {:.2} p99 {:.2} max {:.2}", self.connect.per_sec, cl.p50, cl.p99, cl.max),
        );
        if matches!(self.scenario, Scenario::Broadcast | Scenario::Rooms | Scenario::Fanin | Scenario::Jitter) {
            row(
                &mut t,
                "publications",
                format!(
                    "{} in {:.1} s ({:.0}/s, {} B payload, {} errors)",
                    self.publications,
                    self.duration_s,
                    self.publications_per_sec,
                    self.payload_bytes,
                    self.publish_errors
                ),
            );
            row(
                &mut t,
                "deliveries",
                format!(
                    "{} of {} expected ({:.0}/s)",
                    self.deliveries, self.expected_deliveries, self.deliveries_per_sec
                ),
            );
            let l = &self.latency_ms;
            row(
                &mut t,
                "latency ms",
                format!("p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}", l.p50, l.p90, l.p99, l.p999, l.max),
            );
            row(&mut t, "lost / dup / reordered", format!("{} / {} / {}", self.lost, self.duplicated, self.reordered));
        }
        if let Some(j) = &self.jitter {
            let spread =
                |s: &Spread, digits: usize| format!("{:.digits$} / {:.digits$} / {:.digits$}", s.min, s.mean, s.max);
            row(
                &mut t,
                "jitter",
                format!(
                    "cut every {:.1} s for {:.1} s: {} cuts, {} reconnects",
                    j.cut_every_s, j.offline_s, j.cuts, j.reconnects
                ),
            );
            row(
                &mut t,
                "delivery",
                format!(
                    "{:.2}% of what was owed; per client min / mean / max {}%; {} of {} clients complete",
                    j.delivery_pct,
                    spread(&j.delivery_pct_per_client, 2),
                    j.clients_complete,
                    j.clients
                ),
            );
            row(&mut t, "lost per client", spread(&j.lost_per_client, 1));
            row(&mut t, "duplicated per client", spread(&j.duplicated_per_client, 1));
            row(&mut t, "reordered per client", spread(&j.reordered_per_client, 1));
            let r = &j.reconnect_ms;
            row(
                &mut t,
                "reconnect ms",
                format!(
                    "p50 {:.1}  p99 {:.1}  max {:.1}; {} not recovered, {} failed attempts, {} resubscribe pushes, {} epoch changes",
                    r.p50, r.p99, r.max, j.not_recovered, j.failed_attempts, j.resubscribes, j.epoch_changes
                ),
            );
        }
        row(
            &mut t,
            "disconnects",
            format!(
                "{} slow consumer, {} other, {} messages missed by them",
                self.slow_consumer_disconnects, self.other_disconnects, self.lost_after_disconnect
            ),
        );
        if let Some(s) = &self.server {
            row(
                &mut t,
                "server RSS",
                format!(
                    "{:.1} MiB before, {:.1} MiB connected, {:.1} MiB at the end",
                    mib(s.rss_bytes_before),
                    mib(s.rss_bytes_connected),
                    mib(s.rss_bytes_end)
                ),
            );
            if let Some(b) = self.server_rss_bytes_per_connection {
                row(&mut t, "server RSS/connection", format!("{:.2} KiB", b / 1024.0));
            }
            if let Some(us) = self.server_cpu_us_per_connection {
                row(&mut t, "server CPU/connection", format!("{us:.1} µs"));
            }
            if let Some(us) = self.server_cpu_us_per_delivery {
                row(&mut t, "server CPU/delivery", format!("{us:.2} µs ({:.2} s in all)", s.cpu_seconds_measured));
            }
        }
        row(
            &mut t,
            "generator CPU",
            format!("{:.2} s, {:.0}% of a core", self.generator_cpu_seconds, self.generator_cpu_fraction * 100.0),
        );
        let servers: Vec<String> = self.pinning.server.iter().map(|p| format!("pid {} on {}", p.pid, p.cpus)).collect();
        row(
            &mut t,
            "cpus",
            format!(
                "generator {}{}; server {}",
                self.pinning.generator_cpus,
                if self.pinning.generator_pinned { " (pinned)" } else { "" },
                if servers.is_empty() { "unknown".into() } else { servers.join(", ") }
            ),
        );
        for w in &self.warnings {
            let _ = writeln!(t, "  warning: {w}");
        }
        t
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// CPUs in a list such as `0-3,6`.
fn cpu_count(list: &str) -> usize {
    cpus(list).len()
}

fn cpus(list: &str) -> Vec<usize> {
    list.split(',')
        .filter_map(|part| {
            let part = part.trim();
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            Some(a.parse::<usize>().ok()?..=b.parse::<usize>().ok()?)
        })
        .flatten()
        .collect()
}

fn overlaps(a: &str, b: &str) -> bool {
    let b = cpus(b);
    cpus(a).iter().any(|c| b.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_counted_and_compared() {
        let cases: &[(&str, usize)] = &[("0", 1), ("0-1", 2), ("0-3,6", 5), ("", 0), ("1,3-4", 3)];
        for (list, want) in cases {
            assert_eq!(cpu_count(list), *want, "{list}");
        }
        assert!(overlaps("0-1", "1"));
        assert!(!overlaps("0", "1"));
    }
}
