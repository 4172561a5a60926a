//! Flushers: a few tasks (one per core) that write live events straight to subscribers' sockets.
//!
//! Why: a subscriber served by the lean HTTP/1.1 path spends nearly all its life waiting for the
//! next event. Waking its task for every event (schedule it, poll its stream, pop its queue, then
//! `writev`) costs more user-space time than the write, and touches a dozen cold cache lines per
//! subscriber. So, once such a task has nothing queued, it lends its socket to the hub
//! (`hub/lent.rs`). The fan-out then appends the event to the channel's log once and puts the
//! channel on a flusher's work list once per round (`hub/rounds.rs`); the flusher offers each of
//! its subscribers the part of the log it has not seen (`hub/round.rs`), frames it as one HTTP/1.1
//! chunk and writes it in one `writev` (`transport/io.rs`), or, for an HTTP/2 stream
//! (`transport/h2/`), hands the events as they are to the stream, whose connection task frames and
//! writes them with the other streams' frames. Rounds batch by themselves: whatever is published
//! during a round goes to the subscribers the round has not reached yet (it looks at the log again
//! every [`EXTEND_EVERY`] subscribers), and to the others in the next round. Coalescing happens
//! only when it buys something: after a round of 1 ms or more, the next one rests (twice as long as
//! the round took, at most [`HubBuilder::coalesce`](crate::hub::builder::HubBuilder::coalesce),
//! the latency budget) only if, at the rate events came since that round started, the rest would
//! gather at least two more: more events per `writev` and fewer `writev`s, the system call and TCP
//! segment being what a delivery costs.
//!
//! The task takes its socket back for anything only it can do (a heartbeat, an expiry, the last
//! bytes), and a flusher hands it back whenever the socket does not take a write whole, so a slow
//! subscriber is never written by a flusher twice: its task waits for the socket, and a full queue
//! disconnects it as before. Either way the events it has not seen move from the log to the front of
//! its queue, under the channel's lock, so none is lost or repeated.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::hub::channel::Channel;
use crate::hub::lent::Framing;
use crate::hub::queue::Queue;
use crate::hub::round::{Offer, Pending, Round, Written, Wrote};
use crate::hub::rounds::WorkList;
use crate::transport::h1::chunk;
use crate::transport::io::{write_events, write_now};

/// Subscribers written per flusher before it lets other tasks on its worker run (a multiple of
/// [`EXTEND_EVERY`]).
const YIELD_EVERY: usize = 256;
/// Subscribers written between two looks at the channel's log for events published meanwhile.
const EXTEND_EVERY: usize = 32;
const _: () = assert!(
    YIELD_EVERY.is_multiple_of(EXTEND_EVERY),
    "yields fall between two slices"
);
/// Channels a round goes through between two such pauses.
const YIELD_CHANNELS: usize = 64;
/// Events a pause must be expected to gather (at the recent rate) to be worth taking.
const BEHIND_AT: u64 = 2;
/// Rounds shorter than this are never followed by a pause (tokio's timer has 1 ms resolution).
const MIN_ROUND: Duration = Duration::from_millis(1);
/// The flusher's buffer for TLS records is dropped after a round that grew it past this.
const MAX_SCRATCH: usize = 64 * 1024;

/// Starts flusher `index`'s task (the hub's `Spawn`).
pub(crate) fn spawn(index: usize, list: Arc<WorkList>) -> JoinHandle<()> {
    tokio::spawn(run(index, list))
}

/// Writes one round: each target gets its events as one HTTP/1.1 chunk, in slices of
/// [`EXTEND_EVERY`] targets. Between two slices the round takes in the events published on the
/// channel meanwhile ([`Channel::extend_round`]), so the targets still to be written get them now
/// rather than a whole round later (a round over thousands of sockets takes milliseconds; the
/// targets written already get them in the next round), and every [`YIELD_EVERY`] targets it lets
/// the worker's other tasks run. The chunk of a slice's events is framed once and shared by every
/// subscriber that needs all of them. Returns the events delivered and the subscribers to hand
/// their sockets back to.
/// `scratch` is the flusher's buffer for TLS records (sealed per subscriber), reused.
async fn write_round(
    channel: &Channel,
    index: usize,
    round: &mut Round,
    now: Instant,
    scratch: &mut Vec<u8>,
) -> (u64, Vec<Arc<Queue>>) {
    let mut delivered = 0;
    let mut handbacks = Vec::new();
    if round.is_empty() {
        return (0, handbacks);
    }
    let mut from = 0;
    while from < round.targets.len() {
        let until = (from + EXTEND_EVERY).min(round.targets.len());
        delivered += write_slice(round, from..until, now, scratch, &mut handbacks);
        from = until;
        if from < round.targets.len() {
            if from % YIELD_EVERY == 0 {
                tokio::task::yield_now().await;
            }
            channel.extend_round(index, round);
        }
    }
    (delivered, handbacks)
}

