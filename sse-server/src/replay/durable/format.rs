//! The on-disk layout (three redb tables) and the two things done with it: load it into memory and
//! commit a list of [`Op`]s in one transaction.
//!
//! * `meta`: `&str -> u64`: the format version, the epoch (fixed when the file is created, so ids stay
//!   comparable and known across restarts), the last position issued, and `dropped_through`.
//! * `events`: `(channel, minor) -> record`; a record is `at_ms: u64 LE | custom: u8 | id_len: u32 LE | id |
//!   encoded event`. Keys sort by channel then position, so a channel's window is one key range.
//! * `floors`: `channel -> minor`: every event of the channel after it is retained.

use std::sync::Arc;

use bytes::Bytes;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};

use super::ops::{COUNTER, DROPPED_THROUGH, EPOCH, FORMAT, Op};
use crate::position::Position;
use crate::replay::retention::Retention;
use crate::replay::stored::StoredEvent;
use crate::replay::window::{Entry, Windows};

const META_NAME: &str = "sse_meta";
const EVENTS_NAME: &str = "sse_events";
const FLOORS_NAME: &str = "sse_floors";
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new(META_NAME);
pub(super) const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new(EVENTS_NAME);
pub(super) const FLOORS: TableDefinition<&str, u64> = TableDefinition::new(FLOORS_NAME);

/// The layout version written in `meta`; a file with another one is refused, not reinterpreted.
pub(super) const FORMAT_VERSION: u64 = 1;

const HEADER: usize = 8 + 1 + 4;

/// Why the file cannot be used; the caller names the file and says what to do.
#[derive(Debug)]
pub(super) struct Damage(pub(super) String);

macro_rules! damage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Damage {
            fn from(e: $t) -> Self {
                Damage(e.to_string())
            }
        }
    )*};
}
damage_from!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError
);

/// The record of `entry` in the `events` table.
pub(super) fn encode_record(entry: &Entry<u64>) -> Vec<u8> {
    let id = entry.event.id.as_bytes();
    let mut out = Vec::with_capacity(HEADER + id.len() + entry.event.bytes.len());
    out.extend_from_slice(&entry.at.to_le_bytes());
    out.push(u8::from(entry.custom));
    out.extend_from_slice(&(id.len() as u32).to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&entry.event.bytes);
    out
}

