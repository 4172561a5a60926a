//! The hub inside an axum application, over real loopback sockets: nested under `nest_service` (routes
//! relative to the mount point), mounted at the root (routes unchanged), and axum's graceful shutdown
//! with an open stream.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use sse_proto::Item;
use sse_server::{Hub, HubService};
use support::Reader;
use tokio::task::JoinHandle;

const TOKEN: &str = "mount-token";
/// Upper bound for one wait; reaching it means something hangs.
const WAIT: Duration = Duration::from_secs(10);

/// `app` served by axum on a free loopback port until `shutdown` completes.
async fn serve(
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (SocketAddr, JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    (addr, task)
}

async fn wait_for_subscriber(hub: &Hub, channel: &str) {
    tokio::time::timeout(WAIT, async {
        loop {
            let list = hub.channels().await.unwrap();
            if list.iter().any(|c| c.name == channel && c.subscribers > 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the subscriber never registered");
}

async fn post(url: &str, data: &str) -> reqwest::Response {
    support::client()
        .post(url)
        .bearer_auth(TOKEN)
        .form(&[("data", data)])
        .send()
        .await
        .unwrap()
}

async fn id_of(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = resp.json().await.unwrap();
    json["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn nest_service_routes_relative_to_the_mount_point() {
    let hub = Hub::builder().heartbeat(None).build();
    let app = Router::new()
        .route("/", get(|| async { "the application" }))
        .nest_service(
            "/events",
            HubService::new(hub.clone()).nested().publish_token(TOKEN),
        );
    let (addr, _server) = serve(app, std::future::pending()).await;
    let url = |path: &str| format!("http://{addr}{path}");

    let mut reader = Reader::open(&support::client(), &url("/events/news"), None).await;
    wait_for_subscriber(&hub, "news").await;
    let id = id_of(post(&url("/events/news"), "published").await).await;
    let m = reader.message().await.unwrap();
    assert_eq!(
        (m.last_event_id.as_str(), m.data.as_str()),
        (id.as_str(), "published")
    );

    let id = id_of(post(&url("/events"), "broadcast").await).await;
    let m = reader.message().await.unwrap();
    assert_eq!(
        (m.last_event_id.as_str(), m.data.as_str()),
        (id.as_str(), "broadcast")
    );

    let mut spaced = Reader::open(&support::client(), &url("/events/a%20b"), None).await;
    wait_for_subscriber(&hub, "a b").await;
    id_of(post(&url("/events/a%20b"), "percent-decoded").await).await;
    assert_eq!(spaced.message().await.unwrap().data, "percent-decoded");

    let closed = support::client()
        .delete(url("/events/news"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 200);
    let json: serde_json::Value = closed.json().await.unwrap();
    assert_eq!(json, serde_json::json!({"channel": "news", "closed": 1}));
    assert!(
        reader.message().await.is_none(),
        "DELETE ends the nested channel's stream"
    );

    // `GET /events` is a multi-channel subscription now (issue 14): without a channel it is a 400.
    let empty = support::client().get(url("/events")).send().await.unwrap();
    assert_eq!(empty.status(), 400);
    let refused = support::client().put(url("/events")).send().await.unwrap();
    assert_eq!(refused.status(), 405);
    assert_eq!(refused.headers()["allow"], "GET, HEAD, POST, OPTIONS");
    let unauthorized = support::client()
        .post(url("/events/news"))
        .form(&[("data", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let page = support::client().get(url("/")).send().await.unwrap();
    assert_eq!(page.text().await.unwrap(), "the application");
}

#[tokio::test]
async fn a_root_mount_keeps_every_route_of_the_hub() {
    let hub = Hub::builder().heartbeat(None).build();
    let app = Router::new()
        .route("/app", get(|| async { "the application" }))
        .fallback_service(HubService::new(hub.clone()).publish_token(TOKEN));
    let (addr, _server) = serve(app, std::future::pending()).await;
    let url = |path: &str| format!("http://{addr}{path}");

    let mut reader = Reader::open(&support::client(), &url("/events/news"), None).await;
    wait_for_subscriber(&hub, "news").await;
    let id = id_of(post(&url("/events/news"), "at the root").await).await;
    assert_eq!(reader.message().await.unwrap().last_event_id, id);

    let channels: serde_json::Value = support::client()
        .get(url("/channels"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(channels[0]["name"], "news");
    assert_eq!(channels[0]["subscribers"], 1);
    let health = support::client().get(url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = support::client().get(url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let missing = support::client().get(url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let json: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(
        json["error"],
        "no route for /nope: subscribe with GET /events/{channel}"
    );
}

#[tokio::test]
async fn axum_graceful_shutdown_ends_open_streams_and_returns() {
    let hub = Hub::builder().heartbeat(None).build();
    let app = Router::new().nest_service("/events", HubService::new(hub.clone()).nested());
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let shutdown = sse_server::graceful_shutdown(hub.clone(), async move {
        let _ = signalled.await;
    });
    let (addr, server) = serve(app, shutdown).await;

    let mut reader = Reader::open(
        &support::client(),
        &format!("http://{addr}/events/open"),
        None,
    )
    .await;
    wait_for_subscriber(&hub, "open").await;
    signal.send(()).unwrap();

    let mut items = Vec::new();
    while let Some(item) = reader.next().await {
        items.push(item);
    }
    assert!(
        matches!(items.as_slice(), [Item::Retry(_)]),
        "the stream ends with a retry: {items:?}"
    );
    tokio::time::timeout(WAIT, server)
        .await
        .expect("axum's graceful shutdown did not return with a stream open")
        .unwrap()
        .unwrap();
    assert!(hub.is_shutting_down());
}
