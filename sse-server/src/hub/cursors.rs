//! Per-sequencer cursors: how a multi-channel stream over a store with several sequencers
//! ([`ReplayStore::sequencers`](crate::replay::ReplayStore::sequencers) `> 1`, e.g. a Redis Cluster
//! store with one sequencer per bucket) says how far it is, in its event ids and in what a
//! subscriber skips.
//!
//! Positions of different sequencers are not comparable, so one position cannot say "everything
//! up to here": such a stream keeps one cursor per sequencer it can follow, and each event's id
//! carries that vector ([`encode`], [`parse`]). With one sequencer none of this is used: ids are
//! plain positions, as they always were.
//!
//! The id: `v<B>` then one field per sequencer, `.`-separated, in sequencer order, trailing empty
//! fields left out: `` (empty: not followed), `_` (followed, nothing issued yet when the stream
//! started) or `<D>-<N>`, the position `<B + D>-<N>`. `B` (the smallest major of the vector), `D` and
//! `N` are lowercase base 36. Sixteen sequencers at realistic Redis positions (`<ms>-<n>`, within a
//! day of each other) take about 150 bytes, and at most 9 + 16 × 28 in theory, far less in practice
//! (see the tests).

use std::sync::Arc;

use crate::position::Position;

/// Where a stream is in one sequencer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Mark {
    /// The stream follows no channel of this sequencer.
    Unfollowed,
    /// The stream follows this sequencer, which had issued nothing when the stream started, and
    /// no followed event of it was passed on since.
    Nothing,
    /// Every followed event of this sequencer at or before this position was passed on.
    At(Position),
}

impl Mark {
    /// The later of two marks of one sequencer.
    pub(crate) fn later(self, other: Mark) -> Mark {
        Ord::max(self, other)
    }

    /// The position, when there is one.
    pub(crate) fn position(self) -> Option<Position> {
        match self {
            Mark::At(p) => Some(p),
            _ => None,
        }
    }
}

/// Bits of a frame position's major part that hold the sequencer (see [`pack`]).
const SHIFT: u32 = 48;

/// The position a multi-sequencer composite puts on its frames: the sequencer in the top 16 bits of
/// the major part, so that [`Seen::covers`] can compare it with that sequencer's cursor. Positions
/// of such stores have a major part below 2^48 (Redis ids are milliseconds: good until the year
/// 10889).
pub(crate) fn pack(sequencer: usize, p: Position) -> Position {
    Position::new(((sequencer as u64) << SHIFT) | p.major(), p.minor())
}

fn unpack(p: Position) -> (usize, Position) {
    let mask = (1u64 << SHIFT) - 1;
    (
        (p.major() >> SHIFT) as usize,
        Position::new(p.major() & mask, p.minor()),
    )
}

/// What live events a subscriber already has (replayed, or seen before it reconnected): frames at
/// or before it are skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Nothing to skip.
    #[default]
    Nothing,
    /// Every position at or before this one (one sequencer).
    Through(Position),
    /// Per sequencer (frames carry [`pack`]ed positions): every position at or before the entry.
    By(Arc<[Option<Position>]>),
}

impl From<Option<Position>> for Seen {
    fn from(through: Option<Position>) -> Seen {
        through.map_or(Seen::Nothing, Seen::Through)
    }
}

impl Seen {
    /// Whether the frame at `p` was seen already.
    #[inline]
    pub(crate) fn covers(&self, p: Position) -> bool {
        match self {
            Seen::Nothing => false,
            Seen::Through(s) => p <= *s,
            Seen::By(by) => {
                let (k, p) = unpack(p);
                by.get(k).copied().flatten().is_some_and(|s| p <= s)
            }
        }
    }

    /// Whether nothing is skipped.
    pub(crate) fn is_nothing(&self) -> bool {
        matches!(self, Seen::Nothing)
    }
}

const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn push36(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 13];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n % 36) as usize];
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.extend(buf[i..].iter().map(|&b| b as char));
}

fn parse36(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 13 {
        return None;
    }
    s.bytes().try_fold(0u64, |n, b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'z' => b - b'a' + 10,
            _ => return None,
        };
        n.checked_mul(36)?.checked_add(u64::from(d))
    })
}

