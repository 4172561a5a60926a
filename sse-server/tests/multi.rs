//! Several channels and `prefix/*` patterns on one stream (`GET /events?channel=…`), over real
//! sockets: per-channel order, patterns following channels created later, a broadcast once, exact
//! resume by one `Last-Event-ID` (memory, durable and Redis stores: three nodes on one real
//! `redis-server`), the 400 answers, HTTP/2.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod cluster_support;
mod support;

use std::sync::Arc;

use sse_server::{DurableStore, Hub};
use support::{Reader, TOKEN, TestServer, client, publish};

/// `(id, type, data)` of the next `n` messages.
async fn take(reader: &mut Reader, n: usize) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = reader.message().await.expect("the stream ended early");
        out.push((
            m.last_event_id.to_string(),
            m.event_type.to_string(),
            m.data.to_string(),
        ));
    }
    out
}

fn data(got: &[(String, String, String)]) -> Vec<&str> {
    got.iter().map(|(_, _, d)| d.as_str()).collect()
}

async fn broadcast(server: &TestServer, data: &str) -> String {
    let resp = client()
        .post(server.url("/events"))
        .bearer_auth(TOKEN)
        .form(&[("data", data)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = resp.json().await.unwrap();
    json["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn two_channels_and_a_pattern_on_one_stream_keep_order_and_tell_their_channel() {
    let server = TestServer::start(Hub::builder()).await;
    let url = server.url("/events?channel=a&channel=b&channel=users/*&event-type=channel");
    let mut reader = Reader::open(&client(), &url, None).await;
    let plan = [
        ("a", "a1"),
        ("other", "no"),
        ("b", "b1"),
        ("users/1", "u1"),
        ("a", "a2"),
        ("users", "no"),
        ("users/2/x", "u2"),
        ("b", "b2"),
    ];
    for (channel, d) in plan {
        publish(&server, channel, d).await;
    }
    let got = take(&mut reader, 6).await;
    assert_eq!(data(&got), ["a1", "b1", "u1", "a2", "u2", "b2"]);
    let types: Vec<&str> = got.iter().map(|(_, t, _)| t.as_str()).collect();
    assert_eq!(types, ["a", "b", "users/1", "a", "users/2/x", "b"]);
    let ids: Vec<sse_server::Position> = got.iter().map(|(id, _, _)| id.parse().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids not in hub order: {ids:?}"
    );
    // Without the parameter, the bytes are the publisher's: no type.
    let mut plain = Reader::open(&client(), &server.url("/events?channel=a&channel=b"), None).await;
    publish(&server, "b", "b3").await;
    let m = plain.message().await.unwrap();
    assert_eq!((m.event_type.as_str(), m.data.as_str()), ("message", "b3"));
    server.stop().await;
}

#[tokio::test]
async fn event_type_channel_also_tags_a_single_channel_stream() {
    let server = TestServer::start(Hub::builder()).await;
    let url = server.url("/events/news?event-type=channel");
    let mut tagged = Reader::open(&client(), &url, None).await;
    let mut plain = Reader::open(&client(), &server.url("/events/news"), None).await;
    let id = publish(&server, "news", "x").await;
    assert_eq!(
        take(&mut tagged, 1).await,
        [(id.clone(), "news".into(), "x".into())]
    );
    assert_eq!(
        take(&mut plain, 1).await,
        [(id, "message".into(), "x".into())]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_pattern_receives_a_channel_created_after_it_connected() {
    let server = TestServer::start(Hub::builder()).await;
    let mut reader = Reader::open(&client(), &server.url("/events?channel=rooms/*"), None).await;
    assert!(server.hub.channels().await.unwrap().is_empty());
    publish(&server, "rooms/brand-new", "hello").await;
    publish(&server, "rooms/brand-new/deeper", "deeper").await;
    assert_eq!(data(&take(&mut reader, 2).await), ["hello", "deeper"]);
    server.stop().await;
}

#[tokio::test]
async fn a_broadcast_arrives_once_per_connection() {
    let server = TestServer::start(Hub::builder()).await;
    publish(&server, "a", "a0").await;
    publish(&server, "b", "b0").await;
    let mut reader = Reader::open(
        &client(),
        &server.url("/events?channel=a&channel=b&channel=c/*"),
        None,
    )
    .await;
    publish(&server, "c/1", "c0").await;
    let id = broadcast(&server, "all").await;
    publish(&server, "b", "after").await;
    let got = take(&mut reader, 3).await;
    assert_eq!(data(&got), ["c0", "all", "after"]);
    assert_eq!(got[1].0, id);
    // Resuming after the broadcast does not repeat it from any channel.
    let mut again = Reader::open(
        &client(),
        &server.url("/events?channel=a&channel=b&channel=c/*"),
        Some(&got[0].0),
    )
    .await;
    assert_eq!(data(&take(&mut again, 2).await), ["all", "after"]);
    server.stop().await;
}

/// Reads part of the stream, cuts, publishes interleaved on every followed channel, and resumes with
/// the last id seen: exactly the rest, in order, no reset.
async fn resume_is_exact(server: &TestServer) {
    let path = "/events?channel=x&channel=y&channel=z/*";
    for (i, channel) in ["x", "y", "z/1", "x", "nope"].iter().enumerate() {
        publish(server, channel, &format!("early{i}")).await;
    }
    let mut first = Reader::open(&client(), &server.url(path), None).await;
    publish(server, "y", "p0").await;
    publish(server, "z/2", "p1").await;
    publish(server, "x", "p2").await;
    let seen = take(&mut first, 2).await;
    assert_eq!(data(&seen), ["p0", "p1"]);
    drop(first);
    let mut expected = vec!["p2".to_owned()];
    for i in 0..12 {
        let channel = ["x", "z/3", "y", "nope", "z/1"][i % 5];
        publish(server, channel, &format!("q{i}")).await;
        if channel != "nope" {
            expected.push(format!("q{i}"));
        }
    }
    let last = &seen[1].0;
    let mut resumed = Reader::open(&client(), &server.url(path), Some(last)).await;
    let got = take(&mut resumed, expected.len()).await;
    assert!(got.iter().all(|(_, t, _)| t != "sse-reset"), "{got:?}");
    assert_eq!(data(&got), expected);
    // Nothing more: the next item is the live event published now.
    publish(server, "y", "live").await;
    assert_eq!(resumed.message().await.unwrap().data, "live");
}

#[tokio::test]
async fn reconnect_resumes_every_channel_exactly_in_memory() {
    let server = TestServer::start(Hub::builder()).await;
    resume_is_exact(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn reconnect_resumes_every_channel_exactly_with_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store = DurableStore::builder(dir.path()).open().unwrap();
    let server = TestServer::start(Hub::builder().store(Arc::new(store))).await;
    resume_is_exact(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn a_data_dir_resumes_every_channel_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = || async {
        let store = DurableStore::builder(dir.path()).open().unwrap();
        TestServer::start(Hub::builder().store(Arc::new(store))).await
    };
    let server = start().await;
    publish(&server, "x", "x0").await;
    let last = publish(&server, "y/1", "y0").await;
    publish(&server, "x", "x1").await;
    server.stop().await;
    let server = start().await;
    publish(&server, "y/2", "y1").await;
    publish(&server, "other", "no").await;
    // The browser's first connect carries the id in the query.
    let url = server.url(&format!("/events?channel=x&channel=y/*&lastEventId={last}"));
    let mut reader = Reader::open(&client(), &url, None).await;
    assert_eq!(data(&take(&mut reader, 2).await), ["x1", "y1"]);
    server.stop().await;
}

#[tokio::test]
async fn an_id_evicted_from_one_followed_channel_gets_sse_reset() {
    let hub = Hub::builder().replay_events(2);
    let server = TestServer::start(hub).await;
    let first = publish(&server, "a", "a0").await;
    for i in 1..4 {
        publish(&server, "b", &format!("b{i}")).await;
    }
    let mut reader = Reader::open(
        &client(),
        &server.url("/events?channel=a&channel=b"),
        Some(&first),
    )
    .await;
    let reset = reader.message().await.unwrap();
    assert_eq!(reset.event_type, "sse-reset");
    assert!(reset.data.contains("expired"), "{}", reset.data);
    assert_eq!(data(&take(&mut reader, 2).await), ["b2", "b3"]);
    server.stop().await;
}

#[tokio::test]
async fn bad_channel_lists_are_400_with_a_json_error() {
    let server = TestServer::start(Hub::builder().max_channels_per_subscription(2)).await;
    let c = client();
    for (query, says) in [
        ("", "no channel given"),
        ("?lastEventId=1-1", "no channel given"),
        ("?channel=a&channel=b&channel=c", "limit of 2"),
        ("?channel=a*", "invalid entry"),
        ("?channel=*", "invalid entry"),
        ("?channel=%07", "invalid channel name"),
        ("?channel=a&event-type=nope", "event-type"),
    ] {
        let resp = c
            .get(server.url(&format!("/events{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{query}");
        let json: serde_json::Value = resp.json().await.unwrap();
        let error = json["error"].as_str().unwrap();
        assert!(error.contains(says), "{query}: {error}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_multi_channel_stream_works_over_h2c() {
    let server = TestServer::start(Hub::builder()).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut reader =
        Reader::from_request(h2.get(server.url("/events?channel=a&channel=p/*"))).await;
    assert_eq!(reader.version, reqwest::Version::HTTP_2);
    publish(&server, "p/q", "one").await;
    publish(&server, "a", "two").await;
    assert_eq!(data(&take(&mut reader, 2).await), ["one", "two"]);
    // `/channels` counts the subscriber once per channel it follows.
    let list = server.hub.channels().await.unwrap();
    let counts: Vec<(&str, usize)> = list
        .iter()
        .map(|c| (c.name.as_str(), c.subscribers))
        .collect();
    assert_eq!(counts, [("a", 1), ("p/q", 1)]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_nodes_merge_channels_in_one_order_and_resume_on_another_node() {
    if !cluster_support::redis_available("multi-channel streams on Redis") {
        return;
    }
    let (_redis, nodes) = cluster_support::cluster(3).await;
    let c = client();
    let path = "/events?channel=a&channel=b&channel=p/*&event-type=channel";
    cluster_support::publish(&c, &nodes[1], "a", "early").await;
    let mut first = Reader::open(&c, &nodes[0].url(path), None).await;
    let mut expected = Vec::new();
    for i in 0..9 {
        // `p/new` is created after the subscription connected, on another node.
        let channel = ["a", "p/new", "b", "zzz"][i % 4];
        let id = cluster_support::publish(&c, &nodes[i % 3], channel, &format!("e{i}")).await;
        if channel != "zzz" {
            expected.push((id, channel.to_owned(), format!("e{i}")));
        }
    }
    let all = c
        .post(nodes[2].url("/events"))
        .bearer_auth(cluster_support::TOKEN)
        .form(&[("data", "all")])
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), 200);
    let json: serde_json::Value = all.json().await.unwrap();
    let broadcast = json["id"].as_str().unwrap().to_owned();
    let tail = cluster_support::publish(&c, &nodes[1], "a", "tail").await;
    let got = take(&mut first, expected.len() + 2).await;
    assert_eq!(got[..expected.len()], expected[..]);
    assert_eq!(got[expected.len()].0, broadcast, "the broadcast, once");
    assert_eq!(got[expected.len() + 1].0, tail);
    // Cut at the last id, newer than `p/new`'s last event (which must not make it
    // unknown there); publish more on every node, one channel new; resume on another node.
    drop(first);
    let mut rest = Vec::new();
    for i in 0..6 {
        let channel = ["b", "p/other", "a"][i % 3];
        let id = cluster_support::publish(&c, &nodes[(i + 1) % 3], channel, &format!("r{i}")).await;
        rest.push((id, channel.to_owned(), format!("r{i}")));
    }
    let mut resumed = Reader::open(&c, &nodes[2].url(path), Some(&tail)).await;
    let again = take(&mut resumed, rest.len()).await;
    assert_eq!(again, rest);
}

#[tokio::test]
async fn a_multi_channel_stream_works_over_tls_with_http1_and_http2() {
    const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-cert.pem");
    const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-key.pem");
    let tls_client = |http2: bool| {
        let cert = reqwest::Certificate::from_pem(&std::fs::read(CERT).unwrap()).unwrap();
        let builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert);
        let builder = match http2 {
            true => builder.http2_prior_knowledge(),
            false => builder.http1_only(),
        };
        builder.build().unwrap()
    };
    let server = TestServer::start_with(
        Hub::builder(),
        |svc| svc,
        |server| server.tls(sse_server::tls_acceptor(CERT, KEY).unwrap()),
    )
    .await;
    let url = format!(
        "https://localhost:{}/events?channel=a&channel=s/*",
        server.addr.port()
    );
    let mut h1 = Reader::open(&tls_client(false), &url, None).await;
    let mut h2 = Reader::open(&tls_client(true), &url, None).await;
    assert_eq!(h1.version, reqwest::Version::HTTP_11);
    assert_eq!(h2.version, reqwest::Version::HTTP_2);
    for (channel, d) in [("s/1", "one"), ("b", "no"), ("a", "two")] {
        server
            .hub
            .publish(channel, sse_proto::Event::message(d))
            .await
            .unwrap();
    }
    assert_eq!(data(&take(&mut h1, 2).await), ["one", "two"]);
    assert_eq!(data(&take(&mut h2, 2).await), ["one", "two"]);
    server.stop().await;
}
