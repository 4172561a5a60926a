//! `sse-client`: listen to a Server-Sent Events stream, publish to a hub, or parse a recorded stream.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// A command line client for Server-Sent Events.
#[derive(Debug, Parser)]
#[command(name = "sse-client", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse a recorded event stream (a file, or standard input) and print one JSON object per line:
    /// {"type","data","lastEventId"} for each dispatched event and {"retry":N} for each valid retry field.
    Parse(cli::parse::ParseArgs),
    /// Listen to an event stream and print each event (human-readable, or --json lines like
    /// `parse`), reconnecting with Last-Event-ID as the library does. Status lines (connected,
    /// reconnecting in N s, replaying from id) go to standard error. Exits 0 after --max-events
    /// events or when the server answers 204. Exits 1 with a one-line error at once on a permanent
    /// failure (unsupported scheme, TLS or protocol mismatch, any 4xx but 429, quoting the server's
    /// error body; a 5xx/429 without --retry-server-errors; a wrong content type), or when
    /// connection failures go beyond --max-retries.
    Listen(cli::listen::ListenArgs),
    /// Publish one event to a hub (POST URL with {"data","event","id"} and the bearer token) and
    /// print the id it assigned; exits 1 with the hub's error message when it refuses.
    Publish(cli::publish::PublishArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Parse(args) => cli::parse::run(args),
        Command::Listen(args) => cli::listen::run(args),
        Command::Publish(args) => cli::publish::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sse-client: {err}");
            ExitCode::FAILURE
        }
    }
}
