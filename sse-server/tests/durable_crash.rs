//! The `sse-server` binary with `--data-dir`, as a real child process: killed with SIGKILL in the middle
//! of publishing and restarted, it replays every acknowledged event; a damaged store stops it with a
//! clear message unless `--reset-data-dir` is given.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
#![cfg(unix)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use sse_server::Position;
use support::{Reader, TOKEN, WAIT, client};

struct Hub {
    child: Child,
    addr: SocketAddr,
}

impl Hub {
    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--no-demo", "--heartbeat", "0"])
        .args(["--publish-token", TOKEN])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Starts the binary and waits for its "listening on" line.
fn start(dir: &Path, extra: &[&str]) -> Hub {
    let mut child = command(dir, extra).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    // Owned by a `Hub` at once, so the child is killed and reaped even when start-up fails.
    let mut hub = Hub {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("sse-server did not start in time");
        if let Some(rest) = line.strip_prefix("sse-server listening on http://") {
            hub.addr = rest.trim_end_matches('/').parse().unwrap();
            return hub;
        }
    }
}

async fn try_publish(c: &reqwest::Client, hub_url: &str, data: &str) -> Option<String> {
    let resp = c
        .post(hub_url)
        .bearer_auth(TOKEN)
        .form(&[("data", data)])
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if resp.status() != 200 {
        return None;
    }
    let json: serde_json::Value = resp.json().await.ok()?;
    Some(json["id"].as_str()?.to_owned())
}

/// Every message of `channel` from the start of the window up to the one with data `"end"`.
async fn read_until_end(hub: &Hub, channel: &str, from: &str) -> Vec<(usize, String)> {
    let c = client();
    let mut reader = Reader::open(&c, &hub.url(&format!("/events/{channel}")), Some(from)).await;
    let mut got = Vec::new();
    loop {
        let m = reader.message().await.expect("stream ended early");
        assert_ne!(m.event_type, "sse-reset", "unexpected reset: {}", m.data);
        if m.data == "end" {
            return got;
        }
        got.push((m.data.parse().unwrap(), m.last_event_id.to_string()));
    }
}

/// One crash: publishers on `channels` channels run until the hub is SIGKILLed after `kill_after`; the
/// restarted hub must replay, per channel, every acknowledged event in order, with its id, none twice;
/// ids issued after the restart sort after all of them.
async fn crash_and_restart(kill_after: Duration, channels: usize, group: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut extra = vec!["--replay-events", "100000"];
    if group {
        extra.extend(["--durability", "group", "--group-commit-ms", "1"]);
    }
    let hub = start(dir.path(), &extra);
    let mut publishers = Vec::new();
    for ch in 0..channels {
        let url = hub.url(&format!("/events/c{ch}"));
        publishers.push(tokio::spawn(async move {
            let c = client();
            let mut acked = Vec::new();
            for i in 0.. {
                match try_publish(&c, &url, &i.to_string()).await {
                    Some(id) => acked.push((i, id)),
                    None => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(kill_after).await;
    hub.kill();
    let mut acked = Vec::new();
    for p in publishers {
        acked.push(tokio::time::timeout(WAIT, p).await.unwrap().unwrap());
    }

    let hub = start(dir.path(), &extra);
    let c = client();
    for (ch, acked) in acked.iter().enumerate() {
        let channel = format!("c{ch}");
        let end = try_publish(&c, &hub.url(&format!("/events/{channel}")), "end")
            .await
            .expect("publish after restart failed");
        let end: Position = end.parse().unwrap();
        let Some((_, first_id)) = acked.first() else {
            continue;
        };
        let first: Position = first_id.parse().unwrap();
        let start_of_store = Position::new(first.major(), 0).to_string();
        let got = read_until_end(&hub, &channel, &start_of_store).await;
        // In order and no duplicates: strictly increasing data and ids. Events committed but not yet
        // acknowledged at the kill may appear too (their publisher lost the answer, not the event).
        for w in got.windows(2) {
            assert!(
                w[0].0 < w[1].0,
                "{channel}: out of order or duplicated: {w:?}"
            );
            let (a, b): (Position, Position) = (w[0].1.parse().unwrap(), w[1].1.parse().unwrap());
            assert!(a < b, "{channel}: ids not increasing: {w:?}");
        }
        for (i, id) in acked {
            assert!(
                got.iter().any(|(j, jid)| j == i && jid == id),
                "{channel}: acknowledged event {i} ({id}) lost after kill -9 ({} acked, {} replayed)",
                acked.len(),
                got.len()
            );
        }
        let newest: Position = got.last().map(|(_, id)| id.parse().unwrap()).unwrap();
        assert!(
            end > newest,
            "{channel}: id {end} after restart is not after {newest}"
        );
        // Resuming from the last acknowledged id is not a reset, and continues right after it.
        let (last_i, last_id) = acked.last().unwrap();
        let rest = read_until_end(&hub, &channel, last_id).await;
        assert!(rest.iter().all(|(j, _)| j > last_i), "{channel}: {rest:?}");
    }
    hub.kill();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn acknowledged_events_survive_kill_9(
        kill_after_ms in 20u64..400,
        channels in 1usize..4,
        group in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(60),
                crash_and_restart(Duration::from_millis(kill_after_ms), channels, group),
            )
            .await
            .expect("crash test took too long");
        });
    }
}

/// Runs the binary to completion (it must refuse to start) and returns its exit status and stderr.
fn refuse(dir: &Path, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = command(dir, extra).spawn().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status, err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("sse-server kept running on a damaged store");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_store_refuses_to_start_until_reset() {
    // A store with some events, cleanly written, to damage in several ways.
    let pristine = tempfile::tempdir().unwrap();
    let hub = start(pristine.path(), &[]);
    let c = client();
    for i in 0..50 {
        try_publish(
            &c,
            &hub.url("/events/x"),
            &format!("{i}-{}", "z".repeat(500)),
        )
        .await
        .unwrap();
    }
    hub.kill();
    let file = pristine.path().join(sse_server::STORE_FILE);
    let original = std::fs::read(&file).unwrap();
    assert!(original.len() > 8192, "store unexpectedly small");

    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let damages: Vec<(&str, Damage)> = vec![
        ("empty", Box::new(|b: &mut Vec<u8>| b.clear())),
        (
            "truncated",
            Box::new(|b: &mut Vec<u8>| b.truncate(b.len() / 2)),
        ),
        ("header", Box::new(|b: &mut Vec<u8>| b[..64].fill(0xAB))),
        (
            "pages",
            Box::new(|b: &mut Vec<u8>| {
                let n = b.len();
                for (k, byte) in b[4096..n].iter_mut().enumerate() {
                    *byte ^= (k as u8).wrapping_mul(31) | 1;
                }
            }),
        ),
        (
            "foreign",
            Box::new(|b: &mut Vec<u8>| *b = b"name,value\n1,2\n".to_vec()),
        ),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(sse_server::STORE_FILE);
        let mut bytes = original.clone();
        damage(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();

        let (status, err) = refuse(dir.path(), &[]);
        assert!(!status.success(), "{what}: started on a damaged store");
        assert!(
            err.contains(&path.display().to_string()),
            "{what}: file not named: {err}"
        );
        assert!(
            err.contains("--reset-data-dir"),
            "{what}: no way out offered: {err}"
        );
        // Never a silent reset: the damaged file is left as it was.
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{what}: file was modified"
        );

        let hub = start(dir.path(), &["--reset-data-dir"]);
        let id = try_publish(&client(), &hub.url("/events/x"), "fresh").await;
        assert!(
            id.is_some(),
            "{what}: fresh store does not accept publishes"
        );
        hub.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_process_on_the_same_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path(), &[]);
    let (status, err) = refuse(dir.path(), &[]);
    assert!(!status.success());
    assert!(err.contains("another process"), "{err}");
    hub.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_flags_trim_the_store_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start(dir.path(), &["--replay-events", "30"]);
    let c = client();
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(
            try_publish(&c, &hub.url("/events/x"), &i.to_string())
                .await
                .unwrap(),
        );
    }
    hub.kill();
    // Restarted with a smaller window: only the newest 5 are kept; "end" then pushes out 35, so the
    // window is 36..=39 + end, resuming after 35 is exact and resuming before it is an `expired` reset.
    let hub = start(dir.path(), &["--replay-events", "5"]);
    try_publish(&c, &hub.url("/events/x"), "end").await.unwrap();
    let got = read_until_end(&hub, "x", &ids[35]).await;
    assert_eq!(
        got.iter().map(|g| g.0).collect::<Vec<_>>(),
        vec![36, 37, 38, 39]
    );
    let mut reader = Reader::open(&c, &hub.url("/events/x"), Some(&ids[34])).await;
    let m = reader.message().await.unwrap();
    assert_eq!(m.event_type, "sse-reset");
    assert!(m.data.contains("\"expired\""), "{}", m.data);
    hub.kill();
}
