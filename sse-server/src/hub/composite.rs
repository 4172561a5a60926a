//! Several channels and `prefix/*` patterns on one stream: a *composite*.
//!
//! A multi-channel subscription subscribes to a composite keyed by its normalised entry set (sorted,
//! deduplicated, plus its options), so every subscriber of the same set shares one: 1,000 subscribers
//! of `users/*` cost the publisher one offer, not 1,000. The composite owns an ordinary
//! [`Channel`](crate::hub::channel::Channel) (queues, log, rounds, the lent-socket seam), so a socket
//! only ever sits in one channel and the lean path works unchanged.
//!
//! Each followed channel holds the composite as a [`Follower`] and offers it every event, in position
//! order (the hub-wide order lock for memory and durable stores, the merged feed for Redis). The
//! composite drops an event with the position and the bytes of the last one it passed on: a
//! broadcast sits at one position in every channel, with the same bytes, so it goes out once; an
//! event that only shares a position (an outside `XADD *` in a Redis stream) is never dropped.
//!
//! A store with several sequencers ([`ReplayStore::sequencers`] `> 1`, a Redis Cluster store) only
//! orders positions within one sequencer. The composite then keeps one cursor per sequencer
//! ([`Sequenced`]), drops what it passed on per sequencer, and every event it sends carries the whole
//! vector as its id (`hub/cursors.rs`). A broadcast sits at one position *per sequencer* there: the
//! composite passes it on once per sequencer among its followed channels it reached (two copies
//! from different sequencers cannot be told apart from two publishes of the same bytes).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use sse_proto::{Event, Item, Parser};

use crate::error::Error;
use crate::hub::channel::{Channel, Deliver, Follower};
use crate::hub::cursors::{self, Mark};
use crate::hub::name::check_channel;
use crate::position::Position;
use crate::replay::{ReplayStore, StoredEvent};

/// One entry of a multi-channel subscription. A composite's channel entries share their name with
/// the channel in the hub's table (`Arc<str>`), so 64 entries cost 64 pointers, not 64 strings.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Entry {
    /// One channel, by name.
    Channel(Arc<str>),
    /// Every channel under a prefix (kept with its trailing `/`), created before or after.
    Pattern(Arc<str>),
}

impl Entry {
    /// Whether `channel` is followed through this entry.
    pub(crate) fn matches(&self, channel: &str) -> bool {
        match self {
            Entry::Channel(name) => **name == *channel,
            Entry::Pattern(prefix) => {
                channel.len() > prefix.len() && channel.starts_with(&**prefix)
            }
        }
    }

    /// The entry as the client wrote it (`name` or `prefix/*`).
    pub(crate) fn text(&self) -> String {
        match self {
            Entry::Channel(name) => name.to_string(),
            Entry::Pattern(prefix) => format!("{prefix}*"),
        }
    }
}

/// Parses and normalises a subscription's entries: at most `max`, at least one, each a valid channel
/// name or `prefix/*` with a valid prefix; sorted and deduplicated.
pub(crate) fn parse_entries<S: AsRef<str>>(raw: &[S], max: usize) -> Result<Vec<Entry>, Error> {
    let mut entries = check_entries(raw, max)?;
    entries.sort();
    Ok(entries)
}

