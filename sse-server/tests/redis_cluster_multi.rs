//! One multi-channel stream (`GET /events?channel=a&channel=room/*`) over a real Redis Cluster (3
//! primaries + 3 replicas): followed channels in several buckets (several sequencers), publishes on
//! every node, and a reconnect on another node with the stream's vector `Last-Event-ID`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod cluster_support;
#[path = "support/redis_cluster.rs"]
mod redis_cluster;
mod support;

use std::collections::{BTreeMap, BTreeSet};

use cluster_support::{Node, publish};
use redis_cluster::{RedisCluster, bucket, cluster_tools_available, read_until};
use support::Reader;

/// Each data once, only followed channels, and each channel's events in publish order (data
/// `<channel>|<j>` with `j` increasing).
fn assert_once_per_channel_order(got: &[(String, String)], followed: &[String]) {
    let mut seen = BTreeSet::new();
    let mut last: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, data) in got {
        assert!(seen.insert(data), "{data} ({id}) delivered twice");
        let (ch, j) = data.split_once('|').unwrap();
        assert!(followed.iter().any(|f| f == ch), "{data}: not followed");
        let j: usize = j.parse().unwrap();
        if let Some(prev) = last.insert(ch, j) {
            assert!(prev < j, "{ch}: {prev} then {j}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_channel_stream_over_buckets_gets_each_event_once_and_resumes_on_another_node() {
    if !cluster_tools_available("cluster multi-channel stream") {
        return;
    }
    let cluster = RedisCluster::start().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start(&cluster.url()).await);
    }
    let rooms: Vec<String> = (0..4).map(|i| format!("room/{i}")).collect();
    let mut followed = vec!["a".to_owned()];
    followed.extend(rooms.iter().cloned());
    let buckets: BTreeSet<usize> = followed.iter().map(|c| bucket(c)).collect();
    assert!(
        buckets.len() >= 3,
        "followed channels in buckets {buckets:?}"
    );
    let mut all = followed.clone();
    all.push("b".to_owned());
    let c = reqwest::Client::new();
    let path = "/events?channel=a&channel=room/*";
    let mut first = Reader::open(&c, &nodes[0].url(path), None).await;
    let publish_round = async |from: usize, to: usize| {
        let mut want = BTreeSet::new();
        for j in from..to {
            for (k, ch) in all.iter().enumerate() {
                let data = format!("{ch}|{j}");
                publish(&c, &nodes[(j + k) % 3], ch, &data).await;
                if ch != "b" {
                    want.insert(data);
                }
            }
        }
        want
    };
    let want = publish_round(0, 8).await;
    let got = read_until(&mut first, &want).await;
    assert_eq!(got.len(), want.len(), "only the followed events");
    assert_once_per_channel_order(&got, &followed);

    // Reconnect on another node with the id of an event in the middle: exactly what came after it,
    // then what is published from then on.
    let cut = got.len() / 2;
    let mut resumed = Reader::open(&c, &nodes[1].url(path), Some(&got[cut].0)).await;
    let mut want: BTreeSet<String> = got[cut + 1..].iter().map(|(_, d)| d.clone()).collect();
    want.extend(publish_round(8, 12).await);
    let again = read_until(&mut resumed, &want).await;
    assert_once_per_channel_order(&again, &followed);
    let got_set: BTreeSet<String> = again.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(got_set, want, "after {}: exactly the rest", got[cut].0);
    assert_eq!(
        again.len(),
        want.len(),
        "nothing twice, nothing before the id"
    );
}
