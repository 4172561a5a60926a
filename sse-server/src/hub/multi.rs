//! [`Hub::subscribe_many`]: one stream for several channels and `prefix/*` patterns, through a shared
//! composite (`hub/composite.rs`), resumed by one hub-wide position.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use http::HeaderMap;

use crate::error::Error;
use crate::hub::channel::{Channel, Follower, Handle};
use crate::hub::composite::{self, Composite};
use crate::hub::handle::Hub;
use crate::hub::hooks::SubscribeInfo;
use crate::hub::metrics::Transport;
use crate::hub::registry::Inner;
use crate::hub::resume;
use crate::hub::subscription::{Guard, Subscription};

/// Options of a multi-channel subscription ([`Hub::subscribe_many_with`]).
///
/// ```
/// let options = sse_server::SubscribeOptions::default().tag_channel(true);
/// assert!(options.tags_channel());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    tag: bool,
}

impl SubscribeOptions {
    /// Puts `event: <channel>` on every event whose publisher set no type (`?event-type=channel`), so
    /// the subscriber tells channels apart without parsing data. Typed events keep their type.
    ///
    /// ```
    /// assert!(!sse_server::SubscribeOptions::default().tags_channel());
    /// ```
    pub fn tag_channel(mut self, on: bool) -> Self {
        self.tag = on;
        self
    }

    /// Whether [`tag_channel`](SubscribeOptions::tag_channel) is on.
    ///
    /// ```
    /// assert!(sse_server::SubscribeOptions::default().tag_channel(true).tags_channel());
    /// ```
    pub fn tags_channel(&self) -> bool {
        self.tag
    }
}

impl Hub {
    /// Subscribes one stream to several channels and `prefix/*` patterns (a pattern follows every
    /// channel under `prefix/`, including channels created later), resuming after `last_event_id`.
    ///
    /// Each channel's events keep their order, type and data; a broadcast arrives once. Ids on such a
    /// stream are hub positions, totally ordered across channels, so one `Last-Event-ID` resumes every
    /// channel with no gap and no duplicate (a publisher's own id is replaced by the position when the
    /// stream follows more than one channel). An id the hub cannot place in some followed channel
    /// gets the `sse-reset` event first. At most
    /// [`max_channels_per_subscription`](crate::hub::builder::HubBuilder::max_channels_per_subscription)
    /// entries; an empty list, too many or an invalid entry is [`Error::InvalidSubscription`] or
    /// [`Error::InvalidChannel`].
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = sse_server::Hub::builder().build();
    /// let mut sub = hub.subscribe_many(&["inbox", "users/*"], None).await?;
    /// hub.publish("inbox", sse_proto::Event::message("mail")).await?;
    /// let id = hub.publish("users/7", sse_proto::Event::message("joined")).await?;
    /// assert!(sub.next().await.unwrap().ends_with(b"data: mail\n\n"));
    /// assert_eq!(sub.next().await.unwrap(), format!("id: {id}\ndata: joined\n\n"));
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn subscribe_many<S: AsRef<str>>(
        &self,
        entries: &[S],
        last_event_id: Option<&str>,
    ) -> Result<Subscription, Error> {
        self.subscribe_many_with(entries, last_event_id, SubscribeOptions::default(), None)
            .await
    }

    /// Like [`subscribe_many`](Hub::subscribe_many), with `options`, passing the request headers to
    /// the `on_subscribe` hook (called once, with the entries joined by commas as the channel).
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let hub = sse_server::Hub::builder().build();
    /// let tag = sse_server::SubscribeOptions::default().tag_channel(true);
    /// let mut sub = hub.subscribe_many_with(&["a", "b"], None, tag, None).await?;
    /// let id = hub.publish("b", sse_proto::Event::message("x")).await?;
    /// assert_eq!(sub.next().await.unwrap(), format!("id: {id}\nevent: b\ndata: x\n\n"));
    /// # Ok::<(), sse_server::Error>(()) })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn subscribe_many_with<S: AsRef<str>>(
        &self,
        entries: &[S],
        last_event_id: Option<&str>,
        options: SubscribeOptions,
        headers: Option<&HeaderMap>,
    ) -> Result<Subscription, Error> {
        let config = &self.inner.config;
        let entries = composite::parse_entries(entries, config.max_channels_per_subscription)?;
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let last_event_id = last_event_id.filter(|id| !id.is_empty());
        let key = composite::key(&entries, options.tag);
        let weight = entries.len();
        let shown: Vec<String> = entries.iter().map(|e| e.text()).collect();
        let welcome = match &config.hooks.on_subscribe {
            Some(hook) => hook(&SubscribeInfo {
                channel: &shown.join(","),
                last_event_id,
                headers,
            })?,
            None => None,
        };
        let (tx, rx) = crate::hub::queue::queue(config.queue_size, config.max_subscriber_bytes());
        let kicked = Arc::new(AtomicBool::new(false));
        let (c, id) = self.inner.register_composite(
            key,
            entries,
            options.tag,
            Handle::new(tx, kicked.clone()),
        )?;
        for _ in 0..weight {
            self.inner.metrics.subscribed();
        }
        let guard = Guard {
            hub: self.inner.clone(),
            transport: Transport::Library,
            channel: c.channel.clone(),
            id,
            released: false,
            weight,
        };
        c.attached
            .get_or_try_init(|| attach(&self.inner, &c))
            .await?;
        let (prelude, seen_through) =
            resume::prelude_many(&self.inner, &c, last_event_id, welcome).await?;
        Ok(Subscription::new(
            rx,
            kicked,
            guard,
            prelude,
            seen_through,
            config.heartbeat,
        ))
    }
}

/// Makes `c` follow every channel of the table it matches (channels made later find it in the
/// index), each under the channel's publish lock so that no publish is half way between its append
/// and its fan-out meanwhile; with a shared store, watches its named channels.
async fn attach(inner: &Inner, c: &Arc<Composite>) -> Result<(), Error> {
    let targets: Vec<Arc<Channel>> = inner
        .registry()
        .channels
        .values()
        .filter(|ch| c.follows(&ch.name))
        .cloned()
        .collect();
    let follower: Arc<dyn Follower> = c.clone();
    for ch in &targets {
        let _publishing = ch.publish.lock().await;
        ch.follow(follower.clone());
    }
    for ch in targets {
        inner.release(&ch);
    }
    if let Some(live) = &inner.live {
        for e in &c.entries {
            match e {
                composite::Entry::Channel(name) => live.watch(name).await?,
                composite::Entry::Pattern(prefix) => {
                    live.watch_prefix(prefix).await?;
                    c.watching.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                }
            }
        }
    }
    Ok(())
}