fn decode_record(position: Position, raw: &[u8]) -> Result<Entry<u64>, Damage> {
    let bad = || Damage(format!("event record at position {position} is malformed"));
    let at_ms = u64::from_le_bytes(
        raw.get(0..8)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    let custom = match raw.get(8) {
        Some(0) => false,
        Some(1) => true,
        _ => return Err(bad()),
    };
    let id_len = u32::from_le_bytes(
        raw.get(9..13)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    ) as usize;
    let id = raw.get(HEADER..HEADER + id_len).ok_or_else(bad)?;
    let id = std::str::from_utf8(id).map_err(|_| bad())?;
    let bytes = raw.get(HEADER + id_len..).ok_or_else(bad)?;
    Ok(Entry {
        event: StoredEvent {
            position,
            id: Arc::from(id),
            bytes: Bytes::copy_from_slice(bytes),
        },
        at: at_ms,
        custom,
    })
}

/// What [`load`] found: the windows, the last position issued, and the changes that enforcing the
/// (possibly new) retention on them requires.
pub(super) struct Loaded {
    pub(super) windows: Windows<u64>,
    pub(super) counter: u64,
    pub(super) ops: Vec<Op>,
}

/// What `meta` says.
struct Meta {
    epoch: u64,
    counter: u64,
    dropped_through: u64,
}

/// Reads the whole file (which also verifies every page it touches) into memory. A file without our
/// tables is initialised with `fresh_epoch`; one with foreign tables or another format is refused.
pub(super) fn load(
    db: &Database,
    retention: &Retention,
    now_ms: u64,
    fresh_epoch: u64,
) -> Result<Loaded, Damage> {
    let read = db.begin_read()?;
    let tables: Vec<String> = read
        .list_tables()?
        .map(|t| redb::TableHandle::name(&t).to_owned())
        .collect();
    if tables.is_empty() {
        return Ok(initialise(fresh_epoch));
    }
    refuse_foreign(&tables)?;
    let meta = read_meta(&read)?;
    let mut windows = read_windows(&read, &meta)?;
    // Retention may have been lowered since the last run, and time has passed: trim now.
    let mut ops = Vec::new();
    windows.prune(retention, now_ms, &mut ops);
    Ok(Loaded {
        counter: meta.counter.max(windows.dropped_through()),
        windows,
        ops,
    })
}

/// A new file: no windows, and the `meta` rows to write.
fn initialise(fresh_epoch: u64) -> Loaded {
    let meta = |key, value| Op::Meta { key, value };
    Loaded {
        windows: Windows::new(fresh_epoch, 0),
        counter: 0,
        ops: vec![
            meta(FORMAT, FORMAT_VERSION),
            meta(EPOCH, fresh_epoch),
            meta(COUNTER, 0),
            meta(DROPPED_THROUGH, 0),
        ],
    }
}

/// Refuses a redb file that holds tables of another program.
fn refuse_foreign(tables: &[String]) -> Result<(), Damage> {
    match tables
        .iter()
        .find(|t| ![META_NAME, EVENTS_NAME, FLOORS_NAME].contains(&t.as_str()))
    {
        Some(foreign) => Err(Damage(format!(
            "it is a redb database but not an sse-server replay store (it has a table {foreign:?})"
        ))),
        None => Ok(()),
    }
}

/// Reads `meta`, refusing another format version or missing rows.
fn read_meta(read: &ReadTransaction) -> Result<Meta, Damage> {
    let meta = read.open_table(META)?;
    let get = |key: &str| -> Result<Option<u64>, Damage> { Ok(meta.get(key)?.map(|v| v.value())) };
    match get(FORMAT)? {
        Some(FORMAT_VERSION) => {}
        Some(other) => {
            return Err(Damage(format!(
                "it has store format {other}, this sse-server reads format {FORMAT_VERSION}"
            )));
        }
        None => return Err(Damage("its format version is missing".into())),
    }
    Ok(Meta {
        epoch: get(EPOCH)?.ok_or_else(|| Damage("its epoch is missing".into()))?,
        counter: get(COUNTER)?.ok_or_else(|| Damage("its id counter is missing".into()))?,
        dropped_through: get(DROPPED_THROUGH)?.unwrap_or(0),
    })
}

/// Reads `floors` and `events` into windows, as they were saved (nothing evicted yet).
fn read_windows(read: &ReadTransaction, meta: &Meta) -> Result<Windows<u64>, Damage> {
    let mut windows = Windows::new(meta.epoch, meta.dropped_through);
    let floors = read.open_table(FLOORS)?;
    for row in floors.iter()? {
        let (channel, minor) = row?;
        windows.restore_floor(channel.value().to_owned(), minor.value());
    }
    let events = read.open_table(EVENTS)?;
    for row in events.iter()? {
        let (key, value) = row?;
        let (channel, minor) = key.value();
        let position = Position::new(meta.epoch, minor);
        let entry = decode_record(position, value.value())?;
        // The counter is committed with every batch; a larger position means a damaged file.
        if minor > meta.counter {
            return Err(Damage(format!(
                "event {position} is newer than the id counter ({})",
                meta.counter
            )));
        }
        windows.restore(channel, entry);
    }
    Ok(windows)
}

/// Applies `ops` and records `counter` in one transaction, durable when this returns.
pub(super) fn commit(db: &Database, ops: &[Op], counter: u64) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    {
        let mut meta = txn.open_table(META)?;
        let mut events = txn.open_table(EVENTS)?;
        let mut floors = txn.open_table(FLOORS)?;
        for op in ops {
            match op {
                Op::Put {
                    channel,
                    minor,
                    record,
                } => {
                    events.insert((channel.as_str(), *minor), record.as_slice())?;
                }
                Op::Delete { channel, minor } => {
                    events.remove((channel.as_str(), *minor))?;
                }
                Op::Floor { channel, minor } => {
                    floors.insert(channel.as_str(), *minor)?;
                }
                Op::DropChannel { channel } => {
                    floors.remove(channel.as_str())?;
                }
                Op::Meta { key, value } => {
                    meta.insert(*key, *value)?;
                }
            }
        }
        meta.insert(COUNTER, counter)?;
    }
    txn.commit()?;
    Ok(())
}
