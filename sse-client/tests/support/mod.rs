//! A scripted raw-TCP HTTP/1.1 server on 127.0.0.1 for misbehaviour tests: each connection replays
//! exact bytes in exact writes (with pauses between them), then closes, resets or holds the socket,
//! and every request it read is recorded.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod cli;
pub mod proxy;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use sse_client::{Error, Event, EventSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, timeout};

/// Every network wait in the tests is bounded by this, so a bug fails instead of hanging.
pub const LIMIT: Duration = Duration::from_secs(10);

/// A request the server read.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

/// One action of a connection's script. When the script ends without `Reset` or `Hold`, the server
/// closes the connection cleanly (EOF).
#[derive(Debug, Clone)]
pub enum Step {
    /// One `write_all` of exactly these bytes, flushed.
    Write(Vec<u8>),
    Pause(Duration),
    /// Abort the connection with a TCP RST.
    Reset,
    /// Keep the connection open, silent, until the client closes it.
    Hold,
}

pub fn write(bytes: impl AsRef<[u8]>) -> Step {
    Step::Write(bytes.as_ref().to_vec())
}

pub fn pause_ms(ms: u64) -> Step {
    Step::Pause(Duration::from_millis(ms))
}

/// The head of a good event-stream response; the body then runs until the connection ends.
pub fn sse_head() -> Step {
    write(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
    )
}

/// A complete bodiless response, e.g. `response("404 Not Found", &[])`.
pub fn response(status: &str, headers: &[(&str, &str)]) -> Step {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    write(head)
}

/// Writes each chunk separately with a pause between, so they reach the client as separate reads.
pub fn chunks(parts: &[&[u8]]) -> Vec<Step> {
    let mut steps = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            steps.push(pause_ms(20));
        }
        steps.push(write(p));
    }
    steps
}

type Script = dyn Fn(usize, &Request) -> Vec<Step> + Send + Sync;

pub struct TestServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    closed_by_client: Arc<AtomicUsize>,
    changed: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Starts a server whose `n`-th connection (from 0) plays `script(n, &request)`.
    pub async fn start(
        script: impl Fn(usize, &Request) -> Vec<Step> + Send + Sync + 'static,
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let closed_by_client = Arc::new(AtomicUsize::new(0));
        let changed = Arc::new(Notify::new());
        let script: Arc<Script> = Arc::new(script);
        let task = {
            let requests = requests.clone();
            let closed = closed_by_client.clone();
            let changed = changed.clone();
            tokio::spawn(async move {
                // Aborting this task drops the JoinSet, which aborts every connection task.
                let mut connections = JoinSet::new();
                let mut n = 0;
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let index = n;
                    n += 1;
                    let (script, requests, closed, changed) = (
                        script.clone(),
                        requests.clone(),
                        closed.clone(),
                        changed.clone(),
                    );
                    connections.spawn(async move {
                        serve(stream, index, &*script, &requests, &closed, &changed).await;
                    });
                    while connections.try_join_next().is_some() {}
                }
            })
        };
        TestServer {
            addr,
            requests,
            closed_by_client,
            changed,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits (bounded) until at least `n` requests arrived.
    pub async fn wait_requests(&self, n: usize) -> Vec<Request> {
        self.wait(|s| s.requests.lock().unwrap().len() >= n, "requests")
            .await;
        self.requests()
    }

    /// Waits (bounded) until clients closed `n` held connections.
    pub async fn wait_client_closed(&self, n: usize) {
        self.wait(
            |s| s.closed_by_client.load(Ordering::SeqCst) >= n,
            "client to close the connection",
        )
        .await;
    }

    async fn wait(&self, done: impl Fn(&Self) -> bool, what: &str) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let notified = self.changed.notified();
            if done(self) {
                return;
            }
            if timeout(deadline - Instant::now(), notified).await.is_err() {
                panic!("timed out waiting for {what}");
            }
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    index: usize,
    script: &Script,
    requests: &Mutex<Vec<Request>>,
    closed: &AtomicUsize,
    changed: &Notify,
) {
    stream.set_nodelay(true).unwrap();
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let steps = script(index, &request);
    requests.lock().unwrap().push(request);
    changed.notify_waiters();
    for step in steps {
        match step {
            Step::Write(bytes) => {
                if stream.write_all(&bytes).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
            }
            Step::Pause(d) => tokio::time::sleep(d).await,
            Step::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
            Step::Hold => {
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                closed.fetch_add(1, Ordering::SeqCst);
                changed.notify_waiters();
                return;
            }
        }
    }
    let _ = stream.shutdown().await;
}

async fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Request {
        method,
        path,
        headers,
        at: Instant::now(),
    })
}

/// The next item of the source, bounded by [`LIMIT`]; `None` when the stream ended.
pub async fn next(source: &mut EventSource) -> Option<Result<Event, Error>> {
    timeout(LIMIT, source.next())
        .await
        .expect("the event source produced nothing in time")
}

/// The next message's (type, data, last event id), skipping `Open` items; panics on an error.
pub async fn next_message(source: &mut EventSource) -> (String, String, String) {
    loop {
        match next(source).await {
            Some(Ok(Event::Message(m))) => {
                return (
                    m.event_type.to_string(),
                    m.data.to_string(),
                    m.last_event_id.to_string(),
                );
            }
            Some(Ok(_)) => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// The next error, skipping `Open` items; panics on a message or the end of the stream.
pub async fn next_error(source: &mut EventSource) -> Error {
    loop {
        match next(source).await {
            Some(Err(e)) => return e,
            Some(Ok(Event::Open)) => {}
            other => panic!("expected an error, got {other:?}"),
        }
    }
}

/// Expects `Open` as the next item.
pub async fn expect_open(source: &mut EventSource) {
    match next(source).await {
        Some(Ok(Event::Open)) => {}
        other => panic!("expected Open, got {other:?}"),
    }
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
