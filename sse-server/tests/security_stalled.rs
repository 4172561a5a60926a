//! Stalled readers must not multiply memory: 500 subscribers with 4 KiB receive buffers that never
//! read, then 600 events of 64 KiB published back to back. What a stalled subscriber is owed is shared
//! `Bytes` (never a copy of the rest of a write round), and `--max-subscriber-buffer` disconnects it
//! once it is owed more than its budget; a reader that keeps up gets every event, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::time::Duration;

use support::spawn_server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const STALLED: usize = 500;
const EVENTS: usize = 600;
const EVENT_BYTES: usize = 64 * 1024;
/// What 500 stalled readers may add to the hub's peak memory (the target is 64 MiB for 1,000).
const BUDGET_MIB: u64 = 64;

/// The process's peak resident set (VmHWM), in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_readers_add_bounded_memory_and_the_others_get_every_event() {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--no-demo",
        "--publish-token",
        "t",
        "--max-connections",
        "2000",
        "--max-connections-per-ip",
        "2000",
        "--heartbeat",
        "0",
    ]);
    let (child, base) = spawn_server(cmd, std::process::Stdio::null()).await;
    let pid = child.id().unwrap();
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();

    // The reader that keeps up.
    let client = reqwest::Client::new();
    let mut good = client
        .get(format!("{base}/events/burst"))
        .send()
        .await
        .unwrap();
    let reader = tokio::spawn(async move {
        let mut parser = sse_proto::Parser::new();
        let mut seen = Vec::new();
        while seen.len() < EVENTS {
            let chunk = tokio::time::timeout(Duration::from_secs(60), good.chunk())
                .await
                .expect("the good reader stalled")
                .unwrap()
                .expect("the good reader's stream ended");
            parser.feed(&chunk);
            for item in parser.by_ref() {
                if let Ok(sse_proto::Item::Message(m)) = item {
                    seen.push(m.data[..8].parse::<usize>().unwrap());
                }
            }
        }
        seen
    });

    // The stalled readers: tiny receive buffers, a request, then never a read.
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(addr).await.unwrap();
        stream
            .write_all(b"GET /events/burst HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        stalled.push(stream);
    }
    // Each got its response head (so it is subscribed); from here on nobody reads them.
    for stream in &mut stalled {
        let mut head = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut head))
            .await
            .unwrap()
            .unwrap();
        assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = peak_kib(pid);

    let payload = "x".repeat(EVENT_BYTES - 8);
    for i in 0..EVENTS {
        let resp = client
            .post(format!("{base}/events/burst"))
            .bearer_auth("t")
            .body(format!("{i:08}{payload}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let seen = reader.await.unwrap();
    assert_eq!(
        seen,
        (0..EVENTS).collect::<Vec<_>>(),
        "every event, in order"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = peak_kib(pid);
    let added_mib = peak.saturating_sub(idle) / 1024;
    eprintln!(
        "{STALLED} stalled readers, {EVENTS} x {} KiB: peak RSS {} MiB over idle ({} MiB idle)",
        EVENT_BYTES / 1024,
        added_mib,
        idle / 1024
    );
    assert!(
        added_mib <= BUDGET_MIB,
        "{STALLED} stalled readers added {added_mib} MiB (budget {BUDGET_MIB} MiB)"
    );
    drop(stalled);
    drop(child);
}
