//! `--listen-backlog`: the listening socket's accept queue is as long as asked (the kernel reports
//! it as the Send-Q of a listening socket in `ss -ltn`), 4,096 by default.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::process::Stdio;

use tokio::process::Command;

/// The backlog of the socket listening on `port`, as `ss` reports it.
fn backlog_of(port: &str) -> Option<u32> {
    let out = std::process::Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // State Recv-Q Send-Q Local-Address:Port Peer-Address:Port
    text.lines()
        .find_map(|line| line.split_whitespace().nth(2)?.parse().ok())
}

async fn backlog_with(args: &[&str]) -> u32 {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--no-demo"])
        .args(args);
    let (child, base) = support::spawn_server(cmd, Stdio::null()).await;
    let port = base.rsplit(':').next().unwrap().to_owned();
    let backlog = backlog_of(&port).expect("ss lists the listening socket");
    drop(child);
    backlog
}

#[tokio::test]
async fn the_listen_backlog_is_what_the_flag_asks_and_4096_by_default() {
    if !support::tool_available(
        "ss",
        "-V",
        "SSE_REQUIRE_SS",
        "apt-get install iproute2",
        "listen backlog",
    ) {
        return;
    }
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .map_or(4096, |s| s.trim().parse().unwrap_or(4096));
    assert_eq!(backlog_with(&["--listen-backlog", "77"]).await, 77);
    // The kernel caps the default at net.core.somaxconn.
    assert_eq!(backlog_with(&[]).await, 4096.min(somaxconn));
}
