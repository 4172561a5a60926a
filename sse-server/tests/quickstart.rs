//! The root README's quick start and cluster recipe, run as written against the built binary, so the
//! README cannot drift from the program.
//!
//! Each block marked `<!-- quickstart: NAME -->` is taken verbatim, with two deterministic rewrites:
//! `cargo run --release -p sse-server --` becomes the built `sse-server`, and the documented ports
//! become free ones (the start line gets `SSE_LISTEN=127.0.0.1:0`, the port it then announces replaces
//! `8080` in the curl lines; the cluster's 6379 and 8081-8083 become ports picked free). Every command
//! runs in `sh` with no `SSE_*` variable inherited, as in a fresh shell; curl must be installed (`.ci/run`
//! installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod cluster_support;
mod support;

use std::process::Stdio;
use std::time::Duration;

use cluster_support::redis_available;
use support::Reader;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const README: &str = include_str!("../../README.md");
const CARGO_RUN: &str = "cargo run --release -p sse-server --";
/// Upper bound for one wait (a debug build, several processes, 2 shared cores).
const WAIT: Duration = Duration::from_secs(30);

/// The body of the fenced block that follows `<!-- quickstart: {name} -->`.
fn block(name: &str) -> String {
    let marker = format!("<!-- quickstart: {name} -->");
    let at = README
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"));
    let rest = &README[at + marker.len()..];
    let open = rest
        .find("```sh\n")
        .expect("a ```sh block after the marker");
    assert!(
        rest[..open].trim().is_empty(),
        "the block must follow {marker} directly"
    );
    let body = &rest[open + "```sh\n".len()..];
    let close = body.find("```").expect("the block is closed");
    body[..close].to_owned()
}

/// `script` with the built binary in place of `cargo run`.
fn as_built(script: &str) -> String {
    assert!(script.contains(CARGO_RUN), "no `{CARGO_RUN}` in {script:?}");
    script.replace(
        CARGO_RUN,
        &format!("'{}'", env!("CARGO_BIN_EXE_sse-server")),
    )
}

/// `sh -c script` as in a fresh shell: no `SSE_*` variables, its own process group (killed on drop).
fn shell(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SSE_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// Kills a process group (the shell and everything it started) when dropped.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.id().filter(|&id| id > 1) {
            // `-s KILL -- -PGID`: procps-ng 4.0.2 misreads `kill -KILL -PGID`.
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.0.start_kill();
    }
}

fn curl_available() -> bool {
    let found = std::process::Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "curl is not installed: the README's quick start uses it (.ci/run installs it)"
    );
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Subscribers of `channel` on the hub at `base`, per `GET /channels`.
async fn subscribers(base: &str, channel: &str) -> u64 {
    let Ok(resp) = reqwest::get(format!("{base}/channels")).await else {
        return 0;
    };
    let list: serde_json::Value = resp.json().await.unwrap_or_default();
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == channel)
        .map(|c| c["subscribers"].as_u64().unwrap_or(0))
        .sum()
}

