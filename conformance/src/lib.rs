//! # conformance: spec vectors for the event-stream parser, and the tools to run them
//!
//! The vectors in `conformance/vectors/*.json` are written from the WHATWG HTML standard
//! ("Server-sent events", *interpreting an event stream*). Each file holds one vector:
//!
//! ```json
//! {
//!   "description": "One leading U+FEFF is dropped (WHATWG: UTF-8 decode strips one BOM)",
//!   "input_hex": "efbbbf646174613a20780a0a",
//!   "expected": [{"type": "message", "data": "x", "lastEventId": ""}],
//!   "lastEventId": ""
//! }
//! ```
//!
//! * `input` (a JSON string, so `\r`, `\n`, `\u0000` escapes work) **or** `input_hex` (raw bytes, for
//!   invalid UTF-8 and byte-exact BOMs): exactly one of the two.
//! * `expected`: the items a spec-following parser yields, in stream order, in the same JSON shapes
//!   `sse-client parse` prints: `{"type", "data", "lastEventId"}` per dispatched event and
//!   `{"retry": N}` per valid `retry:` field.
//! * `lastEventId` (optional): the last event id committed when the stream has ended.
//!
//! The vector's name is its file stem. This crate's pub API is what other harnesses (the `xtask`,
//! browser tests) reuse:
//!
//! * [`load_all`] / [`load_dir`] / [`load_file`] read vectors; [`vectors_dir`] is where they live.
//! * [`Chunking`] enumerates the ways to cut an input into chunks ([`Chunking::all_for`]).
//! * [`parse_chunks`] runs `sse_proto::Parser` over chunks and returns [`VectorItem`]s, ready to
//!   compare with [`Vector::expected`].
//!
//! ```
//! use conformance::{load_all, parse_chunks, Chunking};
//!
//! for vector in load_all()? {
//!     for chunking in Chunking::all_for(vector.input.len()) {
//!         let parsed = parse_chunks(chunking.split(&vector.input))?;
//!         assert_eq!(parsed.items, vector.expected, "{} {chunking:?}", vector.name);
//!     }
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything that can go wrong while loading or running vectors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A vector file or directory could not be read.
    #[error("cannot read {path}: {source}; check the path and its permissions")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A vector file is not valid JSON in the vector schema.
    #[error(
        "{path} is not a valid vector: {source}; see the schema in conformance/src/lib.rs (input or input_hex, expected, optional lastEventId)"
    )]
    Json {
        /// The file.
        path: PathBuf,
        /// The JSON failure.
        #[source]
        source: serde_json::Error,
    },
    /// A vector file breaks a schema rule that JSON alone cannot express.
    #[error("{path} is not a valid vector: {reason}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The parser reported an error (a limit) while running a vector.
    #[error("the parser failed on a vector input: {0}")]
    Parser(#[from] sse_proto::Error),
}

/// One item a parser yields, in the JSON shapes `sse-client parse` prints.
///
/// ```
/// use conformance::VectorItem;
/// let item: VectorItem = serde_json::from_str(r#"{"retry": 5}"#)?;
/// assert_eq!(item, VectorItem::retry(5));
/// let m = VectorItem::message("message", "hi", "");
/// assert_eq!(serde_json::to_string(&m)?, r#"{"type":"message","data":"hi","lastEventId":""}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VectorItem {
    /// A dispatched event.
    Message(MessageItem),
    /// A valid `retry:` field.
    Retry(RetryItem),
}

/// A dispatched event: `{"type", "data", "lastEventId"}`.
///
/// ```
/// let m = conformance::MessageItem { event_type: "tick".into(), data: "1".into(), last_event_id: "".into() };
/// assert_eq!(m.event_type, "tick");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageItem {
    /// The event type (`message` when the stream gave none).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The data, lines joined with LF.
    pub data: String,
    /// The last event id in force at dispatch.
    #[serde(rename = "lastEventId")]
    pub last_event_id: String,
}

/// A valid `retry:` field: `{"retry": N}` in milliseconds.
///
/// ```
/// assert_eq!(conformance::RetryItem { retry: 10 }.retry, 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryItem {
    /// The reconnection time in milliseconds.
    pub retry: u64,
}