/// Writes the round's targets in `slice` (see [`write_round`]); returns the events delivered and
/// adds the subscribers to hand back to `handbacks`.
fn write_slice(
    round: &Round,
    slice: std::ops::Range<usize>,
    now: Instant,
    scratch: &mut Vec<u8>,
    handbacks: &mut Vec<Arc<Queue>>,
) -> u64 {
    let mut delivered = 0;
    let mut head = [0u8; 20];
    let common = chunk::slices(round.events(), &mut head);
    // The round's events for sinks that frame by themselves, gathered once for all of them.
    let mut raw: Option<Arc<[Bytes]>> = None;
    for queue in round.targets.get(slice).unwrap_or_default() {
        let Some(offer) = round.begin(queue) else {
            continue;
        };
        let count = offer.count(round);
        let written = match &offer.pending {
            // A sink that frames by itself (HTTP/2) takes the events as they are.
            _ if offer.sink.framing() == Framing::Raw => write_raw(round, &offer, &mut raw),
            Pending::All => write_now(
                &*offer.sink,
                &common,
                &|i| round.event(i.wrapping_sub(1)).cloned(),
                scratch,
            ),
            Pending::Own(own) if own.is_empty() => Written::All,
            Pending::Own(own) => {
                let mut own_head = [0u8; 20];
                let slices = chunk::slices(own.iter().copied(), &mut own_head);
                write_now(
                    &*offer.sink,
                    &slices,
                    &|i| own.get(i.wrapping_sub(1)).map(|b| (*b).clone()),
                    scratch,
                )
            }
        };
        match round.finish(queue, count, written, now) {
            Wrote::Events(n) => delivered += n,
            Wrote::Nothing => {}
            Wrote::HandBack(n) => {
                delivered += n;
                handbacks.push(queue.clone());
            }
        }
    }
    delivered
}

/// Writes `offer` to a sink that frames by itself: the whole round's events (gathered once per
/// round into `all`, shared by every such subscriber) or its own part.
fn write_raw(round: &Round, offer: &Offer<'_>, all: &mut Option<Arc<[Bytes]>>) -> Written {
    let events = match &offer.pending {
        Pending::All => all
            .get_or_insert_with(|| round.events().cloned().collect())
            .clone(),
        Pending::Own(own) => own.iter().map(|b| (*b).clone()).collect(),
    };
    write_events(&*offer.sink, &events)
}

/// One round on one channel.
async fn flush_channel(
    list: &WorkList,
    index: usize,
    channel: &Arc<Channel>,
    now: Instant,
    scratch: &mut Vec<u8>,
) -> u64 {
    let Some(mut round) = channel.start_round(index) else {
        return 0;
    };
    let (delivered, handbacks) = write_round(channel, index, &mut round, now, scratch).await;
    // A burst may have grown the buffer for TLS records: keep at most a few records' worth.
    if scratch.capacity() > MAX_SCRATCH {
        *scratch = Vec::new();
    }
    if delivered > 0 {
        list.written(round.published(), Instant::now());
    }
    channel.end_round(index, &round, handbacks);
    delivered
}

async fn run(index: usize, list: Arc<WorkList>) {
    // The last round: when it started, how long it took, and the hub's count of published events
    // when it started.
    let mut last: Option<Last> = None;
    // TLS records for one subscriber at a time (`transport/sealed.rs`); plain sockets never use it.
    let mut scratch = Vec::new();
    loop {
        if list.is_empty() {
            if list.is_closed() {
                return;
            }
            list.wait().await;
            continue;
        }
        if let Some(until) =
            last.and_then(|last| pause_until(last, list.published(), Instant::now(), list.coalesce))
        {
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = list.hurried() => {}
            }
        }
        let round = list.take();
        let published = list.published();
        let now = Instant::now();
        let mut delivered = 0;
        for (i, channel) in round.into_iter().enumerate() {
            delivered += flush_channel(&list, index, &channel, now, &mut scratch).await;
            list.after_round(&channel);
            // Many small channels: let the worker's other tasks run now and then too.
            if i % YIELD_CHANNELS == YIELD_CHANNELS - 1 {
                tokio::task::yield_now().await;
            }
        }
        list.delivered(delivered);
        let took = now.elapsed();
        list.round_took(took);
        last = Some(Last {
            start: now,
            took,
            published,
        });
    }
}

