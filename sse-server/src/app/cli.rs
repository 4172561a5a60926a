use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use http::{HeaderName, HeaderValue};

/// A Server-Sent Events hub: subscribe with GET /events/{channel}, publish with POST /events/{channel}.
///
/// With no options it listens on 127.0.0.1:8080 with an in-memory replay window, serves a demo page at
/// / and ticks a clock on the `demo` channel. Every option can also be set by the environment variable
/// shown, or by its name as a key of a TOML file given with --config (flag > environment > file).
#[derive(Debug, Parser)]
#[command(name = "sse-server", version, about, long_about)]
pub(crate) struct Args {
    /// Address to listen on (host:port; port 0 picks a free one).
    #[arg(
        long,
        env = "SSE_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub(crate) listen: String,

    /// Length of the queue of connections the kernel completed but the server has not accepted yet
    /// (the listen backlog). A reconnect storm (thousands of clients within a second, as after a
    /// load-balancer failover) overflows a short queue and clients wait for SYN retransmits (1 s,
    /// then 3 s). The kernel caps it at net.core.somaxconn (4096 on recent Linux).
    #[arg(
        long,
        env = "SSE_LISTEN_BACKLOG",
        default_value_t = 4096,
        value_name = "N"
    )]
    pub(crate) listen_backlog: u32,

    /// Serve GET /metrics on this address (host:port, e.g. a private interface) instead of on --listen,
    /// whose /metrics then answers 404. Without it, /metrics is served on --listen, to anyone who can
    /// reach it.
    #[arg(long, env = "SSE_METRICS_LISTEN", value_name = "ADDR")]
    pub(crate) metrics_listen: Option<String>,

    /// Bearer token required to publish, broadcast and close channels. Without it, one is generated at
    /// start-up and printed.
    #[arg(
        long,
        env = "SSE_PUBLISH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub(crate) publish_token: Option<String>,

    /// Serve the files of DIR (DIR/index.html replaces the demo page at /).
    #[arg(long = "static", env = "SSE_STATIC", value_name = "DIR")]
    pub(crate) static_dir: Option<PathBuf>,

    /// Publish each line of standard input as an event on CHANNEL.
    #[arg(long, env = "SSE_STDIN", value_name = "CHANNEL")]
    pub(crate) stdin: Option<String>,

    /// Seconds between heartbeat comments on idle streams (0: none).
    #[arg(long, env = "SSE_HEARTBEAT", default_value_t = 15, value_name = "SECS")]
    pub(crate) heartbeat: u64,

    /// Events kept per channel for Last-Event-ID replay (0: no replay).
    #[arg(
        long,
        env = "SSE_REPLAY_EVENTS",
        default_value_t = 1000,
        value_name = "N"
    )]
    pub(crate) replay_events: usize,

    /// Encoded bytes kept per channel for replay.
    #[arg(long, env = "SSE_REPLAY_BYTES", default_value_t = 8 * 1024 * 1024, value_name = "N")]
    pub(crate) replay_bytes: usize,

    /// Seconds an event stays available for replay.
    #[arg(
        long,
        env = "SSE_REPLAY_AGE",
        default_value_t = 3600,
        value_name = "SECS"
    )]
    pub(crate) replay_age: u64,

    /// Keep the replay window on disk in DIR (file DIR/replay.redb) so that a restart or a crash loses no
    /// acknowledged event; without it the window is in memory only.
    #[arg(long, env = "SSE_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,

    /// Keep the replay window in Redis (one Redis Stream per channel) and share channels with every
    /// sse-server started with the same URL: a cluster behind any load balancer, where an event
    /// published on one node reaches subscribers on all of them and Last-Event-ID resumes on any.
    /// redis://host:port[/db], rediss://… (TLS), redis+cluster://HOST:PORT[,HOST:PORT...] (rediss+cluster://),
    /// redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME (rediss+sentinel://).
    #[arg(
        long,
        env = "SSE_REDIS",
        value_name = "URL",
        conflicts_with = "data_dir"
    )]
    pub(crate) redis: Option<String>,

    /// With --redis: when a publish is acknowledged. `primary`: once the Redis primary stored it (a
    /// primary that dies before its replica copied it loses it); `replicated`: once a replica confirmed
    /// it too (`WAIT 1 <--redis-wait-ms>`), else 503 (not acknowledged; the event may still appear).
    #[arg(long, env = "SSE_REDIS_ACK", value_enum, default_value_t = RedisAck::Primary, requires = "redis")]
    pub(crate) redis_ack: RedisAck,

    /// With --redis-ack replicated: how long a publish waits for a replica to confirm it before it
    /// answers 503.
    #[arg(
        long,
        env = "SSE_REDIS_WAIT_MS",
        default_value_t = 500,
        value_name = "MS",
        requires = "redis"
    )]
    pub(crate) redis_wait_ms: u64,

    /// Discard the store in --data-dir (its events and ids) and start fresh, e.g. after it was reported
    /// damaged.
    #[arg(long, env = "SSE_RESET_DATA_DIR", requires = "data_dir")]
    pub(crate) reset_data_dir: bool,

    /// With --data-dir: `group` lets the publishes queued while a commit runs (plus those arriving within
    /// --group-commit-ms) share the next commit; `per-publish` commits (fsyncs) each publish on its own.
    /// Both answer a publish only once it is on disk.
    #[arg(long, env = "SSE_DURABILITY", value_enum, default_value_t = Durability::Group, requires = "data_dir")]
    pub(crate) durability: Durability,

    /// With --durability group: the longest a publish waits for others to join its commit (0: only the
    /// publishes already queued share it, nobody waits). Raising it costs a lone publisher this much per
    /// publish (see the README's measurement) and only pays when fsync is slow.
    #[arg(
        long,
        env = "SSE_GROUP_COMMIT_MS",
        default_value_t = 0,
        value_name = "MS"
    )]
    pub(crate) group_commit_ms: u64,

    /// Allow cross-origin requests from ORIGIN (repeatable; `*` for any; comma-separated in the env var).
    #[arg(
        long = "cors-origin",
        env = "SSE_CORS_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub(crate) cors_origin: Vec<String>,

    /// Let the origins given by name with --cors-origin send cookies (e.g. the JWT cookie) to the hub:
    /// answers to them carry Access-Control-Allow-Credentials: true, so a page on such an origin can use
    /// `new EventSource(url, {withCredentials: true})`. Origins let in only by `*` never get it.
    #[arg(long, env = "SSE_CORS_CREDENTIALS")]
    pub(crate) cors_credentials: bool,

    /// Read the publish token from FILE (surrounding whitespace is ignored), instead of giving it on the
    /// command line where other users of the machine can see it.
    #[arg(
        long,
        env = "SSE_PUBLISH_TOKEN_FILE",
        value_name = "FILE",
        value_parser = read_token_file,
        conflicts_with = "publish_token"
    )]
    // The token itself, read from the file while the flags are parsed.
    pub(crate) publish_token_file: Option<String>,

    /// Add a response header, written 'Name: value' (repeatable; newline-separated in the env var).
    #[arg(long = "header", env = "SSE_HEADER", value_name = "'K: V'", value_parser = parse_header, value_delimiter = '\n')]
    pub(crate) header: Vec<(HeaderName, HeaderValue)>,

    /// PEM certificate chain: serve HTTPS (needs --tls-key).
    #[arg(long, env = "SSE_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, env = "SSE_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,

    /// Log format on standard error (RUST_LOG sets the level, default info).
    #[arg(long, env = "SSE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,

    /// Largest event accepted, in encoded bytes (bigger publishes get 413).
    #[arg(long, env = "SSE_MAX_EVENT_BYTES", default_value_t = 1024 * 1024, value_name = "N")]
    pub(crate) max_event_bytes: usize,

    /// Events queued per subscriber; one that falls further behind is disconnected (it catches up
    /// through replay when it reconnects).
    #[arg(long, env = "SSE_QUEUE_SIZE", default_value_t = 256, value_name = "N")]
    pub(crate) queue_size: usize,

    /// Bytes of events a subscriber may be owed (in its queue, or in its channel's log while a
    /// flusher writes it) before it is disconnected as too slow; never less than --max-event-bytes.
    /// Bounds a stalled reader by bytes as well as by --queue-size events.
    #[arg(long, env = "SSE_MAX_SUBSCRIBER_BUFFER", default_value_t = 4 * 1024 * 1024, value_name = "BYTES")]
    pub(crate) max_subscriber_buffer: usize,

    /// Write coalescing under load, in milliseconds: the longest pause between two write rounds,
    /// taken after a round of 1 ms or more, and only when events come fast enough that it would
    /// gather two more (0 turns it off). An event that finds the writers idle goes out at once.
    /// Fewer, larger writes for at most this much latency.
    #[arg(long, env = "SSE_COALESCE_MS", default_value_t = 20, value_name = "MS")]
    pub(crate) coalesce_ms: u64,

    /// Do not tick the clock on the `demo` channel.
    #[arg(long, env = "SSE_NO_DEMO")]
    pub(crate) no_demo: bool,

    #[command(flatten)]
    pub(crate) security: super::security::SecurityArgs,
}

