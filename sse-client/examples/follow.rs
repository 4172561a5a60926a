//! Follow an event stream and print each event, resuming where it left off after any disconnection.
//!
//! ```sh
//! cargo run -p sse-client --example follow -- http://127.0.0.1:8080/events/x
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Duration;

use futures::StreamExt;
use sse_client::{Backoff, Event, EventSource, RetryPolicy};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080/events/x".to_owned());
    let mut source = EventSource::builder(&url)
        // The hub sends a heartbeat every 15 s: 45 s of silence means the connection is dead.
        .idle_timeout(Some(Duration::from_secs(45)))
        .retry_policy(
            RetryPolicy::new()
                .backoff(Backoff::new().max_delay(Duration::from_secs(20)))
                .retry_server_errors(true),
        )
        .build()?;
    while let Some(item) = source.next().await {
        match item {
            Ok(Event::Open) => eprintln!(
                "connected to {} (last event id {:?})",
                source.url(),
                source.last_event_id()
            ),
            Ok(Event::Message(m)) => println!("[{}] {} {}", m.last_event_id, m.event_type, m.data),
            Ok(_) => {}
            Err(e) if e.is_fatal() => return Err(e.into()),
            Err(e) => eprintln!("{e}"),
        }
    }
    Ok(())
}