/// A flusher's last round: when it started, how long it took, and how many events the hub had
/// published when it started.
#[derive(Debug, Clone, Copy)]
struct Last {
    start: Instant,
    took: Duration,
    published: u64,
}

/// The coalescing policy: when the next round (there is work for it `now`, and the hub has
/// published `published` events so far) starts, or `None` to start it at once.
///
/// A pause is twice the last round, at most `coalesce` (the latency budget), and is taken only
/// when it buys something: at the rate events came since the last round started, at least
/// [`BEHIND_AT`] more would arrive during it and share its `writev`s. At 100 events/s and rounds
/// of a few ms, a pause would gather half an event and only add latency, so the event goes out at
/// once; under load (events arriving faster than rounds end) rounds rest and batch. Never after a
/// round shorter than [`MIN_ROUND`] (tokio's timer has 1 ms resolution), nor with coalescing off.
fn pause_until(last: Last, published: u64, now: Instant, coalesce: Duration) -> Option<Instant> {
    if last.took < MIN_ROUND || coalesce.is_zero() {
        return None;
    }
    let pause = (last.took * 2).min(coalesce);
    let arrived = u128::from(published.wrapping_sub(last.published));
    let span = now.saturating_duration_since(last.start).max(last.took);
    // arrived / span × pause ≥ BEHIND_AT, without division.
    (arrived * pause.as_nanos() >= u128::from(BEHIND_AT) * span.as_nanos())
        .then(|| last.start + last.took + pause)
}

