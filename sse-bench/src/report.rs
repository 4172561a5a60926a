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
    /// The fixed rate asked for (events/s), for the `rates` rows.
    pub target_rate: Option<f64>,
    /// What a reconnect storm measured (the `storm` rows).
    pub storm: Option<StormStats>,
}

/// What a reconnect storm (`storm`, `storm-durable`) measured beyond a [`Row`]'s columns.
#[derive(Debug, Clone, Copy, Default)]
pub struct StormStats {
    /// Events published before the storm, and how far back each subscriber resumes.
    pub history: u64,
    /// Events each subscriber replays.
    pub back: u64,
    /// Seconds from the first connect until every subscriber had its replay and the first event
    /// published after the last connect began.
    pub all_live_s: Option<f64>,
    /// Peak RSS (KiB, `VmHWM`) during the storm.
    pub peak_rss_kib: u64,
    /// RSS (KiB) just before the storm.
    pub before_rss_kib: u64,
    /// `ListenOverflows` / `TCPSynRetrans` during the storm (whole network namespace).
    pub overflows: u64,
    /// `TCPSynRetrans` during the storm.
    pub syn_retrans: u64,
    /// Seconds over which the connects were spread (`--storm-spread-ms`).
    pub spread_s: f64,
    /// CPU seconds the load side (this process) spent during the storm: with the server's, what
    /// bounds how fast the storm can end on a machine with few cores.
    pub load_cpu_s: Option<f64>,
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
    out.push_str("| scenario | HTTP | subs | delivered/s ours÷peer | p99 ours÷peer | CPU µs/event ours÷peer | KiB/sub ours÷peer |\n");
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

fn medians(runs: &[&Row], f: impl Fn(&Row) -> Option<f64>) -> Option<f64> {
    median(runs.iter().filter_map(|r| f(r)).collect())
}

fn p(r: &Row, pct: f64) -> Option<f64> {
    r.latency
        .as_ref()
        .filter(|h| h.count() > 0)
        .map(|h| if pct >= 100.0 { h.max() } else { h.percentile(pct) } as f64 / 1000.0)
}

/// The distinct server labels of `rows`, in order of appearance.
fn servers(rows: &[&Row]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.contains(&r.server) {
            out.push(r.server.clone());
        }
    }
    out
}

/// The `rates` scenario: per rate and server, medians of p50/p99/max and CPU per delivery, summed
/// losses; then, per rate, whether `ours` has a p99 at or below the best other server's that lost
/// nothing (`**lossy**` when ours dropped subscribers or lost events at that rate).
///
/// ```
/// use sse_bench::report::{Row, rates_table};
/// let mut h = sse_bench::stats::Histogram::default();
/// h.record(2000);
/// let row = |server: &str| Row { scenario: "rates".into(), server: server.into(),
///     target_rate: Some(10.0), latency: Some(h.clone()), ..Default::default() };
/// let t = rates_table(&[row("a"), row("b")], "a");
/// assert!(t.contains("| 10 | a | 2.00 | yes"), "{t}");
/// ```
pub fn rates_table(rows: &[Row], ours: &str) -> String {
    let rated: Vec<&Row> = rows.iter().filter(|r| r.target_rate.is_some()).collect();
    if rated.is_empty() {
        return String::new();
    }
    let mut rates: Vec<f64> = rated.iter().filter_map(|r| r.target_rate).collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let mut out = String::from(
        "| rate/s | server | p99 ms | ours ≤ best peer | p50 ms | max ms | published/s | CPU µs/delivery | CPU ÷ ours | dropped subs | lost | dup |\n|--:|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for rate in rates {
        let at: Vec<&Row> = rated
            .iter()
            .copied()
            .filter(|r| r.target_rate == Some(rate))
            .collect();
        let of = |s: &str| -> Vec<&Row> { at.iter().copied().filter(|r| r.server == s).collect() };
        let p99 = |s: &str| medians(&of(s), |r| p(r, 99.0));
        let cpu = |s: &str| medians(&of(s), |r| r.cpu_us_per_event);
        // A run that dropped subscribers or lost events has no meaningful p99: it neither wins nor
        // sets the bar.
        let lossy = |s: &str| of(s).iter().any(|r| r.dropped > 0 || r.lost > 0);
        let best_peer = servers(&at)
            .iter()
            .filter(|s| *s != ours && !lossy(s))
            .filter_map(|s| p99(s))
            .reduce(f64::min);
        for server in servers(&at) {
            let runs = of(&server);
            let verdict = match (server == ours, p99(&server), best_peer) {
                (false, ..) => String::new(),
                (true, ..) if lossy(&server) => "**lossy**".to_owned(),
                (true, Some(a), Some(b)) if a <= b => format!("yes ({a:.2} vs {b:.2})"),
                (true, Some(a), Some(b)) => format!("**no** ({a:.2} vs {b:.2})"),
                (true, Some(_), None) => "yes (every peer lossy)".to_owned(),
                (true, None, _) => "n/a".to_owned(),
            };
            let _ = writeln!(
                out,
                "| {rate:.0} | {server} | {} | {verdict} | {} | {} | {} | {} | {} | {} | {} | {} |",
                opt(p99(&server), 2),
                opt(medians(&runs, |r| p(r, 50.0)), 2),
                opt(medians(&runs, |r| p(r, 100.0)), 2),
                opt(medians(&runs, |r| Some(r.published_per_s)), 0),
                opt(cpu(&server), 3),
                ratio(cpu(&server), cpu(ours)),
                runs.iter().map(|r| r.dropped).sum::<usize>(),
                runs.iter().map(|r| r.lost).sum::<u64>(),
                runs.iter().map(|r| r.duplicated).sum::<u64>(),
            );
        }
    }
    out
}

