use std::fmt;
use std::sync::Arc;

use http::HeaderMap;
use sse_proto::Event;

use crate::error::Error;

/// What an [`on_subscribe`](crate::hub::builder::HubBuilder::on_subscribe) hook sees about a new subscriber.
///
/// ```
/// let info = sse_server::SubscribeInfo { channel: "news", last_event_id: None, headers: None };
/// assert_eq!(info.channel, "news");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SubscribeInfo<'a> {
    /// The channel being subscribed to.
    pub channel: &'a str,
    /// The `Last-Event-ID` the subscriber resumes from, if any.
    pub last_event_id: Option<&'a str>,
    /// The HTTP request headers, when the subscription comes through the [`HubService`](crate::http::service::HubService).
    pub headers: Option<&'a HeaderMap>,
}

/// Decides on a subscription: `Err` refuses it (use [`Error::rejected`] to pick the status),
/// `Ok(Some(event))` sends `event` to this subscriber only, first, and not into the replay window.
pub type OnSubscribe =
    Arc<dyn Fn(&SubscribeInfo<'_>) -> Result<Option<Event>, Error> + Send + Sync>;

/// Called with the channel name when a subscriber's stream ends, whatever the reason.
pub type OnUnsubscribe = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) on_subscribe: Option<OnSubscribe>,
    pub(crate) on_unsubscribe: Option<OnUnsubscribe>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_subscribe", &self.on_subscribe.is_some())
            .field("on_unsubscribe", &self.on_unsubscribe.is_some())
            .finish()
    }
}

impl Error {
    /// A refusal for an `on_subscribe` hook to return: the client gets `status` and `message`.
    ///
    /// ```
    /// let e = sse_server::Error::rejected(http::StatusCode::FORBIDDEN, "members only");
    /// assert_eq!(e.status(), http::StatusCode::FORBIDDEN);
    /// ```
    pub fn rejected(status: http::StatusCode, message: impl Into<String>) -> Error {
        Error::Rejected {
            status,
            message: message.into(),
        }
    }
}
