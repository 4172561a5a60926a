//! The project's task runner: `cargo xtask <task>`.
//!
//! * `ci`          — everything CI checks: format, clippy `-D warnings`, every test (conformance included),
//!   `cargo package` of the published crates, and a short fuzz smoke when `cargo-fuzz` is installed.
//! * `conformance` — the conformance suite alone.
//! * `bench [parser] [durable] [fanout ARGS...]` — benchmarks (prints their tables); all by default.
//! * `fuzz [--seconds N] [TARGET...]` — runs the fuzz targets (all by default) for N seconds each.
//!
//! Every task ends with a table and a closing `N passed, N failed, N skipped` line. A test that returned
//! early because a tool it needs is missing prints a `SKIPPED:` line; it counts as skipped, not passed.
//!
//! Plain std on purpose: this crate is built first in CI and must cost nothing to compile.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cargo xtask <task>
  ci                           fmt check, clippy -D warnings, all tests, conformance, cargo package, fuzz smoke
  conformance                  the conformance suite alone
  bench [parser] [durable] [fanout ARGS...]
                               benchmarks (default: all of them; `fanout --help` for its options)
  fuzz [--seconds N] [TARGET]  run fuzz targets (default: all, 60 s each)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(task) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    let rest = &args[1..];
    let result = match task.as_str() {
        "ci" => ci(),
        "conformance" => conformance(),
        "bench" => bench(rest),
        "fuzz" => fuzz(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown task `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The outcome of one step, for the summary table.
struct Step {
    name: String,
    ok: bool,
    elapsed: Duration,
    tests: TestCounts,
    /// Tests that returned early because a tool was missing.
    skipped: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct TestCounts {
    passed: u64,
    failed: u64,
    /// `#[ignore]`d tests (libtest's own count).
    ignored: u64,
    /// Tests libtest reports as `ok` that printed a `SKIPPED:` line: they returned early because a tool
    /// they need (chromium, node, python, redis-server) is missing, and proved nothing.
    skipped: u64,
}

impl TestCounts {
    fn add(&mut self, other: TestCounts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
        self.skipped += other.skipped;
    }
}

/// Counts the results in `cargo test` output, one line at a time: libtest's `test result:` lines, minus
/// the passing tests whose captured output (shown by `--show-output` in a `---- NAME stdout ----`
/// section) has a skip marker, which count as skipped instead.
#[derive(Debug, Default)]
struct Tally {
    counts: TestCounts,
    /// Names of the tests counted as skipped, for the summary.
    skipped: Vec<String>,
    /// The test binary being read: tests reported `ok`, tests whose output has a skip marker, and the
    /// test whose captured output is being read.
    passed: BTreeSet<String>,
    marked: BTreeSet<String>,
    section: Option<String>,
}

impl Tally {
    fn line(&mut self, line: &str) {
        if let Some((name, status)) = test_status_line(line) {
            if status == "ok" {
                self.passed.insert(name.to_owned());
            }
        } else if let Some(name) = output_section(line) {
            self.section = Some(name.to_owned());
        } else if is_skip_marker(line) {
            if let Some(name) = &self.section {
                self.marked.insert(name.clone());
            }
        } else if line.starts_with("running ") {
            // A new test binary (names are only unique within one).
            self.reset();
        } else if line.trim().starts_with("test result: ") {
            let mut counts = parse_test_result(line);
            for name in self.marked.intersection(&self.passed) {
                if counts.passed > 0 {
                    counts.passed -= 1;
                    counts.skipped += 1;
                    self.skipped.push(name.clone());
                }
            }
            self.counts.add(counts);
            self.reset();
        }
    }

    fn reset(&mut self) {
        self.passed.clear();
        self.marked.clear();
        self.section = None;
    }
}

/// `test NAME ... STATUS` → (NAME, STATUS).
fn test_status_line(line: &str) -> Option<(&str, &str)> {
    let (name, status) = line.strip_prefix("test ")?.rsplit_once(" ... ")?;
    Some((name, status.trim()))
}

/// `---- NAME stdout ----` (libtest's header above a test's captured output) → NAME.
fn output_section(line: &str) -> Option<&str> {
    line.strip_prefix("---- ")?.strip_suffix(" stdout ----")
}

/// The line a test prints when it returns early because a tool is missing: `SKIPPED: ...`, possibly
/// made loud as `*** SKIPPED: ... ***`.
fn is_skip_marker(line: &str) -> bool {
    line.trim_start()
        .trim_start_matches('*')
        .trim_start()
        .starts_with("SKIPPED:")
}

#[derive(Default)]
struct Runner {
    steps: Vec<Step>,
}

impl Runner {
    /// Runs `cargo <args>` from the workspace root, echoing its output and counting libtest results.
    fn cargo(&mut self, name: &str, args: &[&str], envs: &[(&str, &str)]) -> bool {
        let mut cmd = Command::new(cargo());
        cmd.args(args).current_dir(root());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        self.run(name, cmd)
    }

    fn run(&mut self, name: &str, cmd: Command) -> bool {
        self.run_collecting(name, cmd, false).0
    }

    /// Runs `cmd`, echoing its stdout and counting test results; returns whether it succeeded and, when
    /// `keep` is set, its stdout lines.
    fn run_collecting(&mut self, name: &str, mut cmd: Command, keep: bool) -> (bool, Vec<String>) {
        eprintln!("\n==> {name}: {cmd:?}");
        let start = Instant::now();
        let mut tally = Tally::default();
        let mut lines = Vec::new();
        let ok = match cmd.stdout(Stdio::piped()).spawn() {
            Err(e) => {
                eprintln!("cannot start {cmd:?}: {e}");
                false
            }
            Ok(mut child) => {
                if let Some(out) = child.stdout.take() {
                    let stdout = std::io::stdout();
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        tally.line(&line);
                        let _ = writeln!(stdout.lock(), "{line}");
                        if keep {
                            lines.push(line);
                        }
                    }
                }
                child.wait().map(|s| s.success()).unwrap_or(false)
            }
        };
        self.steps.push(Step {
            name: name.to_owned(),
            ok,
            elapsed: start.elapsed(),
            tests: tally.counts,
            skipped: tally.skipped,
        });
        (ok, lines)
    }

    /// Prints the summary table and the closing `N passed, N failed, N skipped` line (skipped: ignored
    /// tests and tests that returned early for lack of a tool); errors if any step failed.
    fn finish(self, title: &str) -> Result<(), String> {
        let mut total = TestCounts::default();
        println!("\n{title} summary");
        println!(
            "{:<34} {:>6} {:>8} {:>7} {:>7} {:>8} {:>8}",
            "step", "result", "time", "passed", "failed", "ignored", "skipped"
        );
        for s in &self.steps {
            total.add(s.tests);
            println!(
                "{:<34} {:>6} {:>7.1}s {:>7} {:>7} {:>8} {:>8}",
                s.name,
                if s.ok { "ok" } else { "FAILED" },
                s.elapsed.as_secs_f64(),
                s.tests.passed,
                s.tests.failed,
                s.tests.ignored,
                s.tests.skipped
            );
        }
        let skipped: Vec<&str> = self
            .steps
            .iter()
            .flat_map(|s| s.skipped.iter().map(String::as_str))
            .collect();
        if !skipped.is_empty() {
            println!(
                "SKIPPED (a tool was missing, counted as skipped): {}",
                skipped.join(", ")
            );
        }
        let failed_steps: Vec<&str> = self
            .steps
            .iter()
            .filter(|s| !s.ok)
            .map(|s| s.name.as_str())
            .collect();
        println!("{}", closing_line(total));
        if failed_steps.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{title}: failed steps: {}",
                failed_steps.join(", ")
            ))
        }
    }
}

