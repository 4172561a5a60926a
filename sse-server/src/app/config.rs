//! `--config FILE` (TOML) and `--print-config`.
//!
//! Every option has three spellings that map 1:1: a flag `--replay-events`, a variable
//! `SSE_REPLAY_EVENTS` and a key `replay-events` in the file. All three are derived here from clap's
//! definitions (`cli.rs`, `security.rs`), never from a list kept by hand, so a new flag is a new key
//! and a new row of the README's table (a test regenerates the table and compares).
//!
//! Precedence: flag > environment > file > default. The file is read before the real parse; its
//! values are then given to clap as if typed on the command line, but only for options that neither
//! the command line nor the environment set, so clap's own value parsers, `requires` and
//! `conflicts_with` check them too.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};

use super::cli::Args;

/// The id (and long name) of the flag naming the file.
const CONFIG: &str = "config";
/// The id of the flag printing the effective configuration.
const PRINT_CONFIG: &str = "print-config";
/// What a secret prints as.
const MASK: &str = "***";

/// The options from the command line, the environment and `--config`; exits like clap on a usage
/// error, and after printing the configuration for `--print-config`.
pub(crate) fn args() -> Args {
    let argv: Vec<OsString> = std::env::args_os().collect();
    match load(command(), argv) {
        Ok(Loaded::Run(args)) => *args,
        Ok(Loaded::Print(text)) => {
            print!("{text}");
            std::process::exit(0)
        }
        Err(e) => e.exit(),
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// Run the hub.
    Run(Box<Args>),
    /// `--print-config`: print this and exit.
    Print(String),
}

/// The binary's command: the flags of [`Args`] plus `--config` and `--print-config`.
pub(crate) fn command() -> Command {
    let mut cmd = Args::command()
        .arg(
            Arg::new(CONFIG)
                .long(CONFIG)
                .env("SSE_CONFIG")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help(
                    "Read options from this TOML file: one key per option, named like the flag \
                     without `--` (repeatable options take an array). Flags and SSE_* variables \
                     override the file.",
                ),
        )
        .arg(
            Arg::new(PRINT_CONFIG)
                .long(PRINT_CONFIG)
                .action(ArgAction::SetTrue)
                .help(
                    "Print the effective configuration as TOML (usable with --config; secrets \
                     shown as \"***\") and exit.",
                ),
        );
    cmd.build();
    cmd
}

/// The options a file may set: every flag but `--config`, `--print-config`, help and version.
pub(crate) fn options(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|a| {
        let id = a.get_id().as_str();
        a.get_long().is_some()
            && id != CONFIG
            && id != PRINT_CONFIG
            && !matches!(a.get_action(), ArgAction::Help | ArgAction::Version)
    })
}

/// The key of an option (its long flag without `--`).
fn key(arg: &Arg) -> &str {
    arg.get_long().unwrap_or_else(|| arg.get_id().as_str())
}

/// A secret is an option whose environment value clap hides from `--help` (`hide_env_values`): the
/// one mark, set where the flag is defined.
fn is_secret(arg: &Arg) -> bool {
    arg.is_hide_env_values_set()
}

/// Parses `argv` with the file of `--config`/`SSE_CONFIG` (if any) filling in what neither the
/// command line nor the environment set.
pub(crate) fn load(cmd: Command, argv: Vec<OsString>) -> Result<Loaded, clap::Error> {
    let mut cmd = cmd;
    // A first, lenient pass only to find the file; the real parse below reports every usage error.
    let first = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(argv.clone());
    let path = first
        .ok()
        .and_then(|m| m.get_one::<PathBuf>(CONFIG).cloned());
    let mut matches = cmd.try_get_matches_from_mut(argv.clone())?;
    if let Some(path) = path {
        let extra = file_args(&mut cmd, &path, &matches)?;
        if !extra.is_empty() {
            let mut full = Vec::with_capacity(argv.len() + extra.len());
            let mut argv = argv.into_iter();
            full.extend(argv.next());
            full.extend(extra);
            full.extend(argv);
            matches = cmd.try_get_matches_from_mut(full)?;
        }
    }
    if matches.get_flag(PRINT_CONFIG) {
        return Ok(Loaded::Print(render(&cmd, &matches)));
    }
    let args = Args::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))?;
    Ok(Loaded::Run(Box::new(args)))
}

