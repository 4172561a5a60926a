//! Issue 16, item 4: a full disk must not stay broken after it is freed, and `/readyz` tells the truth.
//!
//! * The real binary with `--data-dir` on a 1 MiB tmpfs: fill the disk until publishes get 503, check
//!   `/readyz` is 503, free the space, and check that publishes are acknowledged again (bounded wait),
//!   `/readyz` is 200 again, ids keep increasing, and a resume from the start replays every
//!   acknowledged event exactly once (and nothing that was refused). Mounting needs root: the test
//!   prints `SKIPPED:` when `mount` is not permitted, and fails instead when `SSE_REQUIRE_TMPFS=1`.
//! * `/readyz` is 503 while Redis is down and 200 once it is back.
//! * `/readyz` is 503 while the hub drains at shutdown; `/healthz` is the liveness check.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod cluster_support;
mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use support::{Reader, TestServer};

const TOKEN: &str = "disk-token";
/// Upper bound for one wait (recovery, readiness).
const WAIT: Duration = Duration::from_secs(15);
const CHANNEL: &str = "disk";

/// A tmpfs mounted on a temporary directory, unmounted (by path) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after a loud SKIPPED line) when mounting is not permitted, unless SSE_REQUIRE_TMPFS=1.
    fn mount(size: &str, test: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Some(Tmpfs { dir }),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => format!("cannot run mount: {e}"),
        };
        assert!(
            std::env::var("SSE_REQUIRE_TMPFS").as_deref() != Ok("1"),
            "cannot mount a tmpfs ({why}) but SSE_REQUIRE_TMPFS=1: run the tests as root"
        );
        eprintln!(
            "SKIPPED: cannot mount a tmpfs ({test}: {why}); run as root, or set SSE_REQUIRE_TMPFS=1 to fail instead"
        );
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a child not reaped yet): detach it so the directory can go.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// Writes zeros to `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 4096];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(
                    e.raw_os_error(),
                    Some(28),
                    "filling the disk failed with {e}, not ENOSPC"
                );
                break;
            }
        }
        assert!(written < 64 << 20, "the tmpfs never filled up");
    }
    let _ = f.sync_all();
    written
}

struct Server {
    child: tokio::process::Child,
    base: String,
}

impl Server {
    async fn start(data_dir: &Path) -> Server {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-server"));
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--publish-token",
            TOKEN,
            "--no-demo",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn");
        let (child, base) = support::spawn_server(cmd, Stdio::null()).await;
        Server { child, base }
    }

    /// SIGKILL by pid and reap it, so that the tmpfs is no longer busy.
    async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

/// Publishes `data` and returns (status, id when acknowledged).
async fn publish(c: &reqwest::Client, url: &str, data: &str) -> (u16, Option<String>) {
    let resp = c
        .post(url)
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({ "data": data }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let id = (status == 200).then(|| body["id"].as_str().unwrap().to_owned());
    (status, id)
}

async fn readyz(c: &reqwest::Client, url: &str) -> (u16, serde_json::Value) {
    let resp = c.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// `(epoch, minor)` of a hub-assigned id `E-N`.
fn position(id: &str) -> (u64, u64) {
    let (e, m) = id.split_once('-').unwrap();
    (e.parse().unwrap(), m.parse().unwrap())
}

/// A 2 KiB payload tagged with `n`.
fn payload(n: usize) -> String {
    format!("{n} {}", "x".repeat(2048))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_recovers_once_freed_and_readyz_tells_the_truth() {
    let Some(fs) = Tmpfs::mount("1m", "a_full_disk_recovers_once_freed") else {
        return;
    };
    let data_dir: PathBuf = fs.path().join("data");
    let server = Server::start(&data_dir).await;
    let c = support::client();
    let pub_url = server.url(&format!("/events/{CHANNEL}"));
    let ready_url = server.url("/readyz");

    let (status, body) = readyz(&c, &ready_url).await;
    assert_eq!(
        (status, &body),
        (200, &serde_json::json!({"status": "ready"}))
    );

    let mut acked: Vec<(usize, String)> = Vec::new();
    let mut n = 0;
    for _ in 0..5 {
        let (status, id) = publish(&c, &pub_url, &payload(n)).await;
        assert_eq!(status, 200);
        acked.push((n, id.unwrap()));
        n += 1;
    }

    // Fill the disk, then publish until the store cannot grow its file any more.
    let filler = fs.path().join("filler");
    let filled = fill(&filler);
    eprintln!("filler: {filled} bytes");
    let mut refused = BTreeSet::new();
    for _ in 0..2000 {
        let (status, id) = publish(&c, &pub_url, &payload(n)).await;
        match status {
            200 => acked.push((n, id.unwrap())),
            503 => {
                refused.insert(n);
                n += 1;
                break;
            }
            other => panic!("publish on a full disk answered {other}"),
        }
        n += 1;
    }
    assert_eq!(refused.len(), 1, "publishes never failed on a full disk");
    assert!(acked.len() < 900, "the window must still hold every event");

    // Still full: not ready. The store retries the file on a timer; should a reopen succeed on the
    // full disk in between, the next publish fails (and marks it) again, so a few rounds suffice.
    let mut not_ready = None;
    for _ in 0..20 {
        let (status, body) = readyz(&c, &ready_url).await;
        if status == 503 {
            not_ready = Some(body);
            break;
        }
        let (status, id) = publish(&c, &pub_url, &payload(n)).await;
        match status {
            200 => acked.push((n, id.unwrap())),
            503 => {
                refused.insert(n);
            }
            other => panic!("publish on a full disk answered {other}"),
        }
        n += 1;
    }
    let body = not_ready.expect("/readyz never answered 503 while publishes failed on a full disk");
    assert_eq!(body["status"], "not ready");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("check free space")),
        "{body}"
    );
    for _ in 0..3 {
        let (status, id) = publish(&c, &pub_url, &payload(n)).await;
        match status {
            200 => acked.push((n, id.unwrap())),
            503 => {
                refused.insert(n);
            }
            other => panic!("publish on a full disk answered {other}"),
        }
        n += 1;
    }
    let (status, _) = c
        .get(server.url("/healthz"))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 200, "/healthz is liveness: the process is alive");

    // Free the space: publishes are acknowledged again within a bounded time, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let freed = tokio::time::Instant::now();
    let deadline = freed + WAIT;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (status, id) = publish(&c, &pub_url, &payload(n)).await;
        match status {
            200 => {
                acked.push((n, id.unwrap()));
                n += 1;
                break;
            }
            503 => {
                refused.insert(n);
            }
            other => panic!("publish after freeing the disk answered {other}"),
        }
        n += 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishes still fail {WAIT:?} after the disk was freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "recovered: publish acknowledged at attempt {attempts}, {:?} after freeing the space",
        freed.elapsed()
    );
    let (status, body) = readyz(&c, &ready_url).await;
    assert_eq!(
        (status, &body),
        (200, &serde_json::json!({"status": "ready"}))
    );
    for _ in 0..5 {
        let (status, id) = publish(&c, &pub_url, &payload(n)).await;
        assert_eq!(status, 200);
        acked.push((n, id.unwrap()));
        n += 1;
    }

