//! Starting the server under test as its own process, so its RSS and CPU can be read from `/proc`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::Error;
use crate::procfs::{self, ProcSample};

/// The publish token both local servers are started with.
pub const TOKEN: &str = "bench-token";

/// Which server a run measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// This project's `sse-server`.
    Ours,
    /// The axum `Sse` + broadcast [`baseline`](crate::baseline).
    Baseline,
    /// Any SSE server reached with `--target` (published to with `--publish-cmd`).
    External,
    /// Two `sse-server --redis` nodes on one redis-server: publishes go to one node, subscribers
    /// listen on the other (see [`cluster`](crate::cluster)).
    Cluster,
    /// nginx with the nchan module (see [`nchan`](crate::nchan)).
    Nchan,
}

impl Kind {
    /// The label used in tables and plots.
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Ours => "sse-server",
            Kind::Baseline => "axum+broadcast",
            Kind::External => "target",
            Kind::Cluster => "sse-server/redis (cross-node)",
            Kind::Nchan => "nginx+nchan",
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerProc {
    child: Option<Child>,
    /// Its process id, when known (for `/proc`).
    pub pid: Option<u32>,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Where to publish when it is not `addr` (another node of a cluster).
    pub publish_addr: Option<SocketAddr>,
    /// The path to publish to when it is not the subscribers' (nchan's publisher location).
    pub publish_path: Option<String>,
    /// A directory of the server's own (its configuration, certificates, store), removed on drop.
    pub(crate) dir: Option<PathBuf>,
    /// Processes that live and die with this one (the other cluster node, redis-server).
    pub(crate) companions: Vec<Child>,
}

impl ServerProc {
    /// Starts `sse-server` (binary at `bin`) on an ephemeral port.
    pub fn start_ours(bin: &Path, queue_size: usize) -> Result<ServerProc, Error> {
        Self::start_ours_with(bin, queue_size, &[])
    }