/// The line CI reads, alone on its line: `N passed, N failed, N skipped`.
fn closing_line(total: TestCounts) -> String {
    format!(
        "{} passed, {} failed, {} skipped",
        total.passed,
        total.failed,
        total.ignored + total.skipped
    )
}

/// Reads libtest's `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line.
fn parse_test_result(line: &str) -> TestCounts {
    let mut counts = TestCounts::default();
    let Some(rest) = line.trim().strip_prefix("test result: ") else {
        return counts;
    };
    for part in rest.split(['.', ';']) {
        let mut words = part.split_whitespace();
        if let (Some(n), Some(what)) = (words.next(), words.next())
            && let Ok(n) = n.parse::<u64>()
        {
            match what {
                "passed" => counts.passed += n,
                "failed" => counts.failed += n,
                "ignored" => counts.ignored += n,
                _ => {}
            }
        }
    }
    counts
}

fn ci() -> Result<(), String> {
    let mut r = Runner::default();
    r.cargo("fmt --check", &["fmt", "--all", "--", "--check"], &[]);
    r.cargo(
        "clippy -D warnings",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    );
    // `--show-output` prints the captured output of passing tests too, so a test that returned early
    // with a `SKIPPED:` line (a tool is missing) is counted as skipped rather than passed.
    r.cargo(
        "tests (workspace, conformance included)",
        &[
            "test",
            "--workspace",
            "--all-features",
            "--",
            "--show-output",
        ],
        &[],
    );
    features(&mut r);
    package(&mut r);
    if fuzz_available() {
        let seconds = std::env::var("XTASK_FUZZ_SMOKE_SECONDS").unwrap_or_else(|_| "10".into());
        for target in fuzz_targets()? {
            run_fuzz_target(&mut r, &target, &seconds);
        }
    } else {
        eprintln!(
            "\nSKIPPED: fuzz smoke (cargo-fuzz is not installed; `cargo install cargo-fuzz` enables it)"
        );
    }
    r.finish("ci")
}

