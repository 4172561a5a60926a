//! Publish request bodies → [`Event`]: JSON, form-urlencoded, or plain text.

use std::time::Duration;

use http::StatusCode;
use sse_proto::Event;

use crate::http::query::percent_decode;

/// The longest `retry` a publisher may ask for: one day.
pub const MAX_RETRY_MS: u64 = 86_400_000;

/// Why a publish body was refused; the status is 400, or 415 for an unsupported media type.
///
/// ```
/// let err = sse_server::parse_publish_body(Some("application/json"), b"{", None).unwrap_err();
/// assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BodyError {
    status: StatusCode,
    message: String,
}

impl BodyError {
    fn bad(message: impl Into<String>) -> BodyError {
        BodyError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 400 or 415.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

#[derive(Default)]
struct Fields {
    data: Option<String>,
    event: Option<String>,
    id: Option<String>,
    retry: Option<String>,
}

/// Decodes a publish body into an event.
///
/// * `application/json`: an object with `data` (a string; any other JSON value is sent as its JSON
///   text), and optional `event`, `id` (strings) and `retry` (milliseconds, 0 to one day). Other keys
///   are refused.
/// * `application/x-www-form-urlencoded`: the same fields; several `data` fields become several lines.
/// * `text/plain` (or no content type): the body is the data; `event`, `id`, `retry` may come from the
///   query string.
///
/// ```
/// let e = sse_server::parse_publish_body(
///     Some("application/x-www-form-urlencoded"), b"data=hi&event=greet&retry=1500", None)?;
/// assert_eq!((e.data(), e.event()), (Some("hi"), Some("greet")));
/// let e = sse_server::parse_publish_body(Some("application/json"), br#"{"data":"x","id":"7"}"#, None)?;
/// assert_eq!(e.id(), Some("7"));
/// let e = sse_server::parse_publish_body(Some("text/plain"), b"line", Some("event=log"))?;
/// assert_eq!((e.data(), e.event()), (Some("line"), Some("log")));
/// # Ok::<(), sse_server::BodyError>(())
/// ```
pub fn parse_publish_body(
    content_type: Option<&str>,
    body: &[u8],
    query: Option<&str>,
) -> Result<Event, BodyError> {
    let essence = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let fields = match essence.as_str() {
        "application/json" => json_fields(body)?,
        e if e.ends_with("+json") => json_fields(body)?,
        "application/x-www-form-urlencoded" => form_fields(body, true)?,
        "" | "text/plain" => {
            let data = std::str::from_utf8(body)
                .map_err(|_| BodyError::bad("the body is not valid UTF-8"))?;
            let mut fields = match query {
                Some(q) => form_fields(q.as_bytes(), false)?,
                None => Fields::default(),
            };
            fields.data = Some(data.to_owned());
            fields
        }
        other => {
            return Err(BodyError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: format!(
                    "unsupported content type {other:?}: send application/json, application/x-www-form-urlencoded or text/plain"
                ),
            });
        }
    };
    build(fields)
}

fn json_fields(body: &[u8]) -> Result<Fields, BodyError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| BodyError::bad(format!("the body is not valid JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(BodyError::bad(
            "the JSON body must be an object like {\"data\":\"...\",\"event\":\"...\",\"id\":\"...\",\"retry\":3000}",
        ));
    };
    let mut fields = Fields::default();
    for (key, value) in map {
        let text = |v: serde_json::Value| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(BodyError::bad(format!("\"{key}\" must be a string"))),
        };
        match key.as_str() {
            "data" => {
                fields.data = match value {
                    serde_json::Value::String(s) => Some(s),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                }
            }
            "event" => fields.event = Some(text(value)?),
            "id" => fields.id = Some(text(value)?),
            "retry" => {
                fields.retry = match value {
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    serde_json::Value::String(s) => Some(s),
                    _ => return Err(BodyError::bad("\"retry\" must be a number of milliseconds")),
                }
            }
            _ => {
                return Err(BodyError::bad(format!(
                    "unknown field \"{key}\": allowed fields are data, event, id, retry"
                )));
            }
        }
    }
    Ok(fields)
}

