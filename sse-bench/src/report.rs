//! The result table (Markdown, so it can be pasted into BENCHMARKS.md as printed) and the ratios.

use std::fmt::Write as _;

use crate::load::Protocol;
use crate::stats::Histogram;

/// One measured scenario on one server.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Scenario name, e.g. `idle`, `max`, `rate`.
    pub scenario: String,
    /// Which of the repeated runs (`--repeat`) this row is, from 1; 0 when there is only one.
    pub run: usize,
    /// Server label.
    pub server: String,
    /// The subscribers' protocol (the publisher always uses HTTP/1.1).
    pub protocol: Protocol,
    /// Subscribers asked for.
    pub subscribers: usize,
    /// Event payload bytes (0 for idle rows).
    pub size: usize,
    /// Events published per second.
    pub published_per_s: f64,
    /// Events received per second, summed over subscribers.
    pub delivered_per_s: f64,
    /// Publish-to-receive latency (µs), for publishing rows.
    pub latency: Option<Histogram>,
    /// Server RSS (KiB) at the end.
    pub rss_kib: Option<u64>,
    /// (RSS at the end − RSS before the first subscriber) / subscribers, in KiB.
    pub kib_per_sub: Option<f64>,
    /// Server CPU seconds while publishing and draining.
    pub cpu_s: Option<f64>,
    /// Server CPU µs per delivered event.
    pub cpu_us_per_event: Option<f64>,
    /// The load side's own CPU µs per delivered event (this process: subscribers and publisher), over
    /// the same interval: with the server's figure, what one delivery costs the machine.
    pub load_us_per_event: Option<f64>,
    /// Subscribers that failed to connect or were disconnected.
    pub dropped: usize,
    /// Events lost, summed over subscribers.
    pub lost: u64,
    /// Events duplicated, summed over subscribers.
    pub duplicated: u64,
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.digits$}"))
}

/// Formats rows as a Markdown table.
///
/// ```
/// let row = sse_bench::report::Row { scenario: "idle".into(), server: "x".into(), subscribers: 10, ..Default::default() };
/// let t = sse_bench::report::table(&[row]);
/// assert!(t.contains("| idle | x | 1.1 | 10 |"));
/// ```
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| scenario | server | HTTP | subs | event B | published/s | delivered/s | p50 ms | p99 ms | max ms | RSS MiB | KiB/sub | CPU s | CPU µs/event | load µs/event | dropped subs | lost | dup |\n");
    out.push_str("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for r in rows {
        let (p50, p99, max) = match &r.latency {
            Some(h) if h.count() > 0 => {
                (ms(h.percentile(50.0)), ms(h.percentile(99.0)), ms(h.max()))
            }
            _ => ("-".into(), "-".into(), "-".into()),
        };
        let scenario = match r.run {
            0 => r.scenario.clone(),
            n => format!("{} #{n}", r.scenario),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {p50} | {p99} | {max} | {} | {} | {} | {} | {} | {} | {} | {} |",
            scenario,
            r.server,
            r.protocol.label(),
            r.subscribers,
            r.size,
            r.published_per_s,
            r.delivered_per_s,
            opt(r.rss_kib.map(|k| k as f64 / 1024.0), 1),
            opt(r.kib_per_sub, 2),
            opt(r.cpu_s, 2),
            opt(r.cpu_us_per_event, 3),
            opt(r.load_us_per_event, 3),
            r.dropped,
            r.lost,
            r.duplicated,
        );
    }
    out
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "n/a".into(),
    }
}

/// The median of the values present (the upper one of the middle two for an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// Our/baseline ratios for every scenario both servers ran. With repeated runs (`--repeat`), each
/// figure is the ratio of the two servers' medians over their runs.
///
/// ```
/// use sse_bench::report::{Row, ratios};
/// let row = |server: &str, run, delivered| Row {
///     scenario: "max".into(), server: server.into(), run, subscribers: 10,
///     delivered_per_s: delivered, ..Default::default()
/// };
/// let rows = [row("a", 1, 10.0), row("b", 1, 5.0), row("a", 2, 40.0), row("b", 2, 5.0),
///             row("a", 3, 20.0), row("b", 3, 10.0)];
/// // medians 20 and 5
/// assert!(ratios(&rows, "a", "b").contains("| max | 1.1 | 10 | 4.00 |"));
/// ```
pub fn ratios(rows: &[Row], ours: &str, baseline: &str) -> String {
    let mut out = String::new();
    out.push_str("| scenario | HTTP | subs | delivered/s ours÷base | p99 ours÷base | CPU µs/event ours÷base | KiB/sub ours÷base |\n");
    out.push_str("|---|---|--:|--:|--:|--:|--:|\n");
    let same = |a: &Row, b: &Row| {
        b.scenario == a.scenario && b.protocol == a.protocol && b.subscribers == a.subscribers
    };
    let p99 = |r: &Row| {
        r.latency
            .as_ref()
            .filter(|h| h.count() > 0)
            .map(|h| h.percentile(99.0) as f64)
    };
    let delivered = |r: &Row| (r.delivered_per_s > 0.0).then_some(r.delivered_per_s);
    let mut done: Vec<&Row> = Vec::new();
    for a in rows.iter().filter(|r| r.server == ours) {
        if done.iter().any(|d| same(d, a)) {
            continue;
        }
        done.push(a);
        let ours_runs: Vec<&Row> = rows
            .iter()
            .filter(|r| r.server == ours && same(a, r))
            .collect();
        let base_runs: Vec<&Row> = rows
            .iter()
            .filter(|r| r.server == baseline && same(a, r))
            .collect();
        if base_runs.is_empty() {
            continue;
        }
        let m = |runs: &[&Row], f: &dyn Fn(&Row) -> Option<f64>| {
            median(runs.iter().filter_map(|r| f(r)).collect())
        };
        let r = |f: &dyn Fn(&Row) -> Option<f64>| ratio(m(&ours_runs, f), m(&base_runs, f));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            a.scenario,
            a.protocol.label(),
            a.subscribers,
            r(&delivered),
            r(&p99),
            r(&|r: &Row| r.cpu_us_per_event),
            r(&|r: &Row| r.kib_per_sub),
        );
    }
    out
}

/// The notes printed under the tables: what the `HTTP` column means.
///
/// ```
/// let n = sse_bench::report::notes(100);
/// assert!(n.contains("100 streams per connection"));
/// ```
pub fn notes(h2_streams: usize) -> String {
    format!(
        "HTTP: the subscribers' protocol. 1.1 = one HTTP/1.1 connection per subscriber; 2 = cleartext \
         HTTP/2 with prior knowledge (h2c), one stream per subscriber, {h2_streams} streams per \
         connection. The publisher always uses HTTP/1.1 (pipelined POSTs).\n"
    )
}
