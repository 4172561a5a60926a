//! `sse-bench`: the fan-out benchmark (`cargo xtask bench fanout [ARGS]`). `--help` lists the options.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sse_bench::load::{Endpoint, Fleet, Protocol, Publish};
use sse_bench::report::{self, Row};
use sse_bench::server::{self, Kind, ServerProc};
use sse_bench::{Error, plot};

/// Fan-out benchmark: sse-server against an axum `Sse` + broadcast baseline (or any SSE server with
/// --target), each started as its own process and measured from /proc.
#[derive(Debug, Parser)]
#[command(name = "sse-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Scenarios to run: idle (RSS per subscriber), max (highest lossless rate), max-h2 (max with
    /// HTTP/2 subscribers), rate (fixed rate), multi (many channels per stream: idle memory and
    /// pattern delivery CPU against one channel; not in the default list).
    #[arg(long, value_delimiter = ',', default_value = "idle,max,max-h2,rate")]
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
    /// Event payload size in bytes.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Seconds of publishing per scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Runs of each publishing scenario, servers alternating; ratios then compare medians (this
    /// machine's noise moves single runs by ±20 %).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=20))]
    repeat: u64,
    /// Per-subscriber queue of both servers (sse-server --queue-size, broadcast capacity).
    #[arg(long, default_value_t = 256)]
    queue_size: usize,
    /// Skip the baseline.
    #[arg(long)]
    no_baseline: bool,
    /// Skip sse-server (e.g. to measure only the baseline).
    #[arg(long)]
    no_ours: bool,
    /// Also measure a cluster: two `sse-server --redis` nodes on a redis-server started here, with
    /// subscribers on one node and publishes on the other (needs redis-server on PATH).
    #[arg(long)]
    redis: bool,
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
    let h2 = Protocol::Http2 {
        streams: cli.h2_streams,
    };
    let protocol = if cli.http2 { h2 } else { Protocol::Http1 };
    let mut kinds = Vec::new();
    if cli.target.is_some() {
        kinds.push(Kind::External);
    } else {
        if !cli.no_ours {
            kinds.push(Kind::Ours);
        }
        if !cli.no_baseline {
            kinds.push(Kind::Baseline);
        }
        if cli.redis {
            kinds.push(Kind::Cluster);
        }
    }
    let bin = if kinds.contains(&Kind::Ours) || kinds.contains(&Kind::Cluster) {
        Some(server::locate_sse_server(cli.server_bin.clone())?)
    } else {
        None
    };
    let start = |kind: &Kind| -> Result<ServerProc, Error> {
        match kind {
            Kind::Ours => ServerProc::start_ours(
                bin.as_deref()
                    .ok_or_else(|| Error::Server("no sse-server binary".into()))?,
                cli.queue_size,
            ),
            Kind::Baseline => ServerProc::start_baseline(cli.queue_size),
            Kind::External => Err(Error::Server("external server is not started here".into())),
            Kind::Cluster => sse_bench::cluster::start(
                bin.as_deref()
                    .ok_or_else(|| Error::Server("no sse-server binary".into()))?,
                cli.queue_size,
            ),
        }
    };
    let mut rows: Vec<Row> = Vec::new();
    for scenario in &cli.scenarios {
        if scenario == "multi" {
            multi(cli).await?;
            continue;
        }
        let runs = if scenario == "idle" { 1 } else { cli.repeat };
        for run in 1..=runs {
            for kind in &kinds {
                let proc = match kind {
                    Kind::External => {
                        let url = cli.target.as_deref().unwrap_or_default();
                        let ep = Endpoint::parse(url).await?;
                        ServerProc::external(ep.addr, cli.target_pid)
                    }
                    k => start(k)?,
                };
                let endpoint = match kind {
                    Kind::External => {
                        Endpoint::parse(cli.target.as_deref().unwrap_or_default()).await?
                    }
                    _ => Endpoint {
                        addr: proc.addr,
                        host: proc.addr.to_string(),
                        path: "/events/bench".into(),
                    },
                };
                let publish = match (&cli.publish_cmd, kind) {
                    (Some(cmd), Kind::External) => Publish::Command(cmd.clone()),
                    _ => Publish::Http {
                        endpoint: match proc.publish_addr {
                            Some(addr) => Endpoint {
                                addr,
                                host: addr.to_string(),
                                path: endpoint.path.clone(),
                            },
                            None => endpoint.clone(),
                        },
                        token: server::TOKEN.into(),
                    },
                };
                eprintln!("sse-bench: {scenario} on {} ({})", kind.label(), proc.addr);
                match scenario.as_str() {
                    "idle" => rows.extend(idle(cli, kind, &proc, endpoint, protocol).await?),
                    "max" => rows.push(
                        publishing(
                            cli,
                            kind,
                            &proc,
                            endpoint,
                            &publish,
                            "max",
                            protocol,
                            cli.max_subscribers,
                            cli.max_rate,
                        )
                        .await?,
                    ),
                    "max-h2" => rows.push(
                        publishing(
                            cli,
                            kind,
                            &proc,
                            endpoint,
                            &publish,
                            "max-h2",
                            h2,
                            cli.max_subscribers,
                            cli.max_rate,
                        )
                        .await?,
                    ),
                    "rate" => rows.push(
                        publishing(
                            cli,
                            kind,
                            &proc,
                            endpoint,
                            &publish,
                            "rate",
                            protocol,
                            cli.rate_subscribers,
                            Some(cli.rate),
                        )
                        .await?,
                    ),
                    other => {
                        return Err(Error::Usage(format!(
                            "unknown scenario `{other}` (known: idle, max, max-h2, rate, multi)"
                        )));
                    }
                }
                if runs > 1
                    && let Some(last) = rows.last_mut()
                {
                    last.run = run as usize;
                }
                drop(proc);
            }
        }
    }
    let table = report::table(&rows);
    let ratios = report::ratios(&rows, Kind::Ours.label(), Kind::Baseline.label());
    let notes = report::notes(cli.h2_streams);
    println!(
        "\nfan-out benchmark ({} s per publishing scenario, {} B events)\n",
        cli.duration, cli.size
    );
    println!("{table}");
    println!("{notes}");
    if kinds.contains(&Kind::Ours) && kinds.contains(&Kind::Baseline) {
        println!("ours / baseline\n\n{ratios}");
    }
    std::fs::create_dir_all(&cli.out)?;
    std::fs::write(
        cli.out.join("results.md"),
        format!("{table}\n{notes}\n{ratios}"),
    )?;
    for scenario in ["max", "max-h2", "rate"] {
        plot::latency_cdf(
            &rows,
            scenario,
            &cli.out.join(format!("latency-{scenario}.svg")),
        )?;
    }
    plot::rss_vs_subscribers(&rows, &cli.out.join("rss.svg"))?;
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

