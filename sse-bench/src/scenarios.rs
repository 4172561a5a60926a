//! The scenarios (a module of the `sse-bench` binary, not of the library): which servers each one
//! runs on, how their servers are started, and the measuring itself.

use std::path::PathBuf;
use std::time::Duration;

use sse_bench::load::{
    Endpoint, EventPublisher, Fleet, FleetOptions, IdRecorder, Protocol, Publish,
};
use sse_bench::nchan::{Nchan, NchanConfig};
use sse_bench::procfs::{self, TcpCounters};
use sse_bench::report::{Row, StormStats};
use sse_bench::server::{self, Kind, ServerProc};
use sse_bench::tls::BenchCert;
use sse_bench::{Error, load};

use crate::Cli;

/// Every scenario name `--scenarios` accepts.
pub const KNOWN: &str =
    "idle, max, max-h2, rate, rates, storm, storm-durable, idle-tls, max-tls, max-h2tls";

/// The scenarios run when `--scenarios` is not given.
pub const DEFAULT: &str = "idle,max,max-h2,rate,rates,storm,idle-tls,max-tls,max-h2tls,multi";

/// What the runs share: the servers to measure and how to start them.
pub struct Context<'a> {
    cli: &'a Cli,
    /// The servers asked for (`--no-*`), in the order they alternate.
    pub kinds: Vec<Kind>,
    bin: Option<PathBuf>,
    /// Which `sse-server` build and coalescing budget this run measures (see
    /// [`server::describe_sse_server`]).
    pub about: Option<String>,
    nchan: Option<Nchan>,
    cert: Option<(PathBuf, BenchCert, sse_bench::tls::Client)>,
}

/// How a scenario needs its server.
#[derive(Debug, Clone, Default)]
struct Setup {
    tls: bool,
    /// nchan's message buffer (events kept per channel).
    buffer: usize,
    /// sse-server's `--data-dir`.
    data_dir: Option<PathBuf>,
}

