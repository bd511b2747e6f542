//! Resident memory and open files of processes, sampled on an interval (Linux `/proc`), and
//! their growth: what a soak watches for leaks.

use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One reading of one process.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// Since the sampler started.
    pub at: Duration,
    pub rss_kib: u64,
    pub fds: u64,
}

/// A process's readings.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub pid: u32,
    pub readings: Vec<Reading>,
}

/// What a series says, after its warm-up.
#[derive(Debug, Clone)]
pub struct Growth {
    pub name: String,
    /// At the end of the warm-up, and at the last reading.
    pub rss_start_kib: u64,
    pub rss_end_kib: u64,
    pub rss_max_kib: u64,
    /// Least-squares slope of RSS over the readings after the warm-up, per hour.
    pub rss_kib_per_hour: f64,
    pub fds_start: u64,
    pub fds_end: u64,
    pub fds_max: u64,
    pub fds_per_hour: f64,
}

impl Growth {
    /// One line: `name rss start→end (max) slope/h, fds start→end (max) slope/h`.
    pub fn line(&self) -> String {
        format!(
            "{:<12} RSS {:>7.1} → {:>7.1} MiB (max {:>7.1}), {:>+8.1} MiB/h; fds {:>5} → {:>5} (max {:>5}), {:>+7.1}/h",
            self.name,
            self.rss_start_kib as f64 / 1024.0,
            self.rss_end_kib as f64 / 1024.0,
            self.rss_max_kib as f64 / 1024.0,
            self.rss_kib_per_hour / 1024.0,
            self.fds_start,
            self.fds_end,
            self.fds_max,
            self.fds_per_hour,
        )
    }
}

/// Samples processes every `interval` on its own thread until stopped.
pub struct Sampler {
    series: Arc<Mutex<Vec<Series>>>,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// `(rss KiB, open files)` of `pid`, or None once it is gone.
pub fn read(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

impl Sampler {
    /// Starts sampling `procs` (name, pid), one reading at once and then every `interval`.
    pub fn start(procs: Vec<(String, u32)>, interval: Duration) -> Sampler {
        let series: Vec<Series> =
            procs.into_iter().map(|(name, pid)| Series { name, pid, readings: Vec::new() }).collect();
        let series = Arc::new(Mutex::new(series));
        // The sampler is a thread of its own, not a task: its blocking wait stalls nothing.
        #[allow(clippy::disallowed_methods)]
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = {
            let series = series.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut next = started;
                loop {
                    let at = started.elapsed();
                    for s in series.lock().unwrap().iter_mut() {
                        if let Some((rss_kib, fds)) = read(s.pid) {
                            s.readings.push(Reading { at, rss_kib, fds });
                        }
                    }
                    next += interval;
                    // Waits for the next reading, or returns at once when stopped.
                    match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })
        };
        Sampler { series, stop: Some(stop), thread: Some(thread) }
    }

    /// Stops sampling and returns every series.
    pub fn stop(mut self) -> Vec<Series> {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.series.lock().unwrap().clone()
    }
}

/// Growth of `s` over its readings from `warm_up` on (every reading if fewer than two
/// come after it).
pub fn growth(s: &Series, warm_up: Duration) -> Growth {
    let after: Vec<Reading> = s.readings.iter().copied().filter(|r| r.at >= warm_up).collect();
    let rs = if after.len() >= 2 { after } else { s.readings.clone() };
    let first = rs.first().copied().unwrap_or(Reading { at: Duration::ZERO, rss_kib: 0, fds: 0 });
    let last = rs.last().copied().unwrap_or(first);
    let per_hour = |f: fn(&Reading) -> f64| slope(&rs, f) * 3600.0;
    Growth {
        name: s.name.clone(),
        rss_start_kib: first.rss_kib,
        rss_end_kib: last.rss_kib,
        rss_max_kib: rs.iter().map(|r| r.rss_kib).max().unwrap_or(0),
        rss_kib_per_hour: per_hour(|r| r.rss_kib as f64),
        fds_start: first.fds,
        fds_end: last.fds,
        fds_max: rs.iter().map(|r| r.fds).max().unwrap_or(0),
        fds_per_hour: per_hour(|r| r.fds as f64),
    }
}

/// Least-squares slope of `y` per second over the readings.
fn slope(rs: &[Reading], y: fn(&Reading) -> f64) -> f64 {
    if rs.len() < 2 {
        return 0.0;
    }
    let n = rs.len() as f64;
    let mx = rs.iter().map(|r| r.at.as_secs_f64()).sum::<f64>() / n;
    let my = rs.iter().map(y).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for r in rs {
        let dx = r.at.as_secs_f64() - mx;
        num += dx * (y(r) - my);
        den += dx * dx;
    }
    if den == 0.0 { 0.0 } else { num / den }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: &[(u64, u64)]) -> Series {
        Series {
            name: "p".into(),
            pid: 0,
            readings: points
                .iter()
                .map(|&(secs, rss)| Reading { at: Duration::from_secs(secs), rss_kib: rss, fds: 10 })
                .collect(),
        }
    }

    #[test]
    fn growth_is_the_slope_after_the_warm_up_per_hour() {
        // A jump during the warm-up, then 1 KiB per 10 s: 360 KiB per hour.
        let s = series(&[(0, 100), (10, 5000), (20, 5000), (30, 5001), (40, 5002), (50, 5003)]);
        let g = growth(&s, Duration::from_secs(20));
        assert!((g.rss_kib_per_hour - 360.0).abs() < 1e-6, "{g:?}");
        assert_eq!((g.rss_start_kib, g.rss_end_kib, g.rss_max_kib), (5000, 5003, 5003));
        assert_eq!(g.fds_per_hour, 0.0);
    }

    #[test]
    fn this_process_can_be_read() {
        let (rss, fds) = read(std::process::id()).expect("our own /proc entry");
        assert!(rss > 0 && fds > 0, "{rss} {fds}");
        assert!(read(u32::MAX).is_none());
    }
}
