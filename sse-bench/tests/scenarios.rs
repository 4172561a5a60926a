//! The `sse-bench` binary end to end, at small counts, against the real sse-server binary and (when
//! installed) nginx + nchan: the storm, TLS and `rates` scenarios must deliver every event exactly
//! once, resume exactly where `Last-Event-ID` says, and print their tables. Nothing here depends on
//! speed: only counts (lost, duplicated, dropped) are checked.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;

/// The debug sse-server next to this test's target directory, built if missing.
fn sse_server() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("sse-server");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = Command::new(cargo)
            .args(["build", "-p", "sse-server"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "cargo build -p sse-server failed");
    }
    assert!(bin.is_file(), "no sse-server at {}", bin.display());
    bin
}

/// Whether nginx with nchan is installed; fails instead of skipping when SSE_REQUIRE_NGINX=1.
fn nchan_available(test: &str) -> bool {
    match sse_bench::nchan::Nchan::find() {
        Ok(_) => true,
        Err(why) => {
            assert!(
                std::env::var("SSE_REQUIRE_NGINX").as_deref() != Ok("1"),
                "nginx+nchan missing but SSE_REQUIRE_NGINX=1: {why}"
            );
            eprintln!("SKIPPED: {why} ({test}); set SSE_REQUIRE_NGINX=1 to fail instead");
            false
        }
    }
}

/// Whether redis-server is installed; fails instead of skipping when SSE_REQUIRE_REDIS=1.
fn redis_available(test: &str) -> bool {
    match Command::new("redis-server").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        _ => {
            assert!(
                std::env::var("SSE_REQUIRE_REDIS").as_deref() != Ok("1"),
                "redis-server missing but SSE_REQUIRE_REDIS=1"
            );
            eprintln!(
                "SKIPPED: redis-server not installed ({test}); set SSE_REQUIRE_REDIS=1 to fail instead"
            );
            false
        }
    }
}

/// Runs sse-bench with `args` (plus the server binary and an output directory) and returns
/// results.md.
fn bench(name: &str, args: &[&str]) -> String {
    bench_file(name, args, "results.md")
}

/// Like [`bench`], returning the output file `file`.
fn bench_file(name: &str, args: &[&str], file: &str) -> String {
    let out = std::env::temp_dir().join(format!("sse-bench-test-{name}-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_sse-bench"))
        .args(args)
        .arg("--server-bin")
        .arg(sse_server())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sse-bench failed:\n{stderr}");
    let results = std::fs::read_to_string(out.join(file)).unwrap();
    let _ = std::fs::remove_dir_all(&out);
    results
}

/// The table rows (cells trimmed) whose first cell starts with `scenario`.
fn rows<'a>(results: &'a str, scenario: &str) -> Vec<Vec<&'a str>> {
    results
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect::<Vec<_>>()
        })
        .filter(|cells| cells[0].starts_with(scenario))
        .collect()
}

/// Asserts the last three cells (dropped, lost, dup) are 0 and returns the row's server.
fn exact<'a>(row: &[&'a str]) -> &'a str {
    let n = row.len();
    assert_eq!(
        &row[n - 3..],
        ["0", "0", "0"],
        "dropped/lost/dup in {row:?}"
    );
    row[1]
}

fn storm_is_exact(extra: &[&str], servers: &[&str]) {
    let mut args = vec![
        "--scenarios",
        "storm",
        "--storm-subscribers",
        "60",
        "--storm-history",
        "30",
        "--storm-back",
        "12",
        "--storm-spread-ms",
        "300",
        "--no-baseline",
    ];
    args.extend_from_slice(extra);
    let results = bench("storm", &args);
    assert!(results.contains("reconnect storm"), "{results}");
    // The storm table: replayed 12, everyone live, nothing lost or repeated.
    let storm: Vec<_> = rows(&results, "storm")
        .into_iter()
        .filter(|r| r.len() == 21)
        .collect();
    let seen: Vec<&str> = storm.iter().map(|r| exact(r)).collect();
    assert_eq!(seen, servers, "{results}");
    for row in &storm {
        assert_eq!(row[3], "12", "replayed: {row:?}");
        assert_ne!(row[4], "n/a", "not every subscriber went live: {row:?}");
    }
}

#[test]
fn storm_resumes_every_subscriber_exactly_on_sse_server() {
    storm_is_exact(&["--no-nchan"], &["sse-server"]);
}