/// When a publish is acknowledged relative to the disk (see `sse_server::CommitMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Durability {
    /// Group commit with a bounded delay (--group-commit-ms).
    Group,
    /// One commit and fsync per publish.
    PerPublish,
}

/// When a publish to Redis is acknowledged (--redis-ack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RedisAck {
    /// Once the primary stored it.
    Primary,
    /// Once a replica confirmed it too.
    Replicated,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not a header: write it as 'Name: value'"))?;
    let name = HeaderName::try_from(name.trim())
        .map_err(|e| format!("bad header name {:?}: {e}", name.trim()))?;
    let value = HeaderValue::try_from(value.trim())
        .map_err(|e| format!("bad value for header {name}: {e}"))?;
    Ok((name, value))
}

/// The token in the file at `path`: its content without surrounding whitespace, which must not be empty.
fn read_token_file(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the publish token from {path}: {e}"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!(
            "the publish token file {path} is empty: write the token into it"
        ));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_parses_headers() {
        Args::command().debug_assert();
        assert!(parse_header("X-A: b c").is_ok());
        assert!(parse_header("nocolon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }

    /// The binary, the library (`CommitMode::default()`) and the README (whose options table is generated
    /// from these flags and checked by `readme_options_table`) agree on the group-commit delay.
    #[test]
    fn group_commit_default_is_the_library_default() {
        let args = Args::try_parse_from(["sse-server"]).unwrap();
        let sse_server::CommitMode::Group { max_delay } = sse_server::CommitMode::default() else {
            panic!("the library's default commit mode is no longer group commit");
        };
        assert_eq!(
            std::time::Duration::from_millis(args.group_commit_ms),
            max_delay
        );
    }
}