async fn wait_for_subscriber(base: &str, channel: &str) {
    tokio::time::timeout(WAIT, async {
        while subscribers(base, channel).await == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the subscriber never showed up in /channels");
}

/// The value of `-d data=VALUE` in a curl line.
fn form_data(line: &str) -> String {
    let at = line
        .find("data=")
        .expect("a `-d data=...` in the publish line");
    line[at + "data=".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_quick_start_runs_as_written() {
    if !curl_available() {
        return;
    }
    let start = block("start");
    assert!(
        !start.contains("--listen"),
        "the test sets the port through SSE_LISTEN"
    );
    let mut cmd = shell(&format!("exec {}", as_built(start.trim())));
    cmd.env("SSE_LISTEN", "127.0.0.1:0").stdout(Stdio::null());
    let (child, base) = support::spawn_server(cmd, Stdio::null()).await;
    let _hub = Group(child);
    let port = base.rsplit(':').next().unwrap().to_owned();

    let subscribe = block("subscribe");
    assert!(subscribe.contains(":8080/"), "{subscribe:?}");
    let subscribe = subscribe.trim().replace(":8080/", &format!(":{port}/"));
    let channel = subscribe.rsplit('/').next().unwrap().to_owned();
    let mut cmd = shell(&format!("exec {subscribe}"));
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut subscriber = Group(cmd.spawn().unwrap());
    let mut stream = subscriber.0.stdout.take().unwrap();
    wait_for_subscriber(&base, &channel).await;

    let publish = block("publish");
    assert!(publish.contains(":8080/"), "{publish:?}");
    let publish = publish.trim().replace(":8080/", &format!(":{port}/"));
    let data = form_data(&publish);
    let mut cmd = shell(&format!("exec {publish}"));
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("the publish line did not finish")
        .unwrap();
    assert!(out.status.success(), "the publish line failed: {out:?}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the publish line answered {:?}, not JSON: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let id = answer["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in the publish answer {answer}"));

    let expected = format!("id: {id}\ndata: {data}\n\n");
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                return false;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains(&expected) {
                return true;
            }
        }
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "the subscribe line printed {:?}, expected {expected:?}",
        String::from_utf8_lossy(&seen)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_cluster_recipe_shares_one_token_and_binds_loopback() {
    let recipe = block("cluster");
    assert!(
        !recipe.contains("0.0.0.0"),
        "the recipe must bind loopback: {recipe}"
    );
    assert!(recipe.contains("--listen 127.0.0.1:$port"), "{recipe}");
    if !redis_available("readme_cluster_recipe_shares_one_token_and_binds_loopback") {
        return;
    }
    let redis = free_port();
    let nodes = [free_port(), free_port(), free_port()];
    let mut script = as_built(&recipe).replace("6379", &redis.to_string());
    for (documented, port) in ["8081", "8082", "8083"].iter().zip(nodes) {
        assert!(script.contains(documented), "{recipe}");
        script = script.replace(documented, &port.to_string());
    }
    // Harness: tell the test the token the recipe chose, and keep the shell (the group) alive.
    script.push_str("\nprintf 'TOKEN=%s\\n' \"$TOKEN\"\nwait\n");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = shell(&script);
    cmd.current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut group = Group(cmd.spawn().unwrap());
    let mut lines = BufReader::new(group.0.stdout.take().unwrap()).lines();
    let token = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(token) = line.strip_prefix("TOKEN=") {
                return token.to_owned();
            }
        }
        panic!("the recipe ended without a token");
    })
    .await
    .expect("the recipe printed no token");
    assert!(token.len() >= 16, "a weak token: {token:?}");
    // Keep draining (redis-server logs to standard output).
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let base = |i: usize| format!("http://127.0.0.1:{}", nodes[i]);
    let client = reqwest::Client::new();
    for i in 0..3 {
        tokio::time::timeout(WAIT, async {
            loop {
                if let Ok(resp) = client.get(format!("{}/healthz", base(i))).send().await
                    && resp.status() == 200
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("node {} never answered /healthz", base(i)));
    }

    let mut reader = Reader::open(&client, &format!("{}/events/recipe", base(1)), None).await;
    wait_for_subscriber(&base(1), "recipe").await;
    for i in 0..3 {
        let url = format!("{}/events/recipe", base(i));
        // A node answers 503 until its Redis connection is up; never 401: they share the token.
        let status = tokio::time::timeout(WAIT, async {
            loop {
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .form(&[("data", format!("via node {i}"))])
                    .send()
                    .await
                    .unwrap();
                if resp.status() != 503 {
                    return resp.status();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("Redis never became reachable");
        assert_eq!(
            status, 200,
            "publishing through {url} with the shared token"
        );
    }
    let wrong = client
        .post(format!("{}/events/recipe", base(2)))
        .bearer_auth("not-the-token")
        .form(&[("data", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let mut got = Vec::new();
    while got.len() < 3 {
        let m = tokio::time::timeout(WAIT, reader.message())
            .await
            .expect("an event published on another node did not arrive")
            .expect("the stream ended");
        got.push(m.data);
    }
    assert_eq!(got, ["via node 0", "via node 1", "via node 2"]);
    drop(group);
}

/// `sse-server ARGS` run to its end (it refuses to start), with no `SSE_*` variables: (success, stderr).
async fn refused(args: &[&str]) -> (bool, String) {
    let mut cmd = shell("exec \"$0\" \"$@\"");
    cmd.arg(env!("CARGO_BIN_EXE_sse-server"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let out = tokio::time::timeout(WAIT, cmd.output())
        .await
        .expect("sse-server should have refused to start")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn publish_token_file_sets_the_token_and_a_bad_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "  file-token\n").unwrap();
    let file = file.to_str().unwrap().to_owned();
    let mut cmd = shell("exec \"$0\" --listen 127.0.0.1:0 --no-demo");
    cmd.arg(env!("CARGO_BIN_EXE_sse-server"))
        .env("SSE_PUBLISH_TOKEN_FILE", &file);
    let (child, base) = support::spawn_server(cmd, Stdio::null()).await;
    let _hub = Group(child);
    let client = reqwest::Client::new();
    for (token, status) in [("file-token", 200), ("file", 401), ("other", 401)] {
        let resp = client
            .post(format!("{base}/events/x"))
            .bearer_auth(token)
            .form(&[("data", "hi")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "publishing with {token:?}");
    }

    let missing = dir.path().join("missing").to_str().unwrap().to_owned();
    let (ok, stderr) = refused(&["--publish-token-file", &missing]).await;
    assert!(!ok && stderr.contains(&missing), "{stderr}");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let empty = empty.to_str().unwrap().to_owned();
    let (ok, stderr) = refused(&["--publish-token-file", &empty]).await;
    assert!(
        !ok && stderr.contains(&empty) && stderr.contains("empty"),
        "{stderr}"
    );
    let (ok, stderr) = refused(&["--publish-token-file", &file, "--publish-token", "x"]).await;
    assert!(!ok && stderr.contains("cannot be used with"), "{stderr}");
}
