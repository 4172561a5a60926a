//! Headless Chromium driven over the DevTools protocol (a minimal WebSocket client on a loopback
//! socket: no extra crates), for the console tests: evaluate JavaScript in the page, wait for a DOM
//! condition, record every URL the page requests, and save screenshots under the target directory.
#![allow(dead_code)]

use std::io::{BufRead, BufReader as StdBufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Upper bound for one DevTools answer, and for a DOM condition to become true.
pub const BROWSER_WAIT: Duration = Duration::from_secs(20);

/// At most this many browsers at once in this test binary: each is several processes, CI has 2 cores.
static BROWSERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .into_iter()
    .find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Chromium, or `None` after a `SKIPPED:` line; missing Chromium fails when `SSE_REQUIRE_BROWSER=1`.
pub fn chromium_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert!(
            std::env::var("SSE_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "chromium is not installed but SSE_REQUIRE_BROWSER=1 (apt-get install -y chromium)"
        );
        eprintln!("SKIPPED: chromium not installed (set SSE_REQUIRE_BROWSER=1 to make this fail)");
    }
    found
}

/// The flags every Chromium of these tests runs with.
pub fn chromium_args(profile: &Path) -> Vec<String> {
    [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--window-size=1280,900",
    ]
    .into_iter()
    .map(String::from)
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect()
}

/// Where screenshots go: `$CARGO_TARGET_DIR`, else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// A fresh directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "sse-console-{tag}-{}-{n}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child in its own process group; dropping it kills the group (Chromium's zygote and renderers).
pub struct Group(pub std::process::Child);

impl Group {
    pub fn spawn(mut cmd: std::process::Command) -> Group {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        Group(cmd.spawn().unwrap())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = self.0.id();
        if pgid > 1 {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pgid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One headless Chromium with one page, driven over DevTools.
pub struct Browser {
    pub page: Cdp,
    _group: Group,
    _profile: TempDir,
    _permit: tokio::sync::SemaphorePermit<'static>,
}

impl Browser {
    pub async fn launch(chromium: &Path) -> Browser {
        let permit = tokio::time::timeout(Duration::from_secs(180), BROWSERS.acquire())
            .await
            .expect("no browser slot within 180 s")
            .unwrap();
        let profile = TempDir::new("profile");
        let mut cmd = std::process::Command::new(chromium);
        cmd.args(chromium_args(&profile.0))
            .arg("--remote-debugging-port=0")
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut group = Group::spawn(cmd);
        let stderr = group.0.stderr.take().unwrap();
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID" on standard error.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in StdBufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("DevTools listening on ws://").nth(1)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(rest.split('/').next().unwrap_or("").to_owned());
                }
            }
        });
        let host = tokio::time::timeout(BROWSER_WAIT, rx)
            .await
            .expect("chromium did not print its DevTools address")
            .expect("chromium exited before listening for DevTools");
        let targets: Value = reqwest::get(format!("http://{host}/json/list"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ws = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("no page target")
            .to_owned();
        let mut page = Cdp::connect(&ws).await;
        page.call("Page.enable", json!({})).await;
        page.call("Runtime.enable", json!({})).await;
        page.call("Network.enable", json!({})).await;
        Browser {
            page,
            _group: group,
            _profile: profile,
            _permit: permit,
        }
    }
}

/// A DevTools session on one page over a WebSocket.
pub struct Cdp {
    socket: BufReader<TcpStream>,
    next_id: u64,
    /// Every URL the page requested (`Network.requestWillBeSent`), in order.
    pub requests: Vec<String>,
    /// Uncaught exceptions and `console.error` calls in the page.
    pub errors: Vec<String>,
}

impl Cdp {
    async fn connect(ws_url: &str) -> Cdp {
        let rest = ws_url.strip_prefix("ws://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut socket = BufReader::new(TcpStream::connect(host).await.unwrap());
        // No Origin header: Chromium then accepts the connection without --remote-allow-origins.
        let handshake = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        socket
            .get_mut()
            .write_all(handshake.as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            socket.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "no WebSocket upgrade: {head}"
        );
        Cdp {
            socket,
            next_id: 0,
            requests: Vec::new(),
            errors: Vec::new(),
        }
    }

    async fn send_text(&mut self, text: &str) {
        let payload = text.as_bytes();
        let mask = [0x5a, 0x17, 0xc3, 0x9e];
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.socket.get_mut().write_all(&frame).await.unwrap();
    }

    async fn read_message(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.socket.read_exact(&mut head).await.unwrap();
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let len = match head[1] & 0x7f {
                126 => u64::from(self.socket.read_u16().await.unwrap()),
                127 => self.socket.read_u64().await.unwrap(),
                n => u64::from(n),
            };
            let mask = if head[1] & 0x80 != 0 {
                let mut m = [0u8; 4];
                self.socket.read_exact(&mut m).await.unwrap();
                Some(m)
            } else {
                None
            };
            let mut payload = vec![0u8; usize::try_from(len).unwrap()];
            self.socket.read_exact(&mut payload).await.unwrap();
            if let Some(m) = mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= m[i % 4];
                }
            }
            match opcode {
                0x8 => panic!("chromium closed the DevTools connection"),
                0x9 | 0xa => continue, // ping/pong: Chromium does not ping its clients
                _ => message.extend_from_slice(&payload),
            }
            if fin {
                return String::from_utf8(message).unwrap();
            }
        }
    }

    /// Sends one DevTools command and returns its result, recording the events read meanwhile.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = json!({"id": id, "method": method, "params": params}).to_string();
        self.send_text(&command).await;
        let deadline = Instant::now() + BROWSER_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let text = tokio::time::timeout(left, self.read_message())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within {BROWSER_WAIT:?}"));
            let msg: Value = serde_json::from_str(&text).unwrap();
            if msg["id"] == id {
                assert!(
                    msg.get("error").is_none(),
                    "{method} failed: {}",
                    msg["error"]
                );
                return msg["result"].clone();
            }
            self.record(&msg);
        }
    }

    fn record(&mut self, msg: &Value) {
        match msg["method"].as_str() {
            Some("Network.requestWillBeSent") => {
                if let Some(url) = msg["params"]["request"]["url"].as_str() {
                    self.requests.push(url.to_owned());
                }
            }
            Some("Runtime.exceptionThrown") => {
                self.errors
                    .push(msg["params"]["exceptionDetails"].to_string());
            }
            Some("Runtime.consoleAPICalled") if msg["params"]["type"] == "error" => {
                self.errors.push(msg["params"]["args"].to_string());
            }
            _ => {}
        }
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(details) = result.get("exceptionDetails") {
            panic!("page threw for `{expression}`: {details}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is truthy (bounded by [`BROWSER_WAIT`]) and returns its value.
    pub async fn wait_for(&mut self, expression: &str) -> Value {
        let deadline = Instant::now() + BROWSER_WAIT;
        loop {
            let value = self.eval(expression).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let log = self
                    .eval("document.getElementById('log-rows') && document.getElementById('log-rows').innerText")
                    .await;
                panic!(
                    "not true within {BROWSER_WAIT:?}: `{expression}`\nlog: {log}\nerrors: {:?}",
                    self.errors
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Loads `url` and waits for the console's script to have run.
    pub async fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
        self.wait_for("document.readyState === 'complete' && document.getElementById('types').children.length > 0")
            .await;
    }

    /// Saves a PNG of the page as `<target>/console-<name>.png` and returns its path.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let bytes = base64_decode(shot["data"].as_str().unwrap());
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        let dir = target_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("console-{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|&c| c != b'=' && c != b'\n').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_padded_and_unpadded_input() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}
