//! The `sse-server` binary: stdin publishing, signals (the console at `/` is in `tests/console.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::process::Stdio;

use sse_proto::Item;
use support::{Reader, WAIT, client};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

struct Running {
    child: Child,
    base: String,
}

/// Spawns the binary with `args` (plus `envs`) and waits for its "listening on" line.
async fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args(args).env("RUST_LOG", "info");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let (child, base) = support::spawn_server(cmd, Stdio::piped()).await;
    Running { child, base }
}

async fn sigterm_and_wait(running: &mut Running) -> std::process::ExitStatus {
    let pid = running.child.id().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(WAIT, running.child.wait())
        .await
        .expect("binary did not exit after SIGTERM in bounded time")
        .unwrap()
}

#[tokio::test]
async fn stdin_lines_become_events_and_sigterm_ends_streams_gracefully() {
    let mut running = spawn(
        &["--stdin", "lines", "--no-demo", "--publish-token", "t"],
        &[("SSE_LISTEN", "127.0.0.1:0")],
    )
    .await;
    let mut reader = Reader::open(&client(), &format!("{}/events/lines", running.base), None).await;
    let mut stdin = running.child.stdin.take().unwrap();
    stdin.write_all(b"first line\nsecond line\n").await.unwrap();
    stdin.flush().await.unwrap();
    assert_eq!(reader.message().await.unwrap().data, "first line");
    assert_eq!(reader.message().await.unwrap().data, "second line");
    // The token given on the command line is the one that publishes.
    let c = client();
    let url = format!("{}/events/lines", running.base);
    assert_eq!(
        c.post(&url)
            .bearer_auth("t")
            .form(&[("data", "via http")])
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(reader.message().await.unwrap().data, "via http");
    assert_eq!(
        c.post(&url)
            .bearer_auth("nope")
            .form(&[("data", "x")])
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let status = sigterm_and_wait(&mut running).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        matches!(reader.next().await, Some(Item::Retry(_))),
        "a retry hint before closing"
    );
    assert_eq!(reader.next().await, None);
}

#[tokio::test]
async fn generated_token_is_printed_and_demo_channel_ticks() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args(["--listen", "127.0.0.1:0", "--heartbeat", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_remove("SSE_PUBLISH_TOKEN")
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (base, token) = tokio::time::timeout(WAIT, async {
        let (mut base, mut token) = (None, None);
        while base.is_none() || token.is_none() {
            let line = lines.next_line().await.unwrap().unwrap();
            if let Some(rest) = line.strip_prefix("sse-server listening on ") {
                base = Some(rest.trim_end_matches('/').to_owned());
            }
            if let Some(rest) = line.trim().strip_prefix("publish token: ") {
                token = Some(rest.to_owned());
            }
        }
        (base.unwrap(), token.unwrap())
    })
    .await
    .expect("no listening line or token printed");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    assert!(token.len() >= 32);
    let c = client();
    let mut demo = Reader::open(&c, &format!("{base}/events/demo"), None).await;
    let tick = demo.message().await.unwrap();
    assert_eq!(tick.event_type, "tick");
    let resp = c
        .post(format!("{base}/events/x"))
        .bearer_auth(&token)
        .form(&[("data", "hi")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page = c.get(format!("{base}/")).send().await.unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(page.text().await.unwrap().contains("new EventSource("));
    child.start_kill().unwrap();
}

#[tokio::test]
async fn static_dir_headers_and_cors_options_apply() {
    let dir = std::env::temp_dir().join(format!(
        "sse-server-static-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(dir.join("css")).unwrap();
    std::fs::write(dir.with_extension("secret"), "do not serve").unwrap();
    std::fs::write(dir.join("index.html"), "<h1>my site</h1>").unwrap();
    std::fs::write(dir.join("css/app.css"), "body{}").unwrap();
    let dir_arg = dir.to_string_lossy().into_owned();
    let running = spawn(
        &[
            "--listen",
            "127.0.0.1:0",
            "--static",
            &dir_arg,
            "--header",
            "X-Frame-Options: DENY",
            "--no-demo",
        ],
        &[("SSE_CORS_ORIGIN", "https://a.example,https://b.example")],
    )
    .await;
    let c = client();
    let index = c.get(format!("{}/", running.base)).send().await.unwrap();
    assert_eq!(index.headers()["x-frame-options"], "DENY");
    assert_eq!(index.text().await.unwrap(), "<h1>my site</h1>");
    let css = c
        .get(format!("{}/css/app.css", running.base))
        .send()
        .await
        .unwrap();
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    // A raw request, so no client-side URL normalisation hides the traversal attempt.
    let secret_name = dir
        .with_extension("secret")
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for path in [
        format!("/../{secret_name}"),
        format!("/%2e%2e/{secret_name}"),
        format!("/css/..%2f..%2f{secret_name}"),
    ] {
        let mut raw = tokio::net::TcpStream::connect(running.base.trim_start_matches("http://"))
            .await
            .unwrap();
        raw.write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(
            WAIT,
            tokio::io::AsyncReadExt::read_to_string(&mut raw, &mut answer),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(
            !answer.contains("do not serve"),
            "{path} escaped the static dir"
        );
    }
    let events = c
        .get(format!("{}/events/x", running.base))
        .header("origin", "https://b.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        events.headers()["access-control-allow-origin"],
        "https://b.example"
    );
    assert_eq!(events.headers()["x-frame-options"], "DENY");
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(dir.with_extension("secret"));
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
