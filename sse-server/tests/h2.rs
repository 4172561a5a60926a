//! HTTP/2 served with the `h2` crate (`transport/h2`), driven by a real h2 client over 127.0.0.1:
//! many streams on one connection, replay, flow control and its limits, resets, publishing, and
//! graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Reason, RecvStream};
use http::Request;
use sse_proto::{Item, Parser};
use sse_server::Hub;
use support::{TOKEN, TestServer, WAIT, publish};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// An h2c connection (prior knowledge) with the given stream window and a large connection window
/// (so that one stream that never reads cannot starve the others of the connection's window).
async fn connect(
    server: &TestServer,
    stream_window: u32,
) -> (SendRequest<Bytes>, JoinHandle<Result<(), h2::Error>>) {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(stream_window)
        .initial_connection_window_size(16 << 20)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    (send, tokio::spawn(conn))
}

/// One subscription stream: the response body, parsed; the client's half, to reset it.
struct Stream {
    body: RecvStream,
    request: h2::SendStream<Bytes>,
    parser: Parser,
    ended: bool,
    /// Whether read bytes are given back to the server as window (a client that never does stalls).
    release: bool,
}

async fn subscribe(send: &SendRequest<Bytes>, path: &str, last_event_id: Option<&str>) -> Stream {
    let mut req = Request::get(format!("http://127.0.0.1{path}"));
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    let mut send = timeout(WAIT, send.clone().ready()).await.unwrap().unwrap();
    let (response, request) = send.send_request(req.body(()).unwrap(), true).unwrap();
    let response = timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{response:?}"
    );
    Stream {
        body: response.into_body(),
        request,
        parser: Parser::builder().comments(true).build(),
        ended: false,
        release: true,
    }
}

impl Stream {
    /// The next item, `None` at the end of the stream (or a reset).
    async fn next(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.parser.next() {
                return Some(item.unwrap());
            }
            if self.ended {
                return None;
            }
            match timeout(WAIT, self.body.data())
                .await
                .expect("no data in time")
            {
                Some(Ok(chunk)) => {
                    if self.release {
                        let _ = self.body.flow_control().release_capacity(chunk.len());
                    }
                    self.parser.feed(&chunk);
                }
                Some(Err(_)) | None => {
                    self.parser.finish();
                    self.ended = true;
                }
            }
        }
    }

    /// The next message's data.
    async fn data(&mut self) -> String {
        loop {
            match self.next().await {
                Some(Item::Message(m)) => return m.data.to_string(),
                Some(_) => {}
                None => panic!("the stream ended"),
            }
        }
    }
}

async fn subscribers(hub: &Hub, channel: &str) -> usize {
    hub.channels()
        .await
        .unwrap()
        .iter()
        .find(|c| &*c.name == channel)
        .map_or(0, |c| c.subscribers)
}