/// [`parse_entries`] in the order the client sent them (the first copy of a repeated entry kept):
/// what an authorization check walks, so that a refusal names the first refused entry *as sent*.
pub(crate) fn check_entries<S: AsRef<str>>(raw: &[S], max: usize) -> Result<Vec<Entry>, Error> {
    if raw.is_empty() {
        return Err(Error::InvalidSubscription(
            "no channel given: list at least one with ?channel=NAME (a channel name or a `prefix/*` pattern)".to_owned(),
        ));
    }
    if raw.len() > max {
        return Err(Error::InvalidSubscription(format!(
            "{} channels given, over the limit of {max} per subscription; split them over several connections or raise --max-channels-per-subscription",
            raw.len()
        )));
    }
    let mut entries: Vec<Entry> = Vec::with_capacity(raw.len());
    for text in raw {
        let entry = parse_entry(text.as_ref())?;
        if !entries.contains(&entry) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

fn parse_entry(text: &str) -> Result<Entry, Error> {
    let invalid =
        |why: String| Error::InvalidSubscription(format!("invalid entry {text:?}: {why}"));
    if let Some(base) = text.strip_suffix("/*") {
        if let Err(Error::InvalidChannel { reason, .. }) = check_channel(base) {
            return Err(invalid(format!(
                "the pattern's prefix {base:?} is not a channel name ({reason})"
            )));
        }
        if base.contains('*') {
            return Err(invalid(
                "a pattern has one `*`, as its whole last segment (`prefix/*`)".to_owned(),
            ));
        }
        return Ok(Entry::Pattern(Arc::from(format!("{base}/"))));
    }
    if text.contains('*') {
        return Err(invalid(
            "`*` is only allowed as a pattern's whole last segment (`prefix/*`)".to_owned(),
        ));
    }
    check_channel(text)?;
    Ok(Entry::Channel(Arc::from(text)))
}

/// The key composites are shared by: the entries and the options. It starts with a line feed, which
/// no channel name can hold.
pub(crate) fn key(entries: &[Entry], tag: bool) -> Arc<str> {
    let mut key = String::from(if tag { "\nchannel-type" } else { "\n" });
    for e in entries {
        key.push('\n');
        match e {
            Entry::Channel(name) => key.push_str(name),
            Entry::Pattern(prefix) => {
                key.push_str(prefix);
                key.push('*');
            }
        }
    }
    Arc::from(key)
}

/// A shared multi-channel stream (see the module docs).
pub(crate) struct Composite {
    /// Sorted; exactly sized.
    pub(crate) entries: Box<[Entry]>,
    /// `?event-type=channel`: an event without a type gets `event: <its channel>`.
    pub(crate) tag: bool,
    /// Publisher ids become the event's position (several channels' custom ids cannot be placed).
    ids: bool,
    /// The subscribers' side: queues, log, rounds.
    pub(crate) channel: Arc<Channel>,
    /// The last position passed on, with the stored bytes of each event passed on at it: the same
    /// position with the same bytes again is a broadcast's copy from another channel.
    last: Mutex<Option<(Position, Vec<Bytes>)>>,
    /// Set once the composite follows every channel it should (the first subscriber attaches it).
    pub(crate) attached: tokio::sync::OnceCell<()>,
    /// Pattern watches of a shared store's live feed made for it (undone when it is released).
    pub(crate) watching: std::sync::atomic::AtomicUsize,
    /// Per-sequencer cursors, with a store of several sequencers (`None` with one).
    pub(crate) sequenced: Option<Sequenced>,
}

/// A composite's cursors over a store with several sequencers (see the module docs).
#[derive(Debug)]
pub(crate) struct Sequenced {
    pub(crate) store: Arc<dyn ReplayStore>,
    /// Which sequencers hold a channel it follows (every one, with a pattern).
    followed: Box<[bool]>,
    /// Names no channel can have, one per followed sequencer when there are patterns: replaying
    /// them tells whether a whole window of that sequencer was dropped after a cursor.
    pub(crate) probes: Box<[String]>,
    state: Mutex<Cursors>,
    /// Woken whenever a cursor moves (a resume may wait for one, see [`Composite::catch_up`]).
    moved: tokio::sync::Notify,
}

#[derive(Debug)]
struct Cursors {
    /// Per sequencer: set once its cursor starts from the position the store issued
    /// ([`Composite::seed`]); an event offered before is older than that (stored), and dropped.
    seeded: Box<[bool]>,
    /// Set once every cursor is seeded: only then are events passed on (before, an id would carry
    /// a cursor not seeded yet; the subscribers waiting for the seed replay them or never had them).
    complete: bool,
    /// Per sequencer: everything followed up to here was passed on.
    marks: Box<[Mark]>,
    /// Per sequencer: the bytes passed on at its mark (empty at a seeded mark).
    sent: Box<[Vec<Bytes>]>,
}

impl Sequenced {
    fn new(store: &Arc<dyn ReplayStore>, entries: &[Entry]) -> Sequenced {
        let n = store.sequencers();
        let patterns = entries.iter().any(|e| matches!(e, Entry::Pattern(_)));
        let mut followed = vec![patterns; n];
        for e in entries {
            if let Entry::Channel(name) = e
                && let Some(f) = followed.get_mut(store.sequencer(name))
            {
                *f = true;
            }
        }
        let probes = match patterns {
            true => probes(store.as_ref(), n),
            false => Vec::new(),
        };
        let marks = followed
            .iter()
            .map(|&f| if f { Mark::Nothing } else { Mark::Unfollowed })
            .collect();
        Sequenced {
            store: store.clone(),
            followed: followed.into_boxed_slice(),
            probes: probes.into_boxed_slice(),
            moved: tokio::sync::Notify::new(),
            state: Mutex::new(Cursors {
                seeded: vec![false; n].into_boxed_slice(),
                complete: false,
                marks,
                sent: vec![Vec::new(); n].into_boxed_slice(),
            }),
        }
    }

    /// How many sequencers the store has.
    pub(crate) fn len(&self) -> usize {
        self.followed.len()
    }

    /// The sequencers holding a followed channel.
    pub(crate) fn followed(&self) -> impl Iterator<Item = usize> + '_ {
        self.followed
            .iter()
            .enumerate()
            .filter_map(|(k, &f)| f.then_some(k))
    }

    /// Whether sequencer `k` holds a followed channel.
    pub(crate) fn follows(&self, k: usize) -> bool {
        self.followed.get(k).copied().unwrap_or(false)
    }
}

/// One channel name no channel can have (it starts with NUL) per sequencer, found by trying a
/// bounded number of names; a sequencer none of them maps to gets no probe.
fn probes(store: &dyn ReplayStore, n: usize) -> Vec<String> {
    let mut found: Vec<Option<String>> = vec![None; n];
    let mut left = n;
    for i in 0..n.saturating_mul(64) {
        let name = format!("\u{0}{i}");
        if let Some(slot @ None) = found.get_mut(store.sequencer(&name)) {
            *slot = Some(name);
            left -= 1;
            if left == 0 {
                break;
            }
        }
    }
    found.into_iter().flatten().collect()
}

impl fmt::Debug for Composite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Composite")
            .field("entries", &self.entries)
            .field("tag", &self.tag)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Composite {
    /// A composite for `entries`, whose subscribers' channel is keyed `key`.
    pub(crate) fn new(key: Arc<str>, entries: Vec<Entry>, tag: bool) -> Composite {
        let mut name = String::new();
        for (i, e) in entries.iter().enumerate() {
            if i > 0 {
                name.push(',');
            }
            match e {
                Entry::Channel(n) => name.push_str(n),
                Entry::Pattern(prefix) => {
                    name.push_str(prefix);
                    name.push('*');
                }
            }
        }
        let ids = entries.len() > 1 || entries.iter().any(|e| matches!(e, Entry::Pattern(_)));
        Composite {
            entries: entries.into_boxed_slice(),
            tag,
            ids,
            channel: Arc::new(Channel::composite(Arc::from(name), key)),
            last: Mutex::new(None),
            attached: tokio::sync::OnceCell::new(),
            watching: std::sync::atomic::AtomicUsize::new(0),
            sequenced: None,
        }
    }

    /// With a store of several sequencers, keeps per-sequencer cursors (see the module docs).
    pub(crate) fn sequenced(mut self, store: &Arc<dyn ReplayStore>) -> Composite {
        if store.sequencers() > 1 {
            self.sequenced = Some(Sequenced::new(store, &self.entries));
        }
        self
    }

    /// Starts the per-sequencer cursors from the positions the store has issued, once the composite
    /// follows every channel: what it was offered before is older (dropped: it is stored, and
    /// replayed to who resumes), and every followed event newer than that reaches it. No-op with one
    /// sequencer.
    pub(crate) async fn seed(&self) -> Result<(), Error> {
        let Some(s) = &self.sequenced else {
            return Ok(());
        };
        for k in s.followed() {
            let issued = s.store.issued_by(k).await?;
            // Marked seeded together with the read (an event offered before was issued before).
            let mut state = lock(&s.state);
            let state = &mut *state;
            if let (Some(mark), Some(sent), Some(seeded)) = (
                state.marks.get_mut(k),
                state.sent.get_mut(k),
                state.seeded.get_mut(k),
            ) {
                *mark = mark.later(issued.map_or(Mark::Nothing, Mark::At));
                sent.clear();
                *seeded = true;
            }
        }
        lock(&s.state).complete = true;
        Ok(())
    }

    /// The cursors now: every followed event at or before its sequencer's mark was passed on or is
    /// older than the seed (and stored), every later one will be offered.
    pub(crate) fn marks(&self) -> Option<Box<[Mark]>> {
        self.sequenced
            .as_ref()
            .map(|s| lock(&s.state).marks.clone())
    }

    /// Moves sequencer `k`'s cursor up to `to` — a resuming client's cursor, ahead of this composite
    /// when this node's live feed of `k` is behind the node the client came from — once the
    /// composite has passed on `pending` (the last followed event at or before `to`), so that the ids
    /// it sends from then on do not say less than that client has. Other subscribers lose nothing:
    /// no followed event lies between. `to` must be a position the store issued. Waits until
    /// `deadline` at most; `false` when it could not (the ids then lag until the feed passes `to`).
    pub(crate) async fn catch_up(
        &self,
        k: usize,
        to: Position,
        pending: Option<Position>,
        deadline: tokio::time::Instant,
    ) -> bool {
        let Some(s) = &self.sequenced else {
            return false;
        };
        loop {
            let moved = s.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            {
                let mut state = lock(&s.state);
                let state = &mut *state;
                let (Some(mark), Some(sent)) = (state.marks.get_mut(k), state.sent.get_mut(k))
                else {
                    return false;
                };
                if *mark >= Mark::At(to) {
                    return true;
                }
                if pending.is_none_or(|p| *mark >= Mark::At(p)) {
                    *mark = Mark::At(to);
                    sent.clear();
                    return true;
                }
            }
            if tokio::time::timeout_at(deadline, moved).await.is_err() {
                return false;
            }
        }
    }

    /// [`Follower::offer`] with per-sequencer cursors: drops what its sequencer's cursor covers,
    /// moves the cursor, and passes the event on with the vector as its id, under the cursors' lock
    /// so that the ids reach subscribers in the order they grow.
    fn offer_sequenced(
        &self,
        s: &Sequenced,
        from: &str,
        event: &StoredEvent,
        deliver: &mut Deliver<'_>,
    ) {
        let k = s.store.sequencer(from);
        let mut state = lock(&s.state);
        let state = &mut *state;
        let (Some(mark), Some(sent), Some(seeded)) = (
            state.marks.get_mut(k),
            state.sent.get_mut(k),
            state.seeded.get(k).copied(),
        ) else {
            tracing::warn!(
                channel = from,
                sequencer = k,
                "the store named a sequencer it does not have; event not passed on"
            );
            return;
        };
        if !seeded {
            return;
        }
        match *mark {
            Mark::At(at) if event.position < at => return,
            Mark::At(at) if event.position == at => {
                if sent.is_empty() || sent.contains(&event.bytes) {
                    return;
                }
                sent.push(event.bytes.clone());
            }
            _ => {
                *mark = Mark::At(event.position);
                sent.clear();
                sent.push(event.bytes.clone());
            }
        }
        s.moved.notify_waiters();
        if !state.complete {
            return;
        }
        let id = cursors::encode(&state.marks);
        let bytes =
            reencode(from, event, Some(&id), self.tag).unwrap_or_else(|| event.bytes.clone());
        deliver(&self.channel, cursors::pack(k, event.position), &bytes);
    }

    /// Whether `channel` is followed.
    pub(crate) fn follows(&self, channel: &str) -> bool {
        self.entries.iter().any(|e| e.matches(channel))
    }

    /// The `prefix/` of every pattern entry.
    pub(crate) fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().filter_map(|e| match e {
            Entry::Pattern(p) => Some(&**p),
            Entry::Channel(_) => None,
        })
    }

    /// Whether some entry is a pattern.
    pub(crate) fn has_patterns(&self) -> bool {
        self.entries.iter().any(|e| matches!(e, Entry::Pattern(_)))
    }

    /// The bytes this composite sends for `event` of channel `from`: the stored bytes as they are,
    /// unless the event needs its position as id (a publisher id on a multi-channel stream) or a
    /// channel tag; it is then re-encoded once, with [`sse_proto`].
    pub(crate) fn render(&self, from: &str, event: &StoredEvent) -> Bytes {
        let custom = self.ids && *event.id != *event.position.to_string();
        if !custom && !self.tag {
            return event.bytes.clone();
        }
        let id = custom.then(|| event.position.to_string());
        match reencode(from, event, id.as_deref(), self.tag) {
            Some(bytes) => bytes,
            None => event.bytes.clone(),
        }
    }
}

