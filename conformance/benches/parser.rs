//! Parse throughput of `sse_proto` against `eventsource-stream` 0.2 on the same inputs, same run.
//!
//! Both parsers are driven the same way: `futures::executor::block_on` over a
//! `futures::stream::iter` of pre-cut `&[u8]` chunks, ours through `sse_proto::EventStream` (so the
//! adapter's cost is included), theirs through `Eventsource::eventsource()`. Each event's data length
//! is summed so no work can be optimised away.
//!
//! Cases:
//! * (a) small: ~100-byte events (id, event, data), 1 MiB, in 16 KiB chunks (a typical network read)
//! * (b) large: 64 KiB single-line data events, 2 MiB, in 16 KiB chunks
//! * (c) the (a) input one byte at a time (first 64 KiB only) and in 8 KiB chunks; the (b) input in
//!   8 KiB chunks
//! * (d) one 2 MiB data line in 1 KiB chunks
//!
//! At the end a table prints MiB/s per case for both and the ratio, computed from the same
//! measurements criterion takes (`iter_custom`), except eventsource-stream on (d): it needs seconds
//! per run (it re-scans the buffered line on every chunk), so two runs are timed by hand.
//!
//! A second table times sse-proto alone by the measuring thread's CPU time (best of
//! [`CPU_RUNS`] runs per case), which other load on a shared machine disturbs far less than
//! criterion's wall-clock samples: MiB/s and ns per event (per dispatched message).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and benches fail loudly by design

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, black_box};
use eventsource_stream::Eventsource;
use futures::executor::block_on;
use futures::{StreamExt, stream};
use sse_proto::{EventStream, Item, Parser};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// (case, implementation) → (bytes parsed, time taken), summed over every measured iteration.
type Measurements = BTreeMap<(String, &'static str), (u128, Duration)>;
static MEASURED: Mutex<Measurements> = Mutex::new(BTreeMap::new());

fn small_events(total: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(total + 128);
    let mut n = 0u64;
    while out.len() < total {
        out.extend_from_slice(
            format!("id: {n}\nevent: tick\ndata: {{\"seq\":{n},\"payload\":\"lorem ipsum dolor sit amet, elit\"}}\n\n")
                .as_bytes(),
        );
        n += 1;
    }
    out
}

fn large_events(event_size: usize, total: usize) -> Vec<u8> {
    let line: Vec<u8> = b"The quick brown fox jumps over the lazy dog. "
        .iter()
        .copied()
        .cycle()
        .take(event_size)
        .collect();
    let mut out = Vec::with_capacity(total + 64);
    while out.len() < total {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&line);
        out.extend_from_slice(b"\n\n");
    }
    out
}

/// Runs per case of the thread-CPU-time table; the best one counts.
const CPU_RUNS: usize = 60;

/// Parser events per case, for the thread-CPU-time table: (case, bytes, events, best CPU time).
type CpuMeasurements = Vec<(&'static str, usize, usize, Duration)>;
static CPU_MEASURED: Mutex<CpuMeasurements> = Mutex::new(Vec::new());

/// sse-proto's stream over `chunks`, with limits that let the largest case through.
fn stream_of<'a>(
    chunks: &'a [&'a [u8]],
) -> EventStream<impl futures::Stream<Item = Result<&'a [u8], Infallible>> + 'a> {
    let parser = Parser::builder()
        .max_line_length(4 * MIB)
        .max_event_size(4 * MIB)
        .build();
    EventStream::with_parser(
        stream::iter(chunks.iter().map(|c| Ok::<_, Infallible>(*c))),
        parser,
    )
}

fn ours(chunks: &[&[u8]]) -> usize {
    let s = stream_of(chunks);
    block_on(s.fold(0, |acc, item| async move {
        match item {
            Ok(Item::Message(m)) => acc + m.data.len(),
            _ => acc,
        }
    }))
}

fn theirs(chunks: &[&[u8]]) -> usize {
    let s = stream::iter(chunks.iter().map(|c| Ok::<_, Infallible>(*c))).eventsource();
    block_on(s.fold(0, |acc, item| async move {
        match item {
            Ok(e) => acc + e.data.len(),
            Err(_) => acc,
        }
    }))
}

struct Case {
    name: &'static str,
    input: Vec<u8>,
    chunk: usize,
    /// eventsource-stream takes seconds per run here: timed by hand (2 runs), not by criterion.
    slow_for_theirs: bool,
}