/// The reconnect storms, one line per run, with the same server's idle KiB/sub at the same count
/// (from an `idle` row of this run, if any) to compare with.
///
/// ```
/// use sse_bench::report::{Row, StormStats, storm_table};
/// let row = Row { scenario: "storm".into(), server: "a".into(), subscribers: 10,
///     storm: Some(StormStats { all_live_s: Some(1.25), ..Default::default() }), ..Default::default() };
/// assert!(storm_table(&[row]).contains("| storm | a | 10 | 0 | 1.25 |"));
/// ```
pub fn storm_table(rows: &[Row]) -> String {
    let storms: Vec<&Row> = rows.iter().filter(|r| r.storm.is_some()).collect();
    if storms.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "| scenario | server | subs | replayed | all live s | after last connect s | replay done p50 ms | p99 ms | max ms | peak RSS MiB | peak KiB/sub | settled RSS MiB | settled KiB/sub | idle KiB/sub | CPU s | load CPU s | listen overflows | SYN retrans | dropped subs | lost | dup |\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for r in storms {
        let Some(s) = r.storm else { continue };
        let per_sub =
            |kib: u64| (kib as f64 - s.before_rss_kib as f64) / r.subscribers.max(1) as f64;
        let idle = rows
            .iter()
            .find(|i| {
                i.scenario == "idle" && i.server == r.server && i.subscribers == r.subscribers
            })
            .and_then(|i| i.kib_per_sub);
        let scenario = match r.run {
            0 => r.scenario.clone(),
            n => format!("{} #{n}", r.scenario),
        };
        let _ = writeln!(
            out,
            "| {scenario} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.server,
            r.subscribers,
            s.back,
            opt(s.all_live_s, 2),
            opt(s.all_live_s.map(|a| a - s.spread_s), 2),
            opt(p(r, 50.0), 1),
            opt(p(r, 99.0), 1),
            opt(p(r, 100.0), 1),
            s.peak_rss_kib as f64 / 1024.0,
            per_sub(s.peak_rss_kib),
            opt(r.rss_kib.map(|k| k as f64 / 1024.0), 1),
            opt(r.kib_per_sub, 2),
            opt(idle, 2),
            opt(r.cpu_s, 2),
            opt(s.load_cpu_s, 2),
            s.overflows,
            s.syn_retrans,
            r.dropped,
            r.lost,
            r.duplicated,
        );
    }
    out
}

/// TLS and HTTP/2 scenarios against their plaintext HTTP/1.1 counterpart on the same server
/// (medians): CPU per delivery and KiB per subscriber.
///
/// ```
/// use sse_bench::report::{Row, protocol_table};
/// let row = |scenario: &str, cpu| Row { scenario: scenario.into(), server: "a".into(),
///     subscribers: 10, cpu_us_per_event: Some(cpu), ..Default::default() };
/// let t = protocol_table(&[row("max", 1.0), row("max-tls", 1.5)], "a");
/// assert!(t.contains("| max-tls | max | a | 10 | 1.500 | 1.000 | 1.50 |"), "{t}");
/// ```
pub fn protocol_table(rows: &[Row], _ours: &str) -> String {
    const PAIRS: [(&str, &str); 4] = [
        ("idle-tls", "idle"),
        ("max-tls", "max"),
        ("max-h2", "max"),
        ("max-h2tls", "max"),
    ];
    let mut out = String::new();
    let all: Vec<&Row> = rows.iter().collect();
    for (variant, plain) in PAIRS {
        for server in servers(&all) {
            let pick = |scenario: &str, subs: usize| -> Vec<&Row> {
                rows.iter()
                    .filter(|r| r.scenario == scenario && r.server == server)
                    .filter(|r| r.subscribers == subs && subs > 0)
                    .collect()
            };
            let mut counts: Vec<usize> = rows
                .iter()
                .filter(|r| r.scenario == variant && r.server == server)
                .map(|r| r.subscribers)
                .collect();
            counts.dedup();
            for subs in counts {
                let (v, b) = (pick(variant, subs), pick(plain, subs));
                if v.is_empty() || b.is_empty() {
                    continue;
                }
                let cpu = |runs: &[&Row]| medians(runs, |r| r.cpu_us_per_event);
                let kib = |runs: &[&Row]| medians(runs, |r| r.kib_per_sub);
                let _ = writeln!(
                    out,
                    "| {variant} | {plain} | {server} | {subs} | {} | {} | {} | {} | {} | {} |",
                    opt(cpu(&v), 3),
                    opt(cpu(&b), 3),
                    ratio(cpu(&v), cpu(&b)),
                    opt(kib(&v), 2),
                    opt(kib(&b), 2),
                    ratio(kib(&v), kib(&b)),
                );
            }
        }
    }
    if out.is_empty() {
        return out;
    }
    format!(
        "| scenario | against | server | subs | CPU µs/delivery | plain CPU µs/delivery | ÷ | KiB/sub | plain KiB/sub | ÷ |\n|---|---|---|--:|--:|--:|--:|--:|--:|--:|\n{out}"
    )
}