impl VectorItem {
    /// A dispatched event.
    ///
    /// ```
    /// let m = conformance::VectorItem::message("message", "x", "1");
    /// assert!(matches!(m, conformance::VectorItem::Message(_)));
    /// ```
    pub fn message(
        event_type: impl Into<String>,
        data: impl Into<String>,
        last_event_id: impl Into<String>,
    ) -> Self {
        VectorItem::Message(MessageItem {
            event_type: event_type.into(),
            data: data.into(),
            last_event_id: last_event_id.into(),
        })
    }

    /// A retry item, in milliseconds.
    ///
    /// ```
    /// assert_eq!(conformance::VectorItem::retry(3), conformance::VectorItem::Retry(conformance::RetryItem { retry: 3 }));
    /// ```
    pub fn retry(millis: u64) -> Self {
        VectorItem::Retry(RetryItem { retry: millis })
    }

    /// Converts a parser item; comments have no vector form and give `None`. A retry beyond
    /// `u64::MAX` milliseconds (impossible from the parser, which saturates) is clamped.
    ///
    /// ```
    /// use std::time::Duration;
    /// let item = sse_proto::Item::Retry(Duration::from_millis(7));
    /// assert_eq!(conformance::VectorItem::from_proto(&item), Some(conformance::VectorItem::retry(7)));
    /// assert_eq!(conformance::VectorItem::from_proto(&sse_proto::Item::Comment("c".into())), None);
    /// ```
    pub fn from_proto(item: &sse_proto::Item) -> Option<Self> {
        match item {
            sse_proto::Item::Message(m) => Some(VectorItem::message(
                m.event_type.clone(),
                m.data.clone(),
                m.last_event_id.clone(),
            )),
            sse_proto::Item::Retry(d) => Some(VectorItem::retry(
                u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            )),
            sse_proto::Item::Comment(_) => None,
        }
    }
}

/// One spec vector: an input stream and what a spec-following parser must yield for it.
///
/// ```
/// let v = conformance::load_file(&conformance::vectors_dir().join("bom-leading-dropped.json"))?;
/// assert!(v.input.starts_with(b"\xEF\xBB\xBF"));
/// # Ok::<(), conformance::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vector {
    /// The file stem, e.g. `bom-leading-dropped`.
    pub name: String,
    /// The spec rule the vector checks, in words.
    pub description: String,
    /// The raw bytes of the stream.
    pub input: Vec<u8>,
    /// The items, in stream order.
    pub expected: Vec<VectorItem>,
    /// The last event id committed at the end of the stream, when the vector states it.
    pub last_event_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorFile {
    description: String,
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    input_hex: Option<String>,
    expected: Vec<VectorItem>,
    #[serde(default, rename = "lastEventId")]
    last_event_id: Option<String>,
}

/// The directory holding the bundled vectors (`conformance/vectors`).
///
/// ```
/// assert!(conformance::vectors_dir().ends_with("vectors"));
/// ```
pub fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

/// Loads every bundled vector, sorted by name.
///
/// ```
/// assert!(conformance::load_all()?.len() >= 60);
/// # Ok::<(), conformance::Error>(())
/// ```
pub fn load_all() -> Result<Vec<Vector>, Error> {
    load_dir(&vectors_dir())
}

/// Loads every `*.json` file in `dir` as a vector, sorted by name.
///
/// ```
/// let vectors = conformance::load_dir(&conformance::vectors_dir())?;
/// assert!(vectors.windows(2).all(|w| w[0].name < w[1].name));
/// # Ok::<(), conformance::Error>(())
/// ```
pub fn load_dir(dir: &Path) -> Result<Vec<Vector>, Error> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut vectors = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "json") {
            vectors.push(load_file(&path)?);
        }
    }
    vectors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(vectors)
}

/// Loads one vector file.
///
/// ```
/// let err = conformance::load_file(std::path::Path::new("/nonexistent.json")).unwrap_err();
/// assert!(matches!(err, conformance::Error::Io { .. }));
/// ```
pub fn load_file(path: &Path) -> Result<Vector, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file: VectorFile = serde_json::from_str(&text).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let schema = |reason: &str| Error::Schema {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let input = match (file.input, file.input_hex) {
        (Some(text), None) => text.into_bytes(),
        (None, Some(hex)) => decode_hex(&hex).ok_or_else(|| {
            schema("input_hex must be an even number of hex digits (whitespace allowed)")
        })?,
        _ => return Err(schema("give exactly one of input and input_hex")),
    };
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .ok_or_else(|| schema("the file has no name"))?;
    Ok(Vector {
        name,
        description: file.description,
        input,
        expected: file.expected,
        last_event_id: file.last_event_id,
    })
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = hex
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok()))
        .collect::<Option<_>>()?;
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    Some(digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect())
}

