//! `sse-bench`: the fan-out benchmark (`cargo xtask bench fanout [ARGS]`). `--help` lists the options.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sse_bench::report::{self, Row};
use sse_bench::server::{self, Kind};
use sse_bench::{Error, plot};

mod scenarios;

/// Fan-out benchmark: sse-server against an axum `Sse` + broadcast baseline (or any SSE server with
/// --target), each started as its own process and measured from /proc.
#[derive(Debug, Parser)]
#[command(name = "sse-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Scenarios to run: idle (RSS per subscriber), max (highest lossless rate), max-h2 (max with
    /// HTTP/2 subscribers), rate (fixed rate), rates (latency at each of --rates), storm (reconnect
    /// storm with Last-Event-ID), storm-durable (storm on sse-server restarted with --data-dir),
    /// idle-tls, max-tls (HTTP/1.1 over TLS), max-h2tls (HTTP/2 over TLS, ALPN h2), multi (many channels
    /// per stream: idle memory and pattern delivery CPU against one channel; runs once whatever --repeat).
    /// Default: all of these but storm-durable; none with --redis-cluster.
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Subscribers speak cleartext HTTP/2 with prior knowledge (h2c) in every scenario, one stream
    /// each, --h2-streams per connection (the publisher stays HTTP/1.1).
    #[arg(long)]
    http2: bool,
    /// HTTP/2 streams (subscribers) per connection, for --http2 and max-h2. Keep it at or below the
    /// server's SETTINGS_MAX_CONCURRENT_STREAMS (hyper: 200), or the excess streams wait.
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    h2_streams: usize,
    /// Idle subscriber counts, measured in one server process as it grows.
    #[arg(long, value_delimiter = ',', default_value = "1000,2500,5000,10000")]
    idle: Vec<usize>,
    /// Subscribers for the `max` scenario.
    #[arg(long, default_value_t = 1000)]
    max_subscribers: usize,
    /// Fixed rate for the `max` scenario instead of the closed loop (events/s).
    #[arg(long)]
    max_rate: Option<f64>,
    /// Events in flight in the closed loop (published but not yet received by the slowest subscriber).
    #[arg(long, default_value_t = 64)]
    window: u64,
    /// Subscribers per case of the `multi` scenario.
    #[arg(long, default_value_t = 1000)]
    multi_subscribers: usize,
    /// Subscribers for the `rate` scenario.
    #[arg(long, default_value_t = 10_000)]
    rate_subscribers: usize,
    /// Events per second for the `rate` scenario.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Fixed rates (events/s) of the `rates` scenario.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000")]
    rates: Vec<f64>,
    /// Subscribers for the `rates` scenario.
    #[arg(long, default_value_t = 1000)]
    rates_subscribers: usize,
    /// Seconds of publishing per rate of the `rates` scenario.
    #[arg(long, default_value_t = 3.0)]
    rates_duration: f64,
    /// Subscribers of the `storm` scenarios.
    #[arg(long, default_value_t = 10_000)]
    storm_subscribers: usize,
    /// Events published before a storm.
    #[arg(long, default_value_t = 200)]
    storm_history: u64,
    /// Events each storm subscriber replays (its Last-Event-ID is this many events back).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    storm_back: u64,
    /// Milliseconds over which the storm's connects are spread evenly. 0 (the default): every
    /// subscriber reconnects at once, as fast as the load side opens connections, the hardest case
    /// of "within one second" for the server.
    #[arg(long, default_value_t = 0)]
    storm_spread_ms: u64,
    /// Event payload size in bytes.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Seconds of publishing per scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Runs of each publishing scenario, servers alternating (the order rotates by one server per
    /// run); ratios then compare medians (this machine's noise moves single runs by ±20 %).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=20))]
    repeat: u64,
    /// Per-subscriber queue of both servers (sse-server --queue-size, broadcast capacity).
    #[arg(long, default_value_t = 256)]
    queue_size: usize,
    /// Skip the baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Skip nginx + nchan (it is skipped anyway, loudly, when nginx or its nchan module is missing).
    #[arg(long)]
    no_nchan: bool,
    /// Skip sse-server (e.g. to measure only the baseline).
    #[arg(long)]
    no_ours: bool,
    /// Also measure a cluster: two `sse-server --redis` nodes on a redis-server started here, with
    /// subscribers on one node and publishes on the other (needs redis-server on PATH).
    #[arg(long)]
    redis: bool,
    /// Measure a Redis Cluster of N primaries (issue 19): 3 sse-server nodes on `--redis
    /// redis+cluster://…`, publishers and subscribers on all of them, every delivery crossing nodes;
    /// closed-loop publishes/s and p99 at --cluster-rate, on a plain redis-server, a 1-primary cluster
    /// and an N-primary cluster (needs redis-server on PATH). Runs alone unless --scenarios is given.
    #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    redis_cluster: Option<usize>,
    /// Channels of --redis-cluster (their buckets spread over the shards).
    #[arg(long, default_value_t = 48, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    cluster_channels: usize,
    /// Subscribers per channel of --redis-cluster.
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    cluster_subscribers: usize,
    /// Events per second over all channels in the fixed-rate run of --redis-cluster.
    #[arg(long, default_value_t = 1000.0)]
    cluster_rate: f64,
    /// The sse-server binary (default: next to this one, else built with cargo).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Drive another SSE server instead: its subscribe URL (http://host:port/path).
    #[arg(long, requires = "publish_cmd")]
    target: Option<String>,
    /// With --target: command run (sh -c) per event; payload in $SSE_BENCH_DATA and `{data}`.
    #[arg(long)]
    publish_cmd: Option<String>,
    /// With --target: the server's pid, to read its RSS and CPU.
    #[arg(long)]
    target_pid: Option<u32>,
    /// Directory for plots and the Markdown results.
    #[arg(long, default_value = "target/bench-plots")]
    out: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the axum baseline server (started by the benchmark itself).
    Baseline {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Publish token.
        #[arg(long, default_value = server::TOKEN)]
        token: String,
        /// Broadcast channel capacity.
        #[arg(long, default_value_t = 256)]
        capacity: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // 10k subscribers need 10k descriptors here and in the server (a child inherits the limit).
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("sse-bench: cannot raise the open-file limit: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sse-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Some(Command::Baseline {
            ref listen,
            ref token,
            capacity,
        }) => runtime.block_on(sse_bench::baseline::serve(listen, token, capacity)),
        None => runtime.block_on(bench(&cli)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sse-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(cli: &Cli) -> Result<(), Error> {
    if cli.storm_back > cli.storm_history {
        return Err(Error::Usage(
            "--storm-back must not exceed --storm-history".into(),
        ));
    }
    if let Some(shards) = cli.redis_cluster {
        redis_cluster(cli, shards).await?;
        if cli.scenarios.is_empty() {
            return Ok(());
        }
    }
    let mut skipped = Vec::new();
    let mut ctx = scenarios::Context::new(cli, &mut skipped)?;
    let mut rows: Vec<Row> = Vec::new();
    for scenario in scenarios::expand(cli) {
        if scenario == "multi" {
            multi(cli).await?;
            continue;
        }
        let runs = if scenario.starts_with("idle") {
            1
        } else {
            cli.repeat
        };
        for run in 1..=runs {
            for kind in rotated(ctx.kinds_for(&scenario), run) {
                let first = rows.len();
                rows.extend(ctx.run(&scenario, &kind).await?);
                if runs > 1 {
                    for row in &mut rows[first..] {
                        row.run = run as usize;
                    }
                }
            }
        }
    }
    print_and_save(cli, &ctx.kinds, ctx.about.as_deref(), &rows, &skipped)
}

/// The servers in the order run `run` (from 1) starts them: the list rotated by one place per run,
/// so no server always runs first in a repetition, right after the previous scenario's last server
/// (often another server's 10,000-subscriber teardown) or always last.
fn rotated(mut kinds: Vec<Kind>, run: u64) -> Vec<Kind> {
    if !kinds.is_empty() {
        let by = (run.saturating_sub(1) % kinds.len() as u64) as usize;
        kinds.rotate_left(by);
    }
    kinds
}

fn print_and_save(
    cli: &Cli,
    kinds: &[Kind],
    about: Option<&str>,
    rows: &[Row],
    skipped: &[String],
) -> Result<(), Error> {
    let mut out = String::new();
    if let Some(line) = about {
        out.push_str(&format!("{line}\n\n"));
    }
    for line in skipped {
        out.push_str(&format!("**{line}**\n\n"));
    }
    out.push_str(&report::table(rows));
    out.push('\n');
    out.push_str(&report::notes(cli.h2_streams));
    for other in [Kind::Baseline, Kind::Nchan] {
        if kinds.contains(&Kind::Ours) && kinds.contains(&other) {
            let (ours, theirs) = (Kind::Ours.label(), other.label());
            out.push_str(&format!("\nours ({ours}) ÷ {theirs} (medians)\n\n"));
            out.push_str(&report::ratios(rows, ours, theirs));
        }
    }
    let rates = report::rates_table(rows, Kind::Ours.label());
    if !rates.is_empty() {
        out.push_str("\nlatency at every rate (medians)\n\n");
        out.push_str(&rates);
    }
    let storms = report::storm_table(rows);
    if !storms.is_empty() {
        out.push_str("\nreconnect storm\n\n");
        out.push_str(&storms);
    }
    let protocols = report::protocol_table(rows, Kind::Ours.label());
    if !protocols.is_empty() {
        out.push_str("\nTLS and HTTP/2 against plaintext HTTP/1.1 (sse-server, medians)\n\n");
        out.push_str(&protocols);
    }
    println!(
        "\nfan-out benchmark ({} s per publishing scenario, {} B events)\n",
        cli.duration, cli.size
    );
    println!("{out}");
    std::fs::create_dir_all(&cli.out)?;
    std::fs::write(cli.out.join("results.md"), &out)?;
    for scenario in ["max", "max-h2", "rate", "max-tls", "max-h2tls"] {
        plot::latency_cdf(
            rows,
            scenario,
            &cli.out.join(format!("latency-{scenario}.svg")),
        )?;
    }
    plot::rss_vs_subscribers(rows, &cli.out.join("rss.svg"))?;
    plot::p99_vs_rate(rows, &cli.out.join("p99-rate.svg"))?;
    println!("plots and results.md written to {}", cli.out.display());
    let bad: u64 = rows.iter().map(|r| r.lost + r.duplicated).sum();
    if bad > 0 {
        println!("WARNING: {bad} events lost or duplicated (see the table)");
    }
    Ok(())
}

/// The `multi` scenario: its own servers and tables (see `sse_bench::multi`).
async fn multi(cli: &Cli) -> Result<(), Error> {
    let mut cfg = sse_bench::multi::MultiConfig::new(
        server::locate_sse_server(cli.server_bin.clone())?,
        cli.multi_subscribers,
    );
    (cfg.size, cfg.window, cfg.queue_size) = (cli.size, cli.window, cli.queue_size);
    cfg.duration = Duration::from_secs(cli.duration);
    let text = sse_bench::multi::run(&cfg).await?.markdown();
    println!("\nmulti-channel streams\n\n{text}");
    std::fs::create_dir_all(&cli.out)?;
    std::fs::write(cli.out.join("multi.md"), text)?;
    Ok(())
}

/// `--redis-cluster N`: its own Redis, nodes and table (see `sse_bench::shards`), in cluster.md.
async fn redis_cluster(cli: &Cli, shards: usize) -> Result<(), Error> {
    let mut cfg = sse_bench::shards::ShardsConfig::new(
        server::locate_sse_server(cli.server_bin.clone())?,
        shards,
    );
    (cfg.size, cfg.window, cfg.queue_size) = (cli.size, cli.window, cli.queue_size);
    (cfg.channels, cfg.subscribers) = (cli.cluster_channels, cli.cluster_subscribers);
    cfg.rate = cli.cluster_rate;
    cfg.duration = Duration::from_secs(cli.duration);
    let report = sse_bench::shards::run(&cfg).await?;
    let text = report.markdown();
    println!("\nRedis Cluster shards (cross-node)\n\n{text}");
    std::fs::create_dir_all(&cli.out)?;
    std::fs::write(cli.out.join("cluster.md"), &text)?;
    match report.problems() {
        (0, 0) => {}
        (bad, unmeasured) => println!(
            "WARNING: {bad} events lost or duplicated or subscribers dropped, {unmeasured} stores not measured (see the table)"
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rotated;
    use sse_bench::server::Kind;

    #[test]
    fn each_run_starts_the_servers_one_place_further_round() {
        let kinds = vec![Kind::Ours, Kind::Baseline, Kind::Nchan];
        let firsts: Vec<Kind> = (1..=4)
            .map(|run| rotated(kinds.clone(), run)[0].clone())
            .collect();
        assert_eq!(
            firsts,
            [Kind::Ours, Kind::Baseline, Kind::Nchan, Kind::Ours]
        );
        assert_eq!(
            rotated(kinds.clone(), 2),
            [Kind::Baseline, Kind::Nchan, Kind::Ours]
        );
        assert!(rotated(Vec::new(), 3).is_empty());
    }
}