/// Waits (bounded) until `channel` has `n` subscribers.
async fn until_subscribers(hub: &Hub, channel: &str, n: usize) {
    timeout(WAIT, async {
        while subscribers(hub, channel).await != n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{channel} never had {n} subscribers"));
}

#[tokio::test]
async fn many_streams_on_one_connection_each_get_every_event_once_in_order() {
    let server = TestServer::start(Hub::builder()).await;
    let (send, _conn) = connect(&server, 65_535).await;
    let mut streams = Vec::new();
    for _ in 0..50 {
        streams.push(subscribe(&send, "/events/many", None).await);
    }
    until_subscribers(&server.hub, "many", 50).await;
    // Published in bursts and one by one: rounds of several events and of one.
    for i in 0..200 {
        server
            .hub
            .publish("many", sse_proto::Event::message(format!("e{i}")))
            .await
            .unwrap();
        if i % 40 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for stream in &mut streams {
        for i in 0..200 {
            assert_eq!(stream.data().await, format!("e{i}"));
        }
    }
    // Nothing more: each event came exactly once.
    server
        .hub
        .publish("many", sse_proto::Event::message("last"))
        .await
        .unwrap();
    for stream in &mut streams {
        assert_eq!(stream.data().await, "last");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_stream_resumes_after_last_event_id_over_h2() {
    let server = TestServer::start(Hub::builder()).await;
    let first = publish(&server, "resume", "one").await;
    publish(&server, "resume", "two").await;
    publish(&server, "resume", "three").await;
    let (send, _conn) = connect(&server, 65_535).await;
    let mut stream = subscribe(&send, "/events/resume", Some(&first)).await;
    assert_eq!(stream.data().await, "two");
    assert_eq!(stream.data().await, "three");
    publish(&server, "resume", "four").await;
    assert_eq!(stream.data().await, "four");
    server.stop().await;
}

#[tokio::test]
async fn a_stream_that_never_gives_back_window_is_cut_while_the_others_keep_receiving() {
    // 8 events queued at most: a reader that never reads is dropped soon after its window
    // (1 KiB) and the stream's budget in the server are full.
    let server = TestServer::start(Hub::builder().queue_size(8)).await;
    let (send, _conn) = connect(&server, 1024).await;
    let mut stalled = subscribe(&send, "/events/flow", None).await;
    stalled.release = false;
    let mut readers = Vec::new();
    for _ in 0..3 {
        readers.push(subscribe(&send, "/events/flow", None).await);
    }
    until_subscribers(&server.hub, "flow", 4).await;
    let payload = "x".repeat(120);
    let mut sent = 0;
    // Publish, reading as we go, until the stalled reader is dropped (bounded).
    while subscribers(&server.hub, "flow").await == 4 {
        assert!(sent < 5_000, "the stalled reader was never dropped");
        server
            .hub
            .publish(
                "flow",
                sse_proto::Event::message(format!("{sent} {payload}")),
            )
            .await
            .unwrap();
        for reader in &mut readers {
            assert_eq!(reader.data().await, format!("{sent} {payload}"));
        }
        sent += 1;
    }
    assert_eq!(subscribers(&server.hub, "flow").await, 3);
    // The others, on the same connection, still get everything.
    for i in 0..20 {
        publish(&server, "flow", &format!("after {i}")).await;
        for reader in &mut readers {
            assert_eq!(reader.data().await, format!("after {i}"));
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn a_reset_stream_frees_its_subscription_and_the_others_continue() {
    let server = TestServer::start(Hub::builder()).await;
    let (send, _conn) = connect(&server, 65_535).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(subscribe(&send, "/events/reset", None).await);
    }
    until_subscribers(&server.hub, "reset", 3).await;
    publish(&server, "reset", "before").await;
    for stream in &mut streams {
        assert_eq!(stream.data().await, "before");
    }
    let mut gone = streams.remove(1);
    gone.request.send_reset(Reason::CANCEL);
    until_subscribers(&server.hub, "reset", 2).await;
    publish(&server, "reset", "after").await;
    for stream in &mut streams {
        assert_eq!(stream.data().await, "after");
    }
    server.stop().await;
}

#[tokio::test]
async fn publishing_over_h2_reaches_subscribers() {
    let server = TestServer::start(Hub::builder()).await;
    let (send, _conn) = connect(&server, 65_535).await;
    let mut stream = subscribe(&send, "/events/pub", None).await;
    let req = Request::post("http://127.0.0.1/events/pub")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(())
        .unwrap();
    let mut ready = timeout(WAIT, send.clone().ready()).await.unwrap().unwrap();
    let (response, mut body) = ready.send_request(req, false).unwrap();
    body.send_data(Bytes::from_static(b"data=over+h2"), true)
        .unwrap();
    let response = timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let mut answer = response.into_body();
    let mut json = Vec::new();
    while let Some(chunk) = timeout(WAIT, answer.data()).await.unwrap() {
        json.extend_from_slice(&chunk.unwrap());
    }
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert!(json["id"].is_string(), "{json}");
    assert_eq!(stream.data().await, "over h2");
    // Without the token: refused, as over HTTP/1.1.
    let req = Request::post("http://127.0.0.1/events/pub")
        .body(())
        .unwrap();
    let mut ready = timeout(WAIT, send.clone().ready()).await.unwrap().unwrap();
    let (response, _) = ready.send_request(req, true).unwrap();
    let response = timeout(WAIT, response).await.unwrap().unwrap();
    assert_eq!(response.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_ends_h2_streams_with_a_retry_and_closes_the_connection() {
    let server = TestServer::start(
        Hub::builder().shutdown_retry(Duration::from_millis(1000), Duration::from_millis(5000)),
    )
    .await;
    let (send, conn) = connect(&server, 65_535).await;
    let mut streams = Vec::new();
    for i in 0..4 {
        streams.push(subscribe(&send, &format!("/events/bye{}", i % 2), None).await);
    }
    server.stop().await;
    for stream in &mut streams {
        match stream.next().await {
            Some(Item::Retry(d)) => {
                assert!((1000..=5000).contains(&(d.as_millis() as u64)), "{d:?}")
            }
            other => panic!("expected a retry before the end, got {other:?}"),
        }
        assert_eq!(stream.next().await, None);
        assert!(stream.body.is_end_stream(), "the stream ended cleanly");
    }
    // GOAWAY, then the connection closes.
    let ended = timeout(WAIT, conn)
        .await
        .expect("the connection stayed open");
    assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
}

#[tokio::test]
async fn an_idle_h2_stream_gets_heartbeats_while_lent_to_the_hub() {
    let server =
        TestServer::start(Hub::builder().heartbeat(Some(Duration::from_millis(150)))).await;
    let (send, _conn) = connect(&server, 65_535).await;
    let mut stream = subscribe(&send, "/events/quiet", None).await;
    for _ in 0..2 {
        assert_eq!(
            stream.next().await,
            Some(Item::Comment(" heartbeat".into()))
        );
    }
    // Live events still arrive between heartbeats.
    publish(&server, "quiet", "live").await;
    assert_eq!(stream.data().await, "live");
    server.stop().await;
}