/// The file's values as command-line arguments, for the options neither the command line nor the
/// environment set; each checked by the option's own value parser.
fn file_args(
    cmd: &mut Command,
    path: &Path,
    matches: &ArgMatches,
) -> Result<Vec<OsString>, clap::Error> {
    let file = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        cmd.error(
            ErrorKind::Io,
            format!("cannot read the config file {file}: {e}"),
        )
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        cmd.error(
            ErrorKind::InvalidValue,
            format!(
                "the config file {file} is not valid TOML: {}",
                e.message().trim()
            ),
        )
    })?;
    let known: Vec<Arg> = options(cmd).cloned().collect();
    let mut out = Vec::new();
    for (name, value) in &table {
        let Some(arg) = known.iter().find(|a| key(a) == name) else {
            let hint = closest(name, known.iter().map(key))
                .map(|k| format!(" (did you mean `{k}`?)"))
                .unwrap_or_default();
            return Err(cmd.error(
                ErrorKind::UnknownArgument,
                format!(
                    "unknown key `{name}` in the config file {file}{hint}; the keys are the long \
                     flag names without `--` (see --help)"
                ),
            ));
        };
        let bad = |cmd: &mut Command, why: String| {
            cmd.error(
                ErrorKind::InvalidValue,
                format!("bad value for key `{name}` in the config file {file}: {why}"),
            )
        };
        let strings = match scalars(value, matches!(arg.get_action(), ArgAction::Append)) {
            Ok(s) => s,
            Err(why) => return Err(bad(cmd, why)),
        };
        for s in &strings {
            if let Err(e) = check(arg, s) {
                return Err(bad(cmd, e));
            }
        }
        let source = matches.value_source(arg.get_id().as_str());
        if !matches!(source, None | Some(ValueSource::DefaultValue)) {
            continue; // the command line or the environment wins
        }
        let flag = format!("--{name}");
        match arg.get_action() {
            ArgAction::SetTrue => {
                if strings.iter().any(|s| s == "true") {
                    out.push(flag.into());
                }
            }
            _ => out.extend(
                strings
                    .iter()
                    .map(|s| OsString::from(format!("{flag}={s}"))),
            ),
        }
    }
    Ok(out)
}

/// A TOML value as the strings a command line would carry; arrays only for repeatable options.
fn scalars(value: &toml::Value, repeatable: bool) -> Result<Vec<String>, String> {
    fn one(v: &toml::Value) -> Result<String, String> {
        match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            toml::Value::Boolean(b) => Ok(b.to_string()),
            other => Err(format!(
                "expected a string, number or boolean, found {}",
                other.type_str()
            )),
        }
    }
    match value {
        toml::Value::Array(items) if repeatable => items.iter().map(one).collect(),
        toml::Value::Array(_) => Err("this option takes one value, not an array".into()),
        v => one(v).map(|s| vec![s]),
    }
}

/// Checks one value with the option's own value parser, returning clap's message when it fails.
fn check(arg: &Arg, value: &str) -> Result<(), String> {
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return match value {
            "true" | "false" => Ok(()),
            _ => Err(format!("expected true or false, found {value:?}")),
        };
    }
    // A one-argument command with the option's parser (not the option itself: its `requires` would
    // name arguments this command does not have).
    let mut probe = Arg::new(arg.get_id().clone())
        .value_parser(arg.get_value_parser().clone())
        .action(ArgAction::Set)
        .allow_hyphen_values(true);
    let mut shown = String::from("[VALUE]");
    if let Some(name) = arg.get_value_names().and_then(|n| n.first()) {
        shown = format!("[{name}]");
        probe = probe.value_name(name.clone());
    }
    let flag = format!("--{}", key(arg));
    Command::new("sse-server")
        .arg(probe)
        .try_get_matches_from(["sse-server", value])
        .map(drop)
        .map_err(|e| {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or_default();
            first
                .trim_start_matches("error: ")
                .replace(&format!("'{shown}'"), &flag)
        })
}