impl<'a> Context<'a> {
    /// Finds the binaries and tools; nchan is skipped with a loud line when it is missing.
    pub fn new(cli: &'a Cli, notes: &mut Vec<String>) -> Result<Context<'a>, Error> {
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
        let mut nchan = None;
        if cli.target.is_none() && !cli.no_nchan {
            match Nchan::find() {
                Ok(n) => {
                    kinds.push(Kind::Nchan);
                    nchan = Some(n);
                }
                Err(why) => {
                    let line = format!("SKIPPED nginx+nchan: {why}");
                    eprintln!("sse-bench: {line}");
                    notes.push(line);
                }
            }
        }
        let bin = if kinds.contains(&Kind::Ours) || kinds.contains(&Kind::Cluster) {
            Some(server::locate_sse_server(cli.server_bin.clone())?)
        } else {
            None
        };
        let about = bin.as_deref().map(server::describe_sse_server);
        if let Some(line) = &about {
            eprintln!("sse-bench: {line}");
        }
        Ok(Context {
            cli,
            kinds,
            bin,
            about,
            nchan,
            cert: None,
        })
    }

    /// The servers that run `scenario` (axum has no replay and no TLS; nchan no h2c, no store).
    pub fn kinds_for(&self, scenario: &str) -> Vec<Kind> {
        let supports = |kind: &Kind| match scenario {
            "storm" => !matches!(kind, Kind::Baseline | Kind::Cluster),
            "storm-durable" => *kind == Kind::Ours,
            "idle-tls" | "max-tls" => matches!(kind, Kind::Ours | Kind::Nchan),
            "max-h2tls" => *kind == Kind::Ours,
            "max-h2" => *kind != Kind::Nchan,
            _ => true,
        };
        self.kinds.iter().filter(|k| supports(k)).cloned().collect()
    }

    fn tls_cert(&mut self) -> Result<&(PathBuf, BenchCert, sse_bench::tls::Client), Error> {
        if self.cert.is_none() {
            let dir = std::env::temp_dir().join(format!("sse-bench-tls-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let cert = BenchCert::generate(&dir)?;
            let client = cert.client()?;
            self.cert = Some((dir, cert, client));
        }
        self.cert
            .as_ref()
            .ok_or_else(|| Error::Server("no TLS certificate".into()))
    }

    fn tls_client(&mut self, tls: bool) -> Result<Option<sse_bench::tls::Client>, Error> {
        Ok(if tls {
            Some(self.tls_cert()?.2.clone())
        } else {
            None
        })
    }

    fn start(&mut self, kind: &Kind, setup: &Setup) -> Result<ServerProc, Error> {
        let queue = self.cli.queue_size;
        let bin = self.bin.clone();
        let bin = || {
            bin.clone()
                .ok_or_else(|| Error::Server("no sse-server binary".into()))
        };
        match kind {
            Kind::Ours => {
                let mut extra: Vec<String> = Vec::new();
                if setup.tls {
                    let (_, cert, _) = self.tls_cert()?;
                    extra.push("--tls-cert".into());
                    extra.push(cert.cert.display().to_string());
                    extra.push("--tls-key".into());
                    extra.push(cert.key.display().to_string());
                }
                if let Some(dir) = &setup.data_dir {
                    extra.push("--data-dir".into());
                    extra.push(dir.display().to_string());
                }
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                ServerProc::start_ours_with(&bin()?, queue, &extra)
            }
            Kind::Baseline => ServerProc::start_baseline(queue),
            Kind::External => {
                let url = self.cli.target.as_deref().unwrap_or_default();
                let addr = url
                    .trim_start_matches("http://")
                    .split('/')
                    .next()
                    .and_then(|h| std::net::ToSocketAddrs::to_socket_addrs(h).ok())
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| Error::Usage(format!("cannot resolve --target `{url}`")))?;
                Ok(ServerProc::external(addr, self.cli.target_pid))
            }
            Kind::Cluster => sse_bench::cluster::start(&bin()?, queue),
            Kind::Nchan => {
                let tls = match setup.tls {
                    true => {
                        let (_, cert, _) = self.tls_cert()?;
                        Some((cert.cert.clone(), cert.key.clone()))
                    }
                    false => None,
                };
                let config = NchanConfig {
                    buffer_length: setup.buffer.max(self.cli.queue_size),
                    tls,
                };
                self.nchan
                    .as_ref()
                    .ok_or_else(|| Error::Server("nchan is not available".into()))?
                    .start(&config)
            }
        }
    }

    async fn endpoints(
        &mut self,
        kind: &Kind,
        proc: &ServerProc,
        tls: bool,
    ) -> Result<(Endpoint, Publish), Error> {
        let endpoint = match kind {
            Kind::External => {
                Endpoint::parse(self.cli.target.as_deref().unwrap_or_default()).await?
            }
            _ => Endpoint {
                addr: proc.addr,
                host: proc.addr.to_string(),
                path: "/events/bench".into(),
            },
        };
        let publish = match (&self.cli.publish_cmd, kind) {
            (Some(cmd), Kind::External) => Publish::Command(cmd.clone()),
            _ => {
                let addr = proc.publish_addr.unwrap_or(endpoint.addr);
                let endpoint = Endpoint {
                    addr,
                    host: addr.to_string(),
                    path: proc
                        .publish_path
                        .clone()
                        .unwrap_or_else(|| endpoint.path.clone()),
                };
                let token = server::TOKEN.into();
                match self.tls_client(tls)? {
                    Some(tls) => Publish::Https {
                        endpoint,
                        token,
                        tls,
                    },
                    None => Publish::Http { endpoint, token },
                }
            }
        };
        Ok((endpoint, publish))
    }

    /// Runs one scenario on one server (a fresh process) and returns its rows.
    pub async fn run(&mut self, scenario: &str, kind: &Kind) -> Result<Vec<Row>, Error> {
        let cli = self.cli;
        let h2 = Protocol::Http2 {
            streams: cli.h2_streams,
        };
        let protocol = if cli.http2 { h2 } else { Protocol::Http1 };
        let (name, setup, load) = match scenario {
            "idle" => ("idle", Setup::default(), None),
            "idle-tls" => ("idle-tls", tls_setup(), None),
            "max" => ("max", Setup::default(), Some(Load::max(cli, protocol))),
            "max-h2" => ("max-h2", Setup::default(), Some(Load::max(cli, h2))),
            "max-tls" => (
                "max-tls",
                tls_setup(),
                Some(Load::max(cli, Protocol::Http1Tls)),
            ),
            "max-h2tls" => {
                let p = Protocol::Http2Tls {
                    streams: cli.h2_streams,
                };
                ("max-h2tls", tls_setup(), Some(Load::max(cli, p)))
            }
            "rate" => ("rate", Setup::default(), Some(Load::rate(cli, protocol))),
            "storm" | "storm-durable" => return self.storm(scenario, kind).await,
            other => match other.strip_prefix("rates@").and_then(|r| r.parse().ok()) {
                Some(rate) => (other, Setup::default(), Some(Load::rates(cli, rate))),
                None => {
                    return Err(Error::Usage(format!(
                        "unknown scenario `{other}` (known: {KNOWN})"
                    )));
                }
            },
        };
        let proc = self.start(kind, &setup)?;
        let (endpoint, publish) = self.endpoints(kind, &proc, setup.tls).await?;
        eprintln!("sse-bench: {scenario} on {} ({})", kind.label(), proc.addr);
        let options = FleetOptions {
            tls: self.tls_client(setup.tls)?,
            ..FleetOptions::default()
        };
        match load {
            None => {
                let p = if setup.tls {
                    Protocol::Http1Tls
                } else {
                    protocol
                };
                idle(cli, name, kind, &proc, endpoint, p, options).await
            }
            Some(load) => Ok(vec![
                publishing(cli, kind, &proc, endpoint, &publish, name, load, options).await?,
            ]),
        }
    }
}

fn tls_setup() -> Setup {
    Setup {
        tls: true,
        ..Setup::default()
    }
}

/// The scenario names to run, `rates` expanded into one `rates@N` per rate.
pub fn expand(cli: &Cli) -> Vec<String> {
    let mut out = Vec::new();
    let default = DEFAULT.split(',').map(str::to_owned).collect::<Vec<_>>();
    let asked = match cli.scenarios.is_empty() {
        true => &default,
        false => &cli.scenarios,
    };
    for s in asked {
        if s == "rates" {
            out.extend(cli.rates.iter().map(|r| format!("rates@{r}")));
        } else {
            out.push(s.clone());
        }
    }
    out
}

/// The publishing part of a scenario.
struct Load {
    protocol: Protocol,
    subscribers: usize,
    rate: Option<f64>,
    duration: Duration,
}

impl Load {
    fn max(cli: &Cli, protocol: Protocol) -> Load {
        Load {
            protocol,
            subscribers: cli.max_subscribers,
            rate: cli.max_rate,
            duration: Duration::from_secs(cli.duration),
        }
    }

    fn rate(cli: &Cli, protocol: Protocol) -> Load {
        Load {
            protocol,
            subscribers: cli.rate_subscribers,
            rate: Some(cli.rate),
            duration: Duration::from_secs(cli.duration),
        }
    }

    fn rates(cli: &Cli, rate: f64) -> Load {
        Load {
            protocol: Protocol::Http1,
            subscribers: cli.rates_subscribers,
            rate: Some(rate),
            duration: Duration::from_secs_f64(cli.rates_duration),
        }
    }
}

async fn idle(
    cli: &Cli,
    scenario: &str,
    kind: &Kind,
    proc: &ServerProc,
    endpoint: Endpoint,
    protocol: Protocol,
    options: FleetOptions,
) -> Result<Vec<Row>, Error> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = proc.sample();
    let mut rows = vec![Row {
        scenario: scenario.into(),
        server: kind.label().into(),
        protocol,
        rss_kib: base.map(|s| s.rss_kib),
        ..Row::default()
    }];
    let mut fleet = Fleet::with_options(endpoint, protocol, options);
    let mut steps = cli.idle.clone();
    steps.sort_unstable();
    for n in steps {
        fleet.grow(n).await?;
        tokio::time::sleep(server::settle()).await;
        let now = proc.sample();
        rows.push(Row {
            scenario: scenario.into(),
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
    load: Load,
    options: FleetOptions,
) -> Result<Row, Error> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base = proc.sample();
    let subscribers = load.subscribers;
    let mut fleet = Fleet::with_options(endpoint, load.protocol, options);
    fleet.grow(subscribers).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = proc.sample();
    let load_before = procfs::sample(std::process::id()).ok();
    let stats = fleet
        .run(publish, cli.size, load.rate, cli.window, load.duration)
        .await?;
    let after = proc.sample();
    let load_after = procfs::sample(std::process::id()).ok();
    let outcomes = fleet.finish(stats.published).await;
    let delivered: u64 = outcomes.iter().map(|o| o.tracker.received()).sum();
    let secs = stats.total_time.as_secs_f64().max(1e-9);
    let cpu_s = match (before, after) {
        (Some(b), Some(a)) => Some(a.cpu.saturating_sub(b.cpu).as_secs_f64()),
        _ => None,
    };
    let per_delivery = |cpu: f64| (delivered > 0).then(|| cpu * 1e6 / delivered as f64);
    Ok(Row {
        scenario: scenario.into(),
        server: kind.label().into(),
        protocol: load.protocol,
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
        cpu_us_per_event: cpu_s.and_then(per_delivery),
        load_us_per_event: match (load_before, load_after) {
            (Some(b), Some(a)) => per_delivery(a.cpu.saturating_sub(b.cpu).as_secs_f64()),
            _ => None,
        },
        dropped: outcomes.iter().filter(|o| o.dropped).count(),
        lost: outcomes.iter().map(|o| o.tracker.lost()).sum(),
        duplicated: outcomes.iter().map(|o| o.tracker.duplicated()).sum(),
        target_rate: load.rate.filter(|_| scenario.starts_with("rates@")),
        ..Row::default()
    })
}

impl Context<'_> {
    /// `storm`: history, then `--storm-subscribers` resuming `--storm-back` events back, their
    /// connects spread over `--storm-spread-ms`. `storm-durable`: sse-server with `--data-dir`,
    /// restarted between the history and the storm.
    async fn storm(&mut self, scenario: &str, kind: &Kind) -> Result<Vec<Row>, Error> {
        let cli = self.cli;
        let durable = scenario == "storm-durable";
        let store = std::env::temp_dir().join(format!(
            "sse-bench-store-{}-{}",
            std::process::id(),
            load::now_us()
        ));
        let setup = Setup {
            buffer: cli.storm_history as usize + 16,
            data_dir: durable.then(|| store.clone()),
            ..Setup::default()
        };
        let mut proc = self.start(kind, &setup)?;
        eprintln!("sse-bench: {scenario} on {} ({})", kind.label(), proc.addr);
        let (endpoint, publish) = self.endpoints(kind, &proc, false).await?;
        let resume_id = history(cli, &endpoint, &publish).await?;
        if durable {
            drop(proc);
            proc = self.start(kind, &setup)?;
        }
        let (endpoint, publish) = self.endpoints(kind, &proc, false).await?;
        let row = storm_run(cli, scenario, kind, &proc, endpoint, &publish, resume_id).await;
        drop(proc);
        let _ = std::fs::remove_dir_all(&store);
        Ok(vec![row?])
    }
}

/// Publishes the history before a storm and returns the id of the event subscribers resume after.
async fn history(cli: &Cli, endpoint: &Endpoint, publish: &Publish) -> Result<String, Error> {
    let recorder = IdRecorder::start(endpoint).await?;
    let mut publisher = EventPublisher::connect(publish).await?;
    for seq in 1..=cli.storm_history {
        publisher.send(seq, cli.size).await?;
    }
    publisher.flush().await?;
    let resume = cli.storm_history.saturating_sub(cli.storm_back);
    recorder.id_of(resume, Duration::from_secs(10)).await
}

async fn storm_run(
    cli: &Cli,
    scenario: &str,
    kind: &Kind,
    proc: &ServerProc,
    endpoint: Endpoint,
    publish: &Publish,
    resume_id: String,
) -> Result<Row, Error> {
    let (history, back, n) = (cli.storm_history, cli.storm_back, cli.storm_subscribers);
    let spread = Duration::from_millis(cli.storm_spread_ms);
    let marker = history + 1;
    let live_events = 10;
    let options = FleetOptions {
        last_event_id: Some(resume_id),
        first_seq: history - back + 1,
        ready_seq: Some(history),
        live_seq: Some(marker),
        spread: Some(spread),
        ..FleetOptions::default()
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = proc.sample();
    let load_before = procfs::sample(std::process::id()).ok();
    let net_before = TcpCounters::read();
    let mut publisher = EventPublisher::connect(publish).await?;
    let mut fleet = Fleet::with_options(endpoint, Protocol::Http1, options);
    let begin = load::now_us();
    // The marker goes out once the last subscriber has started connecting; live events follow.
    let live = async {
        tokio::time::sleep(spread).await;
        for seq in marker..marker + live_events {
            publisher.send(seq, cli.size).await?;
            publisher.flush().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok::<(), Error>(())
    };
    let (grown, published) = tokio::join!(fleet.grow(n), live);
    grown?;
    published?;
    let last = marker + live_events - 1;
    fleet.wait_for(last, Duration::from_secs(20)).await;
    let ready = fleet.ready();
    let load_after = procfs::sample(std::process::id()).ok();
    let net = TcpCounters::read()
        .zip(net_before)
        .map(|(a, b)| a.since(&b));
    let peak = proc.sample();
    tokio::time::sleep(server::settle()).await;
    let settled = proc.sample();
    let outcomes = fleet.finish(last).await;
    let cpu_s = before
        .zip(settled)
        .map(|(b, a)| a.cpu.saturating_sub(b.cpu).as_secs_f64());
    let load_cpu_s = load_before
        .zip(load_after)
        .map(|(b, a)| a.cpu.saturating_sub(b.cpu).as_secs_f64());
    let delivered: u64 = outcomes.iter().map(|o| o.tracker.received()).sum();
    let kib = |rss: Option<u64>| {
        before
            .zip(rss)
            .map(|(b, a)| (a as f64 - b.rss_kib as f64) / n.max(1) as f64)
    };
    Ok(Row {
        scenario: scenario.into(),
        server: kind.label().into(),
        protocol: Protocol::Http1,
        subscribers: n,
        size: cli.size,
        latency: Some(ready.latency),
        rss_kib: settled.map(|s| s.rss_kib),
        kib_per_sub: kib(settled.map(|s| s.rss_kib)),
        cpu_s,
        cpu_us_per_event: cpu_s
            .filter(|_| delivered > 0)
            .map(|c| c * 1e6 / delivered as f64),
        dropped: outcomes.iter().filter(|o| o.dropped).count(),
        lost: outcomes.iter().map(|o| o.tracker.lost()).sum(),
        duplicated: outcomes.iter().map(|o| o.tracker.duplicated()).sum(),
        storm: Some(StormStats {
            history,
            back,
            all_live_s: (ready.live == n)
                .then(|| ready.last_live_us.saturating_sub(begin) as f64 / 1e6),
            peak_rss_kib: peak.map_or(0, |p| p.hwm_kib),
            before_rss_kib: before.map_or(0, |b| b.rss_kib),
            overflows: net.map_or(0, |c| c.listen_overflows),
            syn_retrans: net.map_or(0, |c| c.syn_retrans),
            spread_s: spread.as_secs_f64(),
            load_cpu_s,
        }),
        ..Row::default()
    })
}