/// Every cargo feature of sse-server builds alone and with the others (`cargo hack --each-feature`:
/// no default features, each feature by itself, all of them), so a library user who turns the
/// defaults off never meets a build error. cargo-hack is installed by `.ci/run`; in CI its absence
/// fails the step, elsewhere it is skipped loudly.
fn features(r: &mut Runner) {
    let available = Command::new(cargo())
        .args(["hack", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !available && std::env::var_os("CI").is_none() {
        eprintln!(
            "\nSKIPPED: feature check (cargo-hack is not installed; `cargo install cargo-hack` enables it)"
        );
        return;
    }
    r.cargo(
        "features build alone (cargo hack --each-feature -p sse-server)",
        &[
            "hack",
            "check",
            "--each-feature",
            "--no-dev-deps",
            "-p",
            "sse-server",
        ],
        &[],
    );
}

/// `cargo package` for the published crates, so the packaging rules (metadata, the files in each
/// `.crate`, versioned path dependencies, a crate that builds from its `.crate` alone) are checked on every
/// run, not first at release time.
///
/// One command for the three: cargo packages them in dependency order (sse-proto, then sse-server and
/// sse-client) and resolves sse-proto, which is not on crates.io yet, from the `.crate` it has just made.
/// Packaged on its own, sse-server or sse-client fails even with `--no-verify` ("no matching package named
/// `sse-proto` found": its Cargo.lock is resolved from the registry). So nothing needs `--no-verify`:
/// each `.crate` is unpacked and built (its other dependencies from crates.io, hence network or a warm
/// cargo cache). `--allow-dirty`: the check is about the sources as they are, committed or not.
fn package(r: &mut Runner) {
    forget_packaged_sources();
    r.cargo(
        "package sse-proto, sse-server, sse-client",
        &[
            "package",
            "-p",
            "sse-proto",
            "-p",
            "sse-server",
            "-p",
            "sse-client",
            "--allow-dirty",
        ],
        &[],
    );
}

/// Cargo unpacks the `.crate`s of the temporary overlay registry that `cargo package` verifies against
/// into `$CARGO_HOME/registry/src/-<hash>/`, and never unpacks the same name and version again. Our
/// crates keep version 0.1.0 while their sources change, so on a machine that packaged them before, the
/// verify step would build sse-server against a stale sse-proto. Those directories (only our three
/// crates, only in overlay registries, whose names start with `-`) are removed first.
fn forget_packaged_sources() {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry").join("src")) else {
        return;
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return;
    };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        let Ok(crates) = std::fs::read_dir(registry.path()) else {
            continue;
        };
        for krate in crates.flatten() {
            let name = krate.file_name().to_string_lossy().into_owned();
            if ["sse-proto-", "sse-server-", "sse-client-"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                let _ = std::fs::remove_dir_all(krate.path());
            }
        }
    }
}