#[cfg(test)]
mod direct_tests {
    use std::io::{self, IoSlice};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Context, Poll, Wake, Waker};

    use bytes::Bytes;

    use super::*;
    use crate::hub::channel::{Channel, Handle};
    use crate::hub::lent::Sink;
    use crate::hub::metrics::Metrics;
    use crate::hub::queue::{Frame, QueueRx, queue};
    use crate::position::Position;

    /// A socket stand-in: takes at most `accept` bytes per write (`WouldBlock` at 0), and can run
    /// something in the middle of a write, when the flusher holds no lock.
    #[derive(Default)]
    struct FakeSink {
        accept: Mutex<usize>,
        got: Mutex<Vec<u8>>,
        during: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    }

    impl Sink for FakeSink {
        fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if let Some(f) = self.during.lock().unwrap().take() {
                f();
            }
            let mut accept = self.accept.lock().unwrap();
            if *accept == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut got = self.got.lock().unwrap();
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(*accept - n);
                got.extend_from_slice(&b[..take]);
                n += take;
            }
            *accept -= n;
            Ok(n)
        }
    }

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    struct Fixture {
        ch: Arc<Channel>,
        metrics: Metrics,
        next: u64,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                ch: Arc::new(Channel::new(Arc::from("t"))),
                metrics: Metrics::default(),
                next: 0,
            }
        }

        fn publish(&mut self, data: &str) -> Bytes {
            self.next += 1;
            let bytes = Bytes::from(format!("data: {data}\n\n"));
            let position = Position::new(1, self.next);
            self.ch
                .fan_out(position, &bytes, Instant::now(), &self.metrics);
            bytes
        }

        /// One whole flusher round (flusher 0), as the flusher task writes it; returns what it
        /// delivered.
        fn round(&self) -> u64 {
            let Some(mut round) = self.ch.start_round(0) else {
                return 0;
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let (delivered, handbacks) = runtime.block_on(write_round(
                &self.ch,
                0,
                &mut round,
                Instant::now(),
                &mut Vec::new(),
            ));
            self.ch.end_round(0, &round, handbacks);
            delivered
        }
    }

    fn chunk_of(events: &[&Bytes]) -> Vec<u8> {
        let total: usize = events.iter().map(|b| b.len()).sum();
        let mut out = format!("{total:x}\r\n").into_bytes();
        for e in events {
            out.extend_from_slice(e);
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    fn queued(rx: &mut QueueRx) -> Vec<Bytes> {
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        while let Poll::Ready(Some(Frame::Event(_, b))) = rx.poll_recv(&mut cx) {
            out.push(b);
        }
        out
    }

    fn handed_back(rx: &mut QueueRx) -> bool {
        let waker = Waker::from(Arc::new(Noop));
        rx.poll_handback(&mut Context::from_waker(&waker))
            .is_ready()
    }

    fn last(start: Instant, took: Duration, published: u64) -> Last {
        Last {
            start,
            took,
            published,
        }
    }

    #[test]
    fn a_pause_is_twice_the_round_at_most_the_budget_and_never_after_a_short_round() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let budget = ms(5);
        // 100 events since a round that started 4 ms ago: plenty to batch.
        let busy = |took| pause_until(last(t, took, 0), 100, t + ms(4), budget);
        // A round shorter than the timer's resolution, or coalescing off: no pause.
        assert_eq!(busy(Duration::from_micros(900)), None);
        assert_eq!(
            pause_until(last(t, ms(3), 0), 100, t + ms(4), Duration::ZERO),
            None
        );
        // Twice the round after its end...
        assert_eq!(busy(ms(2)), Some(t + ms(2) + ms(4)));
        // ...at most the budget.
        assert_eq!(busy(ms(4)), Some(t + ms(4) + budget));
    }

    #[test]
    fn a_pause_is_taken_only_when_the_recent_rate_would_fill_it_with_two_events() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let budget = ms(5);
        // 100 events/s: a 4 ms round over 1,000 sockets, the next event 10 ms after it started.
        // A 5 ms pause would gather half an event: write at once.
        assert_eq!(
            pause_until(last(t, ms(4), 10), 11, t + ms(10), budget),
            None
        );
        // Even when that round outlasted the gap (one event arrived during it).
        assert_eq!(
            pause_until(last(t, ms(12), 10), 11, t + ms(12), budget),
            None
        );
        // 1,000 events/s: 4 arrived during a 4 ms round: a 5 ms pause gathers 5 more.
        assert_eq!(
            pause_until(last(t, ms(4), 10), 14, t + ms(4), budget),
            Some(t + ms(4) + budget)
        );
        // Just at the line: 2 events in 5 ms, a 5 ms pause.
        assert!(pause_until(last(t, ms(3), 0), 2, t + ms(5), budget).is_some());
        assert!(pause_until(last(t, ms(3), 0), 1, t + ms(5), budget).is_none());
    }

    #[test]
    fn events_published_mid_round_reach_the_targets_not_yet_written_in_that_round() {
        let mut f = Fixture::new();
        let late = 8;
        let mut subs = Vec::new();
        for _ in 0..EXTEND_EVERY + late {
            let (tx, rx) = queue(16, usize::MAX);
            let id = f.ch.add(Handle::new(tx, Arc::new(AtomicBool::new(false))));
            let sink = Arc::new(FakeSink::default());
            *sink.accept.lock().unwrap() = 1 << 20;
            assert!(f.ch.enter_direct(id, &rx, sink.clone(), 0, None));
            subs.push((rx, sink));
        }
        let a = f.publish("a");
        // `b` is published while the round writes its first target (whichever that is).
        let b = Bytes::from("data: b\n\n");
        let fired = Arc::new(AtomicBool::new(false));
        for (_, sink) in &subs {
            let (ch, b, fired) = (f.ch.clone(), b.clone(), fired.clone());
            *sink.during.lock().unwrap() = Some(Box::new(move || {
                if !fired.swap(true, Ordering::SeqCst) {
                    ch.fan_out(Position::new(1, 2), &b, Instant::now(), &Metrics::default());
                }
            }));
        }
        f.next = 2;

        // Round 1: the first slice is written `a` alone; the targets after it get `a` and `b`
        // in one chunk, not a round later.
        assert_eq!(f.round(), (EXTEND_EVERY + 2 * late) as u64);
        assert!(fired.load(Ordering::SeqCst));
        let (only_a, both) = (chunk_of(&[&a]), chunk_of(&[&a, &b]));
        let got = |subs: &[(QueueRx, Arc<FakeSink>)], want: &[u8]| {
            subs.iter()
                .filter(|(_, s)| *s.got.lock().unwrap() == want)
                .count()
        };
        assert_eq!(got(&subs, &only_a), EXTEND_EVERY);
        assert_eq!(got(&subs, &both), late);

        // The next round starts where the first slice stopped; `b`'s publish-to-write time was
        // recorded by the round that wrote it first, and is not recorded twice.
        let peek = f.ch.start_round(0).unwrap();
        assert_eq!(peek.events().collect::<Vec<_>>(), vec![&b]);
        assert!(peek.published().is_empty());
        drop(peek);

        // Round 2: the first slice gets `b`; nobody gets anything twice or loses anything.
        assert_eq!(f.round(), EXTEND_EVERY as u64);
        let a_then_b = [only_a, chunk_of(&[&b])].concat();
        assert_eq!(got(&subs, &a_then_b), EXTEND_EVERY);
        assert_eq!(got(&subs, &both), late);
        for (rx, _) in &mut subs {
            assert!(queued(rx).is_empty());
            assert!(!handed_back(rx));
        }
        assert_eq!(f.round(), 0, "nothing is left to write");
    }

    #[test]
    fn a_partial_write_hands_back_the_rest_of_the_chunk_then_the_queue_takes_over() {
        let mut f = Fixture::new();
        let (tx, mut rx) = queue(16, usize::MAX);
        let id = f.ch.add(Handle::new(tx, Arc::new(AtomicBool::new(false))));
        let sink = Arc::new(FakeSink::default());
        *sink.accept.lock().unwrap() = 1 << 20;
        assert!(f.ch.enter_direct(id, &rx, sink.clone(), 0, None));

        let (a, b, c) = (f.publish("a"), f.publish("b"), f.publish("c"));
        assert_eq!(f.round(), 3);
        assert_eq!(*sink.got.lock().unwrap(), chunk_of(&[&a, &b, &c]));
        assert!(!handed_back(&mut rx), "a whole write keeps the socket lent");

        // The socket takes 5 bytes of the next chunk: the rest goes back to the task, as is.
        sink.got.lock().unwrap().clear();
        *sink.accept.lock().unwrap() = 5;
        let (d, e) = (f.publish("d"), f.publish("e"));
        assert_eq!(f.round(), 2);
        assert!(handed_back(&mut rx));
        let raw = rx.leave_direct().raw;
        assert!(!raw.is_empty(), "the unwritten rest of the chunk");
        let mut wire = sink.got.lock().unwrap().clone();
        for piece in &raw {
            wire.extend_from_slice(piece);
        }
        // The rest shares the events' memory (no copy): the rest of `d`, then `e` itself.
        assert_eq!(raw[0].as_ptr(), d[1..].as_ptr(), "a slice of d, not a copy");
        assert_eq!(raw[1].as_ptr(), e.as_ptr(), "e itself, not a copy");
        assert_eq!(wire, chunk_of(&[&d, &e]));
        assert!(queued(&mut rx).is_empty(), "nothing is sent twice");

        // From now on events go to the queue, and a round has nobody to write.
        let g = f.publish("g");
        assert_eq!(f.round(), 0);
        assert_eq!(queued(&mut rx), vec![g]);
    }

    #[test]
    fn nothing_written_puts_the_events_back_in_the_queue_in_order() {
        let mut f = Fixture::new();
        let (tx, mut rx) = queue(16, usize::MAX);
        let id = f.ch.add(Handle::new(tx, Arc::new(AtomicBool::new(false))));
        let sink = Arc::new(FakeSink::default()); // accepts nothing: WouldBlock
        assert!(f.ch.enter_direct(id, &rx, sink, 0, None));
        let (a, b) = (f.publish("a"), f.publish("b"));
        assert_eq!(f.round(), 0);
        assert!(handed_back(&mut rx));
        assert!(rx.leave_direct().raw.is_empty());
        let c = f.publish("c");
        assert_eq!(queued(&mut rx), vec![a, b, c]);
    }

    #[test]
    fn taking_the_socket_back_during_a_write_loses_and_repeats_nothing() {
        let mut f = Fixture::new();
        let (tx, mut rx) = queue(16, usize::MAX);
        let id = f.ch.add(Handle::new(tx, Arc::new(AtomicBool::new(false))));
        let rx_shared = Arc::new(Mutex::new(None::<QueueRx>));
        let sink = Arc::new(FakeSink::default());
        *sink.accept.lock().unwrap() = 1 << 20;
        assert!(f.ch.enter_direct(id, &rx, sink.clone(), 0, None));
        // A second direct subscriber keeps the log growing after the first one leaves it.
        let (tx2, rx2) = queue(16, usize::MAX);
        let id2 = f.ch.add(Handle::new(tx2, Arc::new(AtomicBool::new(false))));
        let sink2 = Arc::new(FakeSink::default());
        *sink2.accept.lock().unwrap() = 1 << 20;
        assert!(f.ch.enter_direct(id2, &rx2, sink2.clone(), 0, None));
        let a = f.publish("a");

        // While the flusher writes `a` (no lock held): one more event reaches the log, the task asks
        // for its socket, then another event is published.
        let ch = f.ch.clone();
        let (mid, after) = (
            Bytes::from_static(b"data: mid\n\n"),
            Bytes::from_static(b"data: after\n\n"),
        );
        let (mid2, after2) = (mid.clone(), after.clone());
        let rx_for_leave = std::mem::replace(&mut rx, queue(1, usize::MAX).1);
        *rx_shared.lock().unwrap() = Some(rx_for_leave);
        let rx_shared2 = rx_shared.clone();
        *sink.during.lock().unwrap() = Some(Box::new(move || {
            let metrics = Metrics::default();
            ch.fan_out(Position::new(1, 100), &mid2, Instant::now(), &metrics);
            let guard = rx_shared2.lock().unwrap();
            ch.leave_direct(id, guard.as_ref().unwrap());
            drop(guard);
            ch.fan_out(Position::new(1, 101), &after2, Instant::now(), &metrics);
        }));
        assert_eq!(f.round(), 2, "`a` to both");
        assert_eq!(*sink.got.lock().unwrap(), chunk_of(&[&a]));
        let mut rx = rx_shared.lock().unwrap().take().unwrap();
        assert!(handed_back(&mut rx), "handed back when the write ended");
        assert!(rx.leave_direct().raw.is_empty());
        assert_eq!(
            queued(&mut rx),
            vec![mid.clone(), after.clone()],
            "in order, once each"
        );
        // The other subscriber stays direct and gets everything from the log.
        f.round();
        let mut want = chunk_of(&[&a]);
        want.extend(chunk_of(&[&mid, &after]));
        assert_eq!(*sink2.got.lock().unwrap(), want);
        assert!(!handed_back(&mut { rx2 }));
        f.ch.remove(id2);
        // The flusher's count went back to zero: no round to run, and the log is empty.
        assert!(f.ch.start_round(0).is_none());
        assert!(f.ch.log_is_empty());
    }

    #[test]
    fn a_flusher_a_queue_behind_disconnects_the_subscribers_it_did_not_write() {
        let mut f = Fixture::new();
        let (tx, rx) = queue(4, usize::MAX);
        let kicked = Arc::new(AtomicBool::new(false));
        let id = f.ch.add(Handle::new(tx, kicked.clone()));
        assert!(f.ch.enter_direct(id, &rx, Arc::new(FakeSink::default()), 0, None));
        for i in 0..4 {
            f.publish(&i.to_string());
        }
        assert!(
            !kicked.load(Ordering::Acquire),
            "four events fit a queue of four"
        );
        f.publish("one too many");
        assert!(kicked.load(Ordering::Acquire));
        assert_eq!(f.ch.len(), 0);
        assert_eq!(f.metrics.dropped_subscribers(), 1);
        assert!(f.ch.log_is_empty(), "the log is freed with them");
    }

    #[test]
    fn a_subscriber_owed_more_bytes_than_its_budget_is_disconnected() {
        // Direct: the socket takes nothing, so the log grows for it; 9-byte events, 30-byte budget.
        let mut f = Fixture::new();
        let (tx, rx) = queue(100, 30);
        let kicked = Arc::new(AtomicBool::new(false));
        let id = f.ch.add(Handle::new(tx, kicked.clone()));
        assert!(f.ch.enter_direct(id, &rx, Arc::new(FakeSink::default()), 0, None));
        for i in 0..3 {
            f.publish(&i.to_string());
        }
        assert!(
            !kicked.load(Ordering::Acquire),
            "27 bytes fit a 30-byte budget"
        );
        f.publish("3");
        assert!(kicked.load(Ordering::Acquire), "36 bytes do not");
        assert_eq!(f.metrics.dropped_subscribers(), 1);

        // Queued: the same budget bounds the queue.
        let (tx, _rx) = queue(100, 30);
        for i in 0..3 {
            tx.try_send(Frame::Event(
                Position::new(1, i),
                Bytes::from_static(b"data: x\n\n"),
            ))
            .unwrap();
        }
        assert!(
            tx.try_send(Frame::Event(
                Position::new(1, 9),
                Bytes::from_static(b"data: x\n\n")
            ))
            .is_err()
        );
    }
}
