//! What a multi-channel subscriber costs the hub's heap, measured with a counting allocator (issue
//! 14: a subscriber on 64 channels at most twice a one-channel subscriber). Subscribers on their own
//! set (their own channel plus 63 shared ones, so every one makes its own composite) against
//! subscribers on one channel each; `--nocapture` prints the figures. The server's RSS per
//! subscriber, connection included, is `cargo xtask bench fanout --scenarios multi`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // tests: panics report

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SUBSCRIBERS: usize = 200;
const CHANNELS: usize = 64;

/// The heap `subscribe(i)` keeps per subscriber, over `SUBSCRIBERS` subscribers held at once.
async fn heap_per_subscriber<F, Fut>(subscribe: F) -> usize
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = sse_server::Subscription>,
{
    // A warm-up subscriber makes what every later one shares (runtime, shared channels).
    let _warm = subscribe(SUBSCRIBERS).await;
    let region = Region::new(GLOBAL);
    let mut held = Vec::with_capacity(SUBSCRIBERS);
    for i in 0..SUBSCRIBERS {
        held.push(subscribe(i).await);
    }
    let stats = region.change();
    let kept = stats
        .bytes_allocated
        .saturating_sub(stats.bytes_deallocated);
    let inline = std::mem::size_of::<sse_server::Subscription>() * SUBSCRIBERS;
    (kept + inline) / SUBSCRIBERS
}

#[tokio::test(flavor = "current_thread")]
async fn a_subscriber_on_64_channels_costs_at_most_twice_one_on_one() {
    let hub = sse_server::Hub::builder().max_channels(1_000_000).build();
    let one = heap_per_subscriber(|i| {
        let hub = hub.clone();
        async move { hub.subscribe(&format!("own{i}"), None).await.unwrap() }
    })
    .await;
    let shared: Vec<String> = (1..CHANNELS).map(|c| format!("s{c}")).collect();
    let many = heap_per_subscriber(|i| {
        let hub = hub.clone();
        let mut entries = vec![format!("own-set{i}")];
        entries.extend(shared.iter().cloned());
        async move { hub.subscribe_many(&entries, None).await.unwrap() }
    })
    .await;
    println!("heap per subscriber: 1 channel {one} B, {CHANNELS} channels (own set) {many} B");
    // The hub's part of the 2x target (the connection's own few KiB come on top of both): each
    // entry past the first costs a few pointers (its name is the table's, its follower slot, its
    // place in the composite's key), not strings and lists of its own. Before the entries shared
    // names and the index held only patterns, it was 94 B per entry.
    let per_entry = many.saturating_sub(one) / (CHANNELS - 1);
    assert!(
        per_entry <= 80,
        "a subscriber on {CHANNELS} channels keeps {many} B, {per_entry} B per entry past the {one} B of one on one channel"
    );
}
