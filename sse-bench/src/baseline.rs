//! The baseline a Rust user would otherwise write: axum's `Sse` over a `tokio::sync::broadcast`
//! channel per channel name, with a bearer-token `POST /events/{channel}` (body = data).
//!
//! Kept deliberately idiomatic (the axum example's shape): each subscriber re-encodes each event, and a
//! lagging subscriber silently skips what it missed (`BroadcastStream` yields `Lagged`, filtered out) —
//! the benchmark counts that as lost.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use axum::serve::ListenerExt;
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use crate::Error;

#[derive(Clone)]
struct AppState {
    token: Arc<str>,
    capacity: usize,
    channels: Arc<Mutex<HashMap<String, broadcast::Sender<String>>>>,
}

impl AppState {
    fn sender(&self, channel: &str) -> broadcast::Sender<String> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(channel.to_owned())
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .clone()
    }
}

async fn subscribe(
    State(state): State<AppState>,
    Path(channel): Path<String>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.sender(&channel).subscribe();
    let stream = BroadcastStream::new(rx)
        .filter_map(|msg| async move { msg.ok().map(|data| Ok(Event::default().data(data))) });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn publish(
    State(state): State<AppState>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let expected = format!("Bearer {}", state.token);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, "{\"error\":\"bad token\"}".into());
    }
    let receivers = state.sender(&channel).send(body).unwrap_or(0);
    (StatusCode::OK, format!("{{\"receivers\":{receivers}}}"))
}

/// Serves the baseline on `listen` until the process is killed; prints
/// `baseline listening on http://ADDR/` on standard error once bound.
pub async fn serve(listen: &str, token: &str, capacity: usize) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("baseline listening on http://{}/", listener.local_addr()?);
    serve_on(listener, token, capacity).await
}

/// Serves the baseline on a bound listener, HTTP/1.1 and cleartext HTTP/2 (prior knowledge) alike,
/// until the listener fails.
///
/// ```no_run
/// # async fn run() -> Result<(), sse_bench::Error> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// sse_bench::baseline::serve_on(listener, "token", 256).await
/// # }
/// ```
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    token: &str,
    capacity: usize,
) -> Result<(), Error> {
    let state = AppState {
        token: Arc::from(token),
        capacity: capacity.max(1),
        channels: Arc::default(),
    };
    let app = Router::new()
        .route("/events/{channel}", get(subscribe).post(publish))
        .with_state(state);
    // Same socket option as sse-server, so Nagle's algorithm does not skew the comparison.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    // axum::serve uses hyper-util's auto builder: with axum's `http2` feature it also speaks h2c.
    axum::serve(listener, app).await?;
    Ok(())
}
