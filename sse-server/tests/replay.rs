//! Replay across reconnects while publishing runs concurrently: no gap, no duplicate, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use proptest::prelude::*;
use sse_proto::Event;
use sse_server::{BoxFuture, Hub, MemoryStore, Replay, ReplayStore, StoredChannel, StoredEvent};
use support::{TestServer, WAIT, read_resuming};

/// A memory store that answers replays late, like a networked store would: publishes land between the
/// subscriber's registration and its window read, which is exactly the seam under test.
#[derive(Debug)]
struct SlowReplayStore(MemoryStore);

impl ReplayStore for SlowReplayStore {
    fn append<'a>(
        &'a self,
        channel: &'a str,
        event: Event,
    ) -> BoxFuture<'a, Result<StoredEvent, sse_server::Error>> {
        self.0.append(channel, event)
    }

    fn replay<'a>(
        &'a self,
        channel: &'a str,
        last_event_id: &'a str,
    ) -> BoxFuture<'a, Result<Replay, sse_server::Error>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(3)).await;
            self.0.replay(channel, last_event_id).await
        })
    }

    fn mint_id(&self) -> BoxFuture<'_, Result<String, sse_server::Error>> {
        self.0.mint_id()
    }

    fn channels(&self) -> BoxFuture<'_, Result<Vec<StoredChannel>, sse_server::Error>> {
        self.0.channels()
    }
}

/// One reconnecting subscriber over HTTP against a publisher task publishing `total` numbered events
/// (a `yield` or a short sleep after some of them). The subscriber reads `reads[i]` messages, drops the
/// connection, and resumes with the last id it saw, until it has every event. Returns what it received.
async fn run_schedule(
    total: usize,
    reads: Vec<usize>,
    pauses: Vec<u8>,
    queue: usize,
    slow: bool,
) -> Vec<usize> {
    let mut builder = Hub::builder().queue_size(queue);
    if slow {
        builder = builder.store(std::sync::Arc::new(SlowReplayStore(MemoryStore::new(
            Default::default(),
        ))));
    }
    let server = TestServer::start(builder).await;
    let start = format!("{}-0", epoch_of(&server).await);
    let hub = server.hub.clone();
    let publisher = tokio::spawn(async move {
        for i in 0..total {
            hub.publish("seq", Event::message(i.to_string()))
                .await
                .unwrap();
            match pauses[i % pauses.len()] {
                0 => {}
                1..=5 => tokio::task::yield_now().await,
                n => tokio::time::sleep(Duration::from_micros(u64::from(n) * 10)).await,
            }
        }
    });
    // The first subscription starts before anything is published only if it wins the race; resume
    // from "the start" explicitly so the schedule is the same whoever wins.
    let got = read_resuming(&server, "seq", &start, total, &reads).await;
    tokio::time::timeout(WAIT, publisher)
        .await
        .unwrap()
        .unwrap();
    server.stop().await;
    got
}

/// The memory store's epoch, read from an id it issues (position 0 of the epoch means "from the start").
async fn epoch_of(server: &TestServer) -> String {
    let probe = server.hub.store().mint_id().await.unwrap();
    probe.split('-').next().unwrap().to_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn reconnecting_subscriber_sees_every_event_once_in_order(
        total in 20usize..150,
        reads in proptest::collection::vec(1usize..40, 1..8),
        pauses in proptest::collection::vec(0u8..12, 1..10),
        queue in prop_oneof![Just(4usize), Just(64usize)],
        slow in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let got = rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(60), run_schedule(total, reads, pauses, queue, slow))
                .await
                .expect("schedule took too long")
        });
        prop_assert_eq!(got, (0..total).collect::<Vec<_>>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_subscribers_resume_concurrently_with_a_busy_publisher() {
    let total = 400;
    let got = tokio::time::timeout(Duration::from_secs(60), async {
        let mut tasks = Vec::new();
        for k in 0..3 {
            tasks.push(tokio::spawn(run_schedule(
                total,
                vec![7 + k, 31, 3],
                vec![0, 0, 2, 9],
                8,
                k == 1,
            )));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap());
        }
        all
    })
    .await
    .unwrap();
    for g in got {
        assert_eq!(g, (0..total).collect::<Vec<_>>());
    }
}
