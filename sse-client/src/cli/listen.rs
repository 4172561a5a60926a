//! `sse-client listen URL`: connect with the library's `EventSource` and print every event.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::FalseyValueParser;
use futures_util::StreamExt;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use sse_client::{Backoff, Error, Event, EventSource, Message, RetryPolicy};

use super::json::JsonLine;
use super::url::with_default_scheme;

/// Arguments of `sse-client listen`. Every one can also come from the `SSE_*` environment variable
/// shown in `--help` (the command line wins).
#[derive(Debug, clap::Args)]
pub struct ListenArgs {
    /// The event stream URL, http:// or https:// (without a scheme, http:// is meant:
    /// localhost:8080/events/x).
    #[arg(env = "SSE_URL")]
    url: String,
    /// Send `Authorization: Bearer T` (unless a -H header sets Authorization).
    #[arg(long, value_name = "T", env = "SSE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// An extra request header, `'Name: value'`; repeat for several (e.g. -H 'X-Trace: 1'). In
    /// SSE_HEADER, one header per line.
    #[arg(
        short = 'H',
        long = "header",
        value_name = "'K: V'",
        env = "SSE_HEADER",
        value_delimiter = '\n'
    )]
    headers: Vec<String>,
    /// Follow this channel or `prefix/*` pattern too, on the same stream: appended to the URL as
    /// `channel=NAME` (the hub's `GET /events?channel=a&channel=b`); repeat for several (e.g.
    /// `listen localhost:8080/events --channel inbox/ada --channel 'teams/*'`). In SSE_CHANNEL, one
    /// per line. One Last-Event-ID resumes them all.
    #[arg(
        long = "channel",
        value_name = "NAME",
        env = "SSE_CHANNEL",
        value_delimiter = '\n'
    )]
    channels: Vec<String>,
    /// Ask the hub to put the channel's name in the type of every event whose publisher set none
    /// (appends `event-type=channel` to the URL), to tell channels apart on a multi-channel stream.
    #[arg(long, env = "SSE_CHANNEL_AS_EVENT_TYPE", value_parser = FalseyValueParser::new())]
    channel_as_event_type: bool,
    /// Resume after this event id: sent as Last-Event-ID on the first request.
    #[arg(long, value_name = "ID", env = "SSE_LAST_EVENT_ID")]
    last_event_id: Option<String>,
    /// Print one JSON object per event, exactly like `parse`: {"type","data","lastEventId"}.
    #[arg(long, env = "SSE_JSON", value_parser = FalseyValueParser::new())]
    json: bool,
    /// Also print comment lines (`: text`, e.g. heartbeats): as `:text` lines, or with --json as
    /// {"comment": "text"} (the text after the colon, as sent). They do not count for --max-events.
    #[arg(long, env = "SSE_COMMENTS", value_parser = FalseyValueParser::new())]
    comments: bool,
    /// Exit with status 0 after printing this many events.
    #[arg(long, value_name = "N", env = "SSE_MAX_EVENTS")]
    max_events: Option<u64>,
    /// Idle (liveness) timeout in seconds: if no byte at all arrives for this long (heartbeat
    /// comments count), while waiting for the response or reading the stream, the connection is
    /// considered dead and the client reconnects. Fractions allowed. Default: wait forever.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, env = "SSE_TIMEOUT")]
    timeout: Option<Duration>,
    /// Give up (exit 1) after this many consecutive failed connection attempts; a connection that
    /// delivered events resets the count. Permanent errors (unsupported scheme, TLS or protocol
    /// mismatch, 4xx other than 429) are never retried.
    #[arg(long, value_name = "N", default_value_t = 2, env = "SSE_MAX_RETRIES")]
    max_retries: u32,
    /// Initial reconnection time in seconds, until the server sends `retry:`.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, default_value = "3", env = "SSE_RECONNECTION_TIME")]
    reconnection_time: Duration,
    /// Longest wait between two attempts, in seconds (the backoff cap).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, default_value = "30", env = "SSE_MAX_BACKOFF")]
    max_backoff: Duration,
    /// Also retry 5xx and 429 answers, honouring Retry-After (otherwise they are fatal).
    #[arg(long, env = "SSE_RETRY_SERVER_ERRORS", value_parser = FalseyValueParser::new())]
    retry_server_errors: bool,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a valid number of seconds"))
}

fn parse_header(h: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| format!("header {h:?} has no colon; write it as 'Name: value'"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("invalid header name in {h:?}"))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("invalid header value in {h:?}"))?;
    Ok((name, value))
}

/// Runs until `--max-events` is reached (0), the server says 204 (0), or a fatal error (1).
pub fn run(args: ListenArgs) -> Result<ExitCode, String> {
    super::runtime()?.block_on(listen(args))
}

