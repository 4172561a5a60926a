//! The reconnect state machine on simulated time: no socket, no sleep, no runtime. Each test plays a
//! server's answers into `proto::Connection` and moves a clock by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime};

use sse_client::proto::{Action, Config, Connection};
use sse_client::reqwest::StatusCode;
use sse_client::reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use sse_client::{Backoff, Error, Event, Message, ReadyState, RetryPolicy};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// No jitter, 10 ms reconnection time, a fixed seed.
fn config() -> Config {
    Config::new()
        .reconnection_time(ms(10))
        .retry_policy(RetryPolicy::new().backoff(Backoff::new().jitter(0.0)))
        .rng_seed(1)
}

fn headers(pairs: &[(HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.insert(name.clone(), HeaderValue::from_str(value).unwrap());
    }
    h
}

fn event_stream() -> HeaderMap {
    headers(&[(CONTENT_TYPE, "text/event-stream")])
}

/// The wall clock a `Retry-After` date is read against; any fixed point will do.
fn wall() -> SystemTime {
    SystemTime::UNIX_EPOCH + secs(1_700_000_000)
}

/// Takes the next action, which must be `Connect`, and returns the id it carries.
fn expect_connect(conn: &mut Connection, now: Instant) -> String {
    match conn.poll(now) {
        Some(Action::Connect { last_event_id }) => last_event_id,
        other => panic!("expected Connect, got {other:?}"),
    }
}

fn expect_message(conn: &mut Connection, now: Instant) -> Message {
    match conn.poll(now) {
        Some(Action::Deliver(Event::Message(m))) => m,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn expect_error(conn: &mut Connection, now: Instant) -> Error {
    match conn.poll(now) {
        Some(Action::Error(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Connect, answer 200 + text/event-stream at `now`, and take the `Open` event; returns the id sent.
fn open(conn: &mut Connection, now: Instant) -> String {
    let id = expect_connect(conn, now);
    conn.response(now, StatusCode::OK, &event_stream(), wall());
    assert!(matches!(conn.poll(now), Some(Action::Deliver(Event::Open))));
    assert_eq!(conn.ready_state(), ReadyState::Open);
    id
}

/// After an error that schedules a reconnection: nothing happens before the deadline, `Connect` at it.
/// Returns the deadline.
fn wait_for_reconnect(conn: &mut Connection, from: Instant, delay: Duration) -> Instant {
    assert!(conn.poll(from).is_none(), "nothing to do while waiting");
    let at = conn.poll_timeout().expect("a reconnect deadline");
    assert_eq!(at, from + delay);
    if delay > Duration::ZERO {
        let early = at - Duration::from_nanos(1);
        conn.handle_timeout(early);
        assert!(
            conn.poll(early).is_none(),
            "no reconnection before the wait is over"
        );
    }
    conn.handle_timeout(at);
    at
}

/// Opens a connection at `now` that delivers nothing and ends: one failed attempt. Returns its delay.
fn failed_attempt(conn: &mut Connection, now: Instant) -> Duration {
    open(conn, now);
    conn.eof(now);
    expect_error(conn, now).retry_delay().expect("retried")
}

#[test]
fn reconnect_after_eof_waits_the_reconnection_time() {
    let t0 = Instant::now();
    let mut conn = Connection::new(config().reconnection_time(secs(3)));
    open(&mut conn, t0);
    conn.bytes(t0, b"data: a\n\n");
    assert_eq!(expect_message(&mut conn, t0).data, "a");

    let t1 = t0 + secs(1);
    conn.eof(t1);
    let err = expect_error(&mut conn, t1);
    assert!(matches!(err, Error::StreamEnded { .. }), "{err}");
    assert_eq!(err.retry_delay(), Some(secs(3)));
    assert_eq!(conn.ready_state(), ReadyState::Connecting);

    let at = wait_for_reconnect(&mut conn, t1, secs(3));
    expect_connect(&mut conn, at);
}

#[test]
fn retry_field_changes_the_reconnection_time() {
    let t0 = Instant::now();
    let mut conn = Connection::new(config().reconnection_time(secs(3)));
    open(&mut conn, t0);
    conn.bytes(t0, b"retry: 50\ndata: x\n\n");
    expect_message(&mut conn, t0);
    assert_eq!(conn.reconnection_time(), ms(50));
    conn.eof(t0);
    assert_eq!(expect_error(&mut conn, t0).retry_delay(), Some(ms(50)));
    wait_for_reconnect(&mut conn, t0, ms(50));
}

#[test]
fn a_retry_field_alone_does_not_count_as_delivering() {
    // A server that only says `retry: 0` and hangs up must still be backed off.
    let t0 = Instant::now();
    let mut conn = Connection::new(config());
    let mut delays = Vec::new();
    let mut now = t0;
    for _ in 0..3 {
        open(&mut conn, now);
        conn.bytes(now, b"retry: 0\n\n");
        conn.eof(now);
        let delay = expect_error(&mut conn, now).retry_delay().unwrap();
        delays.push(delay);
        now = wait_for_reconnect(&mut conn, now, delay);
    }
    assert_eq!(delays, [ms(0), ms(2), ms(4)]);
}

#[test]
fn backoff_grows_is_capped_and_resets_after_a_delivering_connection() {
    let policy =
        RetryPolicy::new().backoff(Backoff::new().factor(2.0).max_delay(ms(40)).jitter(0.0));
    let mut conn = Connection::new(config().retry_policy(policy));
    let mut now = Instant::now();
    let mut delays = Vec::new();
    for _ in 0..5 {
        let delay = failed_attempt(&mut conn, now);
        delays.push(delay);
        now = wait_for_reconnect(&mut conn, now, delay);
    }
    assert_eq!(delays, [ms(10), ms(20), ms(40), ms(40), ms(40)]);

    open(&mut conn, now);
    conn.bytes(now, b"data: x\n\n");
    expect_message(&mut conn, now);
    conn.eof(now);
    let delay = expect_error(&mut conn, now).retry_delay().unwrap();
    assert_eq!(
        delay,
        ms(10),
        "a delivering connection waits the plain time"
    );
    now = wait_for_reconnect(&mut conn, now, delay);
    let mut reset = Vec::new();
    for _ in 0..2 {
        let delay = failed_attempt(&mut conn, now);
        reset.push(delay);
        now = wait_for_reconnect(&mut conn, now, delay);
    }
    assert_eq!(
        reset,
        [ms(10), ms(20)],
        "the backoff starts again from the beginning"
    );
}

#[test]
fn jittered_backoff_stays_between_half_and_nominal_and_repeats_with_the_seed() {
    let policy = RetryPolicy::new().backoff(Backoff::new().max_delay(ms(800)).jitter(0.5));
    let run = |seed: u64| {
        let mut conn = Connection::new(config().retry_policy(policy).rng_seed(seed));
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..8 {
            let delay = failed_attempt(&mut conn, now);
            delays.push(delay);
            now = wait_for_reconnect(&mut conn, now, delay);
        }
        delays
    };
    let delays = run(7);
    for (n, d) in (1u32..).zip(&delays) {
        let nominal = ms(10 * 2u64.pow(n - 1)).min(ms(800));
        assert!(*d <= nominal, "attempt {n}: {d:?} > {nominal:?}");
        assert!(
            *d >= (nominal / 2).max(ms(10)),
            "attempt {n}: {d:?} too small"
        );
    }
    assert_eq!(
        delays.iter().max(),
        delays.last(),
        "the last one is at the cap"
    );
    assert!(
        delays[7] >= ms(400),
        "capped at 800 ms, then jittered by at most half"
    );
    assert_eq!(run(7), delays, "the same seed gives the same delays");
    assert_ne!(run(8), delays, "another seed gives other delays");
    let nominal: Vec<_> = (0..8u32)
        .map(|n| ms(10 * 2u64.pow(n)).min(ms(800)))
        .collect();
    assert_ne!(delays, nominal, "jitter moved some delays");
}

#[test]
fn last_event_id_is_committed_only_at_dispatched_events() {
    let t0 = Instant::now();
    let mut conn = Connection::new(config());
    assert_eq!(open(&mut conn, t0), "", "no id yet");
    conn.bytes(t0, b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n");
    assert_eq!(expect_message(&mut conn, t0).last_event_id, "1");
    assert_eq!(expect_message(&mut conn, t0).last_event_id, "2");
    // The id of an event that never completes does not count, and the event dies with the stream.
    conn.bytes(t0, b"id: 3\ndata: unfinished\n");
    assert!(conn.poll(t0).is_none());
    assert_eq!(conn.last_event_id(), "2");
    conn.eof(t0);
    let delay = expect_error(&mut conn, t0).retry_delay().unwrap();
    let at = wait_for_reconnect(&mut conn, t0, delay);
    assert_eq!(
        open(&mut conn, at),
        "2",
        "Last-Event-ID is the committed id"
    );
    conn.bytes(at, b"data: c\n\n");
    let m = expect_message(&mut conn, at);
    assert_eq!((m.data.as_str(), m.last_event_id.as_str()), ("c", "2"));
}

#[test]
fn an_id_only_block_commits_and_an_empty_id_clears() {
    let t0 = Instant::now();
    let mut conn = Connection::new(config().last_event_id("41"));
    assert_eq!(open(&mut conn, t0), "41", "the configured id is sent first");
    conn.bytes(t0, b"id: 9\n\n");
    assert!(conn.poll(t0).is_none(), "an id-only block fires no event");
    conn.eof(t0);
    let delay = expect_error(&mut conn, t0).retry_delay().unwrap();
    assert_eq!(delay, ms(10), "a committed id counts as delivering");
    let at = wait_for_reconnect(&mut conn, t0, delay);
    assert_eq!(open(&mut conn, at), "9");
    conn.bytes(at, b"id\n\n");
    conn.eof(at);
    let delay = expect_error(&mut conn, at).retry_delay().unwrap();
    let at = wait_for_reconnect(&mut conn, at, delay);
    assert_eq!(expect_connect(&mut conn, at), "");
}

#[test]
fn events_completed_before_the_end_come_out_before_the_error() {
    let t0 = Instant::now();
    let mut conn = Connection::new(config());
    open(&mut conn, t0);
    // The driver feeds everything before polling.
    conn.bytes(t0, b"id: 5\ndata: a\n\ndata: b\n\n");
    conn.eof(t0);
    assert_eq!(expect_message(&mut conn, t0).data, "a");
    assert_eq!(expect_message(&mut conn, t0).data, "b");
    let err = expect_error(&mut conn, t0);
    assert_eq!(err.retry_delay(), Some(ms(10)), "it delivered: no backoff");
    assert_eq!(conn.last_event_id(), "5");
}

#[test]
fn no_content_stops_for_good() {
    let t0 = Instant::now();
    let mut conn = Connection::new(config());
    expect_connect(&mut conn, t0);
    conn.response(t0, StatusCode::NO_CONTENT, &HeaderMap::new(), wall());
    let err = expect_error(&mut conn, t0);
    assert!(err.is_no_content() && err.is_fatal(), "{err}");
    assert_eq!(conn.ready_state(), ReadyState::Closed);
    assert!(conn.poll(t0).is_none());
    assert_eq!(conn.poll_timeout(), None);
    conn.handle_timeout(t0 + secs(3600));
    assert!(conn.poll(t0 + secs(3600)).is_none(), "never reconnects");
}

#[test]
fn wrong_or_missing_content_type_is_fatal() {
    for headers in [headers(&[(CONTENT_TYPE, "text/html")]), HeaderMap::new()] {
        let t0 = Instant::now();
        let mut conn = Connection::new(config());
        expect_connect(&mut conn, t0);
        conn.response(t0, StatusCode::OK, &headers, wall());
        let err = expect_error(&mut conn, t0);
        assert!(
            matches!(&err, Error::InvalidContentType { .. }) && err.is_fatal(),
            "{err}"
        );
        assert_eq!(conn.ready_state(), ReadyState::Closed);
        assert_eq!(conn.poll_timeout(), None);
        assert!(conn.poll(t0).is_none());
    }
}

#[test]
fn content_type_parameters_are_accepted() {
    let t0 = Instant::now();
    let mut conn = Connection::new(config());
    expect_connect(&mut conn, t0);
    let h = headers(&[(CONTENT_TYPE, "Text/Event-Stream; charset=utf-8")]);
    conn.response(t0, StatusCode::OK, &h, wall());
    assert!(matches!(conn.poll(t0), Some(Action::Deliver(Event::Open))));
}

#[test]
fn idle_timeout_fires_after_silence_and_reconnects() {
    let t0 = Instant::now();
    let mut conn = Connection::new(config().idle_timeout(Some(secs(30))));
    open(&mut conn, t0);
    assert_eq!(conn.poll_timeout(), Some(t0 + secs(30)));
    conn.bytes(t0 + secs(10), b"id: 4\ndata: x\n\n");
    expect_message(&mut conn, t0 + secs(10));
    // Bytes restart the countdown.
    assert_eq!(conn.poll_timeout(), Some(t0 + secs(40)));
    conn.handle_timeout(t0 + secs(39));
    assert!(conn.poll(t0 + secs(39)).is_none());
    assert_eq!(conn.ready_state(), ReadyState::Open);

    let dead = t0 + secs(40);
    conn.handle_timeout(dead);
    let err = expect_error(&mut conn, dead);
    assert!(
        matches!(err, Error::IdleTimeout { timeout, .. } if timeout == secs(30)),
        "{err}"
    );
    assert_eq!(err.retry_delay(), Some(ms(10)));
    let at = wait_for_reconnect(&mut conn, dead, ms(10));
    assert_eq!(expect_connect(&mut conn, at), "4");
    assert_eq!(
        conn.poll_timeout(),
        Some(at + secs(30)),
        "the new request is watched too"
    );
}

#[test]
fn heartbeats_keep_a_connection_alive() {
    let t0 = Instant::now();
    let mut conn = Connection::new(config().idle_timeout(Some(ms(500))));
    open(&mut conn, t0);
    let mut now = t0;
    for _ in 0..15 {
        now += ms(300);
        conn.handle_timeout(now);
        conn.bytes(now, b":\n");
        assert!(conn.poll(now).is_none());
    }
    assert_eq!(conn.ready_state(), ReadyState::Open, "4.5 s of heartbeats");
}

#[test]
fn idle_timeout_covers_a_server_that_never_answers() {
    let t0 = Instant::now();
    let mut conn = Connection::new(config().idle_timeout(Some(secs(5))));
    expect_connect(&mut conn, t0);
    assert_eq!(conn.poll_timeout(), Some(t0 + secs(5)));
    conn.handle_timeout(t0 + secs(5));
    let err = expect_error(&mut conn, t0 + secs(5));
    assert!(
        matches!(err, Error::IdleTimeout { .. }) && err.will_retry(),
        "{err}"
    );
    // A response to the abandoned request is ignored.
    conn.response(t0 + secs(5), StatusCode::OK, &event_stream(), wall());
    assert!(conn.poll(t0 + secs(5)).is_none());
    wait_for_reconnect(&mut conn, t0 + secs(5), ms(10));
}

#[test]
fn server_errors_are_fatal_unless_the_policy_retries_them() {
    for status in [500, 503, 429] {
        let status = StatusCode::from_u16(status).unwrap();
        let t0 = Instant::now();
        let mut conn = Connection::new(config());
        expect_connect(&mut conn, t0);
        conn.response(t0, status, &HeaderMap::new(), wall());
        let err = expect_error(&mut conn, t0);
        assert!(err.is_fatal() && err.status() == Some(status), "{err}");

        let policy = RetryPolicy::new()
            .retry_server_errors(true)
            .backoff(Backoff::new().jitter(0.0));
        let mut conn = Connection::new(config().retry_policy(policy));
        expect_connect(&mut conn, t0);
        conn.response(t0, status, &HeaderMap::new(), wall());
        let err = expect_error(&mut conn, t0);
        assert_eq!(err.retry_delay(), Some(ms(10)), "{err}");
        wait_for_reconnect(&mut conn, t0, ms(10));
    }
}

#[test]
fn a_retried_status_waits_what_retry_after_asks() {
    let policy = RetryPolicy::new()
        .retry_server_errors(true)
        .backoff(Backoff::new().jitter(0.0));
    let t0 = Instant::now();
    let mut conn = Connection::new(config().retry_policy(policy));

    expect_connect(&mut conn, t0);
    let h = headers(&[(RETRY_AFTER, "7")]);
    conn.response(t0, StatusCode::SERVICE_UNAVAILABLE, &h, wall());
    assert_eq!(expect_error(&mut conn, t0).retry_delay(), Some(secs(7)));
    let at = wait_for_reconnect(&mut conn, t0, secs(7));

    // An HTTP date is read against the wall clock given with the response.
    expect_connect(&mut conn, at);
    let date = httpdate::fmt_http_date(wall() + secs(20));
    let h = headers(&[(RETRY_AFTER, date.as_str())]);
    conn.response(at, StatusCode::TOO_MANY_REQUESTS, &h, wall());
    assert_eq!(expect_error(&mut conn, at).retry_delay(), Some(secs(20)));
    let at = wait_for_reconnect(&mut conn, at, secs(20));

    // A shorter Retry-After does not undercut the backoff (third failure: 40 ms).
    expect_connect(&mut conn, at);
    let h = headers(&[(RETRY_AFTER, "0")]);
    conn.response(at, StatusCode::BAD_GATEWAY, &h, wall());
    assert_eq!(expect_error(&mut conn, at).retry_delay(), Some(ms(40)));

    // A client error stays fatal even with the opt-in.
    let mut conn = Connection::new(config().retry_policy(policy));
    expect_connect(&mut conn, t0);
    conn.response(t0, StatusCode::NOT_FOUND, &HeaderMap::new(), wall());
    assert!(expect_error(&mut conn, t0).is_fatal());
}

#[test]
fn gives_up_after_max_retries() {
    let policy = RetryPolicy::new()
        .max_retries(Some(2))
        .backoff(Backoff::new().jitter(0.0));
    let t0 = Instant::now();
    let mut conn = Connection::new(config().retry_policy(policy));
    let mut now = t0;
    for _ in 0..2 {
        expect_connect(&mut conn, now);
        conn.failed(
            now,
            Error::Credentials {
                source: "token service down".into(),
                retry_in: None,
            },
        );
        let err = expect_error(&mut conn, now);
        assert!(
            matches!(err, Error::Credentials { .. }) && err.will_retry(),
            "{err}"
        );
        let delay = err.retry_delay().unwrap();
        now = wait_for_reconnect(&mut conn, now, delay);
    }
    expect_connect(&mut conn, now);
    conn.failed(
        now,
        Error::Credentials {
            source: "still down".into(),
            retry_in: None,
        },
    );
    let last = expect_error(&mut conn, now);
    assert!(last.is_fatal(), "{last}");
    assert_eq!(conn.ready_state(), ReadyState::Closed);
    assert_eq!(conn.poll_timeout(), None);
}

#[test]
fn a_parse_error_keeps_the_stream_open() {
    let t0 = Instant::now();
    let limits = sse_client::sse_proto::Limits::default();
    let mut conn = Connection::new(config().limits(limits));
    open(&mut conn, t0);
    let long = format!(
        "data: {}\n\ndata: ok\n\n",
        "x".repeat(limits.max_line_length + 1)
    );
    conn.bytes(t0, long.as_bytes());
    assert!(matches!(expect_error(&mut conn, t0), Error::Parse(_)));
    assert_eq!(expect_message(&mut conn, t0).data, "ok");
    assert_eq!(conn.ready_state(), ReadyState::Open);
}

#[test]
fn close_stops_everything() {
    let t0 = Instant::now();
    let mut conn = Connection::new(config().idle_timeout(Some(secs(1))));
    open(&mut conn, t0);
    conn.bytes(t0, b"data: pending\n\n");
    conn.close();
    assert_eq!(conn.ready_state(), ReadyState::Closed);
    assert_eq!(conn.poll_timeout(), None);
    assert!(conn.poll(t0).is_none(), "nothing comes out after close");
    conn.handle_timeout(t0 + secs(10));
    assert!(conn.poll(t0 + secs(10)).is_none());
}

#[test]
fn inputs_out_of_turn_are_ignored() {
    let t0 = Instant::now();
    let mut conn = Connection::new(config());
    // Nothing was asked for yet.
    conn.bytes(t0, b"data: stray\n\n");
    conn.eof(t0);
    conn.response(t0, StatusCode::OK, &event_stream(), wall());
    assert_eq!(expect_connect(&mut conn, t0), "");
    assert!(conn.poll(t0).is_none());
    assert_eq!(conn.ready_state(), ReadyState::Connecting);
}
