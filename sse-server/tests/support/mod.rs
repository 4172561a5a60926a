//! Shared helpers: a hub served on an ephemeral loopback port, and a small SSE reader over reqwest.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use sse_proto::{Item, Parser};
use sse_server::{Hub, HubBuilder, HubService, Server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TOKEN: &str = "test-token";
/// Upper bound for any single network wait in these tests.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    pub hub: Hub,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), sse_server::Error>>>,
}

impl TestServer {
    pub async fn start(builder: HubBuilder) -> TestServer {
        Self::start_with(builder, |svc| svc, |server| server).await
    }

    /// Like [`start`](Self::start), letting the caller adjust the service (which already has the
    /// publish token) and the server (e.g. authorization, limits).
    pub async fn start_with(
        builder: HubBuilder,
        service: impl FnOnce(HubService) -> HubService,
        server: impl FnOnce(Server) -> Server,
    ) -> TestServer {
        let hub = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let svc = service(HubService::new(hub.clone()).publish_token(TOKEN));
        // The lean subscribe path on, as in `serve_hub` and the binary: the tests cover what users run.
        let server = server(
            Server::new(hub.clone())
                .grace_period(Duration::from_secs(2))
                .fast_subscribe(svc.clone()),
        );
        let task = tokio::spawn(server.serve(listener, svc, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            hub,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops the server and waits (bounded) for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("server did not stop in time")
                .unwrap()
                .unwrap();
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// Publishes `data` as a form body and returns the id the hub answered with.
pub async fn publish(server: &TestServer, channel: &str, data: &str) -> String {
    let resp = tokio::time::timeout(
        WAIT,
        client()
            .post(server.url(&format!("/events/{channel}")))
            .bearer_auth(TOKEN)
            .form(&[("data", data)])
            .send(),
    )
    .await
    .expect("publish timed out")
    .unwrap();
    assert_eq!(resp.status(), 200, "publish failed");
    let json: serde_json::Value = resp.json().await.unwrap();
    json["id"].as_str().unwrap().to_owned()
}

/// A streaming SSE response parsed item by item (comments included).
pub struct Reader {
    pub response_headers: reqwest::header::HeaderMap,
    pub version: reqwest::Version,
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    parser: Parser,
    ended: bool,
}

impl Reader {
    pub async fn open(client: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> Reader {
        let mut req = client.get(url).header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        Reader::from_request(req).await
    }

    pub async fn from_request(req: reqwest::RequestBuilder) -> Reader {
        let resp = tokio::time::timeout(WAIT, req.send())
            .await
            .expect("subscribe timed out")
            .unwrap();
        assert_eq!(resp.status(), 200, "subscribe failed");
        Reader {
            response_headers: resp.headers().clone(),
            version: resp.version(),
            body: resp.bytes_stream().boxed(),
            parser: Parser::builder().comments(true).build(),
            ended: false,
        }
    }

    /// The next item, or `None` when the stream ended. Panics after `WAIT`.
    pub async fn next(&mut self) -> Option<Item> {
        self.next_within(WAIT).await.expect("no SSE item in time")
    }

    /// `Err(())` on timeout.
    pub async fn next_within(&mut self, wait: Duration) -> Result<Option<Item>, ()> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(item) = self.parser.next() {
                return Ok(Some(item.unwrap()));
            }
            if self.ended {
                return Ok(None);
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Err(()),
                Ok(Some(Ok(chunk))) => self.parser.feed(&chunk),
                Ok(Some(Err(_))) | Ok(None) => {
                    self.parser.finish();
                    self.ended = true;
                }
            }
        }
    }

    /// The next dispatched message, skipping comments and retry items.
    pub async fn message(&mut self) -> Option<sse_proto::Message> {
        loop {
            match self.next().await? {
                Item::Message(m) => return Some(m),
                _ => continue,
            }
        }
    }
}

/// Longest wait for a spawned `sse-server` to start listening (a debug build with a store to open).
pub const SPAWN_WAIT: Duration = Duration::from_secs(20);

/// Spawns `cmd` (an `sse-server` command line) and waits, bounded, for its "listening on" line. Returns
/// the child, killed on drop, and its base URL (`http://addr`). Its stderr keeps being drained so it
/// never blocks on a full pipe, and every line but INFO logs is echoed, so a failing test shows the
/// server's warnings.
pub async fn spawn_server(
    mut cmd: tokio::process::Command,
    stdin: std::process::Stdio,
) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = cmd
        .stdin(stdin)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot start sse-server");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr is piped")).lines();
    let base = tokio::time::timeout(SPAWN_WAIT, async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("sse-server exited before listening");
            if let Some(rest) = line.strip_prefix("sse-server listening on ") {
                return rest.trim_end_matches('/').to_owned();
            }
        }
    })
    .await
    .expect("sse-server did not start listening");
    let tag = base.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if !line.contains(" INFO ") {
                eprintln!("[sse-server {tag}] {line}");
            }
        }
    });
    (child, base)
}

/// A subscriber of `/events/{channel}` that reads `reads[i]` messages per connection, drops it and
/// resumes with the last id it saw (from `start` at first), until it holds `total` messages; a stream
/// ended early (a slow subscriber dropped) is resumed like a browser would. Each message's data must be
/// a number; an `sse-reset` fails the test. Returns the numbers in the order received.
pub async fn read_resuming(
    server: &TestServer,
    channel: &str,
    start: &str,
    total: usize,
    reads: &[usize],
) -> Vec<usize> {
    let c = client();
    let url = server.url(&format!("/events/{channel}"));
    let mut got = Vec::new();
    let mut last = start.to_owned();
    let mut round = 0;
    'outer: while got.len() < total {
        let mut reader = Reader::open(&c, &url, Some(&last)).await;
        let budget = reads[round % reads.len()];
        round += 1;
        for _ in 0..budget {
            let Some(m) = reader.message().await else {
                continue 'outer;
            };
            assert_ne!(m.event_type, "sse-reset", "reset resuming from {last}");
            got.push(m.data.parse::<usize>().unwrap());
            last = m.last_event_id.to_string();
            if got.len() == total {
                break 'outer;
            }
        }
        assert!(round < 10_000, "no progress");
    }
    got
}

/// Whether `program` runs (`program probe` succeeds). When it does not, the test fails if `require` (an
/// `SSE_REQUIRE_*` variable) is `1`, and otherwise prints a loud `SKIPPED:` line (counted as skipped).
pub fn tool_available(
    program: &str,
    probe: &str,
    require: &str,
    install: &str,
    test: &str,
) -> bool {
    let found = std::process::Command::new(program)
        .arg(probe)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var(require).as_deref() != Ok("1"),
            "{program} is not installed but {require}=1: install it ({install})"
        );
        eprintln!("SKIPPED: {program} not installed ({test}); set {require}=1 to fail instead");
    }
    found
}
