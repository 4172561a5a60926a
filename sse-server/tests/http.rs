//! End-to-end tests of the hub over real loopback sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use sse_proto::Item;
use sse_server::Hub;
use support::{Reader, TOKEN, TestServer, WAIT, client, publish};

#[tokio::test]
async fn subscriber_receives_published_event_with_stream_headers() {
    let server = TestServer::start(Hub::builder()).await;
    let mut reader = Reader::open(&client(), &server.url("/events/x"), None).await;
    assert_eq!(reader.response_headers["content-type"], "text/event-stream");
    assert_eq!(reader.response_headers["cache-control"], "no-cache");
    assert_eq!(reader.response_headers["x-accel-buffering"], "no");
    let id = publish(&server, "x", "hi").await;
    let m = reader.message().await.unwrap();
    assert_eq!(
        (
            m.data.as_str(),
            m.last_event_id.as_str(),
            m.event_type.as_str()
        ),
        ("hi", id.as_str(), "message")
    );
    server.stop().await;
}

#[tokio::test]
async fn events_never_cross_channels() {
    let server = TestServer::start(Hub::builder()).await;
    let c = client();
    let mut a = Reader::open(&c, &server.url("/events/a"), None).await;
    let mut b = Reader::open(&c, &server.url("/events/b"), None).await;
    publish(&server, "a", "for a").await;
    publish(&server, "b", "for b").await;
    publish(&server, "a", "for a again").await;
    assert_eq!(a.message().await.unwrap().data, "for a");
    assert_eq!(a.message().await.unwrap().data, "for a again");
    assert_eq!(b.message().await.unwrap().data, "for b");
    // Nothing else arrives on b.
    assert!(b.next_within(Duration::from_millis(300)).await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn broadcast_reaches_every_channel_with_one_id() {
    let server = TestServer::start(Hub::builder()).await;
    let c = client();
    let mut a = Reader::open(&c, &server.url("/events/a"), None).await;
    let mut b = Reader::open(&c, &server.url("/events/b"), None).await;
    let resp = c
        .post(server.url("/events"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"data": "everyone", "event": "notice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for reader in [&mut a, &mut b] {
        let m = reader.message().await.unwrap();
        assert_eq!(
            (
                m.event_type.as_str(),
                m.data.as_str(),
                m.last_event_id.as_str()
            ),
            ("notice", "everyone", id.as_str())
        );
    }
    // Resuming from the broadcast id replays only what came after it, on each channel.
    publish(&server, "a", "after").await;
    let mut again = Reader::open(&c, &server.url("/events/a"), Some(&id)).await;
    assert_eq!(again.message().await.unwrap().data, "after");
    server.stop().await;
}

#[tokio::test]
async fn publishing_requires_the_token() {
    let server = TestServer::start(Hub::builder()).await;
    let c = client();
    for auth in [None, Some("Bearer wrong"), Some("Basic dGVzdA==")] {
        let mut req = c.post(server.url("/events/x")).form(&[("data", "x")]);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("token"));
    }
    for (method, path) in [("POST", "/events"), ("DELETE", "/events/x")] {
        let resp = c
            .request(method.parse().unwrap(), server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{method} {path}");
    }
    assert_eq!(server.hub.metrics().events_published(), 0);
    server.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_400_with_a_reason() {
    let server = TestServer::start(Hub::builder()).await;
    let c = client();
    let cases: [(&str, &[u8], &str); 7] = [
        ("application/json", b"{not json", "JSON"),
        (
            "application/json",
            br#"{"data":"x","id":"a\nb"}"#,
            "line break",
        ),
        (
            "application/json",
            br#"{"data":"x","event":"a\r\nid: 1"}"#,
            "line break",
        ),
        (
            "application/json",
            br#"{"data":"x","retry":"soon"}"#,
            "retry",
        ),
        ("application/json", br#"{"data":"x","retry":-5}"#, "retry"),
        (
            "application/x-www-form-urlencoded",
            b"data=x&id=a%0D%0Adata%3A%20forged",
            "line break",
        ),
        ("application/x-www-form-urlencoded", b"event=only", "data"),
    ];
    for (ct, body, needle) in cases {
        let resp = c
            .post(server.url("/events/x"))
            .bearer_auth(TOKEN)
            .header("content-type", ct)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{ct} {}", String::from_utf8_lossy(body));
        let json: serde_json::Value = resp.json().await.unwrap();
        let msg = json["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
    }
    let resp = c
        .post(server.url("/events/%00bad"))
        .bearer_auth(TOKEN)
        .form(&[("data", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "control character in channel name");
    assert_eq!(server.hub.metrics().events_published(), 0);
    server.stop().await;
}

#[tokio::test]
async fn oversized_events_get_413() {
    let server = TestServer::start(Hub::builder().max_event_bytes(1024)).await;
    let c = client();
    // Over the event limit but under the body limit: refused after decoding.
    let resp = c
        .post(server.url("/events/x"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body("x".repeat(2000))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Far over: refused from Content-Length without reading the body.
    let resp = c
        .post(server.url("/events/x"))
        .bearer_auth(TOKEN)
        .form(&[("data", "y".repeat(100_000))])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(
        resp.json::<serde_json::Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("limit")
    );
    // Just under: accepted.
    let resp = c
        .post(server.url("/events/x"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body("z".repeat(900))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn json_and_text_bodies_carry_every_field() {
    let server = TestServer::start(Hub::builder()).await;
    let c = client();
    let mut reader = Reader::open(&c, &server.url("/events/x"), None).await;
    let resp = c
        .post(server.url("/events/x"))
        .bearer_auth(TOKEN)
        .json(
            &serde_json::json!({"data": "two\nlines", "event": "upd", "id": "my-1", "retry": 2500}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["id"],
        "my-1"
    );
    assert_eq!(
        reader.next().await,
        Some(Item::Retry(Duration::from_millis(2500)))
    );
    let m = reader.message().await.unwrap();
    assert_eq!(
        (
            m.event_type.as_str(),
            m.data.as_str(),
            m.last_event_id.as_str()
        ),
        ("upd", "two\nlines", "my-1")
    );
    c.post(server.url("/events/x?event=log"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body("plain text")
        .send()
        .await
        .unwrap();
    let m = reader.message().await.unwrap();
    assert_eq!(
        (m.event_type.as_str(), m.data.as_str()),
        ("log", "plain text")
    );
    server.stop().await;
}

#[tokio::test]
async fn idle_streams_get_heartbeat_comments() {
    let server =
        TestServer::start(Hub::builder().heartbeat(Some(Duration::from_millis(150)))).await;
    let mut reader = Reader::open(&client(), &server.url("/events/quiet"), None).await;
    for _ in 0..2 {
        assert_eq!(
            reader.next().await,
            Some(Item::Comment(" heartbeat".into()))
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn no_heartbeat_when_disabled() {
    let server = TestServer::start(Hub::builder().heartbeat(None)).await;
    let mut reader = Reader::open(&client(), &server.url("/events/quiet"), None).await;
    assert!(
        reader
            .next_within(Duration::from_millis(500))
            .await
            .is_err()
    );
    server.stop().await;
}

#[tokio::test]
async fn close_channel_ends_its_streams_only() {
    let server = TestServer::start(Hub::builder()).await;
    let c = client();
    let mut a1 = Reader::open(&c, &server.url("/events/a"), None).await;
    let mut a2 = Reader::open(&c, &server.url("/events/a"), None).await;
    let mut b = Reader::open(&c, &server.url("/events/b"), None).await;
    let resp = c
        .delete(server.url("/events/a"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["closed"], 2);
    assert_eq!(a1.next().await, None);
    assert_eq!(a2.next().await, None);
    publish(&server, "b", "still here").await;
    assert_eq!(b.message().await.unwrap().data, "still here");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_streams_with_a_randomised_retry() {
    let server = TestServer::start(
        Hub::builder().shutdown_retry(Duration::from_millis(1000), Duration::from_millis(5000)),
    )
    .await;
    let c = client();
    let mut readers = Vec::new();
    for i in 0..4 {
        readers.push(Reader::open(&c, &server.url(&format!("/events/c{}", i % 2)), None).await);
    }
    let addr = server.addr;
    server.stop().await;
    for r in &mut readers {
        match r.next().await {
            Some(Item::Retry(d)) => {
                assert!((1000..=5000).contains(&(d.as_millis() as u64)), "{d:?}")
            }
            other => panic!("expected a retry before the end, got {other:?}"),
        }
        assert_eq!(r.next().await, None);
    }
    // New connections are refused once the server stopped.
    let refused = tokio::time::timeout(WAIT, c.get(format!("http://{addr}/events/x")).send())
        .await
        .unwrap();
    assert!(refused.is_err());
}

#[tokio::test]
async fn http2_prior_knowledge_subscription_works() {
    let server = TestServer::start(Hub::builder()).await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut reader = Reader::open(&h2, &server.url("/events/x"), None).await;
    assert_eq!(reader.version, reqwest::Version::HTTP_2);
    let id = publish(&server, "x", "over h2").await;
    let m = reader.message().await.unwrap();
    assert_eq!(
        (m.data.as_str(), m.last_event_id.as_str()),
        ("over h2", id.as_str())
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_last_event_id_gets_sse_reset_then_the_window() {
    let server = TestServer::start(Hub::builder()).await;
    let first = publish(&server, "x", "one").await;
    let second = publish(&server, "x", "two").await;
    let mut reader = Reader::open(&client(), &server.url("/events/x"), Some("no-such-id")).await;
    let reset = reader.message().await.unwrap();
    assert_eq!(reset.event_type, "sse-reset");
    let data: serde_json::Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(data["reason"], "unknown");
    assert_eq!(data["lastEventId"], "no-such-id");
    assert_eq!(data["oldest"], first.as_str());
    let m = reader.message().await.unwrap();
    assert_eq!(
        (m.data.as_str(), m.last_event_id.as_str()),
        ("one", first.as_str())
    );
    let m = reader.message().await.unwrap();
    assert_eq!(
        (m.data.as_str(), m.last_event_id.as_str()),
        ("two", second.as_str())
    );
    assert_eq!(server.hub.metrics().resets(), 1);
    server.stop().await;
}

#[tokio::test]
async fn expired_last_event_id_gets_sse_reset_and_reset_id_resumes() {
    let server = TestServer::start(Hub::builder().replay_events(2)).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(publish(&server, "x", &format!("e{i}")).await);
    }
    let c = client();
    let mut reader = Reader::open(&c, &server.url("/events/x"), Some(&ids[0])).await;
    let reset = reader.message().await.unwrap();
    assert_eq!(reset.event_type, "sse-reset");
    let data: serde_json::Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(data["reason"], "expired");
    assert_eq!(data["oldest"], ids[3].as_str());
    assert_eq!(reader.message().await.unwrap().data, "e3");
    assert_eq!(reader.message().await.unwrap().data, "e4");
    // The reset event's id is a valid resume point: the start of the window, no new reset.
    let mut again = Reader::open(&c, &server.url("/events/x"), Some(&reset.last_event_id)).await;
    assert_eq!(again.message().await.unwrap().data, "e3");
    server.stop().await;
}

#[tokio::test]
async fn last_event_id_query_parameter_resumes_like_the_header() {
    let server = TestServer::start(Hub::builder()).await;
    let a = publish(&server, "x", "a").await;
    publish(&server, "x", "b").await;
    let url = server.url(&format!("/events/x?lastEventId={a}"));
    let mut reader = Reader::open(&client(), &url, None).await;
    let m = reader.message().await.unwrap();
    assert_eq!(m.data, "b");
    assert_eq!(server.hub.metrics().events_replayed(), 1);
    server.stop().await;
}

#[tokio::test]
async fn channels_healthz_and_metrics_report_state() {
    let server = TestServer::start(Hub::builder()).await;
    let c = client();
    let _reader = Reader::open(&c, &server.url("/events/watched"), None).await;
    let id = publish(&server, "watched", "x").await;
    let list: serde_json::Value = c
        .get(server.url("/channels"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list,
        serde_json::json!([{"name": "watched", "subscribers": 1, "last_id": id}])
    );
    let health = c.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = c.get(server.url("/metrics")).send().await.unwrap();
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    for line in [
        "sse_subscribers{protocol=\"h1\",tls=\"false\"} 1",
        "sse_events_published_total 1",
        "sse_events_delivered_total",
        "sse_events_replayed_total 0",
        "sse_disconnects_total{reason=\"slow\"} 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert_eq!(
        c.get(server.url("/nope")).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        c.put(server.url("/events/x"))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    server.stop().await;
}

#[tokio::test]
async fn configured_headers_and_cors_are_sent() {
    let server = TestServer::start(
        Hub::builder()
            .header("x-served-by".parse().unwrap(), "sse-test".parse().unwrap())
            .cors_origin("https://app.example"),
    )
    .await;
    let c = client();
    let resp = c
        .get(server.url("/events/x"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-served-by"], "sse-test");
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let other = c
        .get(server.url("/healthz"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let preflight = c
        .request(reqwest::Method::OPTIONS, server.url("/events/x"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert!(
        preflight.headers()["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("Authorization")
    );
    server.stop().await;
}

#[tokio::test]
async fn subscribe_hook_can_reject_or_welcome_and_unsubscribe_hook_runs() {
    let left = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let left2 = left.clone();
    let server = TestServer::start(
        Hub::builder()
            .on_subscribe(|info| {
                if info.channel == "private" {
                    return Err(sse_server::Error::rejected(
                        http::StatusCode::FORBIDDEN,
                        "members only",
                    ));
                }
                let agent = info
                    .headers
                    .and_then(|h| h.get("x-agent"))
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?");
                Ok(Some(
                    sse_proto::Event::builder()
                        .event("welcome")
                        .data(format!("hi {agent}"))
                        .build()?,
                ))
            })
            .on_unsubscribe(move |_| {
                left2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }),
    )
    .await;
    let c = client();
    let resp = c.get(server.url("/events/private")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let mut bob =
        Reader::from_request(c.get(server.url("/events/open")).header("x-agent", "bob")).await;
    let mut anon = Reader::open(&c, &server.url("/events/open"), None).await;
    let m = bob.message().await.unwrap();
    assert_eq!(
        (m.event_type.as_str(), m.data.as_str()),
        ("welcome", "hi bob")
    );
    assert_eq!(anon.message().await.unwrap().data, "hi ?");
    // The welcome event goes to that subscriber only and is not retained.
    assert!(
        server
            .hub
            .channels()
            .await
            .unwrap()
            .iter()
            .all(|c| c.last_id.is_none())
    );
    drop((bob, anon));
    tokio::time::timeout(WAIT, async {
        while left.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("on_unsubscribe did not run for both streams");
    server.stop().await;
}
