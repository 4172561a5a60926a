//! The Redis store on a real Redis Cluster (3 primaries + 3 replicas on loopback): the key layout
//! (buckets as hash tags, spread over shards), per-bucket sequencers, three `sse-server` nodes
//! publishing and delivering every event of every channel exactly once in order, resuming across
//! nodes, and a slot migration in the middle of a stream.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod cluster_support;
#[path = "support/redis_cluster.rs"]
mod redis_cluster;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use cluster_support::{Node, publish, try_publish};
use redis_cluster::{RedisCluster, bucket, cluster_tools_available, position, read_until};
use sse_server::{RedisStore, ReplayStore};
use support::Reader;

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// `n` channels whose buckets sit on at least `shards` different primaries.
async fn spread_channels(cluster: &RedisCluster, n: usize, shards: usize) -> Vec<String> {
    let mut chosen = Vec::new();
    let mut owners = BTreeSet::new();
    for i in 0.. {
        let name = format!("room/{i}");
        let owner = cluster
            .owner(cluster.slot(&bucket(&name).to_string()).await)
            .await;
        if owners.len() < shards && owners.contains(&owner) {
            continue;
        }
        owners.insert(owner);
        chosen.push(name);
        if chosen.len() == n {
            break;
        }
    }
    assert!(owners.len() >= shards, "channels on {owners:?}");
    chosen
}