/// The conformance crate, one test target at a time (so every result is attributed to its suite),
/// then a suite × peer table. Tests that skip because a tool is missing print a `SKIPPED:` line, which
/// `--show-output` surfaces; `.ci/run` sets `SSE_REQUIRE_BROWSER`/`SSE_REQUIRE_PEERS` so CI never skips.
fn conformance() -> Result<(), String> {
    let mut r = Runner::default();
    let base = ["test", "-p", "conformance", "--all-features"];
    if !r.cargo(
        "build conformance tests",
        &[&base[..], &["--no-run"]].concat(),
        &[],
    ) {
        return r.finish("conformance");
    }
    let mut targets: Vec<(String, Vec<String>)> = vec![
        ("lib+bins".into(), vec!["--lib".into(), "--bins".into()]),
        ("doc".into(), vec!["--doc".into()]),
    ];
    let tests_dir = root().join("conformance").join("tests");
    let mut stems: Vec<String> = std::fs::read_dir(&tests_dir)
        .map_err(|e| format!("cannot list {}: {e}", tests_dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    stems.sort();
    for stem in stems {
        targets.push((stem.clone(), vec!["--test".into(), stem]));
    }
    let mut results = Vec::new();
    for (suite, selector) in &targets {
        let mut cmd = Command::new(cargo());
        cmd.current_dir(root())
            .args(base)
            .args(selector)
            .args(["--", "--show-output"]);
        let (_, lines) = r.run_collecting(&format!("conformance {suite}"), cmd, true);
        results.extend(conformance_results(suite, &lines));
    }
    print_conformance_table(&results);
    r.finish("conformance")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
    Skipped,
}

/// One test's outcome: (suite, peer, outcome).
type TestOutcome = (String, &'static str, Outcome);

/// Reads `test NAME ... ok|FAILED|ignored` lines, and `SKIPPED:` lines in a `---- NAME stdout ----`
/// section (a test that returned early because its tool is missing).
fn conformance_results(suite: &str, lines: &[String]) -> Vec<TestOutcome> {
    let mut outcomes: Vec<(String, Outcome)> = Vec::new();
    let mut skipped = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in lines {
        if let Some((name, status)) = test_status_line(line) {
            let outcome = match status {
                "ok" => Outcome::Passed,
                s if s.starts_with("ignored") => Outcome::Skipped,
                _ => Outcome::Failed,
            };
            outcomes.push((name.to_owned(), outcome));
        } else if let Some(name) = output_section(line) {
            current = Some(name.to_owned());
        } else if is_skip_marker(line)
            && let Some(name) = &current
        {
            skipped.insert(name.clone());
        }
    }
    outcomes
        .into_iter()
        .map(|(name, outcome)| {
            let outcome = if outcome == Outcome::Passed && skipped.contains(&name) {
                Outcome::Skipped
            } else {
                outcome
            };
            (suite.to_owned(), conformance_peer(suite, &name), outcome)
        })
        .collect()
}

/// Who the test holds our code against.
fn conformance_peer(suite: &str, test: &str) -> &'static str {
    match suite {
        "browser" => "Chromium EventSource",
        "peers" if test.contains("node_eventsource") => "npm eventsource (client)",
        "peers" if test.contains("httpx_sse") => "python httpx-sse (client)",
        "peers" if test.contains("axum") => "axum Sse (server)",
        "peers" if test.contains("starlette") => "python sse-starlette (server)",
        "peers" => "other peer",
        "contract" => "sse-contract-tests protocol",
        "differential" | "differential_rescan" => "eventsource-stream",
        _ => "WHATWG spec (ours)",
    }
}

fn print_conformance_table(results: &[TestOutcome]) {
    let mut rows: Vec<(String, &'static str, [u64; 3])> = Vec::new();
    for (suite, peer, outcome) in results {
        let i = match rows.iter().position(|r| &r.0 == suite && r.1 == *peer) {
            Some(i) => i,
            None => {
                rows.push((suite.clone(), peer, [0; 3]));
                rows.len() - 1
            }
        };
        rows[i].2[*outcome as usize] += 1;
    }
    println!("\nconformance: suite × peer");
    println!(
        "{:<22} {:<32} {:>7} {:>7} {:>8}",
        "suite", "peer", "passed", "failed", "skipped"
    );
    for (suite, peer, [passed, failed, skipped]) in &rows {
        println!("{suite:<22} {peer:<32} {passed:>7} {failed:>7} {skipped:>8}");
    }
    let skipped: u64 = rows.iter().map(|r| r.2[2]).sum();
    if skipped > 0 {
        println!(
            "SKIPPED: {skipped} test(s) lacked chromium/node/python peers; run .ci/run's installs (CI sets SSE_REQUIRE_BROWSER=1 SSE_REQUIRE_PEERS=1)"
        );
    }
}

fn bench(args: &[String]) -> Result<(), String> {
    // Everything after `fanout` belongs to the fan-out benchmark (`cargo xtask bench fanout --help`).
    let (names, fanout_args): (Vec<&str>, Vec<&str>) = match args.iter().position(|a| a == "fanout")
    {
        Some(i) => (
            args[..=i].iter().map(String::as_str).collect(),
            args[i + 1..].iter().map(String::as_str).collect(),
        ),
        None if args.is_empty() => (vec!["parser", "durable", "fanout"], Vec::new()),
        None => (args.iter().map(String::as_str).collect(), Vec::new()),
    };
    let mut r = Runner::default();
    for b in names {
        match b {
            "parser" => r.cargo(
                "bench parser",
                &["bench", "-p", "conformance", "--bench", "parser"],
                &[],
            ),
            "durable" => r.cargo(
                "bench durable (publish throughput per backend)",
                &["bench", "-p", "sse-server", "--bench", "durable"],
                &[],
            ),
            // Release builds of both: the benchmark starts sse-server from next to its own binary.
            "fanout" => {
                r.cargo(
                    "build fanout (release)",
                    &["build", "--release", "-p", "sse-server", "-p", "sse-bench"],
                    &[],
                ) && {
                    let mut cmd = vec!["run", "--release", "-q", "-p", "sse-bench", "--"];
                    cmd.extend(&fanout_args);
                    r.cargo("bench fanout", &cmd, &[])
                }
            }
            other => {
                return Err(format!(
                    "unknown benchmark `{other}` (known: parser, durable, fanout [ARGS])"
                ));
            }
        };
    }
    r.finish("bench")
}

fn fuzz(args: &[String]) -> Result<(), String> {
    let mut seconds = "60".to_owned();
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => seconds = it.next().ok_or("--seconds needs a number")?.clone(),
            t => targets.push(t.to_owned()),
        }
    }
    if seconds.parse::<u64>().is_err() {
        return Err(format!("--seconds wants a whole number, got `{seconds}`"));
    }
    if !fuzz_available() {
        return Err("cargo-fuzz is not installed: run `cargo install cargo-fuzz` first".into());
    }
    if targets.is_empty() {
        targets = fuzz_targets()?;
    }
    let mut r = Runner::default();
    for t in &targets {
        run_fuzz_target(&mut r, t, &seconds);
    }
    r.finish("fuzz")
}

fn fuzz_dir() -> PathBuf {
    root().join("fuzz")
}

fn fuzz_available() -> bool {
    fuzz_dir().join("Cargo.toml").exists()
        && Command::new(cargo())
            .args(["fuzz", "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
}

fn fuzz_targets() -> Result<Vec<String>, String> {
    let dir = fuzz_dir().join("fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.path()
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    Ok(names)
}

/// cargo-fuzz passes nightly-only `-Z` flags; stable rustc accepts them with RUSTC_BOOTSTRAP=1, which only
/// affects this build. `-s none`: no sanitizer (ASan needs nightly's std, and the code forbids `unsafe`),
/// while sancov coverage instrumentation still guides the fuzzer. New inputs go to a scratch directory
/// listed first, so the committed seeds in `fuzz/corpus/<target>` stay as they are.
fn run_fuzz_target(r: &mut Runner, target: &str, seconds: &str) {
    let scratch = std::env::temp_dir().join("sse-fuzz").join(target);
    let _ = std::fs::create_dir_all(&scratch);
    let seeds = fuzz_dir().join("corpus").join(target);
    let mut cmd = Command::new(cargo());
    cmd.current_dir(fuzz_dir())
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["fuzz", "run", "-s", "none", target])
        .arg(&scratch)
        .arg(&seeds)
        .args(["--", &format!("-max_total_time={seconds}")]);
    r.run(&format!("fuzz {target} ({seconds}s)"), cmd);
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The workspace root: the checkout `cargo xtask` was run in. `cargo run` sets `CARGO_MANIFEST_DIR`
/// for this run, which is preferred to the compile-time path: two checkouts sharing one
/// `CARGO_TARGET_DIR` share this binary, and the compile-time path would send every run to the
/// checkout that built it last (a benchmark then measures the other checkout's code).
fn root() -> PathBuf {
    // xtask lives one level below the workspace root.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::parse_test_result;

    #[test]
    fn conformance_results_attribute_peers_and_skips() {
        use super::{Outcome, conformance_results};
        let lines: Vec<String> = [
            "test chromium_stops_for_good_on_204 ... ok",
            "test node_eventsource_receives_x ... ok",
            "test our_client_resumes_from_axum_sse ... FAILED",
            "successes:",
            "---- node_eventsource_receives_x stdout ----",
            "SKIPPED: node not installed",
        ]
        .map(String::from)
        .to_vec();
        let browser = conformance_results("browser", &lines[..1]);
        assert_eq!(browser[0].1, "Chromium EventSource");
        assert_eq!(browser[0].2, Outcome::Passed);
        let peers = conformance_results("peers", &lines[1..]);
        assert_eq!(peers[0].1, "npm eventsource (client)");
        assert_eq!(peers[0].2, Outcome::Skipped);
        assert_eq!(peers[1].1, "axum Sse (server)");
        assert_eq!(peers[1].2, Outcome::Failed);
    }

    /// `cargo test -- --show-output` for two test binaries: the first has a test that returned early
    /// (its marker printed by `println!` and, louder, by `eprintln!`, both captured), the second a test
    /// with the same name that really ran, an ignored test and a failure whose output has a marker.
    const SHOW_OUTPUT: &str = "
running 3 tests
test chromium_receives_named_events ... ok
test vectors_match ... ok
test node_eventsource_receives_x ... ok

successes:

---- chromium_receives_named_events stdout ----

*** SKIPPED: chromium not installed (set SSE_REQUIRE_BROWSER=1 to make this fail) ***

SKIPPED: chromium not installed

---- vectors_match stdout ----
checked 40 vectors

successes:
    chromium_receives_named_events
    node_eventsource_receives_x
    vectors_match

test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.20s

running 4 tests
test chromium_receives_named_events ... ok
test cluster_replays ... FAILED
test slow_one ... ignored
test demo_page ... ok

successes:

---- demo_page stdout ----
SKIPPED: redis-server not installed (demo_page); set SSE_REQUIRE_REDIS=1 to fail instead

successes:
    chromium_receives_named_events
    demo_page

failures:

---- cluster_replays stdout ----
SKIPPED: redis-server not installed
thread 'cluster_replays' panicked at tests/cluster.rs:9:5

failures:
    cluster_replays

test result: FAILED. 2 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 1.00s
";

    #[test]
    fn tests_that_printed_a_skip_marker_count_as_skipped_not_passed() {
        use super::{Tally, TestCounts, closing_line};
        let mut tally = Tally::default();
        for line in SHOW_OUTPUT.lines() {
            tally.line(line);
        }
        assert_eq!(
            tally.counts,
            TestCounts {
                passed: 3,
                failed: 1,
                ignored: 1,
                skipped: 2
            }
        );
        assert_eq!(
            tally.skipped,
            ["chromium_receives_named_events", "demo_page"]
        );
        assert_eq!(closing_line(tally.counts), "3 passed, 1 failed, 3 skipped");
    }

    #[test]
    fn without_markers_the_counts_are_libtest_s() {
        use super::{Tally, TestCounts};
        let mut tally = Tally::default();
        for line in [
            "running 2 tests",
            "test a ... ok",
            "test b ... ok",
            "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            // An xtask-level line outside any test's output is not a test.
            "SKIPPED: fuzz smoke",
        ] {
            tally.line(line);
        }
        assert_eq!(
            tally.counts,
            TestCounts {
                passed: 2,
                ..TestCounts::default()
            }
        );
    }

    #[test]
    fn conformance_table_and_closing_line_agree() {
        use super::{Outcome, Tally, conformance_results};
        let lines: Vec<String> = SHOW_OUTPUT.lines().map(String::from).collect();
        let split = lines
            .iter()
            .position(|l| l.starts_with("running 4"))
            .unwrap_or(lines.len());
        let mut outcomes = conformance_results("browser", &lines[..split]);
        outcomes.extend(conformance_results("peers", &lines[split..]));
        let count = |o: Outcome| outcomes.iter().filter(|r| r.2 == o).count() as u64;
        let mut tally = Tally::default();
        for line in &lines {
            tally.line(line);
        }
        let c = tally.counts;
        assert_eq!(count(Outcome::Passed), c.passed);
        assert_eq!(count(Outcome::Failed), c.failed);
        assert_eq!(count(Outcome::Skipped), c.ignored + c.skipped);
    }

    #[test]
    fn reads_libtest_summary_lines() {
        let c = parse_test_result(
            "test result: ok. 12 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        );
        assert_eq!((c.passed, c.failed, c.ignored, c.skipped), (12, 1, 3, 0));
        let c = parse_test_result("running 3 tests");
        assert_eq!((c.passed, c.failed, c.ignored), (0, 0, 0));
    }
}
