//! Publish throughput and fan-out, in-memory store next to the durable store in each commit mode, plus
//! the store file's size after a sustained run.
//!
//! `cargo bench -p sse-server --bench durable [-- --sustained N]` (plain std timing: the numbers are
//! orders of magnitude apart, so no statistics are needed to read them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sse_proto::Event;
use sse_server::{CommitMode, Hub, HubBuilder};

#[derive(Clone, Copy)]
enum Backend {
    Memory,
    Durable(CommitMode),
}

impl Backend {
    fn name(self) -> String {
        match self {
            Backend::Memory => "memory".into(),
            Backend::Durable(CommitMode::PerPublish) => "durable per-publish".into(),
            Backend::Durable(CommitMode::Group { max_delay }) => {
                format!("durable group {}ms", max_delay.as_millis())
            }
        }
    }

    fn builder(self, dir: &tempfile::TempDir) -> HubBuilder {
        match self {
            Backend::Memory => Hub::builder(),
            Backend::Durable(mode) => Hub::builder().data_dir(dir.path()).commit_mode(mode),
        }
    }

    /// Events per measurement: enough for a stable rate, few enough that fsync-bound runs stay short.
    fn events(self, concurrent: bool) -> usize {
        match (self, concurrent) {
            (Backend::Memory, _) => 100_000,
            (Backend::Durable(_), false) => 1_000,
            (Backend::Durable(_), true) => 4_000,
        }
    }
}

const CHANNELS: usize = 16;
const PAYLOAD: usize = 200;

/// Events per second publishing `total` events from one task on one channel, or from `CHANNELS` tasks
/// on as many channels.
async fn publish_rate(hub: &Hub, total: usize, concurrent: bool) -> f64 {
    let payload = "x".repeat(PAYLOAD);
    let start = Instant::now();
    if concurrent {
        let per = total / CHANNELS;
        let tasks: Vec<_> = (0..CHANNELS)
            .map(|ch| {
                let (hub, payload) = (hub.clone(), payload.clone());
                tokio::spawn(async move {
                    for _ in 0..per {
                        hub.publish(&format!("c{ch}"), Event::message(payload.clone()))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        (per * CHANNELS) as f64 / start.elapsed().as_secs_f64()
    } else {
        for _ in 0..total {
            hub.publish("single", Event::message(payload.clone()))
                .await
                .unwrap();
        }
        total as f64 / start.elapsed().as_secs_f64()
    }
}

/// Deliveries per second: `subscribers` readers of one channel, each receiving `events` events.
async fn fan_out_rate(hub: &Hub, subscribers: usize, events: usize) -> f64 {
    let mut readers = Vec::new();
    for _ in 0..subscribers {
        let mut sub = hub.subscribe("fan", None).await.unwrap();
        readers.push(tokio::spawn(async move {
            let mut n = 0;
            while n < events {
                let b = tokio::time::timeout(Duration::from_secs(30), sub.next())
                    .await
                    .unwrap()
                    .unwrap();
                if b.starts_with(b"id:") {
                    n += 1;
                }
            }
        }));
    }
    let start = Instant::now();
    for i in 0..events {
        hub.publish("fan", Event::message(i.to_string()))
            .await
            .unwrap();
        if i % 64 == 0 {
            // Let the readers drain so that none is dropped as slow (this measures delivery, not drops).
            tokio::task::yield_now().await;
        }
    }
    for r in readers {
        r.await.unwrap();
    }
    (subscribers * events) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sustained = args
        .iter()
        .position(|a| a == "--sustained")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000usize);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let backends = [
        Backend::Memory,
        Backend::Durable(CommitMode::PerPublish),
        Backend::Durable(CommitMode::Group {
            max_delay: Duration::ZERO,
        }),
        Backend::Durable(CommitMode::Group {
            max_delay: Duration::from_millis(2),
        }),
    ];
    println!(
        "publish throughput ({PAYLOAD}-byte events; every durable commit is fsynced; ratio = vs memory)"
    );
    println!(
        "{:<22} {:>24} {:>24} {:>26}",
        "backend",
        "1 channel ev/s",
        format!("{CHANNELS} channels ev/s"),
        "fan-out 100 subs deliv/s"
    );
    let mut memory = (0.0, 0.0, 0.0);
    for backend in backends {
        let dir = tempfile::tempdir().unwrap();
        let (single, multi, fan) = rt.block_on(async {
            let hub = backend.builder(&dir).queue_size(4096).try_build().unwrap();
            let single = publish_rate(&hub, backend.events(false), false).await;
            let multi = publish_rate(&hub, backend.events(true), true).await;
            let fan = fan_out_rate(
                &hub,
                100,
                if matches!(backend, Backend::Memory) {
                    2_000
                } else {
                    300
                },
            )
            .await;
            (single, multi, fan)
        });
        if matches!(backend, Backend::Memory) {
            memory = (single, multi, fan);
        }
        println!(
            "{:<22} {:>13.0} ({:>7.4}x) {:>13.0} ({:>7.4}x) {:>15.0} ({:>7.4}x)",
            backend.name(),
            single,
            single / memory.0,
            multi,
            multi / memory.1,
            fan,
            fan / memory.2
        );
    }

    // Sustained run: the file must level off at the window's size, not grow with what was published.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(sse_server::STORE_FILE);
    let (written, sizes, secs) = rt.block_on(async {
        let hub = Backend::Durable(CommitMode::Group {
            max_delay: Duration::ZERO,
        })
        .builder(&dir)
        .try_build()
        .unwrap();
        let hub = Arc::new(hub);
        let payload = "y".repeat(PAYLOAD);
        let per = sustained / CHANNELS;
        let start = Instant::now();
        let mut sizes = Vec::new();
        let mut written = 0u64;
        for quarter in 0..4 {
            let tasks: Vec<_> = (0..CHANNELS)
                .map(|ch| {
                    let (hub, payload) = (hub.clone(), payload.clone());
                    tokio::spawn(async move {
                        for _ in 0..per / 4 {
                            hub.publish(&format!("c{ch}"), Event::message(payload.clone()))
                                .await
                                .unwrap();
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            written += (per / 4 * CHANNELS) as u64;
            sizes.push((quarter, written, std::fs::metadata(&file).unwrap().len()));
        }
        (written, sizes, start.elapsed().as_secs_f64())
    });
    println!(
        "\nsustained: {written} events on {CHANNELS} channels (default window: 1000 events per channel), group commit, {:.0} ev/s",
        written as f64 / secs
    );
    for (_, after, size) in sizes {
        println!(
            "  after {after:>7} events: {} = {:.1} MiB",
            file.display(),
            size as f64 / (1024.0 * 1024.0)
        );
    }
}
