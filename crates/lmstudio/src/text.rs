//! Turning sampled tokens into streamed text: an incremental UTF-8 decoder (one character may span
//! several tokens) and the stop-string matcher that holds back text which may start a stop string.

/// Decodes a byte stream that arrives in arbitrary pieces, never splitting a character.
#[derive(Debug, Default)]
pub(crate) struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Appends `bytes` and returns all text that is now complete. Invalid sequences become U+FFFD.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: wait for the next piece.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: bytes of an unfinished character become U+FFFD.
    pub(crate) fn finish(&mut self) -> String {
        if self.pending.is_empty() {
            String::new()
        } else {
            self.pending.clear();
            char::REPLACEMENT_CHARACTER.to_string()
        }
    }
}

/// What the matcher decided after new text arrived.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Matched {
    /// No stop string yet: `0` may be shown now (possibly empty, when text is held back).
    Emit(String),
    /// Stop string number `index` fired: show `text` (what preceded it) and stop.
    Stop { text: String, index: usize },
}

/// Finds stop strings across token boundaries. The text it releases never contains a stop string
/// nor a suffix that could still grow into one.
#[derive(Debug)]
pub(crate) struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet released.
    held: String,
}

impl StopMatcher {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        Self { stops, held: String::new() }
    }

    /// Feeds newly decoded text.
    pub(crate) fn push(&mut self, text: &str) -> Matched {
        self.held.push_str(text);
        // The earliest match wins; at the same start, the longest stop string.
        let found = self
            .stops
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.held.find(s.as_str()).map(|at| (at, std::cmp::Reverse(s.len()), i)))
            .min();
        if let Some((at, _, index)) = found {
            let text = self.held[..at].to_owned();
            self.held.clear();
            return Matched::Stop { text, index };
        }
        let keep = self.longest_suffix_that_starts_a_stop();
        let release = self.held.len() - keep;
        let out = self.held[..release].to_owned();
        self.held.drain(..release);
        Matched::Emit(out)
    }

    /// Releases whatever is held back: the stream ended without completing a stop string.
    pub(crate) fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    fn longest_suffix_that_starts_a_stop(&self) -> usize {
        let held = self.held.as_str();
        self.stops
            .iter()
            .map(|stop| {
                let max = stop.len().saturating_sub(1).min(held.len());
                (1..=max)
                    .rev()
                    .find(|&n| held.is_char_boundary(held.len() - n) && stop.starts_with(&held[held.len() - n..]))
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_joins_a_character_split_across_pieces() {
        let mut d = Utf8Decoder::default();
        let bytes = "é🦀".as_bytes();
        let mut out = String::new();
        for b in bytes {
            out += &d.push(&[*b]);
        }
        assert_eq!(out, "é🦀");
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn decoder_replaces_invalid_bytes_and_unfinished_tail() {
        let mut d = Utf8Decoder::default();
        assert_eq!(d.push(b"a\xffb\xf0\x9f"), "a\u{fffd}b");
        assert_eq!(d.finish(), "\u{fffd}");
    }

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, Option<usize>) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()).collect());
        let mut shown = Vec::new();
        for p in pieces {
            match m.push(p) {
                Matched::Emit(t) => shown.push(t),
                Matched::Stop { text, index } => {
                    shown.push(text);
                    return (shown, Some(index));
                }
            }
        }
        shown.push(m.flush());
        (shown, None)
    }

    #[test]
    fn stop_string_across_pieces_is_never_shown() {
        let (shown, stop) = run(&["</end>"], &["hello <", "/e", "nd> more"]);
        assert_eq!(shown.concat(), "hello ");
        assert_eq!(stop, Some(0));
        // Nothing that became part of the stop string was released early.
        assert_eq!(shown[0], "hello ");
        assert_eq!(shown[1], "");
    }

    #[test]
    fn held_text_is_released_when_it_stops_matching() {
        let (shown, stop) = run(&["$ "], &["a$", "b"]);
        assert_eq!(shown, vec!["a", "$b", ""]);
        assert_eq!(stop, None);
    }

    #[test]
    fn earliest_stop_wins_and_its_index_is_reported() {
        let (shown, stop) = run(&["zz", "b"], &["abczz"]);
        assert_eq!(shown.concat(), "a");
        assert_eq!(stop, Some(1));
    }

    #[test]
    fn hold_back_respects_char_boundaries() {
        let (shown, stop) = run(&["éx"], &["aé", "y"]);
        assert_eq!(shown, vec!["a", "éy", ""]);
        assert_eq!(stop, None);
    }

    #[test]
    fn end_of_stream_flushes_a_partial_match() {
        let (shown, _) = run(&["STOP"], &["go ST"]);
        assert_eq!(shown.concat(), "go ST");
    }
}
