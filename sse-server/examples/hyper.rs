//! Mounting the hub's `tower::Service` in a bare hyper 1.x server, publishing from Rust.
//!
//! ```sh
//! cargo run -p sse-server --example hyper
//! curl -N http://127.0.0.1:3000/events/clock
//! ```

use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use sse_proto::Event;
use sse_server::{Hub, HubService};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = Hub::builder().replay_events(100).build();
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
    loop {
        let (stream, _) = listener.accept().await?;
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
