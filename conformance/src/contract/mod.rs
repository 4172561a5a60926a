//! A test service for LaunchDarkly's `sse-contract-tests` harness, exposing `sse-client` through the
//! REST protocol of its `docs/service_spec.md`:
//!
//! | request                  | does                                                              |
//! |--------------------------|-------------------------------------------------------------------|
//! | `GET /`                  | `{"capabilities": [...]}`                                         |
//! | `DELETE /`               | stops the service                                                 |
//! | `POST /`                 | creates a stream (`streamUrl`, `callbackUrl`, ...): 201 + `Location` |
//! | `POST /streams/{id}`     | a command: `restart` (reconnect now), `listen` (no-op); 400 unknown, 404 no stream |
//! | `DELETE /streams/{id}`   | closes the stream; 404 when there is none                         |
//!
//! Every event, comment and error of a stream is POSTed to `{callbackUrl}/{n}`, n = 1, 2, ... in
//! order.

pub mod protocol;
pub mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{mpsc, watch};

use protocol::{CAPABILITIES, Command, CreateStream, Status};
use stream::{Control, Spec};

/// What can go wrong in the service.
#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    /// A create request the harness should not have sent (answered 400).
    #[error("invalid stream request: {0}")]
    InvalidRequest(String),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}; pick another --port")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the service stopped with an I/O error: {0}")]
    Serve(#[source] std::io::Error),
}

#[derive(Clone)]
struct App {
    streams: Arc<Mutex<HashMap<u64, mpsc::Sender<Control>>>>,
    next_id: Arc<Mutex<u64>>,
    client: reqwest::Client,
    stop: watch::Sender<bool>,
}

impl App {
    fn streams(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Control>>> {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Serves the protocol on `listener` until `DELETE /` (or the process is stopped).
pub async fn serve(listener: tokio::net::TcpListener) -> Result<(), ContractError> {
    let (stop, mut stopped) = watch::channel(false);
    let app = App {
        streams: Arc::default(),
        next_id: Arc::default(),
        client: reqwest::Client::new(),
        stop,
    };
    let streams = app.streams.clone();
    let router = axum::Router::new()
        .route("/", get(status).post(create).delete(shutdown))
        .route("/streams/{id}", post(command).delete(close))
        .with_state(app);
    let result = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await
        .map_err(ContractError::Serve);
    // Dropping the senders ends every stream task.
    streams
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    result
}

/// Binds `addr` and serves.
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener, ContractError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ContractError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

async fn status() -> Json<Status> {
    Json(Status {
        capabilities: CAPABILITIES.to_vec(),
    })
}

async fn shutdown(State(app): State<App>) -> StatusCode {
    tracing::info!("stop requested by the harness");
    let _ = app.stop.send(true);
    StatusCode::NO_CONTENT
}

async fn create(State(app): State<App>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let request: CreateStream = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")).into_response(),
    };
    let tag = request.tag.clone().unwrap_or_default();
    let spec = match Spec::parse(request) {
        Ok(spec) => spec,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let id = {
        let mut next = app.next_id.lock().unwrap_or_else(PoisonError::into_inner);
        *next += 1;
        *next
    };
    let (tx, rx) = mpsc::channel(8);
    app.streams().insert(id, tx);
    tracing::info!(id, %tag, "stream created");
    tokio::spawn(stream::run(spec, app.client.clone(), rx));
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let location = format!("http://{host}/streams/{id}");
    (StatusCode::CREATED, [(header::LOCATION, location)]).into_response()
}

async fn command(State(app): State<App>, Path(id): Path<u64>, body: axum::body::Bytes) -> Response {
    let Some(tx) = app.streams().get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, format!("no stream {id}")).into_response();
    };
    match serde_json::from_slice::<Command>(&body) {
        Ok(Command::Listen) => StatusCode::NO_CONTENT.into_response(),
        Ok(Command::Restart) => {
            let _ = tx.send(Control::Restart).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("unknown command: {e}")).into_response(),
    }
}

async fn close(State(app): State<App>, Path(id): Path<u64>) -> StatusCode {
    match app.streams().remove(&id) {
        Some(_) => {
            tracing::info!(id, "stream closed");
            StatusCode::NO_CONTENT
        }
        None => StatusCode::NOT_FOUND,
    }
}
