//! One client instance: an `sse_client::EventSource` driven by a task that reports every event and
//! error to the harness's callback URL, in order, numbered from 1.

use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use sse_client::{Event, EventSource};
use tokio::sync::mpsc;

use super::ContractError;
use super::protocol::{Callback, CreateStream, EventBody, LIMITS};

/// What the service can ask of a running stream.
#[derive(Debug)]
pub enum Control {
    Restart,
}

/// Everything needed to (re)build the source: the checked create request.
#[derive(Debug, Clone)]
pub struct Spec {
    url: reqwest::Url,
    callback: String,
    method: reqwest::Method,
    headers: HeaderMap,
    body: Option<String>,
    initial_delay: Option<Duration>,
    read_timeout: Option<Duration>,
    last_event_id: String,
}

impl Spec {
    /// Checks a create request; anything invalid is the harness's 400.
    pub fn parse(req: CreateStream) -> Result<Spec, ContractError> {
        let invalid = |what: String| ContractError::InvalidRequest(what);
        let url = reqwest::Url::parse(&req.stream_url)
            .map_err(|e| invalid(format!("streamUrl {:?}: {e}", req.stream_url)))?;
        reqwest::Url::parse(&req.callback_url)
            .map_err(|e| invalid(format!("callbackUrl {:?}: {e}", req.callback_url)))?;
        let method = match req.method.as_deref() {
            None | Some("") => reqwest::Method::GET,
            Some(m) => reqwest::Method::from_bytes(m.as_bytes())
                .map_err(|e| invalid(format!("method {m:?}: {e}")))?,
        };
        let mut headers = HeaderMap::new();
        for (name, value) in req.headers.iter().flatten() {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| invalid(format!("header name {name:?}: {e}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|e| invalid(format!("header {name} value {value:?}: {e}")))?;
            headers.append(name, value);
        }
        if req.body.is_some() && !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
        Ok(Spec {
            url,
            callback: req.callback_url.trim_end_matches('/').to_owned(),
            method,
            headers,
            body: req.body,
            initial_delay: req.initial_delay_ms.map(Duration::from_millis),
            read_timeout: req
                .read_timeout_ms
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            last_event_id: req.last_event_id.unwrap_or_default(),
        })
    }

    /// A source resuming from `last_event_id` with `reconnection_time` (when known).
    fn source(
        &self,
        client: &reqwest::Client,
        last_event_id: &str,
        reconnection_time: Option<Duration>,
    ) -> Result<EventSource, sse_client::Error> {
        let mut request = client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        let mut builder = EventSource::from_request(request)
            .last_event_id(last_event_id)
            .idle_timeout(self.read_timeout)
            .comments(true)
            .limits(LIMITS);
        if let Some(delay) = reconnection_time.or(self.initial_delay) {
            builder = builder.reconnection_time(delay);
        }
        builder.build()
    }
}

/// Runs one stream until `control` closes (the harness deleted it) or the source ends for good.
pub async fn run(spec: Spec, client: reqwest::Client, mut control: mpsc::Receiver<Control>) {
    let mut counter: u64 = 0;
    let mut report = async |callback: Callback| {
        counter += 1;
        let url = format!("{}/{counter}", spec.callback);
        if let Err(e) = client.post(&url).json(&callback).send().await {
            tracing::warn!(%url, error = %e, "callback failed");
        }
    };
    let mut source = match spec.source(&client, &spec.last_event_id, None) {
        Ok(source) => source,
        Err(e) => {
            report(Callback::Error {
                comment: e.to_string(),
            })
            .await;
            return;
        }
    };
    // After a fatal error the source has ended; the stream waits for the harness (restart or delete).
    let mut ended = false;
    loop {
        tokio::select! {
            command = control.recv() => match command {
                Some(Control::Restart) => {
                    // As if the server had dropped the connection: same URL, the committed id,
                    // the current reconnection time; but at once, as the harness asks.
                    let last = source.last_event_id().to_owned();
                    let time = source.reconnection_time();
                    source.close();
                    match spec.source(&client, &last, Some(time)) {
                        Ok(next) => {
                            source = next;
                            ended = false;
                        }
                        Err(e) => {
                            report(Callback::Error { comment: e.to_string() }).await;
                            ended = true;
                        }
                    }
                }
                None => {
                    source.close();
                    return;
                }
            },
            item = source.next(), if !ended => match item {
                Some(Ok(Event::Message(m))) => {
                    let id = (!m.last_event_id.is_empty()).then(|| m.last_event_id.as_str().to_owned());
                    report(Callback::Event {
                        event: EventBody {
                            event_type: m.event_type.as_str().to_owned(),
                            data: m.data.as_str().to_owned(),
                            id,
                        },
                    })
                    .await;
                }
                Some(Ok(Event::Comment(comment))) => {
                    report(Callback::Comment { comment }).await;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => report(Callback::Error { comment: e.to_string() }).await,
                None => ended = true,
            },
        }
    }
}