    // Ids keep increasing, in one epoch.
    let positions: Vec<(u64, u64)> = acked.iter().map(|(_, id)| position(id)).collect();
    assert!(
        positions
            .windows(2)
            .all(|w| w[0].0 == w[1].0 && w[0].1 < w[1].1),
        "ids must increase: {positions:?}"
    );

    // Resume from the start: every acknowledged event exactly once, in order, nothing refused.
    let (epoch, _) = positions[0];
    let mut reader = Reader::open(&c, &pub_url, Some(&format!("{epoch}-0"))).await;
    let mut got = Vec::new();
    let last = acked.last().unwrap().0;
    while got.last() != Some(&last) {
        let m = tokio::time::timeout(WAIT, reader.message())
            .await
            .expect("replay stalled")
            .expect("stream ended during replay");
        if m.event_type == "sse-reset" {
            continue;
        }
        let tag: usize = m.data.split(' ').next().unwrap().parse().unwrap();
        got.push(tag);
    }
    let want: Vec<usize> = acked.iter().map(|(n, _)| *n).collect();
    assert_eq!(got, want, "replay after recovery (refused: {refused:?})");
    drop(reader);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_redis_is_down() {
    if !cluster_support::redis_available("readyz_is_503_while_redis_is_down") {
        return;
    }
    let mut redis = cluster_support::Redis::start().await;
    let node = cluster_support::Node::start(&redis.url()).await;
    let c = support::client();
    let url = node.url("/readyz");
    let (status, body) = readyz(&c, &url).await;
    assert_eq!(
        (status, &body),
        (200, &serde_json::json!({"status": "ready"}))
    );

    redis.kill().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let body = loop {
        let (status, body) = readyz(&c, &url).await;
        if status == 503 {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed {status} with Redis down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["status"], "not ready");
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    let (status, _) = readyz(&c, &node.url("/healthz")).await;
    assert_eq!(status, 200, "/healthz is liveness");

    redis.restart().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = readyz(&c, &url).await;
        if status == 200 {
            assert_eq!(body, serde_json::json!({"status": "ready"}));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed {status} after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readyz_is_503_while_draining() {
    let server = TestServer::start(sse_server::Hub::builder()).await;
    let c = support::client();
    let (status, body) = readyz(&c, &server.url("/readyz")).await;
    assert_eq!(
        (status, &body),
        (200, &serde_json::json!({"status": "ready"}))
    );
    server.hub.shutdown().await;
    let (status, body) = readyz(&c, &server.url("/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "not ready");
    assert!(
        body["reason"].as_str().unwrap().contains("shutting down"),
        "{body}"
    );
    server.stop().await;
}
