//! The hub's contract, run against both replay backends: the in-memory default and the durable store.
//! Every test builds its hub through [`Backend::builder`], so a behaviour that differs between the two
//! fails here.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use futures::StreamExt;
use proptest::prelude::*;
use sse_proto::Event;
use sse_server::{CommitMode, Hub, HubBuilder, Position};
use support::{TestServer, WAIT, read_resuming};

#[derive(Debug, Clone, Copy)]
enum Backend {
    Memory,
    Durable(CommitMode),
}

const BACKENDS: [Backend; 3] = [
    Backend::Memory,
    Backend::Durable(CommitMode::PerPublish),
    Backend::Durable(CommitMode::Group {
        max_delay: Duration::from_millis(1),
    }),
];

/// A hub builder for `backend`; the temp dir must outlive the hub.
fn builder(backend: Backend, dir: &tempfile::TempDir) -> HubBuilder {
    match backend {
        Backend::Memory => Hub::builder(),
        Backend::Durable(mode) => Hub::builder().data_dir(dir.path()).commit_mode(mode),
    }
}

async fn next(sub: &mut sse_server::Subscription) -> String {
    let bytes = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("no event in time")
        .expect("stream ended");
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn subscribers_share_one_encoding_live_and_replayed() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let hub = builder(backend, &dir).try_build().unwrap();
        let first = hub.publish("c", Event::message("first")).await.unwrap();
        let mut a = hub.subscribe("c", None).await.unwrap();
        let mut b = hub.subscribe("c", Some(&first)).await.unwrap();
        let id = hub.publish("c", Event::message("shared")).await.unwrap();
        let (x, y) = (next(&mut a).await, next(&mut b).await);
        assert_eq!(x, format!("id: {id}\ndata: shared\n\n"), "{backend:?}");
        assert_eq!(x, y, "{backend:?}");
        let mut c = hub.subscribe("c", Some(&first)).await.unwrap();
        assert_eq!(next(&mut c).await, x, "{backend:?}: replayed copy differs");
    }
}

#[tokio::test]
async fn custom_ids_resume_and_hub_ids_increase() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let hub = builder(backend, &dir).try_build().unwrap();
        let a: Position = hub
            .publish("c", Event::message("a"))
            .await
            .unwrap()
            .parse()
            .unwrap();
        let mine = hub
            .publish("c", Event::builder().id("mine").data("b").build().unwrap())
            .await
            .unwrap();
        assert_eq!(mine, "mine");
        let c: Position = hub
            .publish("c", Event::message("c"))
            .await
            .unwrap()
            .parse()
            .unwrap();
        assert!(c > a, "{backend:?}");
        let mut sub = hub.subscribe("c", Some("mine")).await.unwrap();
        assert_eq!(
            next(&mut sub).await,
            format!("id: {c}\ndata: c\n\n"),
            "{backend:?}"
        );
        let mut sub = hub.subscribe("c", Some(&a.to_string())).await.unwrap();
        assert_eq!(next(&mut sub).await, "id: mine\ndata: b\n\n", "{backend:?}");
    }
}

#[tokio::test]
async fn expired_and_unknown_ids_get_a_reset_then_the_window() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let hub = builder(backend, &dir).replay_events(2).try_build().unwrap();
        let mut ids = Vec::new();
        for i in 0..4 {
            ids.push(
                hub.publish("c", Event::message(i.to_string()))
                    .await
                    .unwrap(),
            );
        }
        // The last evicted id: everything after it is retained, so no reset.
        let mut sub = hub.subscribe("c", Some(&ids[1])).await.unwrap();
        assert!(next(&mut sub).await.contains("data: 2\n"), "{backend:?}");
        for (stale, reason) in [(&ids[0], "expired"), (&"nope".to_owned(), "unknown")] {
            let mut sub = hub.subscribe("c", Some(stale)).await.unwrap();
            let reset = next(&mut sub).await;
            assert!(
                reset.starts_with("event: sse-reset\n") || reset.contains("event: sse-reset\n"),
                "{backend:?}: {reset}"
            );
            assert!(
                reset.contains(&format!("\"reason\":\"{reason}\"")),
                "{backend:?}: {reset}"
            );
            assert!(
                reset.contains(&format!("\"oldest\":\"{}\"", ids[2])),
                "{backend:?}: {reset}"
            );
            assert!(next(&mut sub).await.contains("data: 2\n"), "{backend:?}");
            assert!(next(&mut sub).await.contains("data: 3\n"), "{backend:?}");
        }
    }
}