/// Parses `event`'s bytes back (with [`sse_proto::Parser`]) and encodes them again with `id` as id
/// (when given) and `event: <from>` when it has no type (`tag`). `None` when nothing changes.
pub(crate) fn reencode(
    from: &str,
    event: &StoredEvent,
    id: Option<&str>,
    tag: bool,
) -> Option<Bytes> {
    let mut parser = Parser::builder().comments(true).build();
    parser.feed(&event.bytes);
    let (mut comments, mut retry, mut message) = (Vec::new(), None, None);
    for item in parser.by_ref() {
        match item.ok()? {
            Item::Comment(c) => comments.push(c),
            Item::Retry(d) => retry = Some(d),
            Item::Message(m) => message = Some(m),
        }
    }
    let message = message?;
    let untyped = message.event_type == "message";
    if id.is_none() && !(untyped && tag) {
        return None;
    }
    let mut b = Event::builder().data(message.data);
    if !comments.is_empty() {
        b = b.comment(comments.join("\n"));
    }
    if let Some(retry) = retry {
        b = b.retry(retry);
    }
    b = b.id(id.map_or(message.last_event_id, str::to_owned));
    if !untyped {
        b = b.event(message.event_type);
    } else if tag {
        b = b.event(from);
    }
    b.build().ok().map(|e| sse_proto::encode(&e))
}

