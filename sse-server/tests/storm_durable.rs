//! A durable store's replay during a reconnect storm (issue 15: `storm-durable`, a storm after a
//! restart with `--data-dir`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: panics report

use futures_util::FutureExt;

/// A durable store's replay (`storm-durable`: a storm after a restart with `--data-dir`) reads its
/// window at once when no commit holds it, instead of in a blocking task per subscriber: the up to
/// 512 threads those started (a stack and a malloc arena each) were what such a storm kept beyond
/// the idle figure (5.8-6.7 KiB/sub settled against 3.9).
#[tokio::test(flavor = "current_thread")]
async fn a_durable_replay_reads_at_once_when_no_commit_holds_the_window() {
    use sse_server::ReplayStore;
    let dir = tempfile::tempdir().unwrap();
    let store = sse_server::DurableStore::builder(dir.path())
        .open()
        .unwrap();
    let first = store
        .append("news", sse_proto::Event::message("a"))
        .await
        .unwrap();
    store
        .append("news", sse_proto::Event::message("b"))
        .await
        .unwrap();
    // The writer released the window before acknowledging the appends: nothing holds it now, so
    // every replay is read at once. An answer from a blocking thread comes back through the
    // runtime: (nearly) never on the first poll.
    for attempt in 1..=10 {
        let replay = store
            .replay("news", &first.id)
            .now_or_never()
            .unwrap_or_else(|| panic!("replay {attempt} waited for a blocking thread"));
        assert_eq!(replay.unwrap().events.len(), 1);
    }
}
