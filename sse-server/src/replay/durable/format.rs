//! The on-disk layout (three redb tables) and the two things done with it: load it into a [`State`] and
//! commit a list of [`Op`]s in one transaction.
//!
//! * `meta`: `&str -> u64`: the format version, the epoch (fixed when the file is created, so ids stay
//!   comparable and known across restarts), the last position issued, and `dropped_through`.
//! * `events`: `(channel, minor) -> record`; a record is `at_ms: u64 LE | custom: u8 | id_len: u32 LE | id |
//!   encoded event`. Keys sort by channel then position, so a channel's window is one key range.
//! * `floors`: `channel -> minor`: every event of the channel after it is retained.

use std::sync::Arc;

use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::window::{Entry, State, Window};
use crate::Position;
use crate::replay::{Retention, StoredEvent};

const META_NAME: &str = "sse_meta";
const EVENTS_NAME: &str = "sse_events";
const FLOORS_NAME: &str = "sse_floors";
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new(META_NAME);
pub(super) const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new(EVENTS_NAME);
pub(super) const FLOORS: TableDefinition<&str, u64> = TableDefinition::new(FLOORS_NAME);

pub(super) const FORMAT: &str = "format";
pub(super) const EPOCH: &str = "epoch";
pub(super) const COUNTER: &str = "counter";
pub(super) const DROPPED_THROUGH: &str = "dropped_through";

/// The layout version written in `meta`; a file with another one is refused, not reinterpreted.
pub(super) const FORMAT_VERSION: u64 = 1;

const HEADER: usize = 8 + 1 + 4;

/// One change to the file, in the order it must be applied.
#[derive(Debug, Clone)]
pub(super) enum Op {
    Put {
        channel: String,
        minor: u64,
        record: Vec<u8>,
    },
    Delete {
        channel: String,
        minor: u64,
    },
    Floor {
        channel: String,
        minor: u64,
    },
    DropChannel {
        channel: String,
    },
    Meta {
        key: &'static str,
        value: u64,
    },
}

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

pub(super) fn encode_record(entry: &Entry) -> Vec<u8> {
    let id = entry.event.id.as_bytes();
    let mut out = Vec::with_capacity(HEADER + id.len() + entry.event.bytes.len());
    out.extend_from_slice(&entry.at_ms.to_le_bytes());
    out.push(u8::from(entry.custom));
    out.extend_from_slice(&(id.len() as u32).to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&entry.event.bytes);
    out
}

fn decode_record(position: Position, raw: &[u8]) -> Result<Entry, Damage> {
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
        at_ms,
        custom,
    })
}

/// What [`load`] found: the state, the last position issued, and the changes that enforcing the (possibly
/// new) retention on it requires.
pub(super) struct Loaded {
    pub(super) state: State,
    pub(super) counter: u64,
    pub(super) ops: Vec<Op>,
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
    let mut ops = Vec::new();
    if tables.is_empty() {
        ops.push(Op::Meta {
            key: FORMAT,
            value: FORMAT_VERSION,
        });
        ops.push(Op::Meta {
            key: EPOCH,
            value: fresh_epoch,
        });
        ops.push(Op::Meta {
            key: COUNTER,
            value: 0,
        });
        ops.push(Op::Meta {
            key: DROPPED_THROUGH,
            value: 0,
        });
        let state = State {
            epoch: fresh_epoch,
            ..State::default()
        };
        return Ok(Loaded {
            state,
            counter: 0,
            ops,
        });
    }
    if let Some(foreign) = tables
        .iter()
        .find(|t| ![META_NAME, EVENTS_NAME, FLOORS_NAME].contains(&t.as_str()))
    {
        return Err(Damage(format!(
            "it is a redb database but not an sse-server replay store (it has a table {foreign:?})"
        )));
    }
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
    let epoch = get(EPOCH)?.ok_or_else(|| Damage("its epoch is missing".into()))?;
    let mut counter = get(COUNTER)?.ok_or_else(|| Damage("its id counter is missing".into()))?;
    let dropped_through = get(DROPPED_THROUGH)?.unwrap_or(0);
    let mut state = State {
        epoch,
        dropped_through,
        ..State::default()
    };

    let floors = read.open_table(FLOORS)?;
    for row in floors.iter()? {
        let (channel, minor) = row?;
        state.windows.insert(
            channel.value().to_owned(),
            Window::new(Position::new(epoch, minor.value())),
        );
    }
    let events = read.open_table(EVENTS)?;
    for row in events.iter()? {
        let (key, value) = row?;
        let (channel, minor) = key.value();
        let position = Position::new(epoch, minor);
        let entry = decode_record(position, value.value())?;
        // The counter is committed with every batch; a larger position means a damaged file.
        if minor > counter {
            return Err(Damage(format!(
                "event {position} is newer than the id counter ({counter})"
            )));
        }
        let window = state
            .windows
            .entry(channel.to_owned())
            .or_insert_with(|| Window::new(Position::new(epoch, dropped_through)));
        window.push(entry);
    }
    // Retention may have been lowered since the last run, and time has passed: trim now.
    let mut trim = Vec::new();
    state.prune(retention, now_ms, &mut trim);
    ops.extend(trim);
    counter = counter.max(state.dropped_through);
    Ok(Loaded {
        state,
        counter,
        ops,
    })
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
