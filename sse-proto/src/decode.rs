//! Incremental UTF-8 decoding of the byte stream, as the spec's "UTF-8 decode" does before lines are
//! split: invalid sequences become U+FFFD (one per maximal invalid subpart), and a character split
//! across chunks is reassembled.
//!
//! Decoding each chunk once, in bulk, is what lets the line parser slice `&str`s for free instead of
//! validating every field value on its own (a per-field `from_utf8` was ~13% of the small-event case).

/// Longest UTF-8 sequence: a split character leaves at most 3 bytes waiting.
const MAX_SEQUENCE: usize = 4;

/// Appends `chunk` to `text`, decoded. `tail` holds the start of a character cut off by the previous
/// chunk's end (at most 3 bytes); it is completed from `chunk` first.
pub(crate) fn decode_into(text: &mut String, tail: &mut Vec<u8>, mut chunk: &[u8]) {
    while !tail.is_empty() {
        let Some((&byte, rest)) = chunk.split_first() else {
            return;
        };
        tail.push(byte);
        match std::str::from_utf8(tail) {
            Ok(done) => {
                text.push_str(done);
                tail.clear();
                chunk = rest;
            }
            // Still a valid start of a character: take the next byte.
            Err(e) if e.error_len().is_none() && tail.len() < MAX_SEQUENCE => chunk = rest,
            Err(_) => {
                // The byte broke the sequence: what came before is one maximal invalid subpart, and
                // the byte itself starts afresh.
                text.push(char::REPLACEMENT_CHARACTER);
                tail.clear();
            }
        }
    }
    // Valid text is the common case, and `from_utf8` checks it many times faster than `utf8_chunks`
    // walks it: only invalid or cut-off input takes the second path.
    if let Ok(valid) = std::str::from_utf8(chunk) {
        push_str_in_pieces(text, valid);
        return;
    }
    for piece in chunk.utf8_chunks() {
        text.push_str(piece.valid());
        let invalid = piece.invalid();
        if invalid.is_empty() {
            continue;
        }
        let cut_off = std::str::from_utf8(invalid).is_err_and(|e| e.error_len().is_none());
        if cut_off && invalid.as_ptr_range().end == chunk.as_ptr_range().end {
            tail.extend_from_slice(invalid);
        } else {
            text.push(char::REPLACEMENT_CHARACTER);
        }
    }
}

/// Copies larger than this take glibc's `rep movsb` path.
const COPY_PIECE: usize = 2048;

/// `text.push_str(value)`, in pieces of at most 2 KiB.
///
/// On this project's AMD EPYC, glibc copies blocks above a few KiB with `rep movsb`, which runs at
/// ~2.5 GB/s instead of ~45 GB/s when the destination sits a few bytes past the source modulo 4 KiB
/// (measured: a 64 KiB copy at every such offset). A `data: ` value copied out of the input buffer
/// is exactly such a copy whenever the allocator puts the new string at an unlucky address, which
/// made the large-event cases 2-5x slower depending on placement; 2 KiB pieces take the vector loop,
/// which has no such case.
pub(crate) fn push_str_in_pieces(text: &mut String, mut value: &str) {
    if value.len() <= COPY_PIECE {
        text.push_str(value);
        return;
    }
    text.reserve(value.len());
    while value.len() > COPY_PIECE {
        let mut cut = COPY_PIECE;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        let (piece, rest) = value.split_at(cut);
        text.push_str(piece);
        value = rest;
    }
    text.push_str(value);
}

#[cfg(test)]
mod tests {
    use super::{decode_into, push_str_in_pieces};

    #[test]
    fn pieces_add_up_to_the_value_even_across_multibyte_characters() {
        for len in [0, 1, 2047, 2048, 2049, 5000, 10_000] {
            let value: String = "é€😀x".chars().cycle().take(len).collect();
            let mut text = String::from("<");
            push_str_in_pieces(&mut text, &value);
            assert_eq!(text, format!("<{value}"));
        }
    }

    fn decode(chunks: &[&[u8]]) -> (String, Vec<u8>) {
        let (mut text, mut tail) = (String::new(), Vec::new());
        for c in chunks {
            decode_into(&mut text, &mut tail, c);
        }
        (text, tail)
    }

    #[test]
    fn every_split_of_the_stream_decodes_like_the_whole() {
        let stream: &[u8] =
            b"a\xC3\xA9b\xE2\x82\xAC\xF0\x9F\x98\x80\xFF\xE2\x82x\xF0\x9F\n\xC3\xED\xA0\x80z\xF4\x90\x80\x80";
        let whole = String::from_utf8_lossy(stream).into_owned();
        assert_eq!(decode(&[stream]), (whole.clone(), Vec::new()));
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(decode(&[a, b]).0, whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode(&bytes).0, whole);
    }

    #[test]
    fn a_character_cut_off_at_the_end_waits_for_its_rest() {
        assert_eq!(decode(&[b"caf\xC3"]), ("caf".into(), vec![0xC3]));
        assert_eq!(decode(&[b"caf\xC3", b"\xA9"]), ("café".into(), Vec::new()));
        assert_eq!(
            decode(&[b"\xF0\x9F", b"\x98"]),
            (String::new(), vec![0xF0, 0x9F, 0x98])
        );
    }
}
