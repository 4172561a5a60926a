//! `rediss+cluster://` and `rediss+sentinel://` against real TLS-only servers: a Redis Cluster of 3
//! primaries and 3 replicas (`--tls-cluster yes`, `--tls-replication yes`), and a Sentinel set whose
//! servers and sentinels speak only TLS. The `sse-server` binary trusts the test certificate through
//! `SSL_CERT_FILE`; without it the store must not deliver anything.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod failover_support;
#[path = "support/redis_cluster.rs"]
mod redis_cluster;
mod support;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use failover_support::{Node, SentinelSet, fixture, try_publish};
use redis_cluster::{RedisCluster, bucket, cluster_tools_available, position};
use sse_server::{RedisStore, ReplayStore};
use support::Reader;
use tokio::io::{AsyncBufReadExt, BufReader};

fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// `n` channels whose buckets sit on all three primaries.
async fn spread_channels(cluster: &RedisCluster, n: usize) -> Vec<String> {
    let mut chosen = Vec::new();
    let mut owners = BTreeSet::new();
    for i in 0..1000 {
        let name = format!("tls/{i}");
        let owner = cluster
            .owner(cluster.slot(&bucket(&name).to_string()).await)
            .await;
        if owners.len() < 3 && owners.contains(&owner) {
            continue;
        }
        owners.insert(owner);
        chosen.push(name);
        if chosen.len() == n {
            break;
        }
    }
    assert_eq!(owners.len(), 3, "channels on {owners:?}");
    chosen
}

/// The next message within 20 s (heartbeats skipped); panics on `sse-reset` or an ended stream.
async fn message(reader: &mut Reader) -> (String, String) {
    let m = tokio::time::timeout(Duration::from_secs(20), reader.message())
        .await
        .expect("no message within 20 s")
        .expect("stream ended");
    assert_ne!(m.event_type, "sse-reset", "unexpected reset: {}", m.data);
    (m.last_event_id.into(), m.data.into())
}

