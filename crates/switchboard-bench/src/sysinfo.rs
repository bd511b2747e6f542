//! What the generator learns about processes and the machine from `/proc`: CPU seconds and
//! resident memory of a process, the CPUs it may run on, the machine's size, the commit.

use std::path::Path;

use serde::Serialize;

/// Clock ticks per second in `/proc/PID/stat` (`USER_HZ`, 100 on every Linux port).
const TICKS_PER_SECOND: f64 = 100.0;

/// One process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    /// User + system CPU time.
    pub cpu_seconds: f64,
    /// Resident set size.
    pub rss_bytes: u64,
}

/// Reads `/proc/PID/stat` and `/proc/PID/status`; `None` when the process is gone. `pid`
/// `None` is the generator itself.
pub fn sample(pid: Option<u32>) -> Option<Sample> {
    let dir = proc_dir(pid);
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    Some(Sample { cpu_seconds: cpu_seconds(&stat)?, rss_bytes: status_kib(&status, "VmRSS:")? * 1024 })
}

/// The sum over several processes; processes that are gone count zero.
pub fn sample_all(pids: &[u32]) -> Sample {
    pids.iter().filter_map(|p| sample(Some(*p))).fold(Sample::default(), |a, s| Sample {
        cpu_seconds: a.cpu_seconds + s.cpu_seconds,
        rss_bytes: a.rss_bytes + s.rss_bytes,
    })
}

/// The CPUs a process may run on (`Cpus_allowed_list`, e.g. `0-1` or `1`).
pub fn cpus_allowed(pid: Option<u32>) -> Option<String> {
    let status = std::fs::read_to_string(format!("{}/status", proc_dir(pid))).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).map(|v| v.trim().to_owned())
}

/// The process's command line, arguments joined by spaces.
pub fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> =
        raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    Some(args.join(" "))
}

fn proc_dir(pid: Option<u32>) -> String {
    match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_owned(),
    }
}

/// utime + stime from a `/proc/PID/stat` line, in seconds.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) may hold spaces and parentheses; count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The machine the run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs online (not only those this process may use).
    pub nproc: usize,
    pub memory_bytes: u64,
    pub cpu_model: String,
    pub kernel: String,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        nproc: cpuinfo.lines().filter(|l| l.starts_with("processor")).count().max(1),
        memory_bytes: status_kib(&meminfo, "MemTotal:").unwrap_or(0) * 1024,
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
    }
}

/// The commit checked out where the generator runs (`-dirty` with uncommitted changes to
/// tracked files); `unknown` outside a git work tree.
pub fn git_commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{commit}-dirty") } else { commit }
        }
        None => "unknown".to_owned(),
    }
}

/// The generator's own command line, quoted so a shell reads it back the same.
pub fn own_command() -> String {
    std::env::args().map(|a| shell_quote(&a)).collect::<Vec<_>>().join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b));
    if plain { arg.to_owned() } else { format!("'{}'", arg.replace('\'', r"'\''")) }
}

/// Raises this process's soft open-files limit to its hard limit. Returns the new soft
/// limit.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

/// Whether `/proc` is there to read at all.
pub fn has_proc() -> bool {
    Path::new("/proc/self/stat").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let cases: &[(&str, &str, Option<f64>)] = &[
            ("a plain name", "42 (switchboard) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0", Some(3.0)),
            ("a name with spaces and parens", "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0", Some(0.03)),
            ("a truncated line", "7 (x) R 1", None),
        ];
        for (name, stat, want) in cases {
            assert_eq!(cpu_seconds(stat), *want, "{name}");
        }
    }

    #[test]
    fn the_generator_can_read_itself() {
        let me = sample(None).expect("/proc/self");
        assert!(me.rss_bytes > 0);
        assert!(cpus_allowed(None).is_some_and(|c| !c.is_empty()));
        assert!(machine().memory_bytes > 0);
    }

    #[test]
    fn arguments_are_quoted_only_when_needed() {
        let cases: &[(&str, &str)] = &[
            ("--url", "--url"),
            ("ws://127.0.0.1:8080/ws", "ws://127.0.0.1:8080/ws"),
            ("a b", "'a b'"),
            ("it's", r"'it'\''s'"),
            ("", "''"),
        ];
        for (arg, want) in cases {
            assert_eq!(shell_quote(arg), *want, "{arg}");
        }
    }
}
