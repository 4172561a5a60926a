//! The durable store itself: retention is enforced in the file (read back with redb directly), the file
//! stays bounded under a steady load, and ids stay known and increasing across reopenings.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::path::Path;
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
use sse_proto::Event;
use sse_server::{CommitMode, DurableStore, Position, ReplayStore, ResetReason, Retention};

/// The events table as the store lays it out (see `replay/durable/format.rs`).
const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("sse_events");

/// Rows in the file, read by a separate redb handle (the store must be closed).
fn rows_on_disk(dir: &Path) -> u64 {
    let db = redb::Database::open(dir.join(sse_server::STORE_FILE)).unwrap();
    let read = db.begin_read().unwrap();
    read.open_table(EVENTS).unwrap().len().unwrap()
}

fn open(dir: &Path, retention: Retention) -> DurableStore {
    DurableStore::builder(dir)
        .retention(retention)
        .open()
        .unwrap()
}

#[tokio::test]
async fn count_bytes_and_age_bounds_delete_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Retention::default().max_events(10));
    for i in 0..50 {
        store
            .append(&format!("c{}", i % 2), Event::message(i.to_string()))
            .await
            .unwrap();
    }
    store.close();
    assert_eq!(
        rows_on_disk(dir.path()),
        20,
        "count bound not applied on disk"
    );

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Retention::default().max_bytes(1000));
    for _ in 0..50 {
        store
            .append("c", Event::message("x".repeat(90)))
            .await
            .unwrap();
    }
    store.close();
    // Each event encodes to about 120 bytes (id line included): 8 fit in 1000.
    let rows = rows_on_disk(dir.path());
    assert!(
        (7..=9).contains(&rows),
        "byte bound not applied on disk: {rows} rows"
    );

    let dir = tempfile::tempdir().unwrap();
    let store = open(
        dir.path(),
        Retention::default().max_age(Duration::from_millis(300)),
    );
    for _ in 0..5 {
        store.append("old", Event::message("o")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Any later activity sweeps expired windows; a new event in the same channel certainly does.
    store.append("old", Event::message("n")).await.unwrap();
    store.close();
    assert_eq!(rows_on_disk(dir.path()), 1, "age bound not applied on disk");
}

#[tokio::test]
async fn reopening_keeps_epoch_ids_and_window() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Retention::default());
    let a = store.append("c", Event::message("a")).await.unwrap();
    let mine = store
        .append("c", Event::builder().id("mine").data("b").build().unwrap())
        .await
        .unwrap();
    let minted = store.mint_id().await.unwrap();
    let c = store.append("c", Event::message("c")).await.unwrap();
    let epoch = store.epoch();
    store.close();

    let store = open(dir.path(), Retention::default());
    assert_eq!(store.epoch(), epoch);
    let d = store.append("c", Event::message("d")).await.unwrap();
    assert!(d.position > c.position);
    assert!(d.position > minted.parse::<Position>().unwrap());
    let r = store.replay("c", &a.id).await.unwrap();
    assert!(r.reset.is_none());
    let ids: Vec<_> = r.events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(
        ids,
        vec!["mine".to_string(), c.id.to_string(), d.id.to_string()]
    );
    assert_eq!(r.events[0].bytes, mine.bytes, "stored encoding changed");
    // A custom id stays resumable after the restart; the start of the store too.
    assert_eq!(store.replay("c", "mine").await.unwrap().events.len(), 2);
    let from_start = store.replay("c", &format!("{epoch}-0")).await.unwrap();
    assert!(from_start.reset.is_none());
    assert_eq!(from_start.events.len(), 4);
    // An id this store never issued is unknown.
    let future = store.replay("c", &format!("{epoch}-999")).await.unwrap();
    assert_eq!(future.reset.map(|r| r.reason), Some(ResetReason::Unknown));
    let listed = store.channels().await.unwrap();
    assert_eq!(listed[0].last_id.as_deref(), Some(&*d.id));
}

#[tokio::test]
async fn file_stays_bounded_under_a_steady_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = DurableStore::builder(dir.path())
        .retention(Retention::default().max_events(50))
        .commit_mode(CommitMode::Group {
            max_delay: Duration::ZERO,
        })
        .open()
        .unwrap();
    let payload = "p".repeat(1000);
    let size = || std::fs::metadata(store.path()).unwrap().len();
    let mut written = 0u64;
    let mut after_warmup = 0;
    // Four channels publishing concurrently, so the writer's batches carry several channels.
    for round in 0..750 {
        let appends = (0..4)
            .map(|ch| store.append(["a", "b", "c", "d"][ch], Event::message(payload.clone())));
        for stored in futures::future::join_all(appends).await {
            written += stored.unwrap().bytes.len() as u64;
        }
        if round == 150 {
            after_warmup = size();
        }
    }
    let end = size();
    // 3 MB went through a window of 4 × 50 events (~200 KB): freed pages must be reused.
    assert!(written > 3_000_000);
    assert!(
        end <= after_warmup.max(512 * 1024) * 2,
        "file grew from {after_warmup} to {end} bytes while the window stayed the same"
    );
    assert!(
        end < written / 3,
        "file ({end} bytes) tracks what was written ({written})"
    );
    store.close();
    assert_eq!(rows_on_disk(dir.path()), 200);
}

#[tokio::test]
async fn bit_rot_in_a_cleanly_closed_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), Retention::default());
    for i in 0..20 {
        store
            .append(
                "c",
                Event::message(format!("payload-{i}-{}", "q".repeat(300))),
            )
            .await
            .unwrap();
    }
    store.close();
    let path = dir.path().join(sse_server::STORE_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    // Flip a few bytes inside a stored event, where the record would still decode.
    let at = bytes.windows(8).position(|w| w == b"qqqqqqqq").unwrap() + 100;
    for b in &mut bytes[at..at + 4] {
        *b ^= 0x01;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = DurableStore::builder(dir.path())
        .open()
        .unwrap_err()
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("--reset-data-dir"), "{err}");
}
