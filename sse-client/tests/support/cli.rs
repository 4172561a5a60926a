//! The `sse-client` binary and a real `sse-server` hub, for command line tests.

use std::net::SocketAddr;
use std::process::{Output, Stdio};
use std::time::Duration;

use sse_server::{Hub, HubService, Server};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::LIMIT;

/// Runs `sse-client ARGS` with exactly the `SSE_*` variables in `env` (those of the test runner
/// are removed), and waits for it, bounded by [`LIMIT`].
pub async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    run_within(LIMIT, args, env).await
}

/// [`run`], failing when the process has not exited within `bound`: a hang guard, not a timing
/// measurement.
pub async fn run_within(bound: Duration, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sse-client"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SSE_") {
            command.env_remove(name);
        }
    }
    command
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().unwrap();
    timeout(bound, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("sse-client {args:?} did not exit within {bound:?}"))
        .unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A real hub on 127.0.0.1 that accepts publishing with `token`.
pub struct TestHub {
    pub hub: Hub,
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TestHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestHub {
    pub async fn start(token: &str) -> TestHub {
        let hub = Hub::builder().heartbeat(None).build();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = HubService::new(hub.clone()).publish_token(token);
        let server = Server::new(hub.clone()).fast_subscribe(service.clone());
        let task = tokio::spawn(async move {
            let _ = server
                .serve(listener, service, std::future::pending())
                .await;
        });
        TestHub { hub, addr, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits (bounded) until `channel` has at least `n` subscribers.
    pub async fn wait_subscribers(&self, channel: &str, n: usize) {
        let wait = async {
            loop {
                let channels = self.hub.channels().await.unwrap();
                if channels
                    .iter()
                    .any(|c| c.name == channel && c.subscribers >= n)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        timeout(LIMIT, wait)
            .await
            .unwrap_or_else(|_| panic!("no {n} subscribers on {channel} in time"));
    }
}
