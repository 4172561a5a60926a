//! What a resuming subscriber costs the hub's heap, measured with a counting allocator (issue 15's
//! reconnect storm: memory back near the idle figure once the replays are out). Subscribers resuming
//! `BACK` events back against subscribers that resume nothing; `--nocapture` prints the figures. The
//! server's RSS during and after a storm is `cargo xtask bench fanout --scenarios storm`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests: panics report

use std::alloc::System;

use futures_util::{FutureExt, StreamExt};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SUBSCRIBERS: usize = 200;
const BACK: usize = 100;
/// Payload of each stored event: far more than a handle to shared bytes, so a copy per subscriber
/// would show.
const PAYLOAD: usize = 512;

/// The heap kept per subscriber over `SUBSCRIBERS` subscribers held at once: right after
/// subscribing, and after each has yielded `drain` items.
async fn heap_per_subscriber(
    hub: &sse_server::Hub,
    last_event_id: Option<&str>,
    drain: usize,
) -> (usize, usize) {
    let _warm = hub.subscribe("news", last_event_id).await.unwrap();
    let region = Region::new(GLOBAL);
    let mut held = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        held.push(hub.subscribe("news", last_event_id).await.unwrap());
    }
    let subscribed = kept(&region);
    for sub in &mut held {
        for _ in 0..drain {
            // The replay is ready at once: no waiting.
            let bytes = sub
                .next()
                .now_or_never()
                .flatten()
                .expect("a replayed event");
            assert!(bytes.len() > PAYLOAD);
        }
    }
    (subscribed, kept(&region))
}

#[tokio::test(flavor = "current_thread")]
async fn a_replay_shares_the_stored_bytes_and_is_released_once_sent() {
    let hub = sse_server::Hub::builder().replay_events(1_000).build();
    let payload = "x".repeat(PAYLOAD);
    let first = hub
        .publish("news", sse_proto::Event::message(payload.clone()))
        .await
        .unwrap();
    for _ in 0..BACK {
        hub.publish("news", sse_proto::Event::message(payload.clone()))
            .await
            .unwrap();
    }
    let (plain, _) = heap_per_subscriber(&hub, None, 0).await;
    let (replaying, replayed) = heap_per_subscriber(&hub, Some(first.as_str()), BACK).await;
    println!(
        "heap per subscriber: no resume {plain} B; resuming {BACK} events back {replaying} B before its replay is read, {replayed} B after"
    );
    // Until it is read, a replay is one handle per event to the bytes the store keeps (a `Bytes`,
    // 32 B), not a copy of each event's 500-odd bytes.
    let per_event = replaying.saturating_sub(plain) / BACK;
    assert!(
        per_event <= 40,
        "a pending replay keeps {per_event} B per event: the stored bytes are copied, not shared"
    );
    // Once read, nothing of it stays (it used to keep its queue: 4 KiB per subscriber).
    assert!(
        replayed <= plain + 64,
        "a subscriber whose replay is out keeps {replayed} B, one that resumed nothing {plain} B"
    );
}

/// Bytes allocated and not freed since `region` began, per subscriber.
fn kept(region: &Region<'_, System>) -> usize {
    let stats = region.change();
    stats
        .bytes_allocated
        .saturating_sub(stats.bytes_deallocated)
        / SUBSCRIBERS
}
