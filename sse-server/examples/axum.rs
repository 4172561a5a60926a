//! Mounting the hub in an axum application next to its own routes.
//!
//! ```sh
//! cargo run -p sse-server --example axum
//! curl -N http://127.0.0.1:3001/events/news
//! curl -X POST http://127.0.0.1:3001/announce/hello   # the app publishes through the Hub handle
//! curl -H 'Authorization: Bearer change-me' -d data=hi http://127.0.0.1:3001/events/news
//! ```

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use sse_proto::Event;
use sse_server::{Hub, HubService};

async fn announce(State(hub): State<Hub>, Path(text): Path<String>) -> String {
    match hub.publish("news", Event::message(text)).await {
        Ok(id) => format!("published {id}\n"),
        Err(e) => format!("failed: {e}\n"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::builder().cors_origin("*").build();
    let app = Router::new()
        .route("/", get(|| async { "try GET /events/news\n" }))
        .route("/announce/{text}", post(announce))
        .with_state(hub.clone())
        // Everything else (/events/..., /channels, /healthz, /metrics) is the hub's.
        .fallback_service(HubService::new(hub.clone()).publish_token("change-me"));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("listening on http://{}", listener.local_addr()?);
    let shutdown_hub = hub.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            // End every stream (with a randomised retry) so that axum's graceful shutdown can finish.
            shutdown_hub.shutdown().await;
        })
        .await?;
    Ok(())
}
