//! The binary around the library: options, the console page, the demo clock, static files, stdin publishing.

pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod logging;
mod metrics;
mod security;
mod site;
mod stdin;
mod tick;

use std::time::Duration;

use rand::Rng;
use sse_server::{CommitMode, Error, Hub, HubService, Server};
use tokio::net::TcpListener;

use cli::Args;

/// Starts the hub and serves until Ctrl-C or SIGTERM.
pub(crate) async fn run(args: Args) -> Result<(), Error> {
    let hub = build_hub(&args).await?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(sse_server::tls_acceptor(cert, key)?),
        _ => None,
    };
    let listener = bind(&args.listen, args.listen_backlog).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let token = announce(&args, scheme, listener.local_addr()?);

    if !args.no_demo {
        tokio::spawn(tick::run(hub.clone()));
    }
    if let Some(channel) = args.stdin.clone() {
        tokio::spawn(stdin::run(hub.clone(), channel));
    }

    let mut hub_service = HubService::new(hub.clone())
        .publish_token(token)
        .body_timeout(Duration::from_secs(args.security.body_timeout));
    if let Some(addr) = &args.metrics_listen {
        let metrics_listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("cannot listen on {addr}: {e}; pick another address with --metrics-listen"),
            ))
        })?;
        let at = metrics_listener.local_addr()?;
        if args.log_format == cli::LogFormat::Text {
            eprintln!("sse-server metrics on http://{at}/metrics");
        }
        tracing::info!(addr = %at, "metrics listening");
        metrics::spawn(hub.clone(), hub_service.clone(), metrics_listener);
        hub_service = hub_service.without_metrics();
    }
    if args.cors_credentials {
        hub_service = hub_service.cors_credentials();
    }
    let hub_service = match args.security.auth()? {
        Some(auth) => hub_service.authorization(auth),
        None => hub_service,
    };
    let service =
        site::Site::new(hub_service.clone(), args.static_dir.clone()).console(!args.no_demo);
    // Site hands /events/* to the same HubService, so subscriptions may take the lean path.
    let mut server = Server::new(hub)
        .fast_subscribe(hub_service)
        .grace_period(Duration::from_secs(5))
        .limits(args.security.limits());
    if let Some(tls) = tls {
        server = server.tls(tls);
    }
    server.serve(listener, service, shutdown_signal()).await?;
    tracing::info!("bye");
    Ok(())
}

/// The hub the flags describe: its limits, and its store (memory, `--data-dir` or `--redis`).
async fn build_hub(args: &Args) -> Result<Hub, Error> {
    let mut builder = Hub::builder()
        .replay_events(args.replay_events)
        .replay_bytes(args.replay_bytes)
        .replay_age(Duration::from_secs(args.replay_age))
        .heartbeat(Some(Duration::from_secs(args.heartbeat)))
        .queue_size(args.queue_size)
        .max_subscriber_buffer(args.max_subscriber_buffer)
        .coalesce(Duration::from_millis(args.coalesce_ms))
        .max_event_bytes(args.max_event_bytes)
        .max_channels(args.security.max_channels)
        .max_channels_per_subscription(
            usize::try_from(args.security.max_channels_per_subscription).unwrap_or(usize::MAX),
        );
    // Refuse a bad JWT key before anything else starts.
    args.security.auth()?;
    if let Some(url) = &args.redis {
        // Start anyway when Redis is down (nodes may start first): publishes answer 503 until it is up.
        let store = redis_store(args, url)?;
        match store.ping().await {
            Ok(()) => tracing::info!(redis = %store.url(), "replay store: redis"),
            Err(e) => {
                tracing::warn!(error = %e, "Redis is not reachable yet; retrying in the background")
            }
        }
        builder = builder.store(std::sync::Arc::new(store));
    }
    if let Some(dir) = &args.data_dir {
        let mode = match args.durability {
            cli::Durability::PerPublish => CommitMode::PerPublish,
            cli::Durability::Group => CommitMode::Group {
                max_delay: Duration::from_millis(args.group_commit_ms),
            },
        };
        builder = builder
            .data_dir(dir.clone())
            .commit_mode(mode)
            .reset_data_dir(args.reset_data_dir);
    }
    for origin in &args.cors_origin {
        builder = builder.cors_origin(origin.clone());
    }
    for (name, value) in &args.header {
        builder = builder.header(name.clone(), value.clone());
    }
    builder.try_build()
}

/// The `--redis` store with the `--replay-*` window and `--redis-ack`/`--redis-wait-ms`.
fn redis_store(args: &Args, url: &str) -> Result<sse_server::RedisStore, Error> {
    let retention = sse_server::Retention::default()
        .max_events(args.replay_events)
        .max_bytes(args.replay_bytes)
        .max_age(Duration::from_secs(args.replay_age));
    let ack = match args.redis_ack {
        cli::RedisAck::Primary => sse_server::RedisAck::Primary,
        cli::RedisAck::Replicated => sse_server::RedisAck::Replicated,
    };
    sse_server::RedisStore::builder(url)
        .retention(retention)
        .ack(ack)
        .wait(Duration::from_millis(args.redis_wait_ms))
        .build()
}

/// Binds `--listen` with a listen backlog of `backlog` (`--listen-backlog`; tokio's own `bind`
/// asks for 1,024), with an error that says what to do.
async fn bind(listen: &str, backlog: u32) -> Result<TcpListener, Error> {
    let fail = |e: std::io::Error| {
        Error::Io(std::io::Error::new(
            e.kind(),
            format!("cannot listen on {listen}: {e}; pick another address with --listen"),
        ))
    };
    let mut last = None;
    for addr in tokio::net::lookup_host(listen).await.map_err(fail)? {
        match bind_one(addr, backlog) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(fail(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to bind")
    })))
}

/// One address of `--listen`: `SO_REUSEADDR` (as `TcpListener::bind` sets it), then `listen(backlog)`.
fn bind_one(addr: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Says where the hub listens, and the publish token when it generated one; returns the token.
fn announce(args: &Args, scheme: &str, addr: std::net::SocketAddr) -> String {
    let given = args
        .publish_token
        .as_ref()
        .or(args.publish_token_file.as_ref());
    let (token, generated) = match given {
        Some(t) if !t.is_empty() => (t.clone(), false),
        _ => (generate_token(), true),
    };
    if args.log_format == cli::LogFormat::Json {
        // Keep standard error pure JSON lines for log collectors.
        tracing::info!(url = %format!("{scheme}://{addr}/"), tls = scheme == "https", "sse-server listening");
        if generated {
            tracing::warn!(publish_token = %token, "no --publish-token given; generated one for this run");
        }
    } else {
        eprintln!("sse-server listening on {scheme}://{addr}/");
        tracing::info!(%addr, tls = scheme == "https", "listening");
        if generated {
            eprintln!(
                "sse-server: no --publish-token given, generated one for this run:\n\n    publish token: {token}\n\n\
                 publish with:  curl -H 'Authorization: Bearer {token}' -d data=hi {scheme}://{addr}/events/x\n\
                 subscribe with: curl -N {scheme}://{addr}/events/x\n"
            );
        }
    }
    token
}

fn generate_token() -> String {
    let mut rng = rand::rng();
    (0..32)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("signal received: shutting down gracefully");
}
