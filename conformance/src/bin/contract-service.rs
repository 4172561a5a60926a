//! `contract-service`: runs `sse-client` under LaunchDarkly's sse-contract-tests harness.
//!
//! ```text
//! cargo run -p conformance --bin contract-service -- --port 8000
//! # then, from a checkout of launchdarkly/sse-contract-tests:
//! go run . --url http://localhost:8000
//! ```
#![forbid(unsafe_code)]

#[path = "../contract/mod.rs"]
mod contract;

use std::process::ExitCode;

use clap::Parser;

/// A test service for LaunchDarkly's sse-contract-tests, exposing the sse-client crate through the
/// harness's REST protocol (docs/service_spec.md of launchdarkly/sse-contract-tests).
#[derive(Debug, Parser)]
#[command(name = "contract-service", version, about)]
struct Args {
    /// Port to listen on (0 picks a free one; the address is printed on standard error).
    #[arg(long, env = "CONTRACT_SERVICE_PORT", default_value_t = 8000)]
    port: u16,
    /// Address to bind.
    #[arg(long, env = "CONTRACT_SERVICE_HOST", default_value = "127.0.0.1")]
    host: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = async {
        let listener = contract::bind(&format!("{}:{}", args.host, args.port)).await?;
        if let Ok(addr) = listener.local_addr() {
            eprintln!("contract-service listening on http://{addr}");
        }
        contract::serve(listener).await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("contract-service: {e}");
            ExitCode::FAILURE
        }
    }
}