    /// Like [`start_ours`](ServerProc::start_ours), with extra arguments (e.g. `--redis URL`).
    pub fn start_ours_with(
        bin: &Path,
        queue_size: usize,
        extra: &[&str],
    ) -> Result<ServerProc, Error> {
        let mut cmd = Command::new(bin);
        cmd.args(extra);
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--publish-token",
            TOKEN,
            "--no-demo",
            "--queue-size",
            &queue_size.to_string(),
        ]);
        // Connection limits meant for public endpoints would refuse the benchmark's 10k subscribers.
        let help = Command::new(bin).arg("--help").output()?;
        let help = String::from_utf8_lossy(&help.stdout);
        for flag in ["--max-connections", "--max-connections-per-ip"] {
            if help.contains(&format!("{flag} ")) {
                cmd.args([flag, "1000000"]);
            }
        }
        Self::spawn(cmd, "sse-server listening on http")
    }

    /// Starts the baseline (this executable's `baseline` subcommand) on an ephemeral port.
    pub fn start_baseline(queue_size: usize) -> Result<ServerProc, Error> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args([
            "baseline",
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--capacity",
            &queue_size.to_string(),
        ]);
        Self::spawn(cmd, "baseline listening on http://")
    }

    /// An external server: no process of ours, optionally a pid to sample.
    pub fn external(addr: SocketAddr, pid: Option<u32>) -> ServerProc {
        ServerProc {
            child: None,
            pid,
            addr,
            publish_addr: None,
            publish_path: None,
            dir: None,
            companions: Vec::new(),
        }
    }

    /// A server started by other code: stopped with SIGTERM (so nginx's master stops its worker
    /// too), and `dir` removed, on drop.
    pub(crate) fn from_child(child: Child, addr: SocketAddr, dir: Option<PathBuf>) -> ServerProc {
        ServerProc {
            pid: Some(child.id()),
            child: Some(child),
            addr,
            publish_addr: None,
            publish_path: None,
            dir,
            companions: Vec::new(),
        }
    }

    /// Whether the process has exited already.
    pub(crate) fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    fn spawn(mut cmd: Command, marker: &str) -> Result<ServerProc, Error> {
        cmd.env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Server(format!("cannot start {cmd:?}: {e}")))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| Error::Server("no stderr pipe".into()))?;
        let mut lines = BufReader::new(stderr).lines();
        let mut addr = None;
        // What it said before listening: the reason, if it exits instead.
        let mut said = Vec::new();
        for line in lines.by_ref() {
            let line = line?;
            said.push(line.clone());
            if let Some(rest) = line.split(marker).nth(1) {
                // sse-server says `https://` when it serves TLS.
                let rest = rest.trim_start_matches("s://").trim_start_matches("://");
                addr = rest.trim_end_matches('/').parse().ok();
                break;
            }
        }
        // Keep draining so the server never blocks on a full pipe; forward warnings.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("  [server] {line}");
            }
        });
        let Some(addr) = addr else {
            let _ = child.kill();
            let last = said.len().saturating_sub(3);
            return Err(Error::Server(format!(
                "{cmd:?} exited without printing `{marker}…`; it said: {}",
                said[last..].join(" / ")
            )));
        };
        Ok(ServerProc {
            pid: Some(child.id()),
            child: Some(child),
            addr,
            publish_addr: None,
            publish_path: None,
            dir: None,
            companions: Vec::new(),
        })
    }

    /// Hands over the process (it is then no longer killed on drop of this handle).
    pub(crate) fn child_take(&mut self) -> Option<Child> {
        self.child.take()
    }

    /// Samples RSS and CPU of the process and its children (nginx's worker), None without a pid.
    pub fn sample(&self) -> Option<ProcSample> {
        self.pid.and_then(|pid| procfs::sample_tree(pid).ok())
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if self.dir.is_some()
            && let Some(child) = &mut self.child
        {
            // SIGTERM: nginx's master then stops its worker (SIGKILL would leave the worker behind).
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        for child in self.child.iter_mut().chain(self.companions.iter_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// One line naming the `sse-server` binary a run measures, how old it is, and the write-coalescing
/// budget it runs with (its `--coalesce-ms` default, or `SSE_COALESCE_MS`, which the server
/// inherits), so a results file says which build and which budget produced its numbers.
///
/// ```no_run
/// let line = sse_bench::server::describe_sse_server(std::path::Path::new("target/release/sse-server"));
/// assert!(line.starts_with("sse-server: "));
/// ```
pub fn describe_sse_server(bin: &Path) -> String {
    let age = std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .map_or_else(
            || "age unknown".to_string(),
            |d| format!("built {} min ago", d.as_secs() / 60),
        );
    let budget = match std::env::var("SSE_COALESCE_MS") {
        Ok(ms) => format!("{ms} ms (SSE_COALESCE_MS)"),
        Err(_) => Command::new(bin)
            .arg("--help")
            .output()
            .ok()
            .and_then(|o| coalesce_default(&String::from_utf8_lossy(&o.stdout)))
            .map_or_else(
                || "not reported by --help".to_string(),
                |ms| format!("{ms} ms (its --coalesce-ms default)"),
            ),
    };
    format!(
        "sse-server: {} ({age}); write-coalescing budget {budget}",
        bin.display()
    )
}

/// The `[default: N]` of `--coalesce-ms` in `sse-server --help`.
fn coalesce_default(help: &str) -> Option<u64> {
    let after = &help[help.find("--coalesce-ms")?..];
    let rest = &after[after.find("[default: ")? + "[default: ".len()..];
    rest[..rest.find(']')?].trim().parse().ok()
}

/// Finds the `sse-server` release binary: `explicit`, else next to this executable, else builds it
/// with `cargo build --release -p sse-server`.
pub fn locate_sse_server(explicit: Option<PathBuf>) -> Result<PathBuf, Error> {
    if let Some(p) = explicit {
        return Ok(p);
    }
    let exe = std::env::current_exe()?;
    if let Some(dir) = exe.parent() {
        let sibling = dir.join("sse-server");
        if sibling.is_file() {
            return Ok(sibling);
        }
    }
    eprintln!("sse-bench: building sse-server (cargo build --release -p sse-server)…");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "sse-server"])
        .status()?;
    if !status.success() {
        return Err(Error::Server(
            "cargo build --release -p sse-server failed".into(),
        ));
    }
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let built = Path::new(&target).join("release").join("sse-server");
    if built.is_file() {
        Ok(built)
    } else {
        Err(Error::Server(format!(
            "sse-server not found at {}; pass --server-bin",
            built.display()
        )))
    }
}

/// Waits a little so the server settles (allocations returned, timers idle) before sampling.
pub fn settle() -> Duration {
    Duration::from_millis(1500)
}

#[cfg(test)]
mod tests {
    use super::coalesce_default;

    #[test]
    fn reads_the_coalesce_default_from_help() {
        let help = "      --max-event-bytes <N>\n          [default: 65536]\n\n      --coalesce-ms <MS>\n          Write coalescing under load.\n          [env: SSE_COALESCE_MS=]\n          [default: 20]\n";
        assert_eq!(coalesce_default(help), Some(20));
        assert_eq!(coalesce_default("--listen <ADDR>\n [default: 1]"), None);
        assert_eq!(
            coalesce_default("--coalesce-ms <MS>\n [default: soon]"),
            None
        );
    }
}