impl Follower for Composite {
    fn offer(&self, from: &str, event: &StoredEvent, deliver: &mut Deliver<'_>) {
        if let Some(s) = &self.sequenced {
            return self.offer_sequenced(s, from, event, deliver);
        }
        {
            let mut last = lock(&self.last);
            match &mut *last {
                Some((at, sent)) if *at == event.position => {
                    if sent.contains(&event.bytes) {
                        return;
                    }
                    // Another event at the same position (an outside `XADD *`): not a duplicate.
                    sent.push(event.bytes.clone());
                }
                _ => *last = Some((event.position, vec![event.bytes.clone()])),
            }
        }
        deliver(&self.channel, event.position, &self.render(from, event));
    }

    fn stream(&self) -> Arc<Channel> {
        self.channel.clone()
    }
}

/// Which composites follow which patterns: consulted when a channel is made, so that a pattern
/// follows channels created after it was subscribed. Named entries need no index: a composite keeps
/// its named channels in the table while it lives, and they hold it among their followers.
#[derive(Debug, Default)]
pub(crate) struct Index {
    by_prefix: HashMap<Arc<str>, Vec<Arc<Composite>>>,
}

impl Index {
    pub(crate) fn insert(&mut self, composite: &Arc<Composite>) {
        for prefix in composite.prefixes() {
            let list = self.by_prefix.entry(Arc::from(prefix)).or_default();
            crate::hub::channel::grow_by_little(list);
            list.push(composite.clone());
        }
    }

