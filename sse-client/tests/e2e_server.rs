//! End to end with the real `sse-server` hub: a client whose connections are cut at random times
//! (clean close or TCP reset, by a proxy between them) while events are published receives every
//! event exactly once, in order, thanks to `Last-Event-ID` replay.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use futures::StreamExt;
use proptest::prelude::*;
use sse_client::{Backoff, Event, EventSource, RetryPolicy};
use sse_proto::Event as ServerEvent;
use sse_server::{Hub, Server};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(5);

use support::proxy::Proxy;
#[derive(Debug, Clone)]
enum Op {
    Publish(u8),
    Pause(u8),
    Cut { reset: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u8..6).prop_map(Op::Publish),
        2 => (0u8..15).prop_map(Op::Pause),
        1 => any::<bool>().prop_map(|reset| Op::Cut { reset }),
    ]
}

async fn run_schedule(ops: Vec<Op>) {
    let hub = Hub::builder()
        .replay_events(10_000)
        .retry(Some(Duration::from_millis(5)))
        .heartbeat(None)
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = listener.local_addr().unwrap();
    let server = tokio::spawn(Server::new(hub.clone()).serve_hub(listener, std::future::pending()));
    let proxy = Proxy::start(server_addr).await;

    let mut source = EventSource::builder(format!("http://{}/events/e2e", proxy.addr))
        .reconnection_time(Duration::from_millis(5))
        .retry_policy(
            RetryPolicy::new().backoff(Backoff::new().max_delay(Duration::from_millis(50))),
        )
        .build()
        .unwrap();
    let (tx, mut received) = mpsc::unbounded_channel();
    let client = tokio::spawn(async move {
        let mut opens = 0;
        while let Some(item) = source.next().await {
            match item {
                Ok(Event::Message(m)) => {
                    let end = m.data == "end";
                    let _ = tx.send(m.data);
                    if end {
                        break;
                    }
                }
                Ok(Event::Open) => opens += 1,
                Ok(_) => {}
                Err(e) => assert!(e.will_retry(), "fatal error: {e}"),
            }
        }
        opens
    });

    // The client has no id to resume from until it received an event, so the schedule starts
    // once the first event arrived.
    let publish = |data: String| {
        let hub = hub.clone();
        async move {
            hub.publish("e2e", ServerEvent::message(data))
                .await
                .unwrap()
        }
    };
    let mut next = 0u32;
    let first = loop {
        publish(next.to_string()).await;
        next += 1;
        // An event published before the subscription existed is lost by design; publish another.
        if let Ok(Some(first)) = timeout(Duration::from_millis(50), received.recv()).await {
            break first.parse::<u32>().unwrap();
        }
    };
    let cuts = ops.iter().any(|op| matches!(op, Op::Cut { .. }));
    for op in ops {
        match op {
            Op::Publish(n) => {
                for _ in 0..n {
                    publish(next.to_string()).await;
                    next += 1;
                }
            }
            Op::Pause(ms) => tokio::time::sleep(Duration::from_millis(ms.into())).await,
            Op::Cut { reset } => proxy.cut(reset).await,
        }
    }
    publish("end".into()).await;
    let opens = timeout(LIMIT, client).await;
    let mut got = Vec::new();
    while let Ok(data) = received.try_recv() {
        got.push(data);
    }
    let expected: Vec<String> = (first + 1..next)
        .map(|i| i.to_string())
        .chain(["end".to_owned()])
        .collect();
    assert_eq!(got, expected, "every event exactly once, in order");
    let opens = opens.expect("client finished").unwrap();
    if cuts {
        assert!(opens >= 2, "a cut connection was reopened");
    }
    server.abort();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 32, ..ProptestConfig::default() })]

    #[test]
    fn cut_connections_lose_and_duplicate_nothing(ops in proptest::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run_schedule(ops));
    }
}