#[test]
fn storm_resumes_every_subscriber_exactly_on_nchan() {
    if !nchan_available("storm_resumes_every_subscriber_exactly_on_nchan") {
        return;
    }
    storm_is_exact(&["--no-ours"], &["nginx+nchan"]);
}

#[test]
fn storm_resumes_after_a_restart_on_the_durable_store() {
    let results = bench(
        "durable",
        &[
            "--scenarios",
            "storm-durable",
            "--storm-subscribers",
            "40",
            "--storm-history",
            "20",
            "--storm-back",
            "10",
            "--storm-spread-ms",
            "200",
            "--no-baseline",
            "--no-nchan",
        ],
    );
    let storm: Vec<_> = rows(&results, "storm-durable")
        .into_iter()
        .filter(|r| r.len() == 21)
        .collect();
    assert_eq!(storm.len(), 1, "{results}");
    exact(&storm[0]);
}

#[test]
fn tls_scenarios_deliver_every_event_once() {
    let results = bench(
        "tls",
        &[
            "--scenarios",
            "idle-tls,max-tls,max-h2tls",
            "--idle",
            "20",
            "--max-subscribers",
            "20",
            "--h2-streams",
            "5",
            "--duration",
            "1",
            "--no-baseline",
            "--no-nchan",
        ],
    );
    for scenario in ["max-tls", "max-h2tls"] {
        let found = rows(&results, scenario);
        let main: Vec<_> = found.iter().filter(|r| r.len() == 18).collect();
        assert_eq!(main.len(), 1, "{scenario}: {results}");
        exact(main[0]);
        let label = if scenario == "max-tls" {
            "1.1+TLS"
        } else {
            "2+TLS"
        };
        assert_eq!(main[0][2], label);
        assert_ne!(main[0][6], "0", "nothing delivered: {:?}", main[0]);
    }
    let idle = rows(&results, "idle-tls");
    assert!(
        idle.iter()
            .any(|r| r.len() == 18 && r[3] == "20" && r[15] == "0"),
        "{results}"
    );
}

#[test]
fn rates_run_on_all_three_servers_and_say_who_leads() {
    let with_nchan = nchan_available("rates_run_on_all_three_servers_and_say_who_leads");
    let mut args = vec![
        "--scenarios",
        "rates",
        "--rates",
        "20,200",
        "--rates-subscribers",
        "20",
        "--rates-duration",
        "1",
    ];
    if !with_nchan {
        args.push("--no-nchan");
    }
    let results = bench("rates", &args);
    let main: Vec<_> = rows(&results, "rates@")
        .into_iter()
        .filter(|r| r.len() == 18)
        .collect();
    let servers = if with_nchan { 3 } else { 2 };
    assert_eq!(main.len(), 2 * servers, "{results}");
    for row in &main {
        exact(row);
    }
    assert!(results.contains("latency at every rate"), "{results}");
    assert!(results.contains("ours ≤ best peer"), "{results}");
    assert!(Path::new(env!("CARGO_BIN_EXE_sse-bench")).is_file());
}

#[test]
fn redis_cluster_delivers_every_event_once_across_nodes_and_shards() {
    if !redis_available("redis_cluster_delivers_every_event_once_across_nodes_and_shards") {
        return;
    }
    let results = bench_file(
        "redis-cluster",
        &[
            "--redis-cluster",
            "3",
            "--cluster-channels",
            "6",
            "--cluster-subscribers",
            "2",
            "--cluster-rate",
            "60",
            "--duration",
            "1",
        ],
        "cluster.md",
    );
    // One row per store: plain Redis, a 1-primary cluster, a 3-primary cluster; each measured, with
    // 6 channels × 2 subscribers, events delivered in both runs, nothing lost, repeated or dropped.
    let stores: Vec<_> = rows(&results, "redis")
        .into_iter()
        .map(|row| {
            assert_eq!(row.len(), 16, "not measured: {row:?}\n{results}");
            exact(&row);
            assert_eq!(row[2], "12", "subscribers: {row:?}");
            assert_ne!(row[4], "0", "nothing delivered in the closed loop: {row:?}");
            assert_ne!(
                row[10], "n/a",
                "nothing delivered at the fixed rate: {row:?}"
            );
            (row[0], row[1])
        })
        .collect();
    assert_eq!(
        stores,
        [
            ("redis://", "1"),
            ("redis+cluster://", "1"),
            ("redis+cluster://", "3")
        ],
        "{results}"
    );
    assert!(
        results.contains("3 shards ÷ 1 shard: publishes/s"),
        "{results}"
    );
}