    pub(crate) fn remove(&mut self, composite: &Arc<Composite>) {
        for prefix in composite.prefixes() {
            if let Some(list) = self.by_prefix.get_mut(prefix) {
                list.retain(|c| !Arc::ptr_eq(c, composite));
                if list.is_empty() {
                    self.by_prefix.remove(prefix);
                }
            }
        }
    }

    /// The composites following `channel` by a pattern on one of its prefixes.
    pub(crate) fn matching(&self, channel: &str) -> Vec<Arc<Composite>> {
        if self.by_prefix.is_empty() {
            return Vec::new();
        }
        let mut found: Vec<Arc<Composite>> = Vec::new();
        for (i, b) in channel.bytes().enumerate() {
            if b == b'/' && i + 1 < channel.len() {
                for c in self.by_prefix.get(&channel[..=i]).into_iter().flatten() {
                    if !found.iter().any(|f| Arc::ptr_eq(f, c)) {
                        found.push(c.clone());
                    }
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(minor: u64, event: Event) -> StoredEvent {
        let position = Position::new(1, minor);
        let event = match event.id() {
            Some(_) => event,
            None => event.with_id(position.to_string()).unwrap(),
        };
        StoredEvent {
            position,
            id: Arc::from(event.id().unwrap()),
            bytes: sse_proto::encode(&event),
        }
    }

    #[test]
    fn entries_are_normalised_and_checked() {
        let e = parse_entries(&["b", "users/*", "a", "b"], 4).unwrap();
        assert_eq!(
            e,
            vec![
                Entry::Channel("a".into()),
                Entry::Channel("b".into()),
                Entry::Pattern("users/".into())
            ]
        );
        assert_eq!(
            check_entries(&["b", "users/*", "a", "b"], 4).unwrap(),
            [&e[1], &e[2], &e[0]].map(Clone::clone),
            "as sent, repeats dropped"
        );
        assert!(e[2].matches("users/1") && e[2].matches("users/1/x"));
        assert!(!e[2].matches("users/") && !e[2].matches("usersx"));
        let none: [&str; 0] = [];
        for bad in [
            &none[..],
            &["a", "b", "c"],
            &["*"],
            &["a*"],
            &["/*"],
            &["a/*/*"],
            &["\u{7}"],
        ] {
            let err = parse_entries(bad, 2).unwrap_err();
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{bad:?}");
        }
        assert!(
            parse_entries(&["a", "b", "c"], 2)
                .unwrap_err()
                .to_string()
                .contains("limit of 2")
        );
    }

    #[test]
    fn the_index_finds_composites_by_name_and_by_prefix() {
        let mut index = Index::default();
        let a = Arc::new(Composite::new(
            key(&[], false),
            parse_entries(&["x", "users/*"], 4).unwrap(),
            false,
        ));
        let b = Arc::new(Composite::new(
            key(&[], false),
            parse_entries(&["users/1/*"], 4).unwrap(),
            false,
        ));
        index.insert(&a);
        index.insert(&b);
        assert!(
            index.matching("x").is_empty(),
            "named entries are followed, not indexed"
        );
        assert_eq!(index.matching("users/1").len(), 1);
        assert_eq!(index.matching("users/1/z").len(), 2);
        assert!(index.matching("users/").is_empty() && index.matching("y").is_empty());
        index.remove(&a);
        assert_eq!(index.matching("users/1/z").len(), 1);
        index.remove(&b);
        assert!(index.by_prefix.is_empty());
    }

    /// What `c` passes on for `event` of `from`: the frame's position and bytes.
    fn offer(c: &Composite, from: &str, event: &StoredEvent) -> Option<(Position, Bytes)> {
        let mut out = None;
        c.offer(from, event, &mut |_, p, b| out = Some((p, b.clone())));
        out
    }

    #[test]
    fn broadcasts_and_older_positions_are_offered_once() {
        let c = Composite::new(
            key(&[], false),
            parse_entries(&["a", "b"], 2).unwrap(),
            false,
        );
        let e = stored(5, Event::message("x"));
        assert!(offer(&c, "a", &e).is_some());
        assert!(offer(&c, "b", &e).is_none());
        // Another event at the same position (an outside `XADD *` in Redis) is not a copy.
        let other = stored(5, Event::message("y"));
        assert!(offer(&c, "b", &other).is_some());
        assert!(offer(&c, "a", &e).is_none() && offer(&c, "b", &other).is_none());
        let (_, bytes) = offer(&c, "b", &stored(6, Event::message("z"))).unwrap();
        assert_eq!(&bytes[..], b"id: 1-6\ndata: z\n\n");
    }

    #[test]
    fn tags_untyped_events_and_replaces_custom_ids_on_multi_streams() {
        let tagged = Composite::new(key(&[], true), parse_entries(&["a", "b"], 2).unwrap(), true);
        let plain = stored(2, Event::message("x"));
        assert_eq!(
            &tagged.render("a", &plain)[..],
            b"id: 1-2\nevent: a\ndata: x\n\n"
        );
        let typed = stored(3, Event::builder().event("t").data("x").build().unwrap());
        assert_eq!(tagged.render("a", &typed), typed.bytes);
        let mine = stored(4, Event::builder().id("mine").data("x").build().unwrap());
        assert_eq!(
            &tagged.render("b", &mine)[..],
            b"id: 1-4\nevent: b\ndata: x\n\n"
        );
        let single = Composite::new(key(&[], false), parse_entries(&["a"], 1).unwrap(), false);
        assert_eq!(single.render("a", &mine), mine.bytes);
        let multi = Composite::new(
            key(&[], false),
            parse_entries(&["a", "b"], 2).unwrap(),
            false,
        );
        assert_eq!(&multi.render("b", &mine)[..], b"id: 1-4\ndata: x\n\n");
    }
}
