//! One stream on several channels and `prefix/*` patterns, against the real `sse-server` hub over
//! loopback sockets: the library (`EventSourceBuilder::channels`, `channel_as_event_type`) with its
//! connections cut by a proxy and resumed by its own `Last-Event-ID`, and `sse-client listen
//! --channel` (the binary), fresh and resumed with `--last-event-id`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use sse_client::{Backoff, Event, EventSource, RetryPolicy};
use sse_proto::Event as ServerEvent;
use sse_server::{Hub, Server};
use support::LIMIT;
use support::cli::{TestHub, run, text};
use support::proxy::Proxy;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// `(type, data)` of every message the source delivers, until a message whose data is `end`.
fn collect(mut source: EventSource) -> (mpsc::UnboundedReceiver<(String, String)>, Counter) {
    let (tx, rx) = mpsc::unbounded_channel();
    let opens = Counter::default();
    let counted = opens.clone();
    tokio::spawn(async move {
        while let Some(item) = source.next().await {
            match item {
                Ok(Event::Message(m)) => {
                    let end = m.data == "end";
                    let _ = tx.send((m.event_type.to_string(), m.data.to_string()));
                    if end {
                        break;
                    }
                }
                Ok(Event::Open) => *counted.0.lock().unwrap() += 1,
                Ok(_) => {}
                Err(e) => assert!(e.will_retry(), "fatal error: {e}"),
            }
        }
    });
    (rx, opens)
}

#[derive(Clone, Default)]
struct Counter(Arc<Mutex<usize>>);

/// Publishes `channel:n` on `channel` (no event type) and returns the hub's id.
async fn publish(hub: &Hub, channel: &str, n: usize) -> String {
    hub.publish(channel, ServerEvent::message(format!("{channel}:{n}")))
        .await
        .unwrap()
}

/// An event with the publisher's own type.
fn typed(data: &str, kind: &str) -> ServerEvent {
    ServerEvent::builder()
        .data(data)
        .event(kind)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_source_on_names_and_a_pattern_resumes_every_channel_after_cuts() {
    let hub = Hub::builder()
        .replay_events(10_000)
        .retry(Some(Duration::from_millis(5)))
        .heartbeat(None)
        .build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let server = tokio::spawn(Server::new(hub.clone()).serve_hub(listener, std::future::pending()));
    let proxy = Proxy::start(upstream).await;

    let source = EventSource::builder(format!("http://{}/events", proxy.addr))
        .channels(["a", "b"])
        .channel("users/*")
        .channel_as_event_type()
        .reconnection_time(Duration::from_millis(5))
        .retry_policy(
            RetryPolicy::new().backoff(Backoff::new().max_delay(Duration::from_millis(50))),
        )
        .build()
        .unwrap();
    let (mut received, opens) = collect(source);

    // Nothing to resume from until the first event arrived: probe `a` until the stream is live.
    // Probes published before it was live are lost by design; those after the first one received
    // are owed like any other event.
    let mut probes = Vec::new();
    let mut n = 0;
    let live_by = tokio::time::Instant::now() + LIMIT;
    let first = loop {
        assert!(
            tokio::time::Instant::now() < live_by,
            "the multi-channel stream never delivered"
        );
        publish(&hub, "a", n).await;
        probes.push(format!("a:{n}"));
        n += 1;
        if let Ok(Some(first)) = timeout(Duration::from_millis(50), received.recv()).await {
            break first;
        }
    };
    assert_eq!(first.0, "a", "an untyped event is tagged with its channel");
    let owed = probes.iter().position(|p| *p == first.1).unwrap() + 1;
    let mut sent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    sent.insert("a".into(), probes[owed..].to_vec());
    let followed = ["a", "b", "users/1", "users/2"];
    let others = ["c", "users", "usersx/1", "teams/1"];
    for round in 0..6 {
        for (k, channel) in followed.iter().enumerate() {
            // `users/2` appears only after the first cut: a channel created after connecting.
            if *channel == "users/2" && round == 0 {
                continue;
            }
            for _ in 0..=k {
                publish(&hub, channel, n).await;
                sent.entry((*channel).to_owned())
                    .or_default()
                    .push(format!("{channel}:{n}"));
                n += 1;
            }
        }
        for channel in others {
            publish(&hub, channel, n).await;
            n += 1;
        }
        if round % 2 == 0 {
            proxy.cut(false).await;
        }
    }
    // A publisher's own type is kept; a broadcast arrives once, not once per followed channel.
    hub.publish("b", typed("typed", "custom")).await.unwrap();
    hub.broadcast(typed("to-all", "all")).await.unwrap();
    hub.publish("users/2", typed("end", "done")).await.unwrap();

    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut typed = Vec::new();
    loop {
        let (kind, data) = timeout(LIMIT, received.recv())
            .await
            .expect("the last event did not arrive in time")
            .expect("the source ended early");
        if data == "end" {
            break;
        }
        let Some((channel, _)) = data.split_once(':') else {
            typed.push((kind, data));
            continue;
        };
        assert_eq!(kind, channel, "tagged with its channel: {data}");
        got.entry(channel.to_owned()).or_default().push(data);
    }
    assert_eq!(
        typed,
        [
            ("custom".into(), "typed".into()),
            ("all".into(), "to-all".into())
        ]
    );
    assert_eq!(
        got, sent,
        "every event of every followed channel once, in order"
    );
    assert!(
        *opens.0.lock().unwrap() >= 2,
        "the cut connections were reopened"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_follows_channels_from_the_url_and_flags_and_resumes_with_last_event_id() {
    let th = TestHub::start("t").await;
    let url = th.url("/events?channel=a");
    let args = [
        "listen",
        url.as_str(),
        "--channel",
        "users/*",
        "--channel-as-event-type",
        "--json",
        "--max-events",
        "3",
    ];
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let listen = tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args, &[]).await
    });
    th.wait_subscribers("a", 1).await;
    let hub = &th.hub;
    let a1 = publish(hub, "a", 1).await;
    publish(hub, "c", 2).await;
    publish(hub, "users", 3).await;
    let u4 = publish(hub, "users/7", 4).await;
    hub.publish("a", typed("five", "typed")).await.unwrap();
    publish(hub, "a", 6).await;
    let out = timeout(LIMIT, listen).await.unwrap().unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["type"].as_str().unwrap(), l["data"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [("a", "a:1"), ("users/7", "users/7:4"), ("typed", "five")]
    );
    assert_eq!(lines[0]["lastEventId"], a1.as_str());
    assert_eq!(lines[1]["lastEventId"], u4.as_str());

    // Resumed after `a:1` in the SSE_* variables' form: the rest of both channels, nothing else.
    let out = run(
        &["listen", &th.url("/events"), "--json", "--max-events", "3"],
        &[
            ("SSE_CHANNEL", "users/*\na"),
            ("SSE_LAST_EVENT_ID", &a1),
            ("SSE_CHANNEL_AS_EVENT_TYPE", "1"),
        ],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let seen: Vec<(String, String)> = text(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let field = |k: &str| v[k].as_str().unwrap().to_owned();
            (field("type"), field("data"))
        })
        .collect();
    let want = [("users/7", "users/7:4"), ("typed", "five"), ("a", "a:6")];
    assert_eq!(seen, want.map(|(t, d)| (t.to_owned(), d.to_owned())));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("channel=users%2F*&channel=a&event-type=channel"),
        "{stderr}"
    );
}