fn form_fields(body: &[u8], with_data: bool) -> Result<Fields, BodyError> {
    let mut fields = Fields::default();
    for pair in body.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (key, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let key = String::from_utf8(percent_decode(key, true)).map_err(|_| {
            BodyError::bad("a form field name is not valid UTF-8 once percent-decoded")
        })?;
        let value = String::from_utf8(percent_decode(value, true)).map_err(|_| {
            BodyError::bad(format!(
                "form field \"{key}\" is not valid UTF-8 once percent-decoded"
            ))
        })?;
        match key.as_str() {
            "data" if with_data => {
                fields.data = Some(match fields.data.take() {
                    Some(prev) => format!("{prev}\n{value}"),
                    None => value,
                })
            }
            "event" => fields.event = Some(value),
            "id" => fields.id = Some(value),
            "retry" => fields.retry = Some(value),
            other if with_data => {
                return Err(BodyError::bad(format!(
                    "unknown field \"{other}\": allowed fields are data, event, id, retry"
                )));
            }
            _ => {}
        }
    }
    Ok(fields)
}

fn build(fields: Fields) -> Result<Event, BodyError> {
    let data = fields.data.ok_or_else(|| {
        BodyError::bad("missing \"data\": the event needs a data field (it may be empty)")
    })?;
    let mut builder = Event::builder().data(data);
    if let Some(event) = fields.event {
        builder = builder.event(event);
    }
    if let Some(id) = fields.id {
        if id.is_empty() {
            return Err(BodyError::bad(
                "\"id\" is empty: omit it to let the hub assign one",
            ));
        }
        builder = builder.id(id);
    }
    if let Some(retry) = fields.retry {
        let ms: u64 = retry
            .trim()
            .parse()
            .ok()
            .filter(|ms| *ms <= MAX_RETRY_MS)
            .ok_or_else(|| {
                BodyError::bad(format!(
                    "\"retry\" must be a whole number of milliseconds from 0 to {MAX_RETRY_MS}, got {retry:?}"
                ))
            })?;
        builder = builder.retry(Duration::from_millis(ms));
    }
    builder.build().map_err(|e| BodyError::bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_cannot_be_sent() {
        for (ct, body) in [
            ("application/json", &br#"{"data":"x","id":"a\nb"}"#[..]),
            ("application/json", br#"{"data":"x","event":"a\rb"}"#),
            ("application/json", br#"{"data":"x","retry":-1}"#),
            ("application/json", br#"{"data":"x","retry":1.5}"#),
            (
                "application/json",
                br#"{"data":"x","retry":99999999999999}"#,
            ),
            ("application/json", br#"{"data":"x","extra":1}"#),
            ("application/json", br#"["x"]"#),
            ("application/json", br#"{"event":"x"}"#),
            ("application/x-www-form-urlencoded", b"data=x&id=a%0Ab"),
            ("application/x-www-form-urlencoded", b"data=x&id=a%00b"),
            ("application/x-www-form-urlencoded", b"data=x&retry=soon"),
            ("application/x-www-form-urlencoded", b"event=x"),
            ("text/plain", b"\xff\xfe"),
            ("application/x-www-form-urlencoded", b"data=%ff"),
        ] {
            let err = parse_publish_body(Some(ct), body, None).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{ct} {body:?}");
        }
        let err = parse_publish_body(Some("image/png"), b"x", None).unwrap_err();
        assert_eq!(err.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn accepts_each_body_kind() {
        let e = parse_publish_body(
            Some("application/json; charset=utf-8"),
            br#"{"data":{"a":1},"retry":10}"#,
            None,
        )
        .unwrap();
        assert_eq!(e.data(), Some(r#"{"a":1}"#));
        assert_eq!(e.retry(), Some(Duration::from_millis(10)));
        let e = parse_publish_body(
            Some("application/x-www-form-urlencoded"),
            b"data=a&data=b+c",
            None,
        )
        .unwrap();
        assert_eq!(e.data(), Some("a\nb c"));
        let e = parse_publish_body(None, b"plain", Some("id=9")).unwrap();
        assert_eq!((e.data(), e.id()), (Some("plain"), Some("9")));
    }
}
