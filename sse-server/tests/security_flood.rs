//! Issue 16 item 2: anonymous subscribers from one IP must not fill the channel table and lock
//! authorised publishers out. Subscriptions are bounded per connection and per client IP (429 with
//! `Retry-After`, over HTTP/2 and HTTP/1.1), and a publish never fails because the table is full.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod security_support;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use security_support::{TOKEN, WAIT, read_head, status_of};
use sse_server::Limits;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Subscribes to `channel` on a fresh HTTP/1.1 connection; the status and the open connection.
async fn h1_subscribe(addr: SocketAddr, channel: &str) -> (u16, String, TcpStream) {
    let mut s = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    s.write_all(format!("GET /events/{channel} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    (status_of(&head), head, s)
}

fn h2c() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(WAIT)
        .build()
        .unwrap()
}

#[tokio::test]
async fn subscriptions_are_bounded_per_connection_and_per_ip_with_429() {
    let hub = security_support::start(
        sse_server::Hub::builder(),
        |s| s,
        Limits::default()
            .max_subscriptions_per_connection(8)
            .max_subscriptions_per_ip(20)
            .retry_after(Duration::from_secs(3)),
    )
    .await;

    // One h2c connection, 12 streams to fresh names: 8 are served, the rest get 429.
    let c = h2c();
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..12 {
        let resp = c
            .get(hub.url(&format!("/events/h2-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        match resp.status().as_u16() {
            200 => held.push(resp),
            429 => {
                assert_eq!(resp.headers()["retry-after"], "3");
                let body = resp.text().await.unwrap();
                assert!(body.contains("\"error\""), "{body}");
                assert!(body.contains("connection"), "{body}");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((held.len(), refused), (8, 4));

    // HTTP/1.1 connections from the same IP: 12 more fit under the per-IP limit of 20, then 429.
    let mut h1 = Vec::new();
    for i in 0..12 {
        let (status, head, s) = h1_subscribe(hub.addr, &format!("h1-{i}")).await;
        assert_eq!(status, 200, "{head}");
        h1.push(s);
    }
    let (status, head, _s) = h1_subscribe(hub.addr, "h1-over").await;
    assert_eq!(status, 429, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 3"),
        "{head}"
    );
    // Another h2c connection is over the per-IP limit too.
    let resp = h2c().get(hub.url("/events/h2-over")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.text().await.unwrap().contains("address"));

    // Places are released when streams end: close one and a new subscription is served again.
    drop(h1.pop());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, _, s) = h1_subscribe(hub.addr, "h1-again").await;
        if status == 200 {
            h1.push(s);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "place never released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((held, h1));
    hub.stop().await;
}

#[tokio::test]
async fn a_full_channel_table_never_fails_an_authorised_publish() {
    let hub = security_support::start(
        sse_server::Hub::builder().max_channels(50),
        |s| s,
        Limits::default(),
    )
    .await;
    // Anonymous subscribers fill the table with 50 fresh names over one h2c connection.
    let c = h2c();
    let mut held = Vec::new();
    for i in 0..50 {
        let resp = c
            .get(hub.url(&format!("/events/flood-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        held.push(resp);
    }
    let resp = c.get(hub.url("/events/one-more")).send().await.unwrap();
    assert_eq!(
        resp.status(),
        503,
        "subscribers are still bounded by --max-channels"
    );

    // A publisher with the token still publishes to a new channel, and its event is retained.
    let publish = reqwest::Client::new()
        .post(hub.url("/events/orders"))
        .bearer_auth(TOKEN)
        .header("content-type", "text/plain")
        .body("paid")
        .timeout(WAIT)
        .send()
        .await
        .unwrap();
    assert_eq!(publish.status(), 200);
    let id = publish.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let listed = hub.hub.channels().await.unwrap();
    let orders = listed.iter().find(|c| c.name == "orders").unwrap();
    assert_eq!(orders.last_id.as_deref(), Some(id.as_str()));
    // The publish left no entry behind: the table is still exactly full.
    let resp = c.get(hub.url("/events/one-more")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    drop(held);
    hub.stop().await;
}

#[tokio::test]
async fn library_publish_to_a_new_channel_succeeds_when_the_table_is_full() {
    let hub = sse_server::Hub::builder().max_channels(2).build();
    let _a = hub.subscribe("a", None).await.unwrap();
    let _b = hub.subscribe("b", None).await.unwrap();
    assert!(hub.subscribe("c", None).await.is_err());
    let id = hub
        .publish("c", sse_proto::Event::message("x"))
        .await
        .unwrap();
    let c = hub.channels().await.unwrap();
    assert_eq!(
        c.iter().find(|c| c.name == "c").unwrap().last_id.as_deref(),
        Some(id.as_str())
    );
}
