//! Limits with clear answers: connections in total (503) and per IP (429) with Retry-After, live
//! channels (503), channel names (400), publish size (413), request head size (431), header read
//! timeout against slowloris and idle keep-alive connections — and none of them cuts a live stream.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod security_support;
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use security_support::{TOKEN, WAIT, raw, read_head, status_of};
use sse_server::Limits;
use support::Reader;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Opens a subscription from `source` (a loopback address) on a raw socket and returns it once the
/// response head says 200, so the connection counts as open on the server.
async fn hold_stream(addr: SocketAddr, source: &str, channel: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut s = tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .unwrap()
        .unwrap();
    s.write_all(format!("GET /events/{channel} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert_eq!(status_of(&head), 200, "{head}");
    s
}

/// One request from `source`; the raw response until the server closes.
async fn request_from(addr: SocketAddr, source: &str, path: &str) -> String {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let _ = s
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Retries `path` from `source` until it answers 200 (a closed connection is freed asynchronously).
async fn eventually_ok(addr: SocketAddr, source: &str, path: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let resp = request_from(addr, source, path).await;
        if status_of(&resp) == 200 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never freed: {resp}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn connections_per_ip_get_429_and_in_total_503_with_retry_after() {
    let hub = security_support::start(
        sse_server::Hub::builder(),
        |s| s,
        Limits::default()
            .max_connections(3)
            .max_connections_per_ip(2)
            .retry_after(Duration::from_secs(7)),
    )
    .await;
    let a1 = hold_stream(hub.addr, "127.0.0.1", "x").await;
    let _a2 = hold_stream(hub.addr, "127.0.0.1", "x").await;
    let resp = request_from(hub.addr, "127.0.0.1", "/healthz").await;
    assert_eq!(status_of(&resp), 429, "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("retry-after: 7"),
        "{resp}"
    );
    assert!(
        resp.contains("too many connections from your address (limit 2)"),
        "{resp}"
    );
    // Another address still gets in, up to the total.
    let _b1 = hold_stream(hub.addr, "127.0.0.2", "x").await;
    let resp = request_from(hub.addr, "127.0.0.3", "/healthz").await;
    assert_eq!(status_of(&resp), 503, "{resp}");
    assert!(
        resp.to_ascii_lowercase().contains("retry-after: 7"),
        "{resp}"
    );
    assert!(resp.contains("connection limit (3)"), "{resp}");
    // Closing a connection frees its place; the held streams still work.
    drop(a1);
    eventually_ok(hub.addr, "127.0.0.3", "/healthz").await;
    assert_eq!(hub.hub.channels().await.unwrap()[0].subscribers, 2);
    hub.stop().await;
}

#[tokio::test]
async fn channels_names_and_sizes_have_limits_with_precise_answers() {
    let hub = security_support::start(
        sse_server::Hub::builder()
            .max_channels(2)
            .max_event_bytes(1024),
        |s| s,
        Limits::default(),
    )
    .await;
    let c = reqwest::Client::new();
    let _a = Reader::open(&c, &hub.url("/events/a"), None).await;
    let _b = Reader::open(&c, &hub.url("/events/b"), None).await;
    let resp = c.get(hub.url("/events/c")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("limit of 2 live channels")
    );
    let publish = |channel: &str, body: String| {
        c.post(hub.url(&format!("/events/{channel}")))
            .bearer_auth(TOKEN)
            .header("content-type", "text/plain")
            .body(body)
            .send()
    };
    // A full table refuses subscribers, never a publish (issue 16: `security_flood.rs`).
    assert_eq!(publish("c", "x".into()).await.unwrap().status(), 200);
    assert_eq!(publish("a", "x".into()).await.unwrap().status(), 200);
    // 413 over the event size, 400 for names too long or with control characters.
    let resp = publish("a", "x".repeat(2000)).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert!(resp.text().await.unwrap().contains("limit"));
    let long = "n".repeat(257);
    for path in [
        format!("/events/{long}"),
        "/events/a%0Ab".into(),
        "/events/a%00".into(),
    ] {
        let resp = c.get(hub.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        assert!(resp.text().await.unwrap().contains("invalid channel name"));
    }
    drop(_a);
    hub.stop().await;
}

#[tokio::test]
async fn oversized_request_heads_get_431() {
    let hub = security_support::start(
        sse_server::Hub::builder(),
        |s| s,
        Limits::default().max_header_bytes(8 * 1024),
    )
    .await;
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    let resp = raw(hub.addr, big.as_bytes(), WAIT).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    // Many small headers add up the same way.
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..90 {
        many.push_str(&format!("X-H{i}: {}\r\n", "b".repeat(100)));
    }
    many.push_str("Connection: close\r\n\r\n");
    let resp = raw(hub.addr, many.as_bytes(), WAIT).await;
    assert!(matches!(status_of(&resp), 431), "{resp}");
    // A head under the limit is served.
    let ok = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Small: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(4 * 1024)
    );
    assert_eq!(status_of(&raw(hub.addr, ok.as_bytes(), WAIT).await), 200);
    hub.stop().await;
}

/// True when the server closes `s` (EOF or reset) within `WAIT`.
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(WAIT, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_by_the_header_read_timeout_but_streams_are_not() {
    let hub = security_support::start(
        sse_server::Hub::builder().heartbeat(None),
        |s| s,
        Limits::default().header_read_timeout(Duration::from_millis(300)),
    )
    .await;
    // A subscriber whose stream outlives the timeout many times over.
    let c = reqwest::Client::new();
    let mut sub = Reader::open(&c, &hub.url("/events/live"), None).await;

    // Connects and sends nothing.
    let mut silent = TcpStream::connect(hub.addr).await.unwrap();
    // Sends half a request head, then stalls (slowloris).
    let mut slow = TcpStream::connect(hub.addr).await.unwrap();
    slow.write_all(b"GET /events/x HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n")
        .await
        .unwrap();
    // Starts like an HTTP/2 preface and stalls.
    let mut h2ish = TcpStream::connect(hub.addr).await.unwrap();
    h2ish.write_all(b"PRI * HTT").await.unwrap();
    // Publishes once on a keep-alive connection, then idles.
    let mut idle = TcpStream::connect(hub.addr).await.unwrap();
    idle.write_all(
        format!(
            "POST /events/live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert_eq!(status_of(&read_head(&mut idle).await), 200);

    for (name, s) in [
        ("silent", &mut silent),
        ("slowloris", &mut slow),
        ("partial h2 preface", &mut h2ish),
        ("idle keep-alive", &mut idle),
    ] {
        assert!(
            closed_by_server(s).await,
            "{name} connection was not closed"
        );
    }
    // The stream is still up: it received the publish and receives more after all the timeouts fired.
    assert_eq!(sub.message().await.unwrap().data, "hello");
    hub.hub
        .publish("live", sse_proto::Event::message("still here"))
        .await
        .unwrap();
    assert_eq!(sub.message().await.unwrap().data, "still here");
    hub.stop().await;
}