async fn listen(args: ListenArgs) -> Result<ExitCode, String> {
    if args.max_events == Some(0) {
        return Ok(ExitCode::SUCCESS);
    }
    let mut source = event_source(&args)?;

    let stdout = io::stdout();
    let mut printed = 0u64;
    while let Some(item) = source.next().await {
        match item {
            Ok(Event::Open) => {
                let id = source.last_event_id();
                if id.is_empty() {
                    eprintln!("sse-client: connected to {}", source.url());
                } else {
                    eprintln!(
                        "sse-client: connected to {} (replaying from id {id:?})",
                        source.url()
                    );
                }
            }
            Ok(Event::Message(m)) => {
                let mut out = stdout.lock();
                match print_message(&mut out, &m, args.json) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                        return Ok(ExitCode::SUCCESS);
                    }
                    Err(e) => return Err(format!("cannot write to standard output: {e}")),
                }
                printed += 1;
                if args.max_events.is_some_and(|max| printed >= max) {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Ok(Event::Comment(text)) => match print_comment(&mut stdout.lock(), &text, args.json) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
                Err(e) => return Err(format!("cannot write to standard output: {e}")),
            },
            Ok(_) => {}
            Err(Error::NoContent) => {
                eprintln!("sse-client: the server answered 204 No Content (stop); exiting");
                return Ok(ExitCode::SUCCESS);
            }
            Err(
                e @ (Error::Transport { .. }
                | Error::StreamEnded { .. }
                | Error::IdleTimeout { .. }
                | Error::Credentials { .. }),
            ) if e.is_fatal() => {
                return Err(format!(
                    "{e} (gave up after {} consecutive retries; raise --max-retries to keep trying)",
                    args.max_retries
                ));
            }
            // The library names its option; here it is a flag.
            Err(e) if e.is_fatal() => {
                return Err(e
                    .to_string()
                    .replace("RetryPolicy::retry_server_errors", "--retry-server-errors"));
            }
            Err(e) => eprintln!("sse-client: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `EventSource` the flags describe: headers and token, retry policy, channels, first id.
fn event_source(args: &ListenArgs) -> Result<EventSource, String> {
    let mut headers = HeaderMap::new();
    for h in args.headers.iter().filter(|h| !h.trim().is_empty()) {
        let (name, value) = parse_header(h)?;
        headers.append(name, value);
    }
    if let Some(token) = &args.token
        && !headers.contains_key(AUTHORIZATION)
    {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the token has characters a header cannot carry".to_owned())?;
        headers.insert(AUTHORIZATION, value);
    }
    let url = with_default_scheme(&args.url);
    let policy = RetryPolicy::new()
        .backoff(Backoff::new().max_delay(args.max_backoff))
        .max_retries(Some(args.max_retries))
        .retry_server_errors(args.retry_server_errors);
    let mut builder = EventSource::from_request(reqwest::Client::new().get(&url).headers(headers))
        .reconnection_time(args.reconnection_time)
        .idle_timeout(args.timeout)
        .retry_policy(policy)
        .comments(args.comments)
        .channels(
            args.channels
                .iter()
                .filter(|c| !c.trim().is_empty())
                .cloned(),
        );
    if args.channel_as_event_type {
        builder = builder.channel_as_event_type();
    }
    if let Some(id) = &args.last_event_id {
        builder = builder.last_event_id(id.clone());
    }
    builder.build().map_err(|e| e.to_string())
}

/// Human form: `event:`/`id:`/`data:` lines and a blank line, like the wire format but with the
/// type always named; JSON form: one line, the same as `parse`.
fn print_message(out: &mut impl Write, m: &Message, json: bool) -> io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, &JsonLine::message(m))?;
        out.write_all(b"\n")?;
    } else {
        writeln!(out, "event: {}", m.event_type)?;
        if !m.last_event_id.is_empty() {
            writeln!(out, "id: {}", m.last_event_id)?;
        }
        for line in m.data.split('\n') {
            writeln!(out, "data: {line}")?;
        }
        writeln!(out)?;
    }
    out.flush()
}

/// Human form: the comment line as on the wire (`:` then the text); JSON form: `{"comment":...}`.
fn print_comment(out: &mut impl Write, text: &str, json: bool) -> io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, &JsonLine::Comment { comment: text })?;
        out.write_all(b"\n")?;
    } else {
        writeln!(out, ":{text}")?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_as_name_colon_value() {
        let (n, v) = parse_header("Authorization:  Bearer x ").unwrap();
        assert_eq!(
            (n.as_str(), v.to_str().unwrap()),
            ("authorization", "Bearer x")
        );
        assert!(parse_header("nocolon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }

    #[test]
    fn seconds_accept_fractions() {
        assert_eq!(parse_seconds("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("x").is_err());
    }

    #[test]
    fn comments_print_as_wire_lines_or_json() {
        let mut out = Vec::new();
        print_comment(&mut out, " ping \"x\"", false).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), ": ping \"x\"\n");
        let mut out = Vec::new();
        print_comment(&mut out, " ping \"x\"", true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"comment\":\" ping \\\"x\\\"\"}\n"
        );
    }

    #[test]
    fn human_output_names_type_id_and_each_data_line() {
        let m = Message {
            event_type: "greeting".into(),
            data: "a\nb".into(),
            last_event_id: "7".into(),
        };
        let mut out = Vec::new();
        print_message(&mut out, &m, false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: greeting\nid: 7\ndata: a\ndata: b\n\n"
        );
        let mut out = Vec::new();
        print_message(&mut out, &m, true).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\":\"greeting\",\"data\":\"a\\nb\",\"lastEventId\":\"7\"}\n"
        );
    }
}
