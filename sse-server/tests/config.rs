//! `sse-server --config FILE` and `--print-config`: the binary's options from a TOML file, with
//! flag > environment > file > default, errors naming the key and the file, and the effective
//! configuration printed as TOML that reads back, secrets masked.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs the binary to completion with `args` and only `envs` (none of the caller's `SSE_*`).
fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("SSE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn printed(out: &Output) -> toml::Table {
    assert!(
        out.status.success(),
        "--print-config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .parse()
        .expect("--print-config prints valid TOML")
}

#[test]
fn flag_beats_environment_beats_file_beats_default() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "sse.toml",
        "heartbeat = 3\nreplay-events = 7\nqueue-size = 9\ncors-origin = [\"https://a\", \"https://b\"]\n\
         no-demo = true\nlog-format = \"json\"\n",
    );
    let file = file.to_str().unwrap();
    let out = run(
        &["--config", file, "--print-config", "--queue-size", "10"],
        &[("SSE_REPLAY_EVENTS", "8")],
    );
    let t = printed(&out);
    assert_eq!(t["heartbeat"].as_integer(), Some(3), "file over default");
    assert_eq!(
        t["replay-events"].as_integer(),
        Some(8),
        "environment over file"
    );
    assert_eq!(t["queue-size"].as_integer(), Some(10), "flag over file");
    assert_eq!(t["replay-age"].as_integer(), Some(3600), "default");
    assert_eq!(t["no-demo"].as_bool(), Some(true));
    assert_eq!(t["log-format"].as_str(), Some("json"));
    let origins: Vec<&str> = t["cors-origin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(origins, ["https://a", "https://b"]);
    // SSE_CONFIG names the file too.
    let t = printed(&run(&["--print-config"], &[("SSE_CONFIG", file)]));
    assert_eq!(t["heartbeat"].as_integer(), Some(3));
}

#[test]
fn unknown_key_is_an_error_naming_the_key_the_file_and_the_closest_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "typo.toml", "replay-event = 5\n");
    let out = run(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`replay-event`"), "{err}");
    assert!(err.contains(file.to_str().unwrap()), "{err}");
    assert!(err.contains("did you mean `replay-events`"), "{err}");
}

#[test]
fn bad_value_is_an_error_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, why) in [
        ("number.toml", "replay-events = \"many\"\n", "invalid digit"),
        ("enum.toml", "log-format = \"yaml\"\n", "yaml"),
        ("array.toml", "listen = [\"a\", \"b\"]\n", "not an array"),
        ("switch.toml", "no-demo = \"yes\"\n", "true or false"),
        ("header.toml", "header = [\"nocolon\"]\n", "Name: value"),
        (
            "cidr.toml",
            "trusted-proxy = [\"10.0.0.0/40\"]\n",
            "prefix length",
        ),
    ] {
        let file = write(dir.path(), name, text);
        let out = run(&["--config", file.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        let key = text.split(' ').next().unwrap();
        assert!(err.contains(&format!("`{key}`")), "{text}: {err}");
        assert!(err.contains(file.to_str().unwrap()), "{text}: {err}");
        assert!(err.contains(why), "{text}: {err}");
    }
    let file = write(dir.path(), "syntax.toml", "listen = \n");
    let out = run(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(file.to_str().unwrap()));
}

#[test]
fn print_config_masks_secrets_and_reads_back_through_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &[
            "--print-config",
            "--publish-token",
            "tok-s3cret",
            "--jwt-secret",
            "jwt-s3cret",
            "--redis",
            "redis://user:pw-s3cret@127.0.0.1:6379/0",
            "--header",
            "X-A: b",
            "--trusted-proxy",
            "10.0.0.0/8",
            "--heartbeat",
            "4",
        ],
        &[],
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let t = printed(&out);
    assert!(!text.contains("s3cret"), "a secret leaked:\n{text}");
    assert_eq!(t["publish-token"].as_str(), Some("***"));
    assert_eq!(t["jwt-secret"].as_str(), Some("***"));
    assert_eq!(
        t["redis"].as_str(),
        Some("redis://user:***@127.0.0.1:6379/0")
    );
    // Every option is there, set or commented out.
    let help = String::from_utf8(run(&["--help"], &[]).stdout).unwrap();
    // The option lines of --help start with the flag (`  --name <VALUE>`, `  -h, --help`).
    let flags: Vec<&str> = help
        .lines()
        .filter(|l| l.trim_start().starts_with('-'))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("--"))
                .map(|w| w.trim_end_matches(','))
        })
        .filter(|w| !["config", "print-config", "help", "version"].contains(w))
        .collect();
    assert!(flags.len() > 20, "{help}");
    for flag in flags {
        assert!(
            t.contains_key(flag) || text.contains(&format!("# {flag} =")),
            "--print-config misses `{flag}`:\n{text}"
        );
    }
    // Read back: the same configuration (secrets stay masked).
    let file = write(dir.path(), "printed.toml", &text);
    let again = run(&["--config", file.to_str().unwrap(), "--print-config"], &[]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), text);
}

#[tokio::test]
async fn the_server_runs_with_the_options_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "run.toml",
        "listen = \"127.0.0.1:0\"\npublish-token = \"from-the-file\"\nno-demo = true\n",
    );
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-server"));
    cmd.arg("--config").arg(&file).env("RUST_LOG", "warn");
    let (_child, base) = support::spawn_server(cmd, Stdio::null()).await;
    let publish = |token: &'static str| {
        support::client()
            .post(format!("{base}/events/cfg"))
            .bearer_auth(token)
            .form(&[("data", "x")])
            .send()
    };
    assert_eq!(publish("from-the-file").await.unwrap().status(), 200);
    assert_eq!(publish("another").await.unwrap().status(), 401);
}