async fn idle(
    cli: &Cli,
    kind: &Kind,
    proc: &ServerProc,
    endpoint: Endpoint,
    protocol: Protocol,
) -> Result<Vec<Row>, Error> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = proc.sample();
    let mut rows = vec![Row {
        scenario: "idle".into(),
        server: kind.label().into(),
        protocol,
        rss_kib: base.map(|s| s.rss_kib),
        ..Row::default()
    }];
    let mut fleet = Fleet::with_protocol(endpoint, protocol);
    let mut steps = cli.idle.clone();
    steps.sort_unstable();
    for n in steps {
        fleet.grow(n).await?;
        tokio::time::sleep(server::settle()).await;
        let now = proc.sample();
        rows.push(Row {
            scenario: "idle".into(),
            server: kind.label().into(),
            protocol,
            subscribers: n,
            rss_kib: now.map(|s| s.rss_kib),
            kib_per_sub: match (base, now) {
                (Some(b), Some(a)) if n > 0 => {
                    Some((a.rss_kib as f64 - b.rss_kib as f64) / n as f64)
                }
                _ => None,
            },
            dropped: n - fleet.connected().min(n),
            ..Row::default()
        });
    }
    let outcomes = fleet.finish(0).await;
    if let Some(last) = rows.last_mut() {
        last.dropped = outcomes.iter().filter(|o| o.dropped).count();
    }
    Ok(rows)
}

#[allow(clippy::too_many_arguments)]
async fn publishing(
    cli: &Cli,
    kind: &Kind,
    proc: &ServerProc,
    endpoint: Endpoint,
    publish: &Publish,
    scenario: &str,
    protocol: Protocol,
    subscribers: usize,
    rate: Option<f64>,
) -> Result<Row, Error> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = proc.sample();
    let mut fleet = Fleet::with_protocol(endpoint, protocol);
    fleet.grow(subscribers).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = proc.sample();
    let load_before = sse_bench::procfs::sample(std::process::id()).ok();
    let stats = fleet
        .run(
            publish,
            cli.size,
            rate,
            cli.window,
            Duration::from_secs(cli.duration),
        )
        .await?;
    let after = proc.sample();
    let load_after = sse_bench::procfs::sample(std::process::id()).ok();
    let outcomes = fleet.finish(stats.published).await;
    let delivered: u64 = outcomes.iter().map(|o| o.tracker.received()).sum();
    let secs = stats.total_time.as_secs_f64().max(1e-9);
    let cpu_s = match (before, after) {
        (Some(b), Some(a)) => Some(a.cpu.saturating_sub(b.cpu).as_secs_f64()),
        _ => None,
    };
    Ok(Row {
        scenario: scenario.into(),
        run: 0,
        server: kind.label().into(),
        protocol,
        subscribers,
        size: cli.size,
        published_per_s: stats.published as f64 / stats.publish_time.as_secs_f64().max(1e-9),
        delivered_per_s: delivered as f64 / secs,
        latency: Some(stats.latency),
        rss_kib: after.map(|s| s.rss_kib),
        kib_per_sub: match (base, after) {
            (Some(b), Some(a)) => {
                Some((a.rss_kib as f64 - b.rss_kib as f64) / subscribers.max(1) as f64)
            }
            _ => None,
        },
        cpu_s,
        cpu_us_per_event: cpu_s
            .filter(|_| delivered > 0)
            .map(|c| c * 1e6 / delivered as f64),
        load_us_per_event: match (load_before, load_after) {
            (Some(b), Some(a)) if delivered > 0 => {
                Some(a.cpu.saturating_sub(b.cpu).as_secs_f64() * 1e6 / delivered as f64)
            }
            _ => None,
        },
        dropped: outcomes.iter().filter(|o| o.dropped).count(),
        lost: outcomes.iter().map(|o| o.tracker.lost()).sum(),
        duplicated: outcomes.iter().map(|o| o.tracker.duplicated()).sum(),
    })
}
