//! Behind a real reverse proxy: Debian's nginx, configured with the directives of
//! `docs/deploy/nginx.conf`, in front of the `sse-server` binary; and `--trusted-proxy`, the per-IP
//! limit counted by `X-Forwarded-For` only for connections from a trusted proxy.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use sse_proto::Item;
use support::{Reader, WAIT, client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const TOKEN: &str = "proxy-token";

/// Starts the binary with `args` on a free port; the child (killed on drop) and its base URL.
async fn hub(args: &[&str]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--no-demo",
        "--publish-token",
        TOKEN,
    ])
    .args(args)
    .env("RUST_LOG", "warn");
    support::spawn_server(cmd, Stdio::null()).await
}

/// Whether nginx is installed; fails instead of skipping when SSE_REQUIRE_NGINX=1.
fn nginx_available(test: &str) -> bool {
    support::tool_available(
        "nginx",
        "-v",
        "SSE_REQUIRE_NGINX",
        "apt-get install nginx-light",
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

/// nginx in the foreground with `docs/deploy/nginx.conf` (the hub's address and a free port
/// substituted), every path in `dir`. Killed on drop.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    async fn start(dir: &Path, hub_addr: &str) -> Nginx {
        let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deploy/nginx.conf");
        let site = std::fs::read_to_string(docs).unwrap();
        let port = free_port();
        assert!(site.contains("server 127.0.0.1:8080;") && site.contains("listen 80;"));
        let site = site
            .replace("server 127.0.0.1:8080;", &format!("server {hub_addr};"))
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        std::fs::write(dir.join("sse.conf"), site).unwrap();
        let d = dir.display();
        let main = format!(
            "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             include {d}/sse.conf;\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), main).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start nginx");
        let mut nginx = Nginx { child, port };
        let up = tokio::time::timeout(WAIT, async {
            loop {
                if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                    return;
                }
                if let Ok(Some(status)) = nginx.child.try_wait() {
                    let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                    panic!("nginx exited ({status}): {log}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(up.is_ok(), "nginx did not listen in time");
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

async fn publish(url: &str, data: &str) -> String {
    let resp = tokio::time::timeout(
        WAIT,
        client()
            .post(url)
            .bearer_auth(TOKEN)
            .form(&[("data", data)])
            .send(),
    )
    .await
    .expect("publish timed out")
    .unwrap();
    assert_eq!(resp.status(), 200, "publish through nginx failed");
    let json: serde_json::Value = resp.json().await.unwrap();
    json["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn nginx_passes_live_events_replay_and_heartbeats() {
    if !nginx_available("nginx_passes_live_events_replay_and_heartbeats") {
        return;
    }
    let (_hub, base) = hub(&["--heartbeat", "1", "--trusted-proxy", "127.0.0.1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let nginx = Nginx::start(dir.path(), base.trim_start_matches("http://")).await;
    let url = nginx.url("/events/news");

    // Live: each event arrives on its own, while the stream stays open (nothing held back in a
    // buffer until more data or the end of the response).
    let mut reader = Reader::open(&client(), &url, None).await;
    let first = publish(&url, "one").await;
    let m = reader.message().await.unwrap();
    assert_eq!(
        (m.data.as_str(), m.last_event_id.as_str()),
        ("one", first.as_str())
    );

    // Heartbeats: comments on the idle stream pass through nginx.
    // (`Reader::next` is bounded by WAIT itself; a stream nginx cut off ends with `None`.)
    let heartbeat = loop {
        match reader.next().await {
            Some(Item::Comment(_)) => break true,
            Some(_) => continue,
            None => break false,
        }
    };
    assert!(
        heartbeat,
        "no heartbeat comment came through nginx: the stream ended"
    );
    drop(reader);

    // Replay: what was published while away, exactly once and in order, then live again.
    let second = publish(&url, "two").await;
    let third = publish(&url, "three").await;
    let mut reader = Reader::open(&client(), &url, Some(&first)).await;
    let m = reader.message().await.unwrap();
    assert_eq!(
        (m.data.as_str(), m.last_event_id.as_str()),
        ("two", second.as_str())
    );
    let m = reader.message().await.unwrap();
    assert_eq!(
        (m.data.as_str(), m.last_event_id.as_str()),
        ("three", third.as_str())
    );
    let fourth = publish(&url, "four").await;
    let m = reader.message().await.unwrap();
    assert_eq!(
        (m.data.as_str(), m.last_event_id.as_str()),
        ("four", fourth.as_str())
    );
    drop(nginx);
}

/// Sends a subscription with `X-Forwarded-For: xff` (HTTP/1.1 takes the lean path, HTTP/1.0 goes
/// through hyper) and returns the status and the open socket.
async fn subscribe_as(base: &str, xff: &str, version: &str) -> (u16, TcpStream) {
    let addr = base.trim_start_matches("http://");
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /events/limits {version}\r\nHost: x\r\nAccept: text/event-stream\r\n\
         X-Forwarded-For: {xff}\r\n\r\n"
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut buf = [0u8; 1024];
            let n = sock.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a response head");
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("no response head in time");
    let head = String::from_utf8_lossy(&got);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, sock)
}

#[tokio::test]
async fn trusted_proxy_limits_each_forwarded_client_separately() {
    let (_hub, base) = hub(&[
        "--trusted-proxy",
        "127.0.0.1/32",
        "--max-connections-per-ip",
        "1",
    ])
    .await;
    let (s, a1) = subscribe_as(&base, "198.51.100.1", "HTTP/1.1").await;
    assert_eq!(s, 200);
    // A second client behind the same proxy has its own place.
    let (s, _b1) = subscribe_as(&base, "198.51.100.2", "HTTP/1.1").await;
    assert_eq!(s, 200);
    // The first one is at its limit, on the lean path and through hyper.
    let (s, _) = subscribe_as(&base, "198.51.100.1", "HTTP/1.1").await;
    assert_eq!(s, 429);
    let (s, _) = subscribe_as(&base, "203.0.113.5, 198.51.100.1", "HTTP/1.0").await;
    assert_eq!(
        s, 429,
        "a forged left-most address must not free the client"
    );
    let (s, _c1) = subscribe_as(&base, "198.51.100.3", "HTTP/1.0").await;
    assert_eq!(s, 200);
    let (s, _) = subscribe_as(&base, "198.51.100.3", "HTTP/1.1").await;
    assert_eq!(s, 429);
    // Closing the stream frees the place.
    drop(a1);
    let freed = tokio::time::timeout(WAIT, async {
        loop {
            if subscribe_as(&base, "198.51.100.1", "HTTP/1.1").await.0 == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(freed.is_ok(), "the closed stream's place was not freed");
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let (_hub, base) = hub(&[
        "--trusted-proxy",
        "10.9.9.9/32",
        "--max-connections-per-ip",
        "1",
    ])
    .await;
    let (s, _a) = subscribe_as(&base, "198.51.100.1", "HTTP/1.1").await;
    assert_eq!(s, 200);
    // Another X-Forwarded-For from the same (untrusted) peer: still the peer's one place.
    let (s, _) = subscribe_as(&base, "198.51.100.2", "HTTP/1.1").await;
    assert_eq!(s, 429);
    let (s, _) = subscribe_as(&base, "198.51.100.3", "HTTP/1.0").await;
    assert_eq!(s, 429);
}