/// Publishes until a 200 (503 while the store cannot reach a primary, within 60 s): the id.
async fn publish_until_ok(c: &reqwest::Client, node: &Node, channel: &str, data: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, json) = try_publish(c, node, channel, data).await;
        if status == 200 {
            return json["id"].as_str().unwrap().to_owned();
        }
        assert_eq!(status, 503, "{json}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishing never succeeded: {json}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An empty CA file: with it as `SSL_CERT_FILE` nothing is trusted.
fn no_ca() -> tempfile::NamedTempFile {
    tempfile::NamedTempFile::new().unwrap()
}

/// `sse-server --redis URL` trusting only `ca_file`: `Err(stderr)` when it exits without listening
/// (refused to start), else publishing on it must answer 503 (never 200).
async fn assert_untrusted_is_refused(url: &str, ca_file: &str) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--redis", url])
        .args(["--publish-token", failover_support::TOKEN, "--no-demo"])
        .env("RUST_LOG", "warn")
        .env("SSL_CERT_FILE", ca_file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = Vec::new();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("sse-server listening on ") {
                return Some(rest.trim_end_matches('/').to_owned());
            }
            said.push(line);
        }
        None
    })
    .await
    .expect("sse-server neither listened nor exited");
    let Some(base) = base else {
        let status = child.wait().await.unwrap();
        assert!(!status.success(), "exited 0 with an untrusted CA: {said:?}");
        return;
    };
    let node_addr = base.trim_start_matches("http://").to_owned();
    let c = client();
    let resp = c
        .post(format!("http://{node_addr}/events/untrusted"))
        .bearer_auth(failover_support::TOKEN)
        .form(&[("data", "refused")])
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503, "{:?}", resp.text().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_delivers_every_event_once_in_order_and_refuses_an_untrusted_ca() {
    if !cluster_tools_available("rediss+cluster") {
        return;
    }
    let cluster = RedisCluster::start_tls().await;
    let url = cluster.url();
    assert!(url.starts_with("rediss+cluster://"), "{url}");
    let ca = fixture("test-cert.pem");
    let env = [("SSL_CERT_FILE", ca.as_str())];
    let publisher = Node::start(&url, &[], &env).await;
    let subscriber = Node::start(&url, &[], &env).await;
    let channels = spread_channels(&cluster, 4).await;
    let c = client();
    let mut readers = Vec::new();
    for ch in &channels {
        let r = Reader::open(&c, &subscriber.url(&format!("/events/{ch}")), None).await;
        readers.push(r);
    }
    const PER: usize = 8;
    let mut published = vec![Vec::new(); channels.len()];
    for j in 0..PER {
        for (i, ch) in channels.iter().enumerate() {
            let data = format!("{ch}#{j}");
            let id = publish_until_ok(&c, &publisher, ch, &data).await;
            published[i].push((id, data));
        }
    }
    for (i, reader) in readers.iter_mut().enumerate() {
        let mut got = Vec::new();
        for _ in 0..PER {
            got.push(message(reader).await);
        }
        assert_eq!(
            got, published[i],
            "{}: each event once, in order",
            channels[i]
        );
        for w in got.windows(2) {
            assert!(position(&w[0].0) < position(&w[1].0), "{w:?}");
        }
    }
    // Resuming over TLS on the publishing node: exactly the rest.
    let cut = &published[0][2].0;
    let url0 = publisher.url(&format!("/events/{}", channels[0]));
    let mut resumed = Reader::open(&c, &url0, Some(cut)).await;
    for want in &published[0][3..] {
        assert_eq!(&message(&mut resumed).await, want);
    }

    let empty = no_ca();
    assert_untrusted_is_refused(&url, &empty.path().display().to_string()).await;

    // The library with `tls_root_ca`: the listing (every primary) and replay over TLS; without the
    // CA (the system roots) an append fails.
    let pem = std::fs::read(&ca).unwrap();
    let store = RedisStore::builder(url.clone())
        .tls_root_ca(pem)
        .build()
        .unwrap();
    let listed: BTreeSet<String> = store
        .channels()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(
        listed,
        channels.iter().cloned().collect(),
        "every shard listed"
    );
    let e = store
        .append(&channels[1], sse_proto::Event::message("library"))
        .await
        .unwrap();
    let r = store
        .replay(&channels[1], &published[1][PER - 1].0)
        .await
        .unwrap();
    let ids: Vec<&str> = r.events.iter().map(|e| &*e.id).collect();
    assert_eq!(ids, [&*e.id]);
    let system = RedisStore::builder(url).build().unwrap();
    assert!(
        system
            .append(&channels[1], sse_proto::Event::message("untrusted"))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_sentinel_set_delivers_and_the_feed_follows_a_primary_kill() {
    if !cluster_tools_available("rediss+sentinel") {
        return;
    }
    let mut set = SentinelSet::start_tls().await;
    let url = set.url();
    assert!(url.starts_with("rediss+sentinel://"), "{url}");
    let ca = fixture("test-cert.pem");
    let env = [("SSL_CERT_FILE", ca.as_str())];
    let publisher = Node::start(&url, &[], &env).await;
    let subscriber = Node::start(&url, &[], &env).await;
    let c = client();
    let mut sub = Reader::open(&c, &subscriber.url("/events/orders"), None).await;
    let before = publish_until_ok(&c, &publisher, "orders", "before").await;
    assert_eq!(message(&mut sub).await, (before.clone(), "before".into()));

    set.kill_primary().await;
    set.wait_promoted().await;
    // Attempts answered 503 during the failover may still appear (documented); each once.
    let after = publish_until_ok(&c, &publisher, "orders", "after").await;
    let mut last = position(&before);
    loop {
        let (id, data) = message(&mut sub).await;
        assert_eq!(data, "after", "{id}: only the attempts after the kill");
        assert!(position(&id) > last, "{id} out of order");
        last = position(&id);
        if id == after {
            break;
        }
    }
    let empty = no_ca();
    assert_untrusted_is_refused(&url, &empty.path().display().to_string()).await;
}