/// The id text of a cursor vector (see the module docs).
pub(crate) fn encode(marks: &[Mark]) -> String {
    let base = marks
        .iter()
        .filter_map(|m| m.position())
        .map(Position::major)
        .min()
        .unwrap_or(0);
    let mut out = String::with_capacity(12 + marks.len() * 12);
    out.push('v');
    push36(&mut out, base);
    let used = marks
        .iter()
        .rposition(|m| *m != Mark::Unfollowed)
        .map_or(0, |i| i + 1);
    for m in &marks[..used] {
        out.push('.');
        match m {
            Mark::Unfollowed => {}
            Mark::Nothing => out.push('_'),
            Mark::At(p) => {
                push36(&mut out, p.major() - base);
                out.push('-');
                push36(&mut out, p.minor());
            }
        }
    }
    out
}

/// The cursor vector of an id made by [`encode`] for a store with `sequencers` sequencers; `None`
/// for anything else (a plain position, a publisher's id, a damaged or foreign id).
pub(crate) fn parse(id: &str, sequencers: usize) -> Option<Box<[Mark]>> {
    let mut fields = id.strip_prefix('v')?.split('.');
    let base = parse36(fields.next()?)?;
    let mut marks = vec![Mark::Unfollowed; sequencers];
    for (k, field) in fields.enumerate() {
        let slot = marks.get_mut(k)?;
        *slot = match field {
            "" => Mark::Unfollowed,
            "_" => Mark::Nothing,
            _ => {
                let (d, n) = field.split_once('-')?;
                let major = base.checked_add(parse36(d)?)?;
                Mark::At(Position::new(major, parse36(n)?))
            }
        };
    }
    Some(marks.into_boxed_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_stay_short_with_sixteen_sequencers() {
        let day = 86_400_000;
        let marks: Vec<Mark> = (0..16u64)
            .map(|k| match k {
                3 => Mark::Unfollowed,
                5 => Mark::Nothing,
                _ => Mark::At(Position::new(1_764_500_000_000 + k * day / 16, k * 3)),
            })
            .collect();
        let id = encode(&marks);
        assert!(id.len() <= 150, "{} bytes: {id}", id.len());
        assert_eq!(parse(&id, 16).as_deref(), Some(&marks[..]));
        // Equal positions in several sequencers, and the worst realistic case: a year apart,
        // millions of events in one millisecond.
        let same = vec![Mark::At(Position::new(1_764_500_000_000, 0)); 16];
        assert_eq!(parse(&encode(&same), 16).as_deref(), Some(&same[..]));
        let far: Vec<Mark> = (0..16u64)
            .map(|k| {
                Mark::At(Position::new(
                    1_700_000_000_000 + k * 365 * day / 15,
                    9_999_999,
                ))
            })
            .collect();
        let id = encode(&far);
        assert!(id.len() <= 256, "{} bytes: {id}", id.len());
        assert_eq!(parse(&id, 16).as_deref(), Some(&far[..]));
        let ends = [Mark::Nothing, Mark::Unfollowed, Mark::Unfollowed];
        assert_eq!(encode(&ends), "v0._");
        assert_eq!(parse("v0._", 3).as_deref(), Some(&ends[..]));
    }

    #[test]
    fn anything_else_is_no_vector() {
        for bad in [
            "",
            "1-2",
            "v",
            "v.",
            "vX.1-2",
            "v0.1",
            "v0.1-",
            "v0.-1",
            "v0.A-1",
            "v0.1-2.3-4.5-6",
            "v0. 1-2",
            "vzzzzzzzzzzzzzz.1-2",
            "v0.zzzzzzzzzzzzz-1",
        ] {
            assert_eq!(parse(bad, 2), None, "{bad:?}");
        }
    }

    /// What a one-sequencer subscriber carries is as large as the `Option<Position>` it replaced.
    #[test]
    fn seen_costs_what_one_position_did() {
        assert_eq!(
            std::mem::size_of::<Seen>(),
            std::mem::size_of::<Option<Position>>()
        );
    }

    #[test]
    fn seen_compares_within_each_sequencer_only() {
        let by = Seen::By(Arc::from(vec![Some(Position::new(5, 5)), None]));
        assert!(by.covers(pack(0, Position::new(5, 5))));
        assert!(!by.covers(pack(0, Position::new(5, 6))));
        assert!(!by.covers(pack(1, Position::new(0, 0))));
        assert!(!by.covers(pack(2, Position::new(0, 0))));
        assert!(Seen::from(Some(Position::new(1, 1))).covers(Position::new(1, 0)));
        assert!(!Seen::from(None).covers(Position::new(0, 0)));
    }
}
