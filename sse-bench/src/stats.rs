//! Statistics of the load side: per-subscriber sequence tracking (lost, duplicated) and a log-linear
//! latency histogram.

/// Tracks one subscriber's sequence numbers (they start at 1 and must arrive each once, in order).
///
/// ```
/// let mut t = sse_bench::stats::SeqTracker::default();
/// for seq in [1, 2, 4, 4, 5] {
///     t.record(seq);
/// }
/// t.finish(6);
/// assert_eq!(t.received(), 5);
/// assert_eq!(t.lost(), 2); // 3 and 6
/// assert_eq!(t.duplicated(), 1); // the second 4
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqTracker {
    next: u64,
    received: u64,
    lost: u64,
    duplicated: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker {
            next: 1,
            received: 0,
            lost: 0,
            duplicated: 0,
        }
    }
}

impl SeqTracker {
    /// Starts expecting `first` (for a subscriber that joined after events were published).
    pub fn starting_at(first: u64) -> Self {
        SeqTracker {
            next: first.max(1),
            ..SeqTracker::default()
        }
    }

    /// Records one received sequence number. A gap counts as lost; anything at or below what was
    /// already seen counts as duplicated (a reordered event therefore counts as both, which is fine: the
    /// benchmark requires both to be zero).
    pub fn record(&mut self, seq: u64) {
        self.received += 1;
        if seq == self.next {
            self.next += 1;
        } else if seq > self.next {
            self.lost += seq - self.next;
            self.next = seq + 1;
        } else {
            self.duplicated += 1;
        }
    }

    /// Closes the books after the publisher sent `last`: whatever did not arrive is lost.
    pub fn finish(&mut self, last: u64) {
        if last >= self.next {
            self.lost += last + 1 - self.next;
            self.next = last + 1;
        }
    }

    /// The highest in-order sequence number seen (0 before the first).
    pub fn high(&self) -> u64 {
        self.next - 1
    }

    /// Events received (duplicates included).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Sequence numbers that never arrived.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Sequence numbers that arrived again (or late).
    pub fn duplicated(&self) -> u64 {
        self.duplicated
    }
}

const LINEAR: u64 = 128;
const SUB_BITS: u32 = 6;
const BUCKETS: usize = 128 + 40 * 64;

/// A histogram of microsecond values: exact below 128 µs, then about 1.6 % precision.
///
/// ```
/// let mut h = sse_bench::stats::Histogram::default();
/// for v in 1..=1000 {
///     h.record(v);
/// }
/// assert_eq!(h.count(), 1000);
/// assert_eq!(h.max(), 1000);
/// let p50 = h.percentile(50.0);
/// assert!((490..=510).contains(&p50), "{p50}");
/// ```
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            max: 0,
        }
    }
}

fn index(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let sub = (v >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    let i = LINEAR as usize + (e as usize - 7) * 64 + sub as usize;
    i.min(BUCKETS - 1)
}

fn value(i: usize) -> u64 {
    if i < LINEAR as usize {
        return i as u64;
    }
    let e = ((i - LINEAR as usize) / 64 + 7) as u32;
    let sub = ((i - LINEAR as usize) % 64) as u64;
    // The middle of the bucket.
    let lo = (1u64 << e) | (sub << (e - SUB_BITS));
    lo + (1u64 << (e - SUB_BITS)) / 2
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.count += 1;
        self.max = self.max.max(v);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The largest value recorded (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value below which `p` percent of the values lie (0 when empty).
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return value(i).min(self.max);
            }
        }
        self.max
    }

    /// `(value, cumulative fraction)` points for a CDF plot.
    pub fn cdf(&self) -> Vec<(u64, f64)> {
        let mut out = Vec::new();
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                seen += c;
                out.push((value(i).min(self.max), seen as f64 / self.count as f64));
            }
        }
        out
    }
}