#[tokio::test]
async fn byte_and_age_bounds_apply() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let hub = builder(backend, &dir)
            .replay_bytes(100)
            .try_build()
            .unwrap();
        let first = hub
            .publish("c", Event::message("x".repeat(40)))
            .await
            .unwrap();
        for _ in 0..5 {
            hub.publish("c", Event::message("y".repeat(40)))
                .await
                .unwrap();
        }
        let mut sub = hub.subscribe("c", Some(&first)).await.unwrap();
        let reset = next(&mut sub).await;
        assert!(
            reset.contains("\"reason\":\"expired\""),
            "{backend:?}: {reset}"
        );
        drop((sub, hub));

        let dir = tempfile::tempdir().unwrap();
        let hub = builder(backend, &dir)
            .replay_age(Duration::from_millis(200))
            .try_build()
            .unwrap();
        let old = hub.publish("c", Event::message("old")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut sub = hub.subscribe("c", Some(&old)).await.unwrap();
        let live = hub.publish("c", Event::message("new")).await.unwrap();
        // Nothing after `old` was lost (only `old` itself aged out), so no reset: straight to live.
        assert_eq!(
            next(&mut sub).await,
            format!("id: {live}\ndata: new\n\n"),
            "{backend:?}"
        );
        assert_eq!(
            hub.channels().await.unwrap()[0].last_id.as_deref(),
            Some(live.as_str())
        );
    }
}

#[tokio::test]
async fn broadcast_channels_and_close_behave_alike() {
    for backend in BACKENDS {
        let dir = tempfile::tempdir().unwrap();
        let hub = builder(backend, &dir).try_build().unwrap();
        hub.publish("a", Event::message("1")).await.unwrap();
        let mut sub = hub.subscribe("b", None).await.unwrap();
        let id = hub.broadcast(Event::message("all")).await.unwrap();
        assert_eq!(
            next(&mut sub).await,
            format!("id: {id}\ndata: all\n\n"),
            "{backend:?}"
        );
        let list = hub.channels().await.unwrap();
        assert_eq!(list.len(), 2, "{backend:?}");
        for c in &list {
            assert_eq!(c.last_id.as_deref(), Some(id.as_str()), "{backend:?}");
        }
        assert_eq!(hub.close_channel("b"), 1);
        assert!(
            tokio::time::timeout(WAIT, sub.next())
                .await
                .unwrap()
                .is_none()
        );
        // The broadcast id resumes in either channel.
        let after = hub.publish("a", Event::message("2")).await.unwrap();
        let mut again = hub.subscribe("a", Some(&id)).await.unwrap();
        assert_eq!(
            next(&mut again).await,
            format!("id: {after}\ndata: 2\n\n"),
            "{backend:?}"
        );
    }
}

/// The replay seam over HTTP while a publisher runs: a subscriber that reconnects after every few events
/// must see each event once, in order.
async fn reconnecting_reader(backend: Backend, total: usize, reads: Vec<usize>) -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(builder(backend, &dir).queue_size(8)).await;
    let epoch = server.hub.store().mint_id().await.unwrap();
    let start = format!("{}-0", epoch.split('-').next().unwrap());
    let hub = server.hub.clone();
    let publisher = tokio::spawn(async move {
        for i in 0..total {
            hub.publish("seq", Event::message(i.to_string()))
                .await
                .unwrap();
            if i % 3 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    let got = read_resuming(&server, "seq", &start, total, &reads).await;
    tokio::time::timeout(WAIT, publisher)
        .await
        .unwrap()
        .unwrap();
    server.stop().await;
    got
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn replay_seam_holds_on_every_backend(
        total in 10usize..60,
        reads in proptest::collection::vec(1usize..15, 1..5),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        for backend in BACKENDS {
            let got = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(60), reconnecting_reader(backend, total, reads.clone()))
                    .await
                    .expect("schedule took too long")
            });
            prop_assert_eq!(got, (0..total).collect::<Vec<_>>(), "{:?}", backend);
        }
    }
}
