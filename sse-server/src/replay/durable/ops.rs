//! The changes the durable store commits to its file, and the `meta` keys they set. Every change the
//! store makes to its in-memory windows is mirrored by an [`Op`] (the windows report theirs through
//! the [`Journal`] this file implements), so the file and memory stay alike.

use crate::position::Position;
use crate::replay::window::{Entry, Journal};

/// `meta` key: the layout version.
pub(super) const FORMAT: &str = "format";
/// `meta` key: the epoch, fixed when the file is created.
pub(super) const EPOCH: &str = "epoch";
/// `meta` key: the last position issued.
pub(super) const COUNTER: &str = "counter";
/// `meta` key: highest position of any event whose whole window was dropped.
pub(super) const DROPPED_THROUGH: &str = "dropped_through";

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

/// The window changes, as the ops that make the file match (ages are wall-clock milliseconds).
impl Journal<u64> for Vec<Op> {
    fn opened(&mut self, channel: &str, floor: Position) {
        self.floor_moved(channel, floor);
    }

    fn evicted(&mut self, channel: &str, gone: &Entry<u64>) {
        self.push(Op::Delete {
            channel: channel.to_owned(),
            minor: gone.event.position.minor(),
        });
    }

    fn floor_moved(&mut self, channel: &str, floor: Position) {
        self.push(Op::Floor {
            channel: channel.to_owned(),
            minor: floor.minor(),
        });
    }

    fn dropped(&mut self, channel: &str) {
        self.push(Op::DropChannel {
            channel: channel.to_owned(),
        });
    }

    fn dropped_through(&mut self, minor: u64) {
        self.push(Op::Meta {
            key: DROPPED_THROUGH,
            value: minor,
        });
    }
}
