//! The HTTP/2 load mode against a real h2c server (the baseline router, served in-process): every
//! stream must get every event exactly once, and a stream the server refuses must count as dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::net::SocketAddr;
use std::time::Duration;

use sse_bench::load::{Endpoint, Fleet, Protocol, Publish};
use tokio::net::TcpListener;

const TOKEN: &str = "t";

async fn baseline() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(sse_bench::baseline::serve_on(listener, TOKEN, 64));
    addr
}

fn endpoint(addr: SocketAddr, path: &str) -> Endpoint {
    Endpoint {
        addr,
        host: addr.to_string(),
        path: path.into(),
    }
}

#[tokio::test]
async fn h2_streams_receive_every_event_once() {
    let addr = baseline().await;
    let ep = endpoint(addr, "/events/bench");
    let publish = Publish::Http {
        endpoint: ep.clone(),
        token: TOKEN.into(),
    };
    // 6 subscribers at 4 streams per connection: one full connection and one partly used.
    let mut fleet = Fleet::with_protocol(ep, Protocol::Http2 { streams: 4 });
    tokio::time::timeout(Duration::from_secs(5), fleet.grow(6))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fleet.connected(), 6);
    // The closed loop: the run only ends once every live stream has the last event.
    let stats = tokio::time::timeout(
        Duration::from_secs(5),
        fleet.run(&publish, 64, None, 16, Duration::from_millis(200)),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(stats.published >= 16, "published {}", stats.published);
    assert_eq!(stats.latency.count(), stats.published * 6);
    let outcomes = tokio::time::timeout(Duration::from_secs(5), fleet.finish(stats.published))
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 6);
    for o in outcomes {
        assert!(!o.dropped);
        assert_eq!(o.tracker.received(), stats.published);
        assert_eq!((o.tracker.lost(), o.tracker.duplicated()), (0, 0));
    }
}

#[tokio::test]
async fn h2_stream_with_a_non_200_answer_is_dropped() {
    let addr = baseline().await;
    // The server does speak HTTP/2: a stream on its SSE path is accepted.
    let mut good =
        Fleet::with_protocol(endpoint(addr, "/events/x"), Protocol::Http2 { streams: 2 });
    tokio::time::timeout(Duration::from_secs(5), good.grow(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(good.connected(), 1);
    let mut fleet = Fleet::with_protocol(endpoint(addr, "/nope"), Protocol::Http2 { streams: 2 });
    tokio::time::timeout(Duration::from_secs(5), fleet.grow(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fleet.connected(), 0);
    let outcomes = tokio::time::timeout(Duration::from_secs(5), fleet.finish(0))
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes.iter().all(|o| o.dropped));
}
