//! Mounting the hub in an axum application next to its own routes, with graceful shutdown.
//!
//! ```sh
//! cargo run -p sse-server --example axum
//! curl -N http://127.0.0.1:3001/events/news
//! curl -X POST http://127.0.0.1:3001/announce/hello   # the app publishes through the Hub handle
//! curl -H 'Authorization: Bearer change-me' -d data=hi http://127.0.0.1:3001/events/news
//! curl http://127.0.0.1:3001/healthz
//! ```
//!
//! Ctrl-C ends every open stream (with a randomised `retry:`), so axum's graceful shutdown returns.

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
        // The channels, relative to the mount point: GET/POST/DELETE /events/{channel}, POST /events.
        .nest_service(
            "/events",
            HubService::new(hub.clone())
                .nested()
                .publish_token("change-me"),
        )
        // `route_service` keeps the path whole, so a root-mounted service answers /healthz there.
        .route_service("/healthz", HubService::new(hub.clone()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("listening on http://{}", listener.local_addr()?);
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(sse_server::graceful_shutdown(hub, ctrl_c))
        .await?;
    Ok(())
}