/// A way to cut an input into chunks, to show that parsing does not depend on chunk boundaries.
///
/// ```
/// use conformance::Chunking;
/// assert_eq!(Chunking::Whole.split(b"abc"), vec![&b"abc"[..]]);
/// assert_eq!(Chunking::SplitAt(1).split(b"abc"), vec![&b"a"[..], &b"bc"[..]]);
/// assert_eq!(Chunking::Bytewise.split(b"ab"), vec![&b"a"[..], &b"b"[..]]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunking {
    /// The whole input in one chunk.
    Whole,
    /// Two chunks, the first `n` bytes long (either may be empty).
    SplitAt(usize),
    /// One chunk per byte.
    Bytewise,
}

impl Chunking {
    /// Whole, every two-chunk split (0..=len) and bytewise.
    ///
    /// ```
    /// assert_eq!(conformance::Chunking::all_for(3).len(), 1 + 4 + 1);
    /// ```
    pub fn all_for(len: usize) -> Vec<Chunking> {
        let mut all = vec![Chunking::Whole];
        all.extend((0..=len).map(Chunking::SplitAt));
        all.push(Chunking::Bytewise);
        all
    }

    /// Cuts `input` into chunks; `SplitAt(n)` with `n > len` splits at `len`.
    ///
    /// ```
    /// assert_eq!(conformance::Chunking::SplitAt(9).split(b"ab").concat(), b"ab");
    /// ```
    pub fn split(self, input: &[u8]) -> Vec<&[u8]> {
        match self {
            Chunking::Whole => vec![input],
            Chunking::SplitAt(n) => {
                let (a, b) = input.split_at(n.min(input.len()));
                vec![a, b]
            }
            Chunking::Bytewise => input.chunks(1).collect(),
        }
    }
}

/// What a parser made of a whole stream.
///
/// ```
/// let parsed = conformance::parse_chunks([&b"id: 1\n\n"[..]])?;
/// assert!(parsed.items.is_empty());
/// assert_eq!(parsed.last_event_id, "1");
/// # Ok::<(), conformance::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The items, in stream order.
    pub items: Vec<VectorItem>,
    /// The last event id committed when the stream ended.
    pub last_event_id: String,
}

/// Feeds `chunks` to a default `sse_proto::Parser`, takes items out after every chunk, and finishes
/// the stream. A limit error (impossible for the bundled vectors) is returned as [`Error::Parser`].
///
/// ```
/// let parsed = conformance::parse_chunks([&b"data: a"[..], b"\r", b"\n\n"])?;
/// assert_eq!(parsed.items, vec![conformance::VectorItem::message("message", "a", "")]);
/// # Ok::<(), conformance::Error>(())
/// ```
pub fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Result<Parsed, Error> {
    parse_chunks_with(sse_proto::Parser::new(), chunks)
}

/// [`parse_chunks`] with a configured parser (limits, initial last event id). Comment items, if the
/// parser yields them, are skipped.
///
/// ```
/// let parser = sse_proto::Parser::builder().last_event_id("4").build();
/// let parsed = conformance::parse_chunks_with(parser, [&b"data: x\n\n"[..]])?;
/// assert_eq!(parsed.items, vec![conformance::VectorItem::message("message", "x", "4")]);
/// # Ok::<(), conformance::Error>(())
/// ```
pub fn parse_chunks_with<'a>(
    mut parser: sse_proto::Parser,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Parsed, Error> {
    let mut items = Vec::new();
    for chunk in chunks {
        parser.feed(chunk);
        for item in parser.by_ref() {
            items.extend(VectorItem::from_proto(&item?));
        }
    }
    parser.finish();
    for item in parser.by_ref() {
        items.extend(VectorItem::from_proto(&item?));
    }
    Ok(Parsed {
        items,
        last_event_id: parser.last_event_id().to_owned(),
    })
}
