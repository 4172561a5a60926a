//! Subscribers on the lean HTTP/1.1 path lend their socket to a flusher while they wait (see
//! `flush.rs`). These tests cover the hand-overs: a socket that does not take a write whole, and the
//! heartbeat, which only the subscriber's own task sends.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use sse_proto::{Event, Item};
use sse_server::Hub;
use support::{Reader, TestServer, WAIT, client};

async fn wait_for_subscribers(server: &TestServer, channel: &str, n: usize) {
    tokio::time::timeout(WAIT, async {
        loop {
            let channels = server.hub.channels().await.unwrap();
            if channels
                .iter()
                .any(|c| c.name == channel && c.subscribers == n)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("subscribers registered");
}

/// A subscriber that stops reading long enough for its socket buffers to fill makes the flusher's
/// writes partial (the rest of a chunk goes back to its task, which waits for the socket). When it
/// reads again it gets every event, whole and in order, in well-formed chunks (reqwest rejects a
/// broken chunked body), and is never disconnected while its queue has room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_subscriber_resumes_with_every_event_intact() {
    // The byte budget is raised with the queue: this test is about partial writes and hand-backs,
    // not about when a stalled subscriber is dropped (tests/security_stalled.rs covers that).
    let server = TestServer::start(
        Hub::builder()
            .queue_size(4096)
            .max_subscriber_buffer(64 << 20)
            .max_event_bytes(64 * 1024)
            .retry(None),
    )
    .await;
    let mut paused = Reader::open(&client(), &server.url("/events/p"), None).await;
    let mut healthy = Reader::open(&client(), &server.url("/events/p"), None).await;
    wait_for_subscribers(&server, "p", 2).await;

    // 400 × 32 KiB = 12.5 MiB: more than loopback socket buffers hold, bounded.
    const N: usize = 400;
    let body = |i: usize| {
        format!(
            "{i} {}",
            char::from(b'a' + (i % 26) as u8)
                .to_string()
                .repeat(32 * 1024)
        )
    };
    for i in 0..N {
        server
            .hub
            .publish("p", Event::message(body(i)))
            .await
            .unwrap();
        // In lockstep with the healthy reader, so only the paused one falls behind.
        assert_eq!(healthy.message().await.unwrap().data, body(i));
    }
    for i in 0..N {
        let m = paused
            .message()
            .await
            .expect("paused subscriber's stream ended");
        assert!(
            m.data == body(i),
            "event {i} arrived damaged or out of order"
        );
    }
    assert_eq!(server.hub.metrics().dropped_subscribers(), 0);
    // Both go on with live events after the catch-up.
    server
        .hub
        .publish("p", Event::message("after"))
        .await
        .unwrap();
    assert_eq!(paused.message().await.unwrap().data, "after");
    assert_eq!(healthy.message().await.unwrap().data, "after");
    server.stop().await;
}

/// Events written by a flusher count as traffic: no heartbeat while they flow, one once the stream
/// has been idle for the interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_only_when_idle_while_a_flusher_writes() {
    let every = Duration::from_millis(800);
    let server = TestServer::start(Hub::builder().heartbeat(Some(every)).retry(None)).await;
    let mut reader = Reader::open(&client(), &server.url("/events/h"), None).await;
    wait_for_subscribers(&server, "h", 1).await;

    // 2.4 s of events every 100 ms: three heartbeat intervals, never idle for one.
    for i in 0..24 {
        server
            .hub
            .publish("h", Event::message(i.to_string()))
            .await
            .unwrap();
        match reader.next().await.unwrap() {
            Item::Message(m) => assert_eq!(m.data, i.to_string()),
            other => panic!("expected event {i}, got {other:?} while events were flowing"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Idle: a heartbeat comes after about one interval.
    let started = tokio::time::Instant::now();
    match reader.next().await.unwrap() {
        Item::Comment(_) => {}
        other => panic!("expected a heartbeat, got {other:?}"),
    }
    assert!(
        started.elapsed() >= every / 2,
        "heartbeat came too early: the flusher's writes were not counted"
    );
    server.stop().await;
}

/// Everything at once, to shake the hand-overs between flushers and tasks: a heartbeat every 20 ms
/// makes every task take its socket back (often while a flusher is writing it) and lend it again;
/// some readers pause long enough for partial writes; events come in bursts. Every subscriber must
/// still get every event exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_exactly_once_through_heartbeats_pauses_and_bursts() {
    let server = TestServer::start(
        Hub::builder()
            .heartbeat(Some(Duration::from_millis(20)))
            .queue_size(100_000)
            .retry(None),
    )
    .await;
    const SUBS: usize = 12;
    const EVENTS: usize = 3000;
    let mut readers = Vec::new();
    for _ in 0..SUBS {
        readers.push(Reader::open(&client(), &server.url("/events/s"), None).await);
    }
    wait_for_subscribers(&server, "s", SUBS).await;
    let padding = "p".repeat(2048);
    let tasks: Vec<_> = readers
        .into_iter()
        .enumerate()
        .map(|(k, mut reader)| {
            let padding = padding.clone();
            tokio::spawn(async move {
                for i in 0..EVENTS {
                    // A third of the readers pause now and then, long enough to fill buffers.
                    if k % 3 == 0 && i % 700 == 350 {
                        tokio::time::sleep(Duration::from_millis(150)).await;
                    }
                    let m = reader.message().await.expect("stream ended early");
                    assert_eq!(
                        m.data,
                        format!("{i} {padding}"),
                        "subscriber {k}: event {i} missing, repeated or out of order"
                    );
                }
            })
        })
        .collect();
    for i in 0..EVENTS {
        server
            .hub
            .publish("s", Event::message(format!("{i} {padding}")))
            .await
            .unwrap();
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(7)).await;
        }
    }
    for t in tasks {
        tokio::time::timeout(WAIT * 3, t)
            .await
            .expect("a subscriber stalled")
            .unwrap();
    }
    assert_eq!(server.hub.metrics().dropped_subscribers(), 0);
    server.stop().await;
}

/// Many channels with a few subscribers each share the flushers: every subscriber gets exactly its
/// channel's events, in order, and leaving unregisters everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_channels_share_the_flushers() {
    let server = TestServer::start(Hub::builder().retry(None)).await;
    const CHANNELS: usize = 60;
    const PER_CHANNEL: usize = 2;
    const EVENTS: usize = 30;
    let http = client();
    let mut readers = Vec::new();
    for c in 0..CHANNELS {
        for _ in 0..PER_CHANNEL {
            readers.push((
                c,
                Reader::open(&http, &server.url(&format!("/events/c{c}")), None).await,
            ));
        }
    }
    for c in 0..CHANNELS {
        wait_for_subscribers(&server, &format!("c{c}"), PER_CHANNEL).await;
    }
    for i in 0..EVENTS {
        for c in 0..CHANNELS {
            server
                .hub
                .publish(&format!("c{c}"), Event::message(format!("c{c} {i}")))
                .await
                .unwrap();
        }
    }
    for (c, reader) in &mut readers {
        for i in 0..EVENTS {
            assert_eq!(reader.message().await.unwrap().data, format!("c{c} {i}"));
        }
    }
    drop(readers);
    tokio::time::timeout(WAIT, async {
        while server
            .hub
            .channels()
            .await
            .unwrap()
            .iter()
            .any(|c| c.subscribers > 0)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every subscriber unregistered");
    server.stop().await;
}
