//! A real `redis-server` on a free loopback port and `sse-server` nodes (the binary) pointed at it.
//! Every child is killed by pid when its handle drops.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

pub const TOKEN: &str = "cluster-token";
/// Upper bound for one wait.
pub const WAIT: Duration = Duration::from_secs(10);

/// `None` (after a loud SKIPPED line) when redis-server is not installed, unless SSE_REQUIRE_REDIS=1.
pub fn redis_available(test: &str) -> bool {
    crate::support::tool_available(
        "redis-server",
        "--version",
        "SSE_REQUIRE_REDIS",
        "apt-get install redis-server",
        test,
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Redis {
    pub port: u16,
    child: Option<Child>,
}

impl Redis {
    pub async fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            child: None,
        };
        r.spawn().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start redis-server");
        self.child = Some(child);
        tokio::time::timeout(WAIT, async {
            loop {
                if self.ping().await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("redis-server did not answer PING in time");
    }

    pub async fn ping(&self) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if s.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf)).await,
            Ok(Ok(_)) if &buf == b"+PONG\r\n"
        )
    }

    /// SIGKILL (by pid) and wait for the process to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Starts it again on the same port (empty: no persistence).
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }
}

pub struct Node {
    pub addr: SocketAddr,
    child: Child,
}

impl Node {
    /// Starts `sse-server --redis URL` on an ephemeral port with 1 s heartbeats.
    pub async fn start(redis_url: &str) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
        cmd.args(["--listen", "127.0.0.1:0", "--redis", redis_url])
            .args(["--publish-token", TOKEN, "--no-demo", "--heartbeat", "1"])
            .env("RUST_LOG", "warn");
        let (child, base) = crate::support::spawn_server(cmd, Stdio::null()).await;
        let addr = base.trim_start_matches("http://").parse().unwrap();
        Node { addr, child }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGKILL by pid.
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Starts redis and `n` nodes on it.
pub async fn cluster(n: usize) -> (Redis, Vec<Node>) {
    let redis = Redis::start().await;
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(Node::start(&redis.url()).await);
    }
    (redis, nodes)
}

/// Publishes `data` on `channel` through `node`: the status and the JSON answer.
pub async fn try_publish(
    client: &reqwest::Client,
    node: &Node,
    channel: &str,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let resp = tokio::time::timeout(
        WAIT,
        client
            .post(node.url(&format!("/events/{channel}")))
            .bearer_auth(TOKEN)
            .form(form)
            .send(),
    )
    .await
    .expect("publish timed out")
    .unwrap();
    let status = resp.status().as_u16();
    let json = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// Publishes and expects 200: the id.
pub async fn publish(client: &reqwest::Client, node: &Node, channel: &str, data: &str) -> String {
    let (status, json) = try_publish(client, node, channel, &[("data", data)]).await;
    assert_eq!(status, 200, "publish failed: {json}");
    json["id"].as_str().unwrap().to_owned()
}
