//! Three `sse-server` nodes on one real `redis-server`: cross-node delivery and replay, a node killed with
//! SIGKILL, Redis restarted, and ordering under concurrent publishers on different nodes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod cluster_support;
mod support;

use std::time::Duration;

use cluster_support::{Node, cluster, publish, redis_available, try_publish};
use sse_proto::Item;
use support::Reader;

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

fn position(id: &str) -> (u64, u64) {
    let (a, b) = id.split_once('-').expect("a Redis entry id");
    (a.parse().unwrap(), b.parse().unwrap())
}

async fn subscribe(node: &Node, channel: &str, last: Option<&str>) -> Reader {
    Reader::open(&client(), &node.url(&format!("/events/{channel}")), last).await
}

/// The next `n` messages as `(id, data)`.
async fn take(reader: &mut Reader, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = reader.message().await.expect("stream ended early");
        out.push((m.last_event_id.to_string(), m.data.to_string()));
    }
    out
}

/// Nothing but comments (heartbeats) for `wait`.
async fn assert_quiet(reader: &mut Reader, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match reader.next_within(left).await {
            Err(()) => return,
            Ok(Some(Item::Comment(_) | Item::Retry(_))) => {}
            Ok(other) => panic!("expected silence, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_on_one_node_reaches_every_node_once() {
    if !redis_available("cross-node delivery") {
        return;
    }
    let (_redis, nodes) = cluster(3).await;
    let c = client();
    let mut subs = Vec::new();
    for node in &nodes {
        subs.push(subscribe(node, "news", None).await);
    }
    let mut other = subscribe(&nodes[1], "sports", None).await;
    let mut published = Vec::new();
    for i in 0..12 {
        let node = &nodes[i % 3];
        let data = format!("e{i}");
        published.push((publish(&c, node, "news", &data).await, data));
    }
    for w in published.windows(2) {
        assert!(position(&w[0].0) < position(&w[1].0), "ids are ordered");
    }
    for sub in &mut subs {
        assert_eq!(take(sub, 12).await, published);
        assert_quiet(sub, Duration::from_millis(300)).await;
    }
    // Channel isolation holds across nodes.
    assert_quiet(&mut other, Duration::from_millis(200)).await;
    let id = publish(&c, &nodes[2], "sports", "goal").await;
    assert_eq!(take(&mut other, 1).await, vec![(id, "goal".to_owned())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_on_any_node() {
    if !redis_available("cross-node replay") {
        return;
    }
    let (_redis, nodes) = cluster(3).await;
    let c = client();
    let mut published = Vec::new();
    for i in 0..8 {
        let data = format!("r{i}");
        published.push((publish(&c, &nodes[0], "log", &data).await, data));
    }
    // Resume on another node from the 3rd event: the rest, then live events from a third node.
    let mut sub = subscribe(&nodes[1], "log", Some(&published[2].0)).await;
    assert_eq!(take(&mut sub, 5).await, published[3..]);
    let live = publish(&c, &nodes[2], "log", "live").await;
    assert_eq!(take(&mut sub, 1).await, vec![(live.clone(), "live".into())]);
    assert_quiet(&mut sub, Duration::from_millis(300)).await;

    // A publisher's own id is kept and can be resumed from on another node.
    let (status, json) =
        try_publish(&c, &nodes[0], "log", &[("data", "mine"), ("id", "order-7")]).await;
    assert_eq!((status, json["id"].as_str()), (200, Some("order-7")));
    let after = publish(&c, &nodes[0], "log", "after-mine").await;
    let mut sub = subscribe(&nodes[2], "log", Some("order-7")).await;
    assert_eq!(take(&mut sub, 1).await, vec![(after, "after-mine".into())]);

    // Ids shaped like Redis entry ids belong to Redis.
    let (status, json) = try_publish(&c, &nodes[0], "log", &[("data", "x"), ("id", "5-5")]).await;
    assert_eq!(status, 400, "{json}");

    // An unknown id gets the in-band reset, then the whole window.
    let mut sub = subscribe(&nodes[2], "log", Some("never-issued")).await;
    let first = sub.message().await.unwrap();
    assert_eq!(first.event_type, "sse-reset");
    assert!(first.data.contains("\"unknown\""), "{}", first.data);
    let replayed = take(&mut sub, 11).await;
    assert_eq!(replayed[0], published[0]);
    assert_eq!(replayed[8], (live, "live".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_killed_node_resume_on_another_without_loss() {
    if !redis_available("node kill") {
        return;
    }
    let (_redis, mut nodes) = cluster(3).await;
    let c = client();
    let mut sub = subscribe(&nodes[0], "orders", None).await;

    // A publisher on node 1 keeps going while node 0 dies.
    let publisher = {
        let c = c.clone();
        let node1 = nodes.remove(1);
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..40 {
                ids.push((
                    publish(&c, &node1, "orders", &format!("o{i}")).await,
                    format!("o{i}"),
                ));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ids, node1)
        })
    };
    let mut seen = take(&mut sub, 5).await;
    nodes[0].kill().await;
    // Whatever was still buffered, then the stream ends.
    while let Some(m) = sub.message().await {
        seen.push((m.last_event_id.to_string(), m.data.to_string()));
    }
    let last = seen.last().unwrap().0.clone();
    let mut resumed = subscribe(&nodes[1], "orders", Some(&last)).await;
    let (published, _node1) = tokio::time::timeout(Duration::from_secs(30), publisher)
        .await
        .expect("publisher stalled")
        .unwrap();
    let rest = take(&mut resumed, published.len() - seen.len()).await;
    seen.extend(rest);
    assert_eq!(seen, published, "no gap, no duplicate, same order");
    assert_quiet(&mut resumed, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_fails_publishes_with_503_and_subscribers_resume() {
    if !redis_available("redis restart") {
        return;
    }
    let (mut redis, nodes) = cluster(3).await;
    let c = client();
    let mut a = subscribe(&nodes[0], "alerts", None).await;
    let mut b = subscribe(&nodes[1], "alerts", None).await;
    let before = publish(&c, &nodes[2], "alerts", "before").await;
    for sub in [&mut a, &mut b] {
        assert_eq!(take(sub, 1).await, vec![(before.clone(), "before".into())]);
    }

    redis.kill().await;
    // Refused, with a JSON error that says why; never acknowledged.
    let (status, json) = try_publish(&c, &nodes[2], "alerts", &[("data", "lost?")]).await;
    assert_eq!(status, 503, "{json}");
    let msg = json["error"].as_str().unwrap();
    assert!(
        msg.contains("Redis") && msg.contains("unavailable"),
        "{msg}"
    );
    // Subscribers keep their connections and get heartbeats meanwhile.
    for sub in [&mut a, &mut b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match sub
                .next_within(left)
                .await
                .expect("no heartbeat during the outage")
            {
                Some(Item::Comment(_)) => break,
                Some(Item::Retry(_)) => {}
                other => panic!("expected a heartbeat, got {other:?}"),
            }
        }
    }

    redis.restart().await;
    // Nodes reconnect with backoff: publishing works again within a bounded time.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        let (status, json) = try_publish(&c, &nodes[2], "alerts", &[("data", "after")]).await;
        if status == 200 {
            break json["id"].as_str().unwrap().to_owned();
        }
        assert_eq!(status, 503, "{json}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishing did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for sub in [&mut a, &mut b] {
        let m = sub.message().await.expect("stream survived the outage");
        assert_eq!(
            (m.last_event_id.as_str(), m.data.as_str()),
            (after.as_str(), "after")
        );
        assert_quiet(sub, Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_on_different_nodes_yield_one_order_everywhere() {
    if !redis_available("ordering") {
        return;
    }
    let (_redis, nodes) = cluster(3).await;
    let nodes = std::sync::Arc::new(nodes);
    let mut subs = Vec::new();
    for node in nodes.iter() {
        subs.push(subscribe(node, "ticks", None).await);
    }
    const EACH: usize = 30;
    let mut tasks = Vec::new();
    for p in 0..3 {
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut ids = Vec::new();
            for i in 0..EACH {
                ids.push(publish(&c, &nodes[p], "ticks", &format!("p{p}-{i}")).await);
            }
            ids
        }));
    }
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    let mut streams = Vec::new();
    for sub in &mut subs {
        streams.push(take(sub, 3 * EACH).await);
    }
    assert_eq!(streams[0], streams[1]);
    assert_eq!(streams[0], streams[2]);
    let ids: Vec<&String> = streams[0].iter().map(|(id, _)| id).collect();
    for w in ids.windows(2) {
        assert!(position(w[0]) < position(w[1]), "delivered in id order");
    }
    let mut sorted: Vec<String> = acknowledged;
    sorted.sort_by_key(|id| position(id));
    assert_eq!(
        ids,
        sorted.iter().collect::<Vec<_>>(),
        "every acknowledged event, once"
    );
    // Each publisher's events keep their publish order.
    for p in 0..3 {
        let mine: Vec<&str> = streams[0]
            .iter()
            .map(|(_, d)| d.as_str())
            .filter(|d| d.starts_with(&format!("p{p}-")))
            .collect();
        let want: Vec<String> = (0..EACH).map(|i| format!("p{p}-{i}")).collect();
        assert_eq!(mine, want);
    }
    for sub in &mut subs {
        assert_quiet(sub, Duration::from_millis(300)).await;
    }
}

/// A node whose read loop falls behind by more than the stream keeps must not skip the trimmed events
/// silently: its streams of that channel end, and a client resuming from its last id is told through an
/// `expired` reset. The lag is made exact with one Redis transaction that appends 300 entries to a stream
/// capped at 100: the node's blocked XREAD is served only after the whole transaction (and the trim).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_reads_too_late_ends_its_streams_instead_of_skipping_events() {
    if !redis_available("lagging read loop") {
        return;
    }
    let (redis, nodes) = cluster(1).await;
    let node = &nodes[0];
    let c = client();
    let first = publish(&c, node, "lag", "before").await;
    let mut sub = subscribe(node, "lag", Some(&first)).await;
    assert_quiet(&mut sub, Duration::from_millis(300)).await;

    let conn_client = redis::Client::open(redis.url()).unwrap();
    let mut conn = conn_client
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    pipe.atomic();
    for i in 0..300 {
        pipe.cmd("XADD")
            .arg("sse:lag")
            .arg("MAXLEN")
            .arg("=")
            .arg(100)
            .arg("*")
            .arg("t")
            .arg(format!("data: burst {i}\n\n"))
            .ignore();
    }
    let () = pipe.query_async(&mut conn).await.unwrap();

    // The stream ends without delivering any of the 100 survivors past the hole.
    loop {
        match sub.next_within(Duration::from_secs(5)).await {
            Ok(None) => break,
            Ok(Some(Item::Comment(_) | Item::Retry(_))) => {}
            Ok(Some(Item::Message(m))) => panic!("delivered {:?} across a gap", m.data),
            Err(()) => panic!("the stream stayed open across a gap of trimmed events"),
        }
    }
    // Resuming from the last event it saw, the client learns that events were lost, then gets the rest.
    let mut again = subscribe(node, "lag", Some(&first)).await;
    let reset = again.message().await.expect("a reset event");
    assert_eq!(reset.event_type, "sse-reset");
    let data: serde_json::Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(data["reason"], "expired", "{data}");
    let rest = take(&mut again, 100).await;
    assert_eq!(rest[0].1, "burst 200");
    assert_eq!(rest[99].1, "burst 299");
}