/// The known key closest to `name`, when it is close enough to be a typo.
fn closest<'a>(name: &str, keys: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    keys.map(|k| (edit_distance(name, k), k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The effective configuration as TOML: every option, its help as a comment, unset ones commented
/// out, secrets masked.
fn render(cmd: &Command, matches: &ArgMatches) -> String {
    let mut out = String::from(
        "# sse-server: effective configuration (flags > SSE_* environment > --config file > defaults).\n\
         # Usable as --config FILE; secrets are shown as \"***\".\n",
    );
    for arg in options(cmd) {
        let key = key(arg);
        out.push('\n');
        if let Some(help) = arg.get_help() {
            out.push_str(&format!("# {}\n", one_line(&help.to_string())));
        }
        let raw: Vec<String> = matches
            .get_raw(arg.get_id().as_str())
            .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let repeatable = matches!(arg.get_action(), ArgAction::Append);
        if raw.is_empty() && !repeatable {
            out.push_str(&format!("# {key} =   (not set)\n"));
            continue;
        }
        let values: Vec<toml::Value> = raw.iter().map(|s| typed(arg, &masked(arg, s))).collect();
        let value = if repeatable {
            toml::Value::Array(values)
        } else {
            values
                .into_iter()
                .next_back()
                .unwrap_or(toml::Value::String(String::new()))
        };
        out.push_str(&format!("{key} = {value}\n"));
    }
    out
}

/// A raw value as the TOML type of its option: booleans for switches, integers for numbers.
fn typed(arg: &Arg, raw: &str) -> toml::Value {
    use std::any::TypeId;
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return toml::Value::Boolean(raw == "true");
    }
    let t = arg.get_value_parser().type_id();
    let integer = [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
    ]
    .iter()
    .any(|id| t == *id);
    match raw.parse::<i64>() {
        Ok(n) if integer => toml::Value::Integer(n),
        _ => toml::Value::String(raw.to_owned()),
    }
}

/// A secret as [`MASK`]; the password of a URL (`redis://user:pass@host`) masked too.
fn masked(arg: &Arg, raw: &str) -> String {
    if is_secret(arg) {
        return MASK.to_owned();
    }
    if let Some((scheme, rest)) = raw.split_once("://") {
        let end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..end].rfind('@') {
            // `user:password@` keeps the user; a lone `secret@` is masked whole.
            let user = rest[..at].split_once(':').map_or("", |(u, _)| u);
            return format!("{scheme}://{user}:{MASK}{}", &rest[at..]);
        }
    }
    raw.to_owned()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The README's table of options (key, flag, environment variable, default, meaning), generated from