/// Each data at most once, ids strictly increasing (the bucket's sequencer order).
fn assert_once_in_order(got: &[(String, String)], what: &str) {
    let mut seen = BTreeSet::new();
    for (_, data) in got {
        assert!(seen.insert(data), "{what}: {data} delivered twice");
    }
    for w in got.windows(2) {
        assert!(
            position(&w[0].0) < position(&w[1].0),
            "{what}: {w:?} out of order"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_carry_the_bucket_hash_tag_and_buckets_spread_over_shards() {
    if !cluster_tools_available("cluster key layout") {
        return;
    }
    let cluster = RedisCluster::start().await;
    let store = RedisStore::builder(cluster.url()).build().unwrap();
    assert_eq!(store.sequencers(), 16);
    let channels: Vec<String> = (0..24).map(|i| format!("news/{i}")).collect();
    let mut last_by_bucket = BTreeMap::new();
    for c in &channels {
        assert_eq!(store.sequencer(c), bucket(c));
        let e = store
            .append(c, sse_proto::Event::message(c.clone()))
            .await
            .unwrap();
        last_by_bucket.insert(bucket(c), e.position);
    }
    for (b, last) in &last_by_bucket {
        assert_eq!(
            store.issued_by(*b).await.unwrap(),
            Some(*last),
            "bucket {b}"
        );
    }
    // Every stream key is `sse:{bucket}channel`, all keys of a bucket on the primary owning its slot,
    // and the channels are spread over more than one primary.
    let mut holders = BTreeSet::new();
    let mut found = BTreeSet::new();
    for port in cluster.primaries().await {
        for key in cluster.keys(port, "sse:*").await {
            let key = String::from_utf8(key).unwrap();
            let rest = key
                .strip_prefix("sse:{")
                .expect("hash tag after the prefix");
            let (tag, name) = rest.split_once('}').unwrap();
            let b: usize = tag.parse().unwrap();
            assert_eq!(cluster.owner(cluster.slot(tag).await).await, port);
            if !name.starts_with('\0') {
                assert_eq!(b, bucket(name), "{key}");
                found.insert(name.to_owned());
                holders.insert(port);
            }
        }
    }
    assert_eq!(found, channels.iter().cloned().collect::<BTreeSet<_>>());
    assert!(holders.len() > 1, "all channels on {holders:?}");
    assert_eq!(store.channels().await.unwrap().len(), channels.len());

    // A broadcast over channels of several buckets: one id everywhere, stored once per channel.
    let targets = vec![
        channels[0].clone(),
        channels[1].clone(),
        channels[2].clone(),
    ];
    assert!(
        targets
            .iter()
            .map(|c| bucket(c))
            .collect::<BTreeSet<_>>()
            .len()
            > 1
    );
    let b = store
        .append_all(&targets, sse_proto::Event::message("all"))
        .await
        .unwrap();
    for c in &targets {
        let r = store.replay(c, "0-0").await.unwrap();
        let ids: Vec<&str> = r.events.iter().map(|e| &*e.id).collect();
        assert_eq!(
            ids.iter().filter(|id| **id == &*b.id).count(),
            1,
            "{c}: {ids:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_every_event_of_every_channel_once_in_order() {
    if !cluster_tools_available("cluster delivery") {
        return;
    }
    let cluster = RedisCluster::start().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start(&cluster.url()).await);
    }
    let channels = spread_channels(&cluster, 5, 3).await;
    let c = client();
    let mut readers = Vec::new();
    for ch in &channels {
        for node in &nodes {
            let url = node.url(&format!("/events/{ch}"));
            readers.push((ch.clone(), Reader::open(&c, &url, None).await));
        }
    }
    const PER: usize = 12;
    let nodes = Arc::new(nodes);
    let mut tasks = Vec::new();
    for p in 0..3 {
        let (nodes, channels, c) = (nodes.clone(), channels.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for j in 0..PER {
                for ch in &channels {
                    let data = format!("p{p}-{j}");
                    let id = publish(&c, &nodes[p], ch, &data).await;
                    acked.push((ch.clone(), id, data));
                }
            }
            acked
        }));
    }
    let mut published: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for t in tasks {
        for (ch, id, data) in t.await.unwrap() {
            published.entry(ch).or_default().push((id, data));
        }
    }
    for (ch, reader) in &mut readers {
        let want: BTreeSet<String> = published[ch.as_str()].iter().map(|e| e.1.clone()).collect();
        let got = read_until(reader, &want).await;
        assert_once_in_order(&got, ch);
        assert_eq!(got.len(), 3 * PER, "{ch}: only what was published");
        let mut sorted = published[ch.as_str()].clone();
        sorted.sort_by_key(|(id, _)| position(id));
        assert_eq!(
            got, sorted,
            "{ch}: the ids the publishers were given, in their order"
        );
        for p in 0..3 {
            let mine: Vec<usize> = got
                .iter()
                .filter_map(|(_, d)| d.strip_prefix(&format!("p{p}-")))
                .map(|j| j.parse().unwrap())
                .collect();
            assert_eq!(
                mine,
                (0..PER).collect::<Vec<_>>(),
                "{ch}: publisher {p}'s order"
            );
        }
    }
    // Resuming on another node with Last-Event-ID: exactly the rest, from any node.
    for (i, ch) in channels.iter().enumerate() {
        let mut order = published[ch.as_str()].clone();
        order.sort_by_key(|(id, _)| position(id));
        let cut = 5 + i;
        let url = nodes[(i + 1) % 3].url(&format!("/events/{ch}"));
        let mut r = Reader::open(&c, &url, Some(&order[cut].0)).await;
        let want: BTreeSet<String> = order[cut + 1..].iter().map(|e| e.1.clone()).collect();
        let got = read_until(&mut r, &want).await;
        assert_eq!(
            got,
            order[cut + 1..].to_vec(),
            "{ch}: resumed after {}",
            order[cut].0
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migration_mid_stream_loses_nothing() {
    if !cluster_tools_available("cluster slot migration") {
        return;
    }
    let cluster = RedisCluster::start().await;
    let nodes = Arc::new(vec![
        Node::start(&cluster.url()).await,
        Node::start(&cluster.url()).await,
    ]);
    let ch = "moving/1";
    let slot = cluster.slot(&bucket(ch).to_string()).await;
    let from = cluster.owner(slot).await;
    let to = *cluster
        .primaries()
        .await
        .iter()
        .find(|p| **p != from)
        .unwrap();
    let c = client();
    let mut readers = Vec::new();
    for node in nodes.iter() {
        readers.push(Reader::open(&c, &node.url(&format!("/events/{ch}")), None).await);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (nodes, c, stop) = (nodes.clone(), c.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut acked, mut refused) = (Vec::new(), 0);
            let mut j = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) || j < 10 {
                let data = format!("e{j}");
                let (status, json) = try_publish(&c, &nodes[j % 2], ch, &[("data", &data)]).await;
                match status {
                    200 => acked.push(json["id"].as_str().unwrap().to_owned() + " " + &data),
                    503 => {
                        eprintln!("refused: {json}");
                        refused += 1
                    }
                    other => panic!("publish answered {other}: {json}"),
                }
                j += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (acked, refused, j)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster
        .migrate_slot(slot, to, Duration::from_millis(300))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (acked, refused, total) = publisher.await.unwrap();
    assert_eq!(cluster.owner(slot).await, to);
    // After the move, publishing works through every node.
    let after = publish(&c, &nodes[0], ch, "after").await;
    let want: BTreeSet<String> = acked
        .iter()
        .map(|a| a.split_once(' ').unwrap().1.to_owned())
        .chain(["after".to_owned()])
        .collect();
    for (i, r) in readers.iter_mut().enumerate() {
        let got = read_until(r, &want).await;
        assert_once_in_order(&got, &format!("reader {i}"));
        assert_eq!(got.last().unwrap().0, after);
    }
    eprintln!(
        "migration: {total} publishes, {} acknowledged, {refused} refused with 503",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pattern_watch_follows_every_bucket_each_in_its_sequencers_order() {
    if !cluster_tools_available("cluster pattern feed") {
        return;
    }
    let cluster = RedisCluster::start().await;
    let store = RedisStore::builder(cluster.url()).build().unwrap();
    let feed = store.live().expect("the redis store has a live feed");
    let delivered: Arc<std::sync::Mutex<Vec<(String, sse_server::Position)>>> = Arc::default();
    let sink = delivered.clone();
    feed.attach(Arc::new(move |channel: &str, item: sse_server::Live| {
        if let sse_server::Live::Event(e) = item {
            sink.lock().unwrap().push((channel.to_owned(), e.position));
        }
    }));
    let event = |s: &str| sse_proto::Event::message(s.to_owned());
    // Streams there before the watch, and streams created after it (announced per bucket).
    for i in 0..8 {
        store
            .append(&format!("room/{i}"), event("before"))
            .await
            .unwrap();
    }
    feed.watch_prefix("room/").await.unwrap();
    feed.watch("solo").await.unwrap();
    let mut want = BTreeSet::new();
    for round in 0..3 {
        for i in 0..16 {
            let ch = format!("room/{i}");
            let e = store
                .append(&ch, event(&format!("r{round}")))
                .await
                .unwrap();
            want.insert((ch, e.position));
        }
        let e = store.append("solo", event("s")).await.unwrap();
        want.insert(("solo".to_owned(), e.position));
        store
            .append("other/1", event("not followed"))
            .await
            .unwrap();
    }
    let buckets: BTreeSet<usize> = want.iter().map(|(c, _)| bucket(c)).collect();
    assert!(buckets.len() > 4, "channels in buckets {buckets:?}");
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let got = delivered.lock().unwrap().clone();
            if got.len() >= want.len() {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("delivered only {:?}", delivered.lock().unwrap()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_after = delivered.lock().unwrap().clone();
    assert_eq!(got_after.len(), got.len(), "more than was appended");
    let set: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(set.len(), got.len(), "an event delivered twice");
    assert_eq!(set, want, "exactly the events appended after the watches");
    for b in buckets {
        let order: Vec<_> = got.iter().filter(|(c, _)| bucket(c) == b).collect();
        assert!(
            order.windows(2).all(|w| w[0].1 < w[1].1),
            "bucket {b} out of its sequencer's order: {order:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_whose_keys_moved_is_read_from_the_importing_node_before_the_move_ends() {
    if !cluster_tools_available("cluster ASK in the live feed") {
        return;
    }
    let cluster = RedisCluster::start().await;
    let node = Node::start(&cluster.url()).await;
    let ch = "asked/1";
    let slot = cluster.slot(&bucket(ch).to_string()).await;
    let from = cluster.owner(slot).await;
    let to = *cluster
        .primaries()
        .await
        .iter()
        .find(|p| **p != from)
        .unwrap();
    let c = client();
    let mut reader = Reader::open(&c, &node.url(&format!("/events/{ch}")), None).await;
    let a = publish(&c, &node, ch, "a").await;
    let m = cluster.begin_migration(slot, to).await;
    cluster.move_keys(&m).await;
    // The keys are on `to`, the slot still belongs to `from` (which answers ASK).
    let b = publish(&c, &node, ch, "b").await;
    let want: BTreeSet<String> = ["a".to_owned(), "b".to_owned()].into();
    let got = read_until(&mut reader, &want).await;
    assert_eq!(
        cluster.owner(slot).await,
        from,
        "the move is still going on"
    );
    cluster.finish_migration(&m).await;
    let c_id = publish(&c, &node, ch, "c").await;
    let mut got2 = read_until(&mut reader, &["c".to_owned()].into()).await;
    let mut all = got;
    all.append(&mut got2);
    assert_eq!(
        all,
        [(a, "a".into()), (b, "b".into()), (c_id, "c".into())],
        "each once, in order"
    );
}
