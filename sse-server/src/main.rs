//! `sse-server`: a ready-to-run SSE hub. `cargo run --release -p sse-server` serves a demo page on
//! http://127.0.0.1:8080/; `--help` lists every option.
#![forbid(unsafe_code)]

mod app;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = app::config::args();
    app::logging::init(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sse-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(app::run(args));
    // A blocked read of standard input (--stdin) would otherwise keep the process alive after shutdown.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "sse-server stopped");
            eprintln!("sse-server: {e}");
            ExitCode::FAILURE
        }
    }
}
