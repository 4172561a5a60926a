//! The subcommands of the `sse-client` binary, one file each, and what they share.

pub mod json;
pub mod listen;
pub mod parse;
pub mod publish;
pub mod url;

/// The single-threaded runtime `listen` and `publish` run on, with the library's tracing logs
/// (connect attempts, redirects, backoff) on stderr when `RUST_LOG` asks (`RUST_LOG=sse_client=debug`).
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
