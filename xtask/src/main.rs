//! The project's task runner: `cargo xtask <task>`.
//!
//! * `ci`          — everything CI checks: format, clippy `-D warnings`, every test (conformance included),
//!   and a short fuzz smoke when `cargo-fuzz` is installed.
//! * `conformance` — the conformance suite alone.
//! * `bench [parser]` — benchmarks (prints their tables).
//! * `fuzz [--seconds N] [TARGET...]` — runs the fuzz targets (all by default) for N seconds each.
//!
//! Plain std on purpose: this crate is built first in CI and must cost nothing to compile.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cargo xtask <task>
  ci                           fmt check, clippy -D warnings, all tests, conformance, fuzz smoke
  conformance                  the conformance suite alone
  bench [parser]               benchmarks (default: all of them)
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
}

#[derive(Default, Clone, Copy)]
struct TestCounts {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl TestCounts {
    fn add(&mut self, other: TestCounts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
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

    fn run(&mut self, name: &str, mut cmd: Command) -> bool {
        eprintln!("\n==> {name}: {cmd:?}");
        let start = Instant::now();
        let mut tests = TestCounts::default();
        let ok = match cmd.stdout(Stdio::piped()).spawn() {
            Err(e) => {
                eprintln!("cannot start {cmd:?}: {e}");
                false
            }
            Ok(mut child) => {
                if let Some(out) = child.stdout.take() {
                    let stdout = std::io::stdout();
                    for line in BufReader::new(out).lines().map_while(Result::ok) {
                        tests.add(parse_test_result(&line));
                        let mut lock = stdout.lock();
                        let _ = writeln!(lock, "{line}");
                    }
                }
                child.wait().map(|s| s.success()).unwrap_or(false)
            }
        };
        self.steps.push(Step {
            name: name.to_owned(),
            ok,
            elapsed: start.elapsed(),
            tests,
        });
        ok
    }

    /// Prints the summary table and a closing `N passed, N failed` line; errors if any step failed.
    fn finish(self, title: &str) -> Result<(), String> {
        let mut total = TestCounts::default();
        println!("\n{title} summary");
        println!(
            "{:<34} {:>6} {:>8} {:>7} {:>7} {:>8}",
            "step", "result", "time", "passed", "failed", "ignored"
        );
        for s in &self.steps {
            total.add(s.tests);
            println!(
                "{:<34} {:>6} {:>7.1}s {:>7} {:>7} {:>8}",
                s.name,
                if s.ok { "ok" } else { "FAILED" },
                s.elapsed.as_secs_f64(),
                s.tests.passed,
                s.tests.failed,
                s.tests.ignored
            );
        }
        let failed_steps: Vec<&str> = self
            .steps
            .iter()
            .filter(|s| !s.ok)
            .map(|s| s.name.as_str())
            .collect();
        println!(
            "{} passed, {} failed, {} skipped",
            total.passed, total.failed, total.ignored
        );
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
    r.cargo(
        "tests (workspace, conformance included)",
        &["test", "--workspace", "--all-features"],
        &[],
    );
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

fn conformance() -> Result<(), String> {
    let mut r = Runner::default();
    r.cargo(
        "conformance",
        &["test", "-p", "conformance", "--all-features"],
        &[],
    );
    r.finish("conformance")
}

fn bench(args: &[String]) -> Result<(), String> {
    let which: Vec<&str> = if args.is_empty() {
        vec!["parser"]
    } else {
        args.iter().map(String::as_str).collect()
    };
    let mut r = Runner::default();
    for b in which {
        match b {
            "parser" => r.cargo(
                "bench parser",
                &["bench", "-p", "conformance", "--bench", "parser"],
                &[],
            ),
            other => return Err(format!("unknown benchmark `{other}` (known: parser)")),
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

fn root() -> &'static Path {
    // xtask lives one level below the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::parse_test_result;

    #[test]
    fn reads_libtest_summary_lines() {
        let c = parse_test_result(
            "test result: ok. 12 passed; 1 failed; 3 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        );
        assert_eq!((c.passed, c.failed, c.ignored), (12, 1, 3));
        let c = parse_test_result("running 3 tests");
        assert_eq!((c.passed, c.failed, c.ignored), (0, 0, 0));
    }
}
