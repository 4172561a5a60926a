//! The `Hub` API without HTTP: encode-once sharing, ids across restarts, window behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::time::Duration;

use futures::StreamExt;
use sse_proto::Event;
use sse_server::{Hub, Position};

async fn next(sub: &mut sse_server::Subscription) -> bytes::Bytes {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn every_subscriber_gets_the_same_encoded_buffer() {
    let hub = Hub::builder().build();
    let before: Position = hub
        .publish("c", Event::message("first"))
        .await
        .unwrap()
        .parse()
        .unwrap();
    let mut a = hub.subscribe("c", None).await.unwrap();
    let mut b = hub.subscribe("c", None).await.unwrap();
    hub.publish("c", Event::message("shared")).await.unwrap();
    let (x, y) = (next(&mut a).await, next(&mut b).await);
    assert_eq!(x, y);
    assert_eq!(
        x.as_ptr(),
        y.as_ptr(),
        "the event was encoded more than once"
    );
    // The replayed copy is the same buffer too.
    let mut c = hub.subscribe("c", Some(&before.to_string())).await.unwrap();
    assert_eq!(next(&mut c).await.as_ptr(), x.as_ptr());
}

#[tokio::test]
async fn ids_increase_across_a_restart_and_stale_ids_are_unknown() {
    let before = Hub::builder().build();
    let old: Position = before
        .publish("c", Event::message("old"))
        .await
        .unwrap()
        .parse()
        .unwrap();
    drop(before);
    let after = Hub::builder().build();
    let new: Position = after
        .publish("c", Event::message("new"))
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert!(new > old, "{new} should sort after {old}");
    let mut sub = after.subscribe("c", Some(&old.to_string())).await.unwrap();
    let reset = String::from_utf8(next(&mut sub).await.to_vec()).unwrap();
    assert!(reset.contains("event: sse-reset\n"), "{reset}");
    assert!(reset.contains(r#""reason":"unknown""#), "{reset}");
    assert!(next(&mut sub).await.ends_with(b"data: new\n\n"));
}

#[tokio::test]
async fn publishing_without_subscribers_fills_the_window_and_close_keeps_it() {
    let hub = Hub::builder().build();
    let first = hub.publish("c", Event::message("1")).await.unwrap();
    hub.publish("c", Event::message("2")).await.unwrap();
    let mut sub = hub.subscribe("c", Some(&first)).await.unwrap();
    assert!(next(&mut sub).await.ends_with(b"data: 2\n\n"));
    assert_eq!(hub.close_channel("c"), 1);
    assert!(sub.next().await.is_none());
    let mut again = hub.subscribe("c", Some(&first)).await.unwrap();
    assert!(next(&mut again).await.ends_with(b"data: 2\n\n"));
}

#[tokio::test]
async fn publishes_and_subscriptions_are_refused_after_shutdown() {
    let hub = Hub::builder()
        .retry(Some(Duration::from_millis(700)))
        .build();
    let mut sub = hub.subscribe("c", None).await.unwrap();
    assert_eq!(&next(&mut sub).await[..], b"retry: 700\n\n");
    hub.shutdown().await;
    assert!(next(&mut sub).await.starts_with(b"retry: "));
    assert!(sub.next().await.is_none());
    assert!(matches!(
        hub.publish("c", Event::message("late")).await,
        Err(sse_server::Error::ShuttingDown)
    ));
    assert!(matches!(
        hub.subscribe("c", None).await,
        Err(sse_server::Error::ShuttingDown)
    ));
    assert_eq!(hub.metrics().connections(), 0);
}

#[tokio::test]
async fn invalid_channel_names_and_oversized_events_are_refused() {
    let hub = Hub::builder().max_event_bytes(100).build();
    for name in ["", "a\nb", &"x".repeat(300)] {
        assert!(matches!(
            hub.publish(name, Event::message("x")).await,
            Err(sse_server::Error::InvalidChannel { .. })
        ));
    }
    let err = hub
        .publish("c", Event::message("y".repeat(200)))
        .await
        .unwrap_err();
    assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
}
