//! A subscriber that stops reading is disconnected; the others keep receiving everything.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use futures::StreamExt;
use sse_proto::Event;
use sse_server::Hub;
use support::{Reader, TestServer, WAIT, client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_is_dropped_while_others_get_everything() {
    let server = TestServer::start(Hub::builder().queue_size(8).max_event_bytes(64 * 1024)).await;

    // The stalled client: sends a request, then never reads.
    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(b"GET /events/load HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut reader = Reader::open(&client(), &server.url("/events/load"), None).await;
    tokio::time::timeout(WAIT, async {
        while server
            .hub
            .channels()
            .await
            .unwrap()
            .first()
            .map(|c| c.subscribers)
            != Some(2)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("both subscribers registered");

    // Publish in lockstep with the healthy reader: it never lags, the stalled one fills socket buffers
    // and then its queue. Bounded: 32 KiB events, at most 3000 of them (~96 MiB through loopback).
    let payload = "x".repeat(32 * 1024);
    let mut published = 0usize;
    while server.hub.metrics().dropped_subscribers() == 0 {
        assert!(published < 3000, "the stalled subscriber was never dropped");
        server
            .hub
            .publish("load", Event::message(format!("{published} {payload}")))
            .await
            .unwrap();
        let m = reader.message().await.expect("healthy reader ended");
        let n: usize = m.data.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(n, published, "healthy reader saw a gap or a duplicate");
        published += 1;
    }
    // The healthy reader keeps going after the drop.
    for i in 0..20 {
        server
            .hub
            .publish("load", Event::message(format!("after {i}")))
            .await
            .unwrap();
        assert_eq!(reader.message().await.unwrap().data, format!("after {i}"));
    }
    assert_eq!(server.hub.metrics().dropped_subscribers(), 1);
    assert_eq!(server.hub.channels().await.unwrap()[0].subscribers, 1);

    // The stalled client's stream was ended: draining its socket reaches the end of the chunked body.
    let drained = tokio::time::timeout(WAIT, async {
        let mut buf = vec![0u8; 1 << 16];
        let mut tail = Vec::new();
        loop {
            let n = stalled.read(&mut buf).await.unwrap();
            tail.extend_from_slice(&buf[..n]);
            if tail.len() > 16 {
                tail.drain(..tail.len() - 16);
            }
            if n == 0 || tail.ends_with(b"0\r\n\r\n") {
                return tail;
            }
        }
    })
    .await
    .expect("stalled stream never ended");
    assert!(
        drained.ends_with(b"0\r\n\r\n"),
        "stream did not end cleanly: {drained:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn overflowing_subscription_ends_without_draining_its_queue() {
    let hub = Hub::builder().queue_size(2).build();
    let mut slow = hub.subscribe("c", None).await.unwrap();
    let mut fast = hub.subscribe("c", None).await.unwrap();
    for i in 0..3 {
        hub.publish("c", Event::message(i.to_string()))
            .await
            .unwrap();
        assert!(
            fast.next()
                .await
                .unwrap()
                .ends_with(format!("data: {i}\n\n").as_bytes())
        );
    }
    assert_eq!(hub.metrics().dropped_subscribers(), 1);
    assert!(
        slow.next().await.is_none(),
        "a dropped subscriber's stream ends at once"
    );
}
