//! `sse-client publish URL --data TEXT`: send one event to a hub and print the id it assigned.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde::Serialize;

use super::url::with_default_scheme;

/// How long a publish may take, connecting included: the hub answers at once, so a longer wait
/// means a server that will not.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of a non-JSON refusal is quoted.
const QUOTED_BODY: usize = 512;

/// Arguments of `sse-client publish`. Every one can also come from the `SSE_*` environment variable
/// shown in `--help` (the command line wins).
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The hub URL to POST to: /events/{channel} for one channel, /events for every channel
    /// (without a scheme, http:// is meant: localhost:8080/events/x).
    #[arg(env = "SSE_URL")]
    url: String,
    /// The event's data (several lines allowed; may be empty).
    #[arg(
        long,
        value_name = "TEXT",
        env = "SSE_DATA",
        allow_hyphen_values = true
    )]
    data: String,
    /// The event type (`event:`); default: the hub's, `message` for browsers.
    #[arg(long, value_name = "TYPE", env = "SSE_EVENT")]
    event: Option<String>,
    /// The event id; default: the hub assigns one.
    #[arg(long, value_name = "ID", env = "SSE_ID")]
    id: Option<String>,
    /// The hub's publish token, sent as `Authorization: Bearer T`.
    #[arg(long, value_name = "T", env = "SSE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// The JSON body the hub accepts: `{"data","event","id"}`.
#[derive(Debug, Serialize)]
struct PublishBody<'a> {
    data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

/// Prints the assigned id and exits 0; any failure is an `Err` (exit 1) with the hub's message.
pub fn run(args: PublishArgs) -> Result<ExitCode, String> {
    let id = super::runtime()?.block_on(publish(&args))?;
    let mut out = io::stdout().lock();
    match writeln!(out, "{id}").and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(format!("cannot write to standard output: {e}")),
    }
}

async fn publish(args: &PublishArgs) -> Result<String, String> {
    let given = with_default_scheme(&args.url);
    let url = Url::parse(&given).map_err(|e| format!("invalid URL {given:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(sse_client::Error::UnsupportedScheme {
            scheme: url.scheme().to_owned(),
            url: given,
        }
        .to_string());
    }
    let client = reqwest::Client::builder()
        .timeout(PUBLISH_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", chain(&e)))?;
    let body = PublishBody {
        data: &args.data,
        event: args.event.as_deref(),
        id: args.id.as_deref(),
    };
    let json = serde_json::to_vec(&body).map_err(|e| format!("cannot encode the event: {e}"))?;
    let mut request = client
        .post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json")
        .body(json);
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot publish to {url}: {}", chain(&e)))?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(|e| {
        format!(
            "the answer of {url} broke off (HTTP {status}): {}",
            chain(&e)
        )
    })?;
    answer(status, &bytes)
}

/// The id from a 2xx `{"id":"..."}`, or the refusal: the hub's `{"error":"..."}` message, else the
/// status and the start of the body.
fn answer(status: StatusCode, body: &[u8]) -> Result<String, String> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| match json.as_ref().and_then(|j| j.get(name)) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if status.is_success() {
        return field("id").ok_or_else(|| {
            format!(
                "the server answered HTTP {status} without an id (expected {{\"id\":\"...\"}}){}; is the URL a hub's /events/{{channel}}?",
                quote(body)
            )
        });
    }
    match field("error") {
        Some(message) => Err(format!("HTTP {status}: {message}")),
        None => Err(format!("HTTP {status}{}", quote(body))),
    }
}

/// `: <the start of the body on one line>`, or nothing for an empty body.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return String::new();
    }
    match line.char_indices().nth(QUOTED_BODY) {
        Some((cut, _)) => format!(": {}...", &line[..cut]),
        None => format!(": {line}"),
    }
}

/// An error and its causes on one line: reqwest's own message rarely names the root cause.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_success_yields_the_id_and_a_refusal_the_hubs_message() {
        assert_eq!(answer(StatusCode::OK, br#"{"id":"42"}"#), Ok("42".into()));
        assert_eq!(answer(StatusCode::OK, br#"{"id":7}"#), Ok("7".into()));
        assert!(answer(StatusCode::OK, b"ok").is_err());
        assert_eq!(
            answer(
                StatusCode::UNAUTHORIZED,
                br#"{"error":"wrong publish token"}"#
            ),
            Err("HTTP 401 Unauthorized: wrong publish token".into())
        );
        assert_eq!(
            answer(StatusCode::BAD_GATEWAY, b"<h1>bad\ngateway</h1>\n"),
            Err("HTTP 502 Bad Gateway: <h1>bad gateway</h1>".into())
        );
        assert_eq!(
            answer(StatusCode::NOT_FOUND, b""),
            Err("HTTP 404 Not Found".into())
        );
    }

    #[test]
    fn the_body_sends_only_the_fields_given() {
        let body = PublishBody {
            data: "a\nb",
            event: None,
            id: Some("9"),
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"data":"a\nb","id":"9"}"#
        );
    }
}
