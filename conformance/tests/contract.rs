//! The `contract-service` binary speaks the sse-contract-tests protocol: these tests play the harness
//! (a scripted stream endpoint that records every request, and a callback endpoint that records every
//! callback) against the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

/// The service under test, killed on drop.
struct Service {
    child: Child,
    base: String,
}

async fn start_service() -> Service {
    let mut child = Command::new(env!("CARGO_BIN_EXE_contract-service"))
        .args(["--port", "0"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let base = tokio::time::timeout(WAIT, async {
        loop {
            let line = lines.next_line().await.unwrap().expect("service exited");
            if let Some(url) = line.strip_prefix("contract-service listening on ") {
                return url.to_owned();
            }
        }
    })
    .await
    .expect("service did not start");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Service { child, base }
}

/// One request the stream endpoint received, and the handle that feeds its response body.
struct Connection {
    method: Method,
    headers: HeaderMap,
    body: Bytes,
    feed: mpsc::UnboundedSender<Bytes>,
}

/// The harness side: `ANY /stream` (scripted: each request hands the test a [`Connection`]; the body
/// stays open until the test drops the feed) and `POST /cb/{n}` (records callbacks).
struct FakeHarness {
    base: String,
    connections: mpsc::UnboundedReceiver<Connection>,
    callbacks: mpsc::UnboundedReceiver<(u64, Value)>,
    no_content: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct HarnessState {
    connections: mpsc::UnboundedSender<Connection>,
    callbacks: mpsc::UnboundedSender<(u64, Value)>,
    /// Answer stream requests with 204 No Content (the server-directed shutdown).
    no_content: Arc<AtomicBool>,
}

impl FakeHarness {
    async fn start() -> FakeHarness {
        let (ctx, connections) = mpsc::unbounded_channel();
        let (cbtx, callbacks) = mpsc::unbounded_channel();
        let no_content = Arc::new(AtomicBool::new(false));
        let state = HarnessState {
            connections: ctx,
            callbacks: cbtx,
            no_content: no_content.clone(),
        };
        let app = axum::Router::new()
            .route("/stream", axum::routing::any(stream))
            .route("/cb/{n}", axum::routing::post(callback))
            // The large-message callbacks are beyond axum's 2 MB default.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeHarness {
            base: format!("http://{addr}"),
            connections,
            callbacks,
            no_content,
            task,
        }
    }

    async fn connection(&mut self) -> Connection {
        tokio::time::timeout(WAIT, self.connections.recv())
            .await
            .expect("the client did not connect in time")
            .unwrap()
    }

    /// The next callback; asserts the counter in its path.
    async fn callback(&mut self, n: u64) -> Value {
        let (got, body) = tokio::time::timeout(WAIT, self.callbacks.recv())
            .await
            .unwrap_or_else(|_| panic!("no callback #{n} in time"))
            .unwrap();
        assert_eq!(got, n, "callbacks are numbered in order from 1: {body}");
        body
    }
}

async fn stream(
    State(state): State<HarnessState>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let (feed, rx) = mpsc::unbounded_channel::<Bytes>();
    let _ = state.connections.send(Connection {
        method,
        headers,
        body,
        feed,
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    if state.no_content.load(Ordering::SeqCst) {
        return axum::http::StatusCode::NO_CONTENT.into_response();
    }
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(axum::body::Body::from_stream(body))
        .unwrap()
}

async fn callback(
    State(state): State<HarnessState>,
    Path(n): Path<u64>,
    body: axum::Json<Value>,
) -> axum::http::StatusCode {
    let _ = state.callbacks.send((n, body.0));
    axum::http::StatusCode::ACCEPTED
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn create(service: &Service, body: Value) -> reqwest::Response {
    tokio::time::timeout(WAIT, http().post(&service.base).json(&body).send())
        .await
        .unwrap()
        .unwrap()
}

fn event(ty: &str, data: &str, id: Option<&str>) -> Value {
    let mut e = json!({"type": ty, "data": data});
    if let Some(id) = id {
        e["id"] = json!(id);
    }
    json!({"kind": "event", "event": e})
}

#[tokio::test]
async fn status_lists_capabilities_and_delete_stops_the_service() {
    let mut service = start_service().await;
    let status: Value = http()
        .get(&service.base)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let caps: Vec<&str> = status["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let mut sorted = caps.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "bom",
            "comments",
            "headers",
            "last-event-id",
            "post",
            "read-timeout",
            "report",
            "restart",
            "server-directed-shutdown-request",
        ],
        "exactly the capabilities the client has (not event-type-listeners)"
    );
    let resp = http().delete(&service.base).send().await.unwrap();
    assert!(resp.status().is_success());
    let exit = tokio::time::timeout(WAIT, service.child.wait())
        .await
        .expect("service did not stop after DELETE /")
        .unwrap();
    assert!(exit.success());
}

#[tokio::test]
async fn events_headers_last_event_id_restart_and_close() {
    let service = start_service().await;
    let mut h = FakeHarness::start().await;
    let resp = create(
        &service,
        json!({
            "streamUrl": format!("{}/stream", h.base),
            "callbackUrl": format!("{}/cb", h.base),
            "tag": "basic",
            "initialDelayMs": 50,
            "lastEventId": "start-7",
            "headers": {"x-custom": "yes", "authorization": "Bearer abc"},
        }),
    )
    .await;
    assert!(resp.status().is_success(), "{}", resp.status());
    let location = resp.headers()["location"].to_str().unwrap().to_owned();

    let c1 = h.connection().await;
    assert_eq!(c1.method, Method::GET);
    assert_eq!(c1.headers["x-custom"], "yes");
    assert_eq!(c1.headers["authorization"], "Bearer abc");
    assert_eq!(c1.headers["last-event-id"], "start-7");
    assert_eq!(c1.headers["accept"], "text/event-stream");
    c1.feed
        .send(Bytes::from(
            "data: hello\n\nevent: put\nid: 1\ndata: a\ndata: b\n\n: comment\nid: 2\n\ndata: after\n\n",
        ))
        .unwrap();
    assert_eq!(
        h.callback(1).await,
        event("message", "hello", Some("start-7"))
    );
    assert_eq!(h.callback(2).await, event("put", "a\nb", Some("1")));
    assert_eq!(
        h.callback(3).await,
        json!({"kind": "comment", "comment": " comment"})
    );
    assert_eq!(h.callback(4).await, event("message", "after", Some("2")));

    // restart: the connection is dropped and a new one resumes from the committed id.
    let resp = http()
        .post(&location)
        .json(&json!({"command": "restart"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let c2 = h.connection().await;
    assert_eq!(c2.headers["last-event-id"], "2");
    assert_eq!(c2.headers["x-custom"], "yes");
    c2.feed.send(Bytes::from("id: 3\ndata: again\n\n")).unwrap();
    assert_eq!(h.callback(5).await, event("message", "again", Some("3")));

    // The server drops the stream: an error callback, then a reconnection with the last id.
    drop(c2.feed);
    let err = h.callback(6).await;
    assert_eq!(err["kind"], "error", "{err}");
    assert!(err["comment"].as_str().unwrap().contains("closed"), "{err}");
    let c3 = h.connection().await;
    assert_eq!(c3.headers["last-event-id"], "3");
    drop(c1.feed);

    // listen is accepted; unknown commands are 400; close ends it; the stream is then unknown (404).
    let resp = http()
        .post(&location)
        .json(&json!({"command": "listen", "listen": {"type": "put"}}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let resp = http()
        .post(&location)
        .json(&json!({"command": "dance"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http().delete(&location).send().await.unwrap();
    assert!(resp.status().is_success());
    // The client hangs up: the feed's receiver (the response body) is dropped.
    tokio::time::timeout(WAIT, c3.feed.closed())
        .await
        .expect("the connection was not closed after DELETE");
    let resp = http().delete(&location).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = http()
        .post(&location)
        .json(&json!({"command": "restart"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    h.task.abort();
}

/// The harness's "default method and headers" and "sends ID of last received event" cases, with
/// `initialDelayMs: 0`.
#[tokio::test]
async fn default_request_and_resume_with_zero_initial_delay() {
    let service = start_service().await;
    let mut h = FakeHarness::start().await;
    let resp = create(
        &service,
        json!({
            "streamUrl": format!("{}/stream", h.base),
            "callbackUrl": format!("{}/cb", h.base),
            "initialDelayMs": 0,
        }),
    )
    .await;
    assert!(resp.status().is_success());
    let c1 = h.connection().await;
    assert_eq!(c1.method, Method::GET);
    assert_eq!(c1.headers["accept"], "text/event-stream");
    assert_eq!(c1.headers["cache-control"], "no-cache");
    assert!(c1.headers.get("last-event-id").is_none());
    c1.feed
        .send(Bytes::from("id: abc\ndata: Hello\n\ndata: World\n\n"))
        .unwrap();
    assert_eq!(h.callback(1).await, event("message", "Hello", Some("abc")));
    assert_eq!(h.callback(2).await, event("message", "World", Some("abc")));
    drop(c1.feed);
    assert_eq!(h.callback(3).await["kind"], "error");
    let c2 = h.connection().await;
    assert_eq!(c2.headers["last-event-id"], "abc");
    h.task.abort();
}

#[tokio::test]
async fn post_and_report_send_the_body_and_read_timeout_reconnects() {
    let service = start_service().await;
    let mut h = FakeHarness::start().await;
    for (method, content_type) in [("POST", None), ("REPORT", Some("application/json"))] {
        let mut headers = json!({});
        if let Some(ct) = content_type {
            headers["content-type"] = json!(ct);
        }
        let resp = create(
            &service,
            json!({
                "streamUrl": format!("{}/stream", h.base),
                "callbackUrl": format!("{}/cb", h.base),
                "method": method,
                "body": "{\"q\": 1}",
                "headers": headers,
                "readTimeoutMs": 300,
                "initialDelayMs": 10,
            }),
        )
        .await;
        assert!(resp.status().is_success());
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        let c = h.connection().await;
        assert_eq!(c.method.as_str(), method);
        assert_eq!(c.body, "{\"q\": 1}");
        assert_eq!(
            c.headers["content-type"],
            content_type.unwrap_or("text/plain")
        );
        // Silence longer than the read timeout: the client gives up on the connection, says so, and
        // reconnects with the same method and body.
        let err = h.callback(1).await;
        assert_eq!(err["kind"], "error");
        assert!(err["comment"].as_str().unwrap().contains("idle"), "{err}");
        let again = h.connection().await;
        assert_eq!(again.method.as_str(), method);
        assert_eq!(again.body, "{\"q\": 1}");
        drop((c, again));
        http().delete(&location).send().await.unwrap();
        // Drain whatever the closed stream reported meanwhile, before the next round renumbers.
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(200), h.callbacks.recv()).await
        {}
        while h.connections.try_recv().is_ok() {}
    }
    h.task.abort();
}

#[tokio::test]
async fn invalid_create_requests_are_400() {
    let service = start_service().await;
    for body in [
        json!({"callbackUrl": "http://127.0.0.1:1/cb"}),
        json!({"streamUrl": "not a url", "callbackUrl": "http://127.0.0.1:1/cb"}),
        json!({"streamUrl": "http://127.0.0.1:1/s", "callbackUrl": "http://127.0.0.1:1/cb", "headers": {"bad header": "x"}}),
        json!({"streamUrl": "http://127.0.0.1:1/s", "callbackUrl": "http://127.0.0.1:1/cb", "method": "BAD METHOD"}),
    ] {
        let resp = create(&service, body.clone()).await;
        assert_eq!(resp.status(), 400, "{body}");
    }
    let resp = http()
        .post(format!("{}/streams/99", service.base))
        .json(&json!({"command": "restart"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

/// The harness's `comments`, `bom` and "large message" cases: comments come as comment callbacks
/// in stream order, a BOM split across writes is dropped, and a line beyond the library's 1 MiB
/// default (3 MiB here, in two writes) passes through the service's raised limits.
#[tokio::test]
async fn comments_bom_and_a_line_beyond_one_mib_pass_through() {
    let service = start_service().await;
    let mut h = FakeHarness::start().await;
    let resp = create(
        &service,
        json!({
            "streamUrl": format!("{}/stream", h.base),
            "callbackUrl": format!("{}/cb", h.base),
        }),
    )
    .await;
    assert!(resp.status().is_success());
    let c1 = h.connection().await;
    c1.feed.send(Bytes::from_static(b"\xEF\xBB")).unwrap();
    c1.feed
        .send(Bytes::from_static(b"\xBF:Hello\ndata: a\n\n"))
        .unwrap();
    assert_eq!(
        h.callback(1).await,
        json!({"kind": "comment", "comment": "Hello"})
    );
    assert_eq!(h.callback(2).await, event("message", "a", None));

    let big = "x".repeat(3 * 1024 * 1024);
    let line = format!("data: {big}");
    let (first, second) = line.split_at(line.len() / 2);
    c1.feed.send(Bytes::from(first.to_owned())).unwrap();
    c1.feed
        .send(Bytes::from(format!("{second}\n\n:World\n")))
        .unwrap();
    let got = h.callback(3).await;
    assert_eq!(
        got["kind"],
        "event",
        "{}",
        &got.to_string()[..200.min(got.to_string().len())]
    );
    assert!(
        got["event"]["data"].as_str() == Some(big.as_str()),
        "the large event was altered"
    );
    assert_eq!(
        h.callback(4).await,
        json!({"kind": "comment", "comment": "World"})
    );
    drop(c1.feed);
    h.task.abort();
}

/// `server-directed-shutdown-request`: after a 204 No Content the client reports one error and
/// never reconnects (the second request never comes).
#[tokio::test]
async fn no_content_stops_the_client_for_good() {
    let service = start_service().await;
    let mut h = FakeHarness::start().await;
    let resp = create(
        &service,
        json!({
            "streamUrl": format!("{}/stream", h.base),
            "callbackUrl": format!("{}/cb", h.base),
            "initialDelayMs": 0,
        }),
    )
    .await;
    assert!(resp.status().is_success());
    let c1 = h.connection().await;
    c1.feed.send(Bytes::from_static(b"data: a\n\n")).unwrap();
    assert_eq!(h.callback(1).await, event("message", "a", None));
    h.no_content.store(true, Ordering::SeqCst);
    drop(c1.feed);
    assert_eq!(h.callback(2).await["kind"], "error");
    // The reconnection that gets the 204.
    let _c2 = h.connection().await;
    let err = h.callback(3).await;
    assert_eq!(err["kind"], "error", "{err}");
    assert!(err["comment"].as_str().unwrap().contains("204"), "{err}");
    // No third request: with a 0 ms delay, a reconnection would come well within this bound.
    let again = tokio::time::timeout(Duration::from_millis(500), h.connections.recv()).await;
    assert!(again.is_err(), "the client reconnected after 204");
    h.task.abort();
}
