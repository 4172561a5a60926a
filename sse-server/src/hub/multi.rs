//! [`Hub::subscribe_many`]: one stream for several channels and `prefix/*` patterns, through a shared
//! composite (`hub/composite.rs`), resumed by one hub-wide position — or, with a store of several
//! sequencers, by one cursor per sequencer (`hub/cursors.rs`).

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
    /// gets the `sse-reset` event first. With a store of several sequencers
    /// ([`ReplayStore::sequencers`](crate::replay::ReplayStore::sequencers), a Redis Cluster), ids are
    /// one cursor per sequencer (`v…`, about 150 bytes with 16 sequencers), each channel keeps its
    /// order and a broadcast arrives once per sequencer holding a followed channel it reached. At most
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
/// and its fan-out meanwhile; with a shared store, watches its named channels. With several
/// sequencers, its cursors then start from what the store issued ([`Composite::seed`]).
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
    c.seed().await
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use sse_proto::Event;

    use crate::hub::handle::Hub;

    /// With a durable store, appends of several channels commit in one batch and their publishers
    /// wake in any order: without the hub-wide order lock, a composite would get them out of order
    /// (and drop the older ones as already passed).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_publishers_reach_a_composite_in_position_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::replay::DurableStore::builder(dir.path())
            .open()
            .unwrap();
        let hub = Hub::builder()
            .queue_size(10_000)
            .store(std::sync::Arc::new(store))
            .build();
        let mut sub = hub.subscribe_many(&["a", "b", "c/*"], None).await.unwrap();
        let mut tasks = Vec::new();
        for channel in ["a", "b", "c/1", "c/2", "d"] {
            let hub = hub.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    hub.publish(channel, Event::message(format!("{channel} {i}")))
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut last = None;
        for _ in 0..200 {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), sub.next());
            let bytes = next.await.expect("an event was lost").unwrap();
            let text = std::str::from_utf8(&bytes).unwrap();
            let id: crate::position::Position = text[4..text.find('\n').unwrap()].parse().unwrap();
            assert!(last < Some(id), "{last:?} then {id}");
            assert!(!text.contains("data: d "), "an unfollowed channel leaked");
            last = Some(id);
        }
    }

    /// A memory store whose first replay of `held` waits until the test lets it go: the resume then
    /// replays its channels at different instants, as a durable or Redis store does when it is slow.
    #[derive(Debug)]
    struct SlowReplay {
        inner: crate::replay::MemoryStore,
        held: &'static str,
        entered: tokio::sync::Notify,
        go: tokio::sync::Semaphore,
    }

    impl crate::replay::ReplayStore for SlowReplay {
        fn append<'a>(
            &'a self,
            channel: &'a str,
            event: Event,
        ) -> crate::replay::BoxFuture<'a, Result<crate::replay::StoredEvent, crate::Error>>
        {
            self.inner.append(channel, event)
        }

        fn replay<'a>(
            &'a self,
            channel: &'a str,
            last_event_id: &'a str,
        ) -> crate::replay::BoxFuture<'a, Result<crate::replay::Replay, crate::Error>> {
            Box::pin(async move {
                if channel == self.held {
                    self.entered.notify_one();
                    self.go.acquire().await.unwrap().forget();
                }
                self.inner.replay(channel, last_event_id).await
            })
        }

        fn mint_id(&self) -> crate::replay::BoxFuture<'_, Result<String, crate::Error>> {
            self.inner.mint_id()
        }

        fn append_all<'a>(
            &'a self,
            channels: &'a [String],
            event: Event,
        ) -> crate::replay::BoxFuture<'a, Result<crate::replay::StoredEvent, crate::Error>>
        {
            self.inner.append_all(channels, event)
        }

        fn channels(
            &self,
        ) -> crate::replay::BoxFuture<'_, Result<Vec<crate::replay::StoredChannel>, crate::Error>>
        {
            self.inner.channels()
        }

        fn issued(
            &self,
        ) -> crate::replay::BoxFuture<'_, Result<Option<crate::position::Position>, crate::Error>>
        {
            self.inner.issued()
        }
    }

    /// A resume lists the channels its pattern matches, then replays them one by one. A channel
    /// created under the pattern after the listing is followed live; a named channel replayed after
    /// that holds a later event. The later event must not make the resume skip the new channel's
    /// first event as "already replayed" (it never was): both arrive, once, in position order.
    #[tokio::test]
    async fn a_channel_created_between_two_replays_is_not_skipped() {
        let store = std::sync::Arc::new(SlowReplay {
            inner: crate::replay::MemoryStore::new(Default::default()),
            held: "a",
            entered: tokio::sync::Notify::new(),
            go: tokio::sync::Semaphore::new(0),
        });
        let hub = Hub::builder().store(store.clone()).build();
        let last = hub.publish("a", Event::message("a0")).await.unwrap();
        hub.publish("p/old", Event::message("old")).await.unwrap();
        let resuming = {
            let hub = hub.clone();
            tokio::spawn(async move { hub.subscribe_many(&["a", "p/*"], Some(&last)).await })
        };
        // The pattern's channels are listed, `a` is being replayed: a channel appears, `a` moves on.
        store.entered.notified().await;
        hub.publish("p/new", Event::message("new")).await.unwrap();
        hub.publish("a", Event::message("a1")).await.unwrap();
        store.go.add_permits(1);
        let mut sub = resuming.await.unwrap().unwrap();
        hub.publish("a", Event::message("end")).await.unwrap();
        let mut got = Vec::new();
        while got.last().map(String::as_str) != Some("end") {
            let next = tokio::time::timeout(std::time::Duration::from_secs(10), sub.next());
            let bytes = next.await.expect("the stream stalled").unwrap();
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            got.push(text.rsplit("data: ").next().unwrap().trim_end().to_owned());
        }
        assert_eq!(got, ["old", "new", "a1", "end"]);
    }

    #[tokio::test]
    async fn shutdown_ends_multi_channel_streams_with_a_retry() {
        let hub = Hub::builder().build();
        let mut sub = hub.subscribe_many(&["a", "p/*"], None).await.unwrap();
        hub.shutdown().await;
        assert!(sub.next().await.unwrap().starts_with(b"retry: "));
        assert!(sub.next().await.is_none());
    }

    #[tokio::test]
    async fn the_last_subscriber_forgets_the_composite_and_its_channels() {
        let hub = Hub::builder().build();
        let one = hub.subscribe_many(&["a", "p/*"], None).await.unwrap();
        let two = hub.subscribe_many(&["p/*", "a", "a"], None).await.unwrap();
        assert_eq!(
            hub.inner.registry().composites.len(),
            1,
            "one set, one composite"
        );
        hub.publish("p/x", Event::message("x")).await.unwrap();
        let counts: Vec<usize> = hub
            .channels()
            .await
            .unwrap()
            .iter()
            .map(|c| c.subscribers)
            .collect();
        assert_eq!(counts, [2, 2]);
        drop(one);
        drop(two);
        let reg = hub.inner.registry();
        assert!(reg.composites.is_empty() && reg.channels.is_empty());
        assert!(reg.index.matching("p/x").is_empty());
    }
}
