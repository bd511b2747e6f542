//! Counting what arrived: per stream (one publisher's sequence on one channel, as one
//! subscriber sees it) which messages were in order, late, repeated or never came, and the
//! latency of each in an HDR histogram.

use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The next sequence number, or one further on (a gap that may yet be filled).
    Fresh,
    /// A sequence number below the highest seen that had not been seen: reordered.
    Late,
    /// A sequence number already seen.
    Duplicate,
}

/// One subscriber's view of one publisher's sequence on one channel.
///
/// Sequence numbers start at 1. The 128 numbers below the highest seen are remembered, so a
/// late arrival is told from a duplicate; one more than 128 behind is counted as late.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    /// The highest sequence number seen (0 before the first).
    highest: u64,
    /// Bit `i` set: `highest - i` was seen.
    seen: u128,
    /// Distinct sequence numbers seen.
    distinct: u64,
}

// === impl Stream ===

impl Stream {
    pub fn record(&mut self, s: u64) -> Arrival {
        if s > self.highest {
            let shift = s - self.highest;
            self.seen = if shift >= 128 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.highest = s;
            self.distinct += 1;
            return Arrival::Fresh;
        }
        let behind = self.highest - s;
        if behind < 128 {
            let bit = 1u128 << behind;
            if self.seen & bit != 0 {
                return Arrival::Duplicate;
            }
            self.seen |= bit;
        }
        self.distinct += 1;
        Arrival::Late
    }

    /// Messages of the first `published` that never arrived.
    pub fn lost(&self, published: u64) -> u64 {
        published.saturating_sub(self.distinct)
    }
}

/// Counts of arrivals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub received: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

// === impl Tally ===

impl Tally {
    pub fn count(&mut self, arrival: Arrival) {
        self.received += 1;
        match arrival {
            Arrival::Fresh => {}
            Arrival::Late => self.reordered += 1,
            Arrival::Duplicate => self.duplicated += 1,
        }
    }

    pub fn add(&mut self, other: Tally) {
        self.received += other.received;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    /// How many samples they are drawn from.
    pub count: u64,
}

/// A latency histogram in microseconds, from 1 µs to one hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Records a latency given in nanoseconds.
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record((ns / 1_000).max(1));
}

pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let ms = |us: u64| us as f64 / 1_000.0;
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: ms(h.value_at_quantile(0.50)),
        p90: ms(h.value_at_quantile(0.90)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
        count: h.len(),
    }
}

/// Latency histograms shared by every connection, in shards so that connections on
/// different threads rarely wait for each other. A connection locks its shard once per
/// batch of frames it read, not once per message.
#[derive(Debug)]
pub struct SharedHistogram {
    shards: Vec<Mutex<Histogram<u64>>>,
}

// === impl SharedHistogram ===

impl SharedHistogram {
    pub fn new(shards: usize) -> Self {
        SharedHistogram { shards: (0..shards.max(1)).map(|_| Mutex::new(histogram())).collect() }
    }

    /// The shard for connection `index`.
    pub fn shard(&self, index: usize) -> &Mutex<Histogram<u64>> {
        &self.shards[index % self.shards.len()]
    }

    /// Every shard added together.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = histogram();
        for shard in &self.shards {
            all.add(&*shard.lock().unwrap()).expect("same bounds");
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_classified_and_losses_counted() {
        // (name, sequence numbers in arrival order, published, want tally, want lost)
        let cases: &[(&str, &[u64], u64, Tally, u64)] = &[
            ("everything in order", &[1, 2, 3, 4], 4, Tally { received: 4, duplicated: 0, reordered: 0 }, 0),
            ("a gap never filled is lost", &[1, 2, 4], 4, Tally { received: 3, duplicated: 0, reordered: 0 }, 1),
            ("the tail that never came is lost", &[1, 2], 5, Tally { received: 2, duplicated: 0, reordered: 0 }, 3),
            (
                "a late message is reordered, not lost",
                &[1, 3, 2, 4],
                4,
                Tally { received: 4, duplicated: 0, reordered: 1 },
                0,
            ),
            ("a repeat is a duplicate", &[1, 2, 2, 3], 3, Tally { received: 4, duplicated: 1, reordered: 0 }, 0),
            (
                "a repeat of a late one is a duplicate",
                &[1, 3, 2, 2],
                3,
                Tally { received: 4, duplicated: 1, reordered: 1 },
                0,
            ),
            ("a repeat of the first is a duplicate", &[1, 1], 1, Tally { received: 2, duplicated: 1, reordered: 0 }, 0),
            ("nothing arrived", &[], 3, Tally { received: 0, duplicated: 0, reordered: 0 }, 3),
            (
                "a big jump forgets the window",
                &[1, 500, 2],
                500,
                Tally { received: 3, duplicated: 0, reordered: 1 },
                497,
            ),
            (
                "127 behind is still remembered",
                &[1, 128, 1],
                128,
                Tally { received: 3, duplicated: 1, reordered: 0 },
                126,
            ),
        ];
        for (name, arrivals, published, want, lost) in cases {
            let mut stream = Stream::default();
            let mut tally = Tally::default();
            for &s in *arrivals {
                tally.count(stream.record(s));
            }
            assert_eq!(tally, *want, "{name}");
            assert_eq!(stream.lost(*published), *lost, "{name}");
        }
    }

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let mut h = histogram();
        for ms in 1..=1000u64 {
            record_ns(&mut h, ms * 1_000_000);
        }
        let p = percentiles(&h);
        let close = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
        assert!(close(p.p50, 500.0), "p50 {}", p.p50);
        assert!(close(p.p90, 900.0), "p90 {}", p.p90);
        assert!(close(p.p99, 990.0), "p99 {}", p.p99);
        assert!(close(p.p999, 999.0), "p99.9 {}", p.p999);
        assert!(close(p.max, 1000.0), "max {}", p.max);
        assert_eq!(p.count, 1000);
    }

    #[test]
    fn an_empty_histogram_gives_zeroes_and_shards_merge() {
        assert_eq!(percentiles(&histogram()), Percentiles::default());
        let shared = SharedHistogram::new(4);
        for i in 0..8 {
            record_ns(&mut shared.shard(i).lock().unwrap(), 2_000_000);
        }
        let merged = shared.merged();
        assert_eq!(merged.len(), 8);
        assert!((percentiles(&merged).max - 2.0).abs() < 0.01);
    }

    #[test]
    fn sub_microsecond_latencies_count_as_one_microsecond() {
        let mut h = histogram();
        record_ns(&mut h, 10);
        assert_eq!(h.max(), 1);
    }
}