/// the flags (checked by a test).
#[cfg(test)]
fn markdown_table(cmd: &Command) -> String {
    let mut out = String::from(
        "| Key (`--config`) | Flag | Environment | Default | Meaning |\n\
         |---|---|---|---|---|\n",
    );
    let cell = |s: &str| one_line(s).replace('|', "\\|");
    for arg in cmd.get_arguments().filter(|a| {
        a.get_long().is_some() && !matches!(a.get_action(), ArgAction::Help | ArgAction::Version)
    }) {
        let long = key(arg);
        let is_option = options(cmd).any(|o| o.get_id() == arg.get_id());
        let key_cell = if is_option {
            format!("`{long}`")
        } else {
            "—".to_owned()
        };
        let choices: Vec<String> = arg
            .get_possible_values()
            .iter()
            .filter(|p| !p.is_hide_set())
            .map(|p| p.get_name().to_owned())
            .collect();
        let value = match arg.get_value_names().and_then(|n| n.first()) {
            _ if !arg.get_action().takes_values() => String::new(),
            _ if !choices.is_empty() => format!(" {}", choices.join("\\|")),
            Some(n) => format!(" {n}"),
            None => String::new(),
        };
        let repeat = if matches!(arg.get_action(), ArgAction::Append) {
            " (repeatable)"
        } else {
            ""
        };
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_else(|| "—".to_owned());
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() {
            "—".to_owned()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "| {key_cell} | `--{long}{value}`{repeat} | {env} | {default} | {} |\n",
            cell(&help)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: &str = "<!-- options-table:start (generated from the flags; SSE_BLESS=1 cargo test -p sse-server --bin sse-server rewrites it) -->\n";
    const END: &str = "<!-- options-table:end -->";

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("sse-server")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn every_option_is_a_flag_a_variable_and_a_key() {
        let cmd = command();
        for arg in options(&cmd) {
            let env = format!("SSE_{}", key(arg).to_uppercase().replace('-', "_"));
            assert_eq!(
                arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                Some(env),
                "--{} must have the environment variable named like it",
                key(arg)
            );
        }
    }

    /// The README's table is the flags' own description; `SSE_BLESS=1` rewrites it after a change.
    #[test]
    fn readme_options_table_is_generated_from_the_flags() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let start = readme
            .find(START)
            .expect("README.md has the table's start marker")
            + START.len();
        let end = readme
            .find(END)
            .expect("README.md has the table's end marker");
        let table = markdown_table(&command());
        if readme[start..end] != table {
            if std::env::var_os("SSE_BLESS").is_some() {
                let fresh = format!("{}{table}{}", &readme[..start], &readme[end..]);
                std::fs::write(path, fresh).unwrap();
            } else {
                panic!(
                    "sse-server/README.md's options table is out of date; regenerate it with\n  \
                     SSE_BLESS=1 cargo test -p sse-server --bin sse-server readme_options_table\n\
                     expected:\n{table}"
                );
            }
        }
    }

    #[test]
    fn suggests_the_closest_key() {
        let keys = ["replay-events", "replay-bytes", "listen"];
        assert_eq!(
            closest("replay-event", keys.iter().copied()),
            Some("replay-events")
        );
        assert_eq!(closest("lisen", keys.iter().copied()), Some("listen"));
        assert_eq!(closest("zzzzzzzzzzzzzzzzzz", keys.iter().copied()), None);
    }

    #[test]
    fn masks_secrets_and_url_passwords() {
        let cmd = command();
        let find = |k: &str| options(&cmd).find(|a| key(a) == k).unwrap().clone();
        assert_eq!(masked(&find("publish-token"), "abc"), MASK);
        assert_eq!(masked(&find("jwt-secret"), "abc"), MASK);
        assert_eq!(
            masked(&find("redis"), "redis://:pw@h:6379/0"),
            "redis://:***@h:6379/0"
        );
        assert_eq!(
            masked(&find("redis"), "redis://u:pw@h/0"),
            "redis://u:***@h/0"
        );
        assert_eq!(masked(&find("redis"), "redis://h/0"), "redis://h/0");
        assert_eq!(masked(&find("listen"), "127.0.0.1:1"), "127.0.0.1:1");
    }

    #[test]
    fn print_config_renders_every_option_and_reads_back() {
        let Loaded::Print(text) = load(
            command(),
            argv(&["--print-config", "--cors-origin", "https://a", "--no-demo"]),
        )
        .unwrap() else {
            panic!("expected --print-config output");
        };
        let table: toml::Table = text.parse().unwrap();
        assert_eq!(table["replay-events"], toml::Value::Integer(1000));
        assert_eq!(table["no-demo"], toml::Value::Boolean(true));
        assert_eq!(
            table["cors-origin"],
            toml::Value::Array(vec!["https://a".into()])
        );
        assert!(text.contains("# data-dir =   (not set)"), "{text}");
        for arg in options(&command()) {
            assert!(
                text.contains(&format!("\n{} =", key(arg)))
                    || text.contains(&format!("# {} =", key(arg))),
                "missing {}",
                key(arg)
            );
        }
    }
}
