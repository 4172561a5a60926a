//! Mounting the hub's `tower::Service` in a bare hyper 1.x server, publishing from Rust, with graceful
//! shutdown.
//!
//! ```sh
//! cargo run -p sse-server --example hyper
//! curl -N http://127.0.0.1:3000/events/clock
//! ```
//!
//! Ctrl-C ends every open stream (with a randomised `retry:`), then waits for the connections to finish.
//! ([`sse_server::Server`] does all of this, and more, by itself.)

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use sse_proto::Event;
use sse_server::{Hub, HubService};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::builder().replay_events(100).build();
    // Mounted at the root of the connection: it answers /events/{channel}, /channels, /healthz, /metrics.
    let service = HubService::new(hub.clone());

    // Publish from the application itself: no HTTP publish endpoint needs to be exposed.
    let clock = hub.clone();
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            n += 1;
            if clock
                .publish("clock", Event::message(format!("tick {n}")))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "subscribe with: curl -N http://{}/events/clock",
        listener.local_addr()?
    );
    let builder = auto::Builder::new(TokioExecutor::new());
    let connections = GracefulShutdown::new();
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let shutdown = sse_server::graceful_shutdown(hub, ctrl_c);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let conn = builder
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service.clone()))
                    .into_owned();
                let conn = connections.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            // The hub has ended every stream: stop accepting and let the connections finish.
            () = &mut shutdown => break,
        }
    }
    connections.shutdown().await;
    Ok(())
}
