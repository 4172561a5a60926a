//! The `--redis` mode: two `sse-server --redis` nodes sharing one `redis-server` started here on a free
//! loopback port. Subscribers listen on one node while events are published to the other, so every
//! delivered event crossed Redis (XADD on one node, XREAD on the other); its CPU and RSS are sampled on
//! the subscribers' node.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;
use crate::server::ServerProc;

/// Starts redis-server and two nodes; the result samples the subscribers' node and publishes to the
/// other.
pub fn start(bin: &Path, queue_size: usize) -> Result<ServerProc, Error> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--loglevel", "warning"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            Error::Server(format!(
                "cannot start redis-server ({e}); install it (apt-get install redis-server) for --redis"
            ))
        })?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if !wait_for_pong(addr, Duration::from_secs(10)) {
        let _ = redis.kill();
        let _ = redis.wait();
        return Err(Error::Server(format!(
            "redis-server on {addr} did not answer PING"
        )));
    }
    let url = format!("redis://{addr}");
    let start = |redis: &mut std::process::Child| {
        ServerProc::start_ours_with(bin, queue_size, &["--redis", &url]).inspect_err(|_| {
            let _ = redis.kill();
            let _ = redis.wait();
        })
    };
    let mut publisher = start(&mut redis)?;
    let mut subscriber = start(&mut redis)?;
    subscriber.publish_addr = Some(publisher.addr);
    // The publishing node goes first, Redis last: no node outlives its Redis.
    subscriber.companions.extend(publisher.child_take());
    subscriber.companions.push(redis);
    Ok(subscriber)
}

pub(crate) fn wait_for_pong(addr: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = [0u8; 7];
            if s.write_all(b"PING\r\n").is_ok()
                && s.read_exact(&mut buf).is_ok()
                && &buf == b"+PONG\r\n"
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}
