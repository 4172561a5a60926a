use sse_proto::Event;
use sse_server::Hub;
use tokio::io::{AsyncBufReadExt, BufReader};

/// Publishes each line of standard input on `channel` (the hub keeps serving after end of input).
pub(crate) async fn run(hub: Hub, channel: String) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                if let Err(e) = hub.publish(&channel, Event::message(line)).await {
                    tracing::warn!(error = %e, %channel, "could not publish a line from stdin");
                    if hub.is_shutting_down() {
                        return;
                    }
                }
            }
            Ok(None) => {
                tracing::info!(%channel, "end of standard input; still serving");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read standard input (is it UTF-8 text?); stopped reading it");
                return;
            }
        }
    }
}