fn cases() -> Vec<Case> {
    let small = small_events(MIB);
    let large = large_events(64 * KIB, 2 * MIB);
    vec![
        Case {
            name: "a_small_events_16k",
            input: small.clone(),
            chunk: 16 * KIB,
            slow_for_theirs: false,
        },
        Case {
            name: "b_large_events_16k",
            input: large.clone(),
            chunk: 16 * KIB,
            slow_for_theirs: false,
        },
        Case {
            name: "c_small_events_1b",
            input: small[..64 * KIB].to_vec(),
            chunk: 1,
            slow_for_theirs: false,
        },
        Case {
            name: "c_small_events_8k",
            input: small,
            chunk: 8 * KIB,
            slow_for_theirs: false,
        },
        Case {
            name: "c_large_events_8k",
            input: large,
            chunk: 8 * KIB,
            slow_for_theirs: false,
        },
        Case {
            name: "d_2mib_line_1k",
            input: large_events(2 * MIB, 2 * MIB),
            chunk: KIB,
            slow_for_theirs: true,
        },
    ]
}

/// Dispatched messages in `chunks`, parsed whole.
fn count_events(chunks: &[&[u8]]) -> usize {
    let s = stream_of(chunks);
    block_on(s.fold(0, |n, item| async move {
        n + usize::from(matches!(item, Ok(Item::Message(_))))
    }))
}

/// sse-proto on `chunks` timed by this thread's CPU time, best of [`CPU_RUNS`].
fn best_cpu_time(chunks: &[&[u8]]) -> Duration {
    (0..CPU_RUNS)
        .map(|_| {
            let start = cpu_time::ThreadTime::now();
            black_box(ours(black_box(chunks)));
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn record(case: &str, which: &'static str, bytes: u128, took: Duration) {
    let mut m = MEASURED.lock().unwrap();
    let e = m.entry((case.to_owned(), which)).or_default();
    e.0 += bytes;
    e.1 += took;
}

fn bench(c: &mut Criterion, full_run: bool) {
    for case in cases() {
        let chunks: Vec<&[u8]> = case.input.chunks(case.chunk).collect();
        // Both must see the same events, or the comparison is meaningless.
        let expected = ours(&chunks);
        if !case.slow_for_theirs {
            assert_eq!(theirs(&chunks), expected, "{}", case.name);
        }
        if full_run {
            let events = count_events(&chunks);
            let best = best_cpu_time(&chunks);
            CPU_MEASURED
                .lock()
                .unwrap()
                .push((case.name, case.input.len(), events, best));
        }
        let mut group = c.benchmark_group(case.name);
        group.throughput(Throughput::Bytes(case.input.len() as u64));
        type Run = fn(&[&[u8]]) -> usize;
        for (which, run) in [
            ("sse-proto", ours as Run),
            ("eventsource-stream", theirs as Run),
        ] {
            if which == "eventsource-stream" && case.slow_for_theirs {
                // Seconds per run: criterion's minimum of 10 samples would take minutes, so time
                // two runs by hand for the table (only in a real benchmark run, not under
                // `cargo test` or `--profile-time`).
                if full_run {
                    for _ in 0..2 {
                        let start = Instant::now();
                        let got = run(black_box(&chunks));
                        record(case.name, which, case.input.len() as u128, start.elapsed());
                        assert_eq!(got, expected, "{}", case.name);
                    }
                }
                continue;
            }
            group.bench_function(BenchmarkId::from_parameter(which), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        black_box(run(black_box(&chunks)));
                    }
                    let took = start.elapsed();
                    record(
                        case.name,
                        which,
                        u128::from(iters) * case.input.len() as u128,
                        took,
                    );
                    took
                });
            });
        }
        group.finish();
    }
}

fn mib_per_s(bytes: u128, took: Duration) -> f64 {
    bytes as f64 / MIB as f64 / took.as_secs_f64()
}

fn print_table() {
    let m = MEASURED.lock().unwrap();
    let mut cases: Vec<&String> = m.keys().map(|(c, _)| c).collect();
    cases.dedup();
    println!();
    println!("| case | sse-proto MiB/s | eventsource-stream MiB/s | ratio |");
    println!("|---|---:|---:|---:|");
    for case in cases {
        let get = |which| m.get(&(case.clone(), which)).map(|&(b, t)| mib_per_s(b, t));
        if let (Some(o), Some(t)) = (get("sse-proto"), get("eventsource-stream")) {
            println!("| {case} | {o:.0} | {t:.1} | {:.1}x |", o / t);
        }
    }
    let cpu = CPU_MEASURED.lock().unwrap();
    if cpu.is_empty() {
        return;
    }
    println!();
    println!("sse-proto by thread CPU time, best of {CPU_RUNS} runs:");
    println!("| case | MiB/s | ns/event |");
    println!("|---|---:|---:|");
    for &(case, bytes, events, best) in cpu.iter() {
        let per_event = best.as_nanos() as f64 / events.max(1) as f64;
        println!(
            "| {case} | {:.0} | {per_event:.1} |",
            mib_per_s(bytes as u128, best)
        );
    }
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    let args: Vec<String> = std::env::args().collect();
    let full_run =
        args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--profile-time");
    bench(&mut c, full_run);
    c.final_summary();
    print_table();
}
